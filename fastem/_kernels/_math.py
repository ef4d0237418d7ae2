"""Vectorisable elementary functions and small blocked products.

numba's ``math.exp`` is a scalar libm call; the loops here compile to SIMD
code, which makes the exponentials of the E-step several times cheaper.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .._config import CACHE, SERIAL

_LOG2E = 1.4426950408889634
# Cody-Waite split of log(2): _LN2_HI has trailing zero bits, so k * _LN2_HI
# is exact for |k| < 2**11.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: Below this, exp underflows to (sub)normal numbers; we return 0.
_EXP_MIN = -708.0


_F32_LOG2E = np.float32(_LOG2E)
_F32_LN2_HI = np.float32(0.693359375)
_F32_LN2_LO = np.float32(-2.12194440e-4)
_F32_HALF = np.float32(0.5)
_F32_EXP_MIN = np.float32(-87.0)  # exp(-87) > smallest normal float32
_F32_ZERO = np.float32(0.0)
_F32_C = (
    np.float32(1.0 / 5040),
    np.float32(1.0 / 720),
    np.float32(1.0 / 120),
    np.float32(1.0 / 24),
    np.float32(1.0 / 6),
    np.float32(0.5),
    np.float32(1.0),
    np.float32(1.0),
)


# Compiled with FMA contraction only: reassociating the range reduction costs
# up to 12 ulp, while fused multiply-adds make both the reduction and Horner's
# scheme more accurate and twice as fast (within 1 ulp of libm on [-708, 0]).
@njit(cache=CACHE, nogil=True, fastmath={"contract"})
def _exp64(v, bits, n):
    for i in range(n):
        x = v[i]
        xc = max(x, _EXP_MIN)
        k = math.floor(xc * _LOG2E + 0.5)
        r = (xc - k * _LN2_HI) - k * _LN2_LO
        p = 2.5110049204818658e-08
        p = p * r + 2.763265472252779e-07
        p = p * r + 2.755724088722987e-06
        p = p * r + 2.4801485441561313e-05
        p = p * r + 0.00019841269890076403
        p = p * r + 0.0013888888952352863
        p = p * r + 0.008333333333319589
        p = p * r + 0.04166666666648795
        p = p * r + 0.1666666666666668
        p = p * r + 0.5000000000000019
        p = p * r + 1.0
        p = p * r + 1.0
        bits[i] = (np.int64(k) + 1023) << 52
        v[i] = p if x >= _EXP_MIN else 0.0
    scale = bits.view(np.float64)
    for i in range(n):
        v[i] *= scale[i]


@njit(cache=CACHE, nogil=True, fastmath={"contract"})
def _exp32(v, bits, n):
    c = _F32_C
    bits32 = bits.view(np.int32)
    for i in range(n):
        x = v[i]
        xc = max(x, _F32_EXP_MIN)
        k = np.floor(xc * _F32_LOG2E + _F32_HALF)
        r = (xc - k * _F32_LN2_HI) - k * _F32_LN2_LO
        p = c[0]
        p = p * r + c[1]
        p = p * r + c[2]
        p = p * r + c[3]
        p = p * r + c[4]
        p = p * r + c[5]
        p = p * r + c[6]
        p = p * r + c[7]
        bits32[i] = (np.int64(k) + 127) << 23
        v[i] = p if x >= _F32_EXP_MIN else _F32_ZERO
    scale = bits32.view(np.float32)
    for i in range(n):
        v[i] *= scale[i]


def exp_inplace(v, bits, n):
    """``v[:n] = exp(v[:n])`` for float64 or float32 ``v``, vectorised.

    ``exp(x) = 2^k exp(r)`` with ``k = round(x / log 2)`` and ``|r| <= log(2)/2``;
    ``exp(r)`` by a polynomial (float64: degree 11, interpolating ``exp`` at
    the Chebyshev nodes of ``|r| <= 0.3466``, relative error 4e-18; float32:
    Taylor, degree 7, < 3e-9) and ``2^k`` assembled in the
    exponent bits via ``bits`` (int64, length >= n).  Arguments below -708
    (float64) or -87 (float32) give 0 rather than a subnormal number.
    """
    if v.itemsize == 8:
        _exp64(v, bits, n)
    else:
        _exp32(v, bits, n)


# Chosen by dtype at typing time, so a float64 kernel never compiles the
# float32 exponential (an ``itemsize`` branch would compile both).
@overload(exp_inplace)
def _exp_inplace_typed(v, bits, n):
    if v.dtype == types.float64:
        return lambda v, bits, n: _exp64(v, bits, n)
    return lambda v, bits, n: _exp32(v, bits, n)


@njit(**SERIAL)
def upper_tri_sq_norms(diff, nb, U, y, out):
    """``out[b] += ||(diff[:, b])^T U||^2`` for upper-triangular ``U`` (D, D).

    ``diff`` is ``(D, B)`` (rows of the block in columns).  Column ``j`` of the
    product is ``sum_{i <= j} diff[i, :] U[i, j]``; eight (then four) terms
    are added per sweep over the block so that each load and store of ``y``
    carries several FMAs.
    """
    D = diff.shape[0]
    for j in range(D):
        u = U[0, j]
        for b in range(nb):
            y[b] = diff[0, b] * u
        i = 1
        while i + 7 <= j:
            u0 = U[i, j]
            u1 = U[i + 1, j]
            u2 = U[i + 2, j]
            u3 = U[i + 3, j]
            u4 = U[i + 4, j]
            u5 = U[i + 5, j]
            u6 = U[i + 6, j]
            u7 = U[i + 7, j]
            d0 = diff[i]
            d1 = diff[i + 1]
            d2 = diff[i + 2]
            d3 = diff[i + 3]
            d4 = diff[i + 4]
            d5 = diff[i + 5]
            d6 = diff[i + 6]
            d7 = diff[i + 7]
            for b in range(nb):
                y[b] += (d0[b] * u0 + d1[b] * u1 + d2[b] * u2 + d3[b] * u3) + (
                    d4[b] * u4 + d5[b] * u5 + d6[b] * u6 + d7[b] * u7
                )
            i += 8
        while i + 3 <= j:
            u0 = U[i, j]
            u1 = U[i + 1, j]
            u2 = U[i + 2, j]
            u3 = U[i + 3, j]
            d0 = diff[i]
            d1 = diff[i + 1]
            d2 = diff[i + 2]
            d3 = diff[i + 3]
            for b in range(nb):
                y[b] += d0[b] * u0 + d1[b] * u1 + d2[b] * u2 + d3[b] * u3
            i += 4
        while i <= j:
            u = U[i, j]
            di = diff[i]
            for b in range(nb):
                y[b] += di[b] * u
            i += 1
        for b in range(nb):
            out[b] += y[b] * y[b]


@njit(**SERIAL)
def add_lower_scatter(wdiff, diff, nb, S):
    """``S[i, j] += sum_b wdiff[i, b] diff[j, b]`` for ``j <= i``.

    Register-blocked 2 x 4: two rows of ``wdiff`` and four of ``diff`` are
    loaded once per column ``b`` for eight dot products.  Partial sums over
    the block are kept in the dtype of the buffers and added to ``S``
    (float64).
    """
    D = diff.shape[0]
    zero = np.zeros(1, diff.dtype)[0]
    i = 0
    while i + 1 < D:
        w0 = wdiff[i]
        w1 = wdiff[i + 1]
        j = 0
        while j + 3 <= i:
            d0 = diff[j]
            d1 = diff[j + 1]
            d2 = diff[j + 2]
            d3 = diff[j + 3]
            a00 = zero
            a01 = zero
            a02 = zero
            a03 = zero
            a10 = zero
            a11 = zero
            a12 = zero
            a13 = zero
            for b in range(nb):
                x0 = w0[b]
                x1 = w1[b]
                e0 = d0[b]
                e1 = d1[b]
                e2 = d2[b]
                e3 = d3[b]
                a00 += x0 * e0
                a01 += x0 * e1
                a02 += x0 * e2
                a03 += x0 * e3
                a10 += x1 * e0
                a11 += x1 * e1
                a12 += x1 * e2
                a13 += x1 * e3
            S[i, j] += a00
            S[i, j + 1] += a01
            S[i, j + 2] += a02
            S[i, j + 3] += a03
            S[i + 1, j] += a10
            S[i + 1, j + 1] += a11
            S[i + 1, j + 2] += a12
            S[i + 1, j + 3] += a13
            j += 4
        while j <= i + 1:
            dj = diff[j]
            a0 = zero
            a1 = zero
            for b in range(nb):
                a0 += w0[b] * dj[b]
                a1 += w1[b] * dj[b]
            if j <= i:
                S[i, j] += a0
            S[i + 1, j] += a1
            j += 1
        i += 2
    if i < D:
        wi = wdiff[i]
        for j in range(i + 1):
            dj = diff[j]
            a = zero
            for b in range(nb):
                a += wi[b] * dj[b]
            S[i, j] += a
