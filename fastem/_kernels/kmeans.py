"""Kernels for initialisation: k-means++ seeding, Lloyd iterations, and the
sufficient statistics of a hard assignment.

All reductions use per-task slices (leading axis of the outputs) added by the
caller in task order, so results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._config import KERNEL, SERIAL


@njit(**SERIAL)
def _sq_dist(X, i, C, k):
    D = X.shape[1]
    acc = 0.0
    for d in range(D):
        t = X[i, d] - C[k, d]
        acc += t * t
    return acc


@njit(**KERNEL)
def candidate_potentials(
    X, sw, candidates, closest, task_rows, out, task_begin, task_end
):
    """``out[t, c] = sum_i w_i min(closest_i, ||x_i - candidate_c||^2)`` over
    the rows of task t (the k-means++ potential after adding candidate c)."""
    N = X.shape[0]
    C = candidates.shape[0]
    has_w = sw.shape[0] > 0
    for t in range(task_begin, task_end):
        for i in range(t * task_rows, min(N, (t + 1) * task_rows)):
            w = sw[i] if has_w else 1.0
            for c in range(C):
                d = _sq_dist(X, i, candidates, c)
                out[t, c] += w * min(d, closest[i])


@njit(**KERNEL)
def lloyd_step(
    X, sw, centers, task_rows, sums, counts, inertia, labels, dist, task_begin, task_end
):
    """Assign every row to its nearest center; accumulate per task the
    weighted sums and counts of each cluster and the weighted inertia.
    ``labels`` and ``dist`` (squared distance to the nearest center) are
    written per row."""
    N, D = X.shape
    K = centers.shape[0]
    has_w = sw.shape[0] > 0
    for t in range(task_begin, task_end):
        for i in range(t * task_rows, min(N, (t + 1) * task_rows)):
            best = 0
            best_d = _sq_dist(X, i, centers, best)
            for k in range(1, K):
                d = _sq_dist(X, i, centers, k)
                if d < best_d:
                    best_d = d
                    best = k
            labels[i] = best
            dist[i] = best_d
            w = sw[i] if has_w else 1.0
            counts[t, best] += w
            inertia[t] += w * best_d
            for d in range(D):
                sums[t, best, d] += w * X[i, d]


@njit(**KERNEL)
def label_scatter(X, sw, labels, shift, task_rows, nk, sx, sxx, task_begin, task_end):
    """Statistics of a hard assignment around per-cluster shifts:
    ``nk[t, k] = sum w``, ``sx[t, k] = sum w (x - s_k)``, and the lower
    triangle of ``sxx[t, k] = sum w (x - s_k)(x - s_k)^T``."""
    N, D = X.shape
    has_w = sw.shape[0] > 0
    for t in range(task_begin, task_end):
        z = np.empty(D)
        for i in range(t * task_rows, min(N, (t + 1) * task_rows)):
            k = labels[i]
            w = sw[i] if has_w else 1.0
            if w == 0.0:
                continue
            nk[t, k] += w
            for d in range(D):
                z[d] = X[i, d] - shift[k, d]
                sx[t, k, d] += w * z[d]
            for a in range(D):
                wa = w * z[a]
                for b in range(a + 1):
                    sxx[t, k, a, b] += wa * z[b]
