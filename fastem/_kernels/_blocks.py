"""Block helpers shared by every family's fused kernels.

A kernel loads a block of rows transposed into a ``(D, B)`` buffer (so that
loops over the rows of the block are contiguous and vectorise), computes the
``(K, B)`` log-joints ``L[k, b] = log p(x_b, k)``, and turns them into
responsibilities with :func:`responsibilities`.

Note: numba's on-disk cache keys a kernel on its own source file only; after
editing this module, clear the ``__pycache__`` folders (or set
``FASTEM_CACHE=0``) so that the kernels importing it are recompiled.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .._config import OVERLOAD, SERIAL, SHARED
from ._exp_block import shifted_exponentials
from ._math import above_weight_floor, holds_float64, log_simd, reciprocal, zero_of
from ._simd import (
    weighted_lower_scatter,
    weighted_row_sums,
    weighted_shifted_row_sums,
)
from ._transpose import TILE, prefetch, transpose_tile


def aligned_rows(rows, cols, dtype):
    """An uninitialised C-contiguous ``(rows, cols)`` array whose data start
    on a 64-byte boundary (block scratch; every block size is a multiple of
    64 bytes, so each row is aligned too).

    numba aligns ``np.empty`` to 32 bytes only.  A block row that starts 32
    bytes into a cache line splits every 64-byte (AVX-512) load and store:
    a thread whose allocator handed out such addresses ran its tasks ~40 %
    slower than the other (16x16 full E-step, 4.15 vs 2.96 ms per task)."""
    raw = np.empty(rows * cols + 16, dtype)
    skip = ((-raw.ctypes.data) % 64) // raw.itemsize
    return raw[skip : skip + rows * cols].reshape((rows, cols))


# An overload rather than a jitted function: numba compiles a jitted callee
# once per argument type, the literal row counts of the call sites included
# (``aligned_rows(1, block, dt)`` was a signature of its own), while an
# overload is typed with plain integers first, once per dtype.
@overload(aligned_rows, jit_options=OVERLOAD)
def _aligned_rows_typed(rows, cols, dtype):
    return aligned_rows


#: How far ahead of the rows being loaded :func:`load_rows_centered` asks for
#: the rows of ``X`` (software prefetch).  The hardware prefetcher alone left
#: the 16x16 block load waiting on memory: 4.7 ms per 500,000 rows on one
#: thread, 2.4 ms with 8 KB of prefetch distance (4 to 16 KB measured level).
PREFETCH_BYTES = 8192


def center_at(center, d, xt):
    """``center[d]``, or a zero of the dtype of ``xt`` when ``center`` is
    None (a constant in compiled code)."""
    return zero_of(xt) if center is None else center[d]


@overload(center_at, jit_options=OVERLOAD)
def _center_at_typed(center, d, xt):
    if isinstance(center, types.NoneType):
        return lambda center, d, xt: zero_of(xt)
    return lambda center, d, xt: center[d]


@njit(**SERIAL)
def _load_narrow_rows(X, r0, nb, center, xt):
    """:func:`load_rows_centered` for ``D < TILE``.

    One to three features are copied in a single sweep over the rows, which
    LLVM vectorises as an interleaved load; four to seven one feature per
    sweep.  Against eight rows at a time, per 10^6 rows from L3 on one
    thread: D = 2 1.34 -> 0.52 ms, D = 3 2.83 -> 1.31, D = 5 5.37 -> 3.06;
    E-step 2-10 % faster at D <= 5 (float32 at D = 2: 11-20 %).  The three
    written-out sweeps cost about 0.2 s of compilation over a single
    one-feature sweep, which gained only 2-3 % at D = 2."""
    D = X.shape[1]
    rows = X[r0 : r0 + nb]
    if D <= 3:
        # Indices past the last feature repeat it; their sweeps do not run.
        o0 = xt[0]
        o1 = xt[min(1, D - 1)]
        o2 = xt[min(2, D - 1)]
        c0 = center_at(center, 0, xt)
        c1 = center_at(center, min(1, D - 1), xt)
        c2 = center_at(center, min(2, D - 1), xt)
        if D == 1:
            for b in range(nb):
                o0[b] = rows[b, 0]
                o0[b] -= c0
        elif D == 2:
            for b in range(nb):
                o0[b] = rows[b, 0]
                o0[b] -= c0
                o1[b] = rows[b, 1]
                o1[b] -= c1
        else:
            for b in range(nb):
                o0[b] = rows[b, 0]
                o0[b] -= c0
                o1[b] = rows[b, 1]
                o1[b] -= c1
                o2[b] = rows[b, 2]
                o2[b] -= c2
        return
    for d in range(D):
        out = xt[d]
        cd = center_at(center, d, xt)
        for b in range(nb):
            out[b] = rows[b, d]
            out[b] -= cd


@njit(**SHARED)
def load_rows(X, r0, nb, xt):
    """``xt[:, b] = X[r0 + b]`` for ``b < nb`` (rows into columns)."""
    load_rows_centered(X, r0, nb, None, xt)


@njit(**SHARED)
def load_rows_centered(X, r0, nb, center, xt):
    """``xt[:, b] = X[r0 + b] - center`` for ``b < nb`` (``center`` may be
    ``None``); ``X`` is C-contiguous.  Rows are converted to the dtype of
    ``xt`` before the centre is subtracted.

    Centering on the mixture mean keeps every later difference small, so a
    float32 block loses no accuracy to data far from the origin.  Whole
    8 x 8 tiles are transposed in registers (:func:`transpose_tile`), two
    tiles of rows (or a last one) per feature tile; the features past the
    last whole tile are copied for the same rows, and the rows past the
    last multiple of eight one at a time.  With fewer than
    eight features the block is copied by :func:`_load_narrow_rows`."""
    N, D = X.shape
    if D < TILE:
        _load_narrow_rows(X, r0, nb, center, xt)
        return
    row_bytes = D * X.itemsize
    ahead = max(1, PREFETCH_BYTES // row_bytes)
    row_tiles = nb - nb % TILE
    feature_tiles = D - D % TILE
    for b in range(0, row_tiles, 2 * TILE):
        # Two tiles of rows per feature tile: sixteen rows fill a whole
        # cache line of each block row even in float32.  Eight float32 rows
        # filled half a line; with block rows 2 KB apart, the lines of one
        # column of tiles fall into two cache sets, and a line was evicted
        # before its second half was written (64x16 float32 load, one
        # thread, block in L2: 17.8 -> 10.5 ms per 10^6 rows).
        rows = min(2 * TILE, row_tiles - b)
        first = min(r0 + b + ahead, N)
        last = min(first + rows, N)
        for offset in range(first * row_bytes, last * row_bytes, 64):
            prefetch(X, offset)
        for d in range(0, feature_tiles, TILE):
            for i in range(0, rows, TILE):
                transpose_tile(X, r0 + b + i, d, center, "sub", xt, d, b + i)
        for d in range(feature_tiles, D):
            for i in range(rows):
                xt[d, b + i] = X[r0 + b + i, d]
                if center is not None:
                    xt[d, b + i] -= center[d]
    for b in range(row_tiles, nb):
        for d in range(D):
            xt[d, b] = X[r0 + b, d]
            if center is not None:
                xt[d, b] -= center[d]


#: Parts in which the E-step and per-row kernels ask for the next block's
#: rows (:func:`prefetch_next_block`), between their stages.
NEXT_BLOCK_PARTS = 4
#: Fewest features for which they do.
NEXT_BLOCK_MIN_FEATURES = 16


@njit(**SHARED)
def prefetch_next_block(X, r0, r_end, part):
    """Ask for part ``part`` of :data:`NEXT_BLOCK_PARTS` of the rows ``[r0,
    r_end)`` of ``X``, the next block of a task (nothing when it is empty).

    The E-step and per-row kernels call this between their stages, for ``X``
    with at least :data:`NEXT_BLOCK_MIN_FEATURES` features, so that the
    next block arrives while the current one is computed.  The hardware
    prefetcher stops when the loads stop, and each block load otherwise
    began with misses to memory (the prefetch inside the load,
    ``PREFETCH_BYTES`` ahead, does not cover its first rows).  The callers
    pass ``part`` as ``D - D`` plus a constant: a literal part number would
    compile this helper once per part.

    Zen 5, one thread, spherical E-step, per 10^6 rows: 16x16 26.2 -> 24.2
    ms, 64x16 95.6 -> 86.7 ms.  The whole next block asked for at once after
    the load waited on the core's outstanding misses (25.0 and 90.0 ms), and
    prefetching into L2 rather than L1 gained less.  Whole fits, 2 threads:
    16x16 and 64x16 spherical -4 to -8 % (float32 64x16 -11 %), tied -4 to
    -8 %, diag -1 to -6 %, full -2 % to level; ``score_samples`` -1 to -6 %.
    With 8 or 12 features the diag kernels ran 4-9 % slower (their block,
    log-densities and responsibilities already fill L1), hence the minimum;
    below it even a call that returns at once cost 1-2 % of a 2x8 E-step,
    so the kernels skip the call."""
    if r0 >= r_end:
        return
    row_bytes = X.shape[1] * X.itemsize
    lines = -(-(r_end - r0) * row_bytes // 64)
    per_part = -(-lines // NEXT_BLOCK_PARTS)
    first = r0 * row_bytes + part * per_part * 64
    last = min(r_end * row_bytes, first + per_part * 64)
    for offset in range(first, last, 64):
        prefetch(X, offset)


def load_rows_centered_float64(X, r0, nb, center, xt, origin, raw, out):
    """:func:`load_rows_centered` into ``xt``, and the same block ``X[r0:r0 +
    nb] - center`` in float64, returned: ``xt`` itself for float64 data,
    else ``out`` (``(D, B)`` float64).  For sums that later cancel, e.g. the
    tied total scatter, which includes the spread between components that
    the M-step subtracts again.

    float32 rows are transposed once, around ``origin`` (zeros of the data's
    dtype, so the same compiled load as ``xt``'s) into ``raw``, then centered
    twice in one sweep: in float32 into ``xt`` and in float64 into ``out``.
    ``xt`` is bit for bit the block :func:`load_rows_centered` gives (both
    round the exact ``x - c`` once).  A second transposition of the rows
    for the float64 copy cost 3-4 ms per 10^6 rows (64x16 tied, one
    thread)."""
    xt[:, :nb] = X[r0 : r0 + nb].T - center[:, None]
    if xt.dtype == np.float64:
        return xt
    out[:, :nb] = X[r0 : r0 + nb].T.astype(np.float64) - center[:, None]
    return out


# Chosen by dtype at typing time: float64 data need no copy.
@overload(load_rows_centered_float64, jit_options=OVERLOAD)
def _load_rows_centered_float64_typed(X, r0, nb, center, xt, origin, raw, out):
    if xt.dtype == types.float64:

        def same(X, r0, nb, center, xt, origin, raw, out):
            load_rows_centered(X, r0, nb, center, xt)
            return xt

        return same

    def widen(X, r0, nb, center, xt, origin, raw, out):
        load_rows_centered(X, r0, nb, origin, raw)
        for d in range(raw.shape[0]):
            c = center[d]
            c64 = np.float64(c)
            row = raw[d]
            narrow = xt[d]
            wide = out[d]
            for b in range(nb):
                narrow[b] = row[b] - c
                wide[b] = np.float64(row[b]) - c64
        return out

    return widen


@njit(**SHARED)
def exp_shifted(L, nb, rowmax, E, total):
    """``rowmax[b] = max_k L[k, b]``, ``E[k, b] = exp(L[k, b] - rowmax[b])``
    and ``total[b] = sum_k E[k, b]`` for the ``nb`` columns of the ``(K, B)``
    block ``L`` (the stable log-sum-exp: every exponent is <= 0, and
    ``log sum_k exp(L[k, b]) = rowmax[b] + log total[b]``); see
    :func:`~fastem._kernels._exp_block.shifted_exponentials`."""
    shifted_exponentials(L, nb, rowmax, E, total)


@njit(**SERIAL)
def argmax_rows(L, nb, r0, out_label):
    """``out_label[r0 + b] = argmax_k L[k, b]`` (first maximum) for ``b < nb``."""
    K = L.shape[0]
    labels = out_label[r0 : r0 + nb]
    for b in range(nb):
        best = 0
        for k in range(1, K):
            if L[k, b] > L[best, b]:
                best = k
        labels[b] = best


@njit(**SHARED)
def row_log_sum_exp(L, nb, sw, r0, rowmax, E, total, acc):
    """Log-sum-exp over components, and each row's scale.

    Writes ``E[k, b] = exp(L[k, b] - rowmax[b])`` with ``rowmax[b]`` the row
    maximum of ``L``, sets ``total[b]`` to the factor ``w_b / sum_k E[k,
    b]`` that turns them into weighted responsibilities, and adds ``sum_b
    w_b log p(x_b)`` and ``sum_b w_b`` to ``acc[0]`` and ``acc[1]``.  The
    row maximum is subtracted before exponentiating, so nothing overflows;
    components whose log-density is ``-inf`` get exactly zero.  Kernels that
    form ``above_weight_floor(E[k, b]) * total[b]`` where they use it
    (:func:`block_weights`, or in their own loop) save the pass of
    :func:`responsibilities` that stores it.  Works in the dtype of ``L``.
    """
    K = L.shape[0]
    exp_shifted(L, nb, rowmax, E, total)
    ll = 0.0
    wsum = 0.0
    if sw.shape[0] > 0:
        wrow = sw[r0 : r0 + nb]
        for b in range(nb):
            w = wrow[b]
            lse = np.float64(rowmax[b]) + log_simd(np.float64(total[b]))
            ll += w * lse if w != 0.0 else 0.0
            wsum += w
            total[b] = w * reciprocal(total[b])
    else:
        # Sum of logs as logs of products of `group` factors: each factor is
        # in [1, K], so a float64 product stays below K^group <= 2^1000.
        # Up to 256x fewer scalar log calls (the logs of products of 16 cost
        # 1.2 ms of 9.8 per 10^6 rows at K = 8).
        group = min(256, max(1, int(1000.0 / math.log2(max(K, 2)))))
        for b0 in range(0, nb, group):
            # Views like this one keep loop indices from 0: numba wraps
            # negative indices, and an index that LLVM cannot prove
            # non-negative (``b0 + i``, ``r0 + b``) turns a vectorised loop's
            # loads into gathers and its stores into scatters (2x8 E-step
            # 3 % slower).
            seg = total[b0 : min(nb, b0 + group)]
            prod = 1.0
            for i in range(seg.shape[0]):
                prod *= seg[i]
            ll += math.log(prod)
        for b in range(nb):
            ll += rowmax[b]
            total[b] = reciprocal(total[b])
        wsum = np.float64(nb)
    acc[0] += ll
    acc[1] += wsum


@njit(**SHARED)
def responsibilities(L, nb, sw, r0, rowmax, resp, total, acc):
    """Log-sum-exp over components and weighted responsibilities.

    Writes ``resp[k, b] = w_b p(k | x_b)`` and adds to ``acc`` (float64,
    length 3): ``sum_b w_b log p(x_b)``, ``sum_b w_b`` and ``sum_b sum_k
    resp[k, b] L[k, b]`` (the expected complete-data log-joint; ``acc[0] -
    acc[2]`` is the weighted entropy of the responsibilities).  Families
    whose statistics determine that sum (the Gaussian ones: it is linear in
    the second moments) call :func:`row_log_sum_exp` and
    :func:`block_weights` instead and skip its load and multiply-add per row
    and component.  The row
    maximum is subtracted before exponentiating, so nothing overflows, and
    components whose log-density is ``-inf``, or whose float32 relative
    weight ``exp(L[k, b] - rowmax[b])`` is below 2^-92
    (:func:`~fastem._kernels._math.above_weight_floor`), get exactly zero
    responsibility.
    On return ``rowmax[b]`` holds the row maximum of ``L`` and ``total[b]``
    the factor ``w_b / sum_k exp(L[k, b] - rowmax[b])``.  Works in the dtype
    of ``L``.
    """
    K = L.shape[0]
    row_log_sum_exp(L, nb, sw, r0, rowmax, resp, total, acc)
    joint = 0.0
    zero = zero_of(L)
    for k in range(K):
        # In the dtype of the block over one component's rows (the literal
        # 0.0 in place of ``zero`` made the float32 sum a float64 one, with
        # every product converted: 1.8 instead of 0.6 ms per 10^6 rows at
        # K = 8), then in float64.
        joint_k = zero
        for b in range(nb):
            # Tiny float32 weights become zero before the row weight scales
            # them: no subnormal arithmetic downstream.
            r = above_weight_floor(resp[k, b]) * total[b]
            resp[k, b] = r
            joint_k += r * L[k, b] if r != zero else zero
        joint += np.float64(joint_k)
    acc[2] += joint


@njit(**SHARED)
def emit_rows(L, nb, r0, rowmax, total, E, out_lse, out_resp, out_label):
    """Write the log-sum-exp, posterior and arg-max of the block ``L`` (K, B)
    of rows ``r0 .. r0 + nb`` into whichever of ``out_lse`` (N,),
    ``out_resp`` (N, K) and ``out_label`` (N,) has rows (length-0 outputs are
    skipped).  ``rowmax``, ``total`` and ``E`` are scratch buffers
    of the block's shape; the outputs are float64 for any dtype of ``L``."""
    K = L.shape[0]
    if out_label.shape[0] > 0:
        argmax_rows(L, nb, r0, out_label)
    want_lse = out_lse.shape[0] > 0
    want_resp = out_resp.shape[0] > 0
    if not (want_lse or want_resp):
        return
    exp_shifted(L, nb, rowmax, E, total)
    if want_lse:
        lse = out_lse[r0 : r0 + nb]
        for b in range(nb):
            lse[b] = np.float64(rowmax[b]) + log_simd(np.float64(total[b]))
    if want_resp:
        for b in range(nb):
            total[b] = reciprocal(total[b])
        # Whole 8 x 8 tiles of components and rows are scaled and transposed
        # in registers; the leftover rows, then the leftover components, one
        # value at a time.
        k_tiles = K - K % TILE
        b_tiles = nb - nb % TILE
        for k in range(0, k_tiles, TILE):
            for b in range(0, b_tiles, TILE):
                transpose_tile(E, k, b, total, "mul", out_resp, r0 + b, k)
        for b in range(nb):
            for k in range(0 if b >= b_tiles else k_tiles, K):
                out_resp[r0 + b, k] = E[k, b]
                out_resp[r0 + b, k] *= total[b]


@njit(**SERIAL)
def block_weights(resp, nb, scale, nblk):
    """``nblk[k] = sum_b r_kb``, this block's weight of component ``k``.

    With a non-empty ``scale``, ``resp`` holds the exponentials of
    :func:`row_log_sum_exp` and ``scale`` its ``total``: the
    responsibilities ``r_kb = above_weight_floor(resp[k, b]) scale[b]`` are
    formed and stored in ``resp`` in the same sweep, where
    :func:`responsibilities` takes a separate pass over the block."""
    zero = zero_of(resp)
    normalise = scale.shape[0] > 0
    for k in range(resp.shape[0]):
        r = resp[k]
        n = zero
        if normalise:
            for b in range(nb):
                w = above_weight_floor(r[b]) * scale[b]
                r[b] = w
                n += w
        else:
            for b in range(nb):
                n += r[b]
        nblk[k] = n


@njit(**SHARED)
def accumulate_first_moments(xt, nb, resp, scale, shift, nblk, sums, sx, exact_shift):
    """``nblk[k] = sum_b r_kb`` (this block's weight of component k) and
    ``sx[k] += sum_b r_kb (x_b - shift[k])`` for every component (the rows
    of the block are in the columns of ``xt``; ``shift`` is ``(K, D)`` in
    their dtype, ``sums`` a ``(K, D)`` float64 scratch).  ``resp`` and
    ``scale`` are as in :func:`block_weights`, which forms the
    responsibilities in ``resp`` when ``scale`` is not empty.

    float64: the products ``sum_b r_kb x_b`` are one small matrix product
    (:func:`~fastem._kernels._simd.weighted_row_sums`), shifted afterwards:
    one FMA per row, component and feature, where sums around the shift
    take a subtraction too (spherical 16x16, one thread: 11.2 -> 7.1 ms per
    10^6 rows).  The rows are centered on the mixture's mean, so the sums
    lose ``eps |x - c|`` where sums around the shift lose ``eps |x -
    shift|``, which float64 can afford (1e-13 relative at components 1000
    spreads away from the mean).  So can float32 where the caller's
    statistics lose no more than that (spherical covariances: ``eps |mu -
    c| / sigma`` of a variance); with ``exact_shift`` (the tied covariance
    multiplies these sums by ``mu_k - c``) float32 sums go around each
    shift (:func:`~fastem._kernels._simd.weighted_shifted_row_sums`).
    """
    K = resp.shape[0]
    D = xt.shape[0]
    block_weights(resp, nb, scale, nblk)
    around_shifts = exact_shift and not holds_float64(xt)
    if around_shifts:
        weighted_shifted_row_sums(xt, nb, resp, shift, sums)
    else:
        weighted_row_sums(xt, nb, resp, sums)
    for k in range(K):
        n = np.float64(nblk[k])
        if n == 0.0:
            continue
        # The sums around the shifts need no correction.
        n = 0.0 if around_shifts else n
        for d in range(D):
            sx[k, d] += sums[k, d] - np.float64(shift[k, d]) * n


@njit(**SERIAL)
def _four_log_norms(log_norm, sq, k0, k1, k2, k3):
    """``log_norm`` of components ``k0 .. k3`` (zeros where ``sq`` is
    None)."""
    if sq is None:
        zero = zero_of(log_norm)
        return zero, zero, zero, zero
    return log_norm[k0], log_norm[k1], log_norm[k2], log_norm[k3]


#: :func:`accumulate_first_moments_few_features` serves blocks of up to
#: this many features.
FEW_FEATURES = 2


@njit(**SHARED)
def accumulate_first_moments_few_features(
    xt, nb, E, scale, shift, nblk, sx, exact_shift, log_norm, L, sq
):
    """:func:`accumulate_first_moments` for blocks of at most
    :data:`FEW_FEATURES` features, with the responsibilities formed in
    registers: ``r_kb = above_weight_floor(E[k, b]) scale[b]`` (``E`` and
    ``scale`` from :func:`row_log_sum_exp`; ``E`` is not modified), and,
    unless ``sq`` is None (else float64, ``(K,)``), ``sq[k] += sum_b r_kb
    (log_norm[k] - L[k, b])`` as well (the spherical second moments times
    the precision; None compiles the function without them, and only the
    variant a kernel uses is compiled: two loops in every kernel cost a
    cold first fit about 0.4 s).

    One sweep over the block for every four components does what
    :func:`block_weights` (which stores the responsibilities),
    :func:`~fastem._kernels._simd.weighted_row_sums` and the caller's pass
    over ``L`` did in three.  Sums around ``shift`` as in
    :func:`accumulate_first_moments`.  One function body with no views and
    no helpers taking arrays: numba then drops the reference counting of
    its arrays (about twenty atomic updates per call otherwise)."""
    K = E.shape[0]
    D = xt.shape[0]
    zero = zero_of(xt)
    around_shifts = exact_shift and not holds_float64(xt)
    last = D - 1
    for k0 in range(0, K, 4):
        # Components past K - 1 repeat the last one and are not stored.
        k1 = min(k0 + 1, K - 1)
        k2 = min(k0 + 2, K - 1)
        k3 = min(k0 + 3, K - 1)
        m00 = shift[k0, 0] if around_shifts else zero
        m01 = shift[k0, last] if around_shifts else zero
        m10 = shift[k1, 0] if around_shifts else zero
        m11 = shift[k1, last] if around_shifts else zero
        m20 = shift[k2, 0] if around_shifts else zero
        m21 = shift[k2, last] if around_shifts else zero
        m30 = shift[k3, 0] if around_shifts else zero
        m31 = shift[k3, last] if around_shifts else zero
        n0 = n1 = n2 = n3 = zero
        a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = zero
        q0 = q1 = q2 = q3 = zero
        c0, c1, c2, c3 = _four_log_norms(log_norm, sq, k0, k1, k2, k3)
        for b in range(nb):
            u = xt[0, b]
            v = xt[last, b]
            # Indexed here, not in a helper: an inlined function taking
            # arrays brings their reference counting into the loop (2x8:
            # 4-8x slower, not vectorised).
            s = scale[b]
            r0 = above_weight_floor(E[k0, b]) * s
            r1 = above_weight_floor(E[k1, b]) * s
            r2 = above_weight_floor(E[k2, b]) * s
            r3 = above_weight_floor(E[k3, b]) * s
            n0 += r0
            n1 += r1
            n2 += r2
            n3 += r3
            a00 += r0 * (u - m00)
            a01 += r0 * (v - m01)
            a10 += r1 * (u - m10)
            a11 += r1 * (v - m11)
            a20 += r2 * (u - m20)
            a21 += r2 * (v - m21)
            a30 += r3 * (u - m30)
            a31 += r3 * (v - m31)
            # Pruned by numba where sq is None, as below.
            if sq is not None:
                q0 += r0 * (c0 - L[k0, b])
                q1 += r1 * (c1 - L[k1, b])
                q2 += r2 * (c2 - L[k2, b])
                q3 += r3 * (c3 - L[k3, b])
        for i in range(4):
            k = k0 + i
            if k < K:
                n = (n0, n1, n2, n3)[i]
                nblk[k] = n
                if sq is not None:
                    sq[k] += np.float64((q0, q1, q2, q3)[i])
                # The sums around the shifts need no correction.
                weight = 0.0 if around_shifts else np.float64(n)
                sx[k, 0] += (
                    np.float64((a00, a10, a20, a30)[i])
                    - np.float64(shift[k, 0]) * weight
                )
                if D > 1:
                    first = np.float64((a01, a11, a21, a31)[i])
                    sx[k, 1] += first - np.float64(shift[k, 1]) * weight


@njit(**SERIAL)
def add_component_moments(xt, nb, resp, k, shift, w, nk, sx, S, sblk):
    """Adds component k's block weight ``sum_b r_kb`` to ``nk[k]``, its
    first moment ``sum_b r_kb (x_b - s)`` to ``sx[k]`` and the lower
    triangle of ``sum_b r_kb (x_b - s)(x_b - s)^T`` to ``S``, around ``s =
    shift``.  The scatter is formed against the block itself, as ``sum_b
    w_b x_b^T - (sum_b w_b) s^T`` with ``w_b = r_kb (x_b - s)``
    (:func:`~fastem._kernels._simd.weighted_lower_scatter`; ``w`` is its
    ``(4, B)`` scratch and ``sblk`` receives ``sum_b w_b``), so no ``x - s``
    copy is made."""
    zero = zero_of(xt)
    n = zero
    for b in range(nb):
        n += resp[k, b]
    if n == 0.0:
        return
    nk[k] += n
    weighted_lower_scatter(xt, nb, resp[k], shift, w, S, sblk)
    for i in range(S.shape[0]):
        a = sblk[i]
        sx[k, i] += a
        for j in range(i + 1):
            S[i, j] -= a * shift[j]
