"""Running the statistics kernels on several threads.

Every kernel is a serial, ``nogil`` numba function that processes a range of
*tasks* ``[task_begin, task_end)`` and writes only the output slices of those
tasks (see :mod:`fastem._layout`).  :func:`run_tasks` cuts the task range into
chunks of decreasing size (:func:`guided_chunks`) that the calling thread and
up to ``n_threads - 1`` pool threads claim one after another, so a core
slowed by other work simply claims fewer chunks.
The per-task outputs are added by the caller in task order, so the result does
not depend on the number of threads or on which thread ran which chunk.

Why not ``numba.prange``: compiling a ``parallel=True`` kernel took about
twice as long as compiling the same loop serially (a cold first ``fit`` went
from 11.3 s to 6.3 s without it), numba's ``workqueue`` layer aborts when two
Python threads run parallel kernels at once, and idle OpenMP workers spinning
between kernels starved the serial M-step on small machines.  Kernels that
release the GIL on plain Python threads have none of these problems and are
safe to call from any number of threads, including Dask workers.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numba

_LOCAL = threading.local()
_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The process-wide worker pool, created on first use (like a BLAS pool)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                thread_name_prefix="fastem",
            )
        return _POOL


def _forget_pool() -> None:
    # A forked child inherits the pool object but not its threads.
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


@contextlib.contextmanager
def thread_cap(n: int) -> Iterator[None]:
    """Limit the kernels run by this thread to ``n`` threads (e.g. inside a
    Dask task, where the worker's own threads already fill the cores)."""
    previous = getattr(_LOCAL, "cap", None)
    _LOCAL.cap = n
    try:
        yield
    finally:
        _LOCAL.cap = previous


def resolve_n_threads(n_threads: int | None) -> int:
    """The number of threads a kernel call will use.

    ``None`` means numba's current setting for this thread
    (``numba.get_num_threads()``, e.g. set by ``numba.set_num_threads`` or
    ``NUMBA_NUM_THREADS``); ``-1`` means ``numba.config.NUMBA_NUM_THREADS``.
    """
    limit = numba.config.NUMBA_NUM_THREADS
    if n_threads is None:
        return numba.get_num_threads()
    if isinstance(n_threads, bool) or not isinstance(n_threads, int):
        raise TypeError(f"n_threads must be an int or None, got {n_threads!r}")
    if n_threads == -1:
        return limit
    if not 1 <= n_threads <= limit:
        raise ValueError(
            f"n_threads must be -1 or between 1 and {limit} "
            f"(numba.config.NUMBA_NUM_THREADS), got {n_threads}"
        )
    return n_threads


def guided_chunks(n_tasks: int, n_threads: int) -> list[tuple[int, int]]:
    """Task ranges of decreasing size covering ``[0, n_tasks)`` in order.

    Each chunk takes ``1 / (2 n_threads)`` of the tasks still unassigned (at
    least one), OpenMP's ``guided`` schedule: the first chunks are large (few
    kernel calls), the last ones a single task, so the threads finish within
    about one task of each other even when a core is slowed by other work.
    """
    chunks = []
    begin = 0
    while begin < n_tasks:
        size = max(1, (n_tasks - begin) // (2 * n_threads))
        chunks.append((begin, begin + size))
        begin += size
    return chunks


def run_tasks(
    kernel: Callable[..., None],
    n_tasks: int,
    *args,
    n_threads: int | None = None,
) -> None:
    """Call ``kernel(*args, task_begin, task_end)`` over tasks ``[0, n_tasks)``.

    Parameters
    ----------
    kernel : numba dispatcher
        A ``nogil`` kernel whose last two arguments are the task range.
    n_tasks : int
        Number of tasks.
    *args
        The kernel's other arguments.
    n_threads : int or None
        As in :func:`resolve_n_threads`, further limited by :func:`thread_cap`.
    """
    n = resolve_n_threads(n_threads)
    cap = getattr(_LOCAL, "cap", None)
    if cap is not None:
        n = min(n, cap)
    n = min(n, n_tasks)
    if n <= 1:
        kernel(*args, 0, n_tasks)
        return
    # An iterator shared by the threads: next() on it is atomic under the
    # GIL, so every chunk is claimed exactly once, largest first.
    chunks = iter(guided_chunks(n_tasks, n))

    def claim_chunks() -> None:
        for begin, end in chunks:
            kernel(*args, begin, end)

    pool = _pool()
    helpers = [pool.submit(claim_chunks) for _ in range(n - 1)]
    try:
        claim_chunks()
    finally:
        for future in helpers:
            future.result()
