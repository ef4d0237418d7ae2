"""Plain-numpy EM for the Bernoulli, Poisson, multinomial and Student-t
mixtures: textbook updates, loops over components, nothing shared with
fastem.  Used to check fastem's fused kernels, M-steps and driver.

Every function runs ``n_iter`` full EM iterations from the given parameters
and returns the parameters after the last M-step together with the
objective at the start of every iteration (the quantity fastem reports in
``lower_bounds_``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special, stats

EPS10 = 10 * np.finfo(np.float64).eps


def _logsumexp_rows(L):
    m = L.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(L - m).sum(axis=1, keepdims=True)))[:, 0]


def log_joint_bernoulli(X, weights, probs):
    """``log pi_k + sum_d [x log p + (1 - x) log(1 - p)]`` per row and component."""
    N, K = X.shape[0], len(weights)
    L = np.empty((N, K))
    for k in range(K):
        p = probs[k]
        L[:, k] = math.log(weights[k]) + (X * np.log(p) + (1 - X) * np.log(1 - p)).sum(
            axis=1
        )
    return L


def log_joint_poisson(X, weights, rates):
    """``log pi_k + sum_d log Poisson(x_d; lambda_kd)`` (scipy's pmf)."""
    N, K = X.shape[0], len(weights)
    L = np.empty((N, K))
    for k in range(K):
        L[:, k] = math.log(weights[k]) + stats.poisson.logpmf(X, rates[k]).sum(axis=1)
    return L


def log_joint_multinomial(X, weights, thetas):
    """``log pi_k + log Multinomial(x; n, theta_k)`` (scipy's pmf, row by row)."""
    N, K = X.shape[0], len(weights)
    L = np.empty((N, K))
    n = X.sum(axis=1)
    for k in range(K):
        for i in range(N):
            L[i, k] = math.log(weights[k]) + stats.multinomial.logpmf(
                X[i], n[i], thetas[k]
            )
    return L


def _discrete_em(X, sw, weights, means, alpha, n_iter, log_joint, m_step, log_prior):
    X = np.asarray(X, dtype=np.float64)
    w = np.ones(X.shape[0]) if sw is None else np.asarray(sw, dtype=np.float64)
    weights, means = np.array(weights, float), np.array(means, float)
    bounds = []
    for _ in range(n_iter):
        L = log_joint(X, weights, means)
        lse = _logsumexp_rows(L)
        bounds.append((w @ lse + log_prior(weights, means, alpha)) / w.sum())
        R = np.exp(L - lse[:, None]) * w[:, None]
        nk = R.sum(axis=0)
        S = R.T @ X
        weights = (nk + EPS10) / (nk + EPS10).sum()
        means = m_step(nk, S, alpha)
    return weights, means, np.array(bounds)


def bernoulli_em(X, weights, means, alpha, n_iter=20, sample_weight=None):
    """EM with Laplace-style smoothing ``(S + a) / (N_k + 2a)``."""

    def m_step(nk, S, a):
        return (S + a) / (nk[:, None] + 2 * a)

    def prior(weights, p, a):
        return EPS10 * np.log(weights).sum() + a * (np.log(p) + np.log(1 - p)).sum()

    return _discrete_em(
        X,
        sample_weight,
        weights,
        means,
        alpha,
        n_iter,
        log_joint_bernoulli,
        m_step,
        prior,
    )


def poisson_em(X, weights, means, alpha, n_iter=20, sample_weight=None):
    """EM with rates ``(S + a) / (N_k + 10 eps)``."""

    def m_step(nk, S, a):
        return (S + a) / (nk[:, None] + EPS10)

    def prior(weights, lam, a):
        return EPS10 * np.log(weights).sum() + a * np.log(lam).sum() - EPS10 * lam.sum()

    return _discrete_em(
        X,
        sample_weight,
        weights,
        means,
        alpha,
        n_iter,
        log_joint_poisson,
        m_step,
        prior,
    )


def multinomial_em(X, weights, means, alpha, n_iter=20, sample_weight=None):
    """EM with word distributions ``(S + a) / (sum S + D a)``."""

    def m_step(nk, S, a):
        out = np.empty_like(S)
        for k in range(S.shape[0]):
            out[k] = (S[k] + a) / (S[k].sum() + S.shape[1] * a)
        return out

    def prior(weights, theta, a):
        return EPS10 * np.log(weights).sum() + a * np.log(theta).sum()

    return _discrete_em(
        X,
        sample_weight,
        weights,
        means,
        alpha,
        n_iter,
        log_joint_multinomial,
        m_step,
        prior,
    )


# ---------------------------------------------------------------------------
# Student-t
# ---------------------------------------------------------------------------


def log_joint_t(X, weights, means, scales, dofs):
    """``log pi_k + log t(x; mu_k, Sigma_k, nu_k)`` (scipy's multivariate_t)."""
    K = len(weights)
    L = np.empty((X.shape[0], K))
    for k in range(K):
        L[:, k] = math.log(weights[k]) + stats.multivariate_t.logpdf(
            X, loc=means[k], shape=scales[k], df=dofs[k]
        )
    return L


def _mahalanobis(X, mean, scale):
    diff = X - mean
    return np.einsum("ij,ij->i", diff, np.linalg.solve(scale, diff.T).T)


def _dof_root(nk, r, u, nu_old, D, bounds):
    """Root of ``-psi(nu/2) + log(nu/2) + 1 + sum r (log u - u) / nk
    + psi((nu_old + D)/2) - log((nu_old + D)/2)`` in ``bounds``."""
    c = (
        1
        + (r * (np.log(u) - u)).sum() / nk
        + special.digamma((nu_old + D) / 2)
        - np.log((nu_old + D) / 2)
    )

    def f(nu):
        return -special.digamma(nu / 2) + np.log(nu / 2) + c

    lo, hi = bounds
    if f(hi) >= 0:
        return hi
    if f(lo) <= 0:
        return lo
    return optimize.brentq(f, lo, hi, xtol=1e-13, rtol=1e-15, maxiter=500)


def student_em(
    X,
    weights,
    means,
    scales,
    dofs,
    n_iter=20,
    reg_covar=1e-6,
    update="ecme",
    fixed_dof=None,
    bounds=(1e-2, 1e4),
    sample_weight=None,
):
    """EM/ECM/ECME for a mixture of t distributions (McLachlan & Peel 2000,
    ch. 7; Peel & McLachlan 2000), written directly from the formulas."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    w = np.ones(N) if sample_weight is None else np.asarray(sample_weight, float)
    weights, means = np.array(weights, float), np.array(means, float)
    scales, dofs = np.array(scales, float), np.array(dofs, float)
    K = len(weights)
    bounds_hist = []
    for _ in range(n_iter):
        L = log_joint_t(X, weights, means, scales, dofs)
        lse = _logsumexp_rows(L)
        bounds_hist.append(w @ lse / w.sum())
        tau = np.exp(L - lse[:, None]) * w[:, None]
        u = np.empty((N, K))
        for k in range(K):
            u[:, k] = (dofs[k] + D) / (dofs[k] + _mahalanobis(X, means[k], scales[k]))
        nk = tau.sum(axis=0)
        new_weights = nk / nk.sum()
        new_means = np.empty_like(means)
        new_scales = np.empty_like(scales)
        for k in range(K):
            ru = tau[:, k] * u[:, k]
            new_means[k] = ru @ X / ru.sum()
            diff = X - new_means[k]
            new_scales[k] = (ru[:, None] * diff).T @ diff / nk[k] + reg_covar * np.eye(
                D
            )
        new_dofs = dofs.copy()
        if fixed_dof is not None:
            new_dofs[:] = fixed_dof
        elif update == "ecm":
            for k in range(K):
                new_dofs[k] = _dof_root(nk[k], tau[:, k], u[:, k], dofs[k], D, bounds)
        else:
            # ECME: tau and u again, at the new locations and scales.
            L2 = log_joint_t(X, new_weights, new_means, new_scales, dofs)
            tau2 = np.exp(L2 - _logsumexp_rows(L2)[:, None]) * w[:, None]
            for k in range(K):
                u2 = (dofs[k] + D) / (
                    dofs[k] + _mahalanobis(X, new_means[k], new_scales[k])
                )
                new_dofs[k] = _dof_root(
                    tau2[:, k].sum(), tau2[:, k], u2, dofs[k], D, bounds
                )
        weights, means, scales, dofs = new_weights, new_means, new_scales, new_dofs
    return weights, means, scales, dofs, np.array(bounds_hist)
