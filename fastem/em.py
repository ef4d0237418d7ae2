"""The generic EM driver.

It knows nothing about any distribution.  A *family* supplies

``e_step(source, params) -> stats``
    one pass over the data; ``stats.log_likelihood`` and
    ``stats.total_weight`` give the weighted mean log-likelihood;
``m_step(stats) -> (params, degenerate)``
    new parameters and the indices of components that came out empty or
    singular;
``reseed(source, params, degenerate) -> params``
    repaired parameters for those components.

and optionally

``lower_bound(stats, new_params) -> float``
    the objective to monitor, given the statistics of an E-step and the
    parameters the M-step made from them (a variational family returns its
    evidence lower bound).  Without it the lower bound is the weighted mean
    log-likelihood ``stats.log_likelihood / stats.total_weight``.

The loop mirrors scikit-learn's ``BaseMixture.fit_predict``: ``lower_bound``
is the mean log-likelihood under the parameters *entering* an iteration, the
run stops when it changes by less than ``tol``, and of ``n_init`` runs the
one with the highest final lower bound wins.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .exceptions import ConvergenceWarning, DegenerateComponentWarning

#: ``callback(iteration, lower_bound)``; returning True stops the run.
Callback = Callable[[int, float], Any]


@dataclass
class EMRun:
    """Outcome of one EM run (or the best of several)."""

    params: Any
    lower_bound: float
    lower_bounds: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False


def run_em(
    family,
    source,
    params,
    *,
    tol: float,
    max_iter: int,
    lower_bound: float = float("-inf"),
    callback: Callback | None = None,
    report: Callable[[str], None] | None = None,
    verbose_interval: int = 10,
) -> EMRun:
    """Iterate E- and M-steps from ``params`` until ``|change| < tol``."""
    run = EMRun(params, lower_bound)
    tick = time.perf_counter()
    for n_iter in range(1, max_iter + 1):
        previous = run.lower_bound
        stats = family.e_step(source, run.params)
        new_params, degenerate = family.m_step(stats)
        run.lower_bound = _lower_bound(family, stats, new_params)
        if degenerate:
            warnings.warn(
                f"Iteration {n_iter}: component(s) {degenerate} became empty or "
                "singular and were re-seeded at the worst-explained samples.",
                DegenerateComponentWarning,
                stacklevel=4,
            )
            new_params = family.reseed(source, new_params, degenerate)
        run.params = new_params
        run.lower_bounds.append(run.lower_bound)
        run.n_iter = n_iter
        change = run.lower_bound - previous
        if report is not None and n_iter % verbose_interval == 0:
            now = time.perf_counter()
            report(
                f"  Iteration {n_iter}\t time lapse {now - tick:.5f}s\t ll change {change:.5f}"
            )
            tick = now
        stop = callback(n_iter, run.lower_bound) if callback is not None else False
        if abs(change) < tol:
            run.converged = True
            break
        if stop is True:
            break
    return run


def _lower_bound(family, stats, new_params) -> float:
    """The family's own objective, or the weighted mean log-likelihood."""
    bound = getattr(family, "lower_bound", None)
    if bound is not None:
        return float(bound(stats, new_params))
    return stats.log_likelihood / stats.total_weight


def fit_em(
    family,
    source,
    initialize: Callable[[], Any],
    *,
    n_init: int,
    tol: float,
    max_iter: int,
    warm_start: tuple[Any, float] | None = None,
    callback: Callback | None = None,
    report: Callable[[str], None] | None = None,
    verbose_interval: int = 10,
) -> EMRun:
    """Best of ``n_init`` runs, or one run continuing ``warm_start``.

    ``warm_start`` is ``(params, lower_bound)`` of a previous fit.  Warns
    with :class:`ConvergenceWarning` when the best run did not converge.
    """
    best: EMRun | None = None
    runs = 1 if warm_start is not None else n_init
    for init in range(runs):
        if report is not None:
            report(f"Initialization {init}")
        start = time.perf_counter()
        if warm_start is not None:
            params, lower_bound = warm_start
        else:
            params, lower_bound = initialize(), float("-inf")
        run = run_em(
            family,
            source,
            params,
            tol=tol,
            max_iter=max_iter,
            lower_bound=lower_bound,
            callback=callback,
            report=report,
            verbose_interval=verbose_interval,
        )
        if report is not None and max_iter > 0:
            state = "converged" if run.converged else "did not converge"
            report(
                f"Initialization {state}. time lapse {time.perf_counter() - start:.5f}s"
                f"\t lower bound {run.lower_bound:.5f}."
            )
        if best is None or run.lower_bound > best.lower_bound:
            best = run
    assert best is not None
    if not best.converged and max_iter > 0:
        warnings.warn(
            "Best performing initialization did not converge. Try different init "
            "parameters, or increase max_iter, tol, or check for degenerate data.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return best


def stepwise_step(family, source, params, running, step: float):
    """One step of stepwise (online) EM on a chunk of data.

    Cappé & Moulines (2009): the running statistics (per unit weight) move
    toward the chunk's statistics under the current parameters,
    ``s <- (1 - step) s + step s_chunk``, and the parameters are the M-step
    of ``s``.  With steps ``gamma_t`` such that ``sum gamma_t = inf`` and
    ``sum gamma_t^2 < inf`` (e.g. ``(offset + t)^-kappa``, ``0.5 < kappa <=
    1``) the parameters converge to a stationary point of the likelihood of
    a stationary stream.

    The family's statistics must support ``scaled(factor)``,
    ``reshift(shift)`` and ``+``.  ``running`` is None for the first step.

    Returns
    -------
    params, running, mean_log_likelihood
        New parameters, new running statistics, and the mean log-likelihood
        of the chunk under the parameters that entered the step.
    """
    stats = family.e_step(source, params)
    batch = stats.scaled(1.0 / stats.total_weight)
    if running is None or step >= 1.0:
        running = batch
    else:
        running = running.reshift(batch.shift).scaled(1.0 - step) + batch.scaled(step)
    new_params, degenerate = family.m_step(running)
    if degenerate:
        warnings.warn(
            f"component(s) {degenerate} became empty or singular and were "
            "re-seeded at the worst-explained samples of this chunk.",
            DegenerateComponentWarning,
            stacklevel=3,
        )
        new_params = family.reseed(source, new_params, degenerate)
    return new_params, running, stats.log_likelihood / stats.total_weight
