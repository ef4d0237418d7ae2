"""How rows are cut into tasks and blocks.

Every statistics kernel walks the rows in *tasks* (the unit of parallelism,
each with its own accumulator slice) and, inside a task, in *blocks* (the
unit of vectorisation, small enough to stay in cache).  Both sizes depend
only on the shape of the data, never on the number of threads, and the task
slices are added in task order, so a fit gives bit-identical results for any
thread count.
"""

from __future__ import annotations

#: Fewest rows in a task (tasks smaller than this are not worth a thread).
MIN_TASK_ROWS = 4096
#: Most tasks per kernel call; bounds the accumulator memory to
#: ``MAX_TASKS * size of one set of statistics``.
MAX_TASKS = 64
#: Target bytes of one ``(n_features, block)`` buffer (a few fit in L1).
_BLOCK_BYTES = 32768


def block_rows(n_features: int, itemsize: int = 8) -> int:
    """Rows per block for data of ``itemsize`` bytes: a multiple of 16 between
    16 and 256 (float64) or 512 (float32)."""
    rows = _BLOCK_BYTES // (max(int(n_features), 1) * itemsize)
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
