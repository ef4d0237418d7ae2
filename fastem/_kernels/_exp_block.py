"""The exponentials of a block's log-densities, in SIMD registers.

``exp(L[k, b] - max_k L[k, b])`` for every component and row of a block is
the most expensive step of an E-step with few features.
:func:`shifted_exponentials` computes it two vectors of rows at a time: the
row maxima and the sums over components stay in registers (two vectors
interleave their chains of dependent maxima and additions), and the
exponential is written out in LLVM IR so that its table lookup can use a
permutation instruction.  One thread of an AVX-512 Xeon, D = 2, K = 8, per
10^6 rows: 4.2 ms as a numba loop over an inlined scalar exponential, 3.8
ms with the same exponential here one vector at a time, 3.2 ms with the
table, 2.9 ms two vectors at a time (of 7.4 ms for the whole diagonal
E-step and moments).

On a CPU with AVX-512 (and ``FASTEM_WIDE_VECTORS`` not ``0``) the
exponential uses a table of ``2^(j/16)``:

    exp(x) = 2^k 2^(j/16) exp(r),   x = (16 k + j) log(2) / 16 + r,

with ``|r| <= log(2) / 32``.  One ``vpermi2pd`` (float64: the 16 entries in
two registers) or ``vpermps`` (float32: one register) picks ``2^(j/16)``
for eight or sixteen lanes at once, and ``exp(r) - 1`` needs a polynomial of
degree 6 (float64) or 3 (float32) in place of degree 11 or 7: 15 vector
operations per exponential instead of 18 (float64).  Elsewhere ``2^k``
alone comes from the exponent bits, and ``exp(r)``, ``|r| <= log(2) / 2``,
from a polynomial of degree 11 (float32: 7).  Both are within about an
ulp of ``numpy.exp`` (tested), and both give exactly 0 below ``-708`` (float32: ``-87``)
and for NaN, which ``-inf - (-inf)`` is when every component of a row has
log-density ``-inf``.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._math import _LN2_HI, _LN2_LO
from ._simd import _is_float_array, _lane_mask, _VectorOps, unpack_arrays

#: Table entries: ``2^(j / TABLE)`` for ``j < TABLE``.
TABLE = 16

#: Below this the exponential is 0 (float64; float32: -87): ``2^k`` would
#: need a subnormal number.
_EXP_MIN = -708.0
_F32_EXP_MIN = -87.0

# The table algorithm.  Adding 1.5 * 2^52 (float32: 1.5 * 2^23) to ``x TABLE
# / log 2`` rounds it to the integer ``i = TABLE k + j``, which the low bits
# of the sum hold; ``log(2) / TABLE`` split in two for the reduction (one
# rounding each, with FMAs).
_TABLE_SCALE = TABLE / math.log(2.0)
_TABLE_SHIFTER = 6755399441055744.0
_TABLE_LN2_HI = 0.04332169878499658
_TABLE_LN2_LO = 1.4494042586539372e-18
# ``exp(r) - 1 = r P(r)`` on ``|r| <= log(2) / 32``, P of degree 5
# interpolating at the Chebyshev nodes (relative error of ``1 + r P(r)``
# below 0.13 ulp); lowest degree first.
_TABLE_POLY = (
    1.0000000000000007,
    0.5000000000000001,
    0.16666666664209706,
    0.041666666663595475,
    0.008333472974951229,
    0.0013889063440655327,
)
_F32_TABLE_SHIFTER = 12582912.0
_F32_TABLE_LN2_HI = 0.0433217
_F32_TABLE_LN2_LO = -1.1904089e-10
# Taylor, degree 3: the remainder r^4 / 24 is below 0.16 ulp of float32.
_F32_TABLE_POLY = (1.0, 0.5, 1.0 / 6.0)

# The table-free algorithm: ``k = round(x / log 2)`` by adding 1.5 * 2^52 +
# 1023 (float32: 1.5 * 2^23 + 127), whose low bits shifted into the exponent
# field are ``2^k`` (the bias included), and ``exp(r)``, ``|r| <= log(2) /
# 2``, by a polynomial: float64 degree 11 interpolating at the Chebyshev
# nodes (relative error 4e-18), float32 Taylor of degree 7 (< 3e-9).
_LOG2E = 1.4426950408889634
_SHIFTER = 6755399441055744.0 + 1023.0
_POLY = (
    1.0,
    1.0,
    0.5000000000000019,
    0.1666666666666668,
    0.04166666666648795,
    0.008333333333319589,
    0.0013888888952352863,
    0.00019841269890076403,
    2.4801485441561313e-05,
    2.755724088722987e-06,
    2.763265472252779e-07,
    2.5110049204818658e-08,
)
_F32_SHIFTER = 12582912.0 + 127.0
_F32_LN2_HI = 0.693359375
_F32_LN2_LO = -2.12194440e-4
_F32_POLY = (1.0, 1.0, 0.5, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040)


def _table_entries(bits: int) -> list[int]:
    """The bits of ``2^(j / TABLE)`` minus ``j`` shifted to the lowest
    exponent bit less log2(TABLE): adding the bits of the rounded ``i = TABLE
    k + j`` shifted there puts ``k`` into the exponent."""
    float_type, int_type, mantissa = (
        (np.float64, np.int64, 52) if bits == 64 else (np.float32, np.int32, 23)
    )
    shift = mantissa - int(math.log2(TABLE))
    values = np.exp2(np.arange(TABLE) / TABLE).astype(float_type)
    return [int(v) - (j << shift) for j, v in enumerate(values.view(int_type))]


class _Exponential:
    """Vector ``exp`` for the element type of ``ops``, chosen at code
    generation: the table algorithm when the vectors are 64 bytes (AVX-512),
    the polynomial one otherwise."""

    def __init__(self, ops):
        self.ops = ops
        builder = ops.builder
        scalar = ops.vector.element
        self.bits = 64 if isinstance(scalar, ir.DoubleType) else 32
        self.int_vector = ir.VectorType(ir.IntType(self.bits), ops.lanes)
        self.table = ops.lanes * self.bits == 512
        if self.table:
            self._setup_table(builder)

    def constant(self, value):
        return self.ops.splat(ir.Constant(self.ops.vector.element, float(value)))

    def int_constant(self, value):
        return ir.Constant(self.int_vector, [value] * self.ops.lanes)

    def _setup_table(self, builder):
        ops = self.ops
        entries = [
            ir.Constant(ir.IntType(self.bits), v) for v in _table_entries(self.bits)
        ]
        if self.bits == 64:
            low = ir.Constant(self.int_vector, entries[:8])
            high = ir.Constant(self.int_vector, entries[8:])
            self.table_low = builder.bitcast(low, ops.vector)
            self.table_high = builder.bitcast(high, ops.vector)
            self.permute = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ops.vector, [ops.vector, self.int_vector, ops.vector]),
                "llvm.x86.avx512.vpermi2var.pd.512",
            )
        else:
            self.table_low = builder.bitcast(
                ir.Constant(self.int_vector, entries), ops.vector
            )
            self.permute = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(ops.vector, [ops.vector, self.int_vector]),
                "llvm.x86.avx512.permvar.sf.512",
            )

    def __call__(self, x):
        value = self._table_exp(x) if self.table else self._polynomial_exp(x)
        ops = self.ops
        minimum = _EXP_MIN if self.bits == 64 else _F32_EXP_MIN
        # Ordered: NaN compares false and gives 0 too.
        keep = ops.builder.fcmp_ordered(">=", x, self.constant(minimum))
        return ops.builder.select(keep, value, ops.zero)

    def _reduce(self, x, scale, shifter, ln2_hi, ln2_lo):
        """``(shifted, r)``: ``x scale + shifter`` (whose low bits hold ``i =
        round(x scale)``) and ``r = x - i (ln2_hi + ln2_lo)``."""
        ops = self.ops
        builder = ops.builder
        shifted = ops.fma(x, self.constant(scale), self.constant(shifter))
        i = builder.fsub(shifted, self.constant(shifter))
        r = ops.fma(i, self.constant(-ln2_hi), x)
        r = ops.fma(i, self.constant(-ln2_lo), r)
        return shifted, r

    def _horner(self, r, coefficients):
        ops = self.ops
        p = self.constant(coefficients[-1])
        for c in reversed(coefficients[:-1]):
            p = ops.fma(p, r, self.constant(c))
        return p

    def _table_exp(self, x):
        ops = self.ops
        builder = ops.builder
        if self.bits == 64:
            constants = (
                _TABLE_SCALE,
                _TABLE_SHIFTER,
                _TABLE_LN2_HI,
                _TABLE_LN2_LO,
                _TABLE_POLY,
            )
            shift = 52 - 4
        else:
            constants = (
                float(np.float32(_TABLE_SCALE)),
                _F32_TABLE_SHIFTER,
                _F32_TABLE_LN2_HI,
                _F32_TABLE_LN2_LO,
                _F32_TABLE_POLY,
            )
            shift = 23 - 4
        scale, shifter, ln2_hi, ln2_lo, poly = constants
        shifted, r = self._reduce(x, scale, shifter, ln2_hi, ln2_lo)
        expm1 = builder.fmul(self._horner(r, poly), r)
        index = builder.bitcast(shifted, self.int_vector)
        if self.bits == 64:
            entry = builder.call(self.permute, [self.table_low, index, self.table_high])
        else:
            entry = builder.call(self.permute, [self.table_low, index])
        # 2^(j/16) with k added to its exponent (the index's low bits, j,
        # were taken out of the entries).
        power_bits = builder.add(
            builder.bitcast(entry, self.int_vector),
            builder.shl(index, self.int_constant(shift)),
        )
        power = builder.bitcast(power_bits, ops.vector)
        return ops.fma(power, expm1, power)

    def _polynomial_exp(self, x):
        ops = self.ops
        builder = ops.builder
        if self.bits == 64:
            constants = (_LOG2E, _SHIFTER, _LN2_HI, _LN2_LO, _POLY)
            shift = 52
        else:
            constants = (_LOG2E, _F32_SHIFTER, _F32_LN2_HI, _F32_LN2_LO, _F32_POLY)
            shift = 23
        scale, shifter, ln2_hi, ln2_lo, poly = constants
        shifted, r = self._reduce(x, scale, shifter, ln2_hi, ln2_lo)
        p = self._horner(r, poly)
        power_bits = builder.shl(
            builder.bitcast(shifted, self.int_vector), self.int_constant(shift)
        )
        return builder.fmul(p, builder.bitcast(power_bits, ops.vector))


@intrinsic
def shifted_exponentials(typingctx, L, nb, rowmax, E, total):
    """``rowmax[b] = max_k L[k, b]``, ``E[k, b] = exp(L[k, b] - rowmax[b])``
    and ``total[b] = sum_k E[k, b]`` for the first ``nb`` columns of the
    ``(K, B)`` block ``L`` (the stable log-sum-exp: every exponent is <= 0,
    and ``log sum_k exp(L[k, b]) = rowmax[b] + log total[b]``).

    ``L`` and ``E`` are ``(K, B)``, ``rowmax`` and ``total`` ``(B,)``, all
    C-contiguous and of one float dtype; nothing past column ``nb - 1`` is
    read or written (the last partial vector of rows is masked).  A row
    whose every ``L`` is ``-inf`` gets ``rowmax = -inf`` and ``E = 0``.
    """
    arrays = (L, rowmax, E, total)
    if not all(
        _is_float_array(a, n) for a, n in zip(arrays, (2, 1, 2, 1), strict=True)
    ):
        return None
    if len({a.dtype for a in arrays}) != 1 or not isinstance(nb, types.Integer):
        return None
    sig = types.void(L, nb, rowmax, E, total)

    def codegen(context, builder, signature, args):
        L_type, nb_type, rowmax_type, E_type, total_type = signature.args
        ops = _VectorOps(context, builder, L_type.dtype)
        intp = ops.intp
        L_arr, _, rowmax_arr, E_arr, total_arr = unpack_arrays(
            context, builder, signature, args
        )
        nb_value = context.cast(builder, args[1], nb_type, types.intp)
        K = cgutils.unpack_tuple(builder, L_arr.shape, 2)[0]
        exp = _Exponential(ops)
        running = [cgutils.alloca_once(builder, ops.vector) for _ in range(2)]
        summed = [cgutils.alloca_once(builder, ops.vector) for _ in range(2)]
        lanes = ops.lanes
        alignment = ir.IntType(32)(ops.align)
        suffix = f"v{lanes}f{64 if ops.align == 8 else 32}.p0"
        mask_type = ir.VectorType(ir.IntType(1), lanes)

        def masked_load(pointer_type):
            return cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(
                    ops.vector, [pointer_type, alignment.type, mask_type, ops.vector]
                ),
                f"llvm.masked.load.{suffix}",
            )

        def masked_store(pointer_type):
            return cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(
                    ir.VoidType(), [ops.vector, pointer_type, alignment.type, mask_type]
                ),
                f"llvm.masked.store.{suffix}",
            )

        def row_vectors(rows, mask=None):
            """The vectors of rows starting at each of ``rows`` (one or two;
            two interleave their chains of maxima and sums)."""

            def load(array_type, array, indices):
                if mask is None:
                    return ops.load(array_type, array, indices)
                # Lanes past nb read as 0 and are never stored: the tail
                # touches no memory past the row nb - 1.
                pointer = ops.vector_pointer(array_type, array, indices)
                return builder.call(
                    masked_load(pointer.type), [pointer, alignment, mask, ops.zero]
                )

            def store(value, array_type, array, indices):
                if mask is None:
                    return ops.store(value, array_type, array, indices)
                pointer = ops.vector_pointer(array_type, array, indices)
                builder.call(
                    masked_store(pointer.type), [value, pointer, alignment, mask]
                )

            for i, b in enumerate(rows):
                builder.store(load(L_type, L_arr, [intp(0), b]), running[i])
            with cgutils.for_range(builder, builder.sub(K, intp(1))) as loop:
                k = builder.add(loop.index, intp(1))
                for i, b in enumerate(rows):
                    value = load(L_type, L_arr, [k, b])
                    current = builder.load(running[i])
                    larger = builder.fcmp_ordered(">", value, current)
                    builder.store(builder.select(larger, value, current), running[i])
            tops = [builder.load(running[i]) for i in range(len(rows))]
            for i in range(len(rows)):
                builder.store(ops.zero, summed[i])
            with cgutils.for_range(builder, K) as loop:
                for i, b in enumerate(rows):
                    x = builder.fsub(load(L_type, L_arr, [loop.index, b]), tops[i])
                    e = exp(x)
                    store(e, E_type, E_arr, [loop.index, b])
                    builder.store(builder.fadd(builder.load(summed[i]), e), summed[i])
            for i, b in enumerate(rows):
                store(tops[i], rowmax_type, rowmax_arr, [b])
                store(builder.load(summed[i]), total_type, total_arr, [b])

        n_whole = builder.sdiv(nb_value, intp(lanes))
        with cgutils.for_range(builder, builder.sdiv(n_whole, intp(2))) as pair:
            first = builder.mul(pair.index, intp(2 * lanes))
            row_vectors([first, builder.add(first, intp(lanes))])
        with cgutils.if_unlikely(builder, builder.trunc(n_whole, ir.IntType(1))):
            row_vectors([builder.mul(builder.sub(n_whole, intp(1)), intp(lanes))])
        tail = builder.sub(nb_value, builder.mul(n_whole, intp(lanes)))
        with cgutils.if_unlikely(builder, builder.icmp_signed(">", tail, intp(0))):
            row_vectors([builder.mul(n_whole, intp(lanes))], _lane_mask(ops, tail))
        return context.get_dummy_value()

    return sig, codegen
