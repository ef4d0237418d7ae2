"""Sparse (CSR) input for the count and binary families.

:func:`as_csr` validates the structure of a ``scipy.sparse`` matrix or array
and returns CSR with canonical rows (no duplicate entries), converting only
what it must (never the input itself, never to dense).  :class:`CSRSource`
is the data source of such a matrix for the EM driver: it yields the whole
matrix as one chunk, like :class:`fastem.sources.ArraySource`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from .sources import Source


def is_sparse(X) -> bool:
    """Whether ``X`` is a ``scipy.sparse`` matrix or array."""
    return sparse.issparse(X)


def as_csr(X, name: str = "X", *, n_features: int | None = None):
    """``X`` as CSR with float32/float64 data and canonical rows.

    CSR input in canonical format with float32/float64 data is returned as
    is (not copied); other formats are converted with ``tocsr`` (a copy), other
    data dtypes become float64 (a copy of the data array only), and duplicate
    entries are summed in a copy.  Raises ``TypeError`` for non-numeric data
    and ``ValueError`` for a wrong shape or non-finite values.
    """
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-d (n_samples, n_features), got {X.ndim}-d")
    N, D = X.shape
    if N == 0:
        raise ValueError(f"{name} has 0 samples; at least 1 required")
    if D == 0:
        raise ValueError(f"{name} has 0 features")
    if n_features is not None and D != n_features:
        raise ValueError(
            f"{name} has {D} features, but the model was fitted with "
            f"{n_features} features"
        )
    kind = X.dtype.kind
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {X.dtype}")
    if kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.format != "csr":
        X = X.tocsr()
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    if not np.isfinite(X.data).all():
        bad = np.flatnonzero(~np.isfinite(X.data))[0]
        row = int(np.searchsorted(X.indptr, bad, side="right") - 1)
        raise ValueError(
            f"{name} contains non-finite values (first at row {row}, column "
            f"{int(X.indices[bad])}); missing values are not supported"
        )
    return X


def csr_arrays(X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, indices, indptr)`` as C-contiguous arrays for the kernels."""
    return (
        np.ascontiguousarray(X.data),
        np.ascontiguousarray(X.indices),
        np.ascontiguousarray(X.indptr),
    )


@dataclass(frozen=True)
class CSRSource(Source):
    """Rows of an in-memory CSR matrix with optional per-row weights.

    Parameters
    ----------
    X : scipy.sparse CSR matrix or array of shape (n_samples, n_features)
        Validated by :func:`as_csr`.
    sample_weight : ndarray of shape (n_samples,) or (0,)
        Validated float64 weights; length 0 means every row has weight 1.
    """

    X: object
    sample_weight: np.ndarray

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

    def chunks(self) -> Iterator[tuple[object, np.ndarray]]:
        """Yield ``(X, sample_weight)`` once: the whole matrix is one chunk."""
        yield self.X, self.sample_weight

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The rows at ``index`` as a dense float64 array."""
        return np.asarray(self.X[np.asarray(index)].toarray(), dtype=np.float64)

    def weights(self, index: np.ndarray) -> np.ndarray:
        """The weights of the rows at ``index`` (ones when unweighted)."""
        if self.sample_weight.shape[0] == 0:
            return np.ones(len(index))
        return self.sample_weight[index]
