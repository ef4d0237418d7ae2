"""The other mixture families, and weighted fits: time per fit.

``Families``: N = 1e5 rows of 8 features, K = 4, float64, for each of
``GaussianMixture`` ('full'), ``StudentTMixture``, ``PoissonMixture``,
``BernoulliMixture`` and ``MultinomialMixture``, without and with sample
weights.  Every fit runs 10 EM iterations (``tol=0``) from components
started on randomly drawn rows (``init_params='random_from_data'``, seeded),
so no k-means time is included.  ``setup`` fits a slice once (compilation,
or loading from numba's cache, stays out of the timings).  Threads: numba's
default.  ``FASTEM_ASV_MAX_ROWS`` caps the rows, for smoke runs only.
"""

from __future__ import annotations

import warnings

import fastem
import numpy as np

from .common import N_CORE, WARMUP_ROWS, make_data, max_rows

warnings.filterwarnings("ignore", category=fastem.ConvergenceWarning)

N_FEATURES = 8
N_COMPONENTS = 4


def _family_data(family: str, n_samples: int) -> np.ndarray:
    """Seeded rows of the kind each family models."""
    if family in ("gaussian", "student"):
        return make_data(n_samples, N_FEATURES, N_COMPONENTS, "float64")[0]
    rng = np.random.default_rng(0)
    labels = rng.integers(0, N_COMPONENTS, size=n_samples)
    if family == "bernoulli":
        p = rng.uniform(0.1, 0.9, size=(N_COMPONENTS, N_FEATURES))
        return (rng.random((n_samples, N_FEATURES)) < p[labels]).astype(np.float64)
    rates = rng.uniform(0.5, 8.0, size=(N_COMPONENTS, N_FEATURES))
    return rng.poisson(rates[labels]).astype(np.float64)


class Families:
    """Fit time of each family, unweighted and weighted."""

    param_names = ["family", "weighted"]
    params = [
        ["gaussian", "student", "poisson", "bernoulli", "multinomial"],
        [False, True],
    ]
    #: EM iterations of every timed fit (``tol=0``, so exactly this many).
    n_iter = 10

    def setup(self, family, weighted):
        n_samples = N_CORE
        cap = max_rows()
        if cap is not None:
            n_samples = min(n_samples, cap)
        self.family = family
        self.X = _family_data(family, n_samples)
        rng = np.random.default_rng(1)
        self.weights = rng.uniform(0.5, 1.5, n_samples) if weighted else None
        warm = slice(0, WARMUP_ROWS)
        self.estimator(max_iter=2).fit(
            self.X[warm], sample_weight=None if not weighted else self.weights[warm]
        )

    def estimator(self, max_iter=None):
        options = {
            "tol": 0.0,
            "max_iter": self.n_iter if max_iter is None else max_iter,
            "init_params": "random_from_data",
            "random_state": 0,
        }
        if self.family == "gaussian":
            return fastem.GaussianMixture(
                N_COMPONENTS, covariance_type="full", **options
            )
        cls = {
            "student": fastem.StudentTMixture,
            "poisson": fastem.PoissonMixture,
            "bernoulli": fastem.BernoulliMixture,
            "multinomial": fastem.MultinomialMixture,
        }[self.family]
        return cls(N_COMPONENTS, **options)

    def time_fit(self, family, weighted):
        self.estimator().fit(self.X, sample_weight=self.weights)
