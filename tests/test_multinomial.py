"""MultinomialMixture: agreement with a plain-numpy EM, sparse and dense
input giving the same model, EM properties, recovery of a known mixture,
the estimator API and input validation."""

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
    make_multinomial,
    match_components,
)
from _reference_families import log_joint_multinomial, multinomial_em
from _testing import needs_threads
from scipy.special import logsumexp

import fastem


@pytest.fixture(scope="module")
def data():
    return make_multinomial(300, 15, 3, seed=0)


def _init(K, D, seed):
    rng = np.random.RandomState(seed)
    return rng.dirichlet(np.ones(K) * 3), rng.dirichlet(np.ones(D) * 2, size=K)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 1e-3])
def test_matches_reference_em(data, alpha, weighted, sparse):
    X = data[0]
    sw = np.random.RandomState(1).uniform(0.2, 3.0, len(X)) if weighted else None
    w0, m0 = _init(3, X.shape[1], 2)
    ref_w, ref_m, ref_lb = multinomial_em(X, w0, m0, alpha, 20, sample_weight=sw)
    model = fastem.MultinomialMixture(
        3, alpha=alpha, weights_init=w0, means_init=m0, max_iter=20, tol=0.0
    )
    fit_quietly(model, sp.csr_matrix(X) if sparse else X, sample_weight=sw)
    np.testing.assert_allclose(model.weights_, ref_w, rtol=1e-8)
    np.testing.assert_allclose(model.means_, ref_m, rtol=1e-8)
    np.testing.assert_allclose(model.lower_bounds_, ref_lb, rtol=1e-10)


def test_sparse_and_dense_give_the_same_model(data):
    X = data[0]
    kw = {"random_state": 0, "tol": 1e-8, "max_iter": 200}
    dense = fit_quietly(fastem.MultinomialMixture(3, **kw), X)
    # CountVectorizer-like input: int64 counts, int32 indices; and float32 data
    for Xs in (
        sp.csr_matrix(X.astype(np.int64)),
        sp.csr_array(X.astype(np.float32)),
        sp.csc_matrix(X),
    ):
        sparse = fit_quietly(fastem.MultinomialMixture(3, **kw), Xs)
        assert sparse.n_iter_ == dense.n_iter_
        np.testing.assert_allclose(sparse.weights_, dense.weights_, rtol=1e-9)
        np.testing.assert_allclose(sparse.means_, dense.means_, rtol=1e-9)
        np.testing.assert_allclose(
            sparse.lower_bounds_, dense.lower_bounds_, rtol=1e-11
        )
        np.testing.assert_allclose(
            sparse.predict_proba(Xs), dense.predict_proba(X), rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(
            sparse.score_samples(Xs), dense.score_samples(X), rtol=1e-11
        )
    np.testing.assert_array_equal(dense.predict(sp.csr_matrix(X)), dense.predict(X))


def test_sparse_duplicates_are_summed(data):
    X = data[0][:50]
    csr = sp.csr_matrix(X)
    # every nonzero split into two entries of the same cell (not canonical)
    counts = np.diff(csr.indptr)
    indptr = np.concatenate([[0], np.cumsum(2 * counts)])
    rows = np.repeat(np.arange(X.shape[0]), counts)
    order = np.argsort(np.concatenate([rows, rows]), kind="stable")
    data = np.concatenate([csr.data - 1, np.ones_like(csr.data)])[order]
    indices = np.concatenate([csr.indices, csr.indices])[order]
    dup = sp.csr_matrix((data, indices, indptr), shape=X.shape)
    assert not dup.has_canonical_format
    model = fastem.MultinomialMixture(2, random_state=0, max_iter=3).fit(X)
    np.testing.assert_allclose(
        model.score_samples(dup), model.score_samples(X), rtol=1e-12
    )


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("init", ["kmeans", "random", "k-means++"])
def test_em_monotone(seed, init):
    X = make_multinomial(200, 10, 4, seed=seed)[0]
    model = fastem.MultinomialMixture(
        4, alpha=0.1, init_params=init, random_state=seed, max_iter=40, tol=0.0
    )
    check_monotone(model, X)
    check_monotone(
        fastem.MultinomialMixture(
            4, alpha=0.1, init_params=init, random_state=seed, max_iter=40, tol=0.0
        ),
        sp.csr_matrix(X),
    )


@pytest.mark.parametrize("sparse", [False, True])
def test_bit_identical_across_threads(sparse):
    X = make_multinomial(12000, 12, 3, seed=5, length=(5, 30))[0]
    X = sp.csr_matrix(X) if sparse else X

    def make(**kw):
        return fastem.MultinomialMixture(3, random_state=0, max_iter=5, **kw)

    check_threads_identical(make, X)


def test_many_features_cap_the_task_buffers():
    # K * D large: fewer tasks than usual, same model as the dense path
    from fastem.families.discrete import layout

    T, _, _ = layout(12000, 100000, 50, True)
    assert T * 50 * 100000 <= (1 << 22) or T == 1
    rng = np.random.RandomState(0)
    Xs = sp.random(9000, 3000, density=0.003, random_state=rng, format="csr")
    Xs.data = np.ceil(Xs.data * 3)
    kw = {"random_state": 0, "max_iter": 4, "tol": 0.0, "init_params": "random"}
    needs_threads(2)
    a = fit_quietly(fastem.MultinomialMixture(20, n_threads=1, **kw), Xs)
    b = fit_quietly(fastem.MultinomialMixture(20, n_threads=2, **kw), Xs)
    np.testing.assert_array_equal(a.means_, b.means_)


def test_recovers_known_mixture(record_property):
    from sklearn.metrics import adjusted_rand_score

    X, z, w_true, theta_true = make_multinomial(6000, 40, 5, seed=7)
    model = fastem.MultinomialMixture(
        5, alpha=1e-2, random_state=0, n_init=2, tol=1e-7
    ).fit(sp.csr_matrix(X))
    perm = match_components(theta_true, model.means_)
    theta_hat, w_hat = model.means_[perm], model.weights_[perm]
    words = (w_true * len(X) * X.sum(axis=1).mean())[:, None]
    se = np.sqrt(theta_true * (1 - theta_true) / words)
    assert (np.abs(theta_hat - theta_true) < 5 * se + 1e-4).all()
    assert np.abs(w_hat - w_true).max() < 0.02
    ari = adjusted_rand_score(z, model.predict(sp.csr_matrix(X)))
    record_property("adjusted_rand_index", ari)
    print(f"MultinomialMixture ARI = {ari:.4f}")
    assert ari > 0.95


def test_methods_save_and_load(data, tmp_path):
    X = data[0]
    model = fastem.MultinomialMixture(3, random_state=0).fit(X)

    def log_density(Z):
        return logsumexp(log_joint_multinomial(Z, model.weights_, model.means_), axis=1)

    check_methods(model, X, log_density)
    assert model.mean_total_count_ == pytest.approx(X.sum(axis=1).mean())
    Xs, _ = model.sample(20)
    np.testing.assert_array_equal(Xs.sum(axis=1), round(model.mean_total_count_))
    Xs, _ = model.sample(20, n_trials=7)
    np.testing.assert_array_equal(Xs.sum(axis=1), 7)
    check_save_load(model, X, tmp_path)
    assert (
        fastem.load(tmp_path / "model.npz").mean_total_count_ == model.mean_total_count_
    )


def test_zero_rows_are_allowed(data):
    X = data[0].copy()
    X[:10] = 0.0
    model = fastem.MultinomialMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(model.score_samples(X[:10]), 0.0, atol=1e-12)
    np.testing.assert_allclose(
        model.predict_proba(X[:10]), np.tile(model.weights_, (10, 1))
    )


def test_sample_weight_equals_repeats(data):
    def make(**kw):
        return fastem.MultinomialMixture(3, random_state=0, **kw)

    check_weights_are_repeats(make, data[0][:150])


def test_driver_wiring(data):
    def make(**kw):
        kw.setdefault("random_state", 0)
        return fastem.MultinomialMixture(3, **kw)

    check_driver_wiring(make, data[0])


def test_validation(data):
    X = data[0]
    check_common_validation(lambda **kw: fastem.MultinomialMixture(**kw), X)
    bad = sp.csr_matrix(X)
    bad.data[5] = 0.25
    row = int(np.searchsorted(bad.indptr, 5, side="right") - 1)
    col = int(bad.indices[5])
    with pytest.raises(ValueError, match=f"column {col} has 0.25 at row {row}"):
        fastem.MultinomialMixture(2).fit(bad)
    m = np.full((2, X.shape[1]), 1.0 / X.shape[1])
    m[1, 0] += 0.1
    with pytest.raises(ValueError, match="row 1 sums to"):
        fastem.MultinomialMixture(2, means_init=m).fit(X)
    with pytest.raises(TypeError, match="dense"):
        fastem.StudentTMixture(2).fit(sp.csr_matrix(X))


def test_out_of_core_and_dask(tmp_path):
    X = make_multinomial(600, 4, 3, seed=8)[0]

    def make(**kw):
        return fastem.MultinomialMixture(3, **kw)

    check_out_of_core(make, X, tmp_path, bad_value=0.5)


def test_compiled_signatures_stay_few(data):
    """One compiled signature per input dtype (and CSR index dtype): fits
    with several shapes, weights and options add no new ones."""
    from fastem._kernels import discrete as k

    X = data[0]
    for Xi in (
        X,
        X.astype(np.float32),
        sp.csr_matrix(X),
        sp.csr_matrix(X, dtype=np.float32),
    ):
        for n in (3, 2):
            m = fastem.MultinomialMixture(n, random_state=0, max_iter=2)
            fit_quietly(m, Xi, sample_weight=np.ones(X.shape[0]))
            m.predict_proba(Xi)
            fit_quietly(fastem.PoissonMixture(n, random_state=0, max_iter=2), Xi)
    assert len(k.estep_dense.signatures) <= 2
    assert len(k.per_row_dense.signatures) <= 2
    # data float32/float64 x indices int32/int64
    assert len(k.estep_sparse.signatures) <= 4
    assert len(k.per_row_sparse.signatures) <= 4
