"""Data, initial parameters and helpers shared by the benchmarks.

The suite is run against older commits too (``asv continuous``), so it uses
only fastem's public API and keeps its own helpers here instead of importing
them from the package.
"""

from __future__ import annotations

import os

import numpy as np

#: Sizes of the benchmark groups.
N_SMALL = 10_000
N_CORE = 100_000
N_LARGE = 1_000_000
COVARIANCE_TYPES = ["full", "diag", "spherical", "tied"]
DTYPES = ["float64", "float32"]
#: Rows of the warm-up calls in ``setup`` (compile or load from the cache).
WARMUP_ROWS = 2048


def max_rows() -> int | None:
    """Cap on the rows of every benchmark's data, from ``FASTEM_ASV_MAX_ROWS``.

    Meant for smoke runs only (``.ci/bench_gate.sh smoke`` sets it), where the
    point is that every benchmark runs without error; never set it for runs
    whose results are kept, since the ``n_samples`` parameter then lies.
    """
    value = os.environ.get("FASTEM_ASV_MAX_ROWS")
    return int(value) if value else None


def make_data(
    n_samples: int, n_features: int, n_components: int, dtype: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a random mixture, generated in chunks (small temporaries).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features) and dtype ``dtype``
    centers : ndarray of shape (n_components, n_features)
    """
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-4.0, 4.0, size=(n_components, n_features))
    scales = rng.uniform(0.5, 1.5, size=(n_components, n_features))
    X = np.empty((n_samples, n_features), dtype=dtype)
    chunk = 1 << 16
    for start in range(0, n_samples, chunk):
        stop = min(n_samples, start + chunk)
        labels = rng.integers(0, n_components, size=stop - start)
        block = rng.standard_normal((stop - start, n_features))
        block *= scales[labels]
        block += centers[labels]
        X[start:stop] = block
    return X, centers


def make_init(X: np.ndarray, centers: np.ndarray, covariance_type: str, seed: int = 0):
    """Initial parameters: uniform weights, noisy true centers, data variance.

    Returns
    -------
    init : dict
        ``weights``, ``means``, ``covariances`` and ``precisions`` in
        scikit-learn's shapes for ``covariance_type`` (float64).
    """
    rng = np.random.default_rng(seed + 1)
    K, D = centers.shape
    means = centers + rng.standard_normal((K, D))
    var = X[:100_000].astype(np.float64).var(axis=0) + 1e-6
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


def reset_peak_memory() -> None:
    """Reset the process's peak-RSS mark (Linux), so that a ``peakmem_``
    benchmark measures its function, not ``setup``'s temporaries or compile."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def fastem_source_hash() -> str:
    """A short hash of the installed fastem sources (names the warm caches)."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("fastem")
    root = os.path.dirname(spec.origin)
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, root).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]
