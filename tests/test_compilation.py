"""Compile once: a small, fixed set of numba signatures (DESIGN.md,
"Performance rules").  New shapes, layouts, weights or thread counts must
not add signatures; each entry-point kernel has at most one per input dtype
(float32, float64)."""

from __future__ import annotations

import warnings

import numpy as np
from _reference import COVARIANCE_TYPES
from numba.core.registry import CPUDispatcher

import fastem
from fastem._kernels import gaussian as gaussian_kernels
from fastem._kernels import kmeans as kmeans_kernels
from fastem.kernels import gaussian_per_row, gaussian_stats, make_gaussian_params

MODULES = (gaussian_kernels, kmeans_kernels)
INITS = ("kmeans", "k-means++", "random", "random_from_data")


def _dispatchers():
    for module in MODULES:
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher):
                yield f"{module.__name__}.{name}", obj


def _is_entry_point(dispatcher):
    """Kernels run by ``run_tasks`` take the task queue as their last
    argument."""
    code = dispatcher.py_func.__code__
    return code.co_varnames[: code.co_argcount][-1:] == ("queue",)


def _signatures():
    return {name: {str(s) for s in d.signatures} for name, d in _dispatchers()}


def _exercise(dtype, N, D, K, *, weighted, layout="C", n_threads=None, inits=INITS):
    rng = np.random.RandomState(N + D + K)
    X = rng.standard_normal((N, D)) + 3.0 * rng.randint(0, K, N)[:, None]
    X = np.asarray(X, dtype=dtype, order="F" if layout == "F" else "C")
    if layout == "strided":
        X = np.repeat(X, 2, axis=0)[::2]
    sw = rng.uniform(0.5, 2.0, N) if weighted else None
    for cov in COVARIANCE_TYPES:
        for init in inits:
            model = fastem.GaussianMixture(
                K,
                covariance_type=cov,
                init_params=init,
                max_iter=2,
                random_state=0,
                n_threads=n_threads,
            )
            with warnings.catch_warnings():
                # Only this category: NumbaWarnings must still fail the test.
                warnings.simplefilter("ignore", fastem.ConvergenceWarning)
                model.fit(X, sample_weight=sw)
            model.predict(X)
            model.predict_proba(X)
            model.score_samples(X)
            params = make_gaussian_params(
                model.weights_, model.means_, model.covariances_, cov
            )
            gaussian_stats(X, params, sw, n_threads=n_threads)
            gaussian_per_row(X, params, responsibilities=True, labels=True)


def test_new_shapes_do_not_add_signatures():
    for dtype in (np.float64, np.float32):
        for weighted in (False, True):
            # Full covariances have kernels of their own for D <= 3: warm
            # up one shape on each side.
            for D in (2, 6):
                _exercise(dtype, 50, D, 2, weighted=weighted)
    before = _signatures()

    variants = [
        dict(N=300, D=5, K=4, weighted=True),
        dict(N=17, D=1, K=1, weighted=False),
        dict(N=5000, D=3, K=3, weighted=False, n_threads=1),
        dict(N=80, D=4, K=3, weighted=True, layout="F"),
        dict(N=80, D=2, K=2, weighted=False, layout="strided"),
    ]
    for dtype in (np.float64, np.float32):
        for variant in variants:
            # 'kmeans' runs every initialisation kernel ('k-means++' is its
            # first half; the other two are numpy).
            _exercise(dtype, **variant, inits=("kmeans",))
    # Integer and boolean input are converted to float64, not compiled for.
    fastem.GaussianMixture(2, random_state=0).fit(
        np.random.RandomState(1).randint(0, 50, (40, 2))
    )
    after = _signatures()
    added = {name: after[name] - before.get(name, set()) for name in after}
    assert not any(added.values()), {k: v for k, v in added.items() if v}


def test_entry_point_kernels_have_one_signature_per_dtype():
    """Every entry-point kernel: at most two signatures, differing only in the
    float32/float64 dtype of the data."""
    for dtype in (np.float64, np.float32):
        _exercise(dtype, 40, 3, 2, weighted=True)
    checked = 0
    for name, dispatcher in _dispatchers():
        if not _is_entry_point(dispatcher):
            continue
        checked += 1
        signatures = [str(s) for s in dispatcher.signatures]
        assert len(signatures) <= 2, (name, signatures)
        as_float64 = {s.replace("float32", "float64") for s in signatures}
        assert len(as_float64) <= 1, (name, signatures)
    assert checked >= 5
