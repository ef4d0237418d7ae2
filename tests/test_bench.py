"""The side-by-side benchmark's machine model (``fastem.bench``)."""

from __future__ import annotations

import numpy as np

from fastem import bench
from fastem._parallel import task_queue


def test_multiply_add_chains_do_every_step():
    """The peak probe runs 8 * reps dependent multiply-adds per element (none
    folded away): its result is the closed form of the affine recurrence
    v <- a v + c, per task row and only for the tasks asked for."""
    chains = bench._multiply_add_chains()
    acc = np.zeros((3, 256))
    acc[0] = np.linspace(0.0, 1.0, 256)
    acc[1] = 5.0
    start = acc.copy()
    reps = 7
    chains(acc, reps, task_queue(2))
    a, c, n = 0.999999, 1e-9, 8 * reps
    expected = start[:2] * a**n + c * (1 - a**n) / (1 - a)
    np.testing.assert_allclose(acc[:2], expected, rtol=1e-12)
    np.testing.assert_array_equal(acc[2], start[2])


def test_roofline_is_the_larger_of_memory_and_arithmetic_time():
    flops_pc = bench.flops_per_point_component("full", 16, 16)
    assert flops_pc == 2 * 16 * 16 + 6 * 16 + 20
    seconds, nbytes, flops = bench.roofline_seconds(
        1000, 16, 16, "full", 8, bandwidth=1e9, peak=1e12
    )
    assert nbytes == 1000 * 16 * 8
    assert flops == 1000 * 16 * flops_pc
    assert seconds == max(nbytes / 1e9, flops / 1e12)
    slow_memory = bench.roofline_seconds(1000, 16, 16, "full", 8, 1e3, 1e12)[0]
    assert slow_memory == nbytes / 1e3
    # float32 blocks run twice as many lanes: half the arithmetic time.
    single = bench.roofline_seconds(1000, 16, 16, "full", 4, 1e15, 1e12)
    assert single == (flops / 2e12, nbytes / 2, flops)


def test_time_per_iteration_divides_by_the_iterations_run():
    """oneDAL may stop early even with a zero threshold: its time is spread
    over the iterations it ran, not those requested."""
    assert bench.ms_per_iteration({"seconds": 0.6, "n_iter": 3}, 10) == 200.0
    assert bench.ms_per_iteration({"seconds": 0.6, "n_iter": 10}, 10) == 60.0
    # A library that reports no count ran what it was asked for.
    assert bench.ms_per_iteration({"seconds": 0.6}, 10) == 60.0


def test_early_stops_are_listed_per_library_and_case():
    case = {
        "n_features": 64,
        "n_components": 16,
        "covariance_type": "full",
        "dtype": "float64",
        "threads": 2,
        "iterations": 10,
        "libraries": {
            "fastem": {"n_iter": 10},
            "onedal": {"n_iter": 3},
            "sklearn": {"error": "timeout"},
        },
    }
    (line,) = bench.early_stops([case])
    assert line.startswith("onedal 64x16 full float64 2 thr: stopped after 3 of 10")


class _Clock:
    """A clock that advances ``step`` seconds at every reading."""

    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_timed_fits_repeat_short_fits_until_the_time_budget_is_spent():
    calls = []

    def fit(X):
        calls.append(X)
        return len(calls)

    # Each fit "takes" 0.125 s (two readings 0.125 apart, exact in binary).
    seconds, last = bench.timed_fits(fit, "X", 2, 1.0, clock=_Clock(0.125))
    assert seconds == [0.125] * 8 and last == 8
    # At least `repeat` fits even when one alone spends the budget.
    seconds, _ = bench.timed_fits(fit, "X", 3, 0.01, clock=_Clock(0.1))
    assert len(seconds) == 3
    # Never more than MAX_TIMED_FITS.
    seconds, _ = bench.timed_fits(fit, "X", 1, 1e9, clock=_Clock(0.1))
    assert len(seconds) == bench.MAX_TIMED_FITS
