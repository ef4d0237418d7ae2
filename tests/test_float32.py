"""float32 input: kept as float32 (documented), statistics in float64.

References are float64 fits of *the same numbers* (the float32 data
converted exactly to float64), so the only difference allowed is the
arithmetic precision fastem chooses for float32 densities.
"""

from __future__ import annotations

import numpy as np
import pytest
from _reference import COVARIANCE_TYPES, initial_parameters
from _testing import (
    FITTED_ARRAYS,
    assert_close,
    fit_unconverged,
    sklearn_fit_unconverged,
)
from sklearn.mixture import GaussianMixture as SklearnGM

import fastem
from fastem.families import gaussian
from fastem.kernels import make_gaussian_params

K = 3


@pytest.fixture(scope="module")
def labelled32(make_mixture):
    """Well-separated float32 data and the true component of each row."""
    return make_mixture(500, 3, K, seed=41, separation=12.0, dtype=np.float32)


@pytest.fixture(scope="module")
def data32(labelled32):
    return labelled32[0]


def _well_conditioned_start(X64, labels, cov, seed):
    """Means near the true component means (so that EM contracts and tiny
    arithmetic differences cannot send the runs to different optima)."""
    inits = initial_parameters(X64, K, cov, seed=seed)
    inits["means_init"] = np.array([X64[labels == k].mean(axis=0) for k in range(K)])
    inits["means_init"] += np.random.RandomState(seed).uniform(
        -0.5, 0.5, (K, X64.shape[1])
    )
    return inits


def _fit_float32_and_sklearn(X32, back, labels, cov, max_iter, seed, offset=0.0):
    """fastem on the float32 rows ``X32`` and scikit-learn on ``back`` (the
    same numbers in float64, shifted by ``-offset``), ``max_iter`` iterations
    from the same well-conditioned start."""
    kwargs = dict(
        n_components=K,
        covariance_type=cov,
        tol=0.0,
        max_iter=max_iter,
        **_well_conditioned_start(back, labels, cov, seed=seed),
    )
    sk = sklearn_fit_unconverged(SklearnGM(**kwargs), back)
    shifted = dict(kwargs, means_init=kwargs["means_init"] + offset)
    fe = fit_unconverged(fastem.GaussianMixture(**shifted), X32)
    _assert_healthy(fe)
    return fe, sk


def _assert_healthy(model):
    """float64, finite attributes with positive variances."""
    for name in FITTED_ARRAYS:
        value = getattr(model, name)
        assert value.dtype == np.float64, name
        assert np.isfinite(value).all(), name
    assert np.isfinite(model.lower_bounds_).all()
    cov = model.covariances_
    if model.covariance_type in ("diag", "spherical"):
        assert (cov > 0).all()
    else:
        mats = cov if model.covariance_type == "full" else cov[None]
        assert all((np.linalg.eigvalsh(m) > 0).all() for m in mats)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_float32_close_to_float64(labelled32, cov):
    data32, labels = labelled32
    X64 = data32.astype(np.float64)
    kwargs = dict(
        n_components=K,
        covariance_type=cov,
        tol=0.0,
        max_iter=20,
        **_well_conditioned_start(X64, labels, cov, seed=42),
    )
    m32 = fit_unconverged(fastem.GaussianMixture(**kwargs), data32)
    m64 = fit_unconverged(fastem.GaussianMixture(**kwargs), X64)
    _assert_healthy(m32)
    # float32 has 7 digits; 1e-4 allows single-precision densities.
    for name in FITTED_ARRAYS:
        assert_close(getattr(m32, name), getattr(m64, name), 1e-4, name)
    assert_close(m32.lower_bounds_, m64.lower_bounds_, 1e-5, "lower_bounds_")
    # Per-row outputs on float32 input.
    np.testing.assert_allclose(
        m32.predict_proba(data32), m64.predict_proba(X64), rtol=0, atol=1e-4
    )
    assert_close(m32.score_samples(data32), m64.score_samples(X64), 1e-5)
    assert np.mean(m32.predict(data32) == m64.predict(X64)) > 0.99


@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6])
@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_float32_far_from_origin(labelled32, cov, offset):
    """float32 rows around 1e4..1e6 (spacing up to 0.0625 at 1e6): variances
    stay positive and the model matches scikit-learn fitted on the same
    float32 numbers, translated back to the origin in float64 (exactly).

    Measured: ~1e-6 (full/tied) and ~1e-7 (diag/spherical) at every offset;
    a kernel that subtracts float32-rounded means from the rows loses up to
    half a float32 ulp of the offset (0.03 at 1e6) and fails this test.
    """
    data32, labels = labelled32
    X32 = (data32.astype(np.float64) + offset).astype(np.float32)
    back = X32.astype(np.float64) - offset  # exact: Sterbenz
    fe, sk = _fit_float32_and_sklearn(X32, back, labels, cov, 20, 43, offset)
    assert_close(fe.means_ - offset, sk.means_, 2e-5, "means_")
    for name in ("weights_", "covariances_", "precisions_cholesky_"):
        assert_close(getattr(fe, name), getattr(sk, name), 1e-4, name)
    assert_close(fe.lower_bounds_, sk.lower_bounds_, 1e-5, "lower_bounds_")
    proba = fe.predict_proba(X32)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba, sk.predict_proba(back), rtol=0, atol=1e-4)
    assert_close(fe.score_samples(X32), sk.score_samples(back), 1e-5)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_float32_kmeans_init_far_from_origin(data32, cov):
    """The default initialisation on float32 data at 1e6 gives a usable model."""
    X32 = (data32.astype(np.float64) + 1e6).astype(np.float32)
    model = fastem.GaussianMixture(K, covariance_type=cov, random_state=0).fit(X32)
    _assert_healthy(model)
    assert np.all(np.abs(model.means_ - 1e6) < 50)
    labels = model.predict(X32)
    assert len(np.unique(labels)) == K


def _far_components(make_mixture, n_features):
    """float32 rows of three tight components (spreads 0.5, 1, 2) 700-900
    from the origin and 300-1000 from their mixture mean, and their labels."""
    data32, labels = make_mixture(
        500, n_features, K, seed=41, separation=12.0, dtype=np.float32
    )
    spread = np.array([0.5, 1.0, 2.0])[labels]
    centre = np.array([[-700.0, 300.0, 0.0], [800.0, -400.0, 50.0], [0.0, 0.0, 900.0]])
    centre = np.tile(centre, (1, 3))[:, :n_features]
    own = np.array([data32[labels == k].mean(axis=0) for k in range(K)])
    X64 = centre[labels] + spread[:, None] * (data32.astype(np.float64) - own[labels])
    return X64.astype(np.float32), labels


@pytest.mark.parametrize("n_features", [3, 9])
@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_float32_components_far_from_the_mixture_mean(make_mixture, cov, n_features):
    """Tight components far from the mixture mean (and from each other),
    fitted on float32 rows, against scikit-learn fitted on the same numbers
    in float64.  The rows are centred on the mixture mean, not on each
    component, so statistics accumulated as raw second moments would lose
    ``eps32 (distance / spread)^2`` (about 0.06 here).  Nine features take
    the spherical kernel's matrix-product first moments (spherical mixtures
    with fewer features run the diag kernels).

    Measured (seeds 47-48, 3 and 9 features): full, diag, spherical
    covariances within 2.2e-6; tied within 1.4e-4, since the tied covariance
    is the total scatter less the spread between the means, which
    multiplies the error of each mean by ``2 distance / spread``.  Before
    the kernels widened their float32 products and moved the total scatter
    with its own float64 first moment, tied was off by 1e-3 to 2e-2."""
    X32, labels = _far_components(make_mixture, n_features)
    back = X32.astype(np.float64)
    fe, sk = _fit_float32_and_sklearn(X32, back, labels, cov, 10, 47)
    assert_close(fe.means_, sk.means_, 1e-5, "means_")
    assert_close(fe.weights_, sk.weights_, 1e-6, "weights_")
    rtol = 5e-4 if cov == "tied" else 1e-5
    assert_close(fe.covariances_, sk.covariances_, rtol, "covariances_")


@pytest.mark.parametrize("n_features", [2, 3, 9])
@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_float32_component_means_far_from_the_mixture_mean(
    make_mixture, cov, n_features
):
    """One E-step on float32 rows at the true parameters: the component
    means of its statistics against the float64 means of the same numbers.

    full, tied and diag sum each block around the component means and move
    the sums to the mixture mean in float64: measured within 1e-6, where
    ``x - c`` has a float32 spacing of 6e-5 to 1.2e-4.  Two faults each left
    1e-5 to 3e-5: products of float32 numbers meant to be float64 (numba's
    ``float()`` keeps a float32 a float32), and a centre off the data's
    grid, which rounded every row of a tight component the same way.
    spherical sums around the mixture mean, within ``eps32 |x - c|`` by
    design (:func:`fastem._kernels._blocks.accumulate_first_moments`)."""
    X32, labels = _far_components(make_mixture, n_features)
    back = X32.astype(np.float64)
    means = np.array([back[labels == k].mean(axis=0) for k in range(K)])
    weights = np.bincount(labels) / labels.size
    scatter = [np.cov(back[labels == k].T, bias=True) for k in range(K)]
    covariances = {
        "full": np.array(scatter),
        "tied": np.tensordot(weights, scatter, axes=1),
        "diag": np.array([np.diagonal(s) for s in scatter]),
        "spherical": np.array([np.trace(s) / n_features for s in scatter]),
    }[cov]
    params = make_gaussian_params(weights, means, covariances, cov)
    stats = gaussian.e_step(X32, np.empty(0), params)
    np.testing.assert_array_equal(stats.nk, np.bincount(labels))
    fitted = stats.shift + stats.sum_x / stats.nk[:, None]
    if cov == "spherical":
        distance = np.abs(back - (weights @ means)).max()
        bound = 4 * np.finfo(np.float32).eps * distance
    else:
        bound = 4e-6
    assert np.abs(fitted - means).max() <= bound
