"""The Gaussian family: parameters, statistics, M-step, counts and sampling.

The statistics of a chunk are produced by the fused kernels in
:mod:`fastem._kernels.gaussian`; everything here works on ``O(K D^2)``
arrays.  Formulas follow scikit-learn's ``_gaussian_mixture.py`` so that the
same initial parameters give the same fitted model.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from .._kernels import gaussian as _k
from .._kernels import linalg as _linalg
from .._layout import (
    EXPANDED_DISTANCES,
    block_rows,
    n_tasks,
    per_row_tasks,
    task_rows,
)
from .._parallel import run_tasks

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
#: Every Gaussian kernel does at least two multiply-adds per value it loads
#: (the spherical and tied distances four components per sweep), so all take
#: the compute-bound block size (:func:`fastem._layout.block_rows`).
_COMPUTE_BOUND = True
_PER_ROW_KERNELS = {
    "full": _k.per_row_full,
    "tied": _k.per_row_tied,
    "diag": _k.per_row_diag,
    "spherical": _k.per_row_spherical,
}
#: Spherical covariances with at most this many features run the diag
#: kernels, their precision repeated over the features and their second
#: moments summed over them.  With few features the diag log-density's one
#: sweep per component and its raw-sum moments beat the distance sweeps and
#: the separate pass over the distances: whole fits, 10^6 rows, K = 8, two
#: threads, diag against spherical ms per iteration: D = 2 5.1 / 5.8, 4 6.3
#: / 6.8, 8 8.8 / 9.1, 12 12.1 / 11.6.  With the SIMD distances
#: (:func:`fastem._kernels._simd.affine_sq_distances`) the spherical kernels
#: at D = 2, 4, 8: 5.59, 6.82, 9.22 against 5.25, 6.63, 9.43 through diag.
#: Where the distances are not expanded
#: (:data:`fastem._layout.EXPANDED_DISTANCES`: Zen 5) the spherical kernels
#: win at every D, so none take the diag route: session 26, alternated, one
#: thread, float64 D = 2, 4, 8 through diag against spherical 5.55 / 5.04,
#: 8.09 / 6.99, 11.3 / 8.75 ms per iteration (float32 D = 2 -12 %, D = 8
#: -25 %; ``score_samples`` -7 %).
SPHERICAL_AS_DIAG_MAX_FEATURES = 8 if EXPANDED_DISTANCES else 0
_EPS10 = 10 * np.finfo(np.float64).eps
_LOG_2PI = math.log(2 * math.pi)


class SingularCovarianceError(ValueError):
    """A covariance is not positive definite (tied covariance: unrecoverable)."""


@dataclass(frozen=True)
class GaussianParams:
    """Parameters of a Gaussian mixture (float64 arrays, scikit-learn shapes).

    ``covariances`` and ``precisions_cholesky`` have shape ``(K, D, D)`` for
    ``full``, ``(D, D)`` for ``tied``, ``(K, D)`` for ``diag`` and ``(K,)``
    for ``spherical``; ``precisions_cholesky`` is upper triangular, so the
    precision is ``U @ U.T``.
    """

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def precisions(self) -> np.ndarray:
        """Precision matrices (or vectors) from their Cholesky factors."""
        pc = self.precisions_cholesky
        if self.covariance_type == "full":
            return np.einsum("kij,klj->kil", pc, pc)
        if self.covariance_type == "tied":
            return np.einsum("ij,kj->ik", pc, pc)
        return pc**2


@dataclass(frozen=True)
class GaussianStats:
    """Weighted sufficient statistics of a Gaussian mixture over some rows.

    With ``r`` the responsibilities times the row weights and ``s_k`` the
    shift (the means the E-step used; for ``tied`` every row is the mixture
    mean ``c``):

    * ``nk[k] = sum_i r_ik``
    * ``sum_x[k] = sum_i r_ik (x_i - s_k)``
    * ``sum_xx``: ``full`` ``(K, D, D)`` ``sum_i r_ik (x_i - s_k)(x_i - s_k)^T``;
      ``diag`` ``(K, D)`` its diagonal; ``spherical`` ``(K,)`` its trace
      ``sum_i r_ik ||x_i - s_k||^2``; ``tied`` ``(D, D)``
      ``sum_i w_i (x_i - c)(x_i - c)^T``.
    * ``log_likelihood = sum_i w_i log p(x_i)`` under the parameters of the
      E-step, and ``total_weight = sum_i w_i``.
    * ``expected_log_joint = sum_i sum_k r_ik log p(x_i, k)``; the weighted
      entropy of the responsibilities is ``log_likelihood - expected_log_joint``.
    * ``total_first`` (``tied``, or None): ``sum_i w_i (x_i - c)``, summed
      in float64 with the total scatter.  ``sum_x`` adds up to it, but with
      the rounding of float32 blocks, which :meth:`reshift` would multiply by
      the distance between the shifts.

    Statistics over disjoint rows add up (``a + b``; ``b`` is re-expressed
    around ``a``'s shift first when the shifts differ).
    """

    covariance_type: str
    nk: np.ndarray
    sum_x: np.ndarray
    sum_xx: np.ndarray
    shift: np.ndarray
    log_likelihood: float
    total_weight: float
    expected_log_joint: float = 0.0
    total_first: np.ndarray | None = None

    def __add__(self, other: GaussianStats) -> GaussianStats:
        if other.covariance_type != self.covariance_type:
            raise ValueError("cannot add statistics of different covariance types")
        if not np.array_equal(other.shift, self.shift):
            other = other.reshift(self.shift)
        both = self.total_first is not None and other.total_first is not None
        return replace(
            self,
            nk=self.nk + other.nk,
            sum_x=self.sum_x + other.sum_x,
            sum_xx=self.sum_xx + other.sum_xx,
            log_likelihood=self.log_likelihood + other.log_likelihood,
            total_weight=self.total_weight + other.total_weight,
            expected_log_joint=self.expected_log_joint + other.expected_log_joint,
            total_first=self.total_first + other.total_first if both else None,
        )

    def reshift(self, shift: np.ndarray) -> GaussianStats:
        """The same statistics expressed around another ``shift`` (K, D).

        With ``delta = s_old - s_new``: ``x - s_new = (x - s_old) + delta``, so
        ``sum_x`` gains ``nk delta`` and the second moments gain the cross
        terms and ``nk delta delta^T`` (for ``tied``, the total weight).
        """
        shift = np.asarray(shift, dtype=np.float64)
        delta = self.shift - shift
        sx = self.sum_x + self.nk[:, None] * delta
        total_first = None
        if self.covariance_type == "full":
            cross = self.sum_x[:, :, None] * delta[:, None, :]
            sxx = (
                self.sum_xx
                + cross
                + np.swapaxes(cross, 1, 2)
                + self.nk[:, None, None] * delta[:, :, None] * delta[:, None, :]
            )
        elif self.covariance_type == "tied":
            d = delta[0]
            first = self.total_first
            if first is None:
                first = self.sum_x.sum(axis=0)
            sxx = (
                self.sum_xx
                + np.outer(first, d)
                + np.outer(d, first)
                + self.total_weight * np.outer(d, d)
            )
            total_first = first + self.total_weight * d
        elif self.covariance_type == "diag":
            sxx = self.sum_xx + 2 * self.sum_x * delta + self.nk[:, None] * delta**2
        else:
            sxx = (
                self.sum_xx
                + 2 * np.einsum("kd,kd->k", self.sum_x, delta)
                + self.nk * np.einsum("kd,kd->k", delta, delta)
            )
        return replace(
            self, sum_x=sx, sum_xx=sxx, shift=shift.copy(), total_first=total_first
        )

    def scaled(self, factor: float) -> GaussianStats:
        """All additive quantities multiplied by ``factor``."""
        return replace(
            self,
            nk=self.nk * factor,
            sum_x=self.sum_x * factor,
            sum_xx=self.sum_xx * factor,
            log_likelihood=self.log_likelihood * factor,
            total_weight=self.total_weight * factor,
            expected_log_joint=self.expected_log_joint * factor,
            total_first=None if self.total_first is None else self.total_first * factor,
        )


# ---------------------------------------------------------------------------
# Precisions
# ---------------------------------------------------------------------------


def _inverse_cholesky_batch(covariances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper-triangular ``U_k`` with ``U_k U_k^T = cov_k^{-1}`` and a flag per
    matrix telling whether ``cov_k`` was positive definite (numba, no BLAS)."""
    covs = np.ascontiguousarray(covariances, dtype=np.float64)
    out = np.empty_like(covs)
    ok = np.empty(covs.shape[0], dtype=np.bool_)
    _linalg.precision_cholesky_batch(covs, out, ok)
    return out, ok


def precisions_cholesky_from_covariances(
    covariances: np.ndarray, covariance_type: str
) -> tuple[np.ndarray, list[int]]:
    """Cholesky factors of the precisions, and the components whose covariance
    is not positive definite (their factor is left as the identity)."""
    if covariance_type == "full":
        out, ok = _inverse_cholesky_batch(covariances)
        return out, [] if ok.all() else np.flatnonzero(~ok).tolist()
    if covariance_type == "tied":
        out, ok = _inverse_cholesky_batch(covariances[None])
        if not ok[0]:
            raise SingularCovarianceError(
                "The tied covariance is not positive definite (collapsed or "
                "constant data); increase reg_covar."
            )
        return out[0], []
    positive = covariances > 0
    if covariance_type == "diag":
        bad = [int(k) for k in np.flatnonzero(~positive.all(axis=1))]
    else:
        bad = [int(k) for k in np.flatnonzero(~positive)]
    safe = np.where(positive, covariances, 1.0)
    return 1.0 / np.sqrt(safe), bad


def precisions_cholesky_from_precisions(
    precisions: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Upper-triangular factors ``U U^T = P`` (scikit-learn's flip trick, #26415).

    ``full`` factorises its stack of matrices in one LAPACK call.
    """
    if covariance_type in ("full", "tied"):
        flipped = np.linalg.cholesky(precisions[..., ::-1, ::-1])
        return np.ascontiguousarray(flipped[..., ::-1, ::-1])
    return np.sqrt(precisions)


def covariances_from_precisions_cholesky(
    prec_chol: np.ndarray, covariance_type: str
) -> np.ndarray:
    """Inverse of the precisions given their Cholesky factors:
    ``(U U^T)^-1 = U^-T U^-1``.

    The inverse of a triangular ``U`` by LU (``np.linalg.inv``, one call for
    the stack): partial pivoting finds nothing below the diagonal to swap,
    so this is back substitution.
    """
    if covariance_type in ("full", "tied"):
        u_inv = np.linalg.inv(prec_chol)
        return np.swapaxes(u_inv, -1, -2) @ u_inv
    return 1.0 / prec_chol**2


def log_det_cholesky(prec_chol: np.ndarray, covariance_type: str, n_features: int):
    """``log det U`` per component (scikit-learn's ``_compute_log_det_cholesky``)."""
    if covariance_type == "full":
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.log(np.diag(prec_chol)).sum()
    if covariance_type == "diag":
        return np.log(prec_chol).sum(axis=1)
    return n_features * np.log(prec_chol)


# ---------------------------------------------------------------------------
# Kernel arguments, E-step and per-row outputs
# ---------------------------------------------------------------------------


def _log_norm(params: GaussianParams) -> np.ndarray:
    D = params.n_features
    w = params.weights
    log_w = np.log(w, out=np.full(w.shape, -np.inf), where=w > 0)
    logdet = log_det_cholesky(params.precisions_cholesky, params.covariance_type, D)
    return np.ascontiguousarray(log_w + logdet - 0.5 * D * _LOG_2PI, dtype=np.float64)


_SQRT_HALF = math.sqrt(0.5)


def _tied_terms(params: GaussianParams) -> tuple[np.ndarray, np.ndarray]:
    """Mixture mean ``c`` and ``(mu_k - c) U`` (float64) for tied covariances."""
    center = np.einsum("k,kd->d", params.weights, params.means)
    shifted = np.einsum("ki,ij->kj", params.means - center, params.precisions_cholesky)
    return np.ascontiguousarray(center), np.ascontiguousarray(shifted)


@dataclass(frozen=True)
class _KernelArgs:
    """Parameters as the kernels take them, in the compute dtype of ``X``.

    ``center`` is the mixture mean rounded to that dtype; rows are centered
    on it as they are loaded, so ``means`` holds ``mu_k - center`` and, for
    ``tied`` and ``diag``, ``shifted = (mu_k - center) prec`` (a matrix
    product for ``tied``, elementwise for ``diag``; ``means`` itself
    otherwise).  ``prec`` is ``U / sqrt(2)``
    so that the kernels need no factor 1/2.  ``shift`` (float64) is what the
    statistics are accumulated around, in the original coordinates.
    """

    log_norm: np.ndarray
    center: np.ndarray
    means: np.ndarray
    prec: np.ndarray
    shifted: np.ndarray
    shift: np.ndarray


def _runs_as_diag(params: GaussianParams) -> bool:
    """Whether the diag kernels compute this spherical mixture's rows
    (:data:`SPHERICAL_AS_DIAG_MAX_FEATURES`)."""
    return (
        params.covariance_type == "spherical"
        and params.means.shape[1] <= SPHERICAL_AS_DIAG_MAX_FEATURES
    )


def centering_point(center: np.ndarray, means: np.ndarray, dtype) -> np.ndarray:
    """``center`` (``(D,)``, float64) rounded to a multiple of the spacing
    of ``dtype`` at ``2 max |mu|``, in ``dtype`` (exactly): the point the
    kernels subtract from every row, in the data's dtype, as they load it.

    On that grid the rounding of ``x - c`` depends on the low bits of ``x``
    alone (for ``|x - c|`` up to about ``2 max |mu|``), so it averages out
    over the rows.  Centered on the exact mixture mean instead, the rows of
    a tight component far from it sit on a grid that ``c`` is off by a
    fixed residue, and all of them round the same way: float32 means biased
    by up to half a spacing of ``|mu_k - c|``, which the tied covariance
    (the total scatter less the spread between the means) multiplies by
    ``2 |mu_k - c| / spread`` (``tests/test_float32.py``: components 300 to
    1000 from the mixture mean with spreads of 0.5 to 2 came out with means
    off by 1.5e-5 instead of 1e-6).  The point moves by at most ``eps max
    |mu|``, one spacing for all features (2.7 us per pass)."""
    scale = 2.0 * float(np.abs(means).max())
    if not 0.0 < scale < math.inf:
        return np.asarray(center, dtype=dtype)
    digits = np.finfo(dtype).nmant + 1
    spacing = math.ldexp(1.0, math.frexp(scale)[1] - digits)
    grid = np.rint(np.divide(center, spacing))
    grid *= spacing
    return grid.astype(dtype)


def _kernel_args(params: GaussianParams, dtype, log_norm=None) -> _KernelArgs:
    if log_norm is None:
        log_norm = _log_norm(params)
    center = centering_point(params.weights @ params.means, params.means, dtype)
    centered = params.means - center.astype(np.float64)
    prec = params.precisions_cholesky * _SQRT_HALF
    as_diag = _runs_as_diag(params)
    if as_diag:
        prec = np.repeat(prec[:, None], centered.shape[1], axis=1)

    def cast(a):
        return np.ascontiguousarray(a, dtype=dtype)

    means = cast(centered)
    if params.covariance_type == "tied":
        shifted = cast(centered @ prec)
        shift = np.repeat(center.astype(np.float64)[None], centered.shape[0], axis=0)
    else:
        # diag: the log-density's ``x prec - (mu_k - c) prec`` (one FMA).
        diag = params.covariance_type == "diag" or as_diag
        shifted = cast(centered * prec) if diag else means
        shift = center.astype(np.float64) + means.astype(np.float64)
    return _KernelArgs(cast(log_norm), center, means, cast(prec), shifted, shift)


def e_step(
    X: np.ndarray,
    sample_weight: np.ndarray,
    params: GaussianParams,
    n_threads: int | None = None,
    log_norm: np.ndarray | None = None,
    total_scatter: bool = True,
) -> GaussianStats:
    """Sufficient statistics and log-likelihood of validated rows ``X``.

    One fused pass over ``X``; ``sample_weight`` has length 0 for unit weights.
    ``log_norm`` overrides the per-component constant of the log-density
    (``log w_k + log det U_k - D/2 log 2 pi``), e.g. for variational updates
    whose E-step uses expected log-weights and log-determinants.

    ``total_scatter=False`` (``tied`` only) leaves out the total scatter
    ``sum_i w_i (x_i - c)(x_i - c)^T``, which does not depend on the
    parameters: ``sum_xx`` is then zero, for the caller to fill in from an
    earlier pass over the same rows
    (:class:`fastem.families.gaussian_fit.TiedScatterMemo`), and
    ``expected_log_joint`` zero until the caller computes it
    (:func:`expected_log_joint`).
    """
    N, D = X.shape
    K = params.n_components
    cov = params.covariance_type
    T = n_tasks(N, D)
    scatter = cov != "tied" or total_scatter
    rows = task_rows(N, D)
    block = block_rows(
        D,
        X.dtype.itemsize,
        compute_bound=_COMPUTE_BOUND,
        full_covariance=cov == "full",
    )
    nk = np.zeros((T, K))
    sx = np.zeros((T, K, D))
    acc = np.zeros((T, 3))
    if log_norm is None:
        log_norm = _log_norm(params)
    a = _kernel_args(params, X.dtype, log_norm)
    w = sample_weight
    if cov == "full":
        sxx = np.zeros((T, K, D, D))
        small = D <= _k.SMALL_FULL_D
        kernel = _k.estep_full_small if small else _k.estep_full
        middle = (a.means, a.prec)
    elif cov == "tied":
        sxx = np.zeros((T, D + 1, D) if scatter else (T, 0, 0))
        kernel, middle = _k.estep_tied, (a.prec, a.shifted, a.means)
    elif cov == "diag" or _runs_as_diag(params):
        sxx = np.zeros((T, K, D))
        kernel, middle = _k.estep_diag, (a.means, a.prec, a.shifted)
    else:
        sxx = np.zeros((T, K))
        kernel, middle = _k.estep_spherical, (a.means, a.prec)
    run_tasks(
        kernel,
        T,
        X,
        w,
        a.center,
        a.log_norm,
        *middle,
        rows,
        block,
        nk,
        sx,
        sxx,
        acc,
        n_threads=n_threads,
    )
    total_first = None
    if cov == "tied" and scatter:
        sxx = sxx.sum(axis=0)
        sum_xx, total_first = sxx[:D], sxx[D]
    else:
        sum_xx = sxx.sum(axis=0) if scatter else np.zeros((D, D))
    if cov in ("full", "tied"):
        sum_xx = _symmetrize_lower(sum_xx)
    elif cov == "spherical" and sum_xx.ndim == 2:
        sum_xx = sum_xx.sum(axis=1)
    log_likelihood, total_weight, _ = acc.sum(axis=0).tolist()
    sum_n, sum_x = nk.sum(axis=0), sx.sum(axis=0)
    joint = (
        expected_log_joint(sum_n, sum_x, sum_xx, a.shift, params, log_norm)
        if scatter
        else 0.0
    )
    return GaussianStats(
        cov,
        sum_n,
        sum_x,
        sum_xx,
        a.shift,
        log_likelihood,
        total_weight,
        joint,
        total_first,
    )


def expected_log_joint(
    nk: np.ndarray,
    sum_x: np.ndarray,
    sum_xx: np.ndarray,
    shift: np.ndarray,
    params: GaussianParams,
    log_norm: np.ndarray | None = None,
) -> float:
    """``sum_i sum_k r_ik log p(x_i, k)`` from the moments of :class:`GaussianStats`.

    ``log p(x, k) = log_norm_k - 1/2 ||(x - mu_k)^T U_k||^2``, so with
    ``P_k = U_k U_k^T``

        sum_i sum_k r_ik log p(x_i, k)
            = sum_k n_k log_norm_k - 1/2 sum_k tr(P_k S_k),

    ``S_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T``.  The statistics are
    around the shifts ``s_k``; with ``delta_k = s_k - mu_k``, ``tr(P_k
    S_k)`` is ``tr(P_k S'_k) + (2 sum_x_k + n_k delta_k)^T P_k delta_k``
    for the second moments ``S'_k`` around ``s_k`` (as in
    :meth:`GaussianStats.reshift`); ``tied`` has one ``P`` and the total
    scatter for ``sum_k S'_k``.  The kernels therefore skip the per-row sum
    of ``r L``.  ``params`` and ``log_norm`` are those of the E-step that
    produced ``stats``.
    """
    if log_norm is None:
        log_norm = _log_norm(params)
    U = params.precisions_cholesky
    cov = params.covariance_type
    delta = shift - params.means
    if cov in ("full", "tied"):
        P = U @ np.swapaxes(U, -1, -2)
        P_delta = delta @ P if cov == "tied" else (P @ delta[:, :, None])[:, :, 0]
    else:
        P = U * U
        P_delta = delta * (P if cov == "diag" else P[:, None])
    quadratic = np.vdot(sum_xx, P) + np.vdot(2.0 * sum_x + nk[:, None] * delta, P_delta)
    occupied = nk > 0
    constant = np.dot(nk[occupied], np.asarray(log_norm)[occupied])
    return float(constant - 0.5 * quadratic)


def _symmetrize_lower(S: np.ndarray) -> np.ndarray:
    """A copy of ``S`` with the upper triangle(s) filled from the lower one(s)."""
    i, j = _strict_upper_triangle(S.shape[-1])
    out = S.copy()
    out[..., i, j] = S[..., j, i]
    return out


@functools.cache
def _strict_upper_triangle(n_features: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n_features, 1)


def per_row(
    X: np.ndarray,
    params: GaussianParams,
    *,
    log_likelihood: bool = False,
    responsibilities: bool = False,
    labels: bool = False,
    n_threads: int | None = None,
    log_norm: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Per-row ``log p(x)``, ``p(k | x)`` and ``argmax_k p(x, k)`` as asked.

    ``log_norm`` overrides the per-component constant as in :func:`e_step`.
    """
    N, D = X.shape
    K = params.n_components
    cov = params.covariance_type
    out_lse = np.empty(N if log_likelihood else 0)
    out_resp = np.empty((N if responsibilities else 0, K))
    out_label = np.empty(N if labels else 0, dtype=np.int64)
    a = _kernel_args(params, X.dtype, log_norm)
    block = block_rows(D, X.dtype.itemsize, compute_bound=_COMPUTE_BOUND)
    as_diag = _runs_as_diag(params)
    means = a.shifted if cov in ("tied", "diag") or as_diag else a.means
    kernel = _PER_ROW_KERNELS["diag" if as_diag else cov]
    if cov == "full" and D <= _k.SMALL_FULL_D:
        kernel = _k.per_row_full_small
    run_tasks(
        kernel,
        per_row_tasks(N, block),
        X,
        a.center,
        a.log_norm,
        means,
        a.prec,
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


def m_step(stats: GaussianStats, reg_covar: float) -> tuple[GaussianParams, list[int]]:
    """New parameters from statistics, and the components that are degenerate.

    Matches scikit-learn's ``_estimate_gaussian_parameters`` (``nk`` gets
    ``10 eps`` added) followed by ``_compute_precision_cholesky``.  A
    component is degenerate when its responsibility mass is below
    ``10 eps`` of the total weight or its covariance is not positive
    definite; its parameters are then placeholders for the caller to
    re-seed.
    """
    cov = stats.covariance_type
    nk, means, covariances = estimate_moments(stats, reg_covar)
    weights = nk / nk.sum()
    prec_chol, bad = precisions_cholesky_from_covariances(covariances, cov)
    empty = np.flatnonzero(stats.nk < _EPS10 * stats.total_weight).tolist()
    if empty:
        bad = sorted(set(bad) | set(empty))
    params = GaussianParams(cov, weights, means, covariances, prec_chol)
    return params, bad


def estimate_moments(
    stats: GaussianStats, reg_covar: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(nk, means, covariances)`` from statistics, as scikit-learn's
    ``_estimate_gaussian_parameters``: ``nk`` gets ``10 eps`` added and the
    covariances get ``reg_covar`` on their diagonals."""
    cov = stats.covariance_type
    D = stats.sum_x.shape[1]
    nk = stats.nk + _EPS10
    delta = stats.sum_x / nk[:, None]
    means = stats.shift + delta
    if cov == "full":
        covariances = (
            stats.sum_xx / nk[:, None, None] - delta[:, :, None] * delta[:, None, :]
        )
        np.einsum("kii->ki", covariances)[:] += reg_covar  # a view of the diagonals
    elif cov == "tied":
        between = (delta.T * nk) @ delta
        covariances = (stats.sum_xx - between) / nk.sum()
        covariances = 0.5 * (covariances + covariances.T)
        np.einsum("ii->i", covariances)[:] += reg_covar
    elif cov == "diag":
        var = np.maximum(stats.sum_xx / nk[:, None] - delta**2, 0.0)
        covariances = var + reg_covar
    else:
        sq = np.einsum("kd,kd->k", delta, delta)
        covariances = np.maximum(stats.sum_xx / nk - sq, 0.0) / D + reg_covar
    return nk, means, covariances


def stats_from_scatter(
    covariance_type: str,
    nk: np.ndarray,
    sum_x: np.ndarray,
    scatter: np.ndarray,
    shift: np.ndarray,
) -> GaussianStats:
    """Statistics of one covariance type from full per-component scatter
    matrices around per-component shifts (the output of the initialisers)."""
    total = float(nk.sum())
    if covariance_type == "full":
        return GaussianStats("full", nk, sum_x, scatter, shift, 0.0, total)
    if covariance_type in ("diag", "spherical"):
        diag = np.diagonal(scatter, axis1=1, axis2=2).copy()
        if covariance_type == "spherical":
            diag = diag.sum(axis=1)
        return GaussianStats(covariance_type, nk, sum_x, diag, shift, 0.0, total)
    # tied: move every component's statistics to the data mean c.
    center = (sum_x + nk[:, None] * shift).sum(axis=0) / total
    off = shift - center
    sum_x_c = sum_x + nk[:, None] * off
    total_scatter = (
        scatter.sum(axis=0)
        + np.einsum("ki,kj->ij", sum_x, off)
        + np.einsum("ki,kj->ij", off, sum_x)
        + np.einsum("k,ki,kj->ij", nk, off, off)
    )
    shift_c = np.broadcast_to(center, shift.shape).copy()
    return GaussianStats("tied", nk, sum_x_c, total_scatter, shift_c, 0.0, total)


# ---------------------------------------------------------------------------
# Model size and sampling
# ---------------------------------------------------------------------------


def n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Free parameters, as scikit-learn's ``GaussianMixture._n_parameters``."""
    K, D = n_components, n_features
    cov_params = {
        "full": K * D * (D + 1) / 2.0,
        "diag": K * D,
        "tied": D * (D + 1) / 2.0,
        "spherical": K,
    }[covariance_type]
    return int(cov_params + D * K + K - 1)


def sample(
    params: GaussianParams, n_samples: int, rng: np.random.RandomState
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` rows and their component labels (scikit-learn's
    algorithm, so the same ``RandomState`` gives the same draws)."""
    counts = rng.multinomial(n_samples, params.weights)
    cov = params.covariance_type
    D = params.n_features
    parts = []
    for k, (mean, n) in enumerate(zip(params.means, counts, strict=True)):
        if cov == "full":
            parts.append(rng.multivariate_normal(mean, params.covariances[k], int(n)))
        elif cov == "tied":
            parts.append(rng.multivariate_normal(mean, params.covariances, int(n)))
        else:
            parts.append(
                mean + rng.standard_normal(size=(n, D)) * np.sqrt(params.covariances[k])
            )
    X = np.vstack(parts)
    y = np.concatenate(
        [np.full(int(n), k, dtype=np.int64) for k, n in enumerate(counts)]
    )
    return X, y
