"""``python -m fastem bench``: fastem, scikit-learn and oneDAL side by side.

Every library fits the same data from the same initial parameters for a
fixed number of EM iterations (``tol=0``), each fit in a fresh subprocess of
its own so that its peak memory is attributable to it alone.  The command
prints one table row per case (shape x covariance type x dtype x threads):
milliseconds per EM iteration for each library, the ratio to fastem, the
peak memory each fit added, and fastem's time as a percentage of a roofline
figure for the machine.

Method
------
* **Data.**  ``N`` rows drawn from a random ``K``-component mixture (seeded),
  written once per shape and dtype to a temporary ``.npy`` file that every
  worker loads fully into memory.  Initial parameters: uniform weights,
  the true centers plus unit noise as means, and the per-feature variance
  of the data as every covariance (in the covariance type's own shape).
* **Workers.**  One ``subprocess`` per (case, library, thread count), run
  with ``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``
  and ``MKL_NUM_THREADS`` set to the thread count (``OPENBLAS_CORETYPE`` and
  everything else are passed through untouched).  The worker loads the data,
  fits once on the first 4096 rows to compile / warm up (so compile time is
  excluded), then times fits on all rows and keeps the fastest: at least
  ``--repeat`` of them, and more while the timed fits add up to less than
  ``--min-seconds`` (at most :data:`MAX_TIMED_FITS`), so that a fit of a few
  milliseconds is the best of many and a host's busy moments show less.
* **Time per iteration.**  The wall time of ``fit(max_iter=iterations,
  tol=0)`` divided by the number of iterations, for every library alike;
  nothing is subtracted.  scikit-learn's ``fit`` also estimates parameters
  once from its (discarded) initial responsibilities (``init_params=
  'random_from_data'``, the cheapest) and runs a final E-step, so its figure
  includes about ``1/iterations`` of extra work; fastem's includes its
  validation and set-up.  oneDAL (``daal4py.em_gmm``, ``full`` and ``diag``
  only) is timed around ``compute`` in the same way.
* **Peak memory.**  On Linux the worker resets its resident-set high-water
  mark (``/proc/self/clear_refs``) after loading the data and warming up,
  so "peak MB" is the resident memory the fits added on top of the loaded
  input; the worker's total peak RSS is in the JSON output.  Elsewhere
  (no ``/proc``) the process's lifetime peak (``getrusage``) is reported,
  data and warm-up included.
* **Roofline.**  ``max(bytes of X / bandwidth, N * K * f / peak)`` per
  iteration, with ``f`` the floating-point operations per point and
  component of the fused E-step plus statistics (see
  :func:`flops_per_point_component`); float32 data count twice the float64
  peak (single-precision vectors have twice the lanes).  Bandwidth is
  measured once as a large numpy copy (read + write, one thread), and the
  float64 peak on each swept thread count as the higher of two rates: the
  throughput of independent multiply-add chains compiled by numba
  (:func:`measure_peak`) and a large numpy matmul
  (:func:`measure_blas_peak`); or both are given with ``--bandwidth`` /
  ``--peak``.  Either rate alone can fall short of the hardware: the BLAS
  may use narrower vectors than the CPU has (OpenBLAS with
  ``OPENBLAS_CORETYPE=Haswell`` runs AVX2 kernels on an AVX-512 machine, at
  half its peak), and LLVM, tuned for Intel's AVX-512 cores, prefers 256-bit
  vectors, so numba's chains reach half the peak there.  ``% roofline`` is
  ``roofline / fastem time``: 100 % would be the machine's limit.

The table is printed as the cases finish; ``--json PATH`` writes every
number (including each library's final lower bound, as a check that the
fits agree) for scripts.

oneDAL
------
Run when ``import daal4py`` works in the interpreter ``--onedal-python``
(default: this one).  On PyPI the module ships in ``scikit-learn-intelex``
(the standalone ``daal4py`` 2024.7 fails to import with scikit-learn 1.9).
Install it in a separate virtualenv, so that its dependencies (``tbb``, its
own BLAS/threading runtime) cannot change the environment fastem is measured
in::

    python -m venv --system-site-packages ./onedal-venv
    ./onedal-venv/bin/pip install scikit-learn-intelex
    python -m fastem bench --onedal-python ./onedal-venv/bin/python

Its "lower bound" in the JSON output is ``goalFunction / N``, the
log-likelihood of its final parameters, not comparable digit for digit.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

#: ``(n_features, n_components)`` of the default cases.
SHAPES: tuple[tuple[int, int], ...] = ((2, 8), (16, 16), (64, 16))
#: Shapes of ``--quick``.
QUICK_SHAPES: tuple[tuple[int, int], ...] = ((2, 8), (16, 16))
COVARIANCE_TYPES: tuple[str, ...] = ("full", "diag", "spherical", "tied")
LIBRARIES: tuple[str, ...] = ("fastem", "sklearn", "onedal")
#: Covariance types oneDAL's ``em_gmm`` supports, by its storage name.
ONEDAL_STORAGE = {"full": "full", "diag": "diagonal"}
#: Rows of the warm-up fit that compiles kernels before timing.
WARMUP_ROWS = 4096
REG_COVAR = 1e-6

_THREAD_VARIABLES = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
)


# ---------------------------------------------------------------------------
# Roofline model
# ---------------------------------------------------------------------------


def flops_per_point_component(covariance_type: str, n_features: int, n_components: int):
    """Floating-point operations per row and component of one E-step.

    The count follows the fused kernels (log-density, log-sum-exp and
    responsibilities, accumulation of the statistics); ``exp``/``log`` and
    the per-component bookkeeping are lumped into the constant 20.

    * ``full``: ``2 D^2 + 6 D + 20`` -- the triangular product
      ``(x - mu_k) U_k`` (``D^2`` multiply-adds counted as ``D^2`` flops
      for the triangle) and the scatter ``r (x - mu_k)(x - mu_k)^T`` (lower
      triangle, another ``D^2``), plus the centring, squares and first
      moments.
    * ``tied``: the triangular product ``(x - c) U`` happens once per row,
      not per component (``D^2 + 2 D``); per component remain the distance
      to the projected mean and the first moment, a multiply-add per feature
      each (``4 D``: the distance as ``||y||^2 - 2 y^T m + ||m||^2`` with
      ``||y||^2`` once per row).  Per row and component that is ``4 D + 20 +
      (D^2 + 2 D) / K``.  The total scatter ``(x - c)(x - c)^T`` does not
      depend on the parameters: a fit sums it in its first pass only, so it
      is not part of an iteration's count.
    * ``diag``: ``8 D + 20`` (distance ``4 D``, first and second moments
      ``4 D``).
    * ``spherical``: ``4 D + 20`` (the distance and the first moment, a
      multiply-add per feature each, as for ``tied``; the second moment
      comes from the distance).

    Every count takes a multiply-add as two flops, as the peak does.
    Spherical and tied count one multiply-add per feature for the distance
    and one for the first moment, the least that any algorithm needs; the
    kernels' subtract-and-FMA forms (distances on Zen 5, see
    :data:`fastem._layout.EXPANDED_DISTANCES`, float32 tied first moments)
    do a subtraction more than counted.  Until session 26 spherical counted
    ``3 D + 20``, below that least work, and tied ``6 D + 20 + (D^2 + 2 D)
    / K``, the subtract-and-FMA forms.

    Returns
    -------
    flops : float
    """
    D, K = float(n_features), float(n_components)
    if covariance_type == "full":
        return 2 * D * D + 6 * D + 20
    if covariance_type == "tied":
        return 4 * D + 20 + (D * D + 2 * D) / K
    if covariance_type == "diag":
        return 8 * D + 20
    if covariance_type == "spherical":
        return 4 * D + 20
    raise ValueError(f"unknown covariance_type {covariance_type!r}")


def roofline_seconds(
    n_samples: int,
    n_features: int,
    n_components: int,
    covariance_type: str,
    itemsize: int,
    bandwidth: float,
    peak: float,
) -> tuple[float, float, float]:
    """Lower bound on the time of one EM iteration.

    Parameters
    ----------
    n_samples, n_features, n_components : int
    covariance_type : str
    itemsize : int
        Bytes per element of ``X`` (4 or 8).
    bandwidth : float
        Memory bandwidth in bytes per second.
    peak : float
        Float64 operations per second.  float32 data (``itemsize`` 4) is
        computed in single precision, twice as many lanes per vector, so its
        ceiling is ``2 * peak``.

    Returns
    -------
    seconds, bytes_moved, flops : float
        ``max(bytes_moved / bandwidth, flops / (peak * 8 / itemsize))`` and
        its two terms' numerators.
    """
    nbytes = float(n_samples) * n_features * itemsize
    flops = (
        float(n_samples)
        * n_components
        * flops_per_point_component(covariance_type, n_features, n_components)
    )
    lanes = 8.0 / itemsize
    return max(nbytes / bandwidth, flops / (peak * lanes)), nbytes, flops


def measure_bandwidth(nbytes: int = 1 << 28, repeat: int = 5) -> float:
    """Bytes per second of a large numpy copy (read + write counted).

    Parameters
    ----------
    nbytes : int
        Size of the copied array (256 MiB by default).
    repeat : int
        Copies; the fastest counts.

    Returns
    -------
    bandwidth : float
    """
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2.0 * src.nbytes / best


@functools.cache
def _multiply_add_chains():
    """A kernel ``(acc, reps, queue)`` that runs ``reps`` times eight
    dependent multiply-adds on every element of ``acc[t]`` for each task
    ``t`` it claims from ``queue`` (:func:`fastem._parallel.run_tasks`).  A row of 256 elements is 32 AVX-512 vectors whose chains
    are independent, enough to hide the FMA latency; ``contract`` alone (no
    reassociation) keeps the compiler from folding a chain into fewer
    operations.  Built on first use: the benchmark's workers run this
    module as a script and need no numba.  Compiled as fastem's kernels are
    (:data:`fastem._config.PIPELINE`), so the peak is the one they can
    reach."""
    from numba import njit

    from fastem._config import PIPELINE
    from fastem._kernels._claim import claim_task

    @njit(nogil=True, fastmath={"contract"}, **PIPELINE)
    def chains(acc, reps, queue):
        while True:
            t = claim_task(queue)
            if t < 0:
                break
            row = acc[t]
            for _ in range(reps):
                for i in range(row.shape[0]):
                    v = row[i]
                    v = v * 0.999999 + 1e-9
                    v = v * 0.999999 + 1e-9
                    v = v * 0.999999 + 1e-9
                    v = v * 0.999999 + 1e-9
                    v = v * 0.999999 + 1e-9
                    v = v * 0.999999 + 1e-9
                    v = v * 0.999999 + 1e-9
                    v = v * 0.999999 + 1e-9
                    row[i] = v

    return chains


def measure_peak(n_threads: int | None = None, repeat: int = 5) -> float:
    """Float64 operations per second of compiled multiply-add chains.

    The throughput of the fused multiply-add units, as code compiled by
    numba for this CPU reaches it: independent chains in registers, no
    memory traffic, one task per thread.  A BLAS may be built or
    configured for narrower vectors than the CPU has
    (``OPENBLAS_CORETYPE=Haswell`` makes OpenBLAS use AVX2 on an AVX-512
    machine and halves its figure; see :func:`measure_blas_peak`), and a
    compiler may not reach the whole FMA throughput with one loop shape:
    the benchmark's roofline takes the higher of the two.

    Parameters
    ----------
    n_threads : int, optional
        Threads, as in :func:`fastem._parallel.resolve_n_threads`.
    repeat : int
        Runs; the fastest counts.

    Returns
    -------
    peak : float
    """
    from fastem._kernels._blocks import aligned_rows
    from fastem._parallel import resolve_n_threads, run_tasks

    chains = _multiply_add_chains()
    n = resolve_n_threads(n_threads)
    # Rows on cache-line boundaries: with numpy's 16-byte alignment the
    # threads' rows shared a cache line, which both stored on every pass
    # (2-thread peak 67-76 GFLOP/s instead of 166 on the AVX-512 Xeon VM).
    acc = aligned_rows(n, 256, np.dtype(np.float64))
    acc[:] = 0.0
    reps = 1_000_000  # ~40 ms per run
    run_tasks(chains, n, acc, 1, n_threads=n)  # compile
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run_tasks(chains, n, acc, reps, n_threads=n)
        best = min(best, time.perf_counter() - start)
    return 2.0 * 8 * acc.size * reps / best


def measure_blas_peak(
    n_threads: int | None = None, size: int = 2048, repeat: int = 3
) -> float:
    """Float64 operations per second of a large numpy matmul (for reference
    beside :func:`measure_peak`).

    Parameters
    ----------
    n_threads : int, optional
        BLAS threads (via threadpoolctl when installed); None keeps the
        BLAS default.
    size : int
        Side of the square matrices.
    repeat : int
        Products; the fastest counts.

    Returns
    -------
    peak : float
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size))
    b = rng.standard_normal((size, size))
    out = np.empty_like(a)
    limits = _blas_limits(n_threads)
    best = float("inf")
    with limits:
        np.matmul(a, b, out=out)  # BLAS start-up
        for _ in range(repeat):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best


def _blas_limits(n_threads: int | None):
    import contextlib

    if n_threads is None or importlib.util.find_spec("threadpoolctl") is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n_threads, user_api="blas")


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def make_data(
    n_samples: int, n_features: int, n_components: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """float64 rows drawn from a random, moderately separated mixture.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    centers : ndarray of shape (n_components, n_features)
        The true component means.
    """
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-4.0, 4.0, size=(n_components, n_features))
    scales = rng.uniform(0.5, 1.5, size=(n_components, n_features))
    labels = rng.integers(0, n_components, size=n_samples)
    X = rng.standard_normal((n_samples, n_features))
    X *= scales[labels]
    X += centers[labels]
    return X, centers


def make_init(
    X: np.ndarray, centers: np.ndarray, covariance_type: str, seed: int = 0
) -> dict[str, np.ndarray]:
    """Initial weights, means, covariances and precisions shared by all libraries.

    Uniform weights, the true centers moved by unit Gaussian noise as means
    (so that no component starts on an outlier and collapses), and the
    per-feature variance of ``X`` as each covariance, in scikit-learn's
    shapes for ``covariance_type``.
    """
    rng = np.random.default_rng(seed + 1)
    K, D = centers.shape
    means = centers + rng.standard_normal((K, D))
    var = X[: min(X.shape[0], 100_000)].astype(np.float64).var(axis=0) + REG_COVAR
    if covariance_type == "full":
        cov = np.broadcast_to(np.diag(var), (K, D, D)).copy()
        prec = np.broadcast_to(np.diag(1.0 / var), (K, D, D)).copy()
    elif covariance_type == "tied":
        cov, prec = np.diag(var), np.diag(1.0 / var)
    elif covariance_type == "diag":
        cov = np.broadcast_to(var, (K, D)).copy()
        prec = 1.0 / cov
    else:
        cov = np.full(K, var.mean())
        prec = 1.0 / cov
    return {
        "weights": np.full(K, 1.0 / K),
        "means": means,
        "covariances": cov,
        "precisions": prec,
    }


# ---------------------------------------------------------------------------
# Worker (runs in a fresh process per library and case)
# ---------------------------------------------------------------------------


def _rss_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _lifetime_peak() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _fit_fastem(spec, X, init):
    import warnings

    import fastem

    def fit(rows):
        gm = fastem.GaussianMixture(
            spec["n_components"],
            covariance_type=spec["covariance_type"],
            tol=0.0,
            reg_covar=REG_COVAR,
            max_iter=spec["iterations"],
            weights_init=init["weights"],
            means_init=init["means"],
            precisions_init=init["precisions"],
            n_threads=spec["threads"],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(rows)
        return float(gm.lower_bound_), int(gm.n_iter_)

    def info():
        return {"version": fastem.__version__}

    return fit, info


def _fit_sklearn(spec, X, init):
    import warnings

    import sklearn
    from sklearn.mixture import GaussianMixture

    def fit(rows):
        gm = GaussianMixture(
            spec["n_components"],
            covariance_type=spec["covariance_type"],
            tol=0.0,
            reg_covar=REG_COVAR,
            max_iter=spec["iterations"],
            init_params="random_from_data",
            weights_init=init["weights"],
            means_init=init["means"],
            precisions_init=init["precisions"],
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(rows)
        return float(gm.lower_bound_), int(gm.n_iter_)

    return fit, lambda: {"version": sklearn.__version__}


def _fit_onedal(spec, X, init):
    import daal4py

    daal4py.daalinit(spec["threads"])
    cov = spec["covariance_type"]
    K = spec["n_components"]
    D = X.shape[1]
    if cov == "full":
        covariances = [np.ascontiguousarray(c) for c in init["covariances"]]
    else:
        covariances = [c.reshape(1, D).copy() for c in init["covariances"]]
    weights = init["weights"].reshape(1, K)
    means = np.ascontiguousarray(init["means"])
    fptype = "float" if X.dtype == np.float32 else "double"

    def fit(rows):
        algo = daal4py.em_gmm(
            nComponents=K,
            fptype=fptype,
            maxIterations=spec["iterations"],
            accuracyThreshold=0.0,
            regularizationFactor=REG_COVAR,
            covarianceStorage=ONEDAL_STORAGE[cov],
        )
        result = algo.compute(rows, weights, means, covariances)
        # goalFunction is the total log-likelihood of the final parameters.
        lower_bound = float(np.ravel(result.goalFunction)[0]) / rows.shape[0]
        return lower_bound, int(np.ravel(result.nIterations)[0])

    return fit, lambda: {
        "version": _dist_version("daal4py", "scikit-learn-intelex", "daal")
    }


_FITTERS = {"fastem": _fit_fastem, "sklearn": _fit_sklearn, "onedal": _fit_onedal}


#: Most fits a worker times (see :func:`timed_fits`).
MAX_TIMED_FITS = 50


def timed_fits(fit, X, repeat: int, min_seconds: float, clock=time.perf_counter):
    """Time ``fit(X)`` at least ``repeat`` times, and again while the timed
    fits add up to less than ``min_seconds`` (at most
    :data:`MAX_TIMED_FITS` fits).

    Returns
    -------
    seconds : list of float
        The wall time of each fit.
    last : object
        What the last fit returned.
    """
    seconds: list[float] = []
    last = None
    while len(seconds) < repeat or (
        sum(seconds) < min_seconds and len(seconds) < MAX_TIMED_FITS
    ):
        start = clock()
        last = fit(X)
        seconds.append(clock() - start)
    return seconds, last


def _worker(spec_path: str) -> int:
    """Run one library's timed fits as described by the JSON file ``spec_path``."""
    import gc

    with open(spec_path) as f:
        spec = json.load(f)
    X = np.load(spec["data"])
    with np.load(spec["init"]) as z:
        init = {k: z[k] for k in z.files}
    fit, info = _FITTERS[spec["library"]](spec, X, init)
    fit(np.ascontiguousarray(X[:WARMUP_ROWS]))  # compile / warm up
    gc.collect()
    rss_before = _rss_bytes("VmRSS")
    exact = rss_before is not None and _reset_peak()
    if not exact:
        rss_before = 0
    times, (lower_bound, n_iter) = timed_fits(
        fit, X, spec["repeat"], spec.get("min_seconds", 0.0)
    )
    peak = _rss_bytes("VmHWM") if exact else _lifetime_peak()
    out = {
        "seconds": min(times),
        "all_seconds": times,
        "lower_bound": lower_bound,
        "n_iter": n_iter,
        "rss_before_fit_mb": rss_before / 2**20,
        "peak_rss_mb": peak / 2**20,
        "peak_added_mb": max(peak - rss_before, 0) / 2**20,
        "peak_method": "VmHWM reset" if exact else "ru_maxrss (lifetime)",
        **info(),
    }
    with open(spec["result"], "w") as f:
        json.dump(out, f)
    return 0


#: Runs :func:`_worker` from this file without importing the fastem package,
#: so that the scikit-learn and oneDAL workers carry no numba in their memory.
_WORKER_BOOT = (
    "import runpy, sys; "
    "ns = runpy.run_path(sys.argv[1], run_name='fastem_bench_worker'); "
    "sys.exit(ns['_worker'](sys.argv[2]))"
)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def _dist_version(*names: str) -> str:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "?"


def _probe_onedal(python: str) -> tuple[bool, str]:
    code = (
        "import daal4py\n"
        "from importlib import metadata\n"
        "v = '?'\n"
        "for n in ('daal4py', 'scikit-learn-intelex', 'daal'):\n"
        "    try:\n"
        "        v = metadata.version(n); break\n"
        "    except metadata.PackageNotFoundError:\n"
        "        pass\n"
        "print(v)\n"
    )
    try:
        proc = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["import failed"])[-1]
        return False, last
    return True, proc.stdout.strip()


def _parse_list(text: str, kind, name: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad {name}: {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"empty {name}")
    return values


def _parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for item in text.split(","):
        try:
            d, k = item.lower().split("x")
            shapes.append((int(d), int(k)))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"shapes are DxK, comma-separated (e.g. 2x8,16x16), got {item!r}"
            ) from None
    return shapes


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m fastem bench``."""
    p = argparse.ArgumentParser(
        prog="python -m fastem bench",
        description=(
            "fastem vs scikit-learn (and oneDAL's daal4py.em_gmm when importable): "
            "ms per EM iteration, peak memory of each fit (each library in its own "
            "subprocess) and fastem's share of the machine's roofline."
        ),
        epilog=(
            "Time per iteration is fit(max_iter=ITERATIONS, tol=0) / ITERATIONS for "
            "every library, from the same initial parameters, compile time excluded "
            "(a warm-up fit on 4096 rows), nothing subtracted."
        ),
    )
    p.add_argument("--quick", action="store_true", help="N=1e5 and shapes 2x8,16x16")
    p.add_argument("-n", "--n-samples", type=int, help="rows (default 1e6)")
    p.add_argument(
        "--shapes",
        type=_parse_shapes,
        help="DxK list (default 2x8,16x16,64x16)",
    )
    p.add_argument(
        "--cov",
        type=lambda s: _parse_list(s, str, "covariance types"),
        default=list(COVARIANCE_TYPES),
        help="covariance types (default full,diag,spherical,tied)",
    )
    p.add_argument("--iterations", type=int, default=10, help="EM iterations (10)")
    p.add_argument(
        "--dtype",
        type=lambda s: _parse_list(s, str, "dtypes"),
        default=None,
        help="float64,float32 or one of them (default float64)",
    )
    p.add_argument("--float32", action="store_true", help="same as --dtype float32")
    p.add_argument(
        "--threads",
        type=lambda s: _parse_list(s, int, "thread counts"),
        default=None,
        help="thread counts to sweep, e.g. 1,2 (default: all logical CPUs)",
    )
    p.add_argument(
        "--libs",
        type=lambda s: _parse_list(s, str, "libraries"),
        default=list(LIBRARIES),
        help="libraries to run when available (default fastem,sklearn,onedal)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="timed fits per worker; best counts (default 1; 3 with --dask)",
    )
    p.add_argument(
        "--min-seconds",
        type=float,
        default=1.0,
        help="time more fits while the timed fits of a worker add up to less "
        f"than this (default 1.0; at most {MAX_TIMED_FITS} fits)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bandwidth", type=float, help="memory bandwidth in GB/s (skip measuring)"
    )
    p.add_argument(
        "--peak", type=float, help="float64 peak in GFLOP/s (skip measuring)"
    )
    p.add_argument(
        "--onedal-python",
        default=sys.executable,
        help=(
            "interpreter for the oneDAL worker, e.g. a virtualenv made with "
            "--system-site-packages that has scikit-learn-intelex (default: this one)"
        ),
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    dask_group = p.add_argument_group(
        "Dask",
        "--dask times a fit of a Dask array on a local cluster of worker processes "
        "against the in-process fit of the same data (needs dask and distributed)",
    )
    dask_group.add_argument(
        "--dask",
        action="store_true",
        help=(
            "Dask fit on a LocalCluster(processes=True, threads_per_worker=1) vs "
            "in-process fit (default shapes 2x8,16x16; --libs and oneDAL unused)"
        ),
    )
    dask_group.add_argument(
        "--dask-workers", type=int, default=2, help="worker processes (default 2)"
    )
    dask_group.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help="rows per Dask block (default: 4 blocks per worker)",
    )
    p.add_argument("--json", metavar="PATH", help="also write all results as JSON")
    return p


def _validate(args, parser) -> None:
    if args.n_samples is None:
        args.n_samples = 100_000 if args.quick else 1_000_000
    if args.shapes is None:
        args.shapes = list(QUICK_SHAPES if args.quick or args.dask else SHAPES)
    if args.repeat is None:
        args.repeat = 3 if args.dask else 1
    if args.dtype is None:
        args.dtype = ["float32"] if args.float32 else ["float64"]
    elif args.float32 and "float32" not in args.dtype:
        args.dtype.append("float32")
    if args.threads is None:
        args.threads = [os.cpu_count() or 1]
    for name, values, allowed in (
        ("--cov", args.cov, COVARIANCE_TYPES),
        ("--dtype", args.dtype, ("float64", "float32")),
        ("--libs", args.libs, LIBRARIES),
    ):
        bad = [v for v in values if v not in allowed]
        if bad:
            parser.error(f"{name}: unknown {bad}; choose from {', '.join(allowed)}")
    if "fastem" not in args.libs:
        parser.error("--libs must include fastem (the ratios are relative to it)")
    if args.n_samples <= WARMUP_ROWS:
        parser.error(f"--n-samples must exceed {WARMUP_ROWS}")
    if args.min_seconds < 0:
        parser.error("--min-seconds must not be negative")
    if args.iterations < 1 or args.repeat < 1:
        parser.error("--iterations and --repeat must be at least 1")
    if any(t < 1 for t in args.threads):
        parser.error("--threads must be positive")
    for d, k in args.shapes:
        if d < 1 or k < 1 or k > args.n_samples:
            parser.error(f"bad shape {d}x{k}")
    if args.dask:
        if args.dask_workers < 1:
            parser.error("--dask-workers must be at least 1")
        if len(args.threads) > 1:
            parser.error("--dask takes one --threads value (the in-process fit's)")
        if args.chunk_rows is None:
            args.chunk_rows = -(-args.n_samples // (4 * args.dask_workers))
        if args.chunk_rows < 1:
            parser.error("--chunk-rows must be at least 1")


def _header(args, available: dict[str, str], machine: dict) -> list[str]:
    lines = []
    peers = " vs ".join(f"{lib} {ver}" for lib, ver in available.items())
    lines.append(f"fastem bench: {peers}")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    lines.append(
        f"machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.system()}; "
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"numba {_dist_version('numba')}"
    )
    for pool in machine["threadpools"]:
        lines.append(
            "threadpoolctl: {user_api} {internal_api} {version} ({threading_layer}), "
            "{num_threads} threads, architecture {architecture}".format(
                **{
                    k: pool.get(k, "?")
                    for k in (
                        "user_api",
                        "internal_api",
                        "version",
                        "threading_layer",
                        "num_threads",
                        "architecture",
                    )
                }
            )
        )
    env = ", ".join(
        f"{k}={os.environ[k]}"
        for k in ("OPENBLAS_CORETYPE", "NUMBA_THREADING_LAYER", "NUMBA_NUM_THREADS")
        if k in os.environ
    )
    if "NUMBA_CPU_FEATURES" in os.environ:
        flags = os.environ["NUMBA_CPU_FEATURES"].split(",")
        note = "512-bit vectors allowed" if "-prefer-256-bit" in flags else "set"
        env = ", ".join(filter(None, [env, f"NUMBA_CPU_FEATURES ({note})"]))
    if env:
        lines.append(f"environment (passed through): {env}")
    lines.append(
        f"bandwidth {machine['bandwidth'] / 1e9:.1f} GB/s ({machine['bandwidth_source']}); "
        "float64 peak "
        + ", ".join(
            f"{t} thr {p / 1e9:.1f} GFLOP/s" for t, p in machine["peak"].items()
        )
        + f" ({machine['peak_source']}"
        + "".join(
            f"; {label} "
            + ", ".join(f"{t} thr {p / 1e9:.1f}" for t, p in machine[key].items())
            for key, label in (
                ("numba_peak", "numba chains"),
                ("blas_peak", "BLAS matmul"),
            )
            if machine.get(key)
        )
        + ")"
    )
    for lib, reason in machine["unavailable"].items():
        lines.append(f"{lib}: not run ({reason})")
    lines.append(
        f"N={args.n_samples:,}, {args.iterations} EM iterations, tol=0, same initial "
        "parameters; ms/it = fit time / iterations run (compile excluded, nothing "
        "subtracted); peak MB = memory the fit added to the loaded input"
    )
    return lines


_COLS = (
    ("D", 4),
    ("K", 4),
    ("cov", 10),
    ("dtype", 8),
    ("thr", 4),
    ("fastem", 9),
    ("sklearn", 9),
    ("sk/fe", 7),
    ("oneDAL", 9),
    ("dal/fe", 7),
    ("fe MB", 8),
    ("sk MB", 8),
    ("dal MB", 8),
    ("roof ms", 9),
    ("%roof", 7),
    ("sk dll", 7),
)


def _row(values: Sequence[str]) -> str:
    out = []
    for (_, width), v in zip(_COLS, values, strict=True):
        out.append(v.ljust(width) if width == 10 else v.rjust(width))
    return " ".join(out)


def _table_header() -> list[str]:
    group = _row(
        [""] * 5 + ["ms/it", "ms/it", "", "ms/it", ""] + ["peak"] * 3 + [""] * 3
    )
    names = _row([name for name, _ in _COLS])
    return [group, names, "-" * len(names)]


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _cell(res: dict | None, key: str, scale: float = 1.0) -> str:
    if res is None:
        return "-"
    if "error" in res:
        return res["error"]
    return _fmt(res[key] * scale)


def _format_case(case: dict) -> str:
    libs = case["libraries"]
    fe, sk, dal = libs.get("fastem"), libs.get("sklearn"), libs.get("onedal")

    def ratio(other):
        if other is None or fe is None or "error" in other or "error" in fe:
            return "-"
        return f"{other['ms_per_iter'] / fe['ms_per_iter']:.2f}"

    pct = dll = "-"
    if fe is not None and "error" not in fe:
        pct = f"{100.0 * case['roofline_ms'] / fe['ms_per_iter']:.1f}"
        if sk is not None and "error" not in sk:
            diff = abs(sk["lower_bound"] - fe["lower_bound"])
            dll = f"{diff / max(abs(fe['lower_bound']), 1e-300):.0e}"
    return _row(
        [
            str(case["n_features"]),
            str(case["n_components"]),
            case["covariance_type"],
            case["dtype"],
            str(case["threads"]),
            _cell(fe, "ms_per_iter"),
            _cell(sk, "ms_per_iter"),
            ratio(sk),
            _cell(dal, "ms_per_iter"),
            ratio(dal),
            _cell(fe, "peak_added_mb"),
            _cell(sk, "peak_added_mb"),
            _cell(dal, "peak_added_mb"),
            _fmt(case["roofline_ms"], 2),
            pct,
            dll,
        ]
    )


def _run_worker(
    library: str, spec: dict, workdir: str, python: str, timeout: float
) -> dict:
    tag = f"{library}-{spec['tag']}"
    spec = dict(spec, library=library)
    spec["result"] = os.path.join(workdir, f"{tag}.result.json")
    spec_path = os.path.join(workdir, f"{tag}.spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ)
    for name in _THREAD_VARIABLES:
        env[name] = str(spec["threads"])
    try:
        proc = subprocess.run(
            [python, "-c", _WORKER_BOOT, os.path.abspath(__file__), spec_path],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "detail": f"worker exceeded {timeout:.0f} s"}
    if proc.returncode != 0 or not os.path.exists(spec["result"]):
        lines = (proc.stderr or proc.stdout or "").strip().splitlines()
        return {
            "error": "error",
            "detail": lines[-1] if lines else f"exit status {proc.returncode}",
        }
    with open(spec["result"]) as f:
        res = json.load(f)
    res["ms_per_iter"] = ms_per_iteration(res, spec["iterations"])
    return res


def ms_per_iteration(result: dict, requested: int) -> float:
    """Milliseconds per EM iteration that a library ran.

    A library may stop before the ``requested`` iterations: oneDAL's
    ``em_gmm`` ends as soon as the log-likelihood stops changing, even with
    ``accuracyThreshold=0`` (which it accepts as its smallest value), and on
    well-separated data that can happen after three iterations.  Dividing
    its fit time by ``requested`` would credit it with iterations it never
    ran.

    Parameters
    ----------
    result : dict
        A worker's result: ``seconds`` and, when the library reports it,
        ``n_iter``.
    requested : int
        The iterations asked for (the divisor when ``n_iter`` is missing).

    Returns
    -------
    float
    """
    ran = result.get("n_iter") or requested
    return 1e3 * result["seconds"] / ran


def early_stops(cases: list[dict]) -> list[str]:
    """One line per library and case that ran fewer EM iterations than asked."""
    lines = []
    for case in cases:
        for lib, res in case["libraries"].items():
            n_iter = res.get("n_iter")
            if "error" not in res and n_iter and n_iter < case["iterations"]:
                lines.append(
                    f"{lib} {case['n_features']}x{case['n_components']} "
                    f"{case['covariance_type']} {case['dtype']} {case['threads']} thr: "
                    f"stopped after {n_iter} of {case['iterations']} iterations "
                    "(ms/it divides by the iterations it ran)"
                )
    return lines


def _machine_info(args) -> dict:
    info: dict = {"threadpools": [], "unavailable": {}}
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_info

        info["threadpools"] = threadpool_info()
    if args.bandwidth is not None:
        info["bandwidth"], info["bandwidth_source"] = (
            args.bandwidth * 1e9,
            "--bandwidth",
        )
    else:
        info["bandwidth"] = measure_bandwidth()
        info["bandwidth_source"] = "numpy copy of 256 MiB, 1 thread"
    info["blas_peak"] = {t: measure_blas_peak(t) for t in args.threads}
    if args.peak is not None:
        info["peak"] = {t: args.peak * 1e9 for t in args.threads}
        info["peak_source"] = "--peak"
    else:
        # The higher of the two: either can fall short of the hardware (a
        # BLAS built for narrower vectors; LLVM tuned to prefer 256-bit
        # vectors on AVX-512 Intel CPUs, which halves numba's chains).
        chains = {t: measure_peak(t) for t in args.threads}
        info["peak"] = {t: max(chains[t], info["blas_peak"][t]) for t in args.threads}
        info["numba_peak"] = chains
        info["peak_source"] = "the higher of numba multiply-add chains and BLAS matmul"
    return info


def main(argv: list[str] | None = None) -> int:
    """Run the side-by-side benchmark; the entry point of ``python -m fastem bench``.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments without the program name (``sys.argv[1:]``
        when None); ``-h`` lists them.

    Returns
    -------
    status : int
        0 when every fastem fit succeeded, 1 otherwise.
    """
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    _validate(args, parser)
    if args.dask:
        return dask_main(args, parser)

    import fastem

    available = {"fastem": fastem.__version__}
    unavailable: dict[str, str] = {}
    if "sklearn" in args.libs:
        if importlib.util.find_spec("sklearn") is None:
            unavailable["sklearn"] = "scikit-learn is not installed"
        else:
            available["sklearn"] = _dist_version("scikit-learn")
    if "onedal" in args.libs:
        ok, detail = _probe_onedal(args.onedal_python)
        if ok:
            available["onedal"] = detail
        else:
            unavailable["onedal"] = f"daal4py not importable: {detail}"

    machine = _machine_info(args)
    machine["unavailable"] = unavailable
    for line in _header(args, available, machine):
        print(line)
    print()
    for line in _table_header():
        print(line)
    sys.stdout.flush()

    cases: list[dict] = []
    failed = False
    workdir = tempfile.mkdtemp(prefix="fastem-bench-")
    try:
        for D, K in args.shapes:
            X64, centers = make_data(args.n_samples, D, K, args.seed)
            for dtype in args.dtype:
                data_path = os.path.join(workdir, f"X-{D}x{K}-{dtype}.npy")
                np.save(data_path, X64.astype(dtype, copy=False))
                for cov in args.cov:
                    init_path = os.path.join(workdir, f"init-{D}x{K}-{cov}.npz")
                    if not os.path.exists(init_path):
                        np.savez(init_path, **make_init(X64, centers, cov, args.seed))
                    for threads in args.threads:
                        case = _run_case(
                            args, D, K, cov, dtype, threads, data_path, init_path,
                            workdir, available, machine,
                        )  # fmt: skip
                        cases.append(case)
                        fe = case["libraries"]["fastem"]
                        failed = failed or "error" in fe
                        print(_format_case(case), flush=True)
                os.remove(data_path)
            del X64
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    notes = []
    for case in cases:
        for lib, res in case["libraries"].items():
            if "error" in res:
                notes.append(
                    f"{lib} {case['n_features']}x{case['n_components']} "
                    f"{case['covariance_type']} {case['dtype']} "
                    f"{case['threads']} thr: {res['error']}: {res.get('detail', '')}"
                )
    print()
    print(
        "sk/fe, dal/fe: the other library's time over fastem's (above 1: fastem is "
        "faster); %roof: roofline / fastem time; sk dll: relative difference of the "
        "final lower bounds of scikit-learn and fastem"
    )
    if "onedal" in available:
        print("oneDAL runs full and diag only ('-' for spherical and tied).")
    for note in notes + early_stops(cases):
        print("note:", note)

    if args.json:
        payload = {
            "fastem_version": fastem.__version__,
            "libraries": available,
            "unavailable": unavailable,
            "settings": {
                "n_samples": args.n_samples,
                "iterations": args.iterations,
                "repeat": args.repeat,
                "min_seconds": args.min_seconds,
                "seed": args.seed,
                "warmup_rows": WARMUP_ROWS,
                "reg_covar": REG_COVAR,
            },
            "machine": {
                "cpu_count": os.cpu_count(),
                "bandwidth_bytes_per_s": machine["bandwidth"],
                "bandwidth_source": machine["bandwidth_source"],
                "peak_flops_per_s": {str(t): p for t, p in machine["peak"].items()},
                "peak_source": machine["peak_source"],
                "numba_chains_flops_per_s": {
                    str(t): p for t, p in machine.get("numba_peak", {}).items()
                },
                "blas_matmul_flops_per_s": {
                    str(t): p for t, p in machine["blas_peak"].items()
                },
                "threadpools": machine["threadpools"],
                "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
            },
            "cases": cases,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1, default=str)
        print(f"results written to {args.json}")
    return 1 if failed else 0


def _run_case(
    args, D, K, cov, dtype, threads, data_path, init_path, workdir, available, machine
) -> dict:
    itemsize = np.dtype(dtype).itemsize
    roof, nbytes, flops = roofline_seconds(
        args.n_samples,
        D,
        K,
        cov,
        itemsize,
        machine["bandwidth"],
        machine["peak"][threads],
    )
    spec = {
        "tag": f"{D}x{K}-{cov}-{dtype}-{threads}",
        "data": data_path,
        "init": init_path,
        "n_components": K,
        "covariance_type": cov,
        "iterations": args.iterations,
        "threads": threads,
        "repeat": args.repeat,
        "min_seconds": args.min_seconds,
    }
    results: dict[str, dict] = {}
    for lib in LIBRARIES:
        if lib not in available:
            continue
        if lib == "onedal" and cov not in ONEDAL_STORAGE:
            continue
        python = args.onedal_python if lib == "onedal" else sys.executable
        results[lib] = _run_worker(lib, spec, workdir, python, args.timeout)
    return {
        "n_samples": args.n_samples,
        "n_features": D,
        "n_components": K,
        "covariance_type": cov,
        "dtype": dtype,
        "threads": threads,
        "iterations": args.iterations,
        "flops_per_iter": flops,
        "bytes_per_iter": nbytes,
        "roofline_ms": 1e3 * roof,
        "libraries": results,
    }


# ---------------------------------------------------------------------------
# --dask: a Dask fit on a local cluster vs the in-process fit
# ---------------------------------------------------------------------------

#: Largest relative difference of the means of the Dask and in-process fits
#: that ``--dask`` accepts (exit status 1 above it).
AGREEMENT_RTOL = {"float64": 1e-10, "float32": 1e-5}
#: Install hint printed when ``--dask`` is given without dask or distributed.
DASK_INSTALL_HINT = (
    "pip install 'fastem[dask]'  (or: pip install 'dask[array]' distributed)"
)


def _import_dask():
    """``(dask, dask.array, distributed)``; SystemExit with a hint if missing."""
    try:
        import dask
        import dask.array as da
        import distributed
    except ImportError as exc:
        raise SystemExit(
            f"python -m fastem bench --dask needs the optional packages dask and "
            f"distributed ({exc}); install them with: {DASK_INSTALL_HINT}"
        ) from None
    return dask, da, distributed


def _gm(K, cov, init, max_iter, n_threads=None):
    import fastem

    return fastem.GaussianMixture(
        K,
        covariance_type=cov,
        tol=0.0,
        reg_covar=REG_COVAR,
        max_iter=max_iter,
        weights_init=init["weights"],
        means_init=init["means"],
        precisions_init=init["precisions"],
        n_threads=n_threads,
    )


def _timed_fit(model, X) -> tuple[float, object]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model.fit(X)
        return time.perf_counter() - start, model


def _agreement(dask_model, mem_model) -> dict[str, float]:
    """Normwise relative differences of the two fitted models."""

    def rel(a, b):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))

    return {
        "means": rel(dask_model.means_, mem_model.means_),
        "weights": rel(dask_model.weights_, mem_model.weights_),
        "covariances": rel(dask_model.covariances_, mem_model.covariances_),
        "lower_bound": rel(dask_model.lower_bound_, mem_model.lower_bound_),
    }


def _dask_case(args, X, dX, centers, cov, threads) -> dict:
    """Warm up, then time ``--repeat`` in-process and Dask fits, alternating."""
    K = centers.shape[0]
    init = make_init(X, centers, cov, args.seed)
    # Compile (or load from numba's cache) in this process and on every worker.
    _timed_fit(_gm(K, cov, init, 1, threads), np.ascontiguousarray(X[:WARMUP_ROWS]))
    warm_s, _ = _timed_fit(_gm(K, cov, init, 1), dX)
    mem_s, dask_s = [], []
    mem_model = dask_model = None
    for _ in range(args.repeat):
        t, mem_model = _timed_fit(_gm(K, cov, init, args.iterations, threads), X)
        mem_s.append(t)
        t, dask_model = _timed_fit(_gm(K, cov, init, args.iterations), dX)
        dask_s.append(t)
    per_it = 1e3 / args.iterations
    mem_ms = [per_it * t for t in mem_s]
    dask_ms = [per_it * t for t in dask_s]
    return {
        "n_samples": X.shape[0],
        "n_features": X.shape[1],
        "n_components": K,
        "covariance_type": cov,
        "dtype": str(X.dtype),
        "iterations": args.iterations,
        "threads_in_process": threads,
        "in_process_ms_per_iter": {
            "best": min(mem_ms),
            "median": float(np.median(mem_ms)),
            "all": mem_ms,
        },
        "dask_ms_per_iter": {
            "best": min(dask_ms),
            "median": float(np.median(dask_ms)),
            "all": dask_ms,
        },
        "ratio_best": min(dask_ms) / min(mem_ms),
        "ratio_median": float(np.median(dask_ms) / np.median(mem_ms)),
        "dask_first_fit_s": warm_s,
        "n_iter": [int(mem_model.n_iter_), int(dask_model.n_iter_)],
        "relative_difference": _agreement(dask_model, mem_model),
    }


_DASK_COLS = (
    ("D", 4),
    ("K", 4),
    ("cov", 10),
    ("dtype", 8),
    ("in-proc", 9),
    ("(med)", 9),
    ("dask", 9),
    ("(med)", 9),
    ("dask/ip", 7),
    ("(med)", 7),
    ("means", 8),
    ("lb", 8),
)


def _dask_row(values: Sequence[str]) -> str:
    out = []
    for (_, width), v in zip(_DASK_COLS, values, strict=True):
        out.append(v.ljust(width) if width == 10 else v.rjust(width))
    return " ".join(out)


def _format_dask_case(case: dict) -> str:
    mem, dsk = case["in_process_ms_per_iter"], case["dask_ms_per_iter"]
    diff = case["relative_difference"]
    return _dask_row(
        [
            str(case["n_features"]),
            str(case["n_components"]),
            case["covariance_type"],
            case["dtype"],
            _fmt(mem["best"]),
            _fmt(mem["median"]),
            _fmt(dsk["best"]),
            _fmt(dsk["median"]),
            f"{case['ratio_best']:.2f}",
            f"{case['ratio_median']:.2f}",
            f"{diff['means']:.0e}",
            f"{diff['lower_bound']:.0e}",
        ]
    )


def dask_main(args, parser=None) -> int:
    """``python -m fastem bench --dask``: Dask fit vs in-process fit.

    Starts a ``distributed.LocalCluster`` of ``--dask-workers`` worker
    processes with one thread each (start-up timed on its own), and for every
    shape, dtype and covariance type fits the same data from the same initial
    parameters for ``--iterations`` iterations (``tol=0``) twice: in this
    process on an in-memory array (``--threads`` kernel threads, default all
    CPUs), and as a Dask array whose blocks live on the workers.

    The data is generated here, written as a stack of ``.npy`` files (one per
    block of ``--chunk-rows`` rows, ``dask.array.to_npy_stack``), and loaded
    by the workers themselves (``dask.array.from_npy_stack``, then
    ``persist``): the task graph holds file names, not data, and the blocks
    stay in the workers' memory across iterations, as for a real cluster
    fit.  A first 1-iteration Dask fit loads the kernels on the workers
    (numba's on-disk cache) and is reported separately.  ``--repeat`` timed
    fits of each kind alternate; the best and the median are printed.  The
    time per iteration is fit time / iterations for both, nothing subtracted
    (the Dask fit's includes validating the blocks on the workers).
    Agreement: ``max |a - b| / max |b|`` of the means (and the lower bound)
    of the two fitted models.

    Returns
    -------
    status : int
        0 when both fits of every case ran and the models agree
        (:data:`AGREEMENT_RTOL`).
    """
    dask, da, distributed = _import_dask()
    import fastem

    threads = args.threads[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (
                    ln.split(":", 1)[1].strip()
                    for ln in f
                    if ln.startswith("model name")
                ),
                cpu,
            )
    except OSError:
        pass
    print(
        f"fastem bench --dask: fastem {fastem.__version__}, dask {dask.__version__}, "
        f"distributed {distributed.__version__}"
    )
    print(
        f"machine: {cpu}, {os.cpu_count()} logical CPUs; python "
        f"{platform.python_version()}, numpy {np.__version__}, numba "
        f"{_dist_version('numba')}"
    )
    print(
        f"N={args.n_samples:,}, {args.iterations} EM iterations, tol=0, same initial "
        f"parameters; in-process: {threads} kernel threads; Dask: "
        f"{args.dask_workers} worker processes x 1 thread, blocks of "
        f"{args.chunk_rows:,} rows persisted on the workers; {args.repeat} timed "
        "fits of each, alternating"
    )
    sys.stdout.flush()

    workdir = tempfile.mkdtemp(prefix="fastem-bench-dask-")
    cluster = client = None
    cases: list[dict] = []
    failed = False
    try:
        start = time.perf_counter()
        cluster = distributed.LocalCluster(
            n_workers=args.dask_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        client = distributed.Client(cluster)
        client.wait_for_workers(args.dask_workers)
        startup_s = time.perf_counter() - start
        print(
            f"cluster start-up (LocalCluster + Client, {args.dask_workers} workers "
            f"ready): {startup_s:.2f} s"
        )
        print()
        header = _dask_row([name for name, _ in _DASK_COLS])
        print(
            _dask_row(
                [""] * 4
                + ["ms/it", "ms/it", "ms/it", "ms/it", "ratio", "ratio", "rel", "rel"]
            )
        )
        print(header)
        print("-" * len(header))
        sys.stdout.flush()
        loads = []
        for D, K in args.shapes:
            X64, centers = make_data(args.n_samples, D, K, args.seed)
            for dtype in args.dtype:
                X = X64.astype(dtype, copy=False)
                stack = os.path.join(workdir, f"X-{D}x{K}-{dtype}")
                # Written here with the local scheduler (no data to the workers).
                with dask.config.set(scheduler="sync"):
                    da.to_npy_stack(
                        stack, da.from_array(X, chunks=(args.chunk_rows, D))
                    )
                start = time.perf_counter()
                dX = da.from_npy_stack(stack, mmap_mode=None).persist()
                distributed.wait(dX)
                loads.append(
                    {
                        "shape": f"{D}x{K}",
                        "dtype": dtype,
                        "s": time.perf_counter() - start,
                    }
                )
                for cov in args.cov:
                    try:
                        case = _dask_case(args, X, dX, centers, cov, threads)
                    except Exception as exc:  # report and go on with the next case
                        failed = True
                        print(f"{D}x{K} {cov} {dtype}: error: {exc!r}", flush=True)
                        continue
                    case["blocks"] = dX.numblocks[0]
                    cases.append(case)
                    tol = AGREEMENT_RTOL[np.dtype(dtype).name]
                    failed = failed or case["relative_difference"]["means"] > tol
                    print(_format_dask_case(case), flush=True)
                del dX  # releases the blocks on the workers
                shutil.rmtree(stack, ignore_errors=True)
            del X64
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(
        "in-proc / dask: ms per EM iteration (best of the timed fits, then their "
        "median); dask/ip: dask / in-process; means, lb: max |dask - in-process| / "
        "max |in-process| of the fitted means and of the final lower bound"
    )
    if loads:
        print(
            "data load on the workers (from_npy_stack + persist, untimed in the "
            "fits): "
            + ", ".join(f"{x['shape']} {x['dtype']} {x['s']:.2f} s" for x in loads)
        )
    if cases:
        print(
            "first Dask fit (1 iteration, kernels loaded on the workers): "
            + ", ".join(
                f"{c['n_features']}x{c['n_components']} {c['covariance_type']} "
                f"{c['dask_first_fit_s']:.2f} s"
                for c in cases
            )
        )
    if args.json:
        payload = {
            "fastem_version": fastem.__version__,
            "dask_version": dask.__version__,
            "distributed_version": distributed.__version__,
            "settings": {
                "n_samples": args.n_samples,
                "iterations": args.iterations,
                "repeat": args.repeat,
                "seed": args.seed,
                "reg_covar": REG_COVAR,
                "workers": args.dask_workers,
                "threads_per_worker": 1,
                "chunk_rows": args.chunk_rows,
                "threads_in_process": threads,
            },
            "cpu_count": os.cpu_count(),
            "cluster_startup_s": startup_s,
            "data_load_s": loads,
            "cases": cases,
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1, default=str)
        print(f"results written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
