"""The task runner behind every kernel call (fastem/_parallel.py)."""

from __future__ import annotations

import itertools
import threading
import time

import numba
import numpy as np
import pytest
from numba import njit

from fastem._parallel import guided_chunks, resolve_n_threads, run_tasks, thread_cap


@njit(nogil=True)
def _count_tasks(counts, task_begin, task_end):
    for t in range(task_begin, task_end):
        counts[t] += 1


@pytest.mark.parametrize("n_tasks", [1, 2, 3, 7, 64, 1001])
@pytest.mark.parametrize("n_threads", [1, 2, -1])
def test_every_task_runs_exactly_once(n_tasks, n_threads):
    counts = np.zeros(n_tasks, dtype=np.int64)
    run_tasks(_count_tasks, n_tasks, counts, n_threads=n_threads)
    np.testing.assert_array_equal(counts, 1)


@pytest.mark.parametrize("n_tasks", [1, 5, 64, 1001])
@pytest.mark.parametrize("n_threads", [2, 3, 8])
def test_guided_chunks_cover_the_tasks_largest_first(n_tasks, n_threads):
    chunks = guided_chunks(n_tasks, n_threads)
    # Consecutive, non-empty, covering [0, n_tasks) in order.
    assert chunks[0][0] == 0 and chunks[-1][1] == n_tasks
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))
    sizes = [end - begin for begin, end in chunks]
    assert min(sizes) >= 1
    assert sizes == sorted(sizes, reverse=True)
    # Each chunk is at most 1/(2 n_threads) of what was left, and the last
    # one is a single task: the threads end within one task of each other.
    left = n_tasks
    for size in sizes:
        assert size <= max(1, left // (2 * n_threads))
        left -= size
    assert sizes[-1] == 1
    # Few kernel calls: logarithmic in the number of tasks, not linear.
    assert len(chunks) <= 2 * n_threads * (np.log(n_tasks + 1) + 2)


def test_tasks_are_shared_between_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    seen = set()

    def kernel(task_begin, task_end):
        seen.add(threading.get_ident())
        time.sleep(0.01)  # releases the GIL: the pool thread claims chunks too

    run_tasks(kernel, 8, n_threads=2)
    assert len(seen) == 2


def test_thread_cap_keeps_the_call_on_the_calling_thread():
    idents = []

    def kernel(task_begin, task_end):
        idents.append((threading.get_ident(), task_begin, task_end))

    with thread_cap(1):
        run_tasks(kernel, 16, n_threads=-1)
    assert idents == [(threading.get_ident(), 0, 16)]


def test_errors_in_a_chunk_reach_the_caller():
    def kernel(task_begin, task_end):
        if task_begin <= 5 < task_end:
            raise RuntimeError("chunk failed")

    with pytest.raises(RuntimeError, match="chunk failed"):
        run_tasks(kernel, 16, n_threads=2)


@pytest.mark.parametrize("bad", [0, -2, 10**6])
def test_out_of_range_thread_counts_are_rejected(bad):
    with pytest.raises(ValueError, match="n_threads"):
        resolve_n_threads(bad)


@pytest.mark.parametrize("bad", [1.5, "2", True])
def test_non_integer_thread_counts_are_rejected(bad):
    with pytest.raises(TypeError, match="n_threads"):
        resolve_n_threads(bad)


def _count_in_child(queue):
    counts = np.zeros(64, dtype=np.int64)
    run_tasks(_count_tasks, 64, counts, n_threads=2)
    queue.put(int(counts.sum()))


@pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(),
    reason="needs fork",
)
def test_a_forked_child_gets_a_fresh_pool():
    import multiprocessing

    # The parent's pool exists (its threads are not inherited by a child).
    run_tasks(_count_tasks, 64, np.zeros(64, dtype=np.int64), n_threads=2)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_count_in_child, args=(queue,))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert queue.get(timeout=10) == 64


def test_fit_runs_with_one_blas_thread_and_restores_it():
    """BLAS is limited to one thread inside a fit (its calls are tiny and its
    pool would spin against the kernels' threads) and restored afterwards;
    the controller is reused between fits and rebuilt after an import,
    which is the only way another BLAS can be loaded."""
    import importlib.machinery
    import importlib.util
    import sys

    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy.linalg  # noqa: F401  (make sure a BLAS is loaded)

    from fastem import _estimator

    def blas_threads():
        return [
            info["num_threads"]
            for info in threadpoolctl.threadpool_info()
            if info["user_api"] == "blas"
        ]

    before = blas_threads()
    assert before
    with _estimator.single_threaded_blas():
        assert blas_threads() == [1] * len(before)
    assert blas_threads() == before

    first = _estimator._blas_controller()
    assert _estimator._blas_controller() is first
    name = "fastem_test_probe_module"
    sys.modules.pop(name, None)
    spec = importlib.machinery.ModuleSpec(name, None)
    sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        assert _estimator._blas_controller() is not first
    finally:
        del sys.modules[name]
