"""The scikit-learn plumbing shared by fastem's mixture estimators.

:class:`MixtureEstimator` turns a *family* (the E/M steps of
:mod:`fastem.em`'s driver protocol, plus per-row outputs, a parameter count
and a sampler) into an estimator with ``fit``, ``fit_predict``, ``predict``,
``predict_proba``, ``score_samples``, ``score``, ``bic``, ``aic``, ``sample``
and ``save``, and wires ``n_init``, ``tol``, ``max_iter``, ``warm_start``,
``callback``, ``verbose`` and ``random_state`` into :func:`fastem.em.fit_em`.

A subclass declares its constructor (storing every argument unmodified; the
common ones are listed in :data:`COMMON_PARAMETERS`) and implements the
hooks below.  Everything data-dependent is checked before any kernel runs.

``X`` may be an in-memory array, a ``scipy.sparse`` matrix (families that
accept it), or anything :func:`fastem.sources.as_source` takes: a
``numpy.memmap`` or ``.npy`` path, an h5py/zarr array, an iterable of chunks
or a Dask array.  Statistics are summed over chunks by the source
(``map_reduce``), so out-of-core and Dask fits run the same EM; the per-row
methods return a lazy Dask array for Dask input.

Hooks
-----
``_fitted_arrays``
    Names of the fitted arrays :mod:`fastem.io` saves.
``_validate_family_hyperparameters()``
    Checks of the family's own constructor parameters.
``_accepts_sparse`` and ``_value_check()``
    Whether ``scipy.sparse`` input is accepted (as CSR, see
    :mod:`fastem._sparse`), and a picklable ``check(X, name=...)`` that
    rejects values outside the family's support (or None).
``_allow_nan``
    Whether NaN entries (missing values) are accepted; in-memory data only,
    out-of-core, streamed or Dask data with NaN is rejected by ``fit``.  The
    per-row function then also takes ``has_nan`` (whether the rows hold NaN,
    found by the validation pass; None: look).
``_min_samples``
    Fewest rows ``fit`` accepts (besides ``n_samples >= n_components``).
``_make_family()``
    The family object handed to the driver.
``_family_for(source, X_in_memory)`` (optional)
    ``(family, source, init_source)``: the family, the source EM runs on and
    a zero-argument callable giving the source the initialisation runs on
    (by default ``_make_family()``, ``source`` and ``source``).
``_validated_inits(n_features)``
    A dict of validated user-given initial parameters.
``_initial_params(source, rng, inits)``
    Initial parameters for one run.
``_set_params_from(params)``
    Fitted attributes from the family's parameter object (kept in
    ``self._params``); must reject non-finite parameters.
``_restore_fitted(arrays)``
    The inverse of ``_fitted_arrays`` for :func:`fastem.load`.
``_per_row_function()``
    The family's module-level ``per_row(X, params, n_threads=..., **want)``
    returning ``(log p(x), p(k | x), labels)`` as asked.
``_n_parameters()`` and ``_sample(n_samples, rng)``.
``_check_warm_start()`` (optional)
    Checks that the fitted model can warm-start the next ``fit`` (the
    number of features is checked by the base).
``_after_fit(source)`` (optional)
    Extra fitted attributes computed from the training data.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from os import PathLike

import numpy as np

from . import em
from ._base import EstimatorBase, stderr_reporter
from ._sparse import CSRSource, as_csr, is_sparse
from ._validation import (
    check_data_with_nan,
    check_int,
    check_option,
    check_param_array,
    check_random_state,
    check_real,
    check_sample_weight,
)
from .sources import as_source, is_dask_array

#: Constructor parameters every mixture estimator has (same meaning as in
#: :class:`fastem.GaussianMixture`).
COMMON_PARAMETERS = (
    "n_components",
    "tol",
    "max_iter",
    "n_init",
    "init_params",
    "weights_init",
    "means_init",
    "random_state",
    "warm_start",
    "verbose",
    "verbose_interval",
    "n_threads",
    "callback",
    "chunk_rows",
)

_OUTPUT_INDEX = {"log_likelihood": 0, "responsibilities": 1, "labels": 2}

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def check_weights_init(value, n_components: int) -> np.ndarray:
    """``weights_init`` as a float64 array in [0, 1] summing to 1."""
    w = check_param_array(value, "weights_init", (n_components,))
    if (w < 0).any() or (w > 1).any():
        raise ValueError(
            f"weights_init must be in [0, 1], got min {w.min():.5f}, max {w.max():.5f}"
        )
    if abs(1.0 - w.sum()) > 1e-8:
        raise ValueError(f"weights_init must sum to 1, got {w.sum():.10f}")
    return w


def check_run_options(estimator) -> None:
    """Check the ``verbose``, ``verbose_interval``, ``n_threads``,
    ``callback`` and ``random_state`` parameters of ``estimator``.

    Parameters
    ----------
    estimator : object
        Any fastem estimator with those five constructor parameters.

    Raises
    ------
    TypeError, ValueError
        Naming the first parameter that is wrong.
    """
    check_int(estimator.verbose, "verbose", 0)
    check_int(estimator.verbose_interval, "verbose_interval", 1)
    if estimator.n_threads is not None:
        from ._parallel import resolve_n_threads

        resolve_n_threads(estimator.n_threads)
    if estimator.callback is not None and not callable(estimator.callback):
        raise TypeError("callback must be callable or None")
    check_random_state(estimator.random_state)


class MixtureEstimator(EstimatorBase):
    """Base class of the mixture estimators (see the module docstring)."""

    _fitted_arrays: tuple[str, ...] = ("weights_", "means_")
    _init_methods: tuple[str, ...] = INIT_METHODS
    _allow_nan = False
    _min_samples = 1
    #: How the sparse-input ``TypeError`` names the estimator (None: the
    #: class name).
    _sparse_error_name: str | None = None

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters with EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 stays float32, other dtypes become float64.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative frequency weights: an integer weight ``w`` gives the
            same model as repeating the row ``w`` times.

        Returns
        -------
        self : estimator
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then return the most probable component of each row of ``X``.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        X_mem, has_nan = self._fit(X, sample_weight)
        if X_mem is None:
            return self.predict(X)
        return self._per_row(X_mem, has_nan, labels=True)[2]

    def _make_source(self, X, sample_weight):
        """The validated data source and the in-memory data (None when out
        of core, streamed or on Dask)."""
        check = self._value_check()
        if is_sparse(X):
            if not self._accepts_sparse:
                self._reject_sparse()
            X = as_csr(X, "X")
            if check is not None:
                check(X, name="X")
            return CSRSource(X, check_sample_weight(sample_weight, X.shape[0])), X
        source, X_mem = as_source(
            X,
            sample_weight,
            chunk_rows=self.chunk_rows,
            allow_nan=self._allow_nan,
            n_threads=self.n_threads,
        )
        if check is not None:
            if X_mem is not None:
                check(X_mem, name="X")
            else:
                _check_source_values(source, check)
        return source, X_mem

    def _reject_sparse(self):
        name = self._sparse_error_name or type(self).__name__
        raise TypeError(f"X is a sparse matrix; {name} needs dense data")

    def _prepare(self, X, sample_weight):
        """Validate everything and build the data source and family.

        Returns ``(source, family, init_source, X_in_memory, has_nan)``,
        ``has_nan`` from the validation pass over ``X``.
        """
        self._validate_hyperparameters()
        source, X_mem = self._make_source(X, sample_weight)
        N = source.n_samples
        K = self.n_components
        if N < self._min_samples:
            raise ValueError(
                f"X has {N} samples; at least {self._min_samples} required"
            )
        if N < K:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{K}, n_samples = {N}"
            )
        sw = getattr(source, "sample_weight", np.empty(0))
        if sw is not None and sw.shape[0] and np.count_nonzero(sw) < K:
            raise ValueError(
                f"sample_weight has {np.count_nonzero(sw)} positive entries; "
                f"n_components={K} needs at least as many"
            )
        if X_mem is None and getattr(source, "has_nan", False):
            raise ValueError(
                "X contains NaN; missing values are supported for in-memory "
                "arrays only (not for memory-mapped, streamed or Dask data)"
            )
        has_nan = bool(getattr(source, "has_nan", False))
        family, source, init_source = self._family_for(source, X_mem)
        return source, family, init_source, X_mem, has_nan

    def _family_for(self, source, X_mem):
        """``(family, source, init_source)`` for a fit on ``source``."""
        return self._make_family(), source, lambda: source

    def _initializer(self, init_source, n_features: int):
        """A zero-argument callable giving initial parameters for one run."""
        inits = self._validated_inits(n_features)
        rng = check_random_state(self.random_state)

        def initialize():
            return self._initial_params(init_source(), rng, inits)

        return initialize

    def _fit(self, X, sample_weight):
        """Fit on ``X``; returns ``(X_in_memory, has_nan)`` (see
        :meth:`_prepare`)."""
        # One BLAS thread from the checks of the initial parameters (which
        # factorise matrices) to the fitted attributes: after a call with two
        # BLAS threads, OpenBLAS's idle worker spins for tens of milliseconds
        # against the kernels' threads (the first tied E-step at 64x16 ran
        # 111 ms instead of 80 on a 2-core machine).
        with single_threaded_blas():
            source, family, init_source, X_mem, has_nan = self._prepare(
                X, sample_weight
            )
            D = source.n_features
            initialize = self._initializer(init_source, D)
            warm = None
            if self.warm_start and hasattr(self, "converged_"):
                if self.n_features_in_ != D:
                    raise ValueError(
                        f"X has {D} features, but the warm-started model has "
                        f"{self.n_features_in_}"
                    )
                self._check_warm_start()
                warm = (self._params, self.lower_bound_)
            run = em.fit_em(
                family,
                source,
                initialize,
                n_init=self.n_init,
                tol=self.tol,
                max_iter=self.max_iter,
                warm_start=warm,
                callback=self.callback,
                report=stderr_reporter if self.verbose else None,
                verbose_interval=self.verbose_interval,
            )
            self._set_fitted_run(run, D)
            self._after_fit(source)
        return X_mem, has_nan

    def _set_fitted_run(self, run: em.EMRun, n_features: int) -> None:
        """The fitted parameters and convergence attributes of an EM run."""
        self._set_params_from(run.params)
        self.converged_ = run.converged
        self.n_iter_ = run.n_iter
        self.lower_bound_ = run.lower_bound
        self.lower_bounds_ = run.lower_bounds
        self.n_features_in_ = n_features

    def _check_warm_start(self) -> None:
        """Checks before warm-starting from the fitted model (none by default)."""

    def _after_fit(self, source) -> None:
        """Extra fitted attributes from the training data (none by default)."""

    # ------------------------------------------------------------ validation

    def _validate_hyperparameters(self) -> None:
        check_int(self.n_components, "n_components", 1)
        check_real(self.tol, "tol")
        check_int(self.max_iter, "max_iter", 0)
        check_int(self.n_init, "n_init", 1)
        check_option(self.init_params, "init_params", self._init_methods)
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool, got {self.warm_start!r}")
        check_run_options(self)
        if self.chunk_rows is not None:
            check_int(self.chunk_rows, "chunk_rows", 1)
        self._validate_family_hyperparameters()

    def _validate_family_hyperparameters(self) -> None:
        """Checks of the family's own parameters (none by default)."""

    _accepts_sparse = False

    def _value_check(self):
        """A picklable ``check(X, name=...)`` of the values, or None."""
        return None

    def _validated_X(self, X):
        """In-memory ``X`` for the per-row methods, validated, and whether it
        holds NaN."""
        self._check_is_fitted()
        D = self.n_features_in_
        nan = False
        if is_sparse(X):
            if not self._accepts_sparse:
                self._reject_sparse()
            X = as_csr(X, "X", n_features=D)
        else:
            X, nan = check_data_with_nan(
                X,
                "X",
                n_features=D,
                allow_nan=self._allow_nan,
                n_threads=self.n_threads,
            )
        check = self._value_check()
        if check is not None:
            check(X, name="X")
        return X, nan

    def _per_row(self, X, has_nan=None, **want):
        return _call_per_row(
            self._per_row_function(),
            X,
            self._params,
            self._allow_nan,
            has_nan,
            self.n_threads,
            want,
        )

    # ------------------------------------------------------------ inference

    def _row_output(self, X, which: str):
        """One per-row output for in-memory, sparse, out-of-core or Dask ``X``."""
        self._check_is_fitted()
        D = self.n_features_in_
        args = (
            self._per_row_function(),
            self._params,
            which,
            self._value_check(),
            self._allow_nan,
        )
        if is_dask_array(X):
            from ._dask import map_rows

            if X.ndim != 2 or X.shape[1] != D:
                raise ValueError(
                    f"X has shape {X.shape}; the model was fitted with {D} features"
                )
            width = self.n_components if which == "responsibilities" else None
            dtype = np.int64 if which == "labels" else np.float64
            return map_rows(X, _rows, *args, None, n_columns=width, dtype=dtype)
        out_of_core = (
            isinstance(X, (str, bytes, np.memmap))
            or hasattr(X, "__fspath__")
            or (
                not isinstance(X, (np.ndarray, list, tuple))
                and not is_sparse(X)
                and hasattr(X, "shape")
            )
        )
        if out_of_core:
            source, X_mem = as_source(
                X, chunk_rows=self.chunk_rows, allow_nan=self._allow_nan
            )
            if X_mem is None:
                if source.n_features != D:
                    raise ValueError(
                        f"X has {source.n_features} features, but the model was "
                        f"fitted with {D} features"
                    )
                return np.concatenate(
                    source.map_chunks(_rows_chunk, *args, self.n_threads)
                )
        X, nan = self._validated_X(X)
        return self._per_row(X, nan, **{which: True})[_OUTPUT_INDEX[which]]

    def predict(self, X) -> np.ndarray:
        """Most probable component of each row.

        ``X`` may be in memory (dense or, where accepted, sparse), out of core
        (memmap, ``.npy`` path, h5py, zarr) or a Dask array (the result is
        then a lazy Dask array).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self._row_output(X, "labels")

    def predict_proba(self, X) -> np.ndarray:
        """Posterior probability of each component for each row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
        """
        return self._row_output(X, "responsibilities")

    def score_samples(self, X) -> np.ndarray:
        """Log-likelihood ``log p(x)`` of each row.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        return self._row_output(X, "log_likelihood")

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean (optionally weighted) log-likelihood of ``X``."""
        logp = self.score_samples(X)
        if sample_weight is None:
            return float(logp.mean())
        sw = check_sample_weight(sample_weight, logp.shape[0])
        return float(np.dot(sw, logp) / sw.sum())

    def _criterion_terms(self, X, sample_weight) -> tuple[float, float]:
        """Total log-likelihood and effective number of samples."""
        logp = self.score_samples(X)
        if sample_weight is None:
            return float(logp.sum()), float(logp.shape[0])
        sw = check_sample_weight(sample_weight, logp.shape[0])
        return float(np.dot(sw, logp)), float(sw.sum())

    def bic(self, X, sample_weight=None) -> float:
        """Bayesian information criterion ``-2 log L + p log n`` (lower is better).

        With ``sample_weight``, ``log L`` is weighted and ``n = sum(weights)``.
        """
        loglik, n = self._criterion_terms(X, sample_weight)
        return -2.0 * loglik + self._n_parameters() * np.log(n)

    def aic(self, X, sample_weight=None) -> float:
        """Akaike information criterion ``-2 log L + 2 p`` (lower is better)."""
        loglik, _ = self._criterion_terms(X, sample_weight)
        return -2.0 * loglik + 2 * self._n_parameters()

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture.

        The draws are seeded by ``random_state``, grouped by component.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        self._check_is_fitted()
        check_int(n_samples, "n_samples", 1)
        return self._sample(n_samples, check_random_state(self.random_state))

    # ----------------------------------------------------------- persistence

    def save(self, path: str | PathLike) -> None:
        """Write the fitted model to an ``.npz`` file (no pickle).

        Load it back with :func:`fastem.load`.
        """
        from .io import save

        save(self, path)

    def _check_finite(self, **arrays) -> None:
        """Raise ``FloatingPointError`` when a fitted array is not finite."""
        for name, value in arrays.items():
            if not np.isfinite(value).all():
                raise FloatingPointError(
                    f"EM produced non-finite {name}; check the scale of X or "
                    "increase the regularisation"
                )


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while a fit runs, when threadpoolctl is
    installed (otherwise do nothing).

    The BLAS calls of a fit are tiny ``O(K D^3)`` factorisations between
    kernel passes; a BLAS thread pool and numba's threads otherwise spin
    against each other (measured here: 15 ms for a 2x2 triangular solve on a
    busy 2-core machine, 0.1 ms with one BLAS thread).
    """
    controller = _blas_controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


_CONTROLLER_LOCK = threading.Lock()
_CONTROLLER: list = [None, -1]  # [threadpoolctl controller, len(sys.modules)]


def _blas_controller():
    """A cached ``threadpoolctl.ThreadpoolController`` (None without
    threadpoolctl).

    Creating one scans every loaded shared library (1-3 ms, as long as a
    small fit); it is created again only after new modules were imported,
    since only an import can load another BLAS."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    with _CONTROLLER_LOCK:
        if _CONTROLLER[0] is None or _CONTROLLER[1] != len(sys.modules):
            _CONTROLLER[0] = ThreadpoolController()
            _CONTROLLER[1] = len(sys.modules)
        return _CONTROLLER[0]


def _check_source_values(source, check) -> None:
    """Run ``check`` on every chunk of an out-of-core source; errors name the
    row in the whole data set."""
    problems = source.map_chunks(_chunk_problem, check)
    start = 0
    for n_rows, message in problems:
        if message is not None:
            raise ValueError(f"{message} (in the chunk starting at row {start})")
        start += n_rows


def _chunk_problem(X, w, check):
    try:
        check(X, name="X")
    except ValueError as exc:
        return X.shape[0], str(exc)
    return X.shape[0], None


def _rows(X, per_row, params, which, check, allow_nan, n_threads):
    """Per-row output ``which`` for a block of rows (validated here)."""
    X, nan = check_data_with_nan(
        X,
        "X",
        n_features=params.n_features,
        allow_nan=allow_nan,
        n_threads=n_threads,
    )
    if check is not None:
        check(X, name="X")
    want = {which: True}
    out = _call_per_row(per_row, X, params, allow_nan, nan, n_threads, want)
    return out[_OUTPUT_INDEX[which]]


def _call_per_row(per_row, X, params, allow_nan, has_nan, n_threads, want):
    """``per_row(X, params, ...)``, with the NaN flag for families that
    accept missing values (``_allow_nan``), so that they need not scan the
    rows again."""
    if allow_nan:
        return per_row(X, params, n_threads=n_threads, has_nan=has_nan, **want)
    return per_row(X, params, n_threads=n_threads, **want)


def _rows_chunk(X, w, per_row, params, which, check, allow_nan, n_threads):
    return _rows(X, per_row, params, which, check, allow_nan, n_threads)
