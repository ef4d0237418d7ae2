"""A SIMD 8 x 8 tile transpose: rows of ``X`` into columns of a block.

Every fused kernel starts a block by copying ``nb`` rows of ``X`` into the
columns of a ``(D, B)`` buffer.  Written as scalar loops, that copy is one
load, one subtraction and one strided store per element, and it took a
quarter to a third of a single-threaded E-step (16x16 and 64x16 spherical,
500,000 rows: 4.9 of 19 ms and 27 of 70 ms).  LLVM does not vectorise it:
the stores of one row go to D different buffer rows.

:func:`load_tile` loads eight row segments of eight features as vectors,
subtracts the centre, transposes the 8 x 8 tile in registers with three
rounds of two-vector interleaves (``shufflevector``; one ``vpermt2pd`` each
with AVX-512) and stores eight contiguous vectors.  It is written with
numba's public ``intrinsic`` extension API and plain LLVM IR, so it compiles
on any target (a target without 512-bit vectors splits the vectors).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Rows and features per tile.
TILE = 8


def _interleave(builder, a, b, high):
    """``[a0, b0, a1, b1, a2, b2, a3, b3]`` (or the upper halves' elements,
    ``[a4, b4, ..., a7, b7]``, when ``high``).  Applied to rows ``i`` and
    ``i + 4`` of an 8 x 8 tile for ``i < 4`` (outputs ``2i`` and ``2i + 1``),
    three times, it transposes the tile: each round moves one bit of the
    column index into the row index."""
    base = TILE // 2 if high else 0
    mask = []
    for i in range(TILE // 2):
        mask += [base + i, TILE + base + i]
    return builder.shuffle_vector(
        a, b, ir.Constant(ir.VectorType(ir.IntType(32), TILE), mask)
    )


def _convert(context, builder, value, from_type, to_type):
    """Element-wise conversion of a vector between numba scalar types."""
    if from_type == to_type:
        return value
    to_vec = ir.VectorType(context.get_value_type(to_type), TILE)
    if isinstance(from_type, types.Float):
        if from_type.bitwidth < to_type.bitwidth:
            return builder.fpext(value, to_vec)
        return builder.fptrunc(value, to_vec)
    if from_type.signed:
        return builder.sitofp(value, to_vec)
    return builder.uitofp(value, to_vec)


def _load_vector(context, builder, array_type, array, indices, elem_type):
    pointer = cgutils.get_item_pointer(
        context, builder, array_type, array, indices, wraparound=False
    )
    vector_type = ir.VectorType(context.get_value_type(elem_type), TILE)
    return builder.load(
        builder.bitcast(pointer, vector_type.as_pointer()),
        align=elem_type.bitwidth // 8,
    )


def _is_c_matrix(arg):
    return isinstance(arg, types.Array) and arg.ndim == 2 and arg.layout == "C"


@intrinsic
def load_tile(typingctx, X, r, d, center, xt, b):
    """``xt[d + j, b + i] = X[r + i, d + j] - center[d + j]`` for ``i, j < 8``.

    ``X`` and ``xt`` are C-contiguous 2-d arrays, ``xt`` of a float dtype;
    ``center`` is a 1-d C-contiguous array or ``None`` (no shift).  The
    subtraction is done in the wider of the dtypes of ``X`` and ``center``
    and the result converted to ``xt``'s dtype, as the scalar expression
    would.  No bounds are checked: the caller guarantees ``r + 8 <=
    X.shape[0]``, ``d + 8 <= X.shape[1]``, ``d + 8 <= xt.shape[0]`` and
    ``b + 8 <= xt.shape[1]``.
    """
    centered = not isinstance(center, (types.NoneType, types.Omitted))
    if not (_is_c_matrix(X) and _is_c_matrix(xt)):
        return None
    if not isinstance(xt.dtype, types.Float):
        return None
    if not isinstance(X.dtype, (types.Float, types.Integer)):
        return None
    if centered and not (
        isinstance(center, types.Array)
        and center.ndim == 1
        and center.layout == "C"
        and isinstance(center.dtype, types.Float)
    ):
        return None
    if not all(isinstance(i, types.Integer) for i in (r, d, b)):
        return None
    sig = types.void(X, r, d, center, xt, b)

    def codegen(context, builder, signature, args):
        x_type, r_type, d_type, c_type, xt_type, b_type = signature.args
        x_arr = context.make_array(x_type)(context, builder, args[0])
        xt_arr = context.make_array(xt_type)(context, builder, args[4])
        intp = context.get_value_type(types.intp)
        r0 = context.cast(builder, args[1], r_type, types.intp)
        d0 = context.cast(builder, args[2], d_type, types.intp)
        b0 = context.cast(builder, args[5], b_type, types.intp)
        work = x_type.dtype
        if centered:
            c_arr = context.make_array(c_type)(context, builder, args[3])
            work = typingctx.unify_types(x_type.dtype, c_type.dtype)
            if not isinstance(work, types.Float):
                work = c_type.dtype
            shift = _load_vector(context, builder, c_type, c_arr, [d0], c_type.dtype)
            shift = _convert(context, builder, shift, c_type.dtype, work)
        rows = []
        for i in range(TILE):
            row = _load_vector(
                context,
                builder,
                x_type,
                x_arr,
                [builder.add(r0, intp(i)), d0],
                x_type.dtype,
            )
            row = _convert(context, builder, row, x_type.dtype, work)
            if centered:
                row = builder.fsub(row, shift)
            rows.append(_convert(context, builder, row, work, xt_type.dtype))
        for _ in range(3):
            rows = [
                _interleave(builder, rows[i], rows[i + TILE // 2], high)
                for i in range(TILE // 2)
                for high in (False, True)
            ]
        vector_type = ir.VectorType(context.get_value_type(xt_type.dtype), TILE)
        for j, row in enumerate(rows):
            pointer = cgutils.get_item_pointer(
                context,
                builder,
                xt_type,
                xt_arr,
                [builder.add(d0, intp(j)), b0],
                wraparound=False,
            )
            builder.store(
                row,
                builder.bitcast(pointer, vector_type.as_pointer()),
                align=xt_type.dtype.bitwidth // 8,
            )
        return context.get_dummy_value()

    return sig, codegen
