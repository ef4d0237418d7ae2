"""Dask arrays as data sources: statistics computed on the workers.

Imported only when ``fit`` or ``predict`` receives a ``dask.array.Array``.
Each E-step maps a plain function of this installed package (so workers use
numba's on-disk cache) over the row blocks, adds the per-block statistics in
the same pairwise-tree order as :func:`fastem.sources.ordered_sum`, and
brings only the sum back to the client, where the M-step runs.  Inside a
task the kernels run on one thread (the worker's threads fill the cores).
Lost blocks are recomputed by Dask's scheduler, so a fit survives a worker
dying mid-iteration.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from ._parallel import thread_cap
from ._validation import check_data, check_sample_weight
from .sources import Source

#: Kernel threads per Dask task.
TASK_THREADS = 1


def _apply(func: Callable, X, w, allow_nan: bool, *args: Any):
    X = check_data(X, "X block", allow_nan=allow_nan)
    w = check_sample_weight(w, X.shape[0]) if w is not None else np.empty(0)
    with thread_cap(TASK_THREADS):
        return func(X, w, *args)


def _check_block(X, allow_nan: bool) -> np.ndarray:
    X = check_data(X, "X block", allow_nan=allow_nan)
    return np.array([float(np.isnan(X).any())])


class DaskSource(Source):
    """A ``dask.array.Array`` of rows (and optional weights).

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Rechunked so that every block holds whole rows.
    sample_weight : array-like or dask array of shape (n_samples,), optional
    allow_nan : bool
        Whether NaN (missing values) may appear.

    The constructor validates every block on the workers (one pass).
    """

    def __init__(self, X, sample_weight=None, allow_nan=False):
        import dask.array as da

        if X.ndim != 2:
            raise ValueError(f"X must be 2-d (n_samples, n_features), got {X.ndim}-d")
        if any(np.isnan(c) for c in X.chunks[0]):
            raise ValueError("X has unknown chunk sizes; call X.compute_chunk_sizes()")
        if X.dtype.kind not in "fiub":
            raise TypeError(f"X must be numeric, got dtype {X.dtype}")
        self.X = X.rechunk({1: -1})
        self.n_samples, self.n_features = (int(s) for s in self.X.shape)
        if self.n_samples == 0:
            raise ValueError("X has 0 samples")
        dt = np.dtype(X.dtype)
        self.dtype = dt if dt in (np.float32, np.float64) else np.dtype(np.float64)
        self.allow_nan = allow_nan
        if sample_weight is None:
            self.w = None
        else:
            w = (
                sample_weight
                if hasattr(sample_weight, "dask")
                else da.from_array(check_sample_weight(sample_weight, self.n_samples))
            )
            if w.shape != (self.n_samples,):
                raise ValueError(
                    f"sample_weight must have shape ({self.n_samples},), got {w.shape}"
                )
            self.w = w.rechunk((self.X.chunks[0],))
        self.n_chunks = len(self.X.chunks[0])
        checks = self.X.map_blocks(
            _check_block,
            allow_nan,
            dtype=float,
            chunks=((1,) * self.n_chunks,),
            drop_axis=1,
        )
        if self.w is None:
            self.has_nan = bool(checks.max().compute())
            self.total_weight = float(self.n_samples)
        else:
            from dask import compute

            wmin, wsum, nan = compute(self.w.min(), self.w.sum(), checks.max())
            self.has_nan = bool(nan)
            if not np.isfinite(wsum) or wmin < 0 or not wsum > 0:
                raise ValueError(
                    "sample_weight must be finite and non-negative with a positive sum"
                )
            self.total_weight = float(wsum)

    def _tasks(self, func: Callable, args: tuple) -> list:
        from dask import delayed

        blocks = self.X.to_delayed().ravel()
        weights = (
            self.w.to_delayed().ravel() if self.w is not None else [None] * len(blocks)
        )
        return [
            delayed(_apply, pure=True)(func, b, w, self.allow_nan, *args)
            for b, w in zip(blocks, weights, strict=True)
        ]

    def map_chunks(self, func: Callable, *args: Any) -> list[Any]:
        from dask import compute

        return list(compute(*self._tasks(func, args)))

    def map_reduce(self, func: Callable, *args: Any) -> Any:
        from dask import delayed

        parts = self._tasks(func, args)
        add = delayed(operator.add, pure=True)
        while len(parts) > 1:
            paired = [add(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
            if len(parts) % 2:
                paired.append(parts[-1])
            parts = paired
        return parts[0].compute()

    def chunks(self):
        """Blocks brought to the client one at a time (used only for small
        initialisation passes; E-steps use :meth:`map_reduce`)."""
        for i in range(self.n_chunks):
            X = check_data(
                self.X.blocks[i].compute(), "X block", allow_nan=self.allow_nan
            )
            w = (
                np.empty(0)
                if self.w is None
                else np.asarray(self.w.blocks[i].compute())
            )
            yield X, w

    def rows(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(self.X[np.asarray(index)].compute(), dtype=np.float64)

    def weights(self, index: np.ndarray) -> np.ndarray:
        if self.w is None:
            return np.ones(len(index))
        return np.asarray(self.w[np.asarray(index)].compute(), dtype=np.float64)


def map_rows(X, func: Callable, *args: Any, n_columns: int | None = None, dtype=float):
    """``func(block, *args)`` over the row blocks of a dask array, lazily.

    ``n_columns`` is the width of a 2-d result (None for a 1-d result).
    """

    def run(block):
        with thread_cap(TASK_THREADS):
            return func(block, *args)

    X = X.rechunk({1: -1})
    if n_columns is None:
        return X.map_blocks(run, drop_axis=1, dtype=dtype)
    return X.map_blocks(run, chunks=(X.chunks[0], (n_columns,)), dtype=dtype)
