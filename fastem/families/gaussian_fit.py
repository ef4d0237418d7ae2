"""Gaussian mixtures on the generic driver: initialisation, E/M steps over a
data source, and the re-seeding policy for degenerate components."""

from __future__ import annotations

import numpy as np

from .. import _kmeans
from .._kernels import kmeans as _kk
from .._layout import n_tasks, task_rows
from .._parallel import kernel_threads
from . import gaussian as g

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


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

    # -- the driver protocol ------------------------------------------------

    def e_step(self, source, params: g.GaussianParams) -> g.GaussianStats:
        total = None
        for X, w in source.chunks():
            stats = g.e_step(X, w, params, self.n_threads)
            total = stats if total is None else total + stats
        return total

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
        scores = []
        for X, w in source.chunks():
            lse, _, _ = g.per_row(
                X, params, log_likelihood=True, n_threads=self.n_threads
            )
            if w.shape[0]:
                lse = np.where(w > 0, lse, np.inf)
            scores.append(lse)
        scores = np.concatenate(scores)
        order = (
            np.argpartition(scores, count - 1)[:count]
            if count < scores.size
            else np.arange(scores.size)
        )
        return np.sort(order[np.argsort(scores[order], kind="stable")])

    def _random_rows(self, source, count):
        rng = np.random.RandomState(0)
        return np.sort(rng.choice(source.n_samples, count, replace=False))

    def _data_variance(self, source):
        total, s1, s2 = 0.0, 0.0, 0.0
        for X, w in source.chunks():
            ww = w if w.shape[0] else np.ones(X.shape[0])
            mean = np.average(X, axis=0, weights=ww)
            s1 = s1 + ww.sum() * mean
            s2 = s2 + (ww[:, None] * (X - mean) ** 2).sum(axis=0) + ww.sum() * mean**2
            total += ww.sum()
        mean = s1 / total
        return np.maximum(s2 / total - mean**2, 0.0)


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
    K = n_components
    if init_params == "kmeans":
        X, w = _single_chunk(source)
        centers = _kmeans.kmeans(X, w, K, rng, n_threads)
        labels = _kmeans.assign(X, w, centers, n_threads)
        return _label_stats(X, w, labels, centers, cov, n_threads)
    if init_params == "k-means++":
        X, w = _single_chunk(source)
        idx = _kmeans.kmeans_plusplus(X, w, K, rng, n_threads)
        return _point_stats(source, idx, cov)
    if init_params == "random_from_data":
        idx = rng.choice(source.n_samples, size=K, replace=False)
        return _point_stats(source, idx, cov)
    return _random_resp_stats(source, K, cov, rng)


def _single_chunk(source):
    chunks = list(source.chunks())
    if len(chunks) != 1:
        raise NotImplementedError("k-means initialisation needs an in-memory source")
    return chunks[0]


def _label_stats(X, w, labels, shift, cov, n_threads):
    N, D = X.shape
    K = shift.shape[0]
    T, rows = n_tasks(N, D), task_rows(N, D)
    nk, sx, sxx = np.zeros((T, K)), np.zeros((T, K, D)), np.zeros((T, K, D, D))
    shift = np.ascontiguousarray(shift, dtype=np.float64)
    with kernel_threads(n_threads):
        _kk.label_scatter(X, w, labels, shift, rows, nk, sx, sxx)
    scatter = g._symmetrize_lower(sxx.sum(axis=0))
    return g.stats_from_scatter(cov, nk.sum(axis=0), sx.sum(axis=0), scatter, shift)


def _point_stats(source, idx, cov):
    """One-hot responsibilities on the chosen rows (sklearn's
    ``random_from_data`` and ``k-means++`` initialisations)."""
    idx = np.asarray(idx)
    points = source.rows(idx)
    K, D = points.shape
    nk = source.weights(idx).astype(np.float64)
    return g.stats_from_scatter(cov, nk, np.zeros((K, D)), np.zeros((K, D, D)), points)


def _random_resp_stats(source, K, cov, rng, chunk=1 << 16):
    """Uniform random responsibilities, normalised per row (sklearn's
    ``random``), accumulated chunk by chunk around the data mean."""
    D = source.n_features
    center = None
    nk, sx, sxx = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
    for X, w in source.chunks():
        if center is None:
            ww = w if w.shape[0] else None
            center = np.average(X, axis=0, weights=ww).astype(np.float64)
        for r0 in range(0, X.shape[0], chunk):
            xc = np.asarray(X[r0 : r0 + chunk], dtype=np.float64) - center
            resp = rng.uniform(size=(xc.shape[0], K))
            resp /= resp.sum(axis=1, keepdims=True)
            if w.shape[0]:
                resp *= w[r0 : r0 + chunk, None]
            nk += resp.sum(axis=0)
            sx += resp.T @ xc
            for k in range(K):
                sxx[k] += (resp[:, k, None] * xc).T @ xc
    shift = np.broadcast_to(center, (K, D)).copy()
    return g.stats_from_scatter(cov, nk, sx, sxx, shift)
