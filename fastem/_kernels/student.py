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
from numba import njit, prange

from .._config import PARALLEL, SERIAL
from ._math import add_lower_scatter, upper_tri_sq_norms
from .discrete import _load_block, _responsibilities, emit_rows


@njit(**SERIAL)
def _accumulate_centered(xt, nb, wts, shift, k, wdiff, diff, nk, sx):
    """Add ``sum_b wts[k, b]`` to ``nk[k]`` and ``sum_b wts[k, b] (x_b - s)``
    to ``sx[k]``; leave ``diff = x - s`` and ``wdiff = wts[k] (x - s)`` in the
    buffers.  Returns False when the block gives component k no weight."""
    D = xt.shape[0]
    n = 0.0
    for b in range(nb):
        n += wts[k, b]
    if n == 0.0:
        return False
    nk[k] += n
    for d in range(D):
        s = shift[d]
        acc = 0.0
        for b in range(nb):
            z = xt[d, b] - s
            diff[d, b] = z
            wz = wts[k, b] * z
            wdiff[d, b] = wz
            acc += wz
        sx[k, d] += acc
    return True


@njit(**SERIAL)
def _log_prob_t(xt, nb, means, prec_chol, dofs, log_norm, diff, y, M, lq, L):
    """``M[k, b]`` Mahalanobis distances, ``lq[k, b] = log(1 + M / nu_k)`` and
    ``L[k, b] = log p(x_b, k)``."""
    D = xt.shape[0]
    K = means.shape[0]
    for k in range(K):
        for d in range(D):
            m = means[k, d]
            for b in range(nb):
                diff[d, b] = xt[d, b] - m
        row = M[k]
        for b in range(nb):
            row[b] = 0.0
        upper_tri_sq_norms(diff, nb, prec_chol[k], y, row)
        nu = dofs[k]
        inv_nu = 1.0 / nu
        half = 0.5 * (nu + D)
        c = log_norm[k]
        for b in range(nb):
            q = math.log1p(row[b] * inv_nu)
            lq[k, b] = q
            L[k, b] = c - half * q


@njit(**PARALLEL)
def estep_student(
    X,
    sw,
    log_norm,
    means,
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
):
    """Statistics of the rows of ``X`` (outputs with a leading task axis).

    With ``scatter`` False only ``nk``, ``slogu`` and ``acc`` are filled (the
    extra pass of the ECME degrees-of-freedom update).
    """
    N, D = X.shape
    K = means.shape[0]
    for t in prange(nk.shape[0]):
        xt = np.empty((D, block))
        diff = np.empty((D, block))
        wdiff = np.empty((D, block))
        y = np.empty(block)
        M = np.empty((K, block))
        lq = np.empty((K, block))
        L = np.empty((K, block))
        resp = np.empty((K, block))
        ru = np.empty((K, block))
        rowmax = np.empty(block)
        total = np.empty(block)
        bits = np.empty(block, dtype=np.int64)
        r_end = min(N, (t + 1) * task_rows)
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            _load_block(X, r0, nb, xt)
            _log_prob_t(xt, nb, means, prec_chol, dofs, log_norm, diff, y, M, lq, L)
            _responsibilities(L, nb, sw, r0, rowmax, resp, bits, total, acc[t])
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
                if scatter and _accumulate_centered(
                    xt, nb, ru, means[k], k, wdiff, diff, su[t], sx[t]
                ):
                    add_lower_scatter(wdiff, diff, nb, sxx[t, k])


@njit(**PARALLEL)
def per_row_student(
    X, log_norm, means, prec_chol, dofs, block, out_lse, out_resp, out_label
):
    """Per-row ``log p(x)``, posteriors and labels (length-0 outputs skipped)."""
    N, D = X.shape
    K = means.shape[0]
    rows_per_task = 16 * block
    n_tasks = (N + rows_per_task - 1) // rows_per_task
    for t in prange(n_tasks):
        xt = np.empty((D, block))
        diff = np.empty((D, block))
        y = np.empty(block)
        M = np.empty((K, block))
        lq = np.empty((K, block))
        L = np.empty((K, block))
        E = np.empty((K, block))
        rowmax = np.empty(block)
        total = np.empty(block)
        bits = np.empty(block, dtype=np.int64)
        r_end = min(N, (t + 1) * rows_per_task)
        for r0 in range(t * rows_per_task, r_end, block):
            nb = min(block, r_end - r0)
            _load_block(X, r0, nb, xt)
            _log_prob_t(xt, nb, means, prec_chol, dofs, log_norm, diff, y, M, lq, L)
            emit_rows(L, nb, r0, rowmax, total, E, bits, out_lse, out_resp, out_label)
