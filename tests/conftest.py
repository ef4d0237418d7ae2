"""Shared fixtures: seeded data sets, reused across modules.

Nothing here filters or hides warnings: pyproject's
``filterwarnings = error::numba.NumbaWarning`` stays in force, and tests that
expect a warning assert it with ``pytest.warns``.
"""

from __future__ import annotations

import numpy as np
import pytest


def make_mixture(
    n_samples: int,
    n_features: int,
    n_components: int,
    seed: int = 0,
    *,
    separation: float = 6.0,
    dtype=np.float64,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows drawn from a random Gaussian mixture, and their true components.

    Component means sit ``separation`` apart along the diagonal (plus a
    random jitter), covariances are random and well conditioned, and every
    component owns at least one row.
    """
    rng = np.random.RandomState(seed)
    K, D = n_components, n_features
    direction = np.ones(D) / np.sqrt(D)
    means = separation * (
        np.arange(K)[:, None] * direction + rng.uniform(-0.3, 0.3, (K, D))
    )
    factors = rng.uniform(-0.3, 0.3, (K, D, D)) + np.eye(D) * rng.uniform(
        0.6, 1.2, (K, 1, 1)
    )
    weights = rng.uniform(1.0, 2.0, K)
    labels = rng.choice(K, size=n_samples, p=weights / weights.sum())
    labels[: min(K, n_samples)] = np.arange(min(K, n_samples))
    noise = rng.standard_normal((n_samples, D))
    X = means[labels] + np.einsum("nij,nj->ni", factors[labels], noise)
    return X.astype(dtype), labels


@pytest.fixture(scope="session", name="make_mixture")
def make_mixture_fixture():
    """The :func:`make_mixture` generator (for tests that need their own)."""
    return make_mixture


@pytest.fixture(scope="session")
def datasets() -> dict[str, np.ndarray]:
    """Named float64 data sets, built once per session.

    * ``iris``, ``wine``, ``digits``: scikit-learn's bundled data.
    * ``digits_pca``: digits projected on its 10 leading principal axes
      (well conditioned for full/tied covariances).
    * ``blobs``: a generated 4-component mixture in 3 dimensions.
    * ``blobs2d``, ``blobs1d``: 5- and 3-component mixtures in 2 and 1
      dimensions (the kernels that form responsibilities in registers for
      one or two features).
    """
    from sklearn.datasets import load_digits, load_iris, load_wine

    digits = load_digits().data.astype(np.float64)
    centered = digits - digits.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    return {
        "iris": load_iris().data.astype(np.float64),
        "wine": load_wine().data.astype(np.float64),
        "digits": digits,
        "digits_pca": centered @ vt[:10].T,
        "blobs": make_mixture(400, 3, 4, seed=1)[0],
        "blobs2d": make_mixture(500, 2, 5, seed=2)[0],
        "blobs1d": make_mixture(300, 1, 3, seed=3)[0],
    }


@pytest.fixture(scope="session")
def blobs(datasets) -> np.ndarray:
    return datasets["blobs"]


@pytest.fixture(scope="session")
def positive_weights(blobs) -> np.ndarray:
    """Non-integer weights in [0.2, 3) for the rows of ``blobs``."""
    return np.random.RandomState(7).uniform(0.2, 3.0, blobs.shape[0])
