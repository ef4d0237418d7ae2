"""GaussianMixture and the Gaussian kernels: fit, E-step, predict, memory.

Three groups, so that a quick subset exists:

``GaussianMixtureSmall``
    N = 1e4, every D in (2, 16, 64), K in (8, 16), covariance type and
    dtype: all benchmark kinds (time, peak memory, lower bound, iterations).
    Seconds per case; the part to run while developing.
``GaussianMixtureLarge``
    N = 1e6 on the shapes of ``python -m fastem bench`` (D, K) = (2, 8),
    (16, 16), (64, 16), both dtypes; ``full`` at D = 64 is skipped (several
    seconds per E-step).  The expensive part: select it with ``-b Large``,
    leave it out with ``-b Small -b Core -b first_fit -b import``.
``Core``
    N = 1e5, the small shapes, float64: the E-step and the fit that the CI
    gate (``.ci/bench_gate.sh``) compares against the parent commit, run
    there with ``NUMBA_NUM_THREADS=1``.

Every fit runs a fixed number of EM iterations (``tol=0``) from the same
initial parameters.  ``setup`` builds seeded data and calls every kernel
once on a slice (compilation, or loading from numba's cache, stays out of
the timings even with ``--quick``) and resets the peak-memory mark, so
``peakmem_`` reports the process's resident memory during the call (data
included), not setup's temporaries.  Threads: numba's default, i.e. all
cores unless ``NUMBA_NUM_THREADS`` is set in asv's environment.
``FASTEM_ASV_MAX_ROWS`` caps the rows of every case, for smoke runs only.
"""

from __future__ import annotations

import time
import warnings

import fastem
from fastem.kernels import gaussian_stats, make_gaussian_params

from .common import (
    COVARIANCE_TYPES,
    DTYPES,
    N_CORE,
    N_LARGE,
    N_SMALL,
    WARMUP_ROWS,
    make_data,
    make_init,
    max_rows,
    reset_peak_memory,
)

warnings.filterwarnings("ignore", category=fastem.ConvergenceWarning)


class _Mixture:
    """Shared setup; subclasses choose the parameters and benchmarks."""

    param_names = [
        "n_samples",
        "n_features",
        "n_components",
        "covariance_type",
        "dtype",
    ]
    #: EM iterations of every timed fit (``tol=0``, so exactly this many).
    n_iter = 10

    def decode(self, *params):
        """``(n_samples, n_features, n_components, covariance_type, dtype)``."""
        return params

    def skip(self, n_samples, n_features, n_components, covariance_type, dtype):
        """Reason to skip a parameter combination, or None."""
        return None

    def setup(self, *params):
        n_samples, n_features, n_components, covariance_type, dtype = self.decode(
            *params
        )
        reason = self.skip(n_samples, n_features, n_components, covariance_type, dtype)
        if reason:
            raise NotImplementedError(reason)
        cap = max_rows()
        if cap is not None:
            n_samples = min(n_samples, cap)
        X, centers = make_data(n_samples, n_features, n_components, dtype)
        init = make_init(X, centers, covariance_type)
        self.X = X
        self.init = init
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.params = make_gaussian_params(
            init["weights"], init["means"], init["covariances"], covariance_type
        )
        warm = X[:WARMUP_ROWS]
        self.model = self.estimator(max_iter=2).fit(warm)
        gaussian_stats(warm, self.params)
        self.model.predict_proba(warm)
        self.model.score_samples(warm)
        reset_peak_memory()

    def estimator(self, max_iter=None):
        return fastem.GaussianMixture(
            self.n_components,
            covariance_type=self.covariance_type,
            tol=0.0,
            max_iter=self.n_iter if max_iter is None else max_iter,
            weights_init=self.init["weights"],
            means_init=self.init["means"],
            precisions_init=self.init["precisions"],
            random_state=0,
        )


class GaussianMixtureSmall(_Mixture):
    """N = 1e4: every shape, covariance type and dtype; every benchmark kind."""

    params = [[N_SMALL], [2, 16, 64], [8, 16], COVARIANCE_TYPES, DTYPES]
    rounds = 1  # 48 cases per benchmark: one round keeps the suite near 20 min

    def time_fit(self, *args):
        self.estimator().fit(self.X)

    def time_e_step(self, *args):
        gaussian_stats(self.X, self.params)

    def time_predict_proba(self, *args):
        self.model.predict_proba(self.X)

    def time_score_samples(self, *args):
        self.model.score_samples(self.X)

    def peakmem_fit(self, *args):
        self.estimator().fit(self.X)

    def track_lower_bound(self, *args):
        return float(self.estimator().fit(self.X).lower_bound_)

    track_lower_bound.unit = "mean log-likelihood"

    def track_n_iter(self, *args):
        return int(self.estimator().fit(self.X).n_iter_)

    track_n_iter.unit = "iterations"


class _ShapeParam(_Mixture):
    """``(n_features, n_components)`` as one parameter ``"DxK"`` (fewer n/a cells)."""

    param_names = ["n_samples", "shape", "covariance_type", "dtype"]

    def decode(self, n_samples, shape, covariance_type, dtype):
        n_features, n_components = (int(v) for v in shape.split("x"))
        return n_samples, n_features, n_components, covariance_type, dtype


class GaussianMixtureLarge(_ShapeParam):
    """N = 1e6 on the side-by-side benchmark's shapes (the slow group)."""

    params = [[N_LARGE], ["2x8", "16x16", "64x16"], COVARIANCE_TYPES, DTYPES]
    n_iter = 5
    number = 1
    repeat = (1, 2, 20.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 900

    def skip(self, n_samples, n_features, n_components, covariance_type, dtype):
        if n_features == 64 and covariance_type == "full":
            return "full covariances at D=64, N=1e6: too slow for the suite"
        return None

    def time_fit(self, *args):
        self.estimator().fit(self.X)

    def time_e_step(self, *args):
        gaussian_stats(self.X, self.params)

    def time_predict_proba(self, *args):
        self.model.predict_proba(self.X)

    def time_score_samples(self, *args):
        self.model.score_samples(self.X)

    def peakmem_fit(self, *args):
        self.estimator().fit(self.X)


class Core(_ShapeParam):
    """The CI gate's subset: E-step and a 5-iteration fit at N = 1e5, float64.

    Timed in CPU seconds of the process (``time.process_time``), not wall
    seconds: on a shared machine other processes' time slices then do not
    count.  The gate runs it with one thread, where CPU time is the wall
    time of an idle machine; with more threads it is the total work of all
    threads (idle-spinning included).
    """

    params = [[N_CORE], ["2x8", "16x16"], COVARIANCE_TYPES, ["float64"]]
    n_iter = 5
    timer = staticmethod(time.process_time)
    repeat = (7, 15, 20.0)
    timeout = 300

    def time_e_step(self, *args):
        gaussian_stats(self.X, self.params)

    def time_fit(self, *args):
        self.estimator().fit(self.X)
