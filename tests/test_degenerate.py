"""Degenerate problems: empty components, underflow, constant features,
duplicate points, tiny shapes.  A fitted model never holds NaN (DESIGN.md)."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import (
    COVARIANCE_TYPES,
    initial_parameters,
    mixture_from_precisions,
    predict_proba,
    score_samples,
)
from _testing import (
    FITTED_ARRAYS,
    assert_close,
    assert_same_model,
    fit_unconverged,
    sklearn_fit_unconverged,
)
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture as SklearnGM

import fastem


def _assert_sane(model, X):
    """Finite parameters, normalised positive weights, positive-definite
    covariances, and per-row outputs that are finite and normalised."""
    for name in FITTED_ARRAYS:
        assert np.isfinite(getattr(model, name)).all(), name
    assert np.isfinite(model.lower_bounds_).all()
    np.testing.assert_allclose(model.weights_.sum(), 1.0, rtol=1e-12)
    assert (model.weights_ > 0).all()
    cov = model.covariances_
    if model.covariance_type in ("diag", "spherical"):
        assert (cov > 0).all()
    else:
        mats = cov if model.covariance_type == "full" else cov[None]
        assert all((np.linalg.eigvalsh(m) > 0).all() for m in mats)
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.isfinite(model.score_samples(X)).all()


@pytest.fixture(scope="module")
def two_blobs(make_mixture):
    X, _ = make_mixture(200, 2, 2, seed=51, separation=5.0)
    return X


def _far_start(X, cov):
    """Two components on the data and a third 1e3 away: its
    responsibilities underflow to exactly zero in the first E-step."""
    inits = initial_parameters(X, 3, cov, seed=52)
    inits["means_init"][2] = X.mean(axis=0) + 1e3
    return inits


# ---------------------------------------------------------------------------
# Empty components are re-seeded
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_empty_component_is_reseeded_as_documented(two_blobs, cov):
    """After one iteration the empty component sits on the row worst
    explained by the healthy components, with weight 1/K and (except tied)
    the weight-averaged covariance of the healthy ones (GaussianEM.reseed)."""
    X = two_blobs
    model = fastem.GaussianMixture(
        3, covariance_type=cov, tol=0.0, max_iter=1, **_far_start(X, cov)
    )
    with pytest.warns(fastem.ConvergenceWarning):
        with pytest.warns(
            fastem.DegenerateComponentWarning, match=r"component\(s\) \[2\]"
        ):
            model.fit(X)
    _assert_sane(model, X)
    np.testing.assert_allclose(model.weights_[2], 1.0 / 3.0, rtol=1e-12)

    # Worst-explained row under the two healthy components (reference).
    healthy = mixture_from_precisions(
        model.weights_[:2] / model.weights_[:2].sum(),
        model.means_[:2],
        model.precisions_[:2] if cov != "tied" else model.precisions_,
        cov,
    )
    worst = int(np.argmin(score_samples(X, healthy)))
    np.testing.assert_array_equal(model.means_[2], X[worst])
    if cov != "tied":
        w = model.weights_[:2] / model.weights_[:2].sum()
        pooled = np.tensordot(w, model.covariances_[:2], axes=1)
        assert_close(model.covariances_[2], pooled, 1e-12)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_fit_continues_after_reseeding(two_blobs, cov):
    X = two_blobs
    model = fastem.GaussianMixture(
        3, covariance_type=cov, tol=0.0, max_iter=25, **_far_start(X, cov)
    )
    with pytest.warns(fastem.ConvergenceWarning):
        with pytest.warns(fastem.DegenerateComponentWarning):
            model.fit(X)
    _assert_sane(model, X)
    assert len(model.lower_bounds_) == 25


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_zero_initial_weight(two_blobs, cov):
    """A component with weight 0 has log-weight -inf: zero responsibility
    everywhere (no NaN from -inf - -inf), then it is re-seeded."""
    inits = initial_parameters(two_blobs, 3, cov, seed=53)
    inits["weights_init"] = np.array([0.5, 0.5, 0.0])
    model = fastem.GaussianMixture(
        3, covariance_type=cov, tol=0.0, max_iter=10, **inits
    )
    with pytest.warns(fastem.ConvergenceWarning):
        with pytest.warns(fastem.DegenerateComponentWarning, match=r"\[2\]"):
            model.fit(two_blobs)
    _assert_sane(model, two_blobs)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_per_row_outputs_far_from_every_component(two_blobs, cov):
    """Rows 1e3 away from every component: every joint density underflows,
    yet log-sum-exp (max subtracted) gives the reference values."""
    model = fastem.GaussianMixture(2, covariance_type=cov, random_state=0).fit(
        two_blobs
    )
    far = two_blobs[:20] + np.array([1e3, -2e3])
    ref = mixture_from_precisions(model.weights_, model.means_, model.precisions_, cov)
    want = score_samples(far, ref)
    assert np.all(want < -1e4)  # exp() of these is 0.0
    assert_close(model.score_samples(far), want, 1e-10)
    np.testing.assert_allclose(
        model.predict_proba(far), predict_proba(far, ref), rtol=0, atol=1e-9
    )
    assert np.isfinite(logsumexp(want))


# ---------------------------------------------------------------------------
# Constant features, duplicates, tiny shapes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("level", [0.0, 3.5, 1e6])
def test_constant_feature(two_blobs, cov, level):
    """A constant column gets variance exactly reg_covar (no negative or
    NaN variance even when the constant is 1e6), and the other features
    are fitted as by scikit-learn on the same data."""
    X = np.column_stack([two_blobs, np.full(two_blobs.shape[0], level)])
    reg = 1e-4
    inits = initial_parameters(X, 2, cov, seed=54)
    kwargs = dict(
        n_components=2, covariance_type=cov, tol=0.0, max_iter=15, reg_covar=reg
    )
    model = fit_unconverged(fastem.GaussianMixture(**kwargs, **inits), X)
    _assert_sane(model, X)
    c = model.covariances_
    var = {
        "full": lambda: c[:, 2, 2],
        "tied": lambda: c[2, 2],
        "diag": lambda: c[:, 2],
        "spherical": lambda: None,
    }[cov]()
    if var is not None:
        np.testing.assert_allclose(var, reg, rtol=1e-6)
        np.testing.assert_allclose(model.means_[:, 2], level, rtol=1e-12)
    if level != 1e6:  # scikit-learn itself is unreliable at 1e6
        sk = sklearn_fit_unconverged(SklearnGM(**kwargs, **inits), X)
        assert_same_model(sk, model, 1e-9)


def _rows_sorted(A):
    return A[np.lexsort(A.T[::-1])]


def _reg_only(cov, K, D, reg=1e-6):
    """Covariances of components that each sit on a single point."""
    return {
        "full": np.broadcast_to(reg * np.eye(D), (K, D, D)),
        "tied": reg * np.eye(D),
        "diag": np.full((K, D), reg),
        "spherical": np.full(K, reg),
    }[cov]


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_duplicate_points(cov):
    """Five distinct points, each repeated 20 times, five components with
    k-means init: the exact answer is one component per point with
    covariance reg_covar (the maximum likelihood with regularisation)."""
    points = np.random.RandomState(55).uniform(-10, 10, (5, 2))
    X = np.repeat(points, 20, axis=0)
    model = fastem.GaussianMixture(5, covariance_type=cov, random_state=0).fit(X)
    assert model.converged_
    _assert_sane(model, X)
    np.testing.assert_allclose(
        _rows_sorted(model.means_), _rows_sorted(points), rtol=1e-12
    )
    np.testing.assert_allclose(model.weights_, 0.2, rtol=1e-12)
    # tied is total minus between-component scatter: rounding ~eps * var(X).
    atol = 1e-13 * X.var()
    np.testing.assert_allclose(
        model.covariances_, _reg_only(cov, 5, 2), rtol=1e-6, atol=atol
    )
    np.testing.assert_array_equal(model.predict(points), model.predict(X)[::20])


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", ["kmeans", "k-means++", "random_from_data"])
def test_as_many_components_as_samples(cov, init):
    X = np.array([[0.0, 1.0], [4.0, -2.0], [-3.0, 5.0]])
    model = fastem.GaussianMixture(
        3, covariance_type=cov, init_params=init, random_state=0
    ).fit(X)
    _assert_sane(model, X)
    np.testing.assert_allclose(_rows_sorted(model.means_), _rows_sorted(X), atol=1e-12)
    np.testing.assert_allclose(model.weights_, 1 / 3, rtol=1e-10)
    np.testing.assert_allclose(
        model.covariances_, _reg_only(cov, 3, 2), rtol=1e-6, atol=1e-13 * X.var()
    )
    np.testing.assert_array_equal(np.sort(model.predict(X)), [0, 1, 2])


@pytest.mark.parametrize("init", ["kmeans", "k-means++"])
def test_more_components_than_distinct_points(init):
    X = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]), 10, axis=0)
    with pytest.raises(ValueError, match="n_components"):
        fastem.GaussianMixture(4, init_params=init, random_state=0).fit(X)
    # Zero weights hide rows: only two distinct points remain.
    sw = np.r_[np.ones(20), np.zeros(10)]
    with pytest.raises(ValueError, match="n_components"):
        fastem.GaussianMixture(3, init_params=init, random_state=0).fit(
            X, sample_weight=sw
        )


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_one_feature_matches_sklearn(make_mixture, cov):
    X, _ = make_mixture(150, 1, 3, seed=56, separation=4.0)
    kwargs = dict(
        n_components=3,
        covariance_type=cov,
        tol=0.0,
        max_iter=20,
        **initial_parameters(X, 3, cov, seed=57),
    )
    sk = sklearn_fit_unconverged(SklearnGM(**kwargs), X)
    fe = fit_unconverged(fastem.GaussianMixture(**kwargs), X)
    assert_same_model(sk, fe, 1e-10)
    assert_close(fe.score_samples(X), sk.score_samples(X), 1e-9)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_one_component_is_the_weighted_moments(make_mixture, cov, weighted):
    """K=1 has a closed form: weight 1, the weighted mean, and the weighted
    (biased) covariance plus reg_covar; EM reaches it in one step."""
    X, _ = make_mixture(300, 3, 2, seed=58)
    sw = np.random.RandomState(59).uniform(0.1, 3.0, 300) if weighted else None
    model = fastem.GaussianMixture(1, covariance_type=cov, random_state=0).fit(
        X, sample_weight=sw
    )
    assert model.converged_ and model.n_iter_ <= 3
    w = np.ones(300) if sw is None else sw
    mean = np.average(X, axis=0, weights=w)
    emp = np.cov(X.T, aweights=w, bias=True) + 1e-6 * np.eye(3)
    expected = {
        "full": emp[None],
        "tied": emp,
        "diag": np.diag(emp)[None],
        "spherical": np.array([np.trace(emp) / 3]),
    }[cov]
    np.testing.assert_allclose(model.weights_, [1.0], rtol=1e-14)
    assert_close(model.means_, mean[None], 1e-12)
    assert_close(model.covariances_, expected, 1e-12)
    np.testing.assert_array_equal(model.predict(X), 0)
    np.testing.assert_allclose(model.predict_proba(X), 1.0, rtol=1e-14)


@pytest.mark.parametrize("n_features", [1, 3, 40])
def test_precision_factors_flag_covariances_that_are_not_positive_definite(
    n_features,
):
    """Each positive-definite covariance gets scikit-learn's factor
    (``solve_triangular(cholesky(cov), I).T``); a singular, an indefinite and
    a negative-definite one are flagged and left as the identity, and a tied
    covariance that is not positive definite is an error."""
    from scipy import linalg

    from fastem.families.gaussian import (
        SingularCovarianceError,
        precisions_cholesky_from_covariances,
    )

    rng = np.random.default_rng(n_features)
    D = n_features
    A = rng.normal(size=(D, 2 * D))
    good = A @ A.T / D + 0.1 * np.eye(D)
    singular = np.zeros((D, D))
    indefinite = good.copy()
    indefinite[-1, -1] = -1.0
    covs = np.stack([good, singular, 2.0 * good, indefinite, -good])
    factors, bad = precisions_cholesky_from_covariances(covs, "full")
    assert bad == [1, 3, 4]
    for k in (0, 2):
        lower = linalg.cholesky(covs[k], lower=True)
        expected = linalg.solve_triangular(lower, np.eye(D), lower=True).T
        np.testing.assert_allclose(factors[k], expected, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(
            factors[k] @ factors[k].T, np.linalg.inv(covs[k]), rtol=1e-9
        )
    for k in bad:
        assert np.array_equal(factors[k], np.eye(D))
    with pytest.raises(SingularCovarianceError, match="reg_covar"):
        precisions_cholesky_from_covariances(indefinite, "tied")
