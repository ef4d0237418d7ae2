"""Register-blocked SIMD micro-kernels for the triangular products of the
full and tied log-densities.

The squared Mahalanobis norms ``||x_b^T U - o||^2`` are the inner work of
every full-covariance E-step: ``D (D + 1) / 2`` multiply-adds per row and
component (the tied E-step forms ``x^T U`` once per row).  Written as numba
loops, the rows of the block were the vectorised (innermost) loop, so every
partial column of ``x^T U`` lived in memory: the 4 x 4 tile made 8 loads and
4 stores for 16 FMAs, and an AVX-512 core that issues about one such memory
operation per cycle ran it at 11.1 cycles per iteration against 8 for the
FMAs alone.  LLVM's loop vectoriser only vectorises innermost loops, so it
cannot keep those partial columns in registers across the features.

These kernels do, in plain LLVM IR written with numba's ``intrinsic`` API
(as :mod:`fastem._kernels._transpose` does for its tiles): for ``V`` vectors
of rows (32 rows of float64 with AVX-512) and four columns of ``U`` at a
time, ``4 V`` accumulators stay in registers while the features ``i``
stream past (``V`` vector loads of ``x`` and four broadcasts of ``U[i, j ..
j + 3]`` feed ``4 V`` FMAs).  :func:`upper_tri_sq_norms` starts each column
at ``-o`` and squares the finished columns into ``V`` running norms, so
nothing is stored until a row's norm is complete; :func:`upper_tri_product`
stores the four finished columns.  One thread, block in L1, 16 components
per 10^6 rows: the norms at D = 16 took 77 ms in numba loops and take 48
(the FMA bound is about 46), at D = 64 985 -> 695 ms; the product 5.3 ->
3.3-3.6 ms at D = 16 and 66 -> 45 ms at D = 64.  They also compile in a
fraction of the time the numba loops took (the first tied fit of a cold
cache: 5.3 -> 4.8 s).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import WIDE_VECTORS

#: Columns of ``U`` per sweep over the features.
COLUMNS = 4


def _vector_bytes(context) -> int:
    """64 when numba compiles for a CPU with AVX-512 (32 vector registers)
    and ``FASTEM_WIDE_VECTORS`` is not ``0``, 32 otherwise (also if numba's
    code generator no longer lists the target's features)."""
    features = getattr(context.codegen(), "_tm_features", "") or ""
    wide = WIDE_VECTORS and "+avx512f" in features.split(",")
    return 64 if wide else 32


def _row_vectors(vector_bytes: int) -> int:
    """Vectors of rows per tile: ``4 V`` accumulators, ``V`` norms and the
    four broadcasts fit in 32 registers for ``V = 4`` and 16 for ``V = 2``."""
    return 4 if vector_bytes == 64 else 2


def _is_float_array(arg, ndim):
    return (
        isinstance(arg, types.Array)
        and arg.ndim == ndim
        and arg.layout == "C"
        and isinstance(arg.dtype, types.Float)
    )


def _check(diff, nb, U, arrays):
    """The signature of a kernel on ``diff`` ``(D, B)``, ``nb`` rows and
    ``U`` ``(D, D)`` plus 1-d or 2-d ``arrays``, or None if a type does not
    fit (all C-contiguous, one float dtype)."""
    if not (_is_float_array(diff, 2) and _is_float_array(U, 2)):
        return None
    if not all(
        isinstance(a, types.Array) and _is_float_array(a, a.ndim) for a in arrays
    ):
        return None
    if len({diff.dtype, U.dtype, *(a.dtype for a in arrays)}) != 1:
        return None
    if not isinstance(nb, types.Integer):
        return None
    return types.void(diff, nb, U, *arrays)


def _upper_tri_codegen(context, builder, signature, args, finish):
    """The loops shared by both kernels: for every tile of ``V`` vectors of
    rows and every group of four columns ``jj .. jj + 3`` of ``U``, the
    columns of ``x^T U`` are summed in registers and handed to ``finish``."""
    diff_type, nb_type, U_type = signature.args[:3]
    dtype = diff_type.dtype
    scalar = context.get_value_type(dtype)
    vector_bytes = _vector_bytes(context)
    lanes = vector_bytes * 8 // dtype.bitwidth
    vector = ir.VectorType(scalar, lanes)
    intp = context.get_value_type(types.intp)
    diff_arr = context.make_array(diff_type)(context, builder, args[0])
    U_arr = context.make_array(U_type)(context, builder, args[2])
    nb_value = context.cast(builder, args[1], nb_type, types.intp)
    D = cgutils.unpack_tuple(builder, diff_arr.shape, 2)[0]
    fma_function = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(vector, [vector, vector, vector]),
        f"llvm.fma.v{lanes}{'f64' if dtype.bitwidth == 64 else 'f32'}",
    )
    ops = _VectorOps(context, builder, vector, lanes, dtype, fma_function)

    def coefficient(i, j):
        return ops.splat(builder.load(ops.pointer(U_type, U_arr, [i, j])))

    V = _row_vectors(vector_bytes)
    accumulators = [
        [cgutils.alloca_once(builder, vector) for _ in range(V)] for _ in range(COLUMNS)
    ]
    last_index = builder.sub(D, intp(1))

    def clamp(index):
        return builder.select(
            builder.icmp_signed(">", index, last_index), last_index, index
        )

    def group(rows, jj, columns, counted):
        """Columns ``columns`` (``jj + c``) of ``x^T U`` for the rows."""
        width = len(rows)
        for c in range(COLUMNS):
            start = finish.initial(ops, columns[c])
            for w in range(width):
                builder.store(start, accumulators[c][w])

        def add_row(i, first_column):
            xs = [ops.load(diff_type, diff_arr, [i, rows[w]]) for w in range(width)]
            for c in range(first_column, COLUMNS):
                u = coefficient(i, columns[c])
                for w in range(width):
                    a = accumulators[c][w]
                    builder.store(ops.fma(xs[w], u, builder.load(a)), a)

        # acc[c] += x_i U[i, jj + c] over the features above the 4 x 4
        # triangle on the diagonal, then the triangle: x_{jj + r} feeds the
        # columns c >= r.
        with cgutils.for_range(builder, jj) as feature:
            add_row(feature.index, 0)
        for r in range(COLUMNS):
            add_row(columns[r], r)
        values = [
            [builder.load(accumulators[c][w]) for w in range(width)]
            for c in range(COLUMNS)
        ]
        finish.group(ops, rows, values, columns, counted)

    def tile(first_row, width):
        rows = [builder.add(first_row, intp(w * ops.lanes)) for w in range(width)]
        finish.start(ops, rows)
        n_whole = builder.sdiv(D, intp(COLUMNS))
        with cgutils.for_range(builder, n_whole) as whole_group:
            jj = builder.mul(whole_group.index, intp(COLUMNS))
            group(rows, jj, [builder.add(jj, intp(c)) for c in range(COLUMNS)], None)
        # The last D mod 4 columns: the group moves back to columns D - 4 ..
        # D - 1 and leaves out those the previous group finished (each column
        # sums the same products in the same order in either group).  With
        # D < 4 it starts at 0, and the indices past D - 1 are clamped and
        # their columns left out.
        j = builder.mul(n_whole, intp(COLUMNS))
        with cgutils.if_unlikely(builder, builder.icmp_signed("<", j, D)):
            jj = builder.sub(D, intp(COLUMNS))
            jj = builder.select(builder.icmp_signed("<", jj, intp(0)), intp(0), jj)
            columns = [builder.add(jj, intp(c)) for c in range(COLUMNS)]
            counted = [
                builder.and_(
                    builder.icmp_signed(">=", column, j),
                    builder.icmp_signed("<", column, D),
                )
                for column in columns
            ]
            group(rows, jj, [clamp(column) for column in columns], counted)
        finish.end(ops, rows)

    n_vectors = builder.sdiv(builder.add(nb_value, intp(lanes - 1)), intp(lanes))
    whole = builder.sdiv(n_vectors, intp(V))
    with cgutils.for_range(builder, whole) as chunk:
        tile(builder.mul(chunk.index, intp(V * lanes)), V)
    rest = builder.sub(n_vectors, builder.mul(whole, intp(V)))
    with cgutils.for_range(builder, rest) as extra:
        first = builder.add(builder.mul(whole, intp(V)), extra.index)
        tile(builder.mul(first, intp(lanes)), 1)


class _VectorOps:
    """Vector loads, stores and arithmetic of one dtype and width."""

    def __init__(self, context, builder, vector, lanes, dtype, fma_function):
        self.context = context
        self.builder = builder
        self.vector = vector
        self.lanes = lanes
        self.align = dtype.bitwidth // 8
        self.fma_function = fma_function
        self.intp = context.get_value_type(types.intp)
        scalar = vector.element
        self.zero = ir.Constant(vector, [ir.Constant(scalar, 0.0)] * lanes)

    def pointer(self, array_type, array, indices):
        return cgutils.get_item_pointer(
            self.context, self.builder, array_type, array, indices, wraparound=False
        )

    def vector_pointer(self, array_type, array, indices):
        p = self.pointer(array_type, array, indices)
        return self.builder.bitcast(p, self.vector.as_pointer())

    def load(self, array_type, array, indices):
        p = self.vector_pointer(array_type, array, indices)
        return self.builder.load(p, align=self.align)

    def store(self, value, array_type, array, indices):
        p = self.vector_pointer(array_type, array, indices)
        self.builder.store(value, p, align=self.align)

    def splat(self, value):
        i32 = ir.IntType(32)
        undef = ir.Constant(self.vector, ir.Undefined)
        one = self.builder.insert_element(undef, value, i32(0))
        mask = ir.Constant(ir.VectorType(i32, self.lanes), [0] * self.lanes)
        return self.builder.shuffle_vector(one, undef, mask)

    def fma(self, a, b, c):
        return self.builder.call(self.fma_function, [a, b, c])


class _SquaredNorms:
    """``out[b] += ||columns - off||^2``: each column starts from ``-off``
    and the norms stay in registers until the last group."""

    def __init__(self, off_type, off_arr, out_type, out_arr):
        self.off_type, self.off_arr = off_type, off_arr
        self.out_type, self.out_arr = out_type, out_arr
        self.norms = []

    def start(self, ops, rows):
        while len(self.norms) < len(rows):
            self.norms.append(cgutils.alloca_once(ops.builder, ops.vector))
        for w in range(len(rows)):
            ops.builder.store(ops.zero, self.norms[w])

    def initial(self, ops, column):
        builder = ops.builder
        o = builder.load(ops.pointer(self.off_type, self.off_arr, [column]))
        return ops.splat(builder.fneg(o))

    def group(self, ops, rows, values, columns, counted):
        builder = ops.builder
        for c, column_values in enumerate(values):
            weight = None
            if counted is not None:
                # 1 or 0: a multiplication, not a select, which LLVM turned
                # into branches around the FMAs.
                weight = ops.splat(builder.uitofp(counted[c], ops.vector.element))
            for w, t in enumerate(column_values):
                n = self.norms[w]
                scaled = t if weight is None else builder.fmul(t, weight)
                builder.store(ops.fma(scaled, t, builder.load(n)), n)

    def end(self, ops, rows):
        builder = ops.builder
        for w, row in enumerate(rows):
            total = builder.fadd(
                ops.load(self.out_type, self.out_arr, [row]),
                builder.load(self.norms[w]),
            )
            ops.store(total, self.out_type, self.out_arr, [row])


class _Columns:
    """``y[jj + c, b]`` = the column values."""

    def __init__(self, y_type, y_arr):
        self.y_type, self.y_arr = y_type, y_arr

    def start(self, ops, rows):
        pass

    def initial(self, ops, column):
        return ops.zero

    def group(self, ops, rows, values, columns, counted):
        for c, column_values in enumerate(values):
            if counted is None:
                self._store(ops, rows, column_values, columns[c])
            else:
                with cgutils.if_likely(ops.builder, counted[c]):
                    self._store(ops, rows, column_values, columns[c])

    def _store(self, ops, rows, column_values, column):
        for w, value in enumerate(column_values):
            ops.store(value, self.y_type, self.y_arr, [column, rows[w]])

    def end(self, ops, rows):
        pass


@intrinsic
def upper_tri_sq_norms(typingctx, diff, nb, U, off, out):
    """``out[b] += ||diff[:, b]^T U - off||^2`` for upper-triangular ``U``.

    ``diff`` is ``(D, B)`` (rows of the block in columns), ``U`` is ``(D,
    D)`` (entries below the diagonal are never read), ``off`` is ``(D,)``
    and ``out`` is ``(B,)``, all C-contiguous and of one float dtype.  With
    ``off = mu^T U`` the result is the squared norm of ``(x - mu)^T U``
    without forming ``x - mu``.  Rows go a SIMD vector at a time up to the
    vector that holds row ``nb - 1``: the caller guarantees that ``B`` is a
    multiple of the vector width (64 bytes with AVX-512, 32 otherwise; every
    block buffer is a multiple of 64 bytes); the entries of ``out`` past
    ``nb`` are overwritten with values of no meaning.
    """
    sig = _check(diff, nb, U, (off, out))
    if sig is None or off.ndim != 1 or out.ndim != 1:
        return None

    def codegen(context, builder, signature, args):
        off_type, out_type = signature.args[3:]
        finish = _SquaredNorms(
            off_type,
            context.make_array(off_type)(context, builder, args[3]),
            out_type,
            context.make_array(out_type)(context, builder, args[4]),
        )
        _upper_tri_codegen(context, builder, signature, args, finish)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def upper_tri_product(typingctx, x, nb, U, y):
    """``y[j, b] = sum_{i <= j} x[i, b] U[i, j]`` (``y = (x^T U)^T``) for
    upper-triangular ``U``; ``x`` and ``y`` are ``(D, B)``, ``U`` ``(D,
    D)``, as in :func:`upper_tri_sq_norms` (whose conditions on ``B`` and
    the rows past ``nb`` apply)."""
    sig = _check(x, nb, U, (y,))
    if sig is None or y.ndim != 2:
        return None

    def codegen(context, builder, signature, args):
        y_type = signature.args[3]
        finish = _Columns(y_type, context.make_array(y_type)(context, builder, args[3]))
        _upper_tri_codegen(context, builder, signature, args, finish)
        return context.get_dummy_value()

    return sig, codegen
