"""Fused Gaussian-mixture kernels.

One call of an ``estep_*`` kernel makes a single pass over the rows of ``X``
and, block by block, computes the weighted log-densities, their log-sum-exp,
the responsibilities and the weighted sufficient statistics.  No
``(n_samples, n_components)`` array is ever allocated: a block of at most 256
rows lives in small per-task buffers.

Conventions shared by every kernel
----------------------------------
* ``X`` is C-contiguous float32 or float64, shape ``(N, D)``.  The parameter
  arrays (``log_norm``, ``means``, ``prec``, ...) have the dtype of ``X``:
  a block is computed in that precision (16 float32 or 8 float64 SIMD
  lanes), and its partial sums are added to float64 accumulators.  Scalars
  are widened with ``np.float64(x)``: numba's ``float(x)`` keeps a float32 a
  float32, so ``float(n) * float(m)`` rounds the product to float32.
* ``sw`` holds float64 per-row weights, or has length 0 for unit weights.
* ``prec`` is the precision Cholesky factor ``U_k`` (upper triangular, as
  scikit-learn's ``precisions_cholesky_``) scaled by ``sqrt(1/2)``, and
  ``log_norm[k] = log(weight_k) + log det(U_k) - D/2 log(2 pi)``, so that
  ``log p(x, k) = log_norm[k] - ||(x - mu_k) prec_k||^2``.
* Outputs have a leading task axis; task ``t`` covers rows
  ``[t * task_rows, (t + 1) * task_rows)`` and writes only its own slice.  The
  caller adds the slices in task order (deterministic for any thread count).
* Rows are centered on ``center`` (the mixture mean, in the dtype of ``X``)
  as they are loaded, and ``means``/``shifted_means`` are given relative to
  it.  Second moments are accumulated around the (centered) current means, or
  around ``center`` itself for ``tied`` (and for ``diag`` components within a
  few standard deviations of it, shifted to their means per block), so data
  far from the origin neither cancel catastrophically in the M-step nor lose
  float32 accuracy.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._config import KERNEL, SERIAL, SHARED
from .._layout import EXPANDED_DISTANCES, PER_ROW_TASK_BLOCKS
from ._blocks import (
    FEW_FEATURES,
    NEXT_BLOCK_MIN_FEATURES,
    accumulate_first_moments,
    accumulate_first_moments_few_features,
    add_component_moments,
    aligned_rows,
    block_weights,
    emit_rows,
    load_rows_centered,
    load_rows_centered_float64,
    prefetch_next_block,
    row_log_sum_exp,
)
from ._claim import claim_task
from ._math import (
    above_weight_floor,
    holds_float64,
    zero_of,
)
from ._simd import (
    affine_sq_distances,
    upper_tri_product,
    upper_tri_sq_norms,
    weighted_lower_scatter,
    weighted_row_moments,
)

# ---------------------------------------------------------------------------
# Block helpers (serial; SHARED ones are linked into the kernels, SERIAL ones
# inlined by numba: see fastem/_config.py)
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _project_means(means, prec):
    """``out[k] = mu_k^T U_k`` for upper-triangular ``U_k = prec[k]``, in the
    dtype of ``means``."""
    K, D = means.shape
    out = np.empty((K, D), means.dtype)
    for k in range(K):
        for j in range(D):
            acc = 0.0
            for i in range(j + 1):
                acc += means[k, i] * prec[k, i, j]
            out[k, j] = acc
    return out


#: Up to this many features, full covariances have kernels of their own
#: (``estep_full_small``, ``per_row_full_small``) that keep a row's whole
#: triangular product and a component's whole scatter in registers: one pass
#: over the block per component, where the general sweeps make three to
#: five, which at D = 2 or 3 (points in the plane, pixel colours) cost more
#: than the arithmetic.  E-step per 500,000 rows on one thread: 2x8 8.1 ->
#: 5.8 ms, 3x8 10.5 -> 7.2 ms.  Separate kernels, so that neither kind of
#: data compiles the other's code.
SMALL_FULL_D = 3


@njit(**SHARED)
def _log_prob_full(xt, nb, prec, projected, log_norm, L):
    """``L[k, b] = log p(x_b, k)`` for full covariances (scikit-learn's
    ``_estimate_log_gaussian_prob``: Mahalanobis distance via the precision
    Cholesky factor), as ``||x^T U_k - mu_k^T U_k||^2`` with
    ``projected[k] = mu_k^T U_k`` (:func:`_project_means`): the block is
    multiplied as loaded, no ``x - mu_k`` copy per component."""
    K = prec.shape[0]
    for k in range(K):
        row = L[k]
        for b in range(nb):
            row[b] = 0.0
        upper_tri_sq_norms(xt, nb, prec[k], projected[k], row)
        c = log_norm[k]
        for b in range(nb):
            row[b] = c - row[b]


@njit(**SHARED)
def _log_prob_full_small(xt, nb, prec, projected, log_norm, L):
    """:func:`_log_prob_full` for ``D <= 3``, written out: column ``j`` of
    ``x^T U`` is ``sum_{i <= j} x_i U[i, j]``."""
    D = xt.shape[0]
    K = prec.shape[0]
    x0 = xt[0]
    x1 = xt[min(1, D - 1)]
    x2 = xt[min(2, D - 1)]
    for k in range(K):
        row = L[k]
        U = prec[k]
        o = projected[k]
        c = log_norm[k]
        u00 = U[0, 0]
        o0 = o[0]
        if D == 1:
            for b in range(nb):
                t0 = x0[b] * u00 - o0
                row[b] = c - t0 * t0
        elif D == 2:
            u01 = U[0, 1]
            u11 = U[1, 1]
            o1 = o[1]
            for b in range(nb):
                e0 = x0[b]
                t0 = e0 * u00 - o0
                t1 = (e0 * u01 + x1[b] * u11) - o1
                row[b] = c - (t0 * t0 + t1 * t1)
        else:
            u01 = U[0, 1]
            u11 = U[1, 1]
            o1 = o[1]
            u02 = U[0, 2]
            u12 = U[1, 2]
            u22 = U[2, 2]
            o2 = o[2]
            for b in range(nb):
                e0 = x0[b]
                e1 = x1[b]
                t0 = e0 * u00 - o0
                t1 = (e0 * u01 + e1 * u11) - o1
                t2 = (e0 * u02 + e1 * u12 + x2[b] * u22) - o2
                row[b] = c - ((t0 * t0 + t1 * t1) + t2 * t2)


@njit(**SERIAL)
def _near_origin(mean, inverse_variance):
    """``||mean||^2 / sigma^2 <= 2^10 D``: the mean lies within ``32
    sqrt(D)`` spreads of the origin (the mixture's mean location), so that
    the expanded squared distances of
    :func:`~fastem._kernels._simd.affine_sq_distances` lose at most about 11
    bits (a relative 5e-13 in float64) of a row's distance to its own
    component."""
    norm = 0.0
    for d in range(mean.shape[0]):
        m = np.float64(mean[d])
        norm += m * m
    return norm * inverse_variance <= 1024.0 * mean.shape[0]


@njit(**SHARED)
def _log_prob_tied(xt, nb, prec, shifted_means, log_norm, unit, u, L):
    """Tied covariance on centered rows: ``y_k = (x - c) U - (mu_k - c) U``;
    one triangular product per row (into ``u``, ``(D, B)``) instead of one
    per row and component, then ``log_norm[k]`` less the squared distances
    of the projected rows to the projected means, as for spherical
    covariances (``unit`` is ``(K,)`` of ones)."""
    K = shifted_means.shape[0]
    upper_tri_product(xt, nb, prec, u)
    # The projected rows (U scaled by sqrt(1/2)) have variance 1/2 around
    # their component.
    expand = EXPANDED_DISTANCES and holds_float64(xt)
    for k in range(K):
        expand = expand and _near_origin(shifted_means[k], 2.0)
    affine_sq_distances(u, nb, shifted_means, log_norm, unit, L, expand)


@njit(**SHARED)
def _log_prob_diag(xt, nb, scaled, prec, log_norm, L):
    """Diagonal covariances; ``prec`` is ``(K, D)`` of ``sqrt(1/2) / sigma``
    and ``scaled = (mu - c) prec`` (the centered means in units of the
    covariance, computed in float64 by the caller).

    ``t = x prec - scaled`` is one FMA per feature, where ``(x - mu) prec``
    took a subtraction and a multiplication: two floating-point operations
    per feature and component instead of three, which set the pace of this
    loop (16x16, one thread: 17 -> 13-14 ms per 10^6 rows).  With the product
    ``mu prec`` formed inside the kernel, LLVM's fast-math reassociation
    factored the expression back into ``(x - mu) prec``; an argument it
    cannot see through keeps the FMA.  The error of ``t`` is that of
    rounding ``scaled``, ``eps |mu - c| / sigma``: the order of the error
    that centering ``x`` on ``c`` in the data's dtype already leaves.

    Eight (float64) or four (float32) features are added per sweep over the
    block, so each load and store of ``L[k]`` carries several squared terms.
    With eight float32 features, LLVM kept only half of the sixteen
    per-feature constants in registers and reloaded the rest from the stack
    on every iteration: four per sweep ran the float32 log-density 1.6x
    faster (16x16, one thread), while float64 keeps them all in registers."""
    D = xt.shape[0]
    K = scaled.shape[0]
    by_eight = D - D % 8 if holds_float64(xt) else 0
    by_four = D - (D - by_eight) % 4
    last = D - 1
    zero = zero_of(xt)
    for k in range(K):
        row = L[k]
        m = scaled[k]
        p = prec[k]
        # The one to three features after the sweeps of four or eight go
        # first, in one sweep that writes ``log_norm[k] - sum t^2`` (or just
        # ``log_norm[k]`` when there are none); the sweeps subtract.  Features
        # past the end repeat the last one with zero coefficients (their
        # ``t`` is 0).  One feature per sweep, with a sweep to clear the row
        # and one to subtract it from ``log_norm``, stored the row four times
        # at D = 2: 2x8 diag fits 3-5 % faster (one thread).
        c = log_norm[k]
        i0 = min(by_four, last)
        i1 = min(by_four + 1, last)
        i2 = min(by_four + 2, last)
        y0 = xt[i0]
        y1 = xt[i1]
        y2 = xt[i2]
        a0 = p[i0] if by_four < D else zero
        a1 = p[i1] if by_four + 1 < D else zero
        a2 = p[i2] if by_four + 2 < D else zero
        s0 = m[i0] if by_four < D else zero
        s1 = m[i1] if by_four + 1 < D else zero
        s2 = m[i2] if by_four + 2 < D else zero
        # Loop bounds rather than an if/else: with the branch, LLVM left
        # this loop scalar.
        n_rest = nb if by_four < D else 0
        for b in range(n_rest):
            u0 = y0[b] * a0 - s0
            u1 = y1[b] * a1 - s1
            u2 = y2[b] * a2 - s2
            row[b] = c - ((u0 * u0 + u1 * u1) + u2 * u2)
        for b in range(nb - n_rest):
            row[b] = c
        for d in range(0, by_eight, 8):
            m0 = m[d]
            m1 = m[d + 1]
            m2 = m[d + 2]
            m3 = m[d + 3]
            m4 = m[d + 4]
            m5 = m[d + 5]
            m6 = m[d + 6]
            m7 = m[d + 7]
            p0 = p[d]
            p1 = p[d + 1]
            p2 = p[d + 2]
            p3 = p[d + 3]
            p4 = p[d + 4]
            p5 = p[d + 5]
            p6 = p[d + 6]
            p7 = p[d + 7]
            x0 = xt[d]
            x1 = xt[d + 1]
            x2 = xt[d + 2]
            x3 = xt[d + 3]
            x4 = xt[d + 4]
            x5 = xt[d + 5]
            x6 = xt[d + 6]
            x7 = xt[d + 7]
            for b in range(nb):
                t0 = x0[b] * p0 - m0
                t1 = x1[b] * p1 - m1
                t2 = x2[b] * p2 - m2
                t3 = x3[b] * p3 - m3
                t4 = x4[b] * p4 - m4
                t5 = x5[b] * p5 - m5
                t6 = x6[b] * p6 - m6
                t7 = x7[b] * p7 - m7
                row[b] -= ((t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)) + (
                    (t4 * t4 + t5 * t5) + (t6 * t6 + t7 * t7)
                )
        for d in range(by_eight, by_four, 4):
            m0 = m[d]
            m1 = m[d + 1]
            m2 = m[d + 2]
            m3 = m[d + 3]
            p0 = p[d]
            p1 = p[d + 1]
            p2 = p[d + 2]
            p3 = p[d + 3]
            x0 = xt[d]
            x1 = xt[d + 1]
            x2 = xt[d + 2]
            x3 = xt[d + 3]
            for b in range(nb):
                t0 = x0[b] * p0 - m0
                t1 = x1[b] * p1 - m1
                t2 = x2[b] * p2 - m2
                t3 = x3[b] * p3 - m3
                row[b] -= (t0 * t0 + t1 * t1) + (t2 * t2 + t3 * t3)


@njit(**SHARED)
def _log_prob_spherical(xt, nb, means, prec2, log_norm, L):
    """Spherical covariances; ``prec2`` is ``(K,)`` of ``1 / (2 sigma^2)``
    and ``L[k, b] = log_norm[k] - prec2[k] ||x_b - mu_k||^2``."""
    K = means.shape[0]
    expand = EXPANDED_DISTANCES and holds_float64(xt)
    for k in range(K):
        expand = expand and _near_origin(means[k], 2.0 * np.float64(prec2[k]))
    affine_sq_distances(xt, nb, means, log_norm, prec2, L, expand)


@njit(**SERIAL)
def _ones(n, dtype):
    """``n`` ones of ``dtype`` (``np.ones`` cost the first tied fit 0.2 s of
    compilation)."""
    out = np.empty(n, dtype)
    for i in range(n):
        out[i] = 1.0
    return out


@njit(**SERIAL)
def _squares(values):
    """``values ** 2`` (a new array of their dtype)."""
    out = np.empty_like(values)
    for i in range(values.shape[0]):
        out[i] = values[i] * values[i]
    return out


@njit(**SERIAL)
def _full_moments_small(xt, nb, E, scale, means, nk, sx, sxx):
    """For ``D <= 3``: ``nk[k] += sum_b r_kb``, ``sx[k] += sum_b r_kb (x_b -
    mu_k)`` and the lower triangle of ``sxx[k] += sum_b r_kb (x_b - mu_k)(x_b
    - mu_k)^T``, one pass over the block per component with every sum in a
    register (partial sums in the dtype of the block).

    The responsibilities ``r_kb = E[k, b] scale[b]`` are formed here from
    :func:`~fastem._kernels._blocks.row_log_sum_exp`'s output, as
    :func:`~fastem._kernels._blocks.responsibilities` forms them, instead
    of in a pass that stores them: one multiplication per row and component
    against a load, a multiplication and a store (2x8 E-step, one thread:
    7.49 -> 7.06 ms per 10^6 rows)."""
    D = xt.shape[0]
    K = E.shape[0]
    zero = zero_of(xt)
    x0 = xt[0]
    x1 = xt[min(1, D - 1)]
    x2 = xt[min(2, D - 1)]
    for k in range(K):
        e = E[k]
        m0 = means[k, 0]
        m1 = means[k, min(1, D - 1)]
        m2 = means[k, min(2, D - 1)]
        n = s0 = s1 = s2 = zero
        q00 = q10 = q11 = q20 = q21 = q22 = zero
        if D == 1:
            for b in range(nb):
                w = above_weight_floor(e[b]) * scale[b]
                z0 = x0[b] - m0
                w0 = w * z0
                n += w
                s0 += w0
                q00 += w0 * z0
        elif D == 2:
            for b in range(nb):
                w = above_weight_floor(e[b]) * scale[b]
                z0 = x0[b] - m0
                z1 = x1[b] - m1
                w0 = w * z0
                w1 = w * z1
                n += w
                s0 += w0
                s1 += w1
                q00 += w0 * z0
                q10 += w1 * z0
                q11 += w1 * z1
        else:
            for b in range(nb):
                w = above_weight_floor(e[b]) * scale[b]
                z0 = x0[b] - m0
                z1 = x1[b] - m1
                z2 = x2[b] - m2
                w0 = w * z0
                w1 = w * z1
                w2 = w * z2
                n += w
                s0 += w0
                s1 += w1
                s2 += w2
                q00 += w0 * z0
                q10 += w1 * z0
                q11 += w1 * z1
                q20 += w2 * z0
                q21 += w2 * z1
                q22 += w2 * z2
        if n == 0.0:
            continue
        nk[k] += n
        S = sxx[k]
        sx[k, 0] += s0
        S[0, 0] += q00
        if D >= 2:
            sx[k, 1] += s1
            S[1, 0] += q10
            S[1, 1] += q11
        if D >= 3:
            sx[k, 2] += s2
            S[2, 0] += q20
            S[2, 1] += q21
            S[2, 2] += q22


@njit(**SHARED)
def _moments_around_center(
    xt, nb, resp, nblk, means, far, grouped, order, first, second, nk, sx, sxx
):
    """Per-feature first and second moments of the components with
    ``grouped[k]``, around the current means.

    ``sx[k, d] += sum_b r_kb (x_db - m_kd)`` and ``sxx[k, d] += sum_b r_kb
    (x_db - m_kd)^2`` with ``m = means`` (rows of the block in the columns
    of ``xt``, centered on the mixture mean ``c``), and ``nk[k] +=
    nblk[k]``, the block's weights
    (:func:`~fastem._kernels._blocks.block_weights`).  Raw moments around
    the center (:func:`~fastem._kernels._simd.weighted_row_moments`, into
    the ``(K, D)`` float64 scratch ``first`` and ``second``; ``order`` is
    ``K`` integers of work space) are shifted to the means per block in
    float64::

        sum r (x - m)   = A - m n,            A = sum r x
        sum r (x - m)^2 = Q - 2 m A + m^2 n,  Q = sum r x^2,  n = sum r

    That is two FMAs per feature and component (``x^2`` is shared by four
    components), where sums around the mean cost four (a subtraction, a
    product, a sum and an FMA): float64 moments at 16x16, 26 -> 19-20 ms per
    10^6 rows with the block in cache, one thread; whole fits 4-6 % (16x16)
    and 11 % (64x16) faster.  The features with ``far[k, d]``
    (:func:`_far_from_center`), where the shift would cancel too many bits,
    are summed again around the mean.

    This function and :func:`_moments_around_means` index their arrays in
    place: with a view of ``resp[k]`` per component, numba kept the
    reference counts of all the arguments (an atomic update per array and
    call) and the 2x8 E-step ran 6-8 % slower."""
    D = xt.shape[0]
    K = means.shape[0]
    zero = zero_of(xt)
    # ``K - K``, not 0: an integer literal takes numba's type inference a
    # third round (a ``range`` loop ran 2-4 % slower in float32).
    count = K - K
    for k in range(K):
        if grouped[k] and nblk[k] != 0.0:
            nk[k] += nblk[k]
            order[count] = k
            count += 1
    weighted_row_moments(xt, nb, resp, order, count, first, second)
    for i in range(count):
        k = order[i]
        n = np.float64(nblk[k])
        for f in range(D):
            if not far[k, f]:
                _add_shifted_moments(k, f, first[k, f], second[k, f], n, means, sx, sxx)
                continue
            mean = means[k, f]
            s1 = zero
            s2 = zero
            for b in range(nb):
                z = xt[f, b] - mean
                w = resp[k, b] * z
                s1 += w
                s2 += w * z
            sx[k, f] += s1
            sxx[k, f] += s2


@njit(**SHARED)
def _moments_around_means(xt, nb, resp, nblk, means, grouped, nk, sx, sxx):
    """:func:`_moments_around_center` for the components without
    ``grouped[k]``, summed around their means (a subtraction, a product, a
    sum and an FMA per row and feature)."""
    D = xt.shape[0]
    K = means.shape[0]
    zero = zero_of(xt)
    for k in range(K):
        if grouped[k] or nblk[k] == 0.0:
            continue
        nk[k] += nblk[k]
        d = D - D
        while d < D:
            # Two features per sweep: each load of ``resp[k]`` feeds both.
            # A lone last feature is paired with itself and stored once.
            d1 = min(d + 1, D - 1)
            m0 = means[k, d]
            m1 = means[k, d1]
            a0 = zero
            a1 = zero
            q0 = zero
            q1 = zero
            for b in range(nb):
                z0 = xt[d, b] - m0
                z1 = xt[d1, b] - m1
                w0 = resp[k, b] * z0
                w1 = resp[k, b] * z1
                a0 += w0
                a1 += w1
                q0 += w0 * z0
                q1 += w1 * z1
            sx[k, d] += a0
            sxx[k, d] += q0
            if d1 > d:
                sx[k, d1] += a1
                sxx[k, d1] += q1
            d += 2


@njit(**SHARED)
def _moments_few_features(xt, nb, E, scale, means, nblk, nk, sx, sxx):
    """:func:`_moments_around_center` for blocks of at most
    :data:`~fastem._kernels._blocks.FEW_FEATURES` features (in float64,
    with no component far from the center in any feature), with the
    responsibilities formed in registers: ``r_kb = above_weight_floor(E[k,
    b]) scale[b]`` (``E`` and ``scale`` from
    :func:`~fastem._kernels._blocks.row_log_sum_exp`, ``E`` not modified),
    ``nblk[k] = sum_b r_kb``.

    One sweep over the block for every four components does what
    :func:`~fastem._kernels._blocks.block_weights` (which stores the
    responsibilities) and :func:`_moments_around_center` did in two.
    float64: the raw sums ``n``, ``A = sum r x`` and ``Q = sum r x^2``,
    shifted to the means as there (two FMAs per component and feature);
    float32: sums around the means, accurate for components far from the
    center too (a subtraction, a product and two FMAs).  Indices, not
    views, and no helpers taking arrays in the loop, as in
    :func:`~fastem._kernels._blocks.accumulate_first_moments_few_features`."""
    K = E.shape[0]
    D = xt.shape[0]
    last = D - 1
    zero = zero_of(xt)
    raw = holds_float64(xt)
    for k0 in range(0, K, 4):
        # Components past K - 1 repeat the last one and are not stored.
        k1 = min(k0 + 1, K - 1)
        k2 = min(k0 + 2, K - 1)
        k3 = min(k0 + 3, K - 1)
        # float64: raw sums (the shifts are zero and fold away); float32:
        # sums around the means.
        m00 = zero if raw else means[k0, 0]
        m01 = zero if raw else means[k0, last]
        m10 = zero if raw else means[k1, 0]
        m11 = zero if raw else means[k1, last]
        m20 = zero if raw else means[k2, 0]
        m21 = zero if raw else means[k2, last]
        m30 = zero if raw else means[k3, 0]
        m31 = zero if raw else means[k3, last]
        n0 = n1 = n2 = n3 = zero
        a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = zero
        q00 = q01 = q10 = q11 = q20 = q21 = q30 = q31 = zero
        for b in range(nb):
            u = xt[0, b]
            v = xt[last, b]
            s = scale[b]
            r0 = above_weight_floor(E[k0, b]) * s
            r1 = above_weight_floor(E[k1, b]) * s
            r2 = above_weight_floor(E[k2, b]) * s
            r3 = above_weight_floor(E[k3, b]) * s
            n0 += r0
            n1 += r1
            n2 += r2
            n3 += r3
            z00 = u - m00
            z01 = v - m01
            z10 = u - m10
            z11 = v - m11
            z20 = u - m20
            z21 = v - m21
            z30 = u - m30
            z31 = v - m31
            a00 += r0 * z00
            a01 += r0 * z01
            a10 += r1 * z10
            a11 += r1 * z11
            a20 += r2 * z20
            a21 += r2 * z21
            a30 += r3 * z30
            a31 += r3 * z31
            q00 += r0 * (z00 * z00)
            q01 += r0 * (z01 * z01)
            q10 += r1 * (z10 * z10)
            q11 += r1 * (z11 * z11)
            q20 += r2 * (z20 * z20)
            q21 += r2 * (z21 * z21)
            q30 += r3 * (z30 * z30)
            q31 += r3 * (z31 * z31)
        for i in range(4):
            k = k0 + i
            if k < K:
                n = (n0, n1, n2, n3)[i]
                nblk[k] = n
                nk[k] += n
                # Sums around the means need no shift.
                weight = np.float64(n) if raw else 0.0
                a = np.float64((a00, a10, a20, a30)[i])
                q = np.float64((q00, q10, q20, q30)[i])
                _add_shifted_moments(k, 0, a, q, weight, means, sx, sxx)
                if D > 1:
                    a = np.float64((a01, a11, a21, a31)[i])
                    q = np.float64((q01, q11, q21, q31)[i])
                    _add_shifted_moments(k, 1, a, q, weight, means, sx, sxx)


@njit(**SERIAL)
def _add_shifted_moments(k, d, a, q, n, means, sx, sxx):
    """Adds the raw sums ``a = sum r x`` and ``q = sum r x^2`` of weight
    ``n``, shifted to ``m = means[k, d]``, to ``sx[k, d]`` and ``sxx[k,
    d]`` (with ``n = 0``, sums already around ``m``)."""
    m = np.float64(means[k, d]) if n != 0.0 else 0.0
    sx[k, d] += a - m * n
    sxx[k, d] += q - m * (2.0 * a - m * n)


@njit(**SERIAL)
def _far_from_center(scaled, far, grouped):
    """``far[k, d]``: ``(mu_kd - c_d)^2 > L sigma_kd^2``, where shifting
    the raw second moment around the mixture mean ``c`` to ``mu_kd`` would
    lose more than ``log2(1 + L)`` bits to cancellation (relative error of
    the variance about ``(1 + L) eps``; ``scaled = (mu - c) sqrt(1/2) /
    sigma``).  ``L = 2^10`` in float64: relative errors of the variance
    sums below 2e-13 (measured 1e-13, against 1e-6 without the limit, in
    ``tests/test_kernels.py``).  In float32, ``L = 2^4``: about 1e-6, where
    centering a float32 row on ``c`` already costs ``(1 + |mu - c| / sigma)
    eps`` (3e-7 at the limit).  ``grouped[k]``: at most half of component
    ``k``'s features are far, so the raw sums pay."""
    limit = 512.0 if holds_float64(scaled) else 8.0
    K, D = scaled.shape
    for k in range(K):
        count = 0
        for d in range(D):
            z = np.float64(scaled[k, d])
            far[k, d] = z * z > limit
            count += far[k, d]
        grouped[k] = 2 * count <= D


# ---------------------------------------------------------------------------
# Fused E-step + sufficient statistics, one kernel per covariance type
# ---------------------------------------------------------------------------


@njit(**KERNEL)
def estep_full(
    X,
    sw,
    center,
    log_norm,
    means,
    prec,
    task_rows,
    block,
    nk,
    sx,
    sxx,
    acc,
    queue,
):
    """Statistics around the current means: ``sxx[t, k]`` is the lower
    triangle of ``sum r_k (x - mu_k)(x - mu_k)^T``."""
    N, D = X.shape
    K = means.shape[0]
    dt = X.dtype
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt = aligned_rows(D, block, dt)
        w = aligned_rows(4, block, dt)
        L = aligned_rows(K, block, dt)
        resp = aligned_rows(K, block, dt)
        rowmax = aligned_rows(1, block, dt)[0]
        total = aligned_rows(1, block, dt)[0]
        projected = _project_means(means, prec)
        sblk = np.empty(D)
        nblk = np.empty(K, dt)
        r_end = min(N, (t + 1) * task_rows)
        ahead = D >= NEXT_BLOCK_MIN_FEATURES
        part = D - D  # not 0: see prefetch_next_block
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            r1, r2 = r0 + nb, min(r_end, r0 + nb + block)
            if ahead:
                prefetch_next_block(X, r1, r2, part)
            _log_prob_full(xt, nb, prec, projected, log_norm, L)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 1)
            row_log_sum_exp(L, nb, sw, r0, rowmax, resp, total, acc[t])
            if ahead:
                prefetch_next_block(X, r1, r2, part + 2)
            block_weights(resp, nb, total, nblk)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 3)
            for k in range(K):
                add_component_moments(
                    xt, nb, resp, k, means[k], w, nk[t], sx[t], sxx[t, k], sblk
                )


@njit(**KERNEL)
def estep_full_small(
    X,
    sw,
    center,
    log_norm,
    means,
    prec,
    task_rows,
    block,
    nk,
    sx,
    sxx,
    acc,
    queue,
):
    """:func:`estep_full` for ``D <= SMALL_FULL_D``."""
    N, D = X.shape
    K = means.shape[0]
    dt = X.dtype
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt = aligned_rows(D, block, dt)
        L = aligned_rows(K, block, dt)
        E = aligned_rows(K, block, dt)
        rowmax = aligned_rows(1, block, dt)[0]
        total = aligned_rows(1, block, dt)[0]
        projected = _project_means(means, prec)
        r_end = min(N, (t + 1) * task_rows)
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            _log_prob_full_small(xt, nb, prec, projected, log_norm, L)
            row_log_sum_exp(L, nb, sw, r0, rowmax, E, total, acc[t])
            _full_moments_small(xt, nb, E, total, means, nk[t], sx[t], sxx[t])


@njit(**KERNEL)
def estep_tied(
    X,
    sw,
    center,
    log_norm,
    prec,
    shifted_means,
    means,
    task_rows,
    block,
    nk,
    sx,
    sxx,
    acc,
    queue,
):
    """Statistics around ``center``: ``sx[t, k] = sum r_k (x - c)``,
    ``sxx[t, :D]`` the lower triangle of the total scatter ``sum w (x -
    c)(x - c)^T`` and ``sxx[t, D]`` its first moment ``sum w (x - c)``, both
    summed in float64 from the rows (``sxx`` is ``(T, D + 1, D)``;
    ``shifted_means[k] = (mu_k - c) U``, ``means[k] = mu_k - c``).

    The total scatter does not depend on the parameters: with ``sxx`` of
    shape ``(T, 0, 0)`` it is skipped (the caller has it from an earlier
    pass over the same rows, and moves it to this pass's ``c`` with its
    first moment: the components' ``sx`` add up to the same sum, but with
    the rounding of the float32 blocks, which the move multiplies by the
    distance between the centres)."""
    N, D = X.shape
    K = shifted_means.shape[0]
    dt = X.dtype
    has_w = sw.shape[0] > 0
    want_scatter = sxx.shape[1] > 0
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt = aligned_rows(D, block, dt)
        u = aligned_rows(D, block, dt)
        # ``sxx.dtype`` (float64), not ``np.float64``: a dtype object, like
        # ``dt``, so float64 data compile ``aligned_rows`` once, not twice.
        f64 = sxx.dtype
        widen = D if X.itemsize != 8 and want_scatter else 0
        x64 = aligned_rows(widen, block, f64)
        raw = aligned_rows(widen, block, dt)
        origin = np.empty(widen, dt)
        for d in range(widen):
            origin[d] = 0.0
        # The total scatter's row weights (ones without sample weights), its
        # centre (the rows are centered already) and the kernel's scratch.
        w64 = aligned_rows(4 if want_scatter else 0, block, f64)
        row_weight = aligned_rows(1, block, f64)[0]
        for b in range(block):
            row_weight[b] = 1.0
        no_shift = np.empty(D, f64)
        for d in range(D):
            no_shift[d] = 0.0
        sums64 = np.empty(D, f64)
        L = aligned_rows(K, block, dt)
        resp = aligned_rows(K, block, dt)
        rowmax = aligned_rows(1, block, dt)[0]
        total = aligned_rows(1, block, dt)[0]
        nblk = np.empty(K, dt)
        sums = np.empty((K, D))
        unit = _ones(K, dt)
        r_end = min(N, (t + 1) * task_rows)
        ahead = D >= NEXT_BLOCK_MIN_FEATURES
        part = D - D  # not 0: see prefetch_next_block
        xc = x64  # the block in float64 for the total scatter
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            if want_scatter:
                xc = load_rows_centered_float64(X, r0, nb, center, xt, origin, raw, x64)
            else:
                load_rows_centered(X, r0, nb, center, xt)
            r1, r2 = r0 + nb, min(r_end, r0 + nb + block)
            if ahead:
                prefetch_next_block(X, r1, r2, part)
            _log_prob_tied(xt, nb, prec, shifted_means, log_norm, unit, u, L)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 1)
            row_log_sum_exp(L, nb, sw, r0, rowmax, resp, total, acc[t])
            if ahead:
                prefetch_next_block(X, r1, r2, part + 2)
            # sum_b r_kb (x_b - c) as sum_b r_kb (x_b - mu_k) + n_k mu_k: the
            # block sums around each component's mean are small and accurate
            # in float32; the total scatter below is formed in float64.  Both
            # include the spread between the components, which the M-step
            # subtracts again (float32 sums around c would leave
            # eps32 (distance / spread)^2 of error).
            if D <= FEW_FEATURES:
                accumulate_first_moments_few_features(
                    xt, nb, resp, total, means, nblk, sx[t], True, log_norm, L, None
                )
            else:
                accumulate_first_moments(
                    xt, nb, resp, total, means, nblk, sums, sx[t], True
                )
            if ahead:
                prefetch_next_block(X, r1, r2, part + 3)
            for k in range(K):
                n = nblk[k]
                nk[t, k] += n
                for d in range(D):
                    sx[t, k, d] += np.float64(n) * np.float64(means[k, d])
            if not want_scatter:
                continue
            # The total scatter uses the row weights, not the responsibilities.
            if has_w:
                for b in range(nb):
                    row_weight[b] = sw[r0 + b]
            weighted_lower_scatter(
                xc, nb, row_weight, no_shift, w64, sxx[t, :D], sums64
            )
            first = sxx[t, D]
            for d in range(D):
                first[d] += sums64[d]


@njit(**KERNEL)
def estep_diag(
    X,
    sw,
    center,
    log_norm,
    means,
    prec,
    scaled,
    task_rows,
    block,
    nk,
    sx,
    sxx,
    acc,
    queue,
):
    """``sxx[t, k, d] = sum r_k (x_d - mu_kd)^2`` (``means[k] = mu_k - c``,
    ``scaled[k] = (mu_k - c) prec[k]``)."""
    N, D = X.shape
    K = means.shape[0]
    dt = X.dtype
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt = aligned_rows(D, block, dt)
        L = aligned_rows(K, block, dt)
        resp = aligned_rows(K, block, dt)
        rowmax = aligned_rows(1, block, dt)[0]
        total = aligned_rows(1, block, dt)[0]
        far = np.empty((K, D), np.bool_)
        grouped = np.empty(K, np.bool_)
        _far_from_center(scaled, far, grouped)
        few = D <= FEW_FEATURES and not (holds_float64(X) and np.any(far))
        first = np.empty((K, D))
        second = np.empty((K, D))
        order = np.empty(K, np.int64)
        nblk = np.empty(K, dt)
        r_end = min(N, (t + 1) * task_rows)
        ahead = D >= NEXT_BLOCK_MIN_FEATURES
        part = D - D  # not 0: see prefetch_next_block
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            r1, r2 = r0 + nb, min(r_end, r0 + nb + block)
            if ahead:
                prefetch_next_block(X, r1, r2, part)
            _log_prob_diag(xt, nb, scaled, prec, log_norm, L)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 1)
            row_log_sum_exp(L, nb, sw, r0, rowmax, resp, total, acc[t])
            if ahead:
                prefetch_next_block(X, r1, r2, part + 2)
            if few:
                _moments_few_features(
                    xt, nb, resp, total, means, nblk, nk[t], sx[t], sxx[t]
                )
                continue
            block_weights(resp, nb, total, nblk)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 3)
            _moments_around_center(
                xt,
                nb,
                resp,
                nblk,
                means,
                far,
                grouped,
                order,
                first,
                second,
                nk[t],
                sx[t],
                sxx[t],
            )
            _moments_around_means(
                xt, nb, resp, nblk, means, grouped, nk[t], sx[t], sxx[t]
            )


@njit(**KERNEL)
def estep_spherical(
    X,
    sw,
    center,
    log_norm,
    means,
    prec,
    task_rows,
    block,
    nk,
    sx,
    sxx,
    acc,
    queue,
):
    """``sxx[t, k] = sum r_k ||x - mu_k||^2``, as ``sum_b r_kb (log_norm_k -
    L_kb) / prec_k^2``: the log-density pass stores only ``L``, and the
    second moments cost a subtraction and an FMA per row and component (not
    per feature).  ``log_norm_k - L_kb`` loses ``eps |L_kb|`` to the
    rounding of ``L``, a relative ``eps |L| / (prec^2 ||x - mu||^2)`` of the
    distance, a few ulps at the distances that carry the variance:
    ``|log_norm|`` grows only with the logarithm of the spread."""
    N, D = X.shape
    K = means.shape[0]
    dt = X.dtype
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt = aligned_rows(D, block, dt)
        L = aligned_rows(K, block, dt)
        resp = aligned_rows(K, block, dt)
        nblk = np.empty(K, dt)
        sums = np.empty((K, D))
        rowmax = aligned_rows(1, block, dt)[0]
        total = aligned_rows(1, block, dt)[0]
        prec2 = _squares(prec)
        few = D <= FEW_FEATURES
        sq = np.empty(K if few else 0)
        r_end = min(N, (t + 1) * task_rows)
        ahead = D >= NEXT_BLOCK_MIN_FEATURES
        part = D - D  # not 0: see prefetch_next_block
        for r0 in range(t * task_rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            r1, r2 = r0 + nb, min(r_end, r0 + nb + block)
            if ahead:
                prefetch_next_block(X, r1, r2, part)
            _log_prob_spherical(xt, nb, means, prec2, log_norm, L)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 1)
            row_log_sum_exp(L, nb, sw, r0, rowmax, resp, total, acc[t])
            if ahead:
                prefetch_next_block(X, r1, r2, part + 2)
            if few:
                for k in range(K):
                    sq[k] = 0.0
                accumulate_first_moments_few_features(
                    xt, nb, resp, total, means, nblk, sx[t], False, log_norm, L, sq
                )
                for k in range(K):
                    nk[t, k] += nblk[k]
                    sxx[t, k] += sq[k] / np.float64(prec2[k])
                continue
            accumulate_first_moments(
                xt, nb, resp, total, means, nblk, sums, sx[t], False
            )
            if ahead:
                prefetch_next_block(X, r1, r2, part + 3)
            for k in range(K):
                n = nblk[k]
                if n == 0.0:
                    continue
                nk[t, k] += n
                c = log_norm[k]
                row = L[k]
                r = resp[k]
                scaled = zero_of(xt)
                for b in range(nb):
                    scaled += r[b] * (c - row[b])
                sxx[t, k] += np.float64(scaled) / np.float64(prec2[k])


# ---------------------------------------------------------------------------
# Per-row outputs for predict / predict_proba / score_samples
# ---------------------------------------------------------------------------


@njit(**SERIAL)
def _row_buffers(D, K, block, dt, buf_rows):
    """Per-task scratch of the per-row kernels: ``xt, buf, L, E, rowmax,
    total``; ``buf`` has the rows the log-density asks for."""
    return (
        aligned_rows(D, block, dt),
        aligned_rows(buf_rows, block, dt),
        aligned_rows(K, block, dt),
        aligned_rows(K, block, dt),
        aligned_rows(1, block, dt)[0],
        aligned_rows(1, block, dt)[0],
    )


# One kernel per covariance type (full: two, see SMALL_FULL_D), so that
# predicting compiles only the log-density of the model's type.  Each fills
# whichever of ``out_lse`` (N,), ``out_resp`` (N, K), ``out_label`` (N,) has
# N rows (length-0 arrays for the others); tasks are ``PER_ROW_TASK_BLOCKS``
# blocks of rows.


@njit(**KERNEL)
def per_row_full(
    X,
    center,
    log_norm,
    means,
    prec,
    block,
    out_lse,
    out_resp,
    out_label,
    queue,
):
    """Per-row outputs, full covariances (``prec`` is ``(K, D, D)``)."""
    N, D = X.shape
    rows = PER_ROW_TASK_BLOCKS * block
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, _buf, L, E, rowmax, total = _row_buffers(
            D, means.shape[0], block, X.dtype, 0
        )
        projected = _project_means(means, prec)
        r_end = min(N, (t + 1) * rows)
        ahead = D >= NEXT_BLOCK_MIN_FEATURES
        part = D - D  # not 0: see prefetch_next_block
        for r0 in range(t * rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            r1, r2 = r0 + nb, min(r_end, r0 + nb + block)
            if ahead:
                prefetch_next_block(X, r1, r2, part)
                prefetch_next_block(X, r1, r2, part + 1)
            _log_prob_full(xt, nb, prec, projected, log_norm, L)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 2)
                prefetch_next_block(X, r1, r2, part + 3)
            emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label)


@njit(**KERNEL)
def per_row_full_small(
    X,
    center,
    log_norm,
    means,
    prec,
    block,
    out_lse,
    out_resp,
    out_label,
    queue,
):
    """:func:`per_row_full` for ``D <= SMALL_FULL_D``."""
    N, D = X.shape
    rows = PER_ROW_TASK_BLOCKS * block
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, _buf, L, E, rowmax, total = _row_buffers(
            D, means.shape[0], block, X.dtype, 0
        )
        projected = _project_means(means, prec)
        for r0 in range(t * rows, min(N, (t + 1) * rows), block):
            nb = min(block, N - r0)
            load_rows_centered(X, r0, nb, center, xt)
            _log_prob_full_small(xt, nb, prec, projected, log_norm, L)
            emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label)


@njit(**KERNEL)
def per_row_tied(
    X,
    center,
    log_norm,
    shifted,
    prec,
    block,
    out_lse,
    out_resp,
    out_label,
    queue,
):
    """Per-row outputs, tied covariance (``prec`` is ``(D, D)``)."""
    N, D = X.shape
    rows = PER_ROW_TASK_BLOCKS * block
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, buf, L, E, rowmax, total = _row_buffers(
            D, shifted.shape[0], block, X.dtype, D
        )
        unit = _ones(shifted.shape[0], X.dtype)
        r_end = min(N, (t + 1) * rows)
        ahead = D >= NEXT_BLOCK_MIN_FEATURES
        part = D - D  # not 0: see prefetch_next_block
        for r0 in range(t * rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            r1, r2 = r0 + nb, min(r_end, r0 + nb + block)
            if ahead:
                prefetch_next_block(X, r1, r2, part)
                prefetch_next_block(X, r1, r2, part + 1)
            _log_prob_tied(xt, nb, prec, shifted, log_norm, unit, buf, L)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 2)
                prefetch_next_block(X, r1, r2, part + 3)
            emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label)


@njit(**KERNEL)
def per_row_diag(
    X,
    center,
    log_norm,
    means,
    prec,
    block,
    out_lse,
    out_resp,
    out_label,
    queue,
):
    """Per-row outputs, diagonal covariances (``prec`` is ``(K, D)``)."""
    N, D = X.shape
    rows = PER_ROW_TASK_BLOCKS * block
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, _buf, L, E, rowmax, total = _row_buffers(
            D, means.shape[0], block, X.dtype, 0
        )
        r_end = min(N, (t + 1) * rows)
        ahead = D >= NEXT_BLOCK_MIN_FEATURES
        part = D - D  # not 0: see prefetch_next_block
        for r0 in range(t * rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            r1, r2 = r0 + nb, min(r_end, r0 + nb + block)
            if ahead:
                prefetch_next_block(X, r1, r2, part)
                prefetch_next_block(X, r1, r2, part + 1)
            _log_prob_diag(xt, nb, means, prec, log_norm, L)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 2)
                prefetch_next_block(X, r1, r2, part + 3)
            emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label)


@njit(**KERNEL)
def per_row_spherical(
    X,
    center,
    log_norm,
    means,
    prec,
    block,
    out_lse,
    out_resp,
    out_label,
    queue,
):
    """Per-row outputs, spherical covariances (``prec`` is ``(K,)``)."""
    N, D = X.shape
    rows = PER_ROW_TASK_BLOCKS * block
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        xt, _buf, L, E, rowmax, total = _row_buffers(
            D, means.shape[0], block, X.dtype, 0
        )
        prec2 = _squares(prec)
        r_end = min(N, (t + 1) * rows)
        ahead = D >= NEXT_BLOCK_MIN_FEATURES
        part = D - D  # not 0: see prefetch_next_block
        for r0 in range(t * rows, r_end, block):
            nb = min(block, r_end - r0)
            load_rows_centered(X, r0, nb, center, xt)
            r1, r2 = r0 + nb, min(r_end, r0 + nb + block)
            if ahead:
                prefetch_next_block(X, r1, r2, part)
                prefetch_next_block(X, r1, r2, part + 1)
            _log_prob_spherical(xt, nb, means, prec2, log_norm, L)
            if ahead:
                prefetch_next_block(X, r1, r2, part + 2)
                prefetch_next_block(X, r1, r2, part + 3)
            emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label)
