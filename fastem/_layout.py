"""How rows are cut into tasks and blocks.

Every statistics kernel walks the rows in *tasks* (the unit of parallelism,
each with its own accumulator slice) and, inside a task, in *blocks* (the
unit of vectorisation, small enough to stay in cache).  Both sizes depend
only on the shape of the data and the kind of kernel (block sizes also on
the host CPU, read once at import, as is :data:`EXPANDED_DISTANCES`, the
kernels' choice of distance form), never on the number of threads, and the
task slices are added in task order, so a fit gives bit-identical results
for any thread count.

Environment variables
---------------------
FASTEM_BLOCK_BYTES
    Bytes of one block of the compute-bound kernels (an integer >= 4096),
    overriding the host CPU's entries of ``_COMPUTE_BOUND_BLOCK_BYTES`` and
    ``_FULL_COVARIANCE_BLOCK_BYTES``.
"""

from __future__ import annotations

import os

#: Fewest rows in a task (tasks smaller than this are not worth a thread).
MIN_TASK_ROWS = 4096
#: Most tasks per kernel call; bounds the accumulator memory to
#: ``MAX_TASKS * size of one set of statistics``.
MAX_TASKS = 64
#: Target bytes of one ``(n_features, block)`` buffer (a few fit in L1).
_BLOCK_BYTES = 32768

#: Block bytes of the compute-bound kernels (at least two multiply-adds per
#: value loaded: every Gaussian E-step and per-row kernel, Student-t) on
#: cores whose L2 cache feeds their multiply-add units as fast as they
#: consume: a block that spills from L1 to L2 costs them nothing there, and
#: longer blocks amortise the horizontal sum that ends every reduction over
#: a block.  Zen 4 runs a 512-bit FMA as two 256-bit halves (one per cycle,
#: the rate at which L2 delivers a cache line).  E-step, 10^6 rows, one
#: thread, 64 -> 256 rows per block at D = 64: diag 355 -> 287 ms, full
#: 4,105 -> 3,329 ms; at D = 48, diag 131 -> 106 ms and full 1,014 -> 907 ms.
#: Zen 5 (full-width 512-bit FMAs, twice the rate) ran its 64 x 16 full
#: E-step slower with 256-row blocks when this was first measured (with the
#: kernels of that time; see ``_FULL_COVARIANCE_BLOCK_BYTES`` for today's),
#: so other cores keep ``_BLOCK_BYTES``.
#: The spherical and tied kernels joined once their distances took four
#: components per sweep (one multiply-add per value loaded before, and 8 %
#: slower with 256-row blocks at D = 32): 64 -> 256 rows at D = 64, spherical
#: 232 -> 207 ms, tied 437 -> 371 ms.  The missing-value and discrete
#: kernels keep ``_BLOCK_BYTES``.
#:
#: ``rocketlake`` is what LLVM calls the AVX-512 Xeon VM of session 15 (KVM,
#: family 6 model 167, 2 MB of L2 per core).  Whole fits, 10^6 rows, 2
#: threads, alternated in one process: 64x16 full 1,891 -> 1,627 ms per
#: iteration, tied 173 -> 161, diag 173 -> 167 (with 512-bit vectors,
#: :mod:`fastem._codegen`: full 1,635 -> 1,375, diag 156 -> 132, tied 154 ->
#: 124; float32 full 1,008 -> 818); 16x16 (already 256 rows) and 32x16
#: level (-4 to +3 %).
_COMPUTE_BOUND_BLOCK_BYTES = {"znver4": 131072, "rocketlake": 131072}

#: Block bytes of the full-covariance E-step, where a CPU's entry differs
#: from its compute-bound one.  They do ``D`` multiply-adds per value
#: loaded (the triangular product and the scatter), so a block in L2 feeds
#: even Zen 5's full-width FMAs, and longer blocks amortise each
#: component's setup and horizontal sums.  Zen 5 (``znver5``, EPYC VM of
#: session 25, 1 MB of L2 per core), whole fits, 10^6 rows, 2 threads,
#: alternated in one process, 32768 -> 131072 bytes: 64x16 full 726 -> 645
#: ms per iteration (float32 396 -> 338), 32x16 182 -> 170 (float32 94 ->
#: 90).  Its diag, spherical and tied kernels keep ``_BLOCK_BYTES``: at
#: 32x16 they were 2-8 % slower with the larger blocks (64x16: diag 2 %
#: slower, spherical and tied 2-4 % faster), and so do the per-row kernels
#: (full ``score_samples`` at 64x16, one call: 313 -> 335 ms with the larger
#: blocks, float32 160 -> 169).
_FULL_COVARIANCE_BLOCK_BYTES = {"znver5": 131072}


def _host_cpu_name() -> str:
    """The CPU name numba compiles for (``NUMBA_CPU_NAME`` or the host's)."""
    from llvmlite import binding
    from numba.core import config

    return config.CPU_NAME or binding.get_host_cpu_name()


#: CPUs on which the spherical and tied log-densities never expand their
#: squared distances (:func:`~fastem._kernels._simd.affine_sq_distances`):
#: ``||x - m||^2`` costs a subtraction and an FMA per feature there, where
#: the expanded ``||x||^2 + ||m||^2 - 2 m^T x`` costs one FMA per feature
#: but four more operations per row and component (the norms, the clamp at
#: 0).  On the AVX-512 Xeon of session 23, whose subtractions share the two
#: FMA ports, the expansion took 7-12 % off spherical and tied fits; Zen 5
#: adds and subtracts on two pipes of its own, and there the subtracted
#: form is faster (session 26, whole fits, alternated, 10^6 rows, float64:
#: tied 2x8 to 64x16 -3 to -6 %, spherical 16x16 to 64x16 -4 to -7 %).
_SUBTRACTED_DISTANCE_CPUS = frozenset({"znver5"})


def _compute_bound_block_bytes(table: dict[str, int] | None = None) -> int:
    """``FASTEM_BLOCK_BYTES`` if set, else the host CPU's entry of ``table``
    (default :data:`_COMPUTE_BOUND_BLOCK_BYTES`), else :data:`_BLOCK_BYTES`."""
    text = os.environ.get("FASTEM_BLOCK_BYTES", "")
    if text:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 4096:
            raise ValueError(
                f"FASTEM_BLOCK_BYTES must be an integer >= 4096, got {text!r}"
            )
        return value
    if table is None:
        table = _COMPUTE_BOUND_BLOCK_BYTES
    return table.get(_host_cpu_name(), _BLOCK_BYTES)


#: Block bytes of the compute-bound kernels on this machine (read once).
COMPUTE_BOUND_BLOCK_BYTES = _compute_bound_block_bytes()


def _full_covariance_block_bytes() -> int:
    """As :func:`_compute_bound_block_bytes`, with the host CPU's entry of
    :data:`_FULL_COVARIANCE_BLOCK_BYTES` where it has one."""
    return _compute_bound_block_bytes(
        {**_COMPUTE_BOUND_BLOCK_BYTES, **_FULL_COVARIANCE_BLOCK_BYTES}
    )


#: Block bytes of the full-covariance E-step on this machine (read once).
FULL_COVARIANCE_BLOCK_BYTES = _full_covariance_block_bytes()


def block_rows(
    n_features: int,
    itemsize: int = 8,
    compute_bound: bool = False,
    full_covariance: bool = False,
) -> int:
    """Rows per block for data of ``itemsize`` bytes: a multiple of 16 between
    16 and 256 (float64) or 512 (float32).

    The full-covariance E-step (``full_covariance``) gets blocks of
    :data:`FULL_COVARIANCE_BLOCK_BYTES`, other ``compute_bound`` kernels of
    :data:`COMPUTE_BOUND_BLOCK_BYTES`, the rest of ``_BLOCK_BYTES``."""
    if full_covariance:
        target = FULL_COVARIANCE_BLOCK_BYTES
    elif compute_bound:
        target = COMPUTE_BOUND_BLOCK_BYTES
    else:
        target = _BLOCK_BYTES
    rows = target // (max(int(n_features), 1) * itemsize)
    cap = 256 * 8 // itemsize
    return int(max(16, min(cap, rows - rows % 16)))


def task_rows(n_samples: int, n_features: int) -> int:
    """Rows per task: a multiple of the block size, a function of the shape only."""
    block = block_rows(n_features)
    rows = max(MIN_TASK_ROWS, -(-int(n_samples) // MAX_TASKS))
    return int(-(-rows // block) * block)


def n_tasks(n_samples: int, n_features: int) -> int:
    """Number of tasks for ``n_samples`` rows."""
    return max(1, -(-int(n_samples) // task_rows(n_samples, n_features)))


#: Blocks per task of the per-row kernels (predict, score_samples, ...), which
#: write per-row outputs and need no per-task accumulators.
PER_ROW_TASK_BLOCKS = 16


def per_row_tasks(n_samples: int, block: int) -> int:
    """Tasks of a per-row kernel: ``PER_ROW_TASK_BLOCKS * block`` rows each."""
    return -(-int(n_samples) // (PER_ROW_TASK_BLOCKS * block))


#: Whether the kernels may expand squared distances on this host (read once;
#: see :data:`_SUBTRACTED_DISTANCE_CPUS`).  A compile-time constant of the
#: kernels: numba's cache keys them on the host CPU, so a cached kernel
#: never meets another value.
EXPANDED_DISTANCES: bool = _host_cpu_name() not in _SUBTRACTED_DISTANCE_CPUS
