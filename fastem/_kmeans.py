"""k-means++ seeding and Lloyd's k-means, used to initialise mixtures.

Randomness comes from a numpy ``RandomState`` in Python; the kernels are
deterministic, so a seed gives the same centers for any thread count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels import kmeans as _k
from ._layout import n_tasks, task_rows
from ._parallel import run_tasks

#: Rows k-means runs on when ``init_params='kmeans'``; larger data are
#: subsampled (then every row is labelled by its nearest center).
KMEANS_SUBSAMPLE = 1 << 17


#: Up to this population, ``sample_rows`` uses ``RandomState.choice`` (a
#: permutation of the population, as scikit-learn does).
_PERMUTATION_LIMIT = 1 << 22


def sample_rows(rng: np.random.RandomState, population: int, size: int) -> np.ndarray:
    """``size`` distinct indices of ``range(population)``, in draw order.

    Small populations use ``rng.choice(population, size, replace=False)``
    (scikit-learn's call, which permutes the whole population); above
    :data:`_PERMUTATION_LIMIT` rows, indices are drawn with replacement and
    duplicates rejected, so memory is O(size), not O(population).
    """
    if size > population:
        raise ValueError(f"cannot draw {size} distinct rows from {population}")
    if population <= _PERMUTATION_LIMIT or 4 * size > population:
        return rng.choice(population, size, replace=False)
    drawn = np.empty(0, dtype=np.int64)
    while drawn.size < size:
        more = rng.randint(0, population, size=2 * size)
        both = np.concatenate([drawn, more])
        _, first = np.unique(both, return_index=True)
        drawn = both[np.sort(first)]
    return drawn[:size]


def kmeans_plusplus(
    X: np.ndarray,
    sample_weight: np.ndarray,
    n_clusters: int,
    rng: np.random.RandomState,
    n_threads: int | None = None,
) -> np.ndarray:
    """Indices of ``n_clusters`` rows chosen by greedy k-means++.

    The algorithm of Arthur & Vassilvitskii (2007) with ``2 + log(k)`` local
    trials per center, as scikit-learn's ``kmeans_plusplus``.

    Raises
    ------
    ValueError
        If ``X`` has fewer distinct rows (with positive weight) than
        ``n_clusters``.
    """
    N, D = X.shape
    w = sample_weight if sample_weight.shape[0] else np.ones(N)
    n_local_trials = 2 + int(np.log(n_clusters))
    T, rows = n_tasks(N, D), task_rows(N, D)
    indices = np.empty(n_clusters, dtype=np.int64)
    indices[0] = rng.choice(N, p=w / w.sum())
    closest = np.full(N, np.inf)
    _update_closest(X, sample_weight, X[indices[0]], closest, n_threads)
    potential = float(closest @ w)
    for c in range(1, n_clusters):
        if not potential > 0:
            raise ValueError(
                f"n_components={n_clusters} exceeds the number of distinct "
                f"samples with positive weight ({c})"
            )
        rand_vals = rng.uniform(size=n_local_trials) * potential
        candidates = np.searchsorted(np.cumsum(w * closest), rand_vals)
        np.clip(candidates, None, N - 1, out=candidates)
        cand_rows = np.ascontiguousarray(X[candidates], dtype=np.float64)
        pots = np.zeros((T, n_local_trials))
        run_tasks(
            _k.candidate_potentials,
            T,
            X,
            sample_weight,
            cand_rows,
            closest,
            rows,
            pots,
            n_threads=n_threads,
        )
        pots = pots.sum(axis=0)
        best = int(np.argmin(pots))
        potential = float(pots[best])
        indices[c] = candidates[best]
        _update_closest(X, sample_weight, cand_rows[best], closest, n_threads)
    # A zero potential after the last center is fine: the data may hold
    # exactly n_clusters distinct rows (the check inside the loop catches
    # too few).
    return indices


def _update_closest(X, sample_weight, center, closest, n_threads):
    """``closest = min(closest, ||x - center||^2)`` per row, in place (the
    distances come from an assignment pass with the single center, so the
    first fit compiles no kernel of its own for this)."""
    one = np.asarray(center, dtype=np.float64).reshape(1, X.shape[1])
    _, dist = nearest(X, sample_weight, one, n_threads)
    np.minimum(closest, dist, out=closest)


def lloyd(
    X: np.ndarray,
    sample_weight: np.ndarray,
    centers: np.ndarray,
    *,
    max_iter: int = 100,
    tol: float = 1e-4,
    n_threads: int | None = None,
) -> np.ndarray:
    """Lloyd iterations from ``centers``; returns the final centers.

    Stops when the squared center shift falls below ``tol`` times the mean
    feature variance (scikit-learn's convention).  An empty cluster is moved
    to the row farthest from its center.
    """
    w = sample_weight if sample_weight.shape[0] else None
    threshold = tol * float(np.mean(np.var(X, axis=0, dtype=np.float64)))
    centers = np.array(centers, dtype=np.float64)
    for _ in range(max_iter):
        a = assignment(X, sample_weight, centers, n_threads)
        new = centers.copy()
        filled = a.counts > 0
        # The sums are around the current centers: the mean is c + sum/count.
        new[filled] += a.sums[filled] / a.counts[filled, None]
        empty = np.flatnonzero(~filled)
        if empty.size:
            dist = a.dist if w is None else a.dist * (w > 0)
            far = np.argsort(dist)[::-1][: empty.size]
            new[empty] = X[far]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        if shift <= threshold and not empty.size:
            break
    return centers


@dataclass(frozen=True)
class Assignment:
    """Statistics of the hard assignment of rows to their nearest center,
    around the centers ``c_k`` (see :func:`assignment`)."""

    #: ``(K,)``: ``sum w`` per cluster.
    counts: np.ndarray
    #: ``(K, D)``: ``sum w (x - c_k)`` per cluster.
    sums: np.ndarray
    #: ``(N,)`` label and squared distance of each row, or empty arrays.
    labels: np.ndarray
    dist: np.ndarray
    #: ``(K, D, D)``: lower triangle of ``sum w (x - c_k)(x - c_k)^T``, or None.
    scatter: np.ndarray | None


def assignment(
    X: np.ndarray,
    sample_weight: np.ndarray,
    centers: np.ndarray,
    n_threads: int | None = None,
    *,
    per_row: bool = True,
    scatter: bool = False,
) -> Assignment:
    """One pass of the assignment kernel over the rows: per-cluster counts
    and sums around ``centers``, the rows' labels and squared distances when
    ``per_row``, and the per-cluster scatter when ``scatter``.  Partial sums
    are added in task order (the same result for any thread count)."""
    N, D = X.shape
    K = centers.shape[0]
    T, rows = n_tasks(N, D), task_rows(N, D)
    counts, sums = np.zeros((T, K)), np.zeros((T, K, D))
    n = N if per_row else 0
    labels, dist = np.empty(n, dtype=np.int64), np.empty(n)
    sxx = np.zeros((T, K, D, D) if scatter else (0, 0, 0, 0))
    run_tasks(
        _k.lloyd_step,
        T,
        X,
        sample_weight,
        np.ascontiguousarray(centers, dtype=np.float64),
        rows,
        sums,
        counts,
        np.zeros(T),
        labels,
        dist,
        sxx,
        n_threads=n_threads,
    )
    return Assignment(
        counts.sum(axis=0),
        sums.sum(axis=0),
        labels,
        dist,
        sxx.sum(axis=0) if scatter else None,
    )


def nearest(
    X: np.ndarray, sample_weight: np.ndarray, centers: np.ndarray, n_threads=None
) -> tuple[np.ndarray, np.ndarray]:
    """Label of the nearest center and the squared distance to it, for every
    row (one pass)."""
    a = assignment(X, sample_weight, centers, n_threads)
    return a.labels, a.dist


def assign(
    X: np.ndarray, sample_weight: np.ndarray, centers: np.ndarray, n_threads=None
) -> np.ndarray:
    """Label of the nearest center for every row (one pass)."""
    return nearest(X, sample_weight, centers, n_threads)[0]


def kmeans(
    X: np.ndarray,
    sample_weight: np.ndarray,
    n_clusters: int,
    rng: np.random.RandomState,
    n_threads: int | None = None,
) -> np.ndarray:
    """k-means++ seeding then Lloyd iterations; returns the centers.

    Runs on at most :data:`KMEANS_SUBSAMPLE` rows drawn without replacement
    (all rows when there are fewer), so initialisation stays cheaper than a
    few EM iterations on millions of rows.
    """
    N = X.shape[0]
    # float32 rows stay float32: the kernels compute in float64 against
    # float64 centers either way, and the mixture's own passes over the
    # data then use the same kernel signature (one compile fewer).
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    if N > KMEANS_SUBSAMPLE:
        idx = np.sort(sample_rows(rng, N, KMEANS_SUBSAMPLE))
        Xs = np.ascontiguousarray(X[idx], dtype=dtype)
        ws = sample_weight[idx] if sample_weight.shape[0] else sample_weight
        if ws.shape[0] and not ws.sum() > 0:
            Xs, ws = np.ascontiguousarray(X, dtype=dtype), sample_weight
    else:
        Xs, ws = np.ascontiguousarray(X, dtype=dtype), sample_weight
    try:
        seeds = kmeans_plusplus(Xs, ws, n_clusters, rng, n_threads)
    except ValueError:
        if Xs.shape[0] == N:
            raise
        # The subsample may hold fewer distinct rows than the full data.
        Xs, ws = np.ascontiguousarray(X, dtype=dtype), sample_weight
        seeds = kmeans_plusplus(Xs, ws, n_clusters, rng, n_threads)
    return lloyd(Xs, ws, np.asarray(Xs[seeds], dtype=np.float64), n_threads=n_threads)
