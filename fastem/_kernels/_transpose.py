"""Moving rows into blocks: an 8 x 8 SIMD tile transpose and a prefetch hint.

Every fused kernel starts a block by copying ``nb`` rows of ``X`` into the
columns of a ``(D, B)`` buffer.  Written as scalar loops, that copy is one
load, one subtraction and one strided store per element, and it took a
quarter to a third of a single-threaded E-step (16x16 and 64x16 spherical,
500,000 rows: 4.9 of 19 ms and 27 of 70 ms).  LLVM does not vectorise it:
the stores of one row go to D different buffer rows.

:func:`transpose_tile` loads eight row segments of eight features as
vectors, subtracts the centre, transposes the 8 x 8 tile in registers with
three rounds of two-vector interleaves (``shufflevector``; one
``vpermt2pd`` each with AVX-512) and stores eight contiguous vectors.  The
per-row kernels use it the other way round, to write a block's ``(K, B)``
posteriors, scaled by each row's normaliser, into rows of the ``(N, K)``
output.  It is written with numba's public ``intrinsic`` extension API and
plain LLVM IR, so it compiles for any target (tested with numba's
``haswell`` and ``generic`` CPUs too; a target without 512-bit vectors
splits them).

:func:`prefetch` asks for a cache line of ``X`` ahead of the rows being
loaded (the hardware prefetcher alone left the D = 16 load waiting on
memory; see ``PREFETCH_BYTES`` in ``_blocks.py``).
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


def _vector_at(context, builder, array_type, array, indices):
    """Pointer to the 8-vector of ``array``'s dtype starting at ``indices``,
    and its alignment (the element size: block rows are not assumed to be
    vector-aligned)."""
    pointer = cgutils.get_item_pointer(
        context, builder, array_type, array, indices, wraparound=False
    )
    vector_type = ir.VectorType(context.get_value_type(array_type.dtype), TILE)
    return builder.bitcast(pointer, vector_type.as_pointer()), (
        array_type.dtype.bitwidth // 8
    )


def _load_vector(context, builder, array_type, array, indices):
    pointer, align = _vector_at(context, builder, array_type, array, indices)
    return builder.load(pointer, align=align)


def _is_c_matrix(arg):
    return isinstance(arg, types.Array) and arg.ndim == 2 and arg.layout == "C"


_OPERATIONS = {"sub": "fsub", "mul": "fmul"}


@intrinsic
def transpose_tile(typingctx, src, r, c, vec, op, dst, dr, dc):
    """``dst[dr + j, dc + i] = src[r + i, c + j] <op> vec[c + j]`` for ``i, j
    < 8``, ``op`` the literal ``"sub"`` or ``"mul"``.

    ``src`` and ``dst`` are C-contiguous 2-d arrays, ``dst`` of a float
    dtype; ``vec`` is a 1-d C-contiguous float array or ``None`` (a plain
    transposed copy).  Each value is first converted to ``dst``'s dtype and
    then combined with ``vec`` in the wider of the two dtypes, as the scalar
    statements ``dst[..] = src[..]; dst[..] -= vec[..]`` would (so float32
    rows loaded into a float64 block are centred in float64).  No bounds are
    checked: the caller guarantees that both 8 x 8 tiles (and ``vec[c:c +
    8]``) lie inside the arrays.
    """
    with_vec = not isinstance(vec, (types.NoneType, types.Omitted))
    if not (_is_c_matrix(src) and _is_c_matrix(dst)):
        return None
    if not isinstance(dst.dtype, types.Float):
        return None
    if not isinstance(src.dtype, (types.Float, types.Integer)):
        return None
    if not (isinstance(op, types.StringLiteral) and op.literal_value in _OPERATIONS):
        return None
    if with_vec and not (
        isinstance(vec, types.Array)
        and vec.ndim == 1
        and vec.layout == "C"
        and isinstance(vec.dtype, types.Float)
    ):
        return None
    if not all(isinstance(i, types.Integer) for i in (r, c, dr, dc)):
        return None
    sig = types.void(src, r, c, vec, op, dst, dr, dc)
    operation = _OPERATIONS[op.literal_value]

    def codegen(context, builder, signature, args):
        src_type, _, _, vec_type, _, dst_type, _, _ = signature.args
        src_arr = context.make_array(src_type)(context, builder, args[0])
        dst_arr = context.make_array(dst_type)(context, builder, args[5])
        intp = context.get_value_type(types.intp)
        r0, c0, dr0, dc0 = (
            context.cast(builder, args[i], signature.args[i], types.intp)
            for i in (1, 2, 6, 7)
        )
        store = dst_type.dtype
        work = store
        if with_vec:
            vec_arr = context.make_array(vec_type)(context, builder, args[3])
            work = typingctx.unify_types(store, vec_type.dtype)
            operand = _load_vector(context, builder, vec_type, vec_arr, [c0])
            operand = _convert(context, builder, operand, vec_type.dtype, work)
        rows = []
        for i in range(TILE):
            row = _load_vector(
                context,
                builder,
                src_type,
                src_arr,
                [builder.add(r0, intp(i)), c0],
            )
            row = _convert(context, builder, row, src_type.dtype, store)
            if with_vec:
                row = _convert(context, builder, row, store, work)
                row = getattr(builder, operation)(row, operand)
                row = _convert(context, builder, row, work, store)
            rows.append(row)
        for _ in range(3):
            rows = [
                _interleave(builder, rows[i], rows[i + TILE // 2], high)
                for i in range(TILE // 2)
                for high in (False, True)
            ]
        for j, row in enumerate(rows):
            pointer, align = _vector_at(
                context, builder, dst_type, dst_arr, [builder.add(dr0, intp(j)), dc0]
            )
            builder.store(row, pointer, align=align)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def prefetch(typingctx, array, byte_offset):
    """Hint that the cache line holding byte ``byte_offset`` of ``array``'s
    data will be read soon (``llvm.prefetch``: no effect on results, never
    faults).  ``array`` is C-contiguous."""
    if not (isinstance(array, types.Array) and array.layout == "C"):
        return None
    if not isinstance(byte_offset, types.Integer):
        return None
    sig = types.void(array, byte_offset)

    def codegen(context, builder, signature, args):
        array_type, offset_type = signature.args
        data = context.make_array(array_type)(context, builder, args[0]).data
        byte_pointer = ir.IntType(8).as_pointer()
        offset = context.cast(builder, args[1], offset_type, types.intp)
        address = builder.gep(builder.bitcast(data, byte_pointer), [offset])
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
            "llvm.prefetch.p0",
        )
        # read, highest temporal locality (into L1), data cache
        builder.call(function, [address, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen
