"""Data sources: where the rows of an EM pass come from.

A source yields ``(X_chunk, w_chunk)`` pairs of validated, C-contiguous
arrays.  Sufficient statistics are additive, so the EM driver sums the
statistics of the chunks; an in-memory array is one chunk, a larger-than-memory
array is many.  Every source can be traversed any number of times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArraySource:
    """Rows of an in-memory array with optional per-row weights.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated float32/float64 C-contiguous data.
    sample_weight : ndarray of shape (n_samples,) or (0,)
        Validated float64 weights; length 0 means every row has weight 1.
    """

    X: np.ndarray
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
    def total_weight(self) -> float:
        if self.sample_weight.shape[0] == 0:
            return float(self.n_samples)
        return float(self.sample_weight.sum())

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(X, sample_weight)`` once: the whole array is one chunk."""
        yield self.X, self.sample_weight

    def rows(self, index: np.ndarray) -> np.ndarray:
        """The rows at ``index`` as a float64 array."""
        return np.asarray(self.X[index], dtype=np.float64)

    def weights(self, index: np.ndarray) -> np.ndarray:
        """The weights of the rows at ``index`` (ones when unweighted)."""
        if self.sample_weight.shape[0] == 0:
            return np.ones(len(index))
        return self.sample_weight[index]
