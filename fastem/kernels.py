"""The low-level function API, for embedding fastem in other code.

These are the functions :class:`fastem.GaussianMixture` itself calls: one
E-step pass that returns additive sufficient statistics, and the M-step that
turns statistics into parameters.  A custom EM loop, a streaming fit or a
distributed fit is a loop over them::

    params = make_gaussian_params(weights, means, covariances, "full")
    for _ in range(20):
        stats = gaussian_stats(X, params)            # one pass, no N x K array
        params, degenerate = gaussian_mstep(stats)   # O(K D^2)
    mean_loglik = stats.log_likelihood / stats.total_weight

Statistics of disjoint chunks computed with the same ``params`` add up
(``stats_a + stats_b``).  Inputs are validated; arrays are never modified.
"""

from __future__ import annotations

import numpy as np

from ._validation import (
    check_data,
    check_option,
    check_param_array,
    check_sample_weight,
)
from .families.gaussian import (
    COVARIANCE_TYPES,
    GaussianParams,
    GaussianStats,
    e_step,
    m_step,
    per_row,
    precisions_cholesky_from_covariances,
)

__all__ = [
    "GaussianParams",
    "GaussianStats",
    "gaussian_mstep",
    "gaussian_per_row",
    "gaussian_stats",
    "gaussian_stats_missing",
    "make_gaussian_params",
]


def make_gaussian_params(
    weights, means, covariances, covariance_type: str
) -> GaussianParams:
    """Validated Gaussian mixture parameters with their precision factors.

    Parameters
    ----------
    weights : array-like of shape (n_components,)
        Non-negative, summing to 1.
    means : array-like of shape (n_components, n_features)
    covariances : array-like
        ``(K, D, D)`` full, ``(D, D)`` tied, ``(K, D)`` diag, ``(K,)`` spherical.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    params : GaussianParams
    """
    cov = check_option(covariance_type, "covariance_type", COVARIANCE_TYPES)
    means = np.asarray(means, dtype=np.float64)
    if means.ndim != 2:
        raise ValueError(
            f"means must be 2-d (n_components, n_features), got {means.ndim}-d"
        )
    K, D = means.shape
    means = check_param_array(means, "means", (K, D))
    weights = check_param_array(weights, "weights", (K,))
    if (weights < 0).any() or abs(weights.sum() - 1.0) > 1e-8:
        raise ValueError("weights must be non-negative and sum to 1")
    shape = {"full": (K, D, D), "tied": (D, D), "diag": (K, D), "spherical": (K,)}[cov]
    covariances = check_param_array(covariances, "covariances", shape)
    prec_chol, bad = precisions_cholesky_from_covariances(covariances, cov)
    if bad:
        raise ValueError(f"covariances of component(s) {bad} are not positive definite")
    return GaussianParams(cov, weights, means, covariances, prec_chol)


def _checked(X, params: GaussianParams, sample_weight=None):
    if not isinstance(params, GaussianParams):
        raise TypeError("params must be a GaussianParams (see make_gaussian_params)")
    X = check_data(X, "X", n_features=params.n_features)
    if sample_weight is None:
        return X, np.empty(0)
    return X, check_sample_weight(sample_weight, X.shape[0])


def gaussian_stats(
    X, params: GaussianParams, sample_weight=None, *, n_threads: int | None = None
) -> GaussianStats:
    """E-step: sufficient statistics and log-likelihood of ``X`` in one pass.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        float32 or float64 rows (other dtypes are converted to float64).
    params : GaussianParams
        Current parameters.
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative row weights.
    n_threads : int, optional
        Kernel threads; the result does not depend on it.

    Returns
    -------
    stats : GaussianStats
        Additive statistics (see its docstring for the definitions).
    """
    X, sw = _checked(X, params, sample_weight)
    return e_step(X, sw, params, n_threads)


def gaussian_stats_missing(
    X, params: GaussianParams, sample_weight=None, *, n_threads: int | None = None
) -> GaussianStats:
    """E-step for rows with missing values (NaN): additive statistics.

    Each row contributes the likelihood of its observed values; its missing
    values contribute their conditional expectations given the observed ones
    (and the conditional covariances to the second moments), so the
    statistics add to those of :func:`gaussian_stats` on other chunks and
    :func:`gaussian_mstep` gives the exact EM update for data missing at
    random.  Without NaN the result is exactly :func:`gaussian_stats`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Rows with NaN marking missing values (infinite values and rows with
        every value missing are rejected).
    params : GaussianParams
    sample_weight : array-like of shape (n_samples,), optional
    n_threads : int, optional
        Kernel threads; the result does not depend on it.

    Returns
    -------
    stats : GaussianStats

    Notes
    -----
    Each call groups the incomplete rows by missingness pattern (a sort);
    a loop over the same data could group once, as
    :class:`fastem.GaussianMixture` does.
    """
    if not isinstance(params, GaussianParams):
        raise TypeError("params must be a GaussianParams (see make_gaussian_params)")
    X = check_data(X, "X", n_features=params.n_features, allow_nan=True)
    sw = (
        np.empty(0)
        if sample_weight is None
        else check_sample_weight(sample_weight, X.shape[0])
    )
    from .families import gaussian_missing

    return gaussian_missing.stats(X, sw, params, n_threads)


def gaussian_mstep(
    stats: GaussianStats, reg_covar: float = 1e-6
) -> tuple[GaussianParams, list[int]]:
    """M-step: parameters maximising the expected log-likelihood.

    Returns
    -------
    params : GaussianParams
    degenerate : list of int
        Components that came out empty or with a covariance that is not
        positive definite (their parameters are placeholders).
    """
    if not isinstance(stats, GaussianStats):
        raise TypeError("stats must be a GaussianStats from gaussian_stats")
    return m_step(stats, float(reg_covar))


def gaussian_per_row(
    X,
    params: GaussianParams,
    *,
    log_likelihood: bool = True,
    responsibilities: bool = False,
    labels: bool = False,
    n_threads: int | None = None,
):
    """Per-row ``log p(x)``, responsibilities ``p(k | x)`` and labels.

    Returns
    -------
    log_likelihood, responsibilities, labels : ndarray or None
        Each is None unless asked for.
    """
    X, _ = _checked(X, params)
    return per_row(
        X,
        params,
        log_likelihood=log_likelihood,
        responsibilities=responsibilities,
        labels=labels,
        n_threads=n_threads,
    )
