"""``sample_weight`` are frequency weights (documented): properties that
follow from that definition, checked against a fit on transformed data."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import COVARIANCE_TYPES, initial_parameters
from _testing import assert_close, assert_same_model, fit_unconverged

import fastem

K = 3
N_ITER = 15
# Repeating rows changes the order of floating-point sums only: measured
# ~1e-14, asserted 1e-10.
RTOL = 1e-10


@pytest.fixture(scope="module")
def data(make_mixture):
    X, _ = make_mixture(150, 3, K, seed=21)
    counts = np.random.RandomState(22).randint(0, 4, X.shape[0])
    counts[:K] = 1  # the rows that own each true component stay in
    return X, counts


def _explicit(X, cov, sw=None):
    return dict(
        n_components=K,
        covariance_type=cov,
        tol=0.0,
        max_iter=N_ITER,
        **initial_parameters(X, K, cov, seed=5, sample_weight=sw),
    )


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(data, cov):
    X, counts = data
    kwargs = _explicit(X, cov, counts)
    weighted = fit_unconverged(fastem.GaussianMixture(**kwargs), X, counts)
    repeated = fit_unconverged(
        fastem.GaussianMixture(**kwargs), np.repeat(X, counts, axis=0)
    )
    assert_same_model(repeated, weighted, RTOL)
    # The per-row outputs are then the same functions as well.
    assert_close(weighted.score_samples(X), repeated.score_samples(X), RTOL)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_zero_weight_rows_are_ignored(data, cov):
    X, counts = data
    kwargs = _explicit(X, cov, counts)
    keep = counts > 0
    weighted = fit_unconverged(fastem.GaussianMixture(**kwargs), X, counts)
    subset = fit_unconverged(fastem.GaussianMixture(**kwargs), X[keep], counts[keep])
    assert_same_model(subset, weighted, RTOL)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_scaling_all_weights_changes_nothing(data, cov):
    X, counts = data
    kwargs = _explicit(X, cov, counts)
    a = fit_unconverged(fastem.GaussianMixture(**kwargs), X, counts)
    b = fit_unconverged(fastem.GaussianMixture(**kwargs), X, 0.37 * counts)
    assert_same_model(a, b, RTOL)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_unit_weights_equal_no_weights(data, cov):
    X, _ = data
    kwargs = _explicit(X, cov)
    a = fit_unconverged(fastem.GaussianMixture(**kwargs), X)
    b = fit_unconverged(fastem.GaussianMixture(**kwargs), X, np.ones(X.shape[0]))
    assert_same_model(a, b, 1e-13)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_integer_weights_with_kmeans_init(make_mixture, cov):
    """With the default k-means initialisation the random draws differ
    (weighted seeding vs. repeated rows), but on well-separated data both
    must reach the same optimum."""
    X, _ = make_mixture(120, 2, K, seed=23, separation=12.0)
    counts = np.random.RandomState(24).randint(1, 4, X.shape[0])
    kwargs = dict(n_components=K, covariance_type=cov, tol=1e-12, max_iter=500)
    weighted = fastem.GaussianMixture(random_state=0, **kwargs).fit(
        X, sample_weight=counts
    )
    repeated = fastem.GaussianMixture(random_state=0, **kwargs).fit(
        np.repeat(X, counts, axis=0)
    )
    assert weighted.converged_ and repeated.converged_
    order_w = np.argsort(weighted.means_[:, 0])
    order_r = np.argsort(repeated.means_[:, 0])
    for name in ("weights_", "means_", "covariances_"):
        w_attr, r_attr = getattr(weighted, name), getattr(repeated, name)
        if cov != "tied":
            w_attr, r_attr = w_attr[order_w], r_attr[order_r]
        assert_close(w_attr, r_attr, 1e-6, err_msg=name)
    assert abs(weighted.lower_bound_ - repeated.lower_bound_) < 1e-9 * abs(
        repeated.lower_bound_
    )
