"""``fastem.MixtureImputer``: the scikit-learn transformer API."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastem

sklearn = pytest.importorskip("sklearn")


def data(n=300, seed=0):
    rng = np.random.RandomState(seed)
    centers = np.array([[-4.0, 0.0, 2.0], [4.0, 1.0, -2.0]])
    labels = rng.randint(2, size=n)
    mix = np.array([[1.0, 0.8, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    X = centers[labels] + rng.randn(n, 3) @ mix
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.randn(n)
    Xm = X.copy()
    Xm[rng.rand(n, 3) < 0.2] = np.nan
    Xm[np.isnan(Xm).all(axis=1), 0] = X[np.isnan(Xm).all(axis=1), 0]
    return X, Xm, y


def test_fit_transform_fills_only_nan():
    X, Xm, _ = data()
    before = Xm.copy()
    imp = fastem.MixtureImputer(2, random_state=0)
    out = imp.fit_transform(Xm)
    np.testing.assert_array_equal(Xm, before)
    assert out.shape == Xm.shape and not np.isnan(out).any()
    obs = ~np.isnan(Xm)
    np.testing.assert_array_equal(out[obs], Xm[obs])
    np.testing.assert_array_equal(out, imp.mixture_.impute(Xm))
    assert imp.n_features_in_ == 3 and imp.n_iter_ >= 1
    rmse = np.sqrt(np.mean((out[~obs] - X[~obs]) ** 2))
    rmse_mean = np.sqrt(
        np.mean((np.where(obs, Xm, np.nanmean(Xm, axis=0))[~obs] - X[~obs]) ** 2)
    )
    assert rmse < 0.7 * rmse_mean


def test_in_a_pipeline_before_a_model():
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline

    _, Xm, y = data(400)
    pipe = make_pipeline(fastem.MixtureImputer(2, random_state=0), LinearRegression())
    scores = cross_val_score(pipe, Xm, y, cv=3)
    assert np.all(scores > 0.7), scores
    assert pipe.fit(Xm, y).predict(Xm[:5]).shape == (5,)


def test_clone_params_and_tags():
    from sklearn.base import clone

    imp = fastem.MixtureImputer(4, covariance_type="diag", sample_posterior=True)
    twin = clone(imp)
    assert twin.get_params() == imp.get_params()
    assert twin.set_params(n_components=2).n_components == 2
    tags = imp.__sklearn_tags__()
    assert tags.input_tags.allow_nan and tags.transformer_tags is not None
    assert fastem.GaussianMixture().__sklearn_tags__().input_tags.allow_nan
    with pytest.raises(ValueError, match="Invalid parameter"):
        imp.set_params(bogus=1)


def test_sklearn_estimator_checks_pass_except_shared_messages():
    """scikit-learn's own checks; the three exceptions are the wording of
    shared input validation (complex, empty, 1-d inputs), not behaviour."""
    from sklearn.utils.estimator_checks import check_estimator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(
            fastem.MixtureImputer(2, random_state=0), on_fail=None
        )
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed <= {
        "check_complex_data",
        "check_estimators_empty_data_messages",
        "check_fit2d_predict1d",
    }, failed


def test_all_missing_rows_and_sample_posterior():
    _, Xm, _ = data(200, seed=1)
    train = np.vstack([Xm, np.full((2, 3), np.nan)])
    imp = fastem.MixtureImputer(2, random_state=0).fit(train)
    out = imp.transform(np.full((1, 3), np.nan))
    np.testing.assert_allclose(
        out[0], imp.mixture_.weights_ @ imp.mixture_.means_, rtol=1e-12
    )
    post = fastem.MixtureImputer(2, sample_posterior=True, random_state=3)
    a = post.fit(Xm).transform(Xm)
    b = post.transform(Xm)
    assert not np.isnan(a).any() and not np.array_equal(a, b)
    again = fastem.MixtureImputer(2, sample_posterior=True, random_state=3)
    np.testing.assert_array_equal(again.fit(Xm).transform(Xm), a)


def test_errors():
    _, Xm, _ = data(100)
    imp = fastem.MixtureImputer(2)
    with pytest.raises(fastem.NotFittedError):
        imp.transform(Xm)
    with pytest.raises(ValueError, match="no observed value"):
        imp.fit(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="column 1 has no observed value"):
        imp.fit(np.where(np.arange(3) == 1, np.nan, Xm))
    with pytest.raises(ValueError, match="infinite"):
        imp.fit(np.where(np.isnan(Xm), np.inf, Xm))
    with pytest.raises(TypeError, match="sample_posterior"):
        fastem.MixtureImputer(sample_posterior="yes").fit(Xm)
    imp.fit(Xm, sample_weight=np.ones(len(Xm)))
    with pytest.raises(ValueError, match="expecting 3 features"):
        imp.transform(Xm[:, :2])
    names = imp.get_feature_names_out()
    assert list(names) == ["x0", "x1", "x2"]
    assert list(imp.get_feature_names_out(["a", "b", "c"])) == ["a", "b", "c"]


def test_float32_is_preserved():
    _, Xm, _ = data(150)
    out = fastem.MixtureImputer(2, random_state=0).fit_transform(Xm.astype(np.float32))
    assert out.dtype == np.float32 and not np.isnan(out).any()
