"""PoissonMixture: agreement with a plain-numpy EM, EM properties, recovery
of a known mixture, the estimator API and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from _family_cases import (
    check_common_validation,
    check_driver_wiring,
    check_methods,
    check_monotone,
    check_out_of_core,
    check_save_load,
    check_threads_identical,
    check_weights_are_repeats,
    fit_quietly,
    make_poisson,
    match_components,
)
from _reference_families import log_joint_poisson, poisson_em
from scipy.special import logsumexp

import fastem


@pytest.fixture(scope="module")
def data():
    return make_poisson(500, 6, 3, seed=0)


def _init(X, K, seed):
    rng = np.random.RandomState(seed)
    return rng.dirichlet(np.ones(K) * 3), X.mean(axis=0) * rng.uniform(0.5, 1.5, (K, 1))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [1e-2, 2.0])
def test_matches_reference_em(data, alpha, weighted):
    X = data[0]
    sw = np.random.RandomState(1).uniform(0.2, 3.0, len(X)) if weighted else None
    w0, m0 = _init(X, 3, 2)
    ref_w, ref_m, ref_lb = poisson_em(X, w0, m0, alpha, 20, sample_weight=sw)
    model = fastem.PoissonMixture(
        3, alpha=alpha, weights_init=w0, means_init=m0, max_iter=20, tol=0.0
    )
    fit_quietly(model, X, sample_weight=sw)
    np.testing.assert_allclose(model.weights_, ref_w, rtol=1e-8)
    np.testing.assert_allclose(model.means_, ref_m, rtol=1e-8)
    np.testing.assert_allclose(model.lower_bounds_, ref_lb, rtol=1e-10)


def test_large_counts_use_lgamma():
    # counts beyond the log-factorial table (1024) take the lgamma path
    rng = np.random.RandomState(0)
    X = np.vstack([rng.poisson(3.0, (50, 3)), rng.poisson(2000.0, (50, 3))]).astype(
        float
    )
    w0, m0 = np.array([0.5, 0.5]), np.array([[2.0] * 3, [1500.0] * 3])
    ref = poisson_em(X, w0, m0, 1e-2, 5)
    model = fit_quietly(
        fastem.PoissonMixture(2, weights_init=w0, means_init=m0, max_iter=5, tol=0.0), X
    )
    np.testing.assert_allclose(model.means_, ref[1], rtol=1e-8)
    np.testing.assert_allclose(model.lower_bounds_, ref[2], rtol=1e-10)


def test_float32_input_matches_float64(data):
    X = data[0]
    w0, m0 = _init(X, 3, 2)
    kw = {"weights_init": w0, "means_init": m0, "max_iter": 10, "tol": 0.0}
    a = fit_quietly(fastem.PoissonMixture(3, **kw), X)
    b = fit_quietly(fastem.PoissonMixture(3, **kw), X.astype(np.float32))
    c = fit_quietly(fastem.PoissonMixture(3, **kw), X.astype(np.int64))
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-12)
    np.testing.assert_allclose(a.means_, c.means_, rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("init", ["kmeans", "random", "k-means++"])
def test_em_monotone(seed, init):
    X = make_poisson(300, 5, 4, seed=seed)[0]
    model = fastem.PoissonMixture(
        4, init_params=init, random_state=seed, max_iter=40, tol=0.0
    )
    check_monotone(model, X)


def test_bit_identical_across_threads():
    X = make_poisson(12000, 6, 3, seed=5)[0]

    def make(**kw):
        return fastem.PoissonMixture(3, random_state=0, max_iter=5, **kw)

    check_threads_identical(make, X)


def test_recovers_known_mixture(record_property):
    from sklearn.metrics import adjusted_rand_score

    X, z, w_true, lam_true = make_poisson(20000, 8, 4, seed=3)
    model = fastem.PoissonMixture(4, random_state=0, n_init=2, tol=1e-6).fit(X)
    perm = match_components(lam_true, model.means_)
    lam_hat, w_hat = model.means_[perm], model.weights_[perm]
    nk = w_true * len(X)
    se = np.sqrt(lam_true / nk[:, None])
    assert (np.abs(lam_hat - lam_true) < 5 * se + 1e-3).all()
    assert np.abs(w_hat - w_true).max() < 0.02
    ari = adjusted_rand_score(z, model.predict(X))
    record_property("adjusted_rand_index", ari)
    print(f"PoissonMixture ARI = {ari:.4f}")
    assert ari > 0.9


def test_methods_save_and_load(data, tmp_path):
    X = data[0]
    model = fastem.PoissonMixture(3, random_state=0).fit(X)

    def log_density(Z):
        return logsumexp(log_joint_poisson(Z, model.weights_, model.means_), axis=1)

    Xs = check_methods(model, X, log_density)
    assert (Xs >= 0).all() and (Xs == np.round(Xs)).all()
    check_save_load(model, X, tmp_path)


def test_sparse_input_same_model(data):
    X = data[0]
    kw = {"random_state": 0, "max_iter": 15, "tol": 0.0, "init_params": "random"}
    dense = fit_quietly(fastem.PoissonMixture(3, **kw), X)
    sparse = fit_quietly(fastem.PoissonMixture(3, **kw), sp.csr_matrix(X))
    np.testing.assert_allclose(sparse.means_, dense.means_, rtol=1e-10)
    np.testing.assert_allclose(sparse.lower_bounds_, dense.lower_bounds_, rtol=1e-12)


def test_sample_weight_equals_repeats(data):
    def make(**kw):
        return fastem.PoissonMixture(3, random_state=0, **kw)

    check_weights_are_repeats(make, data[0][:200])


def test_driver_wiring(data):
    def make(**kw):
        kw.setdefault("random_state", 0)
        return fastem.PoissonMixture(3, **kw)

    check_driver_wiring(make, data[0])


def test_validation(data):
    X = data[0]
    check_common_validation(lambda **kw: fastem.PoissonMixture(**kw), X)
    bad = X.copy()
    bad[3, 2] = -1.0
    with pytest.raises(
        ValueError, match=r"non-negative integer.*column 2 has -1.0 at row 3"
    ):
        fastem.PoissonMixture(2).fit(bad)
    bad[3, 2] = 1.5
    with pytest.raises(ValueError, match=r"column 2 has 1.5"):
        fastem.PoissonMixture(2).fit(bad)
    with pytest.raises(ValueError, match="column 2"):
        fastem.PoissonMixture(2).fit(sp.csr_matrix(bad))
    with pytest.raises(ValueError, match=r"means_init.*positive"):
        fastem.PoissonMixture(2, means_init=np.zeros((2, X.shape[1]))).fit(X)
    inf = X.copy()
    inf[1, 1] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        fastem.PoissonMixture(2).fit(inf)


def test_all_zero_feature_gets_small_positive_rate():
    X = make_poisson(400, 4, 2, seed=1)[0]
    X[:, 2] = 0.0
    model = fastem.PoissonMixture(2, random_state=0).fit(X)
    assert (model.means_[:, 2] > 0).all() and (model.means_[:, 2] < 1e-3).all()
    Z = X[:5].copy()
    Z[:, 2] = 3.0  # a value never seen in training: very unlikely, not NaN
    assert np.isfinite(model.score_samples(Z)).all()


def test_out_of_core_and_dask(tmp_path):
    X = make_poisson(600, 4, 3, seed=8)[0]

    def make(**kw):
        return fastem.PoissonMixture(3, **kw)

    check_out_of_core(make, X, tmp_path, bad_value=-2.0)
