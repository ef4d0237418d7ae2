"""Mixtures of multivariate Student-t distributions (full scale matrices).

EM for the t mixture treats each row's precision scale ``u`` as latent
(``x | u, k ~ N(mu_k, Sigma_k / u)``, ``u | k ~ Gamma(nu_k/2, nu_k/2)``);
the E-step gives ``u_ik = (nu_k + D) / (nu_k + m_ik)`` with ``m_ik`` the
Mahalanobis distance under ``Sigma_k``.  From the statistics of
:mod:`fastem._kernels.student` the location/scale update (McLachlan & Peel
2000, "Finite Mixture Models", section 7.5; Peel & McLachlan 2000) is

    w_k = nk_k / sum nk,  mu_k = sum r u x / sum r u,
    Sigma_k = sum r u (x - mu_k)(x - mu_k)^T / nk_k + reg_covar I,

and ``nu_k`` solves (Peel & McLachlan 2000, eq. 30)

    -psi(nu/2) + log(nu/2) + 1 + slogu_k / nk_k
        + psi((nu_old + D)/2) - log((nu_old + D)/2) = 0,

with ``slogu_k = sum_i r_ik (log u_ik - u_ik)``.  Two ways of getting the
quantities in that equation are offered:

``'ecm'``
    from the iteration's own E-step (one data pass per iteration; this is
    the exact EM update of ``nu``, since the expected complete-data
    log-likelihood separates in ``nu``);
``'ecme'``
    from an extra pass at the updated locations and scales (``nu`` still at
    its old value), the variant Peel & McLachlan (2000, section 5) derive
    from the ECME algorithm of Liu & Rubin (1995): usually fewer iterations,
    at the cost of a cheaper second pass (no scatter matrices) per
    iteration.

Both are ECM algorithms, so the likelihood never decreases.  The root is
bracketed in ``DOF_BOUNDS`` (the left-hand side decreases in ``nu``); a
root beyond a bound is replaced by the bound, which, the function being
the derivative of a concave objective, is the constrained maximiser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, special

from .._kernels import student as _k
from .._layout import block_rows, n_tasks, per_row_tasks, task_rows
from .._parallel import run_tasks
from . import gaussian as g

_EPS10 = 10 * np.finfo(np.float64).eps
#: Range of the degrees of freedom.
DOF_BOUNDS = (1e-2, 1e4)
#: Initial degrees of freedom when neither ``dof`` nor ``dofs_init`` is given.
DEFAULT_DOF = 10.0
DOF_UPDATES = ("ecme", "ecm")


@dataclass(frozen=True)
class StudentParams:
    """Parameters of a Student-t mixture (float64).

    ``covariances`` are the scale matrices ``Sigma_k`` (the covariance of
    component ``k`` is ``nu_k / (nu_k - 2) Sigma_k`` for ``nu_k > 2``);
    ``precisions_cholesky`` are upper-triangular ``U_k`` with
    ``U_k U_k^T = Sigma_k^{-1}``; ``dofs`` are the ``nu_k``.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    dofs: np.ndarray

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def precisions(self) -> np.ndarray:
        pc = self.precisions_cholesky
        return np.einsum("kij,klj->kil", pc, pc)


@dataclass(frozen=True)
class StudentStats:
    """Additive statistics of a Student-t mixture (see
    :mod:`fastem._kernels.student`): ``nk``, ``su``, ``sum_x`` and ``sum_xx``
    (around ``shift``, the locations of the E-step), ``slogu``, the
    ``dofs`` of the E-step, and the log-likelihood terms of
    :class:`fastem.families.gaussian.GaussianStats`."""

    nk: np.ndarray
    su: np.ndarray
    sum_x: np.ndarray
    sum_xx: np.ndarray
    slogu: np.ndarray
    shift: np.ndarray
    dofs: np.ndarray
    log_likelihood: float
    total_weight: float
    expected_log_joint: float = 0.0

    def __add__(self, other: StudentStats) -> StudentStats:
        if not (
            np.array_equal(other.shift, self.shift)
            and np.array_equal(other.dofs, self.dofs)
        ):
            raise ValueError("only statistics of the same E-step can be added")
        return replace(
            self,
            nk=self.nk + other.nk,
            su=self.su + other.su,
            sum_x=self.sum_x + other.sum_x,
            sum_xx=self.sum_xx + other.sum_xx,
            slogu=self.slogu + other.slogu,
            log_likelihood=self.log_likelihood + other.log_likelihood,
            total_weight=self.total_weight + other.total_weight,
            expected_log_joint=self.expected_log_joint + other.expected_log_joint,
        )


def log_gamma_ratio(a: np.ndarray, h: float) -> np.ndarray:
    """``log Gamma(a + h) - log Gamma(a)`` without the cancellation of the
    difference of two large ``gammaln`` values (e.g. fixed ``dof=1e9``).

    For ``a >= max(1e5, 1e3 h^2)`` the asymptotic expansion
    ``h log a + sum_n (-1)^(n+1) (B_{n+1}(h) - B_{n+1}(0)) / (n (n+1) a^n)``
    (Bernoulli polynomials; three terms, truncation error below
    ``h^4 / a^4``); otherwise the difference of ``gammaln``.
    """
    a = np.asarray(a, dtype=np.float64)
    big = (a >= 1e5) & (a >= 1e3 * h * h)
    safe = np.where(big, a, 1.0)
    series = (
        h * np.log(safe)
        + h * (h - 1.0) / (2.0 * safe)
        - h * (h - 1.0) * (2.0 * h - 1.0) / (12.0 * safe**2)
        + (h * (h - 1.0)) ** 2 / (12.0 * safe**3)
    )
    direct = special.gammaln(np.where(big, 1.0, a) + h) - special.gammaln(
        np.where(big, 1.0, a)
    )
    return np.where(big, series, direct)


def log_norm(params: StudentParams) -> np.ndarray:
    """``log w_k + log Gamma((nu+D)/2) - log Gamma(nu/2) - D/2 log(nu pi)
    + log det U_k``."""
    D = params.n_features
    nu = params.dofs
    with np.errstate(divide="ignore"):
        log_w = np.log(params.weights)
    logdet = g.log_det_cholesky(params.precisions_cholesky, "full", D)
    out = (
        log_w
        + log_gamma_ratio(0.5 * nu, 0.5 * D)
        - 0.5 * D * np.log(nu * math.pi)
        + logdet
    )
    return np.ascontiguousarray(out, dtype=np.float64)


# ---------------------------------------------------------------------------
# E-step and per-row outputs
# ---------------------------------------------------------------------------


def _centered(params: StudentParams) -> tuple[np.ndarray, np.ndarray]:
    """The mixture's mean location ``c``, on which the kernels center the
    rows as they load them, and the locations ``mu_k - c``."""
    means = np.asarray(params.means, dtype=np.float64)
    center = np.ascontiguousarray(params.weights @ means)
    return center, np.ascontiguousarray(means - center)


def e_step(
    X: np.ndarray,
    sample_weight: np.ndarray,
    params: StudentParams,
    n_threads: int | None = None,
    scatter: bool = True,
) -> StudentStats:
    """Statistics of validated rows ``X`` in one fused pass.

    With ``scatter=False`` only ``nk``, ``slogu`` and the log-likelihood
    terms are computed (``su``, ``sum_x`` and ``sum_xx`` are zero).
    """
    N, D = X.shape
    K = params.n_components
    T = n_tasks(N, D)
    rows, block = task_rows(N, D), block_rows(D, compute_bound=True)
    nk, su, slogu = np.zeros((T, K)), np.zeros((T, K)), np.zeros((T, K))
    sx = np.zeros((T, K, D))
    sxx = np.zeros((T, K, D, D) if scatter else (T, K, 0, 0))
    acc = np.zeros((T, 3))
    means = np.ascontiguousarray(params.means)
    dofs = np.ascontiguousarray(params.dofs, dtype=np.float64)
    run_tasks(
        _k.estep_student,
        T,
        X,
        *_centered(params),
        sample_weight,
        log_norm(params),
        np.ascontiguousarray(params.precisions_cholesky),
        dofs,
        scatter,
        rows,
        block,
        nk,
        su,
        sx,
        sxx,
        slogu,
        acc,
        n_threads=n_threads,
    )
    sum_xx = g._symmetrize_lower(sxx.sum(axis=0)) if scatter else np.zeros((K, D, D))
    ll, tw, joint = (float(v) for v in acc.sum(axis=0))
    return StudentStats(
        nk.sum(axis=0),
        su.sum(axis=0),
        sx.sum(axis=0),
        sum_xx,
        slogu.sum(axis=0),
        means.copy(),
        dofs.copy(),
        ll,
        tw,
        joint,
    )


def per_row(
    X: np.ndarray,
    params: StudentParams,
    *,
    log_likelihood: bool = False,
    responsibilities: bool = False,
    labels: bool = False,
    n_threads: int | None = None,
):
    """Per-row ``log p(x)``, ``p(k | x)`` and ``argmax_k p(x, k)`` as asked."""
    N, D = X.shape
    K = params.n_components
    out_lse = np.empty(N if log_likelihood else 0)
    out_resp = np.empty((N if responsibilities else 0, K))
    out_label = np.empty(N if labels else 0, dtype=np.int64)
    block = block_rows(D, compute_bound=True)
    run_tasks(
        _k.per_row_student,
        per_row_tasks(N, block),
        X,
        *_centered(params),
        log_norm(params),
        np.ascontiguousarray(params.precisions_cholesky),
        np.ascontiguousarray(params.dofs, dtype=np.float64),
        block,
        out_lse,
        out_resp,
        out_label,
        n_threads=n_threads,
    )
    return (
        out_lse if log_likelihood else None,
        out_resp if responsibilities else None,
        out_label if labels else None,
    )


# ---------------------------------------------------------------------------
# M-step
# ---------------------------------------------------------------------------


def location_scale_step(
    stats: StudentStats, reg_covar: float
) -> tuple[StudentParams, list[int]]:
    """Weights, locations and scales from the statistics (``dofs`` kept), and
    the degenerate components (mass below ``10 eps`` of the total weight, or
    a scale matrix that is not positive definite)."""
    D = stats.sum_x.shape[1]
    nk = stats.nk + _EPS10
    weights = nk / nk.sum()
    su = stats.su + _EPS10
    delta = stats.sum_x / su[:, None]
    means = stats.shift + delta
    covariances = (
        stats.sum_xx - su[:, None, None] * delta[:, :, None] * delta[:, None, :]
    ) / nk[:, None, None]
    covariances = 0.5 * (covariances + np.swapaxes(covariances, 1, 2))
    covariances[:, np.arange(D), np.arange(D)] += reg_covar
    prec_chol, bad = g.precisions_cholesky_from_covariances(covariances, "full")
    empty = np.flatnonzero(stats.nk < _EPS10 * stats.total_weight)
    bad = sorted(set(bad) | {int(k) for k in empty})
    params = StudentParams(weights, means, covariances, prec_chol, stats.dofs.copy())
    return params, bad


def solve_dofs(
    nk: np.ndarray, slogu: np.ndarray, dofs_old: np.ndarray, n_features: int
) -> np.ndarray:
    """Roots of Peel & McLachlan's eq. (30), one per component, in
    ``DOF_BOUNDS`` (components without mass keep their value)."""
    D = n_features
    lo, hi = DOF_BOUNDS
    out = np.array(dofs_old, dtype=np.float64)
    for k in range(nk.shape[0]):
        if not nk[k] > 0:
            continue
        a = 0.5 * (dofs_old[k] + D)
        const = 1.0 + slogu[k] / nk[k] + special.digamma(a) - math.log(a)

        def f(nu, const=const):
            return -special.digamma(0.5 * nu) + math.log(0.5 * nu) + const

        if f(hi) >= 0.0:
            out[k] = hi
        elif f(lo) <= 0.0:
            out[k] = lo
        else:
            out[k] = optimize.brentq(f, lo, hi, xtol=1e-12, rtol=1e-15, maxiter=200)
    return out


def n_parameters(n_components: int, n_features: int, estimate_dof: bool) -> int:
    """Free parameters: weights, locations, scale matrices and (when
    estimated) one degree of freedom per component."""
    K, D = n_components, n_features
    return int(K * D * (D + 1) / 2 + K * D + K - 1 + (K if estimate_dof else 0))


def sample(
    params: StudentParams, n_samples: int, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and component labels, grouped by component:
    ``x = mu_k + z / sqrt(g)`` with ``z ~ N(0, Sigma_k)`` and
    ``g ~ Gamma(nu_k/2, rate nu_k/2)``."""
    counts = rng.multinomial(n_samples, params.weights)
    D = params.n_features
    parts = []
    for k, n in enumerate(counts):
        n = int(n)
        z = rng.multivariate_normal(np.zeros(D), params.covariances[k], n)
        nu = params.dofs[k]
        scale = rng.gamma(0.5 * nu, 2.0 / nu, size=n)
        parts.append(params.means[k] + z / np.sqrt(scale)[:, None])
    X = np.vstack(parts)
    y = np.concatenate(
        [np.full(int(n), k, dtype=np.int64) for k, n in enumerate(counts)]
    )
    return X, y


# ---------------------------------------------------------------------------
# The family as seen by the driver
# ---------------------------------------------------------------------------


class StudentEM:
    """The Student-t family for :func:`fastem.em.fit_em`.

    Parameters
    ----------
    reg_covar : float
        Added to the diagonals of the scale matrices.
    dof : float or None
        Fixed degrees of freedom for every component, or None to estimate
        them.
    dof_update : {'ecme', 'ecm'}
        How the degrees of freedom are updated (module docstring).
    n_threads : int or None
        Threads for the kernels.

    Notes
    -----
    With ``dof_update='ecme'`` the M-step needs the data: :meth:`e_step`
    remembers its source and :meth:`m_step` makes the extra pass over it
    (the driver always calls ``m_step`` on the statistics of the
    ``e_step`` just made).
    """

    def __init__(self, reg_covar: float, dof=None, dof_update="ecme", n_threads=None):
        self.reg_covar = reg_covar
        self.dof = dof
        self.dof_update = dof_update
        self.n_threads = n_threads
        self._source = None

    def e_step(self, source, params: StudentParams, scatter: bool = True):
        self._source = source
        return source.map_reduce(e_step, params, self.n_threads, scatter)

    def m_step(self, stats: StudentStats):
        params, bad = location_scale_step(stats, self.reg_covar)
        if self.dof is not None:
            return replace(
                params, dofs=np.full(params.n_components, float(self.dof))
            ), bad
        D = params.n_features
        if self.dof_update == "ecme" and not bad and self._source is not None:
            half = self._dof_pass(params)
            dofs = solve_dofs(half.nk, half.slogu, params.dofs, D)
        else:
            dofs = solve_dofs(stats.nk, stats.slogu, stats.dofs, D)
        return replace(params, dofs=dofs), bad

    def _dof_pass(self, params: StudentParams) -> StudentStats:
        return self._source.map_reduce(e_step, params, self.n_threads, False)

    def reseed(self, source, params: StudentParams, degenerate: list[int]):
        """Move each degenerate component to one of the worst-explained rows,
        with the weight-averaged scale matrix and degrees of freedom of the
        healthy components (or the data variance and the default degrees of
        freedom when none is healthy) and weight ``1/K``; the Gaussian
        family's policy."""
        K = params.n_components
        bad = np.asarray(degenerate)
        good = np.setdiff1d(np.arange(K), bad)
        weights = params.weights.copy()
        means = params.means.copy()
        covariances = params.covariances.copy()
        dofs = params.dofs.copy()
        if good.size:
            gw = weights[good] / weights[good].sum()
            covariances[bad] = np.tensordot(gw, covariances[good], axes=1)
            if self.dof is None:
                dofs[bad] = float(gw @ dofs[good])
        else:
            var = _data_variance(source) + self.reg_covar
            covariances[bad] = np.diag(var)
            if self.dof is None:
                dofs[bad] = DEFAULT_DOF
        weights[bad] = 0.0
        prec, still_bad = g.precisions_cholesky_from_covariances(covariances, "full")
        if still_bad:
            raise ValueError(
                "Fitting the Student-t mixture failed because some components "
                "have ill-defined scale matrices (singleton or collapsed "
                "samples). Try fewer components, or increase reg_covar."
            )
        if good.size:
            probe = StudentParams(weights, means, covariances, prec, dofs)
            rows = _worst_rows(source, probe, len(bad), self.n_threads)
        else:
            rows = np.sort(
                np.random.RandomState(0).choice(source.n_samples, len(bad), False)
            )
        means[bad] = source.rows(rows)
        new_w = np.full(K, 1.0 / K)
        if good.size:
            new_w[good] = weights[good] / weights[good].sum() * (1 - len(bad) / K)
        return StudentParams(new_w, means, covariances, prec, dofs)


def _worst_rows(source, params, count, n_threads):
    scores = np.concatenate(source.map_chunks(chunk_scores, params, n_threads))
    return np.sort(np.argsort(scores, kind="stable")[:count])


def chunk_scores(X, w, params, n_threads):
    """Per-row log-likelihood of a chunk, +inf for rows of weight zero."""
    lse = per_row(X, params, log_likelihood=True, n_threads=n_threads)[0]
    return np.where(w > 0, lse, np.inf) if w.shape[0] else lse


def _data_variance(source) -> np.ndarray:
    """Per-feature (weighted) variance of the data, around its first row."""
    origin = source.rows(np.array([0]))[0]
    m = source.map_reduce(_chunk_moments, origin)
    D = origin.shape[0]
    total, s1, s2 = m[0], m[1 : 1 + D], m[1 + D :]
    return np.maximum(s2 / total - (s1 / total) ** 2, 0.0)


def _chunk_moments(X, w, origin):
    """``[sum w, sum w z, sum w z^2]`` with ``z = x - origin`` (additive)."""
    ww = w if w.shape[0] else np.ones(X.shape[0])
    z = np.asarray(X, dtype=np.float64) - origin
    return np.concatenate([[ww.sum()], ww @ z, ww @ (z * z)])


# ---------------------------------------------------------------------------
# Initialisation
# ---------------------------------------------------------------------------


def initial_params(
    source,
    n_components: int,
    reg_covar: float,
    init_params: str,
    rng: np.random.RandomState,
    dofs: np.ndarray,
    *,
    weights_init=None,
    means_init=None,
    precisions_init=None,
    n_threads=None,
) -> StudentParams:
    """Initial parameters: the Gaussian family's initialisation (k-means,
    k-means++, random or random_from_data responsibilities, then a full
    covariance M-step; user-given arrays override), with scale matrices set
    to those covariances and the given ``dofs``."""
    from .gaussian_fit import initial_params as gaussian_initial_params

    gp = gaussian_initial_params(
        source,
        n_components,
        "full",
        reg_covar,
        init_params,
        rng,
        weights_init=weights_init,
        means_init=means_init,
        precisions_init=precisions_init,
        n_threads=n_threads,
    )
    return StudentParams(
        gp.weights,
        gp.means,
        gp.covariances,
        gp.precisions_cholesky,
        np.array(dofs, dtype=np.float64),
    )
