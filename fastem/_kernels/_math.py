"""Vectorisable elementary functions and small blocked products.

numba's ``math.exp`` is a scalar libm call; the loops here compile to SIMD
code, which makes the exponentials of the E-step several times cheaper.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

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


# Compiled without fast-math: reassociating the range reduction costs up to
# 12 ulp; exact it is within 1 ulp of libm over [-708, 0].
@njit(cache=CACHE, nogil=True, fastmath=False)
def _exp64(v, bits, n):
    for i in range(n):
        x = v[i]
        xc = max(x, _EXP_MIN)
        k = math.floor(xc * _LOG2E + 0.5)
        r = (xc - k * _LN2_HI) - k * _LN2_LO
        p = 1.6059043836821613e-10
        p = p * r + 2.08767569878681e-09
        p = p * r + 2.505210838544172e-08
        p = p * r + 2.755731922398589e-07
        p = p * r + 2.7557319223985893e-06
        p = p * r + 2.48015873015873e-05
        p = p * r + 0.0001984126984126984
        p = p * r + 0.001388888888888889
        p = p * r + 0.008333333333333333
        p = p * r + 0.041666666666666664
        p = p * r + 0.16666666666666666
        p = p * r + 0.5
        p = p * r + 1.0
        p = p * r + 1.0
        bits[i] = (np.int64(k) + 1023) << 52
        v[i] = p if x >= _EXP_MIN else 0.0
    scale = bits.view(np.float64)
    for i in range(n):
        v[i] *= scale[i]


@njit(cache=CACHE, nogil=True, fastmath=False)
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


@njit(**SERIAL)
def exp_inplace(v, bits, n):
    """``v[:n] = exp(v[:n])`` for float64 or float32 ``v``, vectorised.

    ``exp(x) = 2^k exp(r)`` with ``k = round(x / log 2)`` and ``|r| <= log(2)/2``;
    ``exp(r)`` by its Taylor polynomial (degree 13 in float64, truncation
    error < 1e-17; degree 7 in float32, < 3e-9) and ``2^k`` assembled in the
    exponent bits via ``bits`` (int64, length >= n).  Arguments below -708
    (float64) or -87 (float32) give 0 rather than a subnormal number.
    """
    if v.itemsize == 8:
        _exp64(v, bits, n)
    else:
        _exp32(v, bits, n)


@njit(**SERIAL)
def upper_tri_sq_norms(diff, nb, U, y, out):
    """``out[b] += ||(diff[:, b])^T U||^2`` for upper-triangular ``U`` (D, D).

    ``diff`` is ``(D, B)`` (rows of the block in columns).  Column ``j`` of the
    product is ``sum_{i <= j} diff[i, :] U[i, j]``; four terms are added per
    sweep over the block so that each load/store of ``y`` carries four FMAs.
    """
    D = diff.shape[0]
    for j in range(D):
        i = 0
        u = U[0, j]
        for b in range(nb):
            y[b] = diff[0, b] * u
        i = 1
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

    Four dot products share each load of ``wdiff[i]``.
    """
    D = diff.shape[0]
    zero = np.zeros(1, diff.dtype)[0]
    for i in range(D):
        wi = wdiff[i]
        j = 0
        while j + 3 <= i:
            d0 = diff[j]
            d1 = diff[j + 1]
            d2 = diff[j + 2]
            d3 = diff[j + 3]
            a0 = zero
            a1 = zero
            a2 = zero
            a3 = zero
            for b in range(nb):
                w = wi[b]
                a0 += w * d0[b]
                a1 += w * d1[b]
                a2 += w * d2[b]
                a3 += w * d3[b]
            S[i, j] += a0
            S[i, j + 1] += a1
            S[i, j + 2] += a2
            S[i, j + 3] += a3
            j += 4
        while j <= i:
            dj = diff[j]
            a = zero
            for b in range(nb):
                a += wi[b] * dj[b]
            S[i, j] += a
            j += 1
