"""Fused kernels for mixtures of multivariate Student-t distributions.

Component ``k`` has location ``mu_k``, scale matrix ``Sigma_k`` (through the
upper-triangular Cholesky factor ``U_k`` of its inverse, as for Gaussians)
and degrees of freedom ``nu_k``.  With ``m = ||(x - mu_k) U_k||^2``:

    log p(x, k) = log_norm[k] - (nu_k + D) / 2 * log(1 + m / nu_k)

where ``log_norm[k] = log w_k + lgamma((nu_k + D)/2) - lgamma(nu_k/2)
- D/2 log(nu_k pi) + log det U_k``.

The E-step also yields the expected latent precision scale of each row and
component, ``u = (nu_k + D) / (nu_k + m)``; the statistics are (``r`` the
responsibilities times the row weights, shift ``s_k`` the current location)

* ``nk[k] = sum r``, ``su[k] = sum r u``,
* ``sx[k] = sum r u (x - s_k)``,
* ``sxx[k]`` the lower triangle of ``sum r u (x - s_k)(x - s_k)^T``,
* ``slogu[k] = sum r (log u - u)`` for the degrees-of-freedom update.

Conventions (task axis, blocks, float64 parameters) are those of
:mod:`fastem._kernels.gaussian`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._config import CONTRACT_ONLY, KERNEL, SERIAL, SHARED
from .._layout import PER_ROW_TASK_BLOCKS
from ._blocks import (
    add_component_moments,
    aligned_rows,
    emit_rows,
    load_rows_centered,
    responsibilities,
)
from ._claim import claim_task
from ._simd import upper_tri_sq_norms
from .gaussian import _project_means

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000
_SQRT2_BITS = 0x3FF6A09E667F3BCD
_EXPONENT_ONE = 1 << 52


# Like _math.exp_simd: compiled without fast-math, written as three simple
# loops over the block that the compiler vectorises (numba's math.log1p is
# a scalar libm call).
@njit(**{**CONTRACT_ONLY, "fastmath": False})
def log1p_inplace(v, u, k, n):
    """``v[:n] = log1p(v[:n])`` for finite float64 ``v >= 0``.

    ``x = 1 + v = 2^e m`` with ``m`` in ``[sqrt(1/2), sqrt(2))``;
    ``log m = 2 atanh(s)``, ``s = (m - 1) / (m + 1)``, by its series to
    ``s^21`` (truncation below 1e-18), and ``log1p(v) = log(x) v / (x - 1)``
    restores full relative accuracy for small ``v`` (Goldberg's trick).
    ``u`` (float64) and ``k`` (int64) are scratch buffers of length >= n.
    """
    for i in range(n):
        u[i] = 1.0 + v[i]
    bits = u.view(np.int64)
    for i in range(n):
        b = bits[i]
        m = (b & _MANTISSA) | _ONE_BITS
        big = np.int64(m > _SQRT2_BITS)
        k[i] = (b >> 52) - 1023 + big
        bits[i] = m - big * _EXPONENT_ONE
    for i in range(n):
        m = u[i]
        s = (m - 1.0) / (m + 1.0)
        z = s * s
        p = 1.0 / 21.0
        p = p * z + 1.0 / 19.0
        p = p * z + 1.0 / 17.0
        p = p * z + 1.0 / 15.0
        p = p * z + 1.0 / 13.0
        p = p * z + 1.0 / 11.0
        p = p * z + 1.0 / 9.0
        p = p * z + 1.0 / 7.0
        p = p * z + 1.0 / 5.0
        p = p * z + 1.0 / 3.0
        p = p * z + 1.0
        e = np.float64(k[i])
        lx = e * _LN2_HI + (2.0 * s * p + e * _LN2_LO)
        t = v[i]
        x = 1.0 + t
        d = x - 1.0
        v[i] = t if d == 0.0 else lx * (t / d)


@njit(**SHARED)
def _log_prob_t(xt, nb, projected, prec_chol, dofs, log_norm, M, lq, L, ubuf, kbuf):
    """``M[k, b]`` Mahalanobis distances, ``lq[k, b] = log(1 + M / nu_k)`` and
    ``L[k, b] = log p(x_b, k)``, for rows centered on ``c`` and
    ``projected[k] = (mu_k - c)^T U_k`` (as for Gaussian full covariances:
    no ``x - mu_k`` copy per component)."""
    D = xt.shape[0]
    K = projected.shape[0]
    for k in range(K):
        row = M[k]
        for b in range(nb):
            row[b] = 0.0
        upper_tri_sq_norms(xt, nb, prec_chol[k], projected[k], row)
        inv_nu = 1.0 / dofs[k]
        q = lq[k]
        for b in range(nb):
            q[b] = row[b] * inv_nu
        log1p_inplace(q, ubuf, kbuf, nb)
        half = 0.5 * (dofs[k] + D)
        c = log_norm[k]
        for b in range(nb):
            L[k, b] = c - half * q[b]


@njit(**SERIAL)
def _t_buffers(D, K, block):
    """Per-task scratch of the Student kernels: ``xt, M, lq, L`` for
    :func:`_log_prob_t`, a ``(K, block)`` buffer for the responsibilities
    (or per-row probabilities), ``rowmax, total`` and ``kbuf``."""
    return (
        aligned_rows(D, block, np.float64),
        aligned_rows(K, block, np.float64),
        aligned_rows(K, block, np.float64),
        aligned_rows(K, block, np.float64),
        aligned_rows(K, block, np.float64),
        aligned_rows(1, block, np.float64)[0],
        aligned_rows(1, block, np.float64)[0],
        np.empty(block, dtype=np.int64),
    )


@njit(**KERNEL)
def estep_student(
    X,
    center,
    means,
    sw,
    log_norm,
    prec_chol,
    dofs,
    scatter,
    task_rows,
    block,
    nk,
    su,
    sx,
    sxx,
    slogu,
    acc,
    queue,
):
    """Statistics of the rows of ``X`` (outputs with a leading task axis),
    centered on ``center`` as they are loaded; ``means`` are ``mu_k -
    center``.

    With ``scatter`` False only ``nk``, ``slogu`` and ``acc`` are filled (the
    extra pass of the ECME degrees-of-freedom update).
    """
    N, D = X.shape
    K = means.shape[0]
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, M, lq, L, resp, rowmax, total, kbuf = _t_buffers(D, K, block)
        projected = _project_means(means, prec_chol)
        ru = aligned_rows(K, block, np.float64)
        w = aligned_rows(4, block, np.float64)
        sums = np.empty(D)
        r_end = min(N, (t + 1) * task_rows)
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            _log_prob_t(
                xt, nb, projected, prec_chol, dofs, log_norm, M, lq, L, total, kbuf
            )
            responsibilities(L, nb, sw, r0, rowmax, resp, total, acc[t])
            for k in range(K):
                nu = dofs[k]
                nud = nu + D
                cu = math.log(nud) - math.log(nu)
                s_n = 0.0
                s_l = 0.0
                for b in range(nb):
                    r = resp[k, b]
                    u = nud / (nu + M[k, b])
                    ru[k, b] = r * u
                    s_n += r
                    s_l += r * (cu - lq[k, b] - u)
                nk[t, k] += s_n
                slogu[t, k] += s_l
                if scatter:
                    add_component_moments(
                        xt, nb, ru, k, means[k], w, su[t], sx[t], sxx[t, k], sums
                    )


@njit(**KERNEL)
def per_row_student(
    X,
    center,
    means,
    log_norm,
    prec_chol,
    dofs,
    block,
    out_lse,
    out_resp,
    out_label,
    queue,
):
    """Per-row ``log p(x)``, posteriors and labels (length-0 outputs skipped);
    ``means`` are ``mu_k - center``, as in :func:`estep_student`."""
    N, D = X.shape
    K = means.shape[0]
    rows_per_task = PER_ROW_TASK_BLOCKS * block
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, M, lq, L, E, rowmax, total, kbuf = _t_buffers(D, K, block)
        projected = _project_means(means, prec_chol)
        r_end = min(N, (t + 1) * rows_per_task)
        for r0 in range(t * rows_per_task, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            _log_prob_t(
                xt, nb, projected, prec_chol, dofs, log_norm, M, lq, L, total, kbuf
            )
            emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label)
