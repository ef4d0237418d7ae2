"""The task runner behind every kernel call (fastem/_parallel.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from _testing import needs_threads
from numba import njit

from fastem._kernels._claim import claim_task
from fastem._parallel import (
    CLAIM_SPREAD,
    claimed_tasks,
    resolve_n_threads,
    run_tasks,
    task_queue,
    thread_cap,
)


@njit(nogil=True)
def _count_tasks(counts, queue):
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        counts[t] += 1


@njit(nogil=True)
def _record_claims(owner, thread, spin, queue):
    """Marks each claimed task with ``thread``; ``spin`` iterations of work
    per task keep both threads claiming."""
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        acc = 0.0
        for i in range(spin):
            acc += i * 1e-9
        owner[t] = thread + (acc < 0)


@njit(nogil=True)
def _claim_order(order, queue):
    i = 0
    while True:
        t = claim_task(queue)
        if t < 0:
            break
        order[i] = t
        i += 1


@pytest.mark.parametrize("n_tasks", [0, 1, 2, 3, 7, 64, 1001])
@pytest.mark.parametrize("n_threads", [1, 2, -1])
def test_every_task_runs_exactly_once(n_tasks, n_threads):
    needs_threads(n_threads)
    counts = np.zeros(n_tasks, dtype=np.int64)
    run_tasks(_count_tasks, n_tasks, counts, n_threads=n_threads)
    np.testing.assert_array_equal(counts, 1)


def test_threads_claiming_one_queue_share_its_tasks_exactly_once():
    """Two threads racing on one queue (no pool, no GIL between claims):
    every task is claimed once, and both threads get some."""
    n_tasks = 20_000
    queue = task_queue(n_tasks)
    owner = np.full(n_tasks, -1, dtype=np.int64)
    _record_claims(owner, 0, 1, task_queue(1))  # compile outside the race
    start = threading.Barrier(2)

    def claim(thread):
        start.wait()
        _record_claims(owner, thread, 2000, queue)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(np.unique(owner)) == {0, 1}
    # Each thread ran past the last claim once.
    assert queue[0] == n_tasks + 2


@pytest.mark.parametrize("n_tasks", [0, 1, 2, 7, 8, 9, 63, 64, 65, 1001])
def test_claims_visit_every_task_once_with_neighbours_far_apart(n_tasks):
    """One thread claiming alone gets every task exactly once, and
    consecutive claims ``n / CLAIM_SPREAD`` or more apart (modulo n)."""
    order = np.full(n_tasks, -1, dtype=np.int64)
    _claim_order(order, task_queue(n_tasks))
    assert sorted(order.tolist()) == list(range(n_tasks))
    steps = np.diff(order) % n_tasks
    assert (steps >= min(n_tasks - 1, -(-n_tasks // CLAIM_SPREAD))).all()


def test_python_kernels_claim_the_same_tasks_as_compiled_ones():
    order = np.full(64, -1, dtype=np.int64)
    _claim_order(order, task_queue(64))
    queue = task_queue(64)
    assert list(claimed_tasks(queue)) == order.tolist()
    assert list(claimed_tasks(queue)) == []


def test_tasks_are_shared_between_threads():
    needs_threads(2)
    seen = set()

    def kernel(queue):
        for _ in claimed_tasks(queue):
            seen.add(threading.get_ident())
            time.sleep(0.01)  # releases the GIL: the pool thread claims too

    run_tasks(kernel, 8, n_threads=2)
    assert len(seen) == 2


def test_thread_cap_keeps_the_call_on_the_calling_thread():
    idents = []

    def kernel(queue):
        idents.append((threading.get_ident(), sorted(claimed_tasks(queue))))

    with thread_cap(1):
        run_tasks(kernel, 16, n_threads=-1)
    assert idents == [(threading.get_ident(), list(range(16)))]


def test_errors_in_a_task_reach_the_caller():
    def kernel(queue):
        for task in claimed_tasks(queue):
            if task == 5:
                raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        run_tasks(kernel, 16, n_threads=-1)


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
    needs_threads(2)
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
