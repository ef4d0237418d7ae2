"""Data sources: where the rows of an EM pass come from.

Sufficient statistics are additive, so an E-step over any source is
``map_reduce``: compute the statistics of every chunk with the same function
and add them up in a fixed order.  An in-memory array is one chunk; a
memory-mapped file, an HDF5/Zarr dataset or a stream of chunks is many; a
Dask array's chunks are processed on the workers (``fastem._dask``).  Every
source can be traversed any number of times, and the result of a pass never
depends on the number of threads.

Sources
-------
ArraySource
    An in-memory ndarray (one chunk).
ChunkedSource
    Anything with ``shape``, ``dtype`` and row slicing (``numpy.memmap``,
    ``h5py.Dataset``, ``zarr.Array``), read ``chunk_rows`` rows at a time.
    Pages of a ``numpy.memmap`` are released after each chunk, so resident
    memory stays near one chunk whatever the file size.
IterableSource
    A callable returning a fresh iterable of chunks for every pass (or a
    re-iterable such as a list of arrays).
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import check_data, check_data_with_nan, check_sample_weight

#: Bytes of data per chunk read from an out-of-core source.
CHUNK_BYTES = 1 << 26


def ordered_sum(parts: Sequence[Any]) -> Any:
    """Sum in a fixed pairwise-tree order (deterministic; ``None`` if empty)."""
    parts = list(parts)
    if not parts:
        return None
    while len(parts) > 1:
        paired = [parts[i] + parts[i + 1] for i in range(0, len(parts) - 1, 2)]
        if len(parts) % 2:
            paired.append(parts[-1])
        parts = paired
    return parts[0]


def default_chunk_rows(n_features: int, itemsize: int) -> int:
    """Rows per chunk so that a chunk holds about :data:`CHUNK_BYTES`."""
    rows = CHUNK_BYTES // max(1, n_features * itemsize)
    return int(max(4096, rows - rows % 256))


class Source:
    """Common interface (see the module docstring)."""

    n_samples: int
    n_features: int
    dtype: np.dtype
    total_weight: float
    n_chunks: int
    #: Whether any value is NaN (known after validation).
    has_nan: bool = False

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # pragma: no cover
        raise NotImplementedError

    def map_reduce(self, func: Callable, *args: Any) -> Any:
        """``ordered_sum(func(X, w, *args) for each chunk)``."""
        return ordered_sum([func(X, w, *args) for X, w in self.chunks()])

    def map_chunks(self, func: Callable, *args: Any) -> list[Any]:
        """``[func(X, w, *args) for each chunk]`` in chunk order."""
        return [func(X, w, *args) for X, w in self.chunks()]

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The rows at sorted ``index`` as float64 (one pass at most)."""
        out = np.empty((len(index), self.n_features))
        start = 0
        for X, _ in self.chunks():
            stop = start + X.shape[0]
            lo, hi = np.searchsorted(index, [start, stop])
            out[lo:hi] = X[index[lo:hi] - start]
            start = stop
        return out

    def weights(self, index: np.ndarray) -> np.ndarray:
        """The weights of the rows at sorted ``index``."""
        out = np.empty(len(index))
        start = 0
        for X, w in self.chunks():
            stop = start + X.shape[0]
            lo, hi = np.searchsorted(index, [start, stop])
            out[lo:hi] = w[index[lo:hi] - start] if w.shape[0] else 1.0
            start = stop
        return out


@dataclass(frozen=True)
class ArraySource(Source):
    """Rows of an in-memory array with optional per-row weights.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated float32/float64 C-contiguous data.
    sample_weight : ndarray of shape (n_samples,) or (0,)
        Validated float64 weights; length 0 means every row has weight 1.
    has_nan : bool
        Whether ``X`` holds NaN (missing values), as found by its validation.
    """

    X: np.ndarray
    sample_weight: np.ndarray
    has_nan: bool = False

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
    def n_chunks(self) -> int:
        return 1

    @property
    def total_weight(self) -> float:
        if self.sample_weight.shape[0] == 0:
            return float(self.n_samples)
        return float(self.sample_weight.sum())

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(X, sample_weight)`` once: the whole array is one chunk."""
        yield self.X, self.sample_weight

    def rows(self, index: np.ndarray) -> np.ndarray:
        return np.asarray(self.X[index], dtype=np.float64)

    def weights(self, index: np.ndarray) -> np.ndarray:
        if self.sample_weight.shape[0] == 0:
            return np.ones(len(index))
        return self.sample_weight[index]


class ChunkedSource(Source):
    """Rows of a sliceable array-like read ``chunk_rows`` at a time.

    Parameters
    ----------
    array : array-like of shape (n_samples, n_features)
        ``numpy.memmap``, ``h5py.Dataset``, ``zarr.Array`` or anything with
        ``shape``, ``dtype`` and ``array[a:b]`` returning an ndarray.
    sample_weight : ndarray of shape (n_samples,) or (0,)
        Validated weights (kept in memory: 8 bytes per row).
    chunk_rows : int, optional
        Rows per chunk (default: about 64 MiB of data per chunk).
    allow_nan : bool
        Whether NaN (missing values) may appear.

    Every chunk is validated when it is read; :meth:`validate` reads the
    whole source once, so that bad input is reported before any kernel runs.
    """

    def __init__(self, array, sample_weight=None, chunk_rows=None, allow_nan=False):
        shape = getattr(array, "shape", None)
        if shape is None or len(shape) != 2:
            raise ValueError(
                f"X must be a 2-d array-like (n_samples, n_features), got shape {shape}"
            )
        self.array = array
        self.n_samples, self.n_features = int(shape[0]), int(shape[1])
        if self.n_samples == 0 or self.n_features == 0:
            raise ValueError(f"X has shape {tuple(shape)}; it needs rows and features")
        dtype = np.dtype(array.dtype)
        self.dtype = (
            dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)
        )
        self.chunk_rows = int(
            chunk_rows or default_chunk_rows(self.n_features, self.dtype.itemsize)
        )
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.allow_nan = allow_nan
        self.sample_weight = check_sample_weight(sample_weight, self.n_samples)
        self.total_weight = (
            float(self.sample_weight.sum())
            if self.sample_weight.shape[0]
            else float(self.n_samples)
        )
        self.n_chunks = -(-self.n_samples // self.chunk_rows)

    def _release(self, start: int, stop: int) -> None:
        """Drop the pages of rows ``[start, stop)`` of a memmap from memory."""
        mm = getattr(self.array, "_mmap", None)
        if not isinstance(self.array, np.memmap) or mm is None:
            return
        row_bytes = self.n_features * self.array.dtype.itemsize
        lo = self.array.offset + start * row_bytes
        hi = self.array.offset + stop * row_bytes
        lo -= lo % mmap.PAGESIZE
        try:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (AttributeError, OSError, ValueError):  # pragma: no cover
            pass

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, self.n_samples, self.chunk_rows):
            stop = min(self.n_samples, start + self.chunk_rows)
            X = check_data(
                np.array(self.array[start:stop], copy=True),
                f"X[{start}:{stop}]",
                n_features=self.n_features,
                allow_nan=self.allow_nan,
            )
            self._release(start, stop)
            w = (
                self.sample_weight[start:stop]
                if self.sample_weight.shape[0]
                else self.sample_weight
            )
            yield X, w

    def validate(self) -> None:
        """Read every chunk once (raises on bad values; sets ``has_nan``)."""
        self.has_nan = False
        for X, _ in self.chunks():
            self.has_nan = self.has_nan or bool(np.isnan(X).any())


class IterableSource(Source):
    """Chunks from a callable (called once per pass) or a re-iterable.

    Each item is an array of rows, or a ``(rows, weights)`` pair.  The
    chunks of every pass must be the same; the first pass (run by the
    constructor) counts the rows and validates them.
    """

    def __init__(self, chunks: Callable[[], Iterable] | Iterable, allow_nan=False):
        if callable(chunks):
            self._factory = chunks
        elif isinstance(chunks, Iterator):
            raise TypeError(
                "X is a one-shot iterator; EM needs several passes: pass a "
                "callable returning a fresh iterator, or a list of arrays"
            )
        else:
            self._factory = lambda: chunks
        self.allow_nan = allow_nan
        n, w_total, n_chunks, dtype, n_features = 0, 0.0, 0, None, None
        self.has_nan = False
        for X, w in self.chunks():
            self.has_nan = self.has_nan or bool(np.isnan(X).any())
            n_features = X.shape[1]
            dtype = X.dtype if dtype is None else np.promote_types(dtype, X.dtype)
            n += X.shape[0]
            w_total += float(w.sum()) if w.shape[0] else float(X.shape[0])
            n_chunks += 1
        if n_chunks == 0:
            raise ValueError("X (an iterable of chunks) yielded no chunk")
        self.n_samples, self.n_features, self.dtype = n, n_features, np.dtype(dtype)
        self.total_weight, self.n_chunks = w_total, n_chunks

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n_features = getattr(self, "n_features", None)
        for i, item in enumerate(self._factory()):
            if isinstance(item, tuple):
                rows, weights = item
            else:
                rows, weights = item, None
            X = check_data(
                rows, f"chunk {i}", n_features=n_features, allow_nan=self.allow_nan
            )
            n_features = X.shape[1]
            yield X, check_sample_weight(weights, X.shape[0])


def is_dask_array(X) -> bool:
    """True for a ``dask.array.Array`` (without importing dask)."""
    return (
        type(X).__module__.startswith("dask.")
        and hasattr(X, "chunks")
        and hasattr(X, "dask")
    )


def as_source(
    X, sample_weight=None, *, chunk_rows=None, allow_nan=False, n_threads=None
):
    """The data source for ``X``, validated, with the array to use in memory.

    Returns ``(source, X_in_memory)``; ``X_in_memory`` is None for an
    out-of-core, streaming or Dask source.

    * ``numpy.memmap``, a path to an ``.npy`` file, or any non-ndarray
      array-like with ``shape``/``dtype``/slicing: :class:`ChunkedSource`
      (validated by one pass before fitting);
    * a ``dask.array.Array``: :class:`fastem._dask.DaskSource`;
    * a callable, or a list/tuple of arrays: :class:`IterableSource`;
    * anything else: an in-memory :class:`ArraySource`, whose values are
      checked on ``n_threads`` threads.
    """
    if isinstance(X, (str, bytes)) or hasattr(X, "__fspath__"):
        X = np.load(X, mmap_mode="r")
    if is_dask_array(X):
        from ._dask import DaskSource

        return DaskSource(X, sample_weight, allow_nan=allow_nan), None
    if isinstance(X, Iterator):
        raise TypeError(
            "X is a one-shot iterator; EM needs several passes: pass a callable "
            "returning a fresh iterator, or a list of arrays"
        )
    if callable(X) or (isinstance(X, (list, tuple)) and X and hasattr(X[0], "shape")):
        if sample_weight is not None:
            raise ValueError(
                "sample_weight cannot be given with an iterable of chunks; yield "
                "(rows, weights) pairs instead"
            )
        return IterableSource(X, allow_nan=allow_nan), None
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        # scipy.sparse has shape/dtype/slicing but is not a chunked array.
        raise TypeError("X is a sparse matrix; this estimator needs dense data")
    out_of_core = isinstance(X, np.memmap) or (
        not isinstance(X, (np.ndarray, list, tuple))
        and hasattr(X, "shape")
        and hasattr(X, "dtype")
        and hasattr(X, "__getitem__")
    )
    if out_of_core:
        source = ChunkedSource(X, sample_weight, chunk_rows, allow_nan=allow_nan)
        source.validate()
        return source, None
    X, nan = check_data_with_nan(X, "X", allow_nan=allow_nan, n_threads=n_threads)
    sw = check_sample_weight(sample_weight, X.shape[0])
    return ArraySource(X, sw, has_nan=nan), X
