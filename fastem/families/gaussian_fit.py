"""Gaussian mixtures on the generic driver: initialisation, E/M steps over a
data source, and the re-seeding policy for degenerate components."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .. import _kmeans
from ..sources import ArraySource, ordered_sum
from . import gaussian as g

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


class TiedScatterMemo:
    """E-step passes over a source that sum the tied total scatter only once.

    The second moment of a ``tied`` E-step is the total scatter ``sum_i w_i
    (x_i - c)(x_i - c)^T`` around the mixture mean ``c`` (a row's
    responsibilities add up to its weight), so it depends on the parameters
    only through ``c``.  The first pass over a source sums it; later passes
    over the same source skip it, which is a third of a tied E-step's flops
    at D = 64, and move the remembered one to their own ``c``
    (:meth:`~fastem.families.gaussian.GaussianStats.reshift`, exact up to
    rounding: after the first M-step ``c`` is the weighted data mean and
    hardly moves).  Other covariance types pass straight through.
    """

    def __init__(self) -> None:
        self._first: tuple[object, g.GaussianStats] | None = None

    def e_step(
        self,
        source,
        params: g.GaussianParams,
        n_threads: int | None = None,
        log_norm: np.ndarray | None = None,
    ) -> g.GaussianStats:
        """``source.map_reduce(gaussian.e_step, params, ...)``."""
        if params.covariance_type != "tied":
            return source.map_reduce(g.e_step, params, n_threads, log_norm)
        if self._first is not None and self._first[0] is source:
            if log_norm is None:
                log_norm = g._log_norm(params)
            stats = source.map_reduce(g.e_step, params, n_threads, log_norm, False)
            moved = self._first[1].reshift(stats.shift)
            joint = g.expected_log_joint(
                stats.nk, stats.sum_x, moved.sum_xx, stats.shift, params, log_norm
            )
            return replace(
                stats,
                sum_xx=moved.sum_xx,
                expected_log_joint=joint,
                total_first=moved.total_first,
            )
        stats = source.map_reduce(g.e_step, params, n_threads, log_norm)
        self._first = (source, stats)
        return stats


class GaussianEM:
    """The Gaussian family as seen by :func:`fastem.em.fit_em`.

    Parameters
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reg_covar : float
        Added to the covariance diagonals.
    n_threads : int or None
        Threads for the kernels.
    """

    def __init__(self, covariance_type: str, reg_covar: float, n_threads=None):
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.n_threads = n_threads
        self._passes = TiedScatterMemo()

    # -- the driver protocol ------------------------------------------------

    def e_step(self, source, params: g.GaussianParams) -> g.GaussianStats:
        return self._passes.e_step(source, params, self.n_threads)

    def m_step(self, stats: g.GaussianStats):
        return g.m_step(stats, self.reg_covar)

    def reseed(self, source, params: g.GaussianParams, degenerate: list[int]):
        """Move each degenerate component to one of the worst-explained rows.

        The component gets that row as its mean, the weight-averaged
        covariance of the healthy components (or the data variance when none
        is healthy), and weight ``1/K``; the other weights are scaled to sum
        to ``1 - len(degenerate)/K``.  This is the k-means practice of
        re-seeding empty clusters at far-away points.  It can lower the
        likelihood of the next iteration; a
        :class:`~fastem.exceptions.DegenerateComponentWarning` is emitted.
        """
        cov = self.covariance_type
        K = params.means.shape[0]
        bad = np.asarray(degenerate)
        good = np.setdiff1d(np.arange(K), bad)
        weights = params.weights.copy()
        means = params.means.copy()
        covariances = params.covariances.copy()
        if cov != "tied":
            if good.size:
                gw = weights[good] / weights[good].sum()
                pooled = np.tensordot(gw, covariances[good], axes=1)
            else:
                var = self._data_variance(source) + self.reg_covar
                pooled = {"full": np.diag(var), "diag": var, "spherical": var.mean()}[
                    cov
                ]
            covariances[bad] = pooled
        weights[bad] = 0.0
        probe = g.GaussianParams(
            cov,
            np.where(weights > 0, weights, 0.0),
            means,
            covariances,
            g.precisions_cholesky_from_covariances(covariances, cov)[0],
        )
        if good.size:
            rows = self._worst_rows(source, probe, len(bad))
        else:
            rows = self._random_rows(source, len(bad))
        means[bad] = source.rows(rows)
        new_w = np.full(K, 1.0 / K)
        if good.size:
            new_w[good] = weights[good] / weights[good].sum() * (1 - len(bad) / K)
        prec, still_bad = g.precisions_cholesky_from_covariances(covariances, cov)
        if still_bad:
            raise ValueError(
                "Fitting the mixture model failed because some components have "
                "ill-defined empirical covariance (for instance caused by singleton "
                "or collapsed samples). Try to decrease the number of components, "
                "or increase reg_covar."
            )
        return g.GaussianParams(cov, new_w, means, covariances, prec)

    # -- helpers ---------------------------------------------------------------

    def _worst_rows(self, source, params, count):
        """Indices of the ``count`` rows (with positive weight) of lowest
        log-density under ``params``."""
        scores = np.concatenate(
            source.map_chunks(_chunk_scores, params, self.n_threads)
        )
        order = (
            np.argpartition(scores, count - 1)[:count]
            if count < scores.size
            else np.arange(scores.size)
        )
        return np.sort(order[np.argsort(scores[order], kind="stable")])

    def _random_rows(self, source, count):
        rng = np.random.RandomState(0)
        return np.sort(_kmeans.sample_rows(rng, source.n_samples, count))

    def _data_variance(self, source):
        """Per-feature (weighted) variance of the data, around its first row."""
        origin = source.rows(np.array([0]))[0]
        moments = source.map_reduce(_chunk_moments, origin)
        total, s1, s2 = moments[0], moments[1::2], moments[2::2]
        return np.maximum(s2 / total - (s1 / total) ** 2, 0.0)


def _chunk_scores(X, w, params, n_threads):
    """Per-row log-likelihood, +inf for rows of weight zero."""
    lse, _, _ = g.per_row(X, params, log_likelihood=True, n_threads=n_threads)
    return np.where(w > 0, lse, np.inf) if w.shape[0] else lse


def _chunk_moments(X, w, origin):
    """``[sum w, (sum w z_d, sum w z_d^2) for each d]`` with ``z = x - origin``."""
    ww = w if w.shape[0] else np.ones(X.shape[0])
    z = np.asarray(X, dtype=np.float64) - origin
    out = np.empty(1 + 2 * X.shape[1])
    out[0] = ww.sum()
    out[1::2] = ww @ z
    out[2::2] = ww @ (z * z)
    return out


# ---------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------


def initial_params(
    source,
    n_components: int,
    covariance_type: str,
    reg_covar: float,
    init_params: str,
    rng: np.random.RandomState,
    *,
    weights_init=None,
    means_init=None,
    precisions_init=None,
    n_threads=None,
) -> g.GaussianParams:
    """Initial parameters, as scikit-learn's ``_initialize_parameters``.

    Responsibilities come from ``init_params``; the user-given
    ``weights_init``/``means_init``/``precisions_init`` then override the
    corresponding estimates.  When all three are given no data pass is made.
    """
    cov = covariance_type
    if (
        weights_init is not None
        and means_init is not None
        and precisions_init is not None
    ):
        stats = None
    else:
        stats = _initial_stats(source, n_components, cov, init_params, rng, n_threads)
    if stats is not None:
        params, _ = g.m_step(stats, reg_covar)
        weights, means, covariances = params.weights, params.means, params.covariances
    else:
        weights = means = covariances = None
    if weights_init is not None:
        weights = np.array(weights_init, dtype=np.float64)
    if means_init is not None:
        means = np.array(means_init, dtype=np.float64)
    if precisions_init is not None:
        prec_chol = g.precisions_cholesky_from_precisions(
            np.asarray(precisions_init, dtype=np.float64), cov
        )
        covariances = g.covariances_from_precisions_cholesky(prec_chol, cov)
    else:
        prec_chol, bad = g.precisions_cholesky_from_covariances(covariances, cov)
        if bad:
            raise ValueError(
                "Initial covariance of component(s) "
                f"{bad} is not positive definite; increase reg_covar."
            )
    return g.GaussianParams(cov, weights, means, covariances, prec_chol)


def _initial_stats(source, n_components, cov, init_params, rng, n_threads):
    """Statistics of the initial responsibilities (scikit-learn's four
    methods); out-of-core sources run k-means on a uniform row sample."""
    K = n_components
    if init_params == "kmeans":
        Xs, ws = _kmeans_rows(source, rng)
        centers = _kmeans.kmeans(Xs, ws, K, rng, n_threads)
        scatter = source.map_reduce(_label_scatter, centers, n_threads)
        return scatter.to_stats(cov)
    if init_params == "k-means++":
        Xs, ws = _kmeans_rows(source, rng)
        idx = _kmeans.kmeans_plusplus(Xs, ws, K, rng, n_threads)
        points = np.asarray(Xs[idx], dtype=np.float64)
        return _point_stats(points, ws[idx] if ws.shape[0] else np.ones(K), cov)
    if init_params == "random_from_data":
        # Component j starts at the j-th drawn row (scikit-learn's order).
        idx = _kmeans.sample_rows(rng, source.n_samples, K)
        order = np.argsort(idx)
        points, weights = np.empty((K, source.n_features)), np.empty(K)
        points[order] = source.rows(idx[order])
        weights[order] = source.weights(idx[order])
        return _point_stats(points, weights, cov)
    center = source.rows(np.array([0]))[0]
    if source.n_chunks == 1:
        # The same random stream as scikit-learn's rng.uniform(size=(N, K)).
        ((X, w),) = source.chunks()
        return _random_scatter(X, w, K, center, rng).to_stats(cov)
    # One seed per chunk, so chunks can be processed anywhere in any order.
    seeds = rng.randint(np.iinfo(np.int32).max, size=source.n_chunks)
    return ordered_sum(
        _random_scatter(X, w, K, center, np.random.RandomState(seed))
        for (X, w), seed in zip(source.chunks(), seeds, strict=True)
    ).to_stats(cov)


def _kmeans_rows(source, rng):
    """Rows k-means runs on: all rows of an in-memory source (``kmeans``
    subsamples by itself), or a uniform sample of an out-of-core one."""
    if isinstance(source, ArraySource):
        return source.X, source.sample_weight
    n = min(source.n_samples, _kmeans.KMEANS_SUBSAMPLE)
    idx = np.sort(_kmeans.sample_rows(rng, source.n_samples, n))
    weighted = source.total_weight != source.n_samples
    return source.rows(idx), source.weights(idx) if weighted else np.empty(0)


@dataclass(frozen=True)
class _Scatter:
    """Per-component weight, first moment and full scatter around per-component
    shifts; additive over chunks (the initialisers' common currency)."""

    nk: np.ndarray
    sum_x: np.ndarray
    scatter: np.ndarray
    shift: np.ndarray

    def __add__(self, other: _Scatter) -> _Scatter:
        return _Scatter(
            self.nk + other.nk,
            self.sum_x + other.sum_x,
            self.scatter + other.scatter,
            self.shift,
        )

    def to_stats(self, cov: str) -> g.GaussianStats:
        return g.stats_from_scatter(cov, self.nk, self.sum_x, self.scatter, self.shift)


def _label_scatter(X, w, centers, n_threads):
    """Scatter of the hard assignment of the rows to their nearest center,
    around the centers (one assignment pass; no per-row output)."""
    shift = np.ascontiguousarray(centers, dtype=np.float64)
    a = _kmeans.assignment(X, w, shift, n_threads, per_row=False, scatter=True)
    return _Scatter(a.counts, a.sums, g._symmetrize_lower(a.scatter), shift)


def _point_stats(points, weights, cov):
    """One-hot responsibilities on the chosen rows (sklearn's
    ``random_from_data`` and ``k-means++`` initialisations)."""
    K, D = points.shape
    nk = np.asarray(weights, dtype=np.float64)
    return g.stats_from_scatter(cov, nk, np.zeros((K, D)), np.zeros((K, D, D)), points)


def _random_scatter(X, w, K, center, rng, piece=1 << 16):
    """Uniform random responsibilities normalised per row (sklearn's
    ``random``), accumulated piece by piece around ``center``."""
    D = X.shape[1]
    nk, sx, sxx = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
    for r0 in range(0, X.shape[0], piece):
        xc = np.asarray(X[r0 : r0 + piece], dtype=np.float64) - center
        resp = rng.uniform(size=(xc.shape[0], K))
        resp /= resp.sum(axis=1, keepdims=True)
        if w.shape[0]:
            resp *= w[r0 : r0 + piece, None]
        nk += resp.sum(axis=0)
        sx += resp.T @ xc
        for k in range(K):
            sxx[k] += (resp[:, k, None] * xc).T @ xc
    return _Scatter(nk, sx, sxx, np.broadcast_to(center, (K, D)).copy())
