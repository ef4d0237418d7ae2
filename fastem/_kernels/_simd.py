"""Register-blocked SIMD micro-kernels: the triangular products of the full
and tied log-densities, the squared distances of the spherical and tied
ones, and the block scatter of every full-covariance second moment.

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


def unpack_arrays(context, builder, signature, args):
    """numba's array structures of an intrinsic's arguments (None for the
    arguments that are not arrays), in order."""
    return [
        context.make_array(t)(context, builder, a)
        if isinstance(t, types.Array)
        else None
        for t, a in zip(signature.args, args, strict=True)
    ]


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
    ops = _VectorOps(context, builder, diff_type.dtype)
    intp = ops.intp
    diff_arr = context.make_array(diff_type)(context, builder, args[0])
    U_arr = context.make_array(U_type)(context, builder, args[2])
    nb_value = context.cast(builder, args[1], nb_type, types.intp)
    D = cgutils.unpack_tuple(builder, diff_arr.shape, 2)[0]

    def coefficient(i, j):
        return ops.splat(builder.load(ops.pointer(U_type, U_arr, [i, j])))

    V = ops.tile_vectors
    accumulators = [
        [cgutils.alloca_once(builder, ops.vector) for _ in range(V)]
        for _ in range(COLUMNS)
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

    ops.for_row_tiles(nb_value, tile)


class _VectorOps:
    """Vector loads, stores and arithmetic for numba's float ``dtype``, at
    the width of :func:`_vector_bytes`, and the loop over tiles of rows."""

    def __init__(self, context, builder, dtype):
        vector_bytes = _vector_bytes(context)
        self.context = context
        self.builder = builder
        self.lanes = vector_bytes * 8 // dtype.bitwidth
        self.vector = ir.VectorType(context.get_value_type(dtype), self.lanes)
        self.tile_vectors = _row_vectors(vector_bytes)
        self.align = dtype.bitwidth // 8
        self.fma_function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(self.vector, [self.vector] * 3),
            f"llvm.fma.v{self.lanes}{'f64' if dtype.bitwidth == 64 else 'f32'}",
        )
        self.intp = context.get_value_type(types.intp)
        scalar = self.vector.element
        self.zero = ir.Constant(self.vector, [ir.Constant(scalar, 0.0)] * self.lanes)

    def for_row_tiles(self, nb, tile):
        """``tile(first_row, width)`` for tiles of ``width`` vectors of rows
        covering rows ``0 .. nb - 1``: ``tile_vectors`` wide, then single
        vectors."""
        builder, intp, lanes = self.builder, self.intp, self.lanes
        V = self.tile_vectors
        n_vectors = builder.sdiv(builder.add(nb, intp(lanes - 1)), intp(lanes))
        whole = builder.sdiv(n_vectors, intp(V))
        with cgutils.for_range(builder, whole) as chunk:
            tile(builder.mul(chunk.index, intp(V * lanes)), V)
        rest = builder.sub(n_vectors, builder.mul(whole, intp(V)))
        with cgutils.for_range(builder, rest) as extra:
            first = builder.add(builder.mul(whole, intp(V)), extra.index)
            tile(builder.mul(first, intp(lanes)), 1)

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

    def for_row_vectors(self, nb, body):
        """``body(first_row, mask)`` for every vector of rows ``0 .. nb -
        1``: the whole vectors with ``mask`` None, then the last partial one
        with ``mask`` true for the lanes before ``nb``."""
        builder, intp, lanes = self.builder, self.intp, self.lanes
        n_whole = builder.sdiv(nb, intp(lanes))
        with cgutils.for_range(builder, n_whole) as vector:
            body(builder.mul(vector.index, intp(lanes)), None)
        tail = builder.sub(nb, builder.mul(n_whole, intp(lanes)))
        with cgutils.if_unlikely(builder, builder.icmp_signed(">", tail, intp(0))):
            body(builder.mul(n_whole, intp(lanes)), _lane_mask(self, tail))

    def clamped(self, first, count, size):
        """Indices ``first .. first + size - 1`` with those past ``count - 1``
        replaced by ``count - 1``, and whether each was below ``count`` (a
        group of components, features or rows that may run past the end)."""
        builder, intp = self.builder, self.intp
        last = builder.sub(count, intp(1))
        indices, valid = [], []
        for i in range(size):
            index = builder.add(first, intp(i))
            ok = builder.icmp_signed("<", index, count)
            indices.append(builder.select(ok, index, last))
            valid.append(ok)
        return indices, valid

    def masked_load(self, array_type, array, indices, mask):
        """A vector load whose lanes outside ``mask`` (if any) read as 0
        (the whole vector is read: see the kernels' conditions on ``B``)."""
        value = self.load(array_type, array, indices)
        return value if mask is None else self.builder.select(mask, value, self.zero)


class _SquaredNorms:
    """``out[b] += ||columns - off||^2``: each column starts from ``-off``
    and the norms stay in registers until the last group."""

    def __init__(self, off_type, off_arr, out_type, out_arr):
        self.off_type, self.off_arr = off_type, off_arr
        self.out_type, self.out_arr = out_type, out_arr
        self.norms = None

    def start(self, ops, rows):
        if self.norms is None:
            self.norms = [
                cgutils.alloca_once(ops.builder, ops.vector)
                for _ in range(ops.tile_vectors)
            ]
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


def _lane_mask(ops, count):
    """``<i < count for each lane i>`` for a runtime ``count``."""
    builder = ops.builder
    lane_type = ir.VectorType(ops.intp, ops.lanes)
    lanes = ir.Constant(lane_type, [ops.intp(i) for i in range(ops.lanes)])
    limit = builder.insert_element(
        ir.Constant(lane_type, ir.Undefined), count, ir.IntType(32)(0)
    )
    limit = builder.shuffle_vector(
        limit,
        ir.Constant(lane_type, ir.Undefined),
        ir.Constant(ir.VectorType(ir.IntType(32), ops.lanes), [0] * ops.lanes),
    )
    return builder.icmp_signed("<", lanes, limit)


def _tree_sums(ops, values):
    """The lane sums of ``values`` (a number of vectors that is a multiple
    of the vector width, or fewer), as a list of scalars in the same order.

    Pairs of vectors are folded together, half of each one's lanes against
    the other half, until every lane holds a whole sum: for sixteen vectors
    of eight lanes, 28 shuffles and 14 additions instead of 48 of each in
    sixteen separate reductions."""
    builder = ops.builder
    lanes = ops.lanes
    i32 = ir.IntType(32)
    # Each entry: a vector, and the value index of each group of lanes.
    level = [(v, [n]) for n, v in enumerate(values)]
    while len(level[0][1]) < lanes and len(level) > 1:
        if len(level) % 2:
            level.append((ops.zero, [None] * len(level[0][1])))
        folded = []
        for (a, ids_a), (b, ids_b) in zip(level[0::2], level[1::2], strict=True):
            groups = len(ids_a)
            width = lanes // groups
            half = width // 2
            low, high = [], []
            for source in (0, lanes):
                for g in range(groups):
                    start = source + g * width
                    low += range(start, start + half)
                    high += range(start + half, start + width)
            pick_low = ir.Constant(ir.VectorType(i32, lanes), low)
            pick_high = ir.Constant(ir.VectorType(i32, lanes), high)
            summed = builder.fadd(
                builder.shuffle_vector(a, b, pick_low),
                builder.shuffle_vector(a, b, pick_high),
            )
            folded.append((summed, ids_a + ids_b))
        level = folded
    sums = [None] * len(values)
    for vector, ids in level:
        width = lanes // len(ids)
        for g, n in enumerate(ids):
            if n is None:
                continue
            if width == 1:
                sums[n] = builder.extract_element(vector, i32(g))
            else:
                part = [
                    builder.extract_element(vector, i32(g * width + e))
                    for e in range(width)
                ]
                total = part[0]
                for value in part[1:]:
                    total = builder.fadd(total, value)
                sums[n] = total
    return sums


@intrinsic
def weighted_lower_scatter(typingctx, x, nb, r, s, w, S, sums):
    """``S[i, j] += sum_b r_b (x_ib - s_i) x_jb`` for ``j <= i`` and
    ``sums[i] = sum_b r_b (x_ib - s_i)``, over the rows ``b < nb``.

    ``x`` is ``(D, B)`` (rows of the block in columns), ``r`` ``(B,)``, ``s``
    ``(D,)`` and ``w`` a ``(4, B)`` scratch, all C-contiguous and of one
    float dtype; ``S`` ``(D, D)`` and ``sums`` ``(D,)`` are float64.  The
    entries of ``S`` above the diagonal are left alone.  ``B`` is a multiple
    of the vector width (see :func:`upper_tri_sq_norms`); the lanes past
    ``nb`` are masked.

    Four rows ``i`` at a time: one sweep over the block forms their weighted
    rows ``w_i = r (x_i - s_i)`` into ``w`` and sums them, and adds the
    products of the 4 x 4 triangle on the diagonal (ten FMAs); then for each
    group of four columns ``j`` to its left, sixteen accumulators (``w_i
    x_j``) stay in registers over the block.  Partial sums over the block
    are kept in the dtype of ``x`` and added to ``S`` in float64."""
    if not all(_is_float_array(a, 2) for a in (x, w, S)):
        return None
    if not all(_is_float_array(a, 1) for a in (r, s, sums)):
        return None
    if len({x.dtype, r.dtype, s.dtype, w.dtype}) != 1:
        return None
    if S.dtype != types.float64 or sums.dtype != types.float64:
        return None
    if not isinstance(nb, types.Integer):
        return None
    sig = types.void(x, nb, r, s, w, S, sums)

    def codegen(context, builder, signature, args):
        x_type, nb_type, r_type, s_type, w_type, S_type, sums_type = signature.args
        dtype = x_type.dtype
        ops = _VectorOps(context, builder, dtype)
        intp, vector = ops.intp, ops.vector
        scalar = vector.element
        double = ir.DoubleType()
        x_arr, _, r_arr, s_arr, w_arr, S_arr, sums_arr = unpack_arrays(
            context, builder, signature, args
        )
        nb_value = context.cast(builder, args[1], nb_type, types.intp)
        D = cgutils.unpack_tuple(builder, x_arr.shape, 2)[0]
        accumulators = [
            [cgutils.alloca_once(builder, vector) for _ in range(COLUMNS)]
            for _ in range(COLUMNS)
        ]
        row_sums = [cgutils.alloca_once(builder, vector) for _ in range(COLUMNS)]

        def sweep(body):
            ops.for_row_vectors(nb_value, body)

        load = ops.masked_load

        def add_to_S(i, j, total):
            p = ops.pointer(S_type, S_arr, [i, j])
            if dtype.bitwidth < 64:
                total = builder.fpext(total, double)
            builder.store(builder.fadd(builder.load(p), total), p)

        def quad(i0, padded):
            """Rows ``i0 .. i0 + 3``; with ``padded``, those past D - 1 are
            zero rows, and nothing is written for them."""
            rows = [builder.add(i0, intp(a)) for a in range(COLUMNS)]
            valid = [None] * COLUMNS
            if padded:
                rows, valid = ops.clamped(i0, D, COLUMNS)
                one = ops.splat(ir.Constant(scalar, 1.0))
                keep = [builder.select(ok, one, ops.zero) for ok in valid]
            shifts = []
            for a in range(COLUMNS):
                value = builder.load(ops.pointer(s_type, s_arr, [rows[a]]))
                shifts.append(ops.splat(value))
            for a in range(COLUMNS):
                builder.store(ops.zero, row_sums[a])
                for c in range(a + 1):
                    builder.store(ops.zero, accumulators[a][c])

            def weigh(b, mask):
                weight = load(r_type, r_arr, [b], mask)
                xs = []
                for a in range(COLUMNS):
                    value = load(x_type, x_arr, [rows[a], b], mask)
                    if padded:
                        # 1 or 0 per row: x of a row past D - 1 is a copy
                        # of the last row.
                        value = builder.fmul(value, keep[a])
                    xs.append(value)
                for a in range(COLUMNS):
                    wa = builder.fmul(weight, builder.fsub(xs[a], shifts[a]))
                    if padded:
                        wa = builder.fmul(wa, keep[a])
                    ops.store(wa, w_type, w_arr, [intp(a), b])
                    total = row_sums[a]
                    builder.store(builder.fadd(builder.load(total), wa), total)
                    for c in range(a + 1):
                        acc = accumulators[a][c]
                        builder.store(ops.fma(wa, xs[c], builder.load(acc)), acc)

            sweep(weigh)

            def written(a, emit):
                if valid[a] is None:
                    emit()
                else:
                    with cgutils.if_likely(builder, valid[a]):
                        emit()

            # The ten products and four row sums in one tree of sums.
            pairs = [(a, c) for a in range(COLUMNS) for c in range(a + 1)]
            totals = _tree_sums(
                ops,
                [builder.load(accumulators[a][c]) for a, c in pairs]
                + [builder.load(row_sums[a]) for a in range(COLUMNS)],
            )
            for a in range(COLUMNS):

                def diagonal(a=a):
                    total = totals[len(pairs) + a]
                    if dtype.bitwidth < 64:
                        total = builder.fpext(total, double)
                    builder.store(total, ops.pointer(sums_type, sums_arr, [rows[a]]))
                    for n, (row, c) in enumerate(pairs):
                        if row == a:
                            add_to_S(rows[a], rows[c], totals[n])

                written(a, diagonal)

            # The columns left of the diagonal, four at a time.
            with cgutils.for_range(builder, builder.sdiv(i0, intp(COLUMNS))) as group:
                j0 = builder.mul(group.index, intp(COLUMNS))
                columns = [builder.add(j0, intp(c)) for c in range(COLUMNS)]
                for a in range(COLUMNS):
                    for c in range(COLUMNS):
                        builder.store(ops.zero, accumulators[a][c])

                def product(b, mask):
                    ws = [ops.load(w_type, w_arr, [intp(a), b]) for a in range(COLUMNS)]
                    xs = [load(x_type, x_arr, [j, b], mask) for j in columns]
                    for a in range(COLUMNS):
                        for c in range(COLUMNS):
                            acc = accumulators[a][c]
                            builder.store(ops.fma(ws[a], xs[c], builder.load(acc)), acc)

                sweep(product)
                totals = _tree_sums(
                    ops,
                    [
                        builder.load(accumulators[a][c])
                        for a in range(COLUMNS)
                        for c in range(COLUMNS)
                    ],
                )
                for a in range(COLUMNS):

                    def left(a=a):
                        for c in range(COLUMNS):
                            add_to_S(rows[a], columns[c], totals[a * COLUMNS + c])

                    written(a, left)

        n_whole = builder.sdiv(D, intp(COLUMNS))
        with cgutils.for_range(builder, n_whole) as q:
            quad(builder.mul(q.index, intp(COLUMNS)), False)
        i_last = builder.mul(n_whole, intp(COLUMNS))
        with cgutils.if_unlikely(builder, builder.icmp_signed("<", i_last, D)):
            quad(i_last, True)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def affine_sq_distances(typingctx, x, nb, means, offsets, scales, out, expanded):
    """``out[k, b] = offsets[k] - scales[k] ||x[:, b] - means[k]||^2`` for
    every component ``k``: Gaussian log-densities with the constant and
    scale of each component folded into the one store of the distances.

    ``x`` is ``(D, B)`` (rows of the block in columns), ``means`` ``(K,
    D)``, ``offsets`` and ``scales`` ``(K,)`` and ``out`` ``(K', B)`` with
    ``K' >= K``, all C-contiguous and of one float dtype; rows go a vector at
    a time as in :func:`upper_tri_sq_norms` (whose conditions on ``B`` and
    the rows past ``nb`` apply).

    Four components and ``V`` vectors of rows at a time: their ``4 V``
    distances stay in registers while the features stream past (``V`` loads
    of ``x`` and four broadcasts of the means) and are stored once.  With
    ``expanded`` false, each feature costs a subtraction and an FMA.  With
    ``expanded`` true, one FMA: the distance is ``||x||^2 + ||m||^2 - 2 m^T
    x`` (clamped at 0), with ``||x||^2`` summed once per vector of rows.
    That loses ``eps (||x||^2 + ||m||^2)`` to cancellation, so callers
    expand only when every mean is within a few spreads of the origin
    (:func:`fastem._kernels.gaussian._near_origin`)."""
    sig = _check(x, nb, means, (offsets, scales, out))
    if (
        sig is None
        or offsets.ndim != 1
        or scales.ndim != 1
        or out.ndim != 2
        or not isinstance(expanded, types.Boolean)
    ):
        return None
    sig = types.void(*sig.args, expanded)

    def codegen(context, builder, signature, args):
        x_type, nb_type, means_type, offsets_type, scales_type, out_type, _ = (
            signature.args
        )
        ops = _VectorOps(context, builder, x_type.dtype)
        intp = ops.intp
        scalar = ops.vector.element
        x_arr, _, means_arr, offsets_arr, scales_arr, out_arr, _ = unpack_arrays(
            context, builder, signature, args
        )
        nb_value = context.cast(builder, args[1], nb_type, types.intp)
        D = cgutils.unpack_tuple(builder, x_arr.shape, 2)[0]
        K = cgutils.unpack_tuple(builder, means_arr.shape, 2)[0]
        V = ops.tile_vectors
        accumulators = [
            [cgutils.alloca_once(builder, ops.vector) for _ in range(V)]
            for _ in range(COLUMNS)
        ]
        row_norms = [cgutils.alloca_once(builder, ops.vector) for _ in range(V)]
        mean_norms = [cgutils.alloca_once(builder, scalar) for _ in range(COLUMNS)]

        def group(rows, k0, padded, expand):
            components = [builder.add(k0, intp(c)) for c in range(COLUMNS)]
            stored = [None] * COLUMNS
            if padded:
                components, stored = ops.clamped(k0, K, COLUMNS)
            for c in range(COLUMNS):
                for w in range(len(rows)):
                    builder.store(ops.zero, accumulators[c][w])
                if expand:
                    builder.store(ir.Constant(scalar, 0.0), mean_norms[c])
            with cgutils.for_range(builder, D) as feature:
                d = feature.index
                xs = [ops.load(x_type, x_arr, [d, row]) for row in rows]
                for c in range(COLUMNS):
                    m = builder.load(
                        ops.pointer(means_type, means_arr, [components[c], d])
                    )
                    if expand:
                        norm = mean_norms[c]
                        builder.store(
                            builder.fadd(builder.load(norm), builder.fmul(m, m)), norm
                        )
                    m = ops.splat(m)
                    for w, value in enumerate(xs):
                        a = accumulators[c][w]
                        if expand:
                            builder.store(ops.fma(value, m, builder.load(a)), a)
                        else:
                            t = builder.fsub(value, m)
                            builder.store(ops.fma(t, t, builder.load(a)), a)
            minus_two = ops.splat(ir.Constant(scalar, -2.0))
            for c in range(COLUMNS):

                def store(c=c):
                    k = components[c]
                    offset = builder.load(ops.pointer(offsets_type, offsets_arr, [k]))
                    scale = builder.load(ops.pointer(scales_type, scales_arr, [k]))
                    offset = ops.splat(offset)
                    minus_scale = ops.splat(builder.fneg(scale))
                    for w, row in enumerate(rows):
                        value = builder.load(accumulators[c][w])
                        if expand:
                            # ||x||^2 + ||m||^2 - 2 m^T x, at least 0.
                            base = builder.fadd(
                                builder.load(row_norms[w]),
                                ops.splat(builder.load(mean_norms[c])),
                            )
                            value = ops.fma(value, minus_two, base)
                            positive = builder.fcmp_ordered(">", value, ops.zero)
                            value = builder.select(positive, value, ops.zero)
                        value = ops.fma(value, minus_scale, offset)
                        ops.store(value, out_type, out_arr, [k, row])

                if stored[c] is None:
                    store()
                else:
                    with cgutils.if_likely(builder, stored[c]):
                        store()

        def components_of(rows, expand):
            n_whole = builder.sdiv(K, intp(COLUMNS))
            with cgutils.for_range(builder, n_whole) as g:
                group(rows, builder.mul(g.index, intp(COLUMNS)), False, expand)
            k_last = builder.mul(n_whole, intp(COLUMNS))
            with cgutils.if_unlikely(builder, builder.icmp_signed("<", k_last, K)):
                group(rows, k_last, True, expand)

        def tile(first_row, width):
            rows = [builder.add(first_row, intp(w * ops.lanes)) for w in range(width)]
            with builder.if_else(args[6]) as (then, otherwise):
                with then:
                    for w in range(width):
                        builder.store(ops.zero, row_norms[w])
                    with cgutils.for_range(builder, D) as feature:
                        for w, row in enumerate(rows):
                            value = ops.load(x_type, x_arr, [feature.index, row])
                            norm = row_norms[w]
                            builder.store(
                                ops.fma(value, value, builder.load(norm)), norm
                            )
                    components_of(rows, True)
                with otherwise:
                    components_of(rows, False)

        ops.for_row_tiles(nb_value, tile)
        return context.get_dummy_value()

    return sig, codegen


def _for_tiles(builder, intp, n_components, n_features, features_per_tile, tile):
    """``tile(k0, d0)`` for every tile of :data:`COLUMNS` components by
    ``features_per_tile`` features (the last ones may run past the ends)."""

    def groups(count, size):
        return builder.sdiv(builder.add(count, intp(size - 1)), intp(size))

    with cgutils.for_range(builder, groups(n_components, COLUMNS)) as kg:
        k0 = builder.mul(kg.index, intp(COLUMNS))
        with cgutils.for_range(builder, groups(n_features, features_per_tile)) as dg:
            tile(k0, builder.mul(dg.index, intp(features_per_tile)))


def _store_tile_sums(
    ops, totals, dtype, outputs, components, k_valid, features, d_valid
):
    """Store a tile's ``totals`` (ordered by component, feature, output),
    widened to float64, at ``[component, feature]`` of each ``(type,
    array)`` in ``outputs``, except where the component or feature repeats
    the last one (not valid)."""
    builder = ops.builder
    totals = iter(totals)
    for k, k_ok in zip(components, k_valid, strict=True):
        for d, d_ok in zip(features, d_valid, strict=True):
            ok = builder.and_(k_ok, d_ok)
            for out_type, out_arr in outputs:
                total = next(totals)
                if dtype.bitwidth < 64:
                    total = builder.fpext(total, ir.DoubleType())
                with cgutils.if_likely(builder, ok):
                    builder.store(total, ops.pointer(out_type, out_arr, [k, d]))


def _row_sums_codegen(context, builder, signature, args):
    """The code of :func:`weighted_row_sums` and
    :func:`weighted_shifted_row_sums` (``signature.args`` is ``(x, nb, r,
    out)`` or ``(x, nb, r, shift, out)``)."""
    shifted = len(signature.args) == 5
    x_type, nb_type, r_type = signature.args[:3]
    out_type = signature.args[-1]
    ops = _VectorOps(context, builder, x_type.dtype)
    intp, lanes = ops.intp, ops.lanes
    arrays = unpack_arrays(context, builder, signature, args)
    x_arr, r_arr, out_arr = arrays[0], arrays[2], arrays[-1]
    nb_value = context.cast(builder, args[1], nb_type, types.intp)
    D = cgutils.unpack_tuple(builder, x_arr.shape, 2)[0]
    K = cgutils.unpack_tuple(builder, r_arr.shape, 2)[0]
    wide = lanes * x_type.dtype.bitwidth == 512
    # With shifts, the 4 x F broadcasts of the shifts take registers too.
    features_per_tile = (COLUMNS if wide else 2) // (2 if shifted else 1)
    accumulators = [
        [cgutils.alloca_once(builder, ops.vector) for _ in range(features_per_tile)]
        for _ in range(COLUMNS)
    ]
    load = ops.masked_load

    def tile(k0, d0):
        components, k_valid = ops.clamped(k0, K, COLUMNS)
        features, d_valid = ops.clamped(d0, D, features_per_tile)
        for row in accumulators:
            for acc in row:
                builder.store(ops.zero, acc)
        shifts = None
        if shifted:
            shift_type, shift_arr = signature.args[3], arrays[3]
            shifts = [
                [
                    ops.splat(builder.load(ops.pointer(shift_type, shift_arr, [k, d])))
                    for d in features
                ]
                for k in components
            ]

        def add_rows(b, mask):
            rs = [load(r_type, r_arr, [k, b], mask) for k in components]
            xs = [load(x_type, x_arr, [d, b], mask) for d in features]
            for a, weight in enumerate(rs):
                for c, value in enumerate(xs):
                    if shifted:
                        value = builder.fsub(value, shifts[a][c])
                    acc = accumulators[a][c]
                    builder.store(ops.fma(weight, value, builder.load(acc)), acc)

        ops.for_row_vectors(nb_value, add_rows)
        totals = _tree_sums(
            ops, [builder.load(acc) for row in accumulators for acc in row]
        )
        _store_tile_sums(
            ops,
            totals,
            x_type.dtype,
            [(out_type, out_arr)],
            components,
            k_valid,
            features,
            d_valid,
        )

    _for_tiles(builder, intp, K, D, features_per_tile, tile)
    return context.get_dummy_value()


@intrinsic
def weighted_row_sums(typingctx, x, nb, r, out):
    """``out[k, d] = sum_b r[k, b] x[d, b]`` over the rows ``b < nb``: the
    first moments ``R X`` of a block as a small matrix product.

    ``x`` is ``(D, B)`` (rows of the block in columns) and ``r`` ``(K, B)``,
    C-contiguous and of one float dtype; ``out`` is ``(K, D)`` float64.
    ``B`` is a multiple of the vector width (see :func:`upper_tri_sq_norms`);
    the lanes past ``nb`` are masked.

    Four components by four features at a time (two features with 32-byte
    vectors): sixteen accumulators stay in registers over the block, fed by
    four loads of ``r`` and four of ``x`` per vector of rows (one FMA per
    product, where the numba loop around a shift took a subtraction and an
    FMA), and their partial sums, in the dtype of ``x``, are folded in one
    tree of shuffles.  Groups past ``K`` or ``D`` repeat the last component
    or feature and are not written."""
    if not (_is_float_array(x, 2) and _is_float_array(r, 2)):
        return None
    if not _is_float_array(out, 2) or out.dtype != types.float64:
        return None
    if x.dtype != r.dtype or not isinstance(nb, types.Integer):
        return None
    return types.void(x, nb, r, out), _row_sums_codegen


@intrinsic
def weighted_shifted_row_sums(typingctx, x, nb, r, shift, out):
    """``out[k, d] = sum_b r[k, b] (x[d, b] - shift[k, d])``: the first
    moments of a block around a shift per component (``shift`` ``(K, D)``
    in the dtype of ``x``; otherwise as :func:`weighted_row_sums`).

    Four components by two features at a time (one with 32-byte vectors), a
    subtraction and an FMA per product, with the shifts' broadcasts held in
    registers (four by four spilled them: 22.5 -> 33.4 ms below); the eight
    (four) running sums are folded in one tree of shuffles.  Two components
    by four features in a numba loop reduced each sum by itself: float32
    tied 64x16 first moments, one thread, 22.5 -> 17.0 ms per 10^6 rows."""
    if not (_is_float_array(x, 2) and _is_float_array(r, 2)):
        return None
    if not _is_float_array(shift, 2) or shift.dtype != x.dtype:
        return None
    if not _is_float_array(out, 2) or out.dtype != types.float64:
        return None
    if x.dtype != r.dtype or not isinstance(nb, types.Integer):
        return None
    return types.void(x, nb, r, shift, out), _row_sums_codegen


@intrinsic
def weighted_row_moments(typingctx, x, nb, r, order, count, first, second):
    """``first[k, d] = sum_b r[k, b] x[d, b]`` and ``second[k, d] = sum_b
    r[k, b] x[d, b]^2`` over the rows ``b < nb``, for the components ``k =
    order[i]``, ``i < count``, and every feature ``d``: the raw first and
    second moments of a block under diagonal covariances.

    ``x`` is ``(D, B)`` and ``r`` ``(K, B)``, C-contiguous and of one float
    dtype, ``order`` a 1-d integer array and ``first``, ``second`` ``(K,
    D)`` float64; the conditions of :func:`weighted_row_sums` on ``B``
    apply.  Four components by two features at a time (one with 32-byte
    vectors): sixteen accumulators stay in registers over the block, fed by
    four loads of ``r``, two of ``x`` and two squares per vector of rows,
    and their partial sums are folded in one tree of shuffles
    (:func:`_tree_sums`).  Reduced one accumulator at a time in a numba
    loop, the lane sums took about as long as the products in a float32
    block of 128 rows (the stage fell from 44.6 to 33.6 ms per 10^6 rows
    with blocks twice as long); with the tree, diag 64x16 moments on one
    thread take 37.0 ms in float32 (was 44.2) and 63.5 in float64 (68.5).
    Groups past ``count`` or ``D`` repeat the last component or feature and
    are not written."""
    if not (_is_float_array(x, 2) and _is_float_array(r, 2)):
        return None
    for out in (first, second):
        if not _is_float_array(out, 2) or out.dtype != types.float64:
            return None
    if not (
        isinstance(order, types.Array)
        and order.ndim == 1
        and isinstance(order.dtype, types.Integer)
    ):
        return None
    if x.dtype != r.dtype or not all(isinstance(n, types.Integer) for n in (nb, count)):
        return None
    sig = types.void(x, nb, r, order, count, first, second)

    def codegen(context, builder, signature, args):
        x_type, nb_type, r_type, order_type, count_type = signature.args[:5]
        outputs = signature.args[5:]
        ops = _VectorOps(context, builder, x_type.dtype)
        intp, lanes = ops.intp, ops.lanes
        arrays = unpack_arrays(context, builder, signature, args)
        x_arr, r_arr, order_arr = arrays[0], arrays[2], arrays[3]
        output_arrays = arrays[5:]
        nb_value = context.cast(builder, args[1], nb_type, types.intp)
        count_value = context.cast(builder, args[4], count_type, types.intp)
        D = cgutils.unpack_tuple(builder, x_arr.shape, 2)[0]
        features_per_tile = 2 if lanes * x_type.dtype.bitwidth == 512 else 1
        # accumulators[a][c] = [sum r x, sum r x^2] of component a, feature c.
        accumulators = [
            [
                [cgutils.alloca_once(builder, ops.vector) for _ in outputs]
                for _ in range(features_per_tile)
            ]
            for _ in range(COLUMNS)
        ]
        load = ops.masked_load

        def tile(i0, d0):
            positions, k_valid = ops.clamped(i0, count_value, COLUMNS)
            components = [
                context.cast(
                    builder,
                    builder.load(ops.pointer(order_type, order_arr, [p])),
                    order_type.dtype,
                    types.intp,
                )
                for p in positions
            ]
            features, d_valid = ops.clamped(d0, D, features_per_tile)
            for row in accumulators:
                for pair in row:
                    for acc in pair:
                        builder.store(ops.zero, acc)

            def add_rows(b, mask):
                rs = [load(r_type, r_arr, [k, b], mask) for k in components]
                for c, d in enumerate(features):
                    value = load(x_type, x_arr, [d, b], mask)
                    powers = (value, builder.fmul(value, value))
                    for a, weight in enumerate(rs):
                        for acc, power in zip(accumulators[a][c], powers, strict=True):
                            builder.store(
                                ops.fma(weight, power, builder.load(acc)), acc
                            )

            ops.for_row_vectors(nb_value, add_rows)
            totals = _tree_sums(
                ops,
                [
                    builder.load(acc)
                    for row in accumulators
                    for pair in row
                    for acc in pair
                ],
            )
            _store_tile_sums(
                ops,
                totals,
                x_type.dtype,
                list(zip(outputs, output_arrays, strict=True)),
                components,
                k_valid,
                features,
                d_valid,
            )

        _for_tiles(builder, intp, count_value, D, features_per_tile, tile)
        return context.get_dummy_value()

    return sig, codegen
