"""Rows with missing values, grouped by missingness pattern.

Missing values are NaN entries.  A fit splits the rows once: complete rows
stay where they are (the complete-data kernels take them, so complete data pay
nothing), incomplete rows are copied to float64, sorted by pattern, so that
every per-pattern factorisation is computed once per run of equal pattern
instead of once per row.  Nothing here depends on the mixture family.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._layout import block_rows
from ._validation import all_finite

#: Most float64 elements of a kernel's per-component ``(K, D, block)`` buffer.
_BUFFER_ELEMENTS = 1 << 15
#: Rows per chunk of the column-mean pass (bounds its temporaries).
_CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class IncompleteRows:
    """Incomplete rows sorted by missingness pattern.

    Attributes
    ----------
    X : ndarray of shape (n, n_features), float64
        The rows, sorted by pattern (stable: original order within a pattern);
        missing entries are NaN and never read by the kernels.
    sample_weight : ndarray of shape (n,) or (0,)
        Their weights (length 0: unit weights).
    rows : ndarray of shape (n,), int64
        Position of each row in the original data.
    starts : ndarray of shape (n_patterns + 1,), int64
        Rows ``starts[p]:starts[p + 1]`` have pattern ``p``.
    index : ndarray of shape (n_patterns, n_features), int64
        ``index[p, :n_observed[p]]`` are the observed features of pattern
        ``p`` and ``index[p, n_observed[p]:]`` the missing ones, ascending.
    n_observed : ndarray of shape (n_patterns,), int64
    """

    X: np.ndarray
    sample_weight: np.ndarray
    rows: np.ndarray
    starts: np.ndarray
    index: np.ndarray
    n_observed: np.ndarray

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_patterns(self) -> int:
        return self.index.shape[0]

    @property
    def total_weight(self) -> float:
        if self.sample_weight.shape[0] == 0:
            return float(self.n_samples)
        return float(self.sample_weight.sum())


def _pattern_keys(mask: np.ndarray) -> np.ndarray:
    """One sortable key per row of a boolean mask: the packed bits as the
    smallest native unsigned integer that holds them (up to 64 features;
    16 or fewer sort by radix), else as raw bytes."""
    packed = np.packbits(mask, axis=1)
    width = packed.shape[1]
    if width > 8:
        return np.ascontiguousarray(packed).view(np.dtype((np.void, width))).ravel()
    size = 1 if width == 1 else 2 if width == 2 else 4 if width <= 4 else 8
    padded = np.zeros((packed.shape[0], size), dtype=np.uint8)
    padded[:, :width] = packed
    return padded.view(f">u{size}").ravel().astype(f"=u{size}")


def group_incomplete(
    X: np.ndarray,
    sample_weight: np.ndarray,
    rows: np.ndarray,
    mask: np.ndarray,
) -> IncompleteRows:
    """Group ``X[rows]`` (rows with at least one NaN; ``mask`` their NaN mask)
    by missingness pattern."""
    D = X.shape[1]
    if rows.shape[0] == 0:
        return IncompleteRows(
            np.empty((0, D)),
            np.empty(0),
            rows.astype(np.int64),
            np.zeros(1, dtype=np.int64),
            np.empty((0, D), dtype=np.int64),
            np.empty(0, dtype=np.int64),
        )
    keys = _pattern_keys(mask)
    # One stable sort: rows grouped by pattern, original order within.
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    starts = np.concatenate(([0], change, [keys.shape[0]])).astype(np.int64)
    patterns = mask[order[starts[:-1]]]
    index = np.argsort(patterns, axis=1, kind="stable").astype(np.int64)
    n_observed = (~patterns).sum(axis=1).astype(np.int64)
    sorted_rows = rows[order].astype(np.int64)
    Xm = np.ascontiguousarray(X[sorted_rows], dtype=np.float64)
    sw = sample_weight[sorted_rows] if sample_weight.shape[0] else np.empty(0)
    return IncompleteRows(
        Xm, np.ascontiguousarray(sw), sorted_rows, starts, index, n_observed
    )


def split_rows(
    X: np.ndarray, sample_weight: np.ndarray, *, group: bool = True
) -> tuple[np.ndarray, IncompleteRows]:
    """Indices of the complete rows of ``X``, and the incomplete rows grouped
    by pattern (with ``group=False``: in their original order, as one run
    whose ``index``/``n_observed`` are not filled in, for kernels that need
    no grouping).

    ``X`` is validated (NaN allowed); it is not modified.
    """
    nan = np.isnan(X)
    incomplete = nan.any(axis=1)
    inc_rows = np.flatnonzero(incomplete)
    complete = np.flatnonzero(~incomplete)
    if group:
        return complete, group_incomplete(X, sample_weight, inc_rows, nan[inc_rows])
    D = X.shape[1]
    sw = sample_weight[inc_rows] if sample_weight.shape[0] else np.empty(0)
    return complete, IncompleteRows(
        np.ascontiguousarray(X[inc_rows], dtype=np.float64),
        np.ascontiguousarray(sw),
        inc_rows.astype(np.int64),
        np.array([0, inc_rows.shape[0]], dtype=np.int64),
        np.zeros((0, D), dtype=np.int64),
        np.zeros(0, dtype=np.int64),
    )


def missing_block_rows(n_features: int, n_components: int) -> int:
    """Rows per block of the missing-value kernels: a multiple of 8 between 8
    and :func:`fastem._layout.block_rows`, small enough that the
    ``(n_components, n_features, block)`` buffer stays in cache."""
    rows = _BUFFER_ELEMENTS // max(1, n_features * n_components)
    rows = min(block_rows(n_features), rows - rows % 8)
    return int(max(8, rows))


def column_means(X: np.ndarray, sample_weight: np.ndarray) -> np.ndarray:
    """Weighted mean of the observed values of every column (float64).

    Raises
    ------
    ValueError
        If a column has no observed value with positive weight.
    """
    D = X.shape[1]
    sums = np.zeros(D)
    counts = np.zeros(D)
    has_w = sample_weight.shape[0] > 0
    for r0 in range(0, X.shape[0], _CHUNK_ROWS):
        chunk = X[r0 : r0 + _CHUNK_ROWS]
        observed = ~np.isnan(chunk)
        values = np.where(observed, chunk, 0.0).astype(np.float64, copy=False)
        if has_w:
            w = sample_weight[r0 : r0 + _CHUNK_ROWS]
            sums += w @ values
            counts += w @ observed
        else:
            sums += values.sum(axis=0)
            counts += observed.sum(axis=0)
    empty = np.flatnonzero(~(counts > 0))
    if empty.size:
        raise ValueError(
            f"X column {int(empty[0])} has no observed value"
            + (" with positive sample_weight" if has_w else "")
            + f" ({empty.size} such column(s)); it cannot be estimated"
        )
    return sums / counts


def fill_with(X: np.ndarray, values: np.ndarray) -> np.ndarray:
    """A copy of ``X`` with NaN entries replaced by ``values[column]``."""
    return np.where(np.isnan(X), values.astype(X.dtype), X)


def has_nan(X: np.ndarray, n_threads: int | None = None) -> bool:
    """Whether a validated float array (no infinite values) holds any NaN:
    one pass on ``n_threads`` threads, a second only when it finds a value
    that is not finite (or finite values whose sum overflows)."""
    return not all_finite(X, n_threads) and bool(np.isnan(X.min()))
