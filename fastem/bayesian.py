"""``fastem.BayesianGaussianMixture``: a drop-in for scikit-learn's.

Variational inference for a Gaussian mixture with a Dirichlet distribution
or Dirichlet process prior on the weights and a Normal-Wishart prior on the
components, with the updates of scikit-learn's ``_bayesian_mixture.py``.

The E-step is the fused Gaussian kernel of :mod:`fastem.families.gaussian`:
the variational E-step differs from the EM one only by the per-component
constant of the log-density, which the kernel takes as ``log_norm``::

    log_norm_k = E[log pi_k] + log det U_k - D/2 log(2 pi)
                 - D/2 log(nu_k) + 1/2 E[log |Lambda_k|]' - D / (2 beta_k)

(``U_k`` the Cholesky factor of the scaled precision ``W_k^-1 / nu_k``, as
scikit-learn stores it).  The variational M-step works from the weighted
sufficient statistics, and the evidence lower bound takes the entropy of the
responsibilities from the same statistics (``log_likelihood -
expected_log_joint``), so no ``(n_samples, n_components)`` array is ever
allocated during ``fit``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betaln, digamma, gammaln

from ._estimator import MixtureEstimator
from ._validation import check_option, check_param_array, check_real
from .families import gaussian as g
from .families.gaussian_fit import INIT_METHODS, TiedScatterMemo, _initial_stats

WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
_LOG_2PI = math.log(2 * math.pi)
_LOG_2 = math.log(2.0)
_CHUNK_ROWS = 1 << 16


@dataclass(frozen=True)
class Priors:
    """Resolved prior parameters (the ``*_prior_`` attributes)."""

    weight_concentration_prior_type: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray | float


@dataclass(frozen=True)
class VariationalParams:
    """Variational posterior of a Bayesian Gaussian mixture.

    Shapes are scikit-learn's: ``weight_concentration`` is ``(K,)`` for the
    Dirichlet distribution and a pair of ``(K,)`` arrays (the Beta
    parameters of the stick-breaking) for the Dirichlet process;
    ``degrees_of_freedom`` is a float for ``tied`` and ``(K,)`` otherwise.
    ``log_norm`` is the per-component constant of the variational E-step.
    """

    covariance_type: str
    weight_concentration: Any
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: Any
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    weights: np.ndarray
    log_norm: np.ndarray

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def gaussian(self) -> g.GaussianParams:
        """The point estimate the kernels and :func:`fastem.families.gaussian.sample` use."""
        return g.GaussianParams(
            self.covariance_type,
            self.weights,
            self.means,
            self.covariances,
            self.precisions_cholesky,
        )


def _log_wishart_norm(dof, log_det_precisions_chol, n_features):
    """scikit-learn's ``_log_wishart_norm`` (without the ``log pi`` term)."""
    dof = np.asarray(dof, dtype=np.float64)
    gl = gammaln(0.5 * (dof[..., None] - np.arange(n_features))).sum(axis=-1)
    return -(dof * log_det_precisions_chol + dof * n_features * 0.5 * _LOG_2 + gl)


class BayesianGaussianEM:
    """The variational Gaussian mixture as a family of :func:`fastem.em.fit_em`.

    ``m_step`` never reports degenerate components: a component without
    data falls back to its prior, which is the point of the model.  The
    monitored ``lower_bound`` is scikit-learn's evidence lower bound (up to
    constants), computed from the statistics of the E-step and the
    parameters of the following M-step.
    """

    def __init__(
        self, covariance_type: str, reg_covar: float, priors: Priors, n_threads=None
    ):
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.priors = priors
        self.n_threads = n_threads
        self._passes = TiedScatterMemo()

    # -- the driver protocol ------------------------------------------------

    def e_step(self, source, params: VariationalParams) -> g.GaussianStats:
        return self._passes.e_step(
            source, params.gaussian, self.n_threads, params.log_norm
        )

    def m_step(self, stats: g.GaussianStats):
        return self.params_from_stats(stats), []

    def lower_bound(self, stats: g.GaussianStats, params: VariationalParams) -> float:
        """scikit-learn's ``_compute_lower_bound`` with the weighted entropy
        ``-sum_i w_i sum_k r_ik log r_ik`` taken from the statistics."""
        cov = self.covariance_type
        D = params.means.shape[1]
        K = params.means.shape[0]
        dof = params.degrees_of_freedom
        log_det = g.log_det_cholesky(
            params.precisions_cholesky, cov, D
        ) - 0.5 * D * np.log(dof)
        wishart = _log_wishart_norm(dof, log_det, D)
        log_wishart = K * float(wishart) if cov == "tied" else float(np.sum(wishart))
        wc = params.weight_concentration
        if self.priors.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -float(np.sum(betaln(wc[0], wc[1])))
        else:
            log_norm_weight = float(gammaln(np.sum(wc)) - np.sum(gammaln(wc)))
        entropy = stats.log_likelihood - stats.expected_log_joint
        return (
            entropy
            - log_wishart
            - log_norm_weight
            - 0.5 * D * float(np.sum(np.log(params.mean_precision)))
        )

    # -- variational updates ------------------------------------------------

    def params_from_stats(self, stats: g.GaussianStats) -> VariationalParams:
        """The variational M-step (scikit-learn's ``_estimate_weights``,
        ``_estimate_means`` and ``_estimate_precisions``)."""
        pr = self.priors
        cov = self.covariance_type
        nk, xk, sk = g.estimate_moments(stats, self.reg_covar)
        K = xk.shape[0]
        if pr.weight_concentration_prior_type == "dirichlet_process":
            tail = np.hstack((np.cumsum(nk[::-1])[-2::-1], 0.0))
            wc = (1.0 + nk, pr.weight_concentration + tail)
        else:
            wc = pr.weight_concentration + nk
        beta = pr.mean_precision + nk
        means = (pr.mean_precision * pr.mean + nk[:, None] * xk) / beta[:, None]
        diff = xk - pr.mean
        shrink = pr.mean_precision / beta
        if cov == "full":
            dof = pr.degrees_of_freedom + nk
            covariances = (
                pr.covariance
                + nk[:, None, None] * sk
                + (nk * shrink)[:, None, None] * diff[:, :, None] * diff[:, None, :]
            )
            covariances /= dof[:, None, None]
        elif cov == "tied":
            dof = pr.degrees_of_freedom + nk.sum() / K
            covariances = (
                pr.covariance
                + sk * nk.sum() / K
                + pr.mean_precision / K * ((nk / beta) * diff.T) @ diff
            )
            covariances /= dof
            dof = float(dof)
        elif cov == "diag":
            dof = pr.degrees_of_freedom + nk
            covariances = pr.covariance + nk[:, None] * (sk + shrink[:, None] * diff**2)
            covariances /= dof[:, None]
        else:
            dof = pr.degrees_of_freedom + nk
            covariances = pr.covariance + nk * (sk + shrink * np.mean(diff**2, axis=1))
            covariances /= dof
        prec_chol, bad = g.precisions_cholesky_from_covariances(covariances, cov)
        if bad:
            raise ValueError(
                "Fitting the mixture model failed because some components have "
                "ill-defined empirical covariance (for instance caused by singleton "
                "or collapsed samples). Try to decrease the number of components, "
                "or increase reg_covar."
            )
        return variational_params(
            cov,
            pr.weight_concentration_prior_type,
            wc,
            beta,
            means,
            dof,
            covariances,
            prec_chol,
        )


def variational_params(
    covariance_type: str,
    weight_concentration_prior_type: str,
    weight_concentration,
    mean_precision: np.ndarray,
    means: np.ndarray,
    degrees_of_freedom,
    covariances: np.ndarray,
    precisions_cholesky: np.ndarray,
) -> VariationalParams:
    """The variational posterior with its point-estimate weights and the
    per-component constant ``log_norm`` of the E-step.

    Parameters
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}
    weight_concentration, mean_precision, means, degrees_of_freedom, covariances, precisions_cholesky
        The fields of :class:`VariationalParams` of the same names.

    Returns
    -------
    params : VariationalParams
    """
    cov = covariance_type
    wc = weight_concentration
    beta = mean_precision
    dof = degrees_of_freedom
    prec_chol = precisions_cholesky
    D = means.shape[1]
    if weight_concentration_prior_type == "dirichlet_process":
        a, b = wc
        total = a + b
        weights = a / total * np.hstack((1.0, np.cumprod(b / total)[:-1]))
        weights /= weights.sum()
        dg_sum = digamma(total)
        dg_b = digamma(b)
        log_w = digamma(a) - dg_sum + np.hstack((0.0, np.cumsum(dg_b - dg_sum)[:-1]))
    else:
        weights = wc / wc.sum()
        log_w = digamma(wc) - digamma(wc.sum())
    log_lambda = D * _LOG_2 + digamma(
        0.5 * (np.asarray(dof)[..., None] - np.arange(D))
    ).sum(axis=-1)
    log_norm = (
        log_w
        + g.log_det_cholesky(prec_chol, cov, D)
        - 0.5 * D * _LOG_2PI
        - 0.5 * D * np.log(dof)
        + 0.5 * (log_lambda - D / beta)
    )
    return VariationalParams(
        cov,
        wc,
        beta,
        means,
        dof,
        covariances,
        prec_chol,
        weights,
        np.ascontiguousarray(log_norm, dtype=np.float64),
    )


# ---------------------------------------------------------------------------
# Default priors from the data
# ---------------------------------------------------------------------------


def _data_moments(source, need_full: bool) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted mean, weighted (co)variance with frequency-weight ``ddof=1``
    and the total weight, in two float64 passes over the chunks of
    ``source`` (no copy of X; on Dask, on the workers)."""
    sums = source.map_reduce(_weighted_sums)
    total = float(sums[0])
    mean = sums[1:] / total
    s2 = source.map_reduce(_centred_scatter, mean, need_full)
    denom = total - 1.0 if total > 1.0 else total
    return mean, s2 / denom, total


def _weighted_sums(X, w) -> np.ndarray:
    """``[sum_i w_i, sum_i w_i x_i]`` of one chunk (float64)."""
    total = 0.0
    s1 = np.zeros(X.shape[1])
    for r0 in range(0, X.shape[0], _CHUNK_ROWS):
        xb = np.asarray(X[r0 : r0 + _CHUNK_ROWS], dtype=np.float64)
        if w.shape[0]:
            wb = w[r0 : r0 + _CHUNK_ROWS]
            s1 += wb @ xb
            total += float(wb.sum())
        else:
            s1 += xb.sum(axis=0)
            total += xb.shape[0]
    return np.concatenate(([total], s1))


def _centred_scatter(X, w, mean: np.ndarray, need_full: bool) -> np.ndarray:
    """``sum_i w_i (x_i - mean)(x_i - mean)^T`` of one chunk (its diagonal
    unless ``need_full``)."""
    D = X.shape[1]
    s2 = np.zeros((D, D)) if need_full else np.zeros(D)
    for r0 in range(0, X.shape[0], _CHUNK_ROWS):
        xc = np.asarray(X[r0 : r0 + _CHUNK_ROWS], dtype=np.float64) - mean
        wx = xc * w[r0 : r0 + _CHUNK_ROWS, None] if w.shape[0] else xc
        s2 += wx.T @ xc if need_full else (wx * xc).sum(axis=0)
    return s2


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


class BayesianGaussianMixture(MixtureEstimator):
    """Variational Bayesian Gaussian mixture with fused Numba kernels.

    Same parameters, attributes and results as
    ``sklearn.mixture.BayesianGaussianMixture`` (for the same initial
    responsibilities), plus per-row ``sample_weight`` (frequency weights),
    float32 input, ``n_threads``, a per-iteration ``callback``, out-of-core,
    streamed and Dask input (``chunk_rows``) and ``save``.  Each iteration is one fused pass over the data: the variational E-step is
    the Gaussian E-step kernel with the expected log-weights and
    log-determinants as per-component constants.

    Parameters
    ----------
    n_components : int, default=1
        Upper bound on the number of components; the weight prior lets the
        fit leave surplus components with near-zero weight.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        Covariance parametrisation.
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (the
        *total*, not per-sample, evidence lower bound, as in scikit-learn).
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonals of the
        per-component sample covariances.
    max_iter : int, default=100
        Iterations per initialisation.
    n_init : int, default=1
        Initialisations; the one with the highest lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How initial responsibilities are chosen.  ``'random'`` and
        ``'random_from_data'`` draw exactly what scikit-learn draws from the
        same ``random_state`` (for ``'random'``: up to 65536 rows).
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}, default='dirichlet_process'
        Stick-breaking (Dirichlet process) or Dirichlet distribution prior
        on the weights.
    weight_concentration_prior : float or None, default=None
        Concentration of the weight prior (``1 / n_components`` if None);
        smaller values put more weight on few components.
    mean_precision_prior : float or None, default=None
        Precision prior of the means (1 if None).
    mean_prior : array-like of shape (n_features,) or None, default=None
        Prior mean (the weighted data mean if None).
    degrees_of_freedom_prior : float or None, default=None
        Wishart degrees of freedom, ``> n_features - 1`` (``n_features`` if
        None).
    covariance_prior : float or array-like or None, default=None
        Wishart covariance prior: ``(n_features, n_features)`` for full and
        tied, ``(n_features,)`` for diag, a float for spherical.  If None,
        the weighted sample covariance of ``X`` (with the frequency-weight
        denominator ``sum(w) - 1``, or ``sum(w)`` when that is at most 1).
    random_state : int, RandomState or None, default=None
        Seed for initialisation and :meth:`sample`.
    warm_start : bool, default=False
        Continue from the previous fit (``n_init`` is ignored).
    verbose : int, default=0
        1 or more writes progress to standard error.
    verbose_interval : int, default=10
        Iterations between progress lines.
    n_threads : int or None, default=None
        Threads for the kernels (None keeps numba's setting, -1 uses all).
    callback : callable or None, default=None
        ``callback(iteration, lower_bound)`` after each iteration; returning
        True stops the current run.
    chunk_rows : int or None, default=None
        Rows per chunk when ``X`` is out of core (a ``numpy.memmap``, a path
        to an ``.npy`` file, an h5py/zarr array); default about 64 MiB of
        data per chunk.  Dask arrays and iterables of chunks are accepted
        too (the default priors are computed from the chunks as well).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shapes depend on ``covariance_type`` as in scikit-learn.
    weight_concentration_prior_ : float
    weight_concentration_ : ndarray or tuple of two ndarrays
    mean_precision_prior_ : float
    mean_precision_ : ndarray of shape (n_components,)
    mean_prior_ : ndarray of shape (n_features,)
    degrees_of_freedom_prior_ : float
    degrees_of_freedom_ : ndarray of shape (n_components,) or float
    covariance_prior_ : float or ndarray
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Evidence lower bound (up to constants) of the best run.
    lower_bounds_ : list of float
    n_features_in_ : int

    Notes
    -----
    :meth:`score_samples`, :meth:`predict` and :meth:`predict_proba` use the
    variational log-probabilities, as scikit-learn does (``score_samples``
    is the log-sum-exp of the variational weighted log-probabilities of a
    row); :meth:`sample` draws from the mixture with the point estimates
    ``weights_``, ``means_`` and ``covariances_``.  There is no ``bic`` or
    ``aic`` (the variational scores are not likelihoods): compare models by
    ``lower_bound_``, or let the weight prior empty surplus components.
    ``save`` and :func:`fastem.load` keep the fitted posterior and priors.
    """

    _fitted_arrays = (
        "weights_",
        "means_",
        "covariances_",
        "precisions_cholesky_",
        "weight_concentration_",
        "mean_precision_",
        "degrees_of_freedom_",
        "weight_concentration_prior_",
        "mean_precision_prior_",
        "mean_prior_",
        "degrees_of_freedom_prior_",
        "covariance_prior_",
    )
    _init_methods = INIT_METHODS
    _min_samples = 2  # as scikit-learn's

    def __init__(
        self,
        *,
        n_components: int = 1,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
        random_state=None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        n_threads: int | None = None,
        callback: Callable[[int, float], Any] | None = None,
        chunk_rows: int | None = None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.n_threads = n_threads
        self.callback = callback
        self.chunk_rows = chunk_rows

    # ------------------------------------------------------------ hooks

    def _validate_family_hyperparameters(self) -> None:
        check_option(self.covariance_type, "covariance_type", g.COVARIANCE_TYPES)
        check_real(self.reg_covar, "reg_covar")
        check_option(
            self.weight_concentration_prior_type,
            "weight_concentration_prior_type",
            WEIGHT_PRIOR_TYPES,
        )
        for name in (
            "weight_concentration_prior",
            "mean_precision_prior",
            "degrees_of_freedom_prior",
        ):
            value = getattr(self, name)
            if value is not None:
                _check_positive(value, name)

    def _family_for(self, source, X_mem):
        # The priors of this fit (from the data unless given) are kept for
        # the initialisation and for the ``*_prior_`` attributes.
        self._priors = self._resolve_priors(source)
        return self._make_family(), source, lambda: source

    def _make_family(self) -> BayesianGaussianEM:
        return BayesianGaussianEM(
            self.covariance_type, self.reg_covar, self._priors, self.n_threads
        )

    def _check_warm_start(self) -> None:
        if self._params.covariance_type != self.covariance_type:
            raise ValueError(
                "covariance_type changed since the warm-started fit "
                f"({self._params.covariance_type!r} -> {self.covariance_type!r})"
            )

    def _validated_inits(self, n_features: int) -> dict[str, Any]:
        return {}  # initial responsibilities only, as in scikit-learn

    def _initial_params(self, source, rng, inits) -> VariationalParams:
        stats = _initial_stats(
            source,
            self.n_components,
            self.covariance_type,
            self.init_params,
            rng,
            self.n_threads,
        )
        return self._make_family().params_from_stats(stats)

    def _set_params_from(self, params: VariationalParams) -> None:
        wc = params.weight_concentration
        arrays = [
            params.weights,
            params.means,
            params.covariances,
            params.precisions_cholesky,
            params.log_norm,
        ]
        arrays += list(wc) if isinstance(wc, tuple) else [wc]
        if not all(np.isfinite(a).all() for a in arrays):
            raise FloatingPointError(
                "Variational inference produced non-finite parameters; check the "
                "scale of X or increase reg_covar"
            )
        priors = self._priors
        self._params = params
        self.weight_concentration_prior_ = priors.weight_concentration
        self.mean_precision_prior_ = priors.mean_precision
        self.mean_prior_ = priors.mean
        self.degrees_of_freedom_prior_ = priors.degrees_of_freedom
        self.covariance_prior_ = priors.covariance
        self.weight_concentration_ = wc
        self.mean_precision_ = params.mean_precision
        self.means_ = params.means
        self.degrees_of_freedom_ = params.degrees_of_freedom
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = params.gaussian.precisions()
        self.weights_ = params.weights

    def _restore_fitted(self, arrays: dict[str, np.ndarray]) -> None:
        def f64(name):
            return np.asarray(arrays[name], dtype=np.float64)

        cov = self.covariance_type
        prior_type = self.weight_concentration_prior_type
        wc = f64("weight_concentration_")
        if prior_type == "dirichlet_process":
            wc = (wc[0].copy(), wc[1].copy())
        dof = f64("degrees_of_freedom_")
        prior_cov = f64("covariance_prior_")
        self._priors = Priors(
            prior_type,
            float(arrays["weight_concentration_prior_"]),
            float(arrays["mean_precision_prior_"]),
            f64("mean_prior_"),
            float(arrays["degrees_of_freedom_prior_"]),
            float(prior_cov) if cov == "spherical" else prior_cov,
        )
        self._set_params_from(
            variational_params(
                cov,
                prior_type,
                wc,
                f64("mean_precision_"),
                f64("means_"),
                float(dof) if cov == "tied" else dof,
                f64("covariances_"),
                f64("precisions_cholesky_"),
            )
        )

    def _per_row_function(self):
        return _per_row

    def _sample(self, n_samples, rng):
        return g.sample(self._params.gaussian, n_samples, rng)

    bic = property(lambda self: _no_criterion(self, "bic"))
    aic = property(lambda self: _no_criterion(self, "aic"))

    def _resolve_priors(self, source) -> Priors:
        """The ``*_prior_`` values: user-given (checked) or from the data."""
        D = source.n_features
        K = self.n_components
        cov = self.covariance_type
        wcp = (
            1.0 / K
            if self.weight_concentration_prior is None
            else float(self.weight_concentration_prior)
        )
        beta0 = (
            1.0
            if self.mean_precision_prior is None
            else float(self.mean_precision_prior)
        )
        if self.degrees_of_freedom_prior is None:
            dof0 = float(D)
        else:
            dof0 = float(self.degrees_of_freedom_prior)
            if not dof0 > D - 1.0:
                raise ValueError(
                    "degrees_of_freedom_prior must be greater than n_features - 1 "
                    f"= {D - 1}, got {dof0}"
                )
        mean = prior_cov = None
        if self.mean_prior is not None:
            mean = check_param_array(self.mean_prior, "mean_prior", (D,))
        if self.covariance_prior is None:
            pass
        elif cov in ("full", "tied"):
            prior_cov = check_param_array(
                self.covariance_prior, "covariance_prior", (D, D)
            )
            if (
                not np.allclose(prior_cov, prior_cov.T)
                or not (np.linalg.eigvalsh(prior_cov) > 0).all()
            ):
                raise ValueError(
                    f"covariance_prior ('{cov}') must be symmetric positive-definite"
                )
        elif cov == "diag":
            prior_cov = check_param_array(
                self.covariance_prior, "covariance_prior", (D,)
            )
            if (prior_cov <= 0).any():
                raise ValueError("covariance_prior ('diag') must be positive")
        else:
            prior_cov = _check_positive(self.covariance_prior, "covariance_prior")
        if mean is None or prior_cov is None:
            data_mean, data_cov, _ = _data_moments(source, cov in ("full", "tied"))
            if mean is None:
                mean = data_mean
            if prior_cov is None:
                prior_cov = data_cov if cov != "spherical" else float(data_cov.mean())
        return Priors(
            self.weight_concentration_prior_type, wcp, beta0, mean, dof0, prior_cov
        )


def _per_row(X, params: VariationalParams, n_threads=None, **want):
    """Per-row outputs of the variational E-step (``log_norm`` as the
    per-component constant of the Gaussian kernel)."""
    return g.per_row(
        X, params.gaussian, n_threads=n_threads, log_norm=params.log_norm, **want
    )


def _no_criterion(model, name: str):
    raise AttributeError(
        f"{type(model).__name__} has no {name}(): its variational scores are "
        "not likelihoods; compare lower_bound_ instead"
    )


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not np.isfinite(value) or not value > 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return float(value)
