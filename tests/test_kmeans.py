"""k-means initialisation against a plain numpy implementation written here.

The assignment kernel (``lloyd_step``) serves both the Lloyd iterations and
the initial scatter of a mixture, so its statistics are checked in both
modes, for float64 and float32 rows, with weights that include zeros.
"""

from __future__ import annotations

import numpy as np
import pytest
from _testing import SOME_THREADS

from fastem import _kmeans
from fastem.families.gaussian_fit import _label_scatter


def _nearest_numpy(X, centers):
    d2 = ((X[:, None, :].astype(np.float64) - centers[None]) ** 2).sum(axis=2)
    labels = d2.argmin(axis=1)
    return labels, d2[np.arange(X.shape[0]), labels]


def _hard_scatter_numpy(X, w, centers):
    """Counts, sums and scatter of the nearest-center assignment, around the
    centers."""
    labels, _ = _nearest_numpy(X, centers)
    K, D = centers.shape
    nk, sx, sxx = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
    for k in range(K):
        rows = labels == k
        z = X[rows].astype(np.float64) - centers[k]
        nk[k] = w[rows].sum()
        sx[k] = w[rows] @ z
        sxx[k] = (z * w[rows, None]).T @ z
    return nk, sx, sxx


def _lloyd_numpy(X, w, centers, max_iter, tol):
    threshold = tol * float(np.mean(np.var(X, axis=0)))
    for _ in range(max_iter):
        labels, _ = _nearest_numpy(X, centers)
        new = centers.copy()
        for k in range(centers.shape[0]):
            rows = labels == k
            new[k] = w[rows] @ X[rows] / w[rows].sum()
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= threshold:
            break
    return centers


@pytest.fixture(scope="module")
def rows(make_mixture):
    X, _ = make_mixture(1500, 4, 3, seed=5)
    # Far from the origin: sums around the centers must not cancel.
    X = X + 1e4
    w = np.random.default_rng(5).uniform(0.0, 2.0, X.shape[0])
    w[::7] = 0.0
    return X, w


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_initial_scatter_matches_numpy(rows, dtype):
    X, w = rows
    X = X.astype(dtype)
    centers = X[[3, 500, 1000]].astype(np.float64) + 0.25
    got = _label_scatter(X, w, centers, SOME_THREADS)
    nk, sx, sxx = _hard_scatter_numpy(X, w, centers)
    np.testing.assert_allclose(got.nk, nk, rtol=1e-12)
    np.testing.assert_allclose(got.sum_x, sx, rtol=1e-9, atol=1e-9 * nk.max())
    scale = np.abs(sxx).max()
    np.testing.assert_allclose(got.scatter, sxx, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_array_equal(got.shift, centers)


def test_nearest_matches_numpy(rows):
    X, w = rows
    centers = X[[3, 500, 1000]] + 0.25
    labels, dist = _kmeans.nearest(X, w, centers, SOME_THREADS)
    ref_labels, ref_dist = _nearest_numpy(X, centers)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)


def test_lloyd_matches_numpy(rows):
    X, w = rows
    start = X[[3, 500, 1000]].copy()
    got = _kmeans.lloyd(X, w, start, max_iter=50, tol=1e-10, n_threads=SOME_THREADS)
    ref = _lloyd_numpy(X, w, start, max_iter=50, tol=1e-10)
    np.testing.assert_allclose(got, ref, rtol=1e-13)


@pytest.mark.parametrize("n_rows", [3_000, _kmeans.KMEANS_SUBSAMPLE + 5_000])
def test_float32_rows_give_the_centers_of_their_float64_copy(n_rows):
    """k-means runs on float32 rows as they are (the kernels compute in
    float64 against float64 centers), so the centers are exactly those of
    the float64 copy of the same rows, with and without subsampling."""
    rng = np.random.default_rng(7)
    centers = rng.normal(scale=5.0, size=(4, 3))
    X = (centers[rng.integers(0, 4, n_rows)] + rng.normal(size=(n_rows, 3))).astype(
        np.float32
    )
    w = np.empty(0)
    got = _kmeans.kmeans(X, w, 4, np.random.RandomState(3), n_threads=SOME_THREADS)
    ref = _kmeans.kmeans(
        X.astype(np.float64), w, 4, np.random.RandomState(3), SOME_THREADS
    )
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, ref)
