"""Gaussian mixtures with missing values (NaN): exact EM, per-row outputs,
imputation and posterior draws.

A fit splits the rows once (:func:`fastem._patterns.split_rows`).  Complete
rows go through the complete-data kernels unchanged; incomplete rows, grouped
by missingness pattern, go through :mod:`fastem._kernels.gaussian_missing`.
Both produce :class:`~fastem.families.gaussian.GaussianStats` with the same
definitions (the missing coordinates of a row contribute their conditional
expectations), so the statistics add and the complete-data M-step is reused
unchanged.  This is the EM algorithm for incomplete data of Ghahramani &
Jordan (1994) and Little & Rubin (2002, ch. 8 and 11), valid when values are
missing at random.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .._kernels import gaussian_missing as _km
from .._layout import block_rows, n_tasks, task_rows
from .._parallel import run_tasks
from .._patterns import (
    IncompleteRows,
    column_means,
    fill_with,
    group_incomplete,
    missing_block_rows,
    split_rows,
)
from ..sources import ArraySource
from . import gaussian as g
from .gaussian_fit import GaussianEM

# ---------------------------------------------------------------------------
# Kernel arguments
# ---------------------------------------------------------------------------


def _arg(a) -> np.ndarray:
    """A parameter array as the kernels take it: a float64, C-ordered,
    writeable copy (read-only arrays, e.g. of a loaded model, would compile
    a second signature)."""
    return np.array(a, dtype=np.float64, order="C")


def _prec_arrays(params: g.GaussianParams) -> tuple[np.ndarray, np.ndarray]:
    """``(prec_chol, prec)`` as the kernels take them (float64, C order)."""
    cov = params.covariance_type
    pc = params.precisions_cholesky
    K, D = params.n_components, params.n_features
    if cov == "full":
        prec = np.einsum("kij,klj->kil", pc, pc)
        return _arg(pc), _arg(prec)
    if cov == "tied":
        return _arg(pc), _arg(pc @ pc.T)
    if cov == "spherical":
        pc = np.repeat(pc[:, None], D, axis=1)
    return _arg(pc.reshape(K, D)), np.empty((0, 0))


def _tasks(inc: IncompleteRows) -> tuple[int, int, int]:
    """Tasks, rows per task and rows per block (functions of the shape only)."""
    n, D = inc.X.shape
    return n_tasks(n, D), task_rows(n, D), block_rows(D)


def e_step(
    inc: IncompleteRows, params: g.GaussianParams, n_threads: int | None = None
) -> g.GaussianStats:
    """Statistics and observed-data log-likelihood of incomplete rows.

    Same definitions as :func:`fastem.families.gaussian.e_step` (around the
    float64 means, or mixture mean for ``tied``), with each missing coordinate contributing its conditional expectation
    given the observed ones (and, to the second moments, the conditional
    covariance), so the result adds to the statistics of complete rows.
    """
    D = inc.X.shape[1]
    K = params.n_components
    cov = params.covariance_type
    T, rows, block = _tasks(inc)
    nk = np.zeros((T, K))
    sx = np.zeros((T, K, D))
    acc = np.zeros((T, 3))
    log_norm = _arg(g._log_norm(params))
    means = _arg(params.means)
    pc, prec = _prec_arrays(params)
    args = (inc.X, inc.sample_weight, inc.starts, inc.index, inc.n_observed, log_norm)
    if cov == "full":
        sxx = np.zeros((T, K, D, D))
        block = missing_block_rows(D, K)  # the kernel keeps (K, D, block)
        kernel, middle, shift = _km.estep_missing_full, (means, pc, prec), means
    elif cov == "tied":
        sxx = np.zeros((T, D, D))
        center = _arg(g._tied_terms(params)[0])
        kernel, middle = _km.estep_missing_tied, (means, center, pc, prec)
        shift = np.broadcast_to(center, (K, D)).copy()
    else:
        sxx = np.zeros((T, K, D))
        kernel, middle, shift = _km.estep_missing_diag, (means, pc), means
    run_tasks(
        kernel, T, *args, *middle, rows, block, nk, sx, sxx, acc, n_threads=n_threads
    )
    sum_xx = sxx.sum(axis=0)
    if cov in ("full", "tied"):
        sum_xx = g._symmetrize_lower(sum_xx)
    elif cov == "spherical":
        sum_xx = sum_xx.sum(axis=1)
    return g.GaussianStats(
        cov,
        nk.sum(axis=0),
        sx.sum(axis=0),
        sum_xx,
        shift.copy(),
        *(float(v) for v in acc.sum(axis=0)),
    )


def rows_outputs(
    inc: IncompleteRows,
    params: g.GaussianParams,
    *,
    log_likelihood: bool = False,
    responsibilities: bool = False,
    labels: bool = False,
    fill: bool = False,
    draws: tuple[np.ndarray, np.ndarray] | None = None,
    n_threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-row outputs for incomplete rows, in ``inc`` order.

    ``draws = (u, z)`` with ``u`` uniform ``(n_draws, n)`` and ``z`` standard
    normal ``(n_draws, n, D)`` asks for posterior draws of the missing values.
    Returns a dict with the keys asked for: ``log_likelihood``,
    ``responsibilities``, ``labels``, ``fill``, ``draws``.  ``full`` and
    ``tied`` need ``inc`` grouped by pattern; ``diag`` and ``spherical`` do
    not.
    """
    n, D = inc.X.shape
    K = params.n_components
    cov = params.covariance_type
    T, rows, _ = _tasks(inc)
    block = missing_block_rows(D, K)
    pc, prec = _prec_arrays(params)
    out = {
        "log_likelihood": np.empty(n if log_likelihood else 0),
        "responsibilities": np.empty((n if responsibilities else 0, K)),
        "labels": np.empty(n if labels else 0, dtype=np.int64),
        "fill": np.empty((n if fill else 0, D)),
    }
    if draws is not None:
        u, z = (_arg(a) for a in draws)
        out["draws"] = np.empty((u.shape[0], n, D))
    else:
        u, z = np.empty((0, 0)), np.empty((0, 0, 0))
        out["draws"] = np.empty((0, 0, 0))
    outs = (
        out["log_likelihood"],
        out["responsibilities"],
        out["labels"],
        out["fill"],
        u,
        z,
        out["draws"],
    )
    if n:
        log_norm = _arg(g._log_norm(params))
        means = _arg(params.means)
        grouped = (inc.X, inc.starts, inc.index, inc.n_observed, log_norm, means)
        if cov == "full":
            kernel, inputs = _km.rows_missing_full, (*grouped, pc, prec)
        elif cov == "tied":
            center = _arg(g._tied_terms(params)[0])
            kernel, inputs = _km.rows_missing_tied, (*grouped, center, pc, prec)
        else:
            kernel, inputs = _km.rows_missing_diag, (inc.X, log_norm, means, pc)
        run_tasks(kernel, T, *inputs, rows, block, *outs, n_threads=n_threads)
    wanted = {
        "log_likelihood": log_likelihood,
        "responsibilities": responsibilities,
        "labels": labels,
        "fill": fill,
        "draws": draws is not None,
    }
    return {name: out[name] for name, flag in wanted.items() if flag}


def _grouped(params: g.GaussianParams) -> bool:
    """Whether the per-row kernel of this covariance type needs the rows
    grouped by pattern."""
    return params.covariance_type in ("full", "tied")


# ---------------------------------------------------------------------------
# Per-row outputs, imputation and draws for any validated X (NaN allowed)
# ---------------------------------------------------------------------------


def per_row(
    X: np.ndarray,
    params: g.GaussianParams,
    *,
    log_likelihood: bool = False,
    responsibilities: bool = False,
    labels: bool = False,
    n_threads: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """:func:`fastem.families.gaussian.per_row` for rows that may hold NaN:
    the missing coordinates of a row are marginalised out."""
    complete, inc = split_rows(X, np.empty(0), group=_grouped(params))
    if inc.n_samples == 0:
        return g.per_row(
            X,
            params,
            log_likelihood=log_likelihood,
            responsibilities=responsibilities,
            labels=labels,
            n_threads=n_threads,
        )
    want = {
        "log_likelihood": log_likelihood,
        "responsibilities": responsibilities,
        "labels": labels,
    }
    N, K = X.shape[0], params.n_components
    full = {
        "log_likelihood": np.empty(N),
        "responsibilities": np.empty((N, K)),
        "labels": np.empty(N, dtype=np.int64),
    }
    if complete.shape[0]:
        parts = g.per_row(X[complete], params, n_threads=n_threads, **want)
        for name, part in zip(want, parts, strict=True):
            if part is not None:
                full[name][complete] = part
    parts = rows_outputs(inc, params, n_threads=n_threads, **want)
    for name, part in parts.items():
        full[name][inc.rows] = part
    return tuple(full[name] if flag else None for name, flag in want.items())


def stats(
    X: np.ndarray,
    sample_weight: np.ndarray,
    params: g.GaussianParams,
    n_threads: int | None = None,
) -> g.GaussianStats:
    """Statistics of validated rows that may hold NaN: complete rows through
    the complete-data kernel (without NaN: exactly
    :func:`fastem.families.gaussian.e_step`), the others grouped by pattern
    through the missing-value kernels."""
    complete, inc = split_rows(X, sample_weight)
    if inc.n_samples == 0:
        return g.e_step(X, sample_weight, params, n_threads)
    out = e_step(inc, params, n_threads)
    if complete.shape[0]:
        w = sample_weight[complete] if sample_weight.shape[0] else sample_weight
        part = g.e_step(
            np.ascontiguousarray(X[complete]),
            np.ascontiguousarray(w),
            params,
            n_threads,
        )
        out = part + out
    return out


def impute(
    X: np.ndarray, params: g.GaussianParams, n_threads: int | None = None
) -> np.ndarray:
    """Copy of ``X`` with each NaN replaced by its conditional mean under the
    mixture, ``sum_k p(k | x_O) E[x_M | x_O, k]`` (same dtype as ``X``)."""
    out = X.copy()
    _, inc = split_rows(X, np.empty(0), group=_grouped(params))
    if inc.n_samples:
        out[inc.rows] = rows_outputs(inc, params, fill=True, n_threads=n_threads)[
            "fill"
        ]
    return out


def sample_missing(
    X: np.ndarray,
    params: g.GaussianParams,
    n_draws: int,
    rng: np.random.RandomState,
    n_threads: int | None = None,
) -> np.ndarray:
    """``n_draws`` copies of ``X`` with the NaN entries drawn from their
    posterior predictive distribution ``p(x_M | x_O)``; shape
    ``(n_draws, n_samples, n_features)``.

    For every draw and row, a component is drawn from ``p(k | x_O)`` and the
    missing values from the conditional Gaussian of that component.  The
    random numbers come from ``rng`` (uniforms, then standard normals), so a
    seeded ``rng`` gives the same draws for any thread count.
    """
    N, D = X.shape
    out = np.broadcast_to(X, (n_draws, N, D)).copy()
    _, inc = split_rows(X, np.empty(0), group=_grouped(params))
    if inc.n_samples:
        u = rng.uniform(size=(n_draws, inc.n_samples))
        z = rng.standard_normal(size=(n_draws, inc.n_samples, D))
        drawn = rows_outputs(inc, params, draws=(u, z), n_threads=n_threads)["draws"]
        out[:, inc.rows] = drawn
    return out


# ---------------------------------------------------------------------------
# The data source and family seen by the generic EM driver
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingArraySource:
    """Rows of an in-memory array with NaN entries, split once per fit.

    Attributes
    ----------
    X : ndarray
        The validated data (NaN allowed), never modified.
    sample_weight : ndarray of shape (n_samples,) or (0,)
    complete : ndarray of int64
        Indices of the complete rows.
    X_complete, w_complete : ndarray
        Copies of the complete rows (dtype of ``X``) and their weights.
    incomplete : IncompleteRows
        The other rows, float64, grouped by missingness pattern.
    fill_values : ndarray of shape (n_features,)
        Weighted column means of the observed values, used for
        initialisation and re-seeding.
    """

    X: np.ndarray
    sample_weight: np.ndarray
    complete: np.ndarray
    X_complete: np.ndarray
    w_complete: np.ndarray
    incomplete: IncompleteRows
    fill_values: np.ndarray

    @cached_property
    def complete_rows(self) -> ArraySource:
        """The complete rows as a source of their own (one object per fit, so
        :class:`~fastem.families.gaussian_fit.TiedScatterMemo` recognises
        it from pass to pass)."""
        return ArraySource(self.X_complete, self.w_complete)

    @classmethod
    def from_array(cls, X: np.ndarray, sample_weight: np.ndarray):
        fill_values = column_means(X, sample_weight)
        complete, inc = split_rows(X, sample_weight)
        w_c = sample_weight[complete] if sample_weight.shape[0] else np.empty(0)
        return cls(
            X,
            sample_weight,
            complete,
            np.ascontiguousarray(X[complete]),
            np.ascontiguousarray(w_c),
            inc,
            fill_values,
        )

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.X.dtype

    @property
    def total_weight(self) -> float:
        if self.sample_weight.shape[0] == 0:
            return float(self.n_samples)
        return float(self.sample_weight.sum())

    def filled(self) -> ArraySource:
        """The data with NaN replaced by the column means (a new array),
        as an :class:`~fastem.sources.ArraySource` for initialisation."""
        return ArraySource(fill_with(self.X, self.fill_values), self.sample_weight)

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Rows at ``index`` as float64, NaN replaced by the column means."""
        return fill_with(np.asarray(self.X[index], dtype=np.float64), self.fill_values)

    def weights(self, index: np.ndarray) -> np.ndarray:
        if self.sample_weight.shape[0] == 0:
            return np.ones(len(index))
        return self.sample_weight[index]


class GaussianMissingEM(GaussianEM):
    """:class:`~fastem.families.gaussian_fit.GaussianEM` over a
    :class:`MissingArraySource`: complete rows through the complete-data
    kernel, incomplete rows through the missing-value kernel, statistics
    added (complete rows first, so the sum is deterministic)."""

    def e_step(self, source: MissingArraySource, params: g.GaussianParams):
        stats = None
        if source.X_complete.shape[0]:
            stats = self._passes.e_step(source.complete_rows, params, self.n_threads)
        if source.incomplete.n_samples:
            extra = e_step(source.incomplete, params, self.n_threads)
            # GaussianStats.__add__ re-expresses ``extra`` around the complete
            # rows' shift (the float32 kernels shift by float32-rounded means).
            stats = extra if stats is None else stats + extra
        return stats

    def _worst_rows(self, source: MissingArraySource, params, count):
        """Rows (with positive weight) of lowest observed-data log-density."""
        scores = np.empty(source.n_samples)
        if source.X_complete.shape[0]:
            scores[source.complete] = g.per_row(
                source.X_complete, params, log_likelihood=True, n_threads=self.n_threads
            )[0]
        inc = source.incomplete
        if inc.n_samples:
            scores[inc.rows] = rows_outputs(
                inc, params, log_likelihood=True, n_threads=self.n_threads
            )["log_likelihood"]
        if source.sample_weight.shape[0]:
            scores = np.where(source.sample_weight > 0, scores, np.inf)
        order = (
            np.argpartition(scores, count - 1)[:count]
            if count < scores.size
            else np.arange(scores.size)
        )
        return np.sort(order[np.argsort(scores[order], kind="stable")])

    def _data_variance(self, source: MissingArraySource):
        """Weighted variance of the observed values of every column."""
        X = source.X
        observed = ~np.isnan(X)
        w = (
            source.sample_weight
            if source.sample_weight.shape[0]
            else np.ones(source.n_samples)
        )
        wo = observed * w[:, None]
        dev = np.where(observed, X - source.fill_values, 0.0)
        return (wo * dev**2).sum(axis=0) / wo.sum(axis=0)


def fit_parts(X: np.ndarray, sample_weight: np.ndarray):
    """``(source, init_source)`` for a fit on ``X`` with NaN: the split data
    and a zero-argument callable giving the column-mean-filled data for the
    initialisation (built on demand, so it is not kept during EM)."""
    source = MissingArraySource.from_array(X, sample_weight)
    return source, source.filled


__all__ = [
    "GaussianMissingEM",
    "IncompleteRows",
    "MissingArraySource",
    "e_step",
    "fit_parts",
    "group_incomplete",
    "impute",
    "per_row",
    "rows_outputs",
    "sample_missing",
    "stats",
]
