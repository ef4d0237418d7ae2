"""BernoulliMixture: agreement with a plain-numpy EM, EM properties,
recovery of a known mixture, the estimator API and input validation."""

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
    make_bernoulli,
    match_components,
)
from _reference_families import bernoulli_em, log_joint_bernoulli

import fastem


def _logsumexp(L):
    from scipy.special import logsumexp

    return logsumexp(L, axis=1)


@pytest.fixture(scope="module")
def data():
    return make_bernoulli(600, 12, 3, seed=0)


def _init(K, D, seed):
    rng = np.random.RandomState(seed)
    return rng.dirichlet(np.ones(K) * 3), rng.uniform(0.2, 0.8, size=(K, D))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [1.0, 1e-3])
def test_matches_reference_em(data, alpha, weighted):
    X = data[0]
    sw = np.random.RandomState(1).uniform(0.2, 3.0, len(X)) if weighted else None
    w0, m0 = _init(3, X.shape[1], 2)
    ref_w, ref_m, ref_lb = bernoulli_em(X, w0, m0, alpha, 20, sample_weight=sw)
    model = fastem.BernoulliMixture(
        3, alpha=alpha, weights_init=w0, means_init=m0, max_iter=20, tol=0.0
    )
    fit_quietly(model, X, sample_weight=sw)
    assert model.n_iter_ == 20
    np.testing.assert_allclose(model.weights_, ref_w, rtol=1e-8)
    np.testing.assert_allclose(model.means_, ref_m, rtol=1e-8)
    np.testing.assert_allclose(model.lower_bounds_, ref_lb, rtol=1e-10)


def test_float32_input_matches_float64(data):
    X = data[0]
    w0, m0 = _init(3, X.shape[1], 2)
    kw = {"weights_init": w0, "means_init": m0, "max_iter": 10, "tol": 0.0}
    a = fit_quietly(fastem.BernoulliMixture(3, **kw), X)
    b = fit_quietly(fastem.BernoulliMixture(3, **kw), X.astype(np.float32))
    # 0/1 are exact in float32: the fits are the same up to summation order
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-12)
    c = fit_quietly(fastem.BernoulliMixture(3, **kw), X.astype(bool))
    np.testing.assert_allclose(a.means_, c.means_, rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("init", ["kmeans", "random", "random_from_data"])
def test_em_monotone(seed, init):
    X = make_bernoulli(300, 8, 4, seed=seed)[0]
    model = fastem.BernoulliMixture(
        4, alpha=0.5, init_params=init, random_state=seed, max_iter=40, tol=0.0
    )
    check_monotone(model, X)


def test_bit_identical_across_threads():
    X = make_bernoulli(12000, 10, 3, seed=5)[0]  # several tasks

    def make(**kw):
        return fastem.BernoulliMixture(3, random_state=0, max_iter=5, **kw)

    check_threads_identical(make, X)


def test_recovers_known_mixture(record_property):
    from sklearn.metrics import adjusted_rand_score

    X, z, w_true, p_true = make_bernoulli(20000, 30, 4, seed=11)
    model = fastem.BernoulliMixture(4, random_state=0, n_init=2, tol=1e-6).fit(X)
    perm = match_components(p_true, model.means_)
    p_hat, w_hat = model.means_[perm], model.weights_[perm]
    nk = w_true * len(X)
    se = np.sqrt(p_true * (1 - p_true) / nk[:, None])
    assert (np.abs(p_hat - p_true) < 5 * se + 1e-3).all()
    assert np.abs(w_hat - w_true).max() < 0.02
    ari = adjusted_rand_score(z, model.predict(X))
    record_property("adjusted_rand_index", ari)
    print(f"BernoulliMixture ARI = {ari:.4f}")
    assert ari > 0.95


def test_methods_save_and_load(data, tmp_path):
    X = data[0]
    model = fastem.BernoulliMixture(3, random_state=0).fit(X)

    def log_density(Z):
        return _logsumexp(log_joint_bernoulli(Z, model.weights_, model.means_))

    Xs = check_methods(model, X, log_density)
    assert set(np.unique(Xs)) <= {0.0, 1.0}
    np.testing.assert_array_equal(model.fit_predict(X), model.predict(X))
    check_save_load(model, X, tmp_path)


def test_sparse_input_same_model(data):
    X = data[0]
    kw = {"random_state": 0, "max_iter": 15, "tol": 0.0}
    dense = fit_quietly(fastem.BernoulliMixture(3, **kw), X)
    for fmt in (sp.csr_matrix, sp.csr_array, sp.coo_matrix):
        sparse = fit_quietly(fastem.BernoulliMixture(3, **kw), fmt(X))
        np.testing.assert_allclose(sparse.means_, dense.means_, rtol=1e-10)
        np.testing.assert_allclose(sparse.weights_, dense.weights_, rtol=1e-10)
    np.testing.assert_allclose(
        dense.score_samples(sp.csr_matrix(X)), dense.score_samples(X), rtol=1e-12
    )


def test_sample_weight_equals_repeats(data):
    X = data[0][:200]

    def make(**kw):
        return fastem.BernoulliMixture(3, random_state=0, **kw)

    check_weights_are_repeats(make, X)


def test_driver_wiring(data):
    def make(**kw):
        kw.setdefault("random_state", 0)
        return fastem.BernoulliMixture(3, **kw)

    check_driver_wiring(make, data[0])


def test_validation(data):
    X = data[0]

    def make(**kw):
        return fastem.BernoulliMixture(**kw)

    check_common_validation(make, X)
    bad = X.copy()
    bad[7, 4] = 0.5
    with pytest.raises(ValueError, match=r"binary.*column 4 has 0.5 at row 7"):
        fastem.BernoulliMixture(2).fit(bad)
    with pytest.raises(ValueError, match="column 4"):
        fastem.BernoulliMixture(2).fit(sp.csr_matrix(bad))
    bad[9, 4] = 2.0
    with pytest.raises(ValueError, match="2 such entries in column 4"):
        fastem.BernoulliMixture(2).fit(bad)
    with pytest.raises(ValueError, match=r"means_init.*between 0 and 1"):
        fastem.BernoulliMixture(2, means_init=np.zeros((2, X.shape[1]))).fit(X)
    with pytest.raises(TypeError, match="alpha"):
        fastem.BernoulliMixture(2, alpha="1").fit(X)
    fitted = fit_quietly(fastem.BernoulliMixture(2, max_iter=2, random_state=0), X)
    with pytest.raises(ValueError, match="binary"):
        fitted.predict(bad)
    nan = X.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fastem.BernoulliMixture(2).fit(nan)


def test_input_not_modified(data):
    X = data[0].copy()
    Xs = sp.csr_matrix(X)
    before = (X.copy(), Xs.data.copy(), Xs.indices.copy(), Xs.indptr.copy())
    fastem.BernoulliMixture(3, random_state=0, max_iter=3).fit(X)
    fastem.BernoulliMixture(3, random_state=0, max_iter=3).fit(Xs)
    np.testing.assert_array_equal(X, before[0])
    np.testing.assert_array_equal(Xs.data, before[1])
    np.testing.assert_array_equal(Xs.indices, before[2])
    np.testing.assert_array_equal(Xs.indptr, before[3])


def test_extreme_alpha_keeps_probabilities_inside():
    # every row identical: raw MLE would be exactly 0 and 1
    X = np.tile([1.0, 0.0, 1.0], (500, 1))
    X[:3] = [0.0, 1.0, 0.0]
    model = fit_quietly(fastem.BernoulliMixture(2, alpha=1e-12, random_state=0), X)
    assert ((model.means_ > 0) & (model.means_ < 1)).all()
    assert np.isfinite(model.score_samples(X)).all()


def test_out_of_core_and_dask(tmp_path):
    X = make_bernoulli(600, 4, 3, seed=8)[0]

    def make(**kw):
        return fastem.BernoulliMixture(3, **kw)

    check_out_of_core(make, X, tmp_path, bad_value=0.5)


def test_scikit_learn_interoperability(data):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.utils import get_tags

    X = data[0]
    model = fastem.BernoulliMixture(3, alpha=0.5, random_state=0)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert repr(copy) == "BernoulliMixture(n_components=3, alpha=0.5, random_state=0)"
    assert get_tags(model).input_tags.sparse
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(reg_covar=1.0)
    search = GridSearchCV(
        fastem.BernoulliMixture(random_state=0, max_iter=20, tol=1e-4),
        {"n_components": [1, 3]},
        cv=2,
    )
    fit_quietly(search, X)
    assert search.best_params_ == {"n_components": 3}
