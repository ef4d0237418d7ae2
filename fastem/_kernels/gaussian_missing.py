"""Fused Gaussian-mixture kernels for rows with missing values.

The E-step of a row with observed features ``O`` and missing features ``M``
uses the marginal density of ``x_O``; its statistics use the conditional
expectations ``E[x_M | x_O, k]`` and ``E[x_M x_M^T | x_O, k]`` (Ghahramani &
Jordan, 1994).  Everything is written with the precision ``Lambda_k``:

* conditional mean   ``E[x_M | x_O, k] = mu_M - G (x_O - mu_O)`` with
  ``G = Lambda_MM^{-1} Lambda_MO``;
* conditional covariance ``Lambda_MM^{-1}``;
* ``log det Sigma_OO = log det Sigma + log det Lambda_MM``, and the
  Mahalanobis distance of ``x_O`` under ``Sigma_OO`` equals the full one of the
  row completed with its conditional mean.

A pattern costs, per component, a Cholesky factorisation of the ``m x m``
block ``Lambda_MM`` (``m = |M|``, usually small) and ``G``; the rows come
sorted by missingness pattern, so each (pattern, component) pair is
factorised once per task:

* ``full``: blocks of consecutive sorted rows span patterns; only the
  completion ``-G (x_O - mu_O)`` and the log-density constant depend on the
  pattern, the Mahalanobis distances, responsibilities and scatter updates
  run over the whole block (so patterns with a few rows stay vectorised).  A
  one-pattern cache per component holds the factors; the conditional
  covariances are added once per pattern at the end of the task.
* ``tied``: the factors are shared by the components and computed once per
  run of equal pattern, whose rows are streamed through in blocks.
* ``diag``/``spherical``: features are independent within a component, so a
  0/1 mask of the block is all it takes (no grouping needed).

Conventions shared by every kernel
----------------------------------
* ``Xm`` is C-contiguous float64 ``(n, D)`` with NaN at the missing entries
  (no result depends on them).  ``sw`` holds per-row weights or has length 0 for unit weights.
* Rows ``starts[p]:starts[p + 1]`` share pattern ``p``; ``index[p, :n_obs[p]]``
  lists the observed features and ``index[p, n_obs[p]:]`` the missing ones,
  both ascending.
* ``log_norm`` is the complete-data constant of
  :mod:`fastem._kernels.gaussian` (``log w_k + log det U_k - D/2 log 2 pi``).
* Task ``t`` covers rows ``[t * task_rows, (t + 1) * task_rows)`` and writes
  only its own accumulator slice, which the caller adds in task order.
* The statistics have the definitions of the complete-data kernels (second
  moments lower-triangular, around the current means, or around the mixture
  mean ``c`` for ``tied``), so the two kinds of rows add up.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .._config import KERNEL, SERIAL, SHARED
from ._blocks import aligned_rows, argmax_rows, load_rows, responsibilities
from ._claim import claim_task
from ._math import (
    log_simd,
)
from ._simd import upper_tri_sq_norms, weighted_lower_scatter

_LOG_2PI = math.log(2.0 * math.pi)

# ---------------------------------------------------------------------------
# Small dense linear algebra on the missing block (serial helpers)
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _chol_missing(P, idx, o, Lw, invd):
    """Lower Cholesky factor of ``P[M, M]`` into ``Lw[:m, :m]`` and the
    reciprocals of its diagonal into ``invd[:m]``; returns the sum of the
    logs of its diagonal (``0.5 log det P[M, M]``), taking one log per eight
    diagonal entries."""
    m = P.shape[0] - o
    logdet = 0.0
    prod = 1.0
    for j in range(m):
        aj = idx[o + j]
        s = P[aj, aj]
        for q in range(j):
            s -= Lw[j, q] * Lw[j, q]
        d = math.sqrt(s)
        Lw[j, j] = d
        inv = 1.0 / d
        invd[j] = inv
        for i in range(j + 1, m):
            s = P[idx[o + i], aj]
            for q in range(j):
                s -= Lw[i, q] * Lw[j, q]
            Lw[i, j] = s * inv
        prod *= d
        if j % 8 == 7:
            logdet += math.log(prod)
            prod = 1.0
    return logdet + math.log(prod)


@njit(**SERIAL)
def _chol_solve_rows(Lw, invd, m, B, ncols):
    """``B[:m, :ncols] <- (Lw Lw^T)^{-1} B[:m, :ncols]`` in place; the inner
    loops run along the rows of ``B`` (vectorised over its columns)."""
    for i in range(m):
        Bi = B[i]
        for q in range(i):
            lq = Lw[i, q]
            Bq = B[q]
            for c in range(ncols):
                Bi[c] -= lq * Bq[c]
        s = invd[i]
        for c in range(ncols):
            Bi[c] *= s
    for i in range(m - 1, -1, -1):
        Bi = B[i]
        for q in range(i + 1, m):
            lq = Lw[q, i]
            Bq = B[q]
            for c in range(ncols):
                Bi[c] -= lq * Bq[c]
        s = invd[i]
        for c in range(ncols):
            Bi[c] *= s


@njit(**SERIAL)
def _conditional_gain(P, idx, o, Lw, G, v):
    """``Lw`` the Cholesky factor of ``P_MM``, ``v[:m]`` the reciprocals of
    its diagonal and ``G = P_MM^{-1} P_MO`` (``m x o``).  Returns
    ``0.5 log det P_MM``."""
    m = P.shape[0] - o
    logdet = _chol_missing(P, idx, o, Lw, v)
    for q in range(m):
        Pq = P[idx[o + q]]
        Gq = G[q]
        for i in range(o):
            Gq[i] = Pq[idx[i]]
    _chol_solve_rows(Lw, v, m, G, o)
    return logdet


@njit(**SERIAL)
def _chol_inverse(Lw, invd, m, C):
    """``C[:m, :m] = (Lw Lw^T)^{-1}`` (``invd``: reciprocal diagonal of Lw),
    as ``W^T W`` with ``W = Lw^{-1}`` (lower triangular) written into the
    upper triangle of ``C`` first."""
    # W[i, j] (i >= j) stored at C[j, i].
    for j in range(m):
        C[j, j] = invd[j]
        for i in range(j + 1, m):
            acc = 0.0
            for q in range(j, i):
                acc += Lw[i, q] * C[j, q]
            C[j, i] = -acc * invd[i]
    # C[i, j] (i >= j) = sum_{q >= i} W[q, i] W[q, j]; fill the lower
    # triangle, then mirror it.
    for i in range(m):
        for j in range(i + 1):
            acc = 0.0
            for q in range(i, m):
                acc += C[i, q] * C[j, q]
            C[i, j] = acc
    for i in range(m):
        for j in range(i + 1, m):
            C[i, j] = C[j, i]


@njit(**SERIAL)
def _conditional_factors(P, idx, o, Lw, G, C, v):
    """For precision ``P`` and the pattern ``idx``/``o``: ``Lw`` the Cholesky
    factor of ``P_MM``, ``G = P_MM^{-1} P_MO`` (``m x o``) and
    ``C = P_MM^{-1}`` (``m x m``), the conditional covariance.  Returns
    ``0.5 log det P_MM``."""
    logdet = _conditional_gain(P, idx, o, Lw, G, v)
    _chol_inverse(Lw, v, P.shape[0] - o, C)
    return logdet


# ---------------------------------------------------------------------------
# Tied covariance: per-run factors and per-block log-densities
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _tied_factor_buffers(D, K):
    """Scratch for one pattern's tied factors: ``Lw, G, C, v, A, s, h, lnp``
    (see :func:`_factors_tied`)."""
    return (
        np.empty((D, D)),
        np.empty((D, D)),
        np.empty((D, D)),
        np.empty(D),
        np.empty((D, D)),
        np.empty((K, D)),
        np.empty((K, D)),
        np.empty(K),
    )


@njit(**SERIAL)
def _block_buffers(D, K, block):
    """Per-task block scratch every kernel here uses: ``xt, L, resp, rowmax,
    total``."""
    return (
        aligned_rows(D, block, np.float64),
        aligned_rows(K, block, np.float64),
        aligned_rows(K, block, np.float64),
        aligned_rows(1, block, np.float64)[0],
        aligned_rows(1, block, np.float64)[0],
    )


@njit(**SERIAL)
def _tied_block_buffers(D, K, block):
    """Per-task block scratch of the tied kernels: ``xt, xc, u, e, L, resp,
    rowmax, total``."""
    xt, L, resp, rowmax, total = _block_buffers(D, K, block)
    xc = aligned_rows(D, block, np.float64)
    u = aligned_rows(D, block, np.float64)
    e = aligned_rows(D, block, np.float64)
    return xt, xc, u, e, L, resp, rowmax, total


@njit(**SHARED)
def _factors_tied(prec, prec_chol, means, center, log_norm, idx, o, fac):
    """Shared conditional factors of a tied model for one pattern, written
    into ``fac = (Lw, G, C, v, A, s, h, lnp)``.

    ``A = U_O - G^T U_M`` (``o x D``) gives the observed-block Mahalanobis
    distance as ``||(x_O - mu_O)^T A||^2``; ``s[k] = (mu_kO - c_O)^T A`` and
    ``h[k] = mu_kM - c_M + G (mu_kO - c_O)``, so that the conditional mean is
    ``c_M - G (x_O - c_O) + h[k]``.
    """
    Lw, G, C, v, A, s, h, lnp = fac
    D = prec.shape[0]
    K = means.shape[0]
    m = D - o
    ld = _conditional_factors(prec, idx, o, Lw, G, C, v)
    half = 0.5 * m * _LOG_2PI
    for i in range(o):
        ai = idx[i]
        for j in range(D):
            a = prec_chol[ai, j]
            for q in range(m):
                a -= G[q, i] * prec_chol[idx[o + q], j]
            A[i, j] = a
    for k in range(K):
        lnp[k] = log_norm[k] + half - ld
        for j in range(D):
            acc = 0.0
            for i in range(o):
                ai = idx[i]
                acc += (means[k, ai] - center[ai]) * A[i, j]
            s[k, j] = acc
        for q in range(m):
            aq = idx[o + q]
            acc = means[k, aq] - center[aq]
            for i in range(o):
                ai = idx[i]
                acc += G[q, i] * (means[k, ai] - center[ai])
            h[k, q] = acc


@njit(**SHARED)
def _block_tied(xt, nb, idx, o, center, fac, xc, u, e, L):
    """``xc[i] = x_{O_i} - c``, ``e = -G xc`` and ``L[k, b] = log p(x_O, k)``
    with the pattern's factors ``fac`` (:func:`_factors_tied`)."""
    G, A, s, lnp = fac[1], fac[4], fac[5], fac[7]
    D = xt.shape[0]
    K = s.shape[0]
    m = D - o
    for i in range(o):
        a = idx[i]
        c = center[a]
        for b in range(nb):
            xc[i, b] = xt[a, b] - c
    for j in range(D):
        for b in range(nb):
            u[j, b] = 0.0
        for i in range(o):
            p = A[i, j]
            for b in range(nb):
                u[j, b] += xc[i, b] * p
    for q in range(m):
        for b in range(nb):
            e[q, b] = 0.0
        for i in range(o):
            g = G[q, i]
            for b in range(nb):
                e[q, b] -= g * xc[i, b]
    for k in range(K):
        row = L[k]
        for b in range(nb):
            row[b] = 0.0
        for j in range(D):
            v = s[k, j]
            for b in range(nb):
                t = u[j, b] - v
                row[b] += t * t
        c = lnp[k]
        for b in range(nb):
            row[b] = c - 0.5 * row[b]


# ---------------------------------------------------------------------------
# Shared block helpers
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _first_run(starts, r):
    """Pattern of sorted row ``r``."""
    return np.searchsorted(starts, r, side="right") - 1


# ---------------------------------------------------------------------------
# Fused E-step + sufficient statistics
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _segments(starts, r0, nb, seg_p, seg_lo):
    """Split sorted rows ``r0:r0+nb`` into runs of equal pattern: run ``s``
    has pattern ``seg_p[s]`` and block columns ``seg_lo[s]:seg_lo[s + 1]``.
    Returns the number of runs."""
    ns = 0
    b = 0
    p = _first_run(starts, r0)
    while b < nb:
        seg_p[ns] = p
        seg_lo[ns] = b
        b = min(nb, starts[p + 1] - r0)
        ns += 1
        p += 1
    seg_lo[ns] = nb
    return ns


@njit(**SERIAL)
def _center_block(xt, nb, mu, d):
    """``d[:, :nb] = xt[:, :nb] - mu`` for every feature (missing entries
    give NaN here and are overwritten by :func:`_fill_missing`)."""
    D = xt.shape[0]
    for a in range(D):
        m_a = mu[a]
        for b in range(nb):
            d[a, b] = xt[a, b] - m_a


@njit(**SERIAL)
def _fill_missing(b0, b1, idx, o, G, d):
    """On block columns ``b0:b1`` (rows of one pattern, already centered by
    :func:`_center_block`): ``d_M = -G d_O``, the conditional mean minus
    ``mu``.  Short runs loop over rows outermost (no per-row loop set-up for
    each of the ``m x o`` products); long runs vectorise over the rows."""
    D = d.shape[0]
    m = D - o
    if b1 - b0 < 8:
        for b in range(b0, b1):
            for j in range(m):
                acc = 0.0
                Gj = G[j]
                for i in range(o):
                    acc -= Gj[i] * d[idx[i], b]
                d[idx[o + j], b] = acc
        return
    for j in range(m):
        da = d[idx[o + j]]
        for b in range(b0, b1):
            da[b] = 0.0
        for i in range(o):
            g = G[j, i]
            di = d[idx[i]]
            for b in range(b0, b1):
                da[b] -= g * di[b]


@njit(**SHARED)
def _log_joint_full(
    Xm, r0, nb, starts, index, n_obs, log_norm, means, prec_chol, prec, work
):
    """Load sorted rows ``r0:r0+nb`` and compute ``L[k, b] = log p(x_O, k)``;
    leaves the completed, centered rows ``xhat_k - mu_k`` in ``dk[k]`` and
    the runs of equal pattern in ``seg_p``/``seg_lo``.  Returns the number
    of runs.  ``work`` is the tuple of :func:`_full_buffers`."""
    xt, dk, q, L, seg_p, seg_lo, Lw, G, v, lnpc, cached = work
    D = Xm.shape[1]
    K = means.shape[0]
    no_offset = np.zeros(D)
    load_rows(Xm, r0, nb, xt)
    ns = _segments(starts, r0, nb, seg_p, seg_lo)
    for k in range(K):
        d = dk[k]
        row = L[k]
        _center_block(xt, nb, means[k], d)
        for s in range(ns):
            p = seg_p[s]
            idx = index[p]
            o = n_obs[p]
            if cached[k] != p:
                ld = _conditional_gain(prec[k], idx, o, Lw, G[k], v)
                lnpc[k] = log_norm[k] + 0.5 * (D - o) * _LOG_2PI - ld
                cached[k] = p
            b0 = seg_lo[s]
            b1 = seg_lo[s + 1]
            _fill_missing(b0, b1, idx, o, G[k], d)
            c = lnpc[k]
            for b in range(b0, b1):
                row[b] = c
        for b in range(nb):
            q[b] = 0.0
        upper_tri_sq_norms(d, nb, prec_chol[k], no_offset, q)
        for b in range(nb):
            row[b] -= 0.5 * q[b]
    return ns


@njit(**SERIAL)
def _full_buffers(D, K, block):
    """Per-task scratch of :func:`_log_joint_full`: ``xt, dk, q, L,
    seg_p, seg_lo, Lw, G, v, lnpc, cached`` (a one-pattern factor cache per
    component: ``cached[k]`` is the pattern whose factors ``G[k]`` holds)."""
    return (
        aligned_rows(D, block, np.float64),
        aligned_rows(K * D, block, np.float64).reshape((K, D, block)),
        aligned_rows(1, block, np.float64)[0],
        aligned_rows(K, block, np.float64),
        np.empty(block, dtype=np.int64),
        np.empty(block + 1, dtype=np.int64),
        np.empty((D, D)),
        np.empty((K, D, D)),
        np.empty(D),
        np.empty(K),
        np.full(K, -1, dtype=np.int64),
    )


@njit(**KERNEL)
def estep_missing_full(
    Xm,
    sw,
    starts,
    index,
    n_obs,
    log_norm,
    means,
    prec_chol,
    prec,
    task_rows,
    block,
    nk,
    sx,
    sxx,
    acc,
    queue,
):
    """Full covariances: statistics around the current means.

    ``sx[t, k] += r (xhat_k - mu_k)``, ``sxx[t, k]`` (lower triangle)
    ``+= r [(xhat_k - mu_k)(xhat_k - mu_k)^T + C_k]`` with ``xhat_k`` the row
    completed with its conditional mean and ``C_k`` the conditional
    covariance on the missing block.

    A block holds ``block`` consecutive sorted rows, whatever their
    patterns: only the completion of each row (``-G (x_O - mu_O)``) and the
    constant of its log-density depend on the pattern; the Mahalanobis
    distances, responsibilities and scatter updates run over the whole block,
    so patterns with few rows cost no more than long runs.  The factors of a
    (pattern, component) pair are computed once per task (the rows are
    sorted, so a one-pattern cache per component suffices), and the
    conditional covariances are added once per pattern at the end of the task,
    weighted by the pattern's summed responsibilities.
    """
    n, D = Xm.shape
    K = means.shape[0]
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        r_begin = t * task_rows
        r_end = min(n, r_begin + task_rows)
        p_first = _first_run(starts, r_begin)
        p_last = _first_run(starts, r_end - 1)
        npk = np.zeros((p_last - p_first + 1, K))
        work = _full_buffers(D, K, block)
        _xt, dk, _q, L, seg_p, seg_lo, Lw, _G, v, _lnpc, _cached = work
        wrows = aligned_rows(4, block, np.float64)
        sums = np.empty(D)
        no_shift = np.zeros(D)
        C = np.empty((D, D))
        resp = aligned_rows(K, block, np.float64)
        rowmax = aligned_rows(1, block, np.float64)[0]
        total = aligned_rows(1, block, np.float64)[0]
        for r0 in range(r_begin, r_end, block):
            nb = min(block, r_end - r0)
            ns = _log_joint_full(
                Xm, r0, nb, starts, index, n_obs, log_norm, means, prec_chol, prec, work
            )
            responsibilities(L, nb, sw, r0, rowmax, resp, total, acc[t])
            for k in range(K):
                rk = resp[k]
                tot = 0.0
                for s in range(ns):
                    a0 = 0.0
                    for b in range(seg_lo[s], seg_lo[s + 1]):
                        a0 += rk[b]
                    npk[seg_p[s] - p_first, k] += a0
                    tot += a0
                if tot == 0.0:
                    continue
                nk[t, k] += tot
                # sum_b r_kb d_b d_b^T and sum_b r_kb d_b, d = completed row - mu_k.
                weighted_lower_scatter(
                    dk[k], nb, resp[k], no_shift, wrows, sxx[t, k], sums
                )
                for i in range(D):
                    sx[t, k, i] += sums[i]
        # Conditional covariances, once per (pattern, component).
        for p in range(p_first, p_last + 1):
            idx = index[p]
            o = n_obs[p]
            m = D - o
            for k in range(K):
                w = npk[p - p_first, k]
                if w == 0.0:
                    continue
                _chol_missing(prec[k], idx, o, Lw, v)
                _chol_inverse(Lw, v, m, C)
                S = sxx[t, k]
                for i in range(m):
                    ai = idx[o + i]
                    for j in range(i + 1):
                        S[ai, idx[o + j]] += w * C[i, j]


@njit(**KERNEL)
def estep_missing_tied(
    Xm,
    sw,
    starts,
    index,
    n_obs,
    log_norm,
    means,
    center,
    prec_chol,
    prec,
    task_rows,
    block,
    nk,
    sx,
    sxx,
    acc,
    queue,
):
    """Tied covariance: ``sx[t, k] += r (xhat_k - c)`` and ``sxx[t]`` (lower
    triangle) ``+= sum_k r_k [(xhat_k - c)(xhat_k - c)^T + C]``.

    The total scatter is the responsibility-weighted sum over components of
    ``E[(x - c)(x - c)^T | x_O, k]``; it is accumulated as
    ``w (xbar - c)(xbar - c)^T`` with ``xbar`` the posterior mean of the
    completed row, plus on the missing block the spread of the components'
    conditional means around ``xbar`` and ``w C``.
    """
    n, D = Xm.shape
    K = means.shape[0]
    has_w = sw.shape[0] > 0
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, xc, u, e, L, resp, rowmax, total = _tied_block_buffers(D, K, block)
        fac = _tied_factor_buffers(D, K)
        C, h = fac[2], fac[6]
        hbar = aligned_rows(D, block, np.float64)
        vv = aligned_rows(D, block, np.float64)
        wv = aligned_rows(D, block, np.float64)
        wts = aligned_rows(1, block, np.float64)[0]
        w4 = aligned_rows(4, block, np.float64)
        no_shift = np.zeros(D)
        sums = np.empty(D)
        S = sxx[t]
        r = t * task_rows
        r_end = min(n, r + task_rows)
        p = _first_run(starts, r)
        while r < r_end:
            e_run = min(r_end, starts[p + 1])
            idx = index[p]
            o = n_obs[p]
            m = D - o
            _factors_tied(prec, prec_chol, means, center, log_norm, idx, o, fac)
            wrun = 0.0
            for r0 in range(r, e_run, block):
                nb = min(block, e_run - r0)
                load_rows(Xm, r0, nb, xt)
                _block_tied(xt, nb, idx, o, center, fac, xc, u, e, L)
                responsibilities(L, nb, sw, r0, rowmax, resp, total, acc[t])
                if has_w:
                    wts[:nb] = sw[r0 : r0 + nb]
                else:
                    wts[:nb] = 1.0
                for b in range(nb):
                    wrun += wts[b]
                for k in range(K):
                    s = 0.0
                    for b in range(nb):
                        s += resp[k, b]
                    if s == 0.0:
                        continue
                    nk[t, k] += s
                    for i in range(o):
                        a1 = 0.0
                        for b in range(nb):
                            a1 += resp[k, b] * xc[i, b]
                        sx[t, k, idx[i]] += a1
                    for q in range(m):
                        a1 = 0.0
                        for b in range(nb):
                            a1 += resp[k, b] * e[q, b]
                        sx[t, k, idx[o + q]] += a1 + s * h[k, q]
                # Posterior mean of the completed row, minus c.
                for q in range(m):
                    for b in range(nb):
                        hbar[q, b] = 0.0
                    for k in range(K):
                        hk = h[k, q]
                        for b in range(nb):
                            hbar[q, b] += resp[k, b] * hk
                    for b in range(nb):
                        if wts[b] != 0.0:
                            hbar[q, b] /= wts[b]
                for i in range(o):
                    a = idx[i]
                    for b in range(nb):
                        vv[a, b] = xc[i, b]
                for q in range(m):
                    a = idx[o + q]
                    for b in range(nb):
                        z = e[q, b] + hbar[q, b]
                        vv[a, b] = z
                weighted_lower_scatter(vv, nb, wts, no_shift, w4, S, sums)
                # Spread of the conditional means around their posterior mean.
                for k in range(K):
                    for q in range(m):
                        hk = h[k, q]
                        for b in range(nb):
                            wd_ = hk - hbar[q, b]
                            vv[q, b] = wd_
                            wv[q, b] = resp[k, b] * wd_
                    for i in range(m):
                        ai = idx[o + i]
                        for j in range(i + 1):
                            a2 = 0.0
                            for b in range(nb):
                                a2 += wv[i, b] * vv[j, b]
                            S[ai, idx[o + j]] += a2
            for i in range(m):
                ai = idx[o + i]
                for j in range(i + 1):
                    S[ai, idx[o + j]] += wrun * C[i, j]
            r = e_run
            p += 1


@njit(**SERIAL)
def _diag_terms(prec_chol):
    """``(miss_c, var)``: ``miss_c[k, d] = 0.5 log 2 pi - log prec_chol[k, d]``
    is what a missing feature ``d`` takes out of ``log p(x, k)``;
    ``var[k, d] = 1 / prec_chol[k, d]^2`` its conditional variance."""
    K, D = prec_chol.shape
    miss_c = np.empty((K, D))
    var = np.empty((K, D))
    for k in range(K):
        for a in range(D):
            pc = prec_chol[k, a]
            miss_c[k, a] = 0.5 * _LOG_2PI - math.log(pc)
            var[k, a] = 1.0 / (pc * pc)
    return miss_c, var


@njit(**SERIAL)
def _diag_buffers(D, K, block):
    """Per-task scratch of the diagonal kernels: ``xt, om`` (rows and their
    observed mask), ``L, resp, rowmax, total``."""
    xt, L, resp, rowmax, total = _block_buffers(D, K, block)
    return xt, aligned_rows(D, block, np.float64), L, resp, rowmax, total


@njit(**SHARED)
def _log_joint_diag(Xm, r0, nb, log_norm, means, prec_chol, miss_c, xt, om, L):
    """Load rows ``r0:r0+nb`` into ``xt`` with their observed mask ``om``
    (1 observed, 0 missing; missing entries are 0 in ``xt``) and compute
    ``L[k, b] = log p(x_O, k)``: a missing feature drops out of the
    diagonal Gaussian's log-density."""
    D = Xm.shape[1]
    K = means.shape[0]
    for b in range(nb):
        for a in range(D):
            x = Xm[r0 + b, a]
            if x != x:
                xt[a, b] = 0.0
                om[a, b] = 0.0
            else:
                xt[a, b] = x
                om[a, b] = 1.0
    for k in range(K):
        row = L[k]
        c0 = log_norm[k]
        for b in range(nb):
            row[b] = c0
        for a in range(D):
            mu = means[k, a]
            pc = prec_chol[k, a]
            cm = miss_c[k, a]
            for b in range(nb):
                z = (xt[a, b] - mu) * pc
                w = om[a, b]
                row[b] += w * (-0.5 * z * z) + (1.0 - w) * cm


@njit(**KERNEL)
def estep_missing_diag(
    Xm,
    sw,
    starts,
    index,
    n_obs,
    log_norm,
    means,
    prec_chol,
    task_rows,
    block,
    nk,
    sx,
    sxx,
    acc,
    queue,
):
    """Diagonal (and spherical, with ``prec_chol`` broadcast to ``(K, D)``)
    covariances: features are independent within a component, so a missing
    feature simply drops out of the log-density, its conditional mean is
    ``mu_kd`` (nothing added to ``sx``) and its conditional variance
    ``1 / prec_chol[k, d]^2`` is added to ``sxx``.  No pattern structure is
    needed: a 0/1 mask of the block does it (``starts``, ``index`` and
    ``n_obs`` are unused; the signature matches the other kernels)."""
    n, D = Xm.shape
    K = means.shape[0]
    miss_c, var = _diag_terms(prec_chol)
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, om, L, resp, rowmax, total = _diag_buffers(D, K, block)
        r_begin = t * task_rows
        r_end = min(n, r_begin + task_rows)
        for r0 in range(r_begin, r_end, block):
            nb = min(block, r_end - r0)
            _log_joint_diag(Xm, r0, nb, log_norm, means, prec_chol, miss_c, xt, om, L)
            responsibilities(L, nb, sw, r0, rowmax, resp, total, acc[t])
            for k in range(K):
                rk = resp[k]
                s = 0.0
                for b in range(nb):
                    s += rk[b]
                if s == 0.0:
                    continue
                nk[t, k] += s
                for a in range(D):
                    mu = means[k, a]
                    va = var[k, a]
                    s1 = 0.0
                    s2 = 0.0
                    for b in range(nb):
                        w = om[a, b]
                        z = (xt[a, b] - mu) * w
                        rz = rk[b] * z
                        s1 += rz
                        s2 += rz * z + rk[b] * (1.0 - w) * va
                    sx[t, k, a] += s1
                    sxx[t, k, a] += s2


# ---------------------------------------------------------------------------
# Per-row outputs: log p(x_O), posteriors, labels, conditional-mean
# imputation and posterior draws of the missing values
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _emit_block(r0, nb, L, resp, rowmax, total, out_lse, out_resp, out_label):
    """``log p(x_O)``, posteriors and labels of block rows ``r0:r0+nb`` into
    whichever outputs have rows (unit weights: ``resp`` holds the posteriors
    and ``total[b] = 1 / sum_k exp(L[k, b] - rowmax[b])``)."""
    K = L.shape[0]
    if out_lse.shape[0] > 0:
        lse = out_lse[r0 : r0 + nb]
        for b in range(nb):
            lse[b] = rowmax[b] - log_simd(total[b])
    if out_resp.shape[0] > 0:
        post = out_resp[r0 : r0 + nb]
        for b in range(nb):
            for k in range(K):
                post[b, k] = resp[k, b]
    if out_label.shape[0] > 0:
        argmax_rows(L, nb, r0, out_label)


@njit(**SERIAL)
def _emit_completion(
    cov_code,
    row,
    b,
    idx,
    o,
    xt,
    resp,
    cm,
    prec,
    pc_diag,
    Lw,
    v,
    completion,
):
    """Imputation and draws of sorted row ``row`` (block column ``b``), with
    ``cm[k, q]`` the conditional mean of missing feature ``idx[o + q]`` under
    component ``k``; ``completion = (out_fill, u, z, out_draws)``.

    ``out_fill[row]``: the row with each missing value replaced by
    ``sum_k p(k | x_O) cm[k, q]``.  ``out_draws[s, row]``: component ``kk`` is
    the first whose cumulative posterior exceeds ``u[s, row]``, and the
    missing values are ``cm[kk] + R z[s, row, M]`` with ``R R^T`` the
    conditional covariance: ``Lw^{-T}`` with ``Lw`` the Cholesky factor of
    ``Lambda_MM`` (``cov_code`` 0: computed here from ``prec[kk]``; 1: ``Lw``
    as given, shared by the components), or ``1 / pc_diag[kk]``
    (``cov_code`` 2).
    """
    out_fill, u, z, out_draws = completion
    D = xt.shape[0]
    K = resp.shape[0]
    m = D - o
    if out_fill.shape[0] > 0:
        for i in range(o):
            a = idx[i]
            out_fill[row, a] = xt[a, b]
        for q in range(m):
            acc_q = 0.0
            for k in range(K):
                acc_q += resp[k, b] * cm[k, q]
            out_fill[row, idx[o + q]] = acc_q
    n_draws = out_draws.shape[0]
    if n_draws == 0 or out_draws.shape[1] == 0:
        return
    for sd in range(n_draws):
        target = u[sd, row]
        kk = -1
        cum = 0.0
        for k in range(K):
            if resp[k, b] > 0.0:
                kk = k
                cum += resp[k, b]
                if cum > target:
                    break
        for i in range(o):
            a = idx[i]
            out_draws[sd, row, a] = xt[a, b]
        if cov_code == 2:
            for q in range(m):
                a = idx[o + q]
                out_draws[sd, row, a] = cm[kk, q] + z[sd, row, a] / pc_diag[kk, a]
            continue
        if cov_code == 0:
            _chol_missing(prec[kk], idx, o, Lw, v)
        # v = Lw^{-T} z_M has covariance (Lw Lw^T)^{-1} = Lambda_MM^{-1}.
        for q in range(m - 1, -1, -1):
            sq = z[sd, row, idx[o + q]]
            for j in range(q + 1, m):
                sq -= Lw[j, q] * v[j]
            v[q] = sq / Lw[q, q]
        for q in range(m):
            out_draws[sd, row, idx[o + q]] = cm[kk, q] + v[q]


@njit(**KERNEL)
def rows_missing_full(
    Xm,
    starts,
    index,
    n_obs,
    log_norm,
    means,
    prec_chol,
    prec,
    task_rows,
    block,
    out_lse,
    out_resp,
    out_label,
    out_fill,
    u,
    z,
    out_draws,
    queue,
):
    """Per-row outputs for full covariances; rows in ``Xm`` order.

    Fills whichever of ``out_lse`` (``log p(x_O)``), ``out_resp``
    (``p(k | x_O)``), ``out_label`` (``argmax_k p(x_O, k)``), ``out_fill``
    (the row with each missing value replaced by
    ``sum_k p(k | x_O) E[x_M | x_O, k]``) and ``out_draws`` (``(n_draws, n,
    D)``: missing values drawn from ``p(x_M | x_O)`` with the uniforms ``u``
    and standard normals ``z``, see :func:`_emit_completion`) have rows; pass
    length-0 arrays for the others.  Blocks span patterns as in
    :func:`estep_missing_full`.
    """
    n, D = Xm.shape
    K = means.shape[0]
    no_w = np.empty(0)
    pc_diag = np.empty((0, 0))
    completion = (out_fill, u, z, out_draws)
    want_cm = out_fill.shape[0] > 0 or (
        out_draws.shape[0] > 0 and out_draws.shape[1] > 0
    )
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        work = _full_buffers(D, K, block)
        xt, dk, _q, L, seg_p, seg_lo, Lw, _G, v, _lnpc, _cached = work
        resp = aligned_rows(K, block, np.float64)
        rowmax = aligned_rows(1, block, np.float64)[0]
        total = aligned_rows(1, block, np.float64)[0]
        cm = np.empty((K, D))
        acc = np.zeros(3)
        r_begin = t * task_rows
        r_end = min(n, r_begin + task_rows)
        for r0 in range(r_begin, r_end, block):
            nb = min(block, r_end - r0)
            ns = _log_joint_full(
                Xm, r0, nb, starts, index, n_obs, log_norm, means, prec_chol, prec, work
            )
            responsibilities(L, nb, no_w, r0, rowmax, resp, total, acc)
            _emit_block(r0, nb, L, resp, rowmax, total, out_lse, out_resp, out_label)
            if not want_cm:
                continue
            for s in range(ns):
                p = seg_p[s]
                idx = index[p]
                o = n_obs[p]
                for b in range(seg_lo[s], seg_lo[s + 1]):
                    for k in range(K):
                        for qq in range(D - o):
                            a = idx[o + qq]
                            cm[k, qq] = means[k, a] + dk[k, a, b]
                    _emit_completion(
                        0,
                        r0 + b,
                        b,
                        idx,
                        o,
                        xt,
                        resp,
                        cm,
                        prec,
                        pc_diag,
                        Lw,
                        v,
                        completion,
                    )


@njit(**KERNEL)
def rows_missing_tied(
    Xm,
    starts,
    index,
    n_obs,
    log_norm,
    means,
    center,
    prec_chol,
    prec,
    task_rows,
    block,
    out_lse,
    out_resp,
    out_label,
    out_fill,
    u,
    z,
    out_draws,
    queue,
):
    """Per-row outputs for a tied covariance (see :func:`rows_missing_full`);
    the factors are shared by the components and computed once per run of
    equal pattern."""
    n, D = Xm.shape
    K = means.shape[0]
    no_w = np.empty(0)
    no_prec = np.empty((0, 0, 0))
    pc_diag = np.empty((0, 0))
    completion = (out_fill, u, z, out_draws)
    want_cm = out_fill.shape[0] > 0 or (
        out_draws.shape[0] > 0 and out_draws.shape[1] > 0
    )
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, xc, uu, e, L, resp, rowmax, total = _tied_block_buffers(D, K, block)
        fac = _tied_factor_buffers(D, K)
        Lw, v, h = fac[0], fac[3], fac[6]
        cm = np.empty((K, D))
        acc = np.zeros(3)
        r = t * task_rows
        r_end = min(n, r + task_rows)
        p = _first_run(starts, r)
        while r < r_end:
            e_run = min(r_end, starts[p + 1])
            idx = index[p]
            o = n_obs[p]
            m = D - o
            _factors_tied(prec, prec_chol, means, center, log_norm, idx, o, fac)
            for r0 in range(r, e_run, block):
                nb = min(block, e_run - r0)
                load_rows(Xm, r0, nb, xt)
                _block_tied(xt, nb, idx, o, center, fac, xc, uu, e, L)
                responsibilities(L, nb, no_w, r0, rowmax, resp, total, acc)
                _emit_block(
                    r0, nb, L, resp, rowmax, total, out_lse, out_resp, out_label
                )
                if not want_cm:
                    continue
                for b in range(nb):
                    for k in range(K):
                        for qq in range(m):
                            cm[k, qq] = center[idx[o + qq]] + e[qq, b] + h[k, qq]
                    _emit_completion(
                        1,
                        r0 + b,
                        b,
                        idx,
                        o,
                        xt,
                        resp,
                        cm,
                        no_prec,
                        pc_diag,
                        Lw,
                        v,
                        completion,
                    )
            r = e_run
            p += 1


@njit(**KERNEL)
def rows_missing_diag(
    Xm,
    log_norm,
    means,
    prec_chol,
    task_rows,
    block,
    out_lse,
    out_resp,
    out_label,
    out_fill,
    u,
    z,
    out_draws,
    queue,
):
    """Per-row outputs for diagonal (and spherical, ``prec_chol`` broadcast
    to ``(K, D)``) covariances (see :func:`rows_missing_full`).  Needs no
    grouping by pattern: the rows of ``Xm`` may come in any order."""
    n, D = Xm.shape
    K = means.shape[0]
    no_w = np.empty(0)
    no_prec = np.empty((0, 0, 0))
    miss_c = _diag_terms(prec_chol)[0]
    completion = (out_fill, u, z, out_draws)
    want_cm = out_fill.shape[0] > 0 or (
        out_draws.shape[0] > 0 and out_draws.shape[1] > 0
    )
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, om, L, resp, rowmax, total = _diag_buffers(D, K, block)
        idx = np.empty(D, dtype=np.int64)
        Lw = np.empty((0, 0))
        v = np.empty(0)
        cm = np.empty((K, D))
        acc = np.zeros(3)
        r_begin = t * task_rows
        r_end = min(n, r_begin + task_rows)
        for r0 in range(r_begin, r_end, block):
            nb = min(block, r_end - r0)
            _log_joint_diag(Xm, r0, nb, log_norm, means, prec_chol, miss_c, xt, om, L)
            responsibilities(L, nb, no_w, r0, rowmax, resp, total, acc)
            _emit_block(r0, nb, L, resp, rowmax, total, out_lse, out_resp, out_label)
            if not want_cm:
                continue
            for b in range(nb):
                o = 0
                for a in range(D):
                    if om[a, b] != 0.0:
                        idx[o] = a
                        o += 1
                j = o
                for a in range(D):
                    if om[a, b] == 0.0:
                        idx[j] = a
                        j += 1
                for k in range(K):
                    for qq in range(D - o):
                        cm[k, qq] = means[k, idx[o + qq]]
                _emit_completion(
                    2,
                    r0 + b,
                    b,
                    idx,
                    o,
                    xt,
                    resp,
                    cm,
                    no_prec,
                    prec_chol,
                    Lw,
                    v,
                    completion,
                )
