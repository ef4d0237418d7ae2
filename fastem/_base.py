"""scikit-learn estimator conventions without importing scikit-learn.

``get_params``/``set_params`` read the ``__init__`` signature, ``__init__``
only stores its arguments, fitted state lives in attributes ending in ``_``,
and ``__sklearn_tags__`` imports scikit-learn only when scikit-learn asks.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from .exceptions import NotFittedError


class EstimatorBase:
    """Parameter handling shared by every fastem estimator."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(
            name
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters of this estimator.

        Parameters
        ----------
        deep : bool, default=True
            Ignored (fastem estimators hold no sub-estimators); kept for
            scikit-learn compatibility.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any):
        """Set constructor parameters; returns ``self``.

        Raises
        ------
        ValueError
            For a name that is not a constructor parameter.
        """
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = []
        for name, p in sig.parameters.items():
            if name == "self" or not hasattr(self, name):
                continue
            value = getattr(self, name)
            default = p.default
            same = value is default
            if not same:
                try:
                    same = bool(value == default)
                except Exception:
                    same = False
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type="density_estimator",
            target_tags=TargetTags(required=False),
            input_tags=InputTags(allow_nan=False),
        )

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "converged_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' "
                "with appropriate arguments before using this estimator."
            )


def stderr_reporter(message: str) -> None:
    """Write a verbose progress line to standard error."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
