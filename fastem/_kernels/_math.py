"""Vectorisable elementary functions (logarithm, reciprocal) and the
dtype-generic constants the kernels use.

numba's ``math.log`` is a scalar libm call; the loops here compile to SIMD
code.  The exponentials of the E-step are in :mod:`._exp_block`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

from .._config import CONTRACT_ONLY, OVERLOAD

# Cody-Waite split of log(2): _LN2_HI has trailing zero bits, so k * _LN2_HI
# is exact for |k| < 2**11.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10

_F32_ZERO = np.float32(0.0)
_F32_ONE = np.float32(1.0)
_F32_WEIGHT_FLOOR = np.float32(2.0**-92)


#: The type whose bits each type reinterprets as (:func:`_same_bits`).
_BIT_TWINS = {
    types.int64: types.float64,
    types.float64: types.int64,
    types.int32: types.float32,
    types.float32: types.int32,
}


@intrinsic
def _same_bits(typingctx, value):
    """The bits of an int64 read as a float64, and of a float64 read as an
    int64 (int32 and float32 alike)."""
    result = _BIT_TWINS.get(value)
    if result is None:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(result))

    return result(value), codegen


# fdlibm's e_log.c (Sun Microsystems, 1993): log(1 + f) = f - hfsq + s (hfsq
# + R(s^2)) with s = f / (2 + f), hfsq = f^2 / 2, and R a minimax polynomial
# on |s| <= 0.1716 (error < 2^-58.45); the total error is below 1 ulp.
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_ONE_BITS = 0x3FF0000000000000
_MANTISSA = 0x000FFFFFFFFFFFFF
_SMALLEST_NORMAL = 2.2250738585072014e-308
_TWO_54 = 18014398509481984.0


@njit(**CONTRACT_ONLY)
def log_simd(x):
    """``log(x)`` for a float64 scalar, in code that vectorises (numba's
    ``math.log`` is a scalar libm call).

    ``x = 2^k m`` with ``m`` in ``[sqrt(1/2), sqrt(2))``, found from the
    bits of ``x``; ``log(m)`` by fdlibm's polynomial (within 1 ulp of libm).
    Subnormal ``x`` is scaled by ``2^54`` first; ``0`` gives ``-inf``,
    ``inf`` gives ``inf``, negative numbers and NaN give NaN.  A float32
    argument is converted first.
    """
    x = np.float64(x)
    tiny = x < _SMALLEST_NORMAL
    xs = x * _TWO_54 if tiny else x
    # Shifting the bits by 1 - sqrt(1/2) moves the exponent boundary to
    # sqrt(1/2): k counts from there, and m keeps the mantissa of x.
    u = _same_bits(xs) + (_ONE_BITS - _SQRT_HALF_BITS)
    k = float((u >> 52) - 1023) - (54.0 if tiny else 0.0)
    m = _same_bits((u & _MANTISSA) + _SQRT_HALF_BITS)
    f = m - 1.0
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    r = t2 + t1
    y = k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)
    if x > 0.0:
        return y if x < np.inf else x
    return -np.inf if x == 0.0 else np.nan


def reciprocal(t):
    """``1 / t`` for a float64 or float32 scalar, in code that vectorises.

    float64: the float32 reciprocal refined by two Newton steps, ``y <- y +
    y (1 - t y)`` (each squares the relative error: 2^-24 -> 2^-48 -> below
    half an ulp before the last rounding).  A 512-bit float64 division
    occupies the divider for about 16 cycles per eight values; the float32
    division and four FMAs take a third of that (responsibilities, K = 8:
    5.3 -> 5.1 ms per 10^6 rows, one thread).  Needs ``t`` within float32's
    normal range, as the sums of ``exp(L - max L)`` (between 1 and K) are.
    float32: a plain division.
    """
    return 1.0 / t


@overload(reciprocal, jit_options=OVERLOAD)
def _reciprocal_typed(t):
    if t == types.float64:

        def impl(t):
            y = np.float64(np.float32(1.0) / np.float32(t))
            y = y + y * (1.0 - t * y)
            return y + y * (1.0 - t * y)

        return impl
    if t == types.float32:
        return lambda t: _F32_ONE / t
    return None


def zero_of(a):
    """A zero of the dtype of array ``a``: running sums over a float32 block
    stay float32 (and vectorise twice as wide)."""
    return a.dtype.type(0)


# Resolved at typing time to a constant: ``np.zeros(1, a.dtype)[0]`` cost a
# heap allocation per call and 0.2 s of compilation per process.
@overload(zero_of, jit_options=OVERLOAD)
def _zero_of_typed(a):
    if a.dtype == types.float32:
        return lambda a: _F32_ZERO
    if a.dtype == types.float64:
        return lambda a: 0.0
    return None


def above_weight_floor(e):
    """A relative weight ``e = exp(L - max L)``, or zero when it is below
    2^-92 (about 2e-28) in float32.

    2^-92 is 2^34 times the smallest normal float32, so a kept weight times a
    value of magnitude at least 2^-34, and times its square when that is at
    least 2^-17, is a normal number.  Arithmetic with subnormal numbers takes
    microcode assists on Intel cores: float32 fits of overlapping
    components, whose far tails give weights between 2^-126 and 2^-92 in
    every block, ran 2.3x slower without the floor (AVX-512 Xeon, 16x16
    full, 10^6 rows: 142 -> 61 ms per iteration).  A row's responsibilities
    sum to one, so what is dropped is below 2^-92 of it, far below float32's
    resolution.  float64 weights are returned as they are: the exponential
    is already zero below e^-708, the compare cost 2-4 % at 2x8, and
    subnormal weights (below 2^-1022) are rare."""
    return e


@overload(above_weight_floor, jit_options=OVERLOAD)
def _above_weight_floor_typed(e):
    if e == types.float32:
        return lambda e: e if e >= _F32_WEIGHT_FLOOR else _F32_ZERO
    if e == types.float64:
        return lambda e: e
    return None


def holds_float64(a):
    """Whether array ``a`` holds float64 values (a constant of the array's
    type in compiled code, so LLVM drops the branch not taken)."""
    return a.dtype == np.float64


@overload(holds_float64, jit_options=OVERLOAD)
def _holds_float64_typed(a):
    if a.dtype == types.float64:
        return lambda a: True
    return lambda a: False
