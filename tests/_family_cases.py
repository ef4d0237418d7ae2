"""Data from known mixtures of each family, and checks every mixture
estimator must pass (used by test_bernoulli.py, test_poisson.py,
test_multinomial.py and test_student.py)."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from _testing import needs_threads

import fastem
from fastem.exceptions import ConvergenceWarning

# ---------------------------------------------------------------------------
# Data generators: rows, true labels, true parameters
# ---------------------------------------------------------------------------


def _labels(rng, n, weights):
    z = rng.choice(len(weights), size=n, p=weights)
    z[: len(weights)] = np.arange(len(weights))
    return z


def make_bernoulli(n, d, k, seed=0):
    rng = np.random.RandomState(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    probs = rng.beta(0.5, 0.5, size=(k, d)).clip(0.02, 0.98)
    z = _labels(rng, n, weights)
    X = (rng.uniform(size=(n, d)) < probs[z]).astype(np.float64)
    return X, z, weights, probs


def make_poisson(n, d, k, seed=0):
    rng = np.random.RandomState(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    rates = rng.gamma(1.5, 3.0, size=(k, d)) + 0.2
    z = _labels(rng, n, weights)
    X = rng.poisson(rates[z]).astype(np.float64)
    return X, z, weights, rates


def make_multinomial(n, d, k, seed=0, length=(20, 80)):
    rng = np.random.RandomState(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    thetas = rng.dirichlet(np.full(d, 0.3), size=k)
    z = _labels(rng, n, weights)
    lengths = rng.randint(length[0], length[1] + 1, size=n)
    X = np.empty((n, d))
    for i in range(n):
        X[i] = rng.multinomial(lengths[i], thetas[z[i]])
    return X, z, weights, thetas


def make_student(n, d, k, seed=0, dofs=None, separation=8.0):
    rng = np.random.RandomState(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.uniform(-separation, separation, size=(k, d))
    A = rng.uniform(-0.4, 0.4, size=(k, d, d)) + np.eye(d)
    scales = np.einsum("kij,klj->kil", A, A)
    dofs = np.linspace(3.0, 12.0, k) if dofs is None else np.asarray(dofs, float)
    z = _labels(rng, n, weights)
    g = rng.gamma(dofs[z] / 2, 2 / dofs[z])
    noise = np.einsum(
        "nij,nj->ni", np.linalg.cholesky(scales)[z], rng.standard_normal((n, d))
    )
    X = means[z] + noise / np.sqrt(g)[:, None]
    return X, z, weights, means, scales, dofs


def match_components(true_means, fitted_means):
    """Permutation ``perm`` with ``fitted_means[perm[k]]`` closest to
    ``true_means[k]`` (greedy on the distance matrix)."""
    from scipy.optimize import linear_sum_assignment

    cost = ((true_means[:, None, :] - fitted_means[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def fit_quietly(model, X, **kw):
    """``model.fit`` with ConvergenceWarning silenced (fixed-length runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, **kw)


# ---------------------------------------------------------------------------
# Checks shared by every family
# ---------------------------------------------------------------------------


def check_monotone(model, X, rtol=1e-12):
    """Every iteration's lower bound >= the previous one up to rounding,
    except right after a documented re-seeding of an empty component."""
    import re

    from fastem.exceptions import DegenerateComponentWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DegenerateComponentWarning)
        fit_quietly(model, X)
    reseeded = {
        int(re.match(r"Iteration (\d+)", str(w.message)).group(1))
        for w in caught
        if issubclass(w.category, DegenerateComponentWarning)
    }
    lb = np.asarray(model.lower_bounds_)
    assert np.isfinite(lb).all()
    scale = max(1.0, float(np.abs(lb).max()))
    diffs = np.diff(lb)
    # bound i (0-based) is computed with the parameters made at iteration i
    keep = [i for i in range(len(diffs)) if (i + 1) not in reseeded]
    assert (diffs[keep] >= -rtol * scale).all(), diffs[keep].min()


def fitted_arrays(model):
    return {name: np.asarray(getattr(model, name)) for name in model._fitted_arrays}


def check_threads_identical(make_model, X):
    """1 and 2 threads give bit-identical models (several tasks are used)."""
    needs_threads(2)
    a = fit_quietly(make_model(n_threads=1), X)
    b = fit_quietly(make_model(n_threads=2), X)
    for name, value in fitted_arrays(a).items():
        np.testing.assert_array_equal(value, getattr(b, name), err_msg=name)
    assert a.lower_bounds_ == b.lower_bounds_
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def check_methods(model, X, log_density):
    """The scikit-learn method set on a fitted ``model``; ``log_density(X)``
    is an independent reference for ``score_samples``."""
    labels = model.predict(X)
    proba = model.predict_proba(X)
    logp = model.score_samples(X)
    K = model.n_components
    assert labels.shape == (X.shape[0],) and labels.dtype == np.int64
    assert proba.shape == (X.shape[0], K)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    np.testing.assert_allclose(logp, log_density(X), rtol=1e-10, atol=1e-10)
    assert model.score(X) == pytest.approx(logp.mean(), rel=1e-12)
    n_par = model._n_parameters()
    assert model.bic(X) == pytest.approx(-2 * logp.sum() + n_par * np.log(len(X)))
    assert model.aic(X) == pytest.approx(-2 * logp.sum() + 2 * n_par)
    Xs, ys = model.sample(50)
    assert Xs.shape == (50, X.shape[1]) and ys.shape == (50,)
    assert set(np.unique(ys)) <= set(range(K))
    for name in model._fitted_arrays:
        assert np.isfinite(np.asarray(getattr(model, name))).all(), name
    return Xs


def check_save_load(model, X, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fastem.load(path)
    assert type(loaded) is type(model)
    for name, value in fitted_arrays(model).items():
        np.testing.assert_array_equal(value, getattr(loaded, name), err_msg=name)
    assert loaded.get_params().keys() == model.get_params().keys()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    assert loaded.lower_bounds_ == model.lower_bounds_


def check_weights_are_repeats(make_model, X):
    """Integer sample weights give the model of repeated rows."""
    counts = np.random.RandomState(3).randint(0, 4, size=X.shape[0])
    counts[:5] = 1
    init = fit_quietly(make_model(max_iter=0), X)
    kw = {"weights_init": init.weights_, "means_init": init.means_}
    a = fit_quietly(make_model(max_iter=15, tol=0.0, **kw), X, sample_weight=counts)
    b = fit_quietly(
        make_model(max_iter=15, tol=0.0, **kw), np.repeat(X, counts, axis=0)
    )
    for name, value in fitted_arrays(a).items():
        np.testing.assert_allclose(value, getattr(b, name), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=1e-10)


def check_driver_wiring(make_model, X):
    """warm_start, callback, n_init, verbose and max_iter=0 reach the driver."""
    # callback stops the run after 2 iterations
    seen = []

    def stop(iteration, bound):
        seen.append((iteration, bound))
        return iteration >= 2

    m = fit_quietly(make_model(callback=stop, tol=0.0), X)
    assert m.n_iter_ == 2 and len(seen) == 2
    assert [b for _, b in seen] == m.lower_bounds_
    # warm start continues from the previous parameters
    first = fit_quietly(make_model(max_iter=3, tol=0.0, warm_start=True), X)
    bound3 = first.lower_bound_
    fit_quietly(first, X)
    assert first.lower_bounds_[0] >= bound3 - 1e-12 * abs(bound3)
    # n_init keeps the best run
    # (the first of the n_init runs draws the same initialisation as a single run)
    kw = {"init_params": "random", "max_iter": 5, "random_state": 0}
    best = fit_quietly(make_model(n_init=3, **kw), X)
    single = fit_quietly(make_model(n_init=1, **kw), X)
    assert best.lower_bound_ >= single.lower_bound_
    # verbose writes progress to stderr, not stdout
    import contextlib

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        fit_quietly(make_model(verbose=1, verbose_interval=1, max_iter=2), X)
    assert "Iteration 1" in err.getvalue() and out.getvalue() == ""
    # max_iter=0 keeps the initial parameters
    m0 = fit_quietly(make_model(max_iter=0), X)
    assert m0.n_iter_ == 0 and m0.lower_bounds_ == []


def check_common_validation(make_model, X):
    """Hyperparameter and shape errors name the argument."""
    for kw, match in [
        ({"n_components": 0}, "n_components"),
        ({"tol": -1.0}, "tol"),
        ({"max_iter": -1}, "max_iter"),
        ({"n_init": 0}, "n_init"),
        ({"init_params": "nope"}, "init_params"),
        (
            {"alpha": 0.0} if hasattr(make_model(), "alpha") else {"reg_covar": -1.0},
            "alpha|reg_covar",
        ),
        ({"chunk_rows": 0}, "chunk_rows"),
    ]:
        with pytest.raises(ValueError, match=match):
            make_model(**kw).fit(X)
    with pytest.raises(TypeError, match="warm_start"):
        make_model(warm_start="yes").fit(X)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        make_model(n_components=X.shape[0] + 1).fit(X)
    with pytest.raises(ValueError, match="2-d"):
        make_model().fit(X[0])
    with pytest.raises(ValueError, match="sample_weight"):
        make_model().fit(X, sample_weight=-np.ones(X.shape[0]))
    with pytest.raises(ValueError, match="weights_init"):
        make_model(n_components=2, weights_init=[0.5, 0.6]).fit(X)
    with pytest.raises(ValueError, match="means_init"):
        make_model(n_components=2, means_init=np.ones((3, X.shape[1]))).fit(X)
    fitted = fit_quietly(make_model(max_iter=2), X)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :-1])
    with pytest.raises(fastem.NotFittedError):
        make_model().predict(X)


def check_out_of_core(make_model, X, tmp_path, bad_value):
    """A memory-mapped ``.npy`` file read in small chunks, and a Dask array
    with the same chunks, give the in-memory model (up to the order of the
    chunk sums; Dask and the memmap bit for bit); values outside the
    family's support are reported before fitting."""
    path = tmp_path / "X.npy"
    np.save(path, X)
    kw = {"random_state": 0, "max_iter": 8, "tol": 0.0}
    ref = fit_quietly(make_model(**kw), X)
    mm = fit_quietly(make_model(chunk_rows=97, **kw), np.load(path, mmap_mode="r"))
    for name, value in fitted_arrays(ref).items():
        np.testing.assert_allclose(getattr(mm, name), value, rtol=1e-10, err_msg=name)
    by_path = fit_quietly(make_model(chunk_rows=97, **kw), str(path))
    np.testing.assert_array_equal(by_path.means_, mm.means_)
    np.testing.assert_allclose(
        mm.score_samples(np.load(path, mmap_mode="r")), ref.score_samples(X), rtol=1e-10
    )
    chunks = [X[i : i + 97] for i in range(0, len(X), 97)]
    it = fit_quietly(make_model(**kw), chunks)
    np.testing.assert_array_equal(it.means_, mm.means_)
    bad = X.copy()
    bad[250, 1] = bad_value
    np.save(path, bad)
    with pytest.raises(ValueError, match="column 1"):
        make_model(chunk_rows=97, **kw).fit(np.load(path, mmap_mode="r"))
    da = pytest.importorskip("dask.array")
    dX = da.from_array(X, chunks=(97, X.shape[1]))
    dk = fit_quietly(make_model(**kw), dX)
    for name, value in fitted_arrays(mm).items():
        np.testing.assert_array_equal(getattr(dk, name), value, err_msg=name)
    lazy = dk.predict_proba(dX)
    np.testing.assert_allclose(
        lazy.compute(), ref.predict_proba(X), rtol=1e-9, atol=1e-12
    )
