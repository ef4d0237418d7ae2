"""``model.save(path)`` / ``fastem.load(path)``: .npz files without pickle."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from _reference import COVARIANCE_TYPES

import fastem

ATTRIBUTES = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
)


@pytest.fixture(scope="module")
def data(make_mixture):
    return make_mixture(200, 3, 3, seed=71)[0]


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_round_trip_gives_identical_predictions(tmp_path, data, cov):
    model = fastem.GaussianMixture(
        3, covariance_type=cov, random_state=1, tol=1e-4, reg_covar=1e-5
    ).fit(data)
    path = tmp_path / f"model-{cov}.npz"
    model.save(path)
    loaded = fastem.load(path)

    assert type(loaded) is fastem.GaussianMixture
    for name in ATTRIBUTES:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    for name in ("converged_", "n_iter_", "lower_bound_", "n_features_in_"):
        assert getattr(loaded, name) == getattr(model, name), name
    assert loaded.lower_bounds_ == list(model.lower_bounds_)
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))
    np.testing.assert_array_equal(loaded.predict_proba(data), model.predict_proba(data))
    np.testing.assert_array_equal(loaded.score_samples(data), model.score_samples(data))
    assert loaded.bic(data) == model.bic(data)
    # Plain constructor parameters come back.
    for name in ("n_components", "covariance_type", "tol", "reg_covar", "random_state"):
        assert loaded.get_params()[name] == model.get_params()[name]
    # sample() depends only on the parameters and random_state.
    for a, b in zip(loaded.sample(50), model.sample(50), strict=True):
        np.testing.assert_array_equal(a, b)


def test_file_loads_without_pickle(tmp_path, data):
    model = fastem.GaussianMixture(
        2,
        means_init=data[:2],
        random_state=np.random.RandomState(0),
        callback=lambda i, lb: None,
    ).fit(data)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype != object, key
        header = json.loads(str(npz["header"]))
    assert header["class"] == "GaussianMixture"
    # Callables and RandomState objects are not stored; array params are.
    assert "callback" not in header["params"]
    loaded = fastem.load(path)
    assert loaded.callback is None
    np.testing.assert_array_equal(loaded.means_init, data[:2])
    np.testing.assert_array_equal(loaded.predict(data), model.predict(data))


def test_path_without_npz_suffix(tmp_path, data):
    """The file is written at the given path (numpy would append '.npz')."""
    model = fastem.GaussianMixture(2, random_state=0).fit(data)
    path = tmp_path / "model.fem"
    model.save(str(path))
    assert path.exists() and not (tmp_path / "model.fem.npz").exists()
    np.testing.assert_array_equal(
        fastem.load(str(path)).predict(data), model.predict(data)
    )


def test_save_to_an_open_file(data):
    model = fastem.GaussianMixture(2, random_state=0).fit(data)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    np.testing.assert_array_equal(
        fastem.load(buffer).predict(data), model.predict(data)
    )


def test_loaded_model_can_be_refitted(tmp_path, data):
    model = fastem.GaussianMixture(
        3, warm_start=True, random_state=0, max_iter=5, tol=0.0
    )
    with pytest.warns(fastem.ConvergenceWarning):
        model.fit(data)
    model.save(tmp_path / "m.npz")
    loaded = fastem.load(tmp_path / "m.npz")
    with pytest.warns(fastem.ConvergenceWarning):
        model.fit(data)
    with pytest.warns(fastem.ConvergenceWarning):
        loaded.fit(data)  # warm start from the loaded parameters
    for name in ATTRIBUTES:
        np.testing.assert_allclose(
            getattr(loaded, name), getattr(model, name), rtol=1e-12, atol=1e-14
        )


def test_unknown_format_is_rejected(tmp_path, data):
    model = fastem.GaussianMixture(2, random_state=0).fit(data)
    path = tmp_path / "m.npz"
    model.save(path)
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    with np.load(path, allow_pickle=False) as npz:
        header = json.loads(str(npz["header"]))
        arrays = {k: npz[k] for k in npz.files if k != "header"}
    assert "header.npy" in members
    for key, value, match in [
        ("format", 999, "format"),
        ("class", "Pickled", "class"),
    ]:
        changed = dict(header, **{key: value})
        bad = tmp_path / f"bad-{key}.npz"
        np.savez(bad, header=np.array(json.dumps(changed)), **arrays)
        with pytest.raises(ValueError, match=match):
            fastem.load(bad)
