"""``fastem.GaussianMixture``: a drop-in for ``sklearn.mixture.GaussianMixture``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import em
from ._estimator import MixtureEstimator, check_weights_init
from ._patterns import has_nan as _has_nan
from ._validation import (
    check_data,
    check_int,
    check_option,
    check_param_array,
    check_random_state,
    check_real,
)
from .families import gaussian as g
from .families import gaussian_missing as gm
from .families.gaussian_fit import INIT_METHODS, GaussianEM, initial_params


class GaussianMixture(MixtureEstimator):
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

    _fitted_arrays = ("weights_", "means_", "covariances_", "precisions_cholesky_")
    _init_methods = INIT_METHODS
    _allow_nan = True  # NaN marks a missing value (in-memory data only)
    _sparse_error_name = "this estimator"

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
        return super().fit(X, y, sample_weight)

    def _family_for(self, source, X_mem):
        if X_mem is not None and source.has_nan:
            source, init_source = gm.fit_parts(X_mem, source.sample_weight)
            family = gm.GaussianMissingEM(
                self.covariance_type, self.reg_covar, self.n_threads
            )
            return family, source, init_source
        family = GaussianEM(self.covariance_type, self.reg_covar, self.n_threads)
        return family, source, lambda: source

    def _initial_params(self, source, rng, inits) -> g.GaussianParams:
        return initial_params(
            source,
            self.n_components,
            self.covariance_type,
            self.reg_covar,
            self.init_params,
            rng,
            n_threads=self.n_threads,
            **inits,
        )

    def _after_fit(self, source) -> None:
        self._online = None

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
        source, family, init_source, _, _ = self._prepare(X, sample_weight)
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

    def _restore_fitted(self, arrays: dict[str, np.ndarray]) -> None:
        self._set_params_from(
            g.GaussianParams(
                self.covariance_type,
                arrays["weights_"],
                arrays["means_"],
                arrays["covariances_"],
                arrays["precisions_cholesky_"],
            )
        )

    # ------------------------------------------------------------ validation

    def _validate_family_hyperparameters(self) -> None:
        check_option(self.covariance_type, "covariance_type", g.COVARIANCE_TYPES)
        check_real(self.reg_covar, "reg_covar")

    def _validated_inits(self, n_features: int) -> dict[str, np.ndarray | None]:
        K, D, cov = self.n_components, n_features, self.covariance_type
        out: dict[str, np.ndarray | None] = {
            "weights_init": None,
            "means_init": None,
            "precisions_init": None,
        }
        if self.weights_init is not None:
            out["weights_init"] = check_weights_init(self.weights_init, K)
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
                if not (
                    np.allclose(p, np.swapaxes(p, -1, -2))
                    and (np.linalg.eigvalsh(p) > 0).all()
                ):
                    raise ValueError(
                        f"precisions_init ('{cov}') must be symmetric positive-definite"
                    )
            elif (p <= 0).any():
                raise ValueError(f"precisions_init ('{cov}') must be positive")
            out["precisions_init"] = p
        return out

    # ------------------------------------------------------------ inference

    def _per_row_function(self):
        return _per_row

    def predict(self, X) -> np.ndarray:
        """Most probable component of each row.

        ``X`` may be in memory, out of core (memmap, ``.npy`` path, h5py,
        zarr) or a Dask array (the result is then a lazy Dask array).

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return super().predict(X)

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

    def _n_parameters(self) -> int:
        return g.n_parameters(
            self.covariance_type, self.n_components, self.means_.shape[1]
        )

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
        return super().sample(n_samples)

    def _sample(self, n_samples, rng):
        return g.sample(self._params, n_samples, rng)


def _per_row(X, params: g.GaussianParams, n_threads=None, has_nan=None, **want):
    """``per_row`` of the complete-data or (when ``X`` has NaN) the
    missing-value family; ``has_nan`` None looks at ``X``."""
    if has_nan is None:
        has_nan = _has_nan(X, n_threads)
    per_row = gm.per_row if has_nan else g.per_row
    return per_row(X, params, n_threads=n_threads, **want)
