"""Saving and loading fitted models as ``.npz`` files.

Only arrays and a JSON header are written, and files are read with
``allow_pickle=False``, so loading a model file cannot run code.
"""

from __future__ import annotations

import json
import numbers
from os import PathLike

import numpy as np

FORMAT_VERSION = 1
_SCALARS = ("converged_", "n_iter_", "lower_bound_", "n_features_in_")


def _jsonable(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return _SKIP


_SKIP = object()


def save(model, path: str | PathLike) -> None:
    """Write a fitted estimator to ``path`` (``.npz``).

    Constructor parameters that are not plain values (a ``RandomState``, a
    callback) are not stored; array-valued ``*_init`` parameters are.
    """
    model._check_is_fitted()
    params, arrays = {}, {}
    for name, value in model.get_params().items():
        if isinstance(value, (np.ndarray, list, tuple)):
            arrays["param__" + name] = np.asarray(value, dtype=np.float64)
            continue
        v = _jsonable(value)
        if v is not _SKIP:
            params[name] = v
    header = {
        "format": FORMAT_VERSION,
        "class": type(model).__name__,
        "params": params,
        "fitted": {name: _jsonable(getattr(model, name)) for name in _SCALARS},
    }
    for name in model._fitted_arrays:
        arrays["fitted__" + name] = np.asarray(getattr(model, name))
    arrays["fitted__lower_bounds_"] = np.asarray(model.lower_bounds_, dtype=np.float64)
    header_array = np.array(json.dumps(header))
    if hasattr(path, "write"):  # an open binary file
        np.savez(path, header=header_array, **arrays)
        return
    # Through a file object: np.savez given a name would append ".npz" to a
    # path with another suffix, and load(path) would then not find it.
    with open(path, "wb") as f:
        np.savez(f, header=header_array, **arrays)


def load(path: str | PathLike):
    """Read a model written by ``save``.

    Returns
    -------
    model : GaussianMixture, BayesianGaussianMixture, BernoulliMixture, PoissonMixture, MultinomialMixture or StudentTMixture
        A fitted estimator, ready for ``predict`` and friends.
    """
    from .bayesian import BayesianGaussianMixture
    from .discrete import BernoulliMixture, MultinomialMixture, PoissonMixture
    from .mixture import GaussianMixture
    from .student import StudentTMixture

    classes = {
        cls.__name__: cls
        for cls in (
            GaussianMixture,
            BayesianGaussianMixture,
            BernoulliMixture,
            PoissonMixture,
            MultinomialMixture,
            StudentTMixture,
        )
    }
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        if header.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: unsupported model format {header.get('format')!r}"
            )
        cls = classes.get(header["class"])
        if cls is None:
            raise ValueError(f"{path}: unknown model class {header['class']!r}")
        params = dict(header["params"])
        for key in data.files:
            if key.startswith("param__"):
                params[key[len("param__") :]] = data[key]
        model = cls(**params)
        fitted = {name: data["fitted__" + name] for name in cls._fitted_arrays}
        lower_bounds = data["fitted__lower_bounds_"].tolist()
    model._restore_fitted(fitted)
    for name, value in header["fitted"].items():
        setattr(model, name, value)
    model.lower_bounds_ = lower_bounds
    return model
