"""fastem.GaussianMixture against sklearn.mixture.GaussianMixture.

Both estimators start from the same ``weights_init``/``means_init``/
``precisions_init`` (random rows and the shrunk data covariance, built by
the test reference, not by either library) and run exactly 20 EM iterations
(``tol=0``).  EM is deterministic, so the fitted models must agree to
rounding.

Tolerances (norm-wise relative, see ``_testing.assert_close``): measured
differences are 1e-16..1e-12 on every case; the fitted parameters and lower
bounds are required to agree to 1e-10 and per-row outputs to 1e-9, which
leaves two orders of magnitude for summation-order changes in the kernels
while still catching any formula difference (those show up at 1e-3 or
worse).
"""

from __future__ import annotations

import numpy as np
import pytest
from _reference import COVARIANCE_TYPES, initial_parameters
from _testing import (
    assert_close,
    assert_labels_agree,
    assert_same_model,
    fit_unconverged,
    sklearn_fit_unconverged,
)
from sklearn.mixture import GaussianMixture as SklearnGM

import fastem

RTOL_PARAMS = 1e-10
RTOL_PER_ROW = 1e-9
N_ITER = 20

CASES = (
    [("iris", 3, cov) for cov in COVARIANCE_TYPES]
    + [("wine", 3, cov) for cov in COVARIANCE_TYPES]
    + [("digits", 10, cov) for cov in ("diag", "spherical")]
    + [("digits_pca", 8, cov) for cov in COVARIANCE_TYPES]
    + [("blobs", 4, cov) for cov in COVARIANCE_TYPES]
    + [("blobs2d", 5, cov) for cov in COVARIANCE_TYPES]
    + [("blobs1d", 3, cov) for cov in COVARIANCE_TYPES]
)


def _kwargs(X, n_components, cov, seed=0):
    return dict(
        n_components=n_components,
        covariance_type=cov,
        tol=0.0,
        max_iter=N_ITER,
        **initial_parameters(X, n_components, cov, seed=seed),
    )


@pytest.fixture(
    scope="module", params=CASES, ids=[f"{n}-K{k}-{c}" for n, k, c in CASES]
)
def pair(request, datasets):
    """(X, sklearn model, fastem model) fitted from the same start."""
    name, n_components, cov = request.param
    X = datasets[name]
    kwargs = _kwargs(X, n_components, cov)
    sk = sklearn_fit_unconverged(SklearnGM(**kwargs), X)
    fe = fit_unconverged(fastem.GaussianMixture(**kwargs), X)
    return X, sk, fe


def test_fitted_parameters(pair):
    _, sk, fe = pair
    assert_same_model(sk, fe, RTOL_PARAMS)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(fe, name).shape == getattr(sk, name).shape
        assert getattr(fe, name).dtype == np.float64


def test_run_bookkeeping(pair):
    X, sk, fe = pair
    assert fe.n_iter_ == sk.n_iter_ == N_ITER
    assert len(fe.lower_bounds_) == N_ITER
    assert fe.converged_ is False and sk.converged_ is False
    assert fe.lower_bound_ == fe.lower_bounds_[-1]
    assert fe.n_features_in_ == X.shape[1]


def test_per_row_outputs(pair):
    X, sk, fe = pair
    assert_close(fe.score_samples(X), sk.score_samples(X), RTOL_PER_ROW)
    proba_fe, proba_sk = fe.predict_proba(X), sk.predict_proba(X)
    np.testing.assert_allclose(proba_fe, proba_sk, rtol=0, atol=RTOL_PER_ROW)
    np.testing.assert_allclose(proba_fe.sum(axis=1), 1.0, rtol=1e-12)
    labels_fe = fe.predict(X)
    assert labels_fe.shape == (X.shape[0],)
    np.testing.assert_array_equal(np.argmax(proba_sk, axis=1), sk.predict(X))
    # Labels may only differ where sklearn itself sees a near-tie.
    assert_labels_agree(labels_fe, proba_sk, tie=1e-8)


def test_scores_and_criteria(pair):
    X, sk, fe = pair
    for method in ("score", "bic", "aic"):
        got, want = getattr(fe, method)(X), getattr(sk, method)(X)
        assert abs(got - want) <= RTOL_PER_ROW * abs(want), method


# ---------------------------------------------------------------------------
# Data far from the origin
# ---------------------------------------------------------------------------

OFFSET = 1e6
# Measured: 1e-11..2e-10 (parameters), 3e-9 (score_samples).  scikit-learn
# on X + 1e6 directly loses ~6 digits, which is why it runs on X.
RTOL_OFFSET = 1e-8
RTOL_OFFSET_PER_ROW = 5e-8


@pytest.mark.parametrize("name", ["iris", "blobs", "blobs2d"])
@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_translation_by_1e6(datasets, name, cov):
    """EM is translation-equivariant: fastem on X + 1e6 (means_init shifted)
    equals scikit-learn on X, with means shifted by the offset and all other
    parameters, bounds and per-row outputs unchanged."""
    X = datasets[name]
    K = 3 if name == "iris" else 4
    kwargs = _kwargs(X, K, cov, seed=3)
    sk = sklearn_fit_unconverged(SklearnGM(**kwargs), X)
    shifted = dict(kwargs, means_init=kwargs["means_init"] + OFFSET)
    Xs = X + OFFSET
    fe = fit_unconverged(fastem.GaussianMixture(**shifted), Xs)

    assert_same_model(sk, fe, RTOL_OFFSET, offset=OFFSET)
    assert np.all(fe.means_ > OFFSET / 2)
    assert_close(fe.score_samples(Xs), sk.score_samples(X), RTOL_OFFSET_PER_ROW)
    np.testing.assert_allclose(
        fe.predict_proba(Xs), sk.predict_proba(X), rtol=0, atol=RTOL_OFFSET_PER_ROW
    )
