"""A slow, plain-numpy reference for EM with missing values (NaN).

Textbook formulas, one row at a time, written with *covariances* (the
library works with precisions and Cholesky factors of the missing block):

* E-step: ``log p(x_O, k) = log w_k + log N(x_O; mu_kO, Sigma_kOO)``;
  responsibilities by normalising over ``k``.
* Conditional moments: ``xhat_kM = mu_kM + Sigma_kMO Sigma_kOO^{-1}
  (x_O - mu_kO)`` and ``C_kMM = Sigma_kMM - Sigma_kMO Sigma_kOO^{-1}
  Sigma_kOM`` (Little & Rubin 2002, ch. 11; Ghahramani & Jordan 1994).
* M-step: ``mu_k = sum_i r_ik xhat_ik / n_k`` and ``Sigma_k = sum_i r_ik
  [(xhat_ik - mu_k)(xhat_ik - mu_k)^T + C_ik] / n_k`` (+ ``reg_covar`` on the
  diagonal); ``tied`` pools the ``n_k Sigma_k``; ``diag`` keeps the diagonal;
  ``spherical`` its mean.
"""

from __future__ import annotations

import numpy as np

LOG_2PI = np.log(2 * np.pi)


def full_covariances(covariances, covariance_type, n_components, n_features):
    """``(K, D, D)`` covariance matrices for any covariance type."""
    K, D = n_components, n_features
    c = np.asarray(covariances, dtype=np.float64)
    if covariance_type == "full":
        return c.copy()
    if covariance_type == "tied":
        return np.broadcast_to(c, (K, D, D)).copy()
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in c])
    return np.stack([np.eye(D) * v for v in c])


def log_gauss(x, mean, cov):
    """``log N(x; mean, cov)`` (an empty ``x`` has log-density 0)."""
    d = x.shape[0]
    if d == 0:
        return 0.0
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0
    diff = x - mean
    return -0.5 * (d * LOG_2PI + logdet + diff @ np.linalg.solve(cov, diff))


def conditional(x, miss, mean, cov):
    """Conditional mean (completed row) and covariance (zeros on observed
    coordinates) of the missing coordinates given the observed ones."""
    obs = ~miss
    xhat = x.copy()
    C = np.zeros((x.shape[0], x.shape[0]))
    if not miss.any():
        return xhat, C
    S_mo = cov[np.ix_(miss, obs)]
    S_oo = cov[np.ix_(obs, obs)]
    if obs.any():
        gain = np.linalg.solve(S_oo, S_mo.T).T
        xhat[miss] = mean[miss] + gain @ (x[obs] - mean[obs])
        C[np.ix_(miss, miss)] = cov[np.ix_(miss, miss)] - gain @ S_mo.T
    else:
        xhat[miss] = mean[miss]
        C[np.ix_(miss, miss)] = cov[np.ix_(miss, miss)]
    return xhat, C


def e_step(X, weights, means, covs):
    """Per-row log p(x_O), responsibilities, completed rows and conditional
    covariances under full covariances ``covs``."""
    N, D = X.shape
    K = means.shape[0]
    logp = np.empty(N)
    resp = np.empty((N, K))
    xhat = np.empty((N, K, D))
    cond = np.empty((N, K, D, D))
    for i in range(N):
        x = X[i]
        miss = np.isnan(x)
        obs = ~miss
        lj = np.empty(K)
        for k in range(K):
            with np.errstate(divide="ignore"):
                lw = np.log(weights[k])
            lj[k] = lw + log_gauss(x[obs], means[k][obs], covs[k][np.ix_(obs, obs)])
            xhat[i, k], cond[i, k] = conditional(x, miss, means[k], covs[k])
        m = lj.max()
        logp[i] = m + np.log(np.exp(lj - m).sum())
        resp[i] = np.exp(lj - logp[i])
    return logp, resp, xhat, cond


def em_step(X, sample_weight, params, covariance_type, reg_covar):
    """One EM iteration from ``params = (weights, means, covariances)``.

    Returns the new parameters and the weighted log-likelihood of the
    observed data under the old ones.
    """
    weights, means, covariances = params
    N, D = X.shape
    K = means.shape[0]
    w = np.ones(N) if sample_weight is None else np.asarray(sample_weight, float)
    covs = full_covariances(covariances, covariance_type, K, D)
    logp, resp, xhat, cond = e_step(X, weights, means, covs)
    r = resp * w[:, None]
    nk = r.sum(axis=0)
    new_means = np.einsum("ik,ikd->kd", r, xhat) / nk[:, None]
    scatter = np.zeros((K, D, D))
    for i in range(N):
        for k in range(K):
            dev = xhat[i, k] - new_means[k]
            scatter[k] += r[i, k] * (np.outer(dev, dev) + cond[i, k])
    per_comp = scatter / nk[:, None, None]
    if covariance_type == "full":
        new_cov = per_comp + reg_covar * np.eye(D)
    elif covariance_type == "tied":
        new_cov = scatter.sum(axis=0) / nk.sum() + reg_covar * np.eye(D)
    elif covariance_type == "diag":
        new_cov = np.diagonal(per_comp, axis1=1, axis2=2) + reg_covar
    else:
        new_cov = np.diagonal(per_comp, axis1=1, axis2=2).mean(axis=1) + reg_covar
    return (nk / nk.sum(), new_means, new_cov), float(w @ logp)


def run_em(X, sample_weight, params, covariance_type, reg_covar, n_iter):
    """``n_iter`` iterations; returns the final parameters and the
    log-likelihood entering each iteration."""
    lls = []
    for _ in range(n_iter):
        params, ll = em_step(X, sample_weight, params, covariance_type, reg_covar)
        lls.append(ll)
    return params, lls


def impute(X, params, covariance_type):
    """Posterior-weighted conditional means in place of NaN."""
    weights, means, covariances = params
    K, D = means.shape
    covs = full_covariances(covariances, covariance_type, K, D)
    _, resp, xhat, _ = e_step(X, weights, means, covs)
    out = np.einsum("ik,ikd->id", resp, xhat)
    return np.where(np.isnan(X), out, X)


def score_samples(X, params, covariance_type):
    """``log p(x_O)`` and ``p(k | x_O)`` of every row."""
    weights, means, covariances = params
    K, D = means.shape
    covs = full_covariances(covariances, covariance_type, K, D)
    logp, resp, _, _ = e_step(X, weights, means, covs)
    return logp, resp
