"""Thread count, thread safety and waiting policy around parallel kernels.

numba's thread count is per calling thread (``numba.set_num_threads`` is
thread-local), so each call sets and restores it without affecting other
threads.  numba's ``workqueue`` threading layer aborts the process when two
Python threads run parallel kernels at once; when that layer is active (or
not yet known) kernel calls are serialised by a lock.  The ``omp`` and
``tbb`` layers run concurrently.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import numba

_WORKQUEUE_LOCK = threading.RLock()
_LOCAL = threading.local()


def _prefer_passive_waiting() -> None:
    """Ask OpenMP worker threads to sleep, not spin, between kernels.

    EM alternates parallel kernels with short serial work in Python (the
    M-step).  With OpenMP's default policy, numba's idle workers spin on the
    cores that this serial work needs; on 2 cores a 50-iteration fit of 100
    rows took 670 ms instead of 11 ms.  The variable is read when numba
    starts its OpenMP pool (the first parallel kernel in the process), so it
    is set, only if the user has not set it, just before fastem's first
    kernel.  Each pass is milliseconds of work, so waking sleeping workers
    (microseconds) costs nothing measurable.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


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

    ``None`` keeps numba's current setting; ``-1`` means all of
    ``numba.config.NUMBA_NUM_THREADS``.
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


def _layer_is_unsafe() -> bool:
    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:  # no parallel kernel has run yet: layer unknown
        return True


@contextlib.contextmanager
def kernel_threads(n_threads: int | None) -> Iterator[None]:
    """Run the enclosed kernel calls on ``n_threads`` threads."""
    _prefer_passive_waiting()
    n = resolve_n_threads(n_threads)
    cap = getattr(_LOCAL, "cap", None)
    if cap is not None:
        n = min(n, cap)
    previous = numba.get_num_threads()
    lock = _WORKQUEUE_LOCK if _layer_is_unsafe() else contextlib.nullcontext()
    with lock:
        numba.set_num_threads(n)
        try:
            yield
        finally:
            numba.set_num_threads(previous)
