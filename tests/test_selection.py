"""fastem.GaussianMixtureIC: criteria against scikit-learn, the table, the
sweep's shared work, weights, progress and bad input."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import fastem
from fastem import selection
from fastem._kernels import gaussian as _k
from fastem.families import gaussian as g

sk_mixture = pytest.importorskip("sklearn.mixture")

COV_TYPES = ("full", "tied", "diag", "spherical")


def two_blobs(n=800, seed=0):
    rng = np.random.RandomState(seed)
    a = rng.randn(n // 2, 2) @ np.array([[1.0, 0.6], [0.0, 0.8]])
    b = rng.randn(n - n // 2, 2) * [0.5, 1.5] + [6.0, 1.0]
    X = np.vstack([a, b])
    return X[rng.permutation(n)]


@pytest.fixture(scope="module")
def X():
    return two_blobs()


def _sklearn_model(est):
    """A scikit-learn GaussianMixture holding ``est``'s parameters."""
    sk = sk_mixture.GaussianMixture(
        est.n_components, covariance_type=est.covariance_type
    )
    sk.weights_ = est.weights_
    sk.means_ = est.means_
    sk.covariances_ = est.covariances_
    sk.precisions_cholesky_ = est.precisions_cholesky_
    return sk


def _entropy(resp, w=None):
    h = -(resp * np.log(np.where(resp > 0, resp, 1.0))).sum(axis=1)
    return float(h.sum() if w is None else w @ h)


@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("cov", COV_TYPES)
def test_criteria_match_sklearn(X, cov, K):
    ic = fastem.GaussianMixtureIC(
        K, K, covariance_type=cov, random_state=0, refine=False
    ).fit(X)
    table = ic.criterion_table_
    sk = _sklearn_model(ic.best_estimator_)
    assert int(table["n_parameters"][0]) == sk._n_parameters()
    assert table["bic"][0] == pytest.approx(sk.bic(X), rel=1e-10)
    assert table["aic"][0] == pytest.approx(sk.aic(X), rel=1e-10)
    assert table["log_likelihood"][0] == pytest.approx(sk.score(X) * len(X), rel=1e-10)
    icl = sk.bic(X) + 2 * _entropy(sk.predict_proba(X))
    assert table["icl"][0] == pytest.approx(icl, rel=1e-10)
    assert ic.best_criterion_ == table["bic"][0]
    assert ic.bic(X) == pytest.approx(sk.bic(X), rel=1e-10)
    assert ic.aic(X) == pytest.approx(sk.aic(X), rel=1e-10)


def test_parameter_counts_match_sklearn(X):
    ic = fastem.GaussianMixtureIC(1, 4, refine=False, random_state=0).fit(X)
    t = ic.criterion_table_
    for K, cov, p in zip(t["n_components"], t["covariance_type"], t["n_parameters"]):
        sk = sk_mixture.GaussianMixture(int(K), covariance_type=cov)
        sk.means_ = np.zeros((int(K), X.shape[1]))
        assert int(p) == sk._n_parameters()
    # ... and for wider data, straight from the family.
    for D in (1, 5):
        for cov in COV_TYPES:
            sk = sk_mixture.GaussianMixture(3, covariance_type=cov)
            sk.means_ = np.zeros((3, D))
            assert g.n_parameters(cov, 3, D) == sk._n_parameters()


def test_table_is_consistent_and_best_is_argmin(X):
    ic = fastem.GaussianMixtureIC(1, 5, random_state=0, criterion="aic").fit(X)
    t = ic.criterion_table_
    n = len(X)
    assert list(t["n_components"]) == [k for k in range(1, 6) for _ in COV_TYPES]
    assert list(t["covariance_type"]) == list(COV_TYPES) * 5
    np.testing.assert_allclose(
        np.asarray(t["bic"]) - np.asarray(t["aic"]),
        np.asarray(t["n_parameters"]) * (np.log(n) - 2),
        rtol=1e-9,
    )
    assert (np.asarray(t["icl"]) >= np.asarray(t["bic"]) - 1e-9).all()
    assert (np.asarray(t["entropy"]) >= 0).all()
    best = int(np.argmin(np.asarray(t["aic"])))
    assert ic.best_params_ == {
        "n_components": int(t["n_components"][best]),
        "covariance_type": t["covariance_type"][best],
    }
    assert ic.n_components_ == ic.best_estimator_.n_components
    assert ic.covariance_type_ == ic.best_estimator_.covariance_type
    assert ic.best_criterion_ == pytest.approx(ic.aic(X), rel=1e-10)


def test_selects_two_blobs(X):
    ic = fastem.GaussianMixtureIC(1, 6, random_state=0).fit(X)
    assert ic.n_components_ == 2
    labels = ic.predict(X)
    assert len(np.unique(labels)) == 2
    np.testing.assert_array_equal(labels, np.argmax(ic.predict_proba(X), axis=1))
    np.testing.assert_allclose(ic.score_samples(X), ic.best_estimator_.score_samples(X))
    assert ic.score(X) == pytest.approx(ic.score_samples(X).mean())
    Xs, ys = ic.sample(20)
    assert Xs.shape == (20, 2) and ys.shape == (20,)
    np.testing.assert_array_equal(ic.fit_predict(X), ic.predict(X))


def test_icl_prefers_fewer_overlapping_components():
    """ICL penalises the entropy of soft assignments, BIC does not."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(1000, 1), rng.randn(1000, 1) * 3])  # nested
    kw = dict(covariance_type="full", random_state=0)
    bic = fastem.GaussianMixtureIC(1, 3, **kw).fit(X)
    icl = fastem.GaussianMixtureIC(1, 3, criterion="icl", **kw).fit(X)
    assert bic.n_components_ == 2
    assert icl.n_components_ == 1


def test_initialisation_shared_across_covariance_types(X):
    """With max_iter=0 every type of one size starts from the same
    partition: the same means and weights."""
    got = {}

    class Spy(selection.GaussianMixtureIC):
        def _fit_model(self, source, cov, initialize, n_init):
            out = super()._fit_model(source, cov, initialize, n_init)
            got[(out.run.params.n_components, cov)] = out.run.params
            return out

    Spy(2, 4, max_iter=0, refine=False, random_state=0).fit(X)
    for K in (2, 3, 4):
        ref = got[(K, "full")]
        for cov in COV_TYPES[1:]:
            np.testing.assert_allclose(got[(K, cov)].means, ref.means, rtol=1e-12)
            np.testing.assert_allclose(got[(K, cov)].weights, ref.weights, rtol=1e-12)


def test_refine_only_improves_likelihoods(X):
    kw = dict(min_components=1, max_components=6, random_state=1)
    plain = fastem.GaussianMixtureIC(refine=False, **kw).fit(X)
    refined = fastem.GaussianMixtureIC(refine=True, **kw).fit(X)
    a = np.asarray(plain.criterion_table_["log_likelihood"])
    b = np.asarray(refined.criterion_table_["log_likelihood"])
    assert (b >= a).all()
    changed = np.asarray(refined.criterion_table_["refined"])
    assert (b[changed] > a[changed]).all()
    assert (b[~changed] == a[~changed]).all()
    assert refined.best_criterion_ <= plain.best_criterion_


def test_merge_closest_components():
    means = np.array([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0]])
    cov = np.stack([np.eye(2), 2 * np.eye(2), np.eye(2)])
    weights = np.array([0.2, 0.3, 0.5])
    pc, _ = g.precisions_cholesky_from_covariances(cov, "full")
    params = g.GaussianParams("full", weights, means, cov, pc)
    merged = selection.merge_closest_components(params)
    assert merged.n_components == 2
    np.testing.assert_allclose(merged.weights, [0.5, 0.5])
    np.testing.assert_allclose(merged.means[0], [0.06, 0.0])
    d = means[0] - means[1]
    expected = 0.4 * cov[0] + 0.6 * cov[1] + 0.24 * np.outer(d, d)
    np.testing.assert_allclose(merged.covariances[0], expected)
    np.testing.assert_allclose(merged.means[1], means[2])
    for cov_type, c in (
        ("diag", np.ones((3, 2))),
        ("spherical", np.ones(3)),
        ("tied", np.eye(2)),
    ):
        pc, _ = g.precisions_cholesky_from_covariances(c, cov_type)
        m = selection.merge_closest_components(
            g.GaussianParams(cov_type, weights, means, c, pc)
        )
        assert m.n_components == 2 and m.covariance_type == cov_type
        np.testing.assert_allclose(m.means[0], [0.06, 0.0])
    one = g.GaussianParams("full", np.ones(1), means[:1], cov[:1], pc[:1])
    assert selection.merge_closest_components(one) is None


@pytest.mark.filterwarnings("ignore::fastem.ConvergenceWarning")
def test_integer_weights_equal_repeated_rows(X):
    rng = np.random.RandomState(0)
    w = rng.randint(1, 4, size=len(X))
    Xr = np.repeat(X, w, axis=0)
    kw = dict(min_components=1, max_components=4, random_state=0, tol=1e-8)
    a = fastem.GaussianMixtureIC(**kw).fit(X, sample_weight=w)
    b = fastem.GaussianMixtureIC(**kw).fit(Xr)
    assert a.best_params_ == b.best_params_
    assert a.best_criterion_ == pytest.approx(b.best_criterion_, rel=1e-5)
    assert a.bic(X, sample_weight=w) == pytest.approx(a.best_criterion_, rel=1e-10)
    # The penalty uses n = sum(w).
    t = a.criterion_table_
    np.testing.assert_allclose(
        np.asarray(t["bic"]) - np.asarray(t["aic"]),
        np.asarray(t["n_parameters"]) * (np.log(w.sum()) - 2),
        rtol=1e-9,
    )


def test_verbose_and_callback(X, capsys):
    records = []

    def callback(record):
        records.append(record)
        return len(records) == 6

    ic = fastem.GaussianMixtureIC(1, 5, verbose=1, callback=callback).fit(X)
    err = capsys.readouterr().err
    assert "[1/20] n_components=1, covariance_type='full': bic=" in err
    assert "[6/20] n_components=2, covariance_type='tied'" in err
    assert "[7/20]" not in err
    assert len(records) == 6
    assert set(records[0]) == set(selection.TABLE_COLUMNS)
    assert len(ic.criterion_table_["bic"]) == 6
    assert not np.asarray(ic.criterion_table_["refined"]).any()


def test_table_without_pandas(X, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    ic = fastem.GaussianMixtureIC(1, 2, random_state=0).fit(X)
    t = ic.criterion_table_
    assert isinstance(t, dict)
    assert list(t) == list(selection.TABLE_COLUMNS)
    assert all(isinstance(v, np.ndarray) and v.shape == (8,) for v in t.values())
    assert t["n_components"].dtype == np.int64
    assert t["converged"].dtype == bool


def test_table_with_pandas(X):
    pd = pytest.importorskip("pandas")
    ic = fastem.GaussianMixtureIC(1, 2, random_state=0).fit(X)
    t = ic.criterion_table_
    assert isinstance(t, pd.DataFrame)
    assert list(t.columns) == list(selection.TABLE_COLUMNS)
    assert len(t) == 8


def test_failed_models_get_infinite_criterion():
    rng = np.random.RandomState(0)
    X = np.c_[rng.randn(200), np.ones(200)]  # a constant column
    ic = fastem.GaussianMixtureIC(
        1, 2, covariance_type=["full", "spherical"], reg_covar=0.0, random_state=0
    )
    with pytest.warns(UserWarning, match="could not be fitted"):
        ic.fit(X)
    t = ic.criterion_table_
    full = np.asarray(t["covariance_type"]) == "full"
    assert np.isinf(np.asarray(t["bic"])[full]).all()
    assert np.isfinite(np.asarray(t["bic"])[~full]).all()
    assert ic.covariance_type_ == "spherical"
    assert np.isfinite(ic.best_estimator_.covariances_).all()


def test_all_models_failing_raises():
    X = np.c_[np.arange(50.0), np.ones(50)]
    ic = fastem.GaussianMixtureIC(1, 1, covariance_type="full", reg_covar=0.0)
    with pytest.raises(ValueError, match="No model"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ic.fit(X)


def test_float32_and_no_mutation(X):
    X32 = X.astype(np.float32)
    X0 = X32.copy()
    ic = fastem.GaussianMixtureIC(1, 3, random_state=0).fit(X32)
    np.testing.assert_array_equal(X32, X0)
    assert ic.best_estimator_.means_.dtype == np.float64
    ic64 = fastem.GaussianMixtureIC(1, 3, random_state=0).fit(X)
    assert ic.best_params_ == ic64.best_params_
    assert ic.best_criterion_ == pytest.approx(ic64.best_criterion_, rel=1e-4)


def test_kernels_compile_once(X):
    fastem.GaussianMixtureIC(1, 2, random_state=0).fit(X)
    kernels = (
        _k.estep_full,
        _k.estep_full_small,
        _k.estep_tied,
        _k.estep_diag,
        _k.estep_spherical,
    )
    before = [len(k.signatures) for k in kernels]
    fastem.GaussianMixtureIC(2, 4, random_state=1).fit(X)
    assert [len(k.signatures) for k in kernels] == before


def test_estimator_conventions(X):
    ic = fastem.GaussianMixtureIC(2, 3, covariance_type=("diag", "full"))
    params = ic.get_params()
    assert params["covariance_type"] == ("diag", "full")
    assert params["min_components"] == 2
    sk_base = pytest.importorskip("sklearn.base")
    assert sk_base.clone(ic).get_params() == params
    assert "max_components=3" in repr(ic)
    with pytest.raises(fastem.NotFittedError):
        ic.predict(X)
    ic.fit(X)
    assert ic.n_features_in_ == 2
    assert ic.best_params_["covariance_type"] in ("diag", "full")
    assert not hasattr(fastem.GaussianMixtureIC(), "best_estimator_")


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"min_components": 0}, ValueError, "min_components"),
        ({"min_components": 1.5}, TypeError, "min_components"),
        ({"min_components": 4, "max_components": 3}, ValueError, "max_components"),
        ({"max_components": 1000}, ValueError, "max_components"),
        ({"covariance_type": "banana"}, ValueError, "covariance_type"),
        ({"covariance_type": []}, ValueError, "covariance_type"),
        ({"covariance_type": ["full", "full"]}, ValueError, "covariance_type"),
        ({"covariance_type": ["full", "x"]}, ValueError, "covariance_type"),
        ({"covariance_type": 3}, TypeError, "covariance_type"),
        ({"criterion": "mdl"}, ValueError, "criterion"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"refine": "yes"}, TypeError, "refine"),
        ({"init_params": "x"}, ValueError, "init_params"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"callback": 1}, TypeError, "callback"),
        ({"random_state": "x"}, ValueError, "random_state"),
    ],
)
def test_bad_parameters(X, params, error, match):
    with pytest.raises(error, match=match):
        fastem.GaussianMixtureIC(**params).fit(X)


def test_bad_data(X):
    ic = fastem.GaussianMixtureIC(1, 3)
    with pytest.raises(ValueError, match="X"):
        ic.fit(X[:, 0])
    with pytest.raises(ValueError, match="sample_weight"):
        ic.fit(X, sample_weight=-np.ones(len(X)))
    w = np.zeros(len(X))
    w[:2] = 1.0
    with pytest.raises(ValueError, match="sample_weight"):
        ic.fit(X, sample_weight=w)
