"""Running the statistics kernels on several threads.

Every kernel is a serial, ``nogil`` numba function that processes *tasks*
(see :mod:`fastem._layout`) and writes only the output slices of the tasks it
runs.  Its last argument is a task queue (:func:`task_queue`), from which it
claims one task after another (:func:`fastem._kernels._claim.claim_task`, an
atomic counter) until none is left.  :func:`run_tasks` calls the kernel once
on the calling thread and once on each of up to ``n_threads - 1`` pool
threads, all on the same queue: a core slowed by other work simply claims
fewer tasks, and no thread goes back to Python (and the GIL) between tasks.
The per-task outputs are added by the caller in task order, so the result does
not depend on the number of threads or on which thread ran which task.

Why one call per thread: with chunks of tasks handed out from Python, each
chunk's return to the interpreter waited for the GIL held by the other
thread's next dispatch, and the waits added 10-15 us to each of the last,
single-task chunks (0.03-0.04 ms tasks at 2x8).  Two threads ran a 2x8
float32 spherical E-step 1.79x faster than one that way, 1.87x with the
queue (alternated fits in one process, best of 5).

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
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

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


def task_queue(n_tasks: int) -> np.ndarray:
    """A queue of the tasks ``[0, n_tasks)``: the ``int64`` array ``[claims,
    n_tasks, stride]`` that a kernel's threads claim tasks from
    (:func:`fastem._kernels._claim.claim_task`: claim ``c`` is task ``c *
    stride mod n_tasks``).  The stride is the smallest integer of at least
    ``n_tasks / CLAIM_SPREAD`` that is coprime with ``n_tasks``."""
    stride = max(1, -(-n_tasks // CLAIM_SPREAD))
    while math.gcd(stride, n_tasks) != 1:
        stride += 1
    return np.array([0, n_tasks, stride], dtype=np.int64)


#: Tasks claimed one after another lie about ``n_tasks / CLAIM_SPREAD``
#: apart (see :func:`task_queue`).
CLAIM_SPREAD = 8

_CLAIM_LOCK = threading.Lock()


def claimed_tasks(queue: np.ndarray) -> Iterator[int]:
    """The tasks of ``queue`` that this thread claims, for kernels written in
    Python (a compiled kernel calls
    :func:`~fastem._kernels._claim.claim_task`)."""
    n_tasks, stride = int(queue[1]), int(queue[2])
    while True:
        with _CLAIM_LOCK:
            claim = int(queue[0])
            queue[0] = claim + 1
        if claim >= n_tasks:
            return
        yield claim * stride % n_tasks


def run_tasks(
    kernel: Callable[..., None],
    n_tasks: int,
    *args,
    n_threads: int | None = None,
) -> None:
    """Call ``kernel(*args, queue)`` on each thread, with ``queue`` the
    :func:`task_queue` of ``[0, n_tasks)``.

    Parameters
    ----------
    kernel : numba dispatcher or callable
        A ``nogil`` kernel whose last argument is the task queue, and which
        runs every task it claims from it.
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
    queue = task_queue(n_tasks)
    if n <= 1:
        kernel(*args, queue)
        return
    pool = _pool()
    helpers = [pool.submit(kernel, *args, queue) for _ in range(n - 1)]
    try:
        kernel(*args, queue)
    finally:
        for future in helpers:
            future.result()
