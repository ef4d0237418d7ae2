"""Input checks shared by the estimators and the low-level API.

Every check runs before any kernel and raises ``TypeError`` (wrong kind of
object or dtype) or ``ValueError`` (wrong shape or value) naming the
argument.  Inputs are never modified: conversions make copies.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._parallel import claimed_tasks, run_tasks

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def check_data(X, name: str = "X", **options) -> np.ndarray:
    """``X`` validated by :func:`check_data_with_nan` (same ``options``)."""
    return check_data_with_nan(X, name, **options)[0]


def check_data_with_nan(
    X,
    name: str = "X",
    *,
    n_features: int | None = None,
    min_samples: int = 1,
    allow_nan: bool = False,
    allow_all_nan_rows: bool = False,
    n_threads: int | None = None,
) -> tuple[np.ndarray, bool]:
    """Return ``X`` as a C-contiguous float32/float64 2-d array, and whether
    it holds any NaN (found by the same pass over the values).

    float32 and float64 are kept; other real numeric dtypes are converted to
    float64.  Raises on non-numeric data, wrong dimensionality, too few rows,
    a wrong number of features, and non-finite values.  With ``allow_nan``,
    NaN entries are missing values and allowed (infinite values are still
    rejected), but a row whose every value is NaN is rejected unless
    ``allow_all_nan_rows``.  The values are checked on ``n_threads`` threads
    (as in :func:`fastem._parallel.resolve_n_threads`).
    """
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"{name} is a sparse matrix; GaussianMixture needs dense data")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must contain real numbers, got an object array: {exc}"
            ) from exc
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = (
            " Reshape with X.reshape(-1, 1) for one feature." if arr.ndim == 1 else ""
        )
        raise ValueError(
            f"{name} must be 2-d (n_samples, n_features), got {arr.ndim}-d.{hint}"
        )
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features")
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} samples; at least {min_samples} required"
        )
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but the model was fitted with "
            f"{n_features} features"
        )
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    arr = np.ascontiguousarray(arr)
    if all_finite(arr, n_threads):
        return arr, False
    if allow_nan:
        return arr, _check_missing(arr, name, allow_all_nan_rows)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(arr[row, col]) else "infinite"
        raise ValueError(
            f"{name} contains {kind} values ({int(bad.sum())} non-finite entries; "
            f"first at row {row}, column {col}); missing values are not supported"
        )
    return arr, False


#: Bytes of rows that one task of :func:`all_finite` sums.
_FINITE_TASK_BYTES = 1 << 22


def all_finite(arr: np.ndarray, n_threads: int | None = None) -> bool:
    """Whether every value of the float array ``arr`` is finite, by one pass
    over it without a mask.

    A sum of finite numbers is finite unless it overflows, and a NaN or an
    infinity makes it NaN or infinite, so True here is exact, while False
    can also mean finite values so large that their sum overflowed (the
    callers then look at the values with masks).  Row ranges are summed on
    the kernels' threads (numpy releases the GIL in reductions): this pass
    and a second one for NaN, each on one thread, took 0.08 s of every fit
    on 10^6 x 64 float64 rows.
    """
    if arr.size == 0:
        return True
    row_bytes = arr.itemsize * (arr.size // arr.shape[0])
    rows = max(1, _FINITE_TASK_BYTES // row_bytes)
    n_tasks = -(-arr.shape[0] // rows)
    sums = np.zeros(n_tasks, dtype=arr.dtype)

    def sum_rows(queue: np.ndarray) -> None:
        with np.errstate(over="ignore", invalid="ignore"):
            for task in claimed_tasks(queue):
                sums[task] = arr[task * rows : (task + 1) * rows].sum()

    run_tasks(sum_rows, n_tasks, n_threads=n_threads)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(sums.sum()))


def _check_missing(arr: np.ndarray, name: str, allow_all_nan_rows: bool) -> bool:
    """NaN entries are allowed; infinite values and all-NaN rows are not.
    Returns whether ``arr`` holds any NaN."""
    if np.isfinite(arr).all():
        return False
    inf = np.isinf(arr)
    if inf.any():
        row, col = np.argwhere(inf)[0]
        raise ValueError(
            f"{name} contains infinite values ({int(inf.sum())} entries; first "
            f"at row {row}, column {col}); only NaN marks a missing value"
        )
    if not allow_all_nan_rows:
        empty = np.isnan(arr).all(axis=1)
        if empty.any():
            rows = np.flatnonzero(empty)
            raise ValueError(
                f"{name} row {rows[0]} has every value missing (NaN) "
                f"({rows.size} such row(s)); drop such rows, they carry no "
                "information about the mixture"
            )
    return True


def check_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
    """Return per-row weights as a float64 array (length 0 means all ones)."""
    if sample_weight is None:
        return np.empty(0)
    if isinstance(sample_weight, numbers.Number) and not isinstance(
        sample_weight, bool
    ):
        sample_weight = np.full(n_samples, float(sample_weight))
    try:
        sw = np.asarray(sample_weight)
    except Exception as exc:
        raise ValueError(
            f"sample_weight could not be converted to an array: {exc}"
        ) from exc
    if sw.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight must be numeric, got dtype {sw.dtype}")
    if sw.ndim != 1 or sw.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), got {sw.shape}"
        )
    sw = np.ascontiguousarray(sw, dtype=np.float64)
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight contains non-finite values")
    if (sw < 0).any():
        raise ValueError(f"sample_weight must be non-negative; min is {sw.min()!r}")
    if not sw.sum() > 0:
        raise ValueError("sample_weight sums to zero; at least one row needs weight")
    return sw


def check_int(value, name: str, low: int, high: int | None = None) -> int:
    """An integer in ``[low, high]``; bools are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def check_real(value, name: str, low: float = 0.0) -> float:
    """A finite real number ``>= low``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not np.isfinite(value) or value < low:
        raise ValueError(f"{name} must be a finite number >= {low}, got {value}")
    return float(value)


def check_option(value, name: str, options) -> str:
    """One of ``options``."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
    return value


def check_param_array(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A finite float64 copy of a user-given parameter array with ``shape``."""
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers: {exc}") from exc
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite values")
    return arr


def check_random_state(seed) -> np.random.RandomState:
    """``None``, an int, or a ``RandomState`` (as scikit-learn accepts)."""
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(int(seed))
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(
        f"random_state must be None, an int or a numpy RandomState, got {seed!r}"
    )
