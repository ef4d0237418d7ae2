"""Warnings and errors raised by fastem."""

from __future__ import annotations


class ConvergenceWarning(UserWarning):
    """The best initialisation did not converge within ``max_iter`` iterations."""


class DegenerateComponentWarning(UserWarning):
    """A component became empty or singular and was re-seeded."""


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before ``fit`` (same bases as scikit-learn's)."""
