"""A slow, obvious, plain-numpy EM for Gaussian mixtures: the test reference.

Nothing here is shared with fastem or scikit-learn.  Every formula is the
textbook one, written with a loop over components, full (K, D, D) covariance
matrices for every covariance type, scipy's log-densities and scipy's
log-sum-exp.  Sample weights are frequency weights: a row with weight ``w``
counts as ``w`` copies of that row.

The only conventions copied from scikit-learn (so that results are comparable
to 1e-10 and better) are

* ``reg_covar`` is added to the diagonal of every covariance after the
  M-step;
* ``10 * eps`` is added to every component's responsibility mass ``n_k``;
* the lower bound of an iteration is the weighted mean log-likelihood under
  the parameters that *enter* that iteration.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats
from scipy.special import logsumexp

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
EPS10 = 10 * np.finfo(np.float64).eps


@dataclass
class Mixture:
    """Parameters in scikit-learn's shapes, plus the EM history of a fit."""

    covariance_type: str
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    lower_bounds: list[float] = field(default_factory=list)

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    def full_covariances(self) -> np.ndarray:
        """Every component's covariance as a (D, D) matrix: shape (K, D, D)."""
        return to_full(
            self.covariances, self.covariance_type, self.n_components, self.n_features
        )

    def precisions(self) -> np.ndarray:
        """Inverse covariances in scikit-learn's shapes."""
        cov = self.covariance_type
        if cov in ("diag", "spherical"):
            return 1.0 / self.covariances
        if cov == "tied":
            return np.linalg.inv(self.covariances)
        return np.array([np.linalg.inv(c) for c in self.covariances])

    def precisions_cholesky(self) -> np.ndarray:
        """Upper-triangular ``U`` with ``U @ U.T == inv(covariance)``.

        With ``covariance = L @ L.T`` (lower Cholesky factor) the precision is
        ``inv(L).T @ inv(L)``, so ``U = inv(L).T``.
        """
        cov = self.covariance_type
        if cov in ("diag", "spherical"):
            return 1.0 / np.sqrt(self.covariances)

        def factor(c):
            return np.linalg.inv(np.linalg.cholesky(c)).T

        if cov == "tied":
            return factor(self.covariances)
        return np.array([factor(c) for c in self.covariances])


def to_full(
    covariances, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Expand any covariance parametrisation to a (K, D, D) stack."""
    c = np.asarray(covariances, dtype=np.float64)
    K, D = n_components, n_features
    if covariance_type == "full":
        return c.copy()
    if covariance_type == "tied":
        return np.array([c.copy() for _ in range(K)])
    if covariance_type == "diag":
        return np.array([np.diag(c[k]) for k in range(K)])
    if covariance_type == "spherical":
        return np.array([c[k] * np.eye(D) for k in range(K)])
    raise ValueError(covariance_type)


def mixture_from_precisions(
    weights, means, precisions, covariance_type: str
) -> Mixture:
    """Parameters from scikit-learn style ``*_init`` arrays."""
    weights = np.asarray(weights, dtype=np.float64)
    means = np.asarray(means, dtype=np.float64)
    p = np.asarray(precisions, dtype=np.float64)
    if covariance_type in ("diag", "spherical"):
        covariances = 1.0 / p
    elif covariance_type == "tied":
        covariances = np.linalg.inv(p)
    else:
        covariances = np.array([np.linalg.inv(pk) for pk in p])
    return Mixture(covariance_type, weights.copy(), means.copy(), covariances)


# ---------------------------------------------------------------------------
# Densities
# ---------------------------------------------------------------------------


def component_log_density(X, mixture: Mixture, k: int) -> np.ndarray:
    """``log N(x_i | mu_k, Sigma_k)`` for every row (scipy.stats)."""
    X = np.asarray(X, dtype=np.float64)
    cov = mixture.covariance_type
    mean = mixture.means[k]
    if cov in ("diag", "spherical"):
        # Independent coordinates: a sum of univariate normal log-densities
        # (a spherical variance is a scalar, broadcast over the features).
        sd = np.sqrt(mixture.covariances[k])
        return stats.norm.logpdf(X, loc=mean, scale=sd).sum(axis=1)
    sigma = mixture.covariances if cov == "tied" else mixture.covariances[k]
    out = stats.multivariate_normal(mean=mean, cov=sigma).logpdf(X)
    return np.atleast_1d(out).reshape(X.shape[0])


def log_joint(X, mixture: Mixture) -> np.ndarray:
    """``log w_k + log N(x_i | mu_k, Sigma_k)``, shape (N, K)."""
    X = np.asarray(X, dtype=np.float64)
    out = np.empty((X.shape[0], mixture.n_components))
    for k in range(mixture.n_components):
        with np.errstate(divide="ignore"):
            log_w = np.log(mixture.weights[k])
        out[:, k] = log_w + component_log_density(X, mixture, k)
    return out


def score_samples(X, mixture: Mixture) -> np.ndarray:
    """``log p(x_i)`` for every row."""
    return logsumexp(log_joint(X, mixture), axis=1)


def predict_proba(X, mixture: Mixture) -> np.ndarray:
    """Posterior probabilities ``p(k | x_i)``, shape (N, K)."""
    lj = log_joint(X, mixture)
    return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))


def predict(X, mixture: Mixture) -> np.ndarray:
    return np.argmax(log_joint(X, mixture), axis=1)


def n_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Free parameters: K-1 weights, K*D means, and the covariances."""
    K, D = n_components, n_features
    per_matrix = D * (D + 1) // 2
    cov = {
        "full": K * per_matrix,
        "tied": per_matrix,
        "diag": K * D,
        "spherical": K,
    }[covariance_type]
    return (K - 1) + K * D + cov


# ---------------------------------------------------------------------------
# EM
# ---------------------------------------------------------------------------


def _weights_or_ones(sample_weight, n_samples: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n_samples)
    return np.asarray(sample_weight, dtype=np.float64)


def e_step(X, mixture: Mixture, sample_weight=None) -> tuple[np.ndarray, float]:
    """Responsibilities and the weighted mean log-likelihood."""
    X = np.asarray(X, dtype=np.float64)
    w = _weights_or_ones(sample_weight, X.shape[0])
    lj = log_joint(X, mixture)
    lse = logsumexp(lj, axis=1)
    resp = np.exp(lj - lse[:, None])
    keep = w > 0  # a zero-weight row contributes nothing, even if lse is -inf
    mean_loglik = float(np.sum(w[keep] * lse[keep]) / np.sum(w))
    return resp, mean_loglik


def scatter_matrices(X, resp, sample_weight, means) -> np.ndarray:
    """``S_k = sum_i w_i r_ik (x_i - m_k)(x_i - m_k)^T``, shape (K, D, D)."""
    X = np.asarray(X, dtype=np.float64)
    w = _weights_or_ones(sample_weight, X.shape[0])
    K, D = means.shape
    S = np.zeros((K, D, D))
    for k in range(K):
        diff = X - means[k]
        rk = w * resp[:, k]
        S[k] = (rk[:, None] * diff).T @ diff
    return S


def m_step(
    X, resp, covariance_type: str, sample_weight=None, reg_covar: float = 1e-6
) -> Mixture:
    """Weighted maximum-likelihood parameters for given responsibilities."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    K = resp.shape[1]
    w = _weights_or_ones(sample_weight, N)
    r = resp * w[:, None]
    nk = r.sum(axis=0) + EPS10
    means = np.array([(r[:, k] @ X) / nk[k] for k in range(K)])
    S = scatter_matrices(X, resp, w, means)
    eye = np.eye(D)
    if covariance_type == "full":
        covariances = np.array([S[k] / nk[k] + reg_covar * eye for k in range(K)])
    elif covariance_type == "tied":
        covariances = S.sum(axis=0) / nk.sum() + reg_covar * eye
    elif covariance_type == "diag":
        covariances = np.array([np.diag(S[k]) / nk[k] + reg_covar for k in range(K)])
    elif covariance_type == "spherical":
        covariances = np.array(
            [np.mean(np.diag(S[k]) / nk[k]) + reg_covar for k in range(K)]
        )
    else:
        raise ValueError(covariance_type)
    weights = nk / nk.sum()
    return Mixture(covariance_type, weights, means, covariances)


def em_step(X, mixture: Mixture, sample_weight=None, reg_covar=1e-6):
    """One EM iteration: (new parameters, lower bound of the entering ones)."""
    resp, lower_bound = e_step(X, mixture, sample_weight)
    new = m_step(X, resp, mixture.covariance_type, sample_weight, reg_covar)
    return new, lower_bound


def fit(
    X,
    initial: Mixture,
    *,
    n_iter: int,
    sample_weight=None,
    reg_covar: float = 1e-6,
) -> Mixture:
    """``n_iter`` EM iterations (no stopping rule) from ``initial``."""
    mixture = Mixture(
        initial.covariance_type,
        initial.weights.copy(),
        initial.means.copy(),
        np.array(initial.covariances, dtype=np.float64),
    )
    lower_bounds = []
    for _ in range(n_iter):
        mixture, lb = em_step(X, mixture, sample_weight, reg_covar)
        lower_bounds.append(lb)
    mixture.lower_bounds = lower_bounds
    return mixture


# ---------------------------------------------------------------------------
# Initial parameters independent of any library
# ---------------------------------------------------------------------------


def initial_parameters(
    X, n_components: int, covariance_type: str, seed: int, sample_weight=None
) -> dict[str, np.ndarray]:
    """``weights_init``, ``means_init`` and ``precisions_init`` for a fit.

    Means are distinct random rows (with positive weight), weights are
    random but bounded away from 0, and every covariance is the (weighted)
    data covariance, shrunk towards its mean diagonal so that constant
    features still get a positive variance.
    """
    X = np.asarray(X, dtype=np.float64)
    rng = np.random.RandomState(seed)
    N, D = X.shape
    K = n_components
    w = _weights_or_ones(sample_weight, N)
    candidates = np.flatnonzero(w > 0)
    means = X[rng.choice(candidates, size=K, replace=False)].copy()
    weights = rng.uniform(1.0, 2.0, size=K)
    weights /= weights.sum()
    mean = (w @ X) / w.sum()
    diff = X - mean
    data_cov = (diff * w[:, None]).T @ diff / w.sum()
    scale = max(float(np.mean(np.diag(data_cov))), 1e-12)
    data_cov = 0.9 * data_cov + 0.1 * scale * np.eye(D)
    if covariance_type == "full":
        precisions = np.array([np.linalg.inv(data_cov) for _ in range(K)])
        precisions = 0.5 * (precisions + np.swapaxes(precisions, 1, 2))
    elif covariance_type == "tied":
        precisions = np.linalg.inv(data_cov)
        precisions = 0.5 * (precisions + precisions.T)
    elif covariance_type == "diag":
        precisions = np.array([1.0 / np.diag(data_cov) for _ in range(K)])
    else:
        precisions = np.full(K, 1.0 / np.mean(np.diag(data_cov)))
    return {
        "weights_init": weights,
        "means_init": means,
        "precisions_init": precisions,
    }
