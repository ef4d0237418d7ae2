"""Properties that hold for every input: EM never decreases the likelihood,
and the result does not depend on threads, memory layout or row order."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
from _reference import COVARIANCE_TYPES, initial_parameters
from _testing import assert_bit_identical, assert_same_model, fit_unconverged
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastem
from fastem._layout import n_tasks

# ---------------------------------------------------------------------------
# Monotonicity
# ---------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, derandomize=True)
@given(
    n_samples=st.integers(20, 200),
    n_features=st.integers(1, 4),
    n_components=st.integers(1, 4),
    cov=st.sampled_from(COVARIANCE_TYPES),
    weighted=st.booleans(),
    init=st.sampled_from(["kmeans", "random", "explicit"]),
    separation=st.sampled_from([0.5, 2.0, 6.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_lower_bound_never_decreases(
    make_mixture,
    n_samples,
    n_features,
    n_components,
    cov,
    weighted,
    init,
    separation,
    seed,
):
    """Every EM iteration's lower bound is >= the previous one, to rounding.

    The theorem is about exact EM, so ``reg_covar=0``: with ``reg_covar > 0``
    the M-step does not maximise the expected log-likelihood, and a
    component that collapses onto a single point can lower the bound (by
    ~3e-3 relative on N=25, D=1, K=4 'full'; scikit-learn does the same).
    ``init_params`` 'k-means++' and 'random_from_data' start from zero
    covariances, which ``reg_covar=0`` rejects, so they are left out.  A fit
    that re-seeds a degenerate component (DegenerateComponentWarning) may go
    down by design and is discarded.
    """
    X, _ = make_mixture(
        n_samples, n_features, n_components, seed=seed, separation=separation
    )
    rng = np.random.RandomState(seed % 9973)
    sw = rng.uniform(0.0, 3.0, n_samples) if weighted else None
    if init == "explicit":
        kwargs = initial_parameters(X, n_components, cov, seed, sample_weight=sw)
    else:
        kwargs = {"init_params": init, "random_state": seed}
    model = fastem.GaussianMixture(
        n_components, covariance_type=cov, reg_covar=0.0, tol=0.0, max_iter=30, **kwargs
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X, sample_weight=sw)
        except ValueError as exc:
            # reg_covar=0 and a start with a singleton cluster: documented.
            assume("positive definite" not in str(exc))
            raise
    categories = [w.category for w in caught]
    assert not [c for c in categories if issubclass(c, numba.NumbaWarning)]
    assume(fastem.DegenerateComponentWarning not in categories)
    assert fastem.ConvergenceWarning in categories  # tol=0 never converges

    bounds = np.asarray(model.lower_bounds_)
    assert bounds.shape == (30,)
    assert np.isfinite(bounds).all()
    slack = 1e-9 * np.abs(bounds[:-1]) + 1e-12
    drops = bounds[:-1] - bounds[1:]
    assert np.all(drops <= slack), (drops.max(), bounds)


# ---------------------------------------------------------------------------
# Determinism: threads, memory layout
# ---------------------------------------------------------------------------

N_LARGE = 50_000


@pytest.fixture(scope="module")
def large(make_mixture):
    X, _ = make_mixture(N_LARGE, 3, 3, seed=31, separation=3.0)
    sw = np.random.RandomState(32).uniform(0.5, 2.0, N_LARGE)
    return X, sw


@pytest.mark.skipif(
    numba.config.NUMBA_NUM_THREADS < 2, reason="needs numba with >= 2 threads"
)
@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("mode", ["explicit", "explicit-weighted", "kmeans"])
def test_one_and_two_threads_are_bit_identical(large, cov, mode):
    X, sw = large
    assert n_tasks(*X.shape) >= 4, "test data must span several tasks"
    weights = sw if mode == "explicit-weighted" else None
    if mode.startswith("explicit"):
        kwargs = initial_parameters(X, 3, cov, seed=33, sample_weight=weights)
    else:
        kwargs = {"init_params": "kmeans", "random_state": 34}

    def run(n_threads):
        model = fastem.GaussianMixture(
            3, covariance_type=cov, tol=0.0, max_iter=4, n_threads=n_threads, **kwargs
        )
        return fit_unconverged(model, X, sample_weight=weights)

    one, two = run(1), run(2)
    assert_bit_identical(one, two)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))
    np.testing.assert_array_equal(one.score_samples(X), two.score_samples(X))


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_memory_layout_does_not_matter(make_mixture, cov):
    """A Fortran-ordered copy and a strided view give the same model as the
    C-contiguous rows, bit for bit."""
    base, _ = make_mixture(600, 3, 3, seed=35)
    X = np.ascontiguousarray(base[::2])
    kwargs = dict(
        n_components=3,
        covariance_type=cov,
        tol=0.0,
        max_iter=8,
        **initial_parameters(X, 3, cov, seed=36),
    )
    ref = fit_unconverged(fastem.GaussianMixture(**kwargs), X)
    for variant in (np.asfortranarray(X), base[::2]):
        assert not variant.flags.c_contiguous
        other = fit_unconverged(fastem.GaussianMixture(**kwargs), variant)
        assert_bit_identical(ref, other)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_row_order_does_not_matter(make_mixture, cov):
    """Permuting rows (and their weights) changes only rounding."""
    X, _ = make_mixture(300, 3, 3, seed=37)
    sw = np.random.RandomState(38).uniform(0.5, 2.0, X.shape[0])
    perm = np.random.RandomState(39).permutation(X.shape[0])
    kwargs = dict(
        n_components=3,
        covariance_type=cov,
        tol=0.0,
        max_iter=15,
        **initial_parameters(X, 3, cov, seed=40),
    )
    a = fit_unconverged(fastem.GaussianMixture(**kwargs), X, sw)
    b = fit_unconverged(fastem.GaussianMixture(**kwargs), X[perm], sw[perm])
    assert_same_model(a, b, 1e-10)
