"""``fastem.GaussianMixture``: a drop-in for ``sklearn.mixture.GaussianMixture``."""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from typing import Any

import numpy as np

from . import em
from ._base import EstimatorBase, stderr_reporter
from ._patterns import has_nan
from ._validation import (
    check_data,
    check_int,
    check_option,
    check_param_array,
    check_random_state,
    check_real,
    check_sample_weight,
)
from .families import gaussian as g
from .families import gaussian_missing as gm
from .families.gaussian_fit import INIT_METHODS, GaussianEM, initial_params
from .sources import as_source, is_dask_array


class GaussianMixture(EstimatorBase):
    """Gaussian mixture model fitted by EM with fused Numba kernels.

    Same parameters, attributes and results as
    ``sklearn.mixture.GaussianMixture`` (for the same initial parameters),
    plus per-row ``sample_weight`` (frequency weights), float32 input (kept
    as float32; statistics accumulated in float64), ``n_threads`` and a
    per-iteration ``callback``.  Each EM iteration is one pass over the data
    and allocates no ``(n_samples, n_components)`` array.

    Missing values: NaN entries of ``X`` are missing (at random).  ``fit``
    runs exact EM on the observed values (each row's E-step uses the marginal
    of its observed coordinates, the M-step the conditional expectations of
    the missing ones); ``predict``, ``predict_proba``, ``score_samples``,
    ``score``, ``bic`` and ``aic`` marginalise the missing coordinates;
    :meth:`impute` and :meth:`sample_missing` fill them in.  A row with every
    value missing is rejected by ``fit`` and the scoring methods.  With
    missing values, initialisation runs on the data with NaN replaced by the
    (weighted) column means of the observed values, and the fit keeps a copy
    of the rows (the complete ones in the dtype of ``X``, the incomplete ones
    as float64, grouped by missingness pattern).  Without NaN nothing changes.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        Covariance parametrisation.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the covariance diagonals.
    max_iter : int, default=100
        EM iterations per initialisation (0 keeps the initial parameters).
    n_init : int, default=1
        Initialisations; the best final lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How initial responsibilities are chosen.  ``'kmeans'`` runs k-means++
        and Lloyd iterations on at most 131072 rows sampled from ``X``, then
        labels every row by its nearest center.
    weights_init, means_init, precisions_init : array-like, optional
        User-given initial parameters (shapes as in scikit-learn).
    random_state : int, RandomState or None, default=None
        Seed for initialisation and :meth:`sample`.
    warm_start : bool, default=False
        Continue from the previous fit's parameters (``n_init`` is ignored).
    verbose : int, default=0
        1 or more writes progress to standard error every ``verbose_interval``
        iterations (2 adds timings).
    verbose_interval : int, default=10
        Iterations between progress lines.
    n_threads : int or None, default=None
        Threads for the kernels: None keeps numba's current setting, -1
        uses all.  Results are bit-identical for any value.
    callback : callable or None, default=None
        ``callback(iteration, lower_bound)`` after every EM iteration;
        returning ``True`` stops the current run.
    chunk_rows : int or None, default=None
        Rows per chunk when ``X`` is out of core (a ``numpy.memmap``, a path
        to an ``.npy`` file, an h5py/zarr array); default about 64 MiB of
        data per chunk.  Resident memory stays near one chunk.
    learning_decay, learning_offset : float, default=0.7, 10.0
        Step sizes ``(learning_offset + t) ** -learning_decay`` of
        :meth:`partial_fit` (stepwise EM; ``0.5 < learning_decay <= 1``).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes depend on ``covariance_type`` as in scikit-learn.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Mean (weighted) log-likelihood at the start of the last iteration of
        the best run.
    lower_bounds_ : list of float
        Lower bound of every iteration of the best run.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        n_threads: int | None = None,
        callback: Callable[[int, float], Any] | None = None,
        chunk_rows: int | None = None,
        learning_decay: float = 0.7,
        learning_offset: float = 10.0,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_threads = n_threads
        self.callback = callback
        self.chunk_rows = chunk_rows
        self.learning_decay = learning_decay
        self.learning_offset = learning_offset

    # ------------------------------------------------------------------ fit

    def fit(self, X, y=None, sample_weight=None) -> GaussianMixture:
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
        self : GaussianMixture
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """Fit, then return the most probable component of each row of ``X``.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        X_in_memory = self._fit(X, sample_weight)
        if X_in_memory is None:
            return self.predict(X)
        return self._per_row(X_in_memory, labels=True)[2]

    def _prepare(self, X, sample_weight):
        """Validate everything and build the data source and family.

        Returns ``(source, family, init_source, X_in_memory)``.
        """
        self._validate_hyperparameters()
        source, X_mem = as_source(
            X, sample_weight, chunk_rows=self.chunk_rows, allow_nan=True
        )
        N = source.n_samples
        if N < self.n_components:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {N}"
            )
        sw = getattr(source, "sample_weight", np.empty(0))
        if sw.shape[0] and np.count_nonzero(sw) < self.n_components:
            raise ValueError(
                f"sample_weight has {np.count_nonzero(sw)} positive entries; "
                f"n_components={self.n_components} needs at least as many"
            )
        if X_mem is None and getattr(source, "has_nan", False):
            raise ValueError(
                "X contains NaN; missing values are supported for in-memory "
                "arrays only (not for memory-mapped, streamed or Dask data)"
            )
        if X_mem is not None and has_nan(X_mem):
            source, init_source = gm.fit_parts(X_mem, sw)
            family = gm.GaussianMissingEM(
                self.covariance_type, self.reg_covar, self.n_threads
            )
        else:
            family = GaussianEM(self.covariance_type, self.reg_covar, self.n_threads)

            def init_source():
                return source

        return source, family, init_source, X_mem

    def _initializer(self, init_source, n_features):
        inits = self._validated_inits(n_features)
        rng = check_random_state(self.random_state)

        def initialize() -> g.GaussianParams:
            return initial_params(
                init_source(),
                self.n_components,
                self.covariance_type,
                self.reg_covar,
                self.init_params,
                rng,
                n_threads=self.n_threads,
                **inits,
            )

        return initialize

    def _fit(self, X, sample_weight) -> np.ndarray | None:
        source, family, init_source, X_mem = self._prepare(X, sample_weight)
        D = source.n_features
        initialize = self._initializer(init_source, D)
        warm = None
        if self.warm_start and hasattr(self, "converged_"):
            if self.n_features_in_ != D:
                raise ValueError(
                    f"X has {D} features, but the warm-started model has "
                    f"{self.n_features_in_}"
                )
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
        self._set_params_from(run.params)
        self.converged_ = run.converged
        self.n_iter_ = run.n_iter
        self.lower_bound_ = run.lower_bound
        self.lower_bounds_ = run.lower_bounds
        self.n_features_in_ = D
        self._online = None
        return X_mem

    def partial_fit(self, X, y=None, sample_weight=None) -> GaussianMixture:
        """One step of stepwise (online) EM on a chunk of a data stream.

        The running sufficient statistics (per unit weight) move toward the
        chunk's statistics with step ``(learning_offset + t) **
        -learning_decay`` at the t-th call (Cappé & Moulines, 2009), and the
        parameters are re-estimated from them.  On a stationary stream the
        parameters converge to a maximum of the likelihood; exact batch EM
        over data larger than memory is ``fit`` on a memory-mapped array or
        an iterable of chunks instead.

        The first call on an unfitted model initialises the parameters from
        the chunk (``init_params`` and the ``*_init`` arrays); a model fitted
        by ``fit`` continues from its parameters.  ``n_iter_`` counts the
        calls, ``lower_bound_`` is the mean log-likelihood of the latest
        chunk under the parameters that entered the step, and ``converged_``
        is False (stepwise EM has no convergence test).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The next chunk of the stream.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self : GaussianMixture
        """
        check_real(self.learning_decay, "learning_decay")
        if not 0.5 < self.learning_decay <= 1.0:
            raise ValueError(
                f"learning_decay must be in (0.5, 1], got {self.learning_decay}"
            )
        check_real(self.learning_offset, "learning_offset")
        source, family, init_source, _ = self._prepare(X, sample_weight)
        D = source.n_features
        state = getattr(self, "_online", None)
        if hasattr(self, "converged_"):
            if self.n_features_in_ != D:
                raise ValueError(
                    f"X has {D} features, but the model has {self.n_features_in_}"
                )
            params = self._params
        else:
            params = self._initializer(init_source, D)()
        if state is None:
            running, steps, history = None, 0, []
        else:
            running, steps, history = state
        step = (
            1.0
            if running is None
            else (self.learning_offset + steps) ** -self.learning_decay
        )
        params, running, lower_bound = em.stepwise_step(
            family, source, params, running, step
        )
        self._set_params_from(params)
        history = [*history, lower_bound]
        self._online = (running, steps + 1, history)
        self.converged_ = False
        self.n_iter_ = steps + 1
        self.lower_bound_ = lower_bound
        self.lower_bounds_ = history
        self.n_features_in_ = D
        return self

    def _set_params_from(self, params: g.GaussianParams) -> None:
        arrays = (
            params.weights,
            params.means,
            params.covariances,
            params.precisions_cholesky,
        )
        if not all(np.isfinite(a).all() for a in arrays):
            raise FloatingPointError(
                "EM produced non-finite parameters; check the scale of X or increase reg_covar"
            )
        self._params = params
        self.weights_ = params.weights
        self.means_ = params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = params.precisions()

    # ------------------------------------------------------------ validation

    def _validate_hyperparameters(self) -> None:
        check_int(self.n_components, "n_components", 1)
        check_option(self.covariance_type, "covariance_type", g.COVARIANCE_TYPES)
        check_real(self.tol, "tol")
        check_real(self.reg_covar, "reg_covar")
        check_int(self.max_iter, "max_iter", 0)
        check_int(self.n_init, "n_init", 1)
        check_option(self.init_params, "init_params", INIT_METHODS)
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise TypeError(f"warm_start must be a bool, got {self.warm_start!r}")
        check_int(self.verbose, "verbose", 0)
        check_int(self.verbose_interval, "verbose_interval", 1)
        if self.n_threads is not None:
            from ._parallel import resolve_n_threads

            resolve_n_threads(self.n_threads)
        if self.callback is not None and not callable(self.callback):
            raise TypeError("callback must be callable or None")
        check_random_state(self.random_state)

    def _validated_inits(self, n_features: int) -> dict[str, np.ndarray | None]:
        K, D, cov = self.n_components, n_features, self.covariance_type
        out: dict[str, np.ndarray | None] = {
            "weights_init": None,
            "means_init": None,
            "precisions_init": None,
        }
        if self.weights_init is not None:
            w = check_param_array(self.weights_init, "weights_init", (K,))
            if (w < 0).any() or (w > 1).any():
                raise ValueError(
                    f"weights_init must be in [0, 1], got min {w.min():.5f}, max {w.max():.5f}"
                )
            if abs(1.0 - w.sum()) > 1e-8:
                raise ValueError(f"weights_init must sum to 1, got {w.sum():.10f}")
            out["weights_init"] = w
        if self.means_init is not None:
            out["means_init"] = check_param_array(self.means_init, "means_init", (K, D))
        if self.precisions_init is not None:
            shape = {
                "full": (K, D, D),
                "tied": (D, D),
                "diag": (K, D),
                "spherical": (K,),
            }[cov]
            p = check_param_array(self.precisions_init, "precisions_init", shape)
            if cov in ("full", "tied"):
                mats = p if cov == "full" else p[None]
                for m in mats:
                    if not np.allclose(m, m.T) or not (np.linalg.eigvalsh(m) > 0).all():
                        raise ValueError(
                            f"precisions_init ('{cov}') must be symmetric positive-definite"
                        )
            elif (p <= 0).any():
                raise ValueError(f"precisions_init ('{cov}') must be positive")
            out["precisions_init"] = p
        return out

    def _validated_X(self, X) -> np.ndarray:
        self._check_is_fitted()
        return check_data(X, "X", n_features=self.n_features_in_, allow_nan=True)

    # ------------------------------------------------------------ inference

    def _per_row(self, X, **want):
        per_row = gm.per_row if has_nan(X) else g.per_row
        return per_row(X, self._params, n_threads=self.n_threads, **want)

    def _row_output(self, X, which: str):
        """One per-row output for in-memory, out-of-core or Dask ``X``."""
        self._check_is_fitted()
        if is_dask_array(X):
            from ._dask import map_rows

            if X.ndim != 2 or X.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has shape {X.shape}; the model was fitted with "
                    f"{self.n_features_in_} features"
                )
            width = self.n_components if which == "responsibilities" else None
            dtype = np.int64 if which == "labels" else np.float64
            return map_rows(
                X, _rows, self._params, which, None, n_columns=width, dtype=dtype
            )
        if not isinstance(X, np.ndarray) or isinstance(X, np.memmap):
            if (
                hasattr(X, "shape")
                or isinstance(X, (str, bytes))
                or hasattr(X, "__fspath__")
            ):
                source, X_mem = as_source(X, chunk_rows=self.chunk_rows, allow_nan=True)
                if X_mem is None:
                    if source.n_features != self.n_features_in_:
                        raise ValueError(
                            f"X has {source.n_features} features, but the model was "
                            f"fitted with {self.n_features_in_} features"
                        )
                    parts = source.map_chunks(
                        _rows_chunk, self._params, which, self.n_threads
                    )
                    return np.concatenate(parts)
        X = self._validated_X(X)
        return _rows(X, self._params, which, self.n_threads)

    def predict(self, X) -> np.ndarray:
        """Most probable component of each row.

        ``X`` may be in memory, out of core (memmap, ``.npy`` path, h5py,
        zarr) or a Dask array (the result is then a lazy Dask array).

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

    def impute(self, X) -> np.ndarray:
        """Replace missing values (NaN) by their conditional mean under the
        fitted mixture.

        Each missing value of a row becomes
        ``sum_k p(k | x_obs) E[x_mis | x_obs, k]``: the mix of the components'
        conditional means, weighted by the posterior of each component given
        the row's observed values.  A row with every value missing gets the
        mixture mean.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows with NaN marking missing values.

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
            A new array of the dtype of the validated ``X`` (float32 stays
            float32); observed values are copied unchanged.
        """
        self._check_is_fitted()
        X = check_data(
            X,
            "X",
            n_features=self.n_features_in_,
            allow_nan=True,
            allow_all_nan_rows=True,
        )
        return gm.impute(X, self._params, n_threads=self.n_threads)

    def sample_missing(self, X, n_draws: int = 1, random_state=None) -> np.ndarray:
        """Draw the missing values (NaN) of ``X`` from the fitted mixture, for
        multiple imputation.

        For every draw and row a component is drawn from ``p(k | x_obs)``, then
        the missing values from that component's conditional Gaussian
        ``p(x_mis | x_obs, k)``.  A row with every value missing gets a draw
        from the mixture.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows with NaN marking missing values.
        n_draws : int, default=1
            Number of completed copies of ``X``.
        random_state : int, RandomState or None, default=None
            Seed of the draws (None uses numpy's global ``RandomState``).  The
            draws do not depend on the number of threads.

        Returns
        -------
        X_draws : ndarray of shape (n_draws, n_samples, n_features)
            Completed copies of ``X`` (dtype of the validated ``X``); observed
            values are copied unchanged.
        """
        self._check_is_fitted()
        check_int(n_draws, "n_draws", 1)
        rng = check_random_state(random_state)
        X = check_data(
            X,
            "X",
            n_features=self.n_features_in_,
            allow_nan=True,
            allow_all_nan_rows=True,
        )
        return gm.sample_missing(
            X, self._params, n_draws, rng, n_threads=self.n_threads
        )

    def score(self, X, y=None, sample_weight=None) -> float:
        """Mean (optionally weighted) log-likelihood of ``X``."""
        logp = self.score_samples(X)
        if sample_weight is None:
            return float(logp.mean())
        sw = check_sample_weight(sample_weight, logp.shape[0])
        return float(np.dot(sw, logp) / sw.sum())

    def _n_parameters(self) -> int:
        return g.n_parameters(
            self.covariance_type, self.n_components, self.means_.shape[1]
        )

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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN marks a missing value
        return tags

    def sample(self, n_samples: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Draw samples from the fitted mixture (scikit-learn's algorithm).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            Component of each sample.
        """
        self._check_is_fitted()
        check_int(n_samples, "n_samples", 1)
        return g.sample(self._params, n_samples, check_random_state(self.random_state))

    # ----------------------------------------------------------- persistence

    def save(self, path: str | PathLike) -> None:
        """Write the fitted model to an ``.npz`` file (no pickle).

        Load it back with :func:`fastem.load`.
        """
        from .io import save

        save(self, path)


_OUTPUT_INDEX = {"log_likelihood": 0, "responsibilities": 1, "labels": 2}


def _rows(X, params: g.GaussianParams, which: str, n_threads) -> np.ndarray:
    """Per-row output ``which`` for rows of ``X`` (NaN marks missing values)."""
    X = check_data(X, "X", n_features=params.n_features, allow_nan=True)
    per_row = gm.per_row if has_nan(X) else g.per_row
    return per_row(X, params, n_threads=n_threads, **{which: True})[
        _OUTPUT_INDEX[which]
    ]


def _rows_chunk(X, w, params, which, n_threads):
    return _rows(X, params, which, n_threads)
