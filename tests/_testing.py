"""Small assertion and fitting helpers shared by the test modules."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import fastem

#: Threads for the tests that run kernels on more than one: 2 (CI's
#: cores), or 1 where numba has one (``NUMBA_NUM_THREADS=1``), so that
#: they still check their results there.
SOME_THREADS = min(2, numba.config.NUMBA_NUM_THREADS)


def needs_threads(n_threads: int) -> None:
    """Skip the calling test where numba has fewer than ``n_threads``
    threads (a comparison of 1 and 2 threads means nothing on one)."""
    if n_threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(
            f"needs {n_threads} numba threads "
            f"(NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})"
        )


def thread_counts(*counts: int) -> list:
    """``counts`` as ``pytest.mark.parametrize`` values; the ones above
    numba's thread count are skipped."""
    return [
        pytest.param(
            n,
            marks=pytest.mark.skipif(
                n > numba.config.NUMBA_NUM_THREADS, reason=f"needs {n} numba threads"
            ),
        )
        for n in counts
    ]


FITTED_ARRAYS = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "precisions_cholesky_",
)


def assert_close(actual, desired, rtol: float, err_msg: str = "") -> None:
    """Norm-wise relative comparison.

    Every element must satisfy ``|a - d| <= rtol * max|d|``: the error is
    measured against the scale of the whole array, so that entries that are
    zero or nearly zero (off-diagonal covariances, tiny probabilities) do not
    demand an impossible elementwise relative accuracy.
    """
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    assert actual.shape == desired.shape, (actual.shape, desired.shape, err_msg)
    assert np.isfinite(actual).all(), f"non-finite values {err_msg}"
    scale = float(np.max(np.abs(desired))) if desired.size else 0.0
    np.testing.assert_allclose(
        actual, desired, rtol=0.0, atol=rtol * scale, err_msg=err_msg
    )


def assert_labels_agree(labels, reference_proba, tie: float) -> None:
    """Labels equal the argmax of reference probabilities, except on rows
    where the two best reference probabilities are within ``tie``."""
    reference_proba = np.asarray(reference_proba)
    top2 = np.sort(reference_proba, axis=1)[:, -2:]
    differ = np.asarray(labels) != np.argmax(reference_proba, axis=1)
    assert np.all(top2[differ, 1] - top2[differ, 0] < tie), np.flatnonzero(differ)


def assert_same_model(a, b, rtol: float, *, offset: float = 0.0) -> None:
    """Fitted arrays and lower bounds of two estimators agree to ``rtol``.

    ``b`` may have been fitted on data translated by ``offset``: its means are
    compared after subtracting the offset.
    """
    for name in FITTED_ARRAYS:
        got = getattr(b, name) - (offset if name == "means_" else 0.0)
        assert_close(got, getattr(a, name), rtol, err_msg=name)
    assert_close(b.lower_bounds_, a.lower_bounds_, rtol, err_msg="lower_bounds_")
    assert_close(b.lower_bound_, a.lower_bound_, rtol, err_msg="lower_bound_")


def assert_bit_identical(a, b) -> None:
    """Every fitted array and lower bound of two estimators is equal."""
    for name in FITTED_ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), name)
    assert a.lower_bounds_ == b.lower_bounds_
    assert a.n_iter_ == b.n_iter_


def fit_unconverged(model, X, sample_weight=None):
    """Fit a model whose run cannot converge (``tol=0``), asserting the
    documented :class:`fastem.ConvergenceWarning`."""
    with pytest.warns(fastem.ConvergenceWarning):
        model.fit(X, sample_weight=sample_weight)
    return model


def sklearn_fit_unconverged(model, X):
    """Same for a scikit-learn estimator."""
    from sklearn.exceptions import ConvergenceWarning

    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    return model
