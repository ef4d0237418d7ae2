"""fastem against the plain-numpy reference EM in ``_reference.py``.

The reference is first checked against scikit-learn (unweighted), then used
for what scikit-learn cannot do: sample weights, integer and not, with zero
entries.  Measured agreement is ~1e-13; asserted 1e-10 (parameters, lower
bounds) and 1e-9 (per-row outputs).
"""

from __future__ import annotations

import numpy as np
import pytest
from _reference import (
    COVARIANCE_TYPES,
    fit,
    initial_parameters,
    mixture_from_precisions,
    n_parameters,
    predict,
    predict_proba,
    score_samples,
)
from _testing import assert_close, fit_unconverged, sklearn_fit_unconverged
from sklearn.mixture import GaussianMixture as SklearnGM

import fastem

RTOL = 1e-10
RTOL_PER_ROW = 1e-9
N_ITER = 15
K = 4


def _weights(kind: str, n: int) -> np.ndarray | None:
    rng = np.random.RandomState(11)
    if kind == "none":
        return None
    if kind == "integer":
        return rng.randint(1, 5, n).astype(np.float64)
    if kind == "real":
        return rng.uniform(0.05, 4.0, n)
    if kind == "with_zeros":
        w = rng.uniform(0.5, 2.0, n)
        w[rng.rand(n) < 0.3] = 0.0
        return w
    raise ValueError(kind)


def _assert_matches_reference(model, ref, rtol=RTOL):
    assert_close(model.weights_, ref.weights, rtol, "weights_")
    assert_close(model.means_, ref.means, rtol, "means_")
    assert_close(model.covariances_, ref.covariances, rtol, "covariances_")
    assert_close(model.precisions_, ref.precisions(), rtol, "precisions_")
    assert_close(
        model.precisions_cholesky_, ref.precisions_cholesky(), rtol, "prec_chol"
    )
    assert_close(model.lower_bounds_, ref.lower_bounds, rtol, "lower_bounds_")


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_reference_agrees_with_sklearn(blobs, cov):
    """The reference itself is right (unweighted, where sklearn applies)."""
    inits = initial_parameters(blobs, K, cov, seed=2)
    ref = fit(
        blobs,
        mixture_from_precisions(
            inits["weights_init"],
            inits["means_init"],
            inits["precisions_init"],
            cov,
        ),
        n_iter=N_ITER,
    )
    sk = SklearnGM(K, covariance_type=cov, tol=0.0, max_iter=N_ITER, **inits)
    sklearn_fit_unconverged(sk, blobs)
    _assert_matches_reference(sk, ref)


@pytest.fixture(
    scope="module",
    params=[
        (cov, kind)
        for cov in COVARIANCE_TYPES
        for kind in ("none", "integer", "real", "with_zeros")
    ],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def weighted_pair(request, blobs):
    cov, kind = request.param
    sw = _weights(kind, blobs.shape[0])
    inits = initial_parameters(blobs, K, cov, seed=4, sample_weight=sw)
    start = mixture_from_precisions(
        inits["weights_init"], inits["means_init"], inits["precisions_init"], cov
    )
    ref = fit(blobs, start, n_iter=N_ITER, sample_weight=sw)
    model = fastem.GaussianMixture(
        K, covariance_type=cov, tol=0.0, max_iter=N_ITER, **inits
    )
    fit_unconverged(model, blobs, sample_weight=sw)
    return blobs, sw, ref, model


def test_weighted_fit_matches_reference(weighted_pair):
    _, _, ref, model = weighted_pair
    _assert_matches_reference(model, ref)
    assert model.lower_bound_ == model.lower_bounds_[-1]


def test_per_row_outputs_match_reference(weighted_pair):
    X, _, _, model = weighted_pair
    # Evaluate the reference densities at the fitted parameters.
    fitted = mixture_from_precisions(
        model.weights_, model.means_, model.precisions_, model.covariance_type
    )
    assert_close(model.score_samples(X), score_samples(X, fitted), RTOL_PER_ROW)
    np.testing.assert_allclose(
        model.predict_proba(X), predict_proba(X, fitted), rtol=0, atol=RTOL_PER_ROW
    )
    np.testing.assert_array_equal(model.predict(X), predict(X, fitted))


def test_weighted_score_and_criteria(weighted_pair):
    """``score``/``bic``/``aic`` with weights use the weighted log-likelihood
    and ``n = sum(weights)`` (documented), from the reference densities."""
    X, sw, _, model = weighted_pair
    fitted = mixture_from_precisions(
        model.weights_, model.means_, model.precisions_, model.covariance_type
    )
    logp = score_samples(X, fitted)
    w = np.ones(X.shape[0]) if sw is None else sw
    loglik = float(w @ logp)
    p = n_parameters(model.covariance_type, K, X.shape[1])
    expected = {
        "score": loglik / w.sum(),
        "bic": -2 * loglik + p * np.log(w.sum()),
        "aic": -2 * loglik + 2 * p,
    }
    for method, want in expected.items():
        got = getattr(model, method)(X, sample_weight=sw)
        assert abs(got - want) <= RTOL_PER_ROW * abs(want), method
