"""fastem: Numba-compiled expectation-maximization for mixture models.

Importing fastem compiles nothing and does not import scikit-learn; kernels
are compiled on first use for the dtype at hand and cached on disk.
"""

from __future__ import annotations

from . import kernels
from .bayesian import BayesianGaussianMixture
from .discrete import BernoulliMixture, MultinomialMixture, PoissonMixture
from .exceptions import ConvergenceWarning, DegenerateComponentWarning, NotFittedError
from .impute import MixtureImputer
from .io import load
from .mixture import GaussianMixture
from .selection import GaussianMixtureIC, select_n_components
from .student import StudentTMixture

__version__ = "0.1.0"

__all__ = [
    "BayesianGaussianMixture",
    "BernoulliMixture",
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "GaussianMixture",
    "GaussianMixtureIC",
    "MixtureImputer",
    "MultinomialMixture",
    "NotFittedError",
    "PoissonMixture",
    "StudentTMixture",
    "__version__",
    "kernels",
    "load",
    "select_n_components",
]
