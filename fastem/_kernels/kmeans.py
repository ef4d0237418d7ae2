"""Kernels for initialisation: k-means++ seeding, and Lloyd iterations with
the sufficient statistics of their hard assignment.

All reductions use per-task slices (leading axis of the outputs) added by the
caller in task order, so results do not depend on the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._config import KERNEL, SERIAL
from ._claim import claim_task


@njit(**SERIAL)
def _sq_dist(X, i, C, k):
    D = X.shape[1]
    acc = 0.0
    for d in range(D):
        t = X[i, d] - C[k, d]
        acc += t * t
    return acc


@njit(**KERNEL)
def candidate_potentials(X, sw, candidates, closest, task_rows, out, queue):
    """``out[t, c] = sum_i w_i min(closest_i, ||x_i - candidate_c||^2)`` over
    the rows of task t (the k-means++ potential after adding candidate c)."""
    N = X.shape[0]
    C = candidates.shape[0]
    has_w = sw.shape[0] > 0
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        for i in range(t * task_rows, min(N, (t + 1) * task_rows)):
            w = sw[i] if has_w else 1.0
            for c in range(C):
                d = _sq_dist(X, i, candidates, c)
                out[t, c] += w * min(d, closest[i])


@njit(**KERNEL)
def lloyd_step(
    X,
    sw,
    centers,
    task_rows,
    sums,
    counts,
    inertia,
    labels,
    dist,
    scatter,
    queue,
):
    """Assign every row to its nearest center and accumulate, per task, the
    statistics of that hard assignment around the centers ``c_k``:
    ``counts[t, k] = sum w``, ``sums[t, k] = sum w (x - c_k)``, the weighted
    inertia ``inertia[t] = sum w ||x - c_k||^2`` and, when ``scatter`` has
    rows, the lower triangle of ``scatter[t, k] = sum w (x - c_k)(x -
    c_k)^T``.  ``labels`` and ``dist`` (squared distance to the nearest
    center) are written per row when they have rows.

    Sums around the centers stay accurate for data far from the origin, and
    one kernel serves both the Lloyd iterations and the initial scatter of
    the mixture (a second kernel cost ~0.4 s of every cold first fit)."""
    N, D = X.shape
    K = centers.shape[0]
    has_w = sw.shape[0] > 0
    want_labels = labels.shape[0] > 0
    want_dist = dist.shape[0] > 0
    want_scatter = scatter.shape[0] > 0
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        z = np.empty(D)
        for i in range(t * task_rows, min(N, (t + 1) * task_rows)):
            best = 0
            best_d = _sq_dist(X, i, centers, best)
            for k in range(1, K):
                d = _sq_dist(X, i, centers, k)
                if d < best_d:
                    best_d = d
                    best = k
            if want_labels:
                labels[i] = best
            if want_dist:
                dist[i] = best_d
            w = sw[i] if has_w else 1.0
            if w == 0.0:
                continue
            counts[t, best] += w
            inertia[t] += w * best_d
            for d in range(D):
                z[d] = X[i, d] - centers[best, d]
                sums[t, best, d] += w * z[d]
            if want_scatter:
                for a in range(D):
                    wa = w * z[a]
                    for b in range(a + 1):
                        scatter[t, best, a, b] += wa * z[b]
