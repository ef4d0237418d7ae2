"""Fused kernels for the log-linear mixture families: Bernoulli, Poisson and
multinomial.

All three have component log-densities of the form

    log p(x, k) = c[k] + sum_d x_d A[k, d] + rho(x)

with ``rho`` a row term that does not depend on the component:

* Bernoulli: ``A = logit(p)``, ``c = log w + sum_d log(1 - p)``, ``rho = 0``;
* Poisson: ``A = log(lambda)``, ``c = log w - sum_d lambda``,
  ``rho = -sum_d log(x_d!)``;
* multinomial: ``A = log(theta)``, ``c = log w``,
  ``rho = log(n!) - sum_d log(x_d!)`` with ``n = sum_d x_d``.

``kind`` selects ``rho``: 0 (none), 1 (Poisson), 2 (multinomial).  Log
factorials of counts below ``logfact.shape[0]`` come from the table
``logfact[n] = log(n!)``, larger ones from ``math.lgamma``.

The E-step of a block of rows is then a small matrix product; the
statistics are ``nk[k] = sum_i r_ik`` and ``sx[k, d] = sum_i r_ik x_id`` with
``r`` the responsibilities times the row weights.

Conventions are those of :mod:`fastem._kernels.gaussian`: dense ``X`` is
C-contiguous float32/float64 and is copied block by block, transposed, into a
``(D, B)`` float64 buffer; ``sw`` has length 0 for unit weights; outputs have
a leading task axis and task ``t`` writes only its own slice (the caller sums
the slices in task order, so results do not depend on the number of threads).

Sparse input is CSR (``data``, ``indices``, ``indptr``): each row touches only
its nonzeros, and the parameters are laid out feature-major (``AT`` is
``(D, K)``) so that one nonzero updates ``K`` contiguous numbers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._config import KERNEL, SERIAL, SHARED
from .._layout import PER_ROW_TASK_BLOCKS
from ._blocks import (
    accumulate_first_moments,
    aligned_rows,
    emit_rows,
    load_rows,
    responsibilities,
)
from ._claim import claim_task

# ---------------------------------------------------------------------------
# Row terms and log-probabilities of a block
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _log_factorial(v, logfact):
    """``log(v!)`` for a non-negative integer-valued float ``v``."""
    if v < logfact.shape[0]:
        return logfact[int(v)]
    return math.lgamma(v + 1.0)


@njit(**SHARED)
def _row_terms_dense(kind, xt, nb, logfact, rt):
    """``rt[b] = rho(x_b)`` for the block ``xt`` (D, B)."""
    D = xt.shape[0]
    for b in range(nb):
        rt[b] = 0.0
    if kind == 0:
        return
    for d in range(D):
        row = xt[d]
        for b in range(nb):
            v = row[b]
            if v != 0.0:
                rt[b] -= _log_factorial(v, logfact)
    if kind == 2:
        for b in range(nb):
            n = 0.0
            for d in range(D):
                n += xt[d, b]
            rt[b] += _log_factorial(n, logfact)


@njit(**SHARED)
def _log_prob_dense(xt, nb, c, A, rt, L):
    """``L[k, b] = c[k] + rt[b] + sum_d A[k, d] xt[d, b]``.

    Four features per sweep over the block, so that each load and store of
    ``L[k]`` carries four multiply-adds.
    """
    D = xt.shape[0]
    K = A.shape[0]
    for k in range(K):
        row = L[k]
        ck = c[k]
        for b in range(nb):
            row[b] = ck + rt[b]
        a = A[k]
        d = 0
        while d + 3 < D:
            a0 = a[d]
            a1 = a[d + 1]
            a2 = a[d + 2]
            a3 = a[d + 3]
            x0 = xt[d]
            x1 = xt[d + 1]
            x2 = xt[d + 2]
            x3 = xt[d + 3]
            for b in range(nb):
                row[b] += a0 * x0[b] + a1 * x1[b] + a2 * x2[b] + a3 * x3[b]
            d += 4
        while d < D:
            a0 = a[d]
            x0 = xt[d]
            for b in range(nb):
                row[b] += a0 * x0[b]
            d += 1


@njit(**SHARED)
def _log_prob_sparse(
    kind, data, indices, indptr, r0, nb, c, AT, logfact, tmp, L, rt_out
):
    """Log-probabilities of CSR rows ``r0:r0+nb`` into ``L`` (K, B); the row
    terms are also left in ``rt_out``."""
    K = AT.shape[1]
    for b in range(nb):
        i = r0 + b
        for k in range(K):
            tmp[k] = c[k]
        rho = 0.0
        n = 0.0
        for j in range(indptr[i], indptr[i + 1]):
            v = np.float64(data[j])
            a = AT[indices[j]]
            for k in range(K):
                tmp[k] += v * a[k]
            if kind != 0 and v != 0.0:
                rho -= _log_factorial(v, logfact)
                n += v
        if kind == 2:
            rho += _log_factorial(n, logfact)
        rt_out[b] = rho
        for k in range(K):
            L[k, b] = tmp[k] + rho


# ---------------------------------------------------------------------------
# Fused E-step + statistics
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _block_buffers(K, block):
    """Per-task scratch: ``rt`` (per-row terms), ``L``, a ``(K, block)``
    buffer for the responsibilities or per-row probabilities, ``rowmax`` and
    ``total``."""
    return (
        aligned_rows(1, block, np.float64)[0],
        aligned_rows(K, block, np.float64),
        aligned_rows(K, block, np.float64),
        aligned_rows(1, block, np.float64)[0],
        aligned_rows(1, block, np.float64)[0],
    )


@njit(**KERNEL)
def estep_dense(X, sw, kind, c, A, logfact, task_rows, block, nk, sx, acc, queue):
    """Statistics of dense rows; ``nk`` (T, K), ``sx`` (T, K, D), ``acc`` (T, 3)
    as in :func:`fastem._kernels._blocks.responsibilities`."""
    N, D = X.shape
    K = A.shape[0]
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt = aligned_rows(D, block, np.float64)
        rt, L, resp, rowmax, total = _block_buffers(K, block)
        nblk = np.empty(K)
        origin = np.zeros((K, D))
        sums = np.empty((K, D))
        no_scale = np.empty(0)
        r_end = min(N, (t + 1) * task_rows)
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows(X, r0, nb, xt)
            _row_terms_dense(kind, xt, nb, logfact, rt)
            _log_prob_dense(xt, nb, c, A, rt, L)
            responsibilities(L, nb, sw, r0, rowmax, resp, total, acc[t])
            accumulate_first_moments(
                xt, nb, resp, no_scale, origin, nblk, sums, sx[t], False
            )
            for k in range(K):
                nk[t, k] += nblk[k]


@njit(**KERNEL)
def estep_sparse(
    data,
    indices,
    indptr,
    sw,
    kind,
    c,
    AT,
    logfact,
    task_rows,
    block,
    nk,
    sxT,
    acc,
    queue,
):
    """Statistics of CSR rows; ``sxT`` is ``(T, D, K)`` (feature-major)."""
    N = indptr.shape[0] - 1
    K = AT.shape[1]
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        tmp = np.empty(K)
        rt, L, resp, rowmax, total = _block_buffers(K, block)
        nkt = nk[t]
        st = sxT[t]
        r_end = min(N, (t + 1) * task_rows)
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            _log_prob_sparse(
                kind, data, indices, indptr, r0, nb, c, AT, logfact, tmp, L, rt
            )
            responsibilities(L, nb, sw, r0, rowmax, resp, total, acc[t])
            for k in range(K):
                s = 0.0
                for b in range(nb):
                    s += resp[k, b]
                nkt[k] += s
            for b in range(nb):
                i = r0 + b
                for k in range(K):
                    tmp[k] = resp[k, b]
                for j in range(indptr[i], indptr[i + 1]):
                    v = np.float64(data[j])
                    dst = st[indices[j]]
                    for k in range(K):
                        dst[k] += v * tmp[k]


@njit(**KERNEL)
def row_terms_dense(X, sw, kind, logfact, task_rows, block, out, queue):
    """``out[t] = sum_i w_i rho(x_i)`` over the rows of task ``t``."""
    N, D = X.shape
    has_w = sw.shape[0] > 0
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt = aligned_rows(D, block, np.float64)
        rt = aligned_rows(1, block, np.float64)[0]
        s = 0.0
        r_end = min(N, (t + 1) * task_rows)
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows(X, r0, nb, xt)
            _row_terms_dense(kind, xt, nb, logfact, rt)
            if has_w:
                wrow = sw[r0 : r0 + nb]
                for b in range(nb):
                    s += wrow[b] * rt[b]
            else:
                for b in range(nb):
                    s += rt[b]
        out[t] = s


@njit(**KERNEL)
def row_terms_sparse(data, indices, indptr, sw, kind, logfact, task_rows, out, queue):
    """``out[t] = sum_i w_i rho(x_i)`` over the CSR rows of task ``t``."""
    N = indptr.shape[0] - 1
    has_w = sw.shape[0] > 0
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        s = 0.0
        for i in range(t * task_rows, min(N, (t + 1) * task_rows)):
            rho = 0.0
            n = 0.0
            for j in range(indptr[i], indptr[i + 1]):
                v = np.float64(data[j])
                if v != 0.0:
                    rho -= _log_factorial(v, logfact)
                    n += v
            if kind == 2:
                rho += _log_factorial(n, logfact)
            s += sw[i] * rho if has_w else rho
        out[t] = s


# ---------------------------------------------------------------------------
# Per-row outputs (predict, predict_proba, score_samples)
# ---------------------------------------------------------------------------


@njit(**KERNEL)
def per_row_dense(X, kind, c, A, logfact, block, out_lse, out_resp, out_label, queue):
    """Per-row outputs for dense rows (pass length-0 arrays for unwanted ones)."""
    N, D = X.shape
    K = A.shape[0]
    rows_per_task = PER_ROW_TASK_BLOCKS * block
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt = aligned_rows(D, block, np.float64)
        rt, L, E, rowmax, total = _block_buffers(K, block)
        r_end = min(N, (t + 1) * rows_per_task)
        for r0 in range(t * rows_per_task, r_end, block):
            nb = min(block, r_end - r0)
            load_rows(X, r0, nb, xt)
            _row_terms_dense(kind, xt, nb, logfact, rt)
            _log_prob_dense(xt, nb, c, A, rt, L)
            emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label)


@njit(**KERNEL)
def per_row_sparse(
    data,
    indices,
    indptr,
    kind,
    c,
    AT,
    logfact,
    block,
    out_lse,
    out_resp,
    out_label,
    queue,
):
    """Per-row outputs for CSR rows."""
    N = indptr.shape[0] - 1
    K = AT.shape[1]
    rows_per_task = PER_ROW_TASK_BLOCKS * block
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        tmp = np.empty(K)
        rt, L, E, rowmax, total = _block_buffers(K, block)
        r_end = min(N, (t + 1) * rows_per_task)
        for r0 in range(t * rows_per_task, r_end, block):
            nb = min(block, r_end - r0)
            _log_prob_sparse(
                kind, data, indices, indptr, r0, nb, c, AT, logfact, tmp, L, rt
            )
            emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label)
