"""Statistical value of missing-data EM on data from a known mixture with 20%
of the values removed at random: the parameters are closer to the truth than
a fit on the complete rows only, and ``impute`` beats column-mean imputation
and scikit-learn's ``IterativeImputer``.

Run with ``-s`` to see the numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import fastem

pytest.importorskip("sklearn")


def truth_mixture(seed, d=5, k=3):
    rng = np.random.RandomState(seed)
    means = rng.uniform(-5, 5, (k, d))
    factors = rng.normal(size=(k, d, d)) * 0.6 + np.eye(d)
    covs = np.einsum("kij,klj->kil", factors, factors)
    weights = rng.dirichlet(np.full(k, 5.0))
    return weights, means, covs


def draw(truth, n, seed):
    weights, means, covs = truth
    rng = np.random.RandomState(seed)
    labels = rng.choice(len(weights), n, p=weights)
    X = np.empty((n, means.shape[1]))
    for k in range(len(weights)):
        rows = labels == k
        X[rows] = rng.multivariate_normal(means[k], covs[k], rows.sum())
    return X


def parameter_errors(model, truth):
    """Mean distance of matched means, mean relative Frobenius error of the
    covariances, mean absolute error of the weights."""
    weights, means, covs = truth
    cost = ((model.means_[:, None] - means[None]) ** 2).sum(axis=-1)
    rows, cols = linear_sum_assignment(cost)
    mean_err = np.linalg.norm(model.means_[rows] - means[cols], axis=1).mean()
    cov_err = np.mean(
        [
            np.linalg.norm(model.covariances_[i] - covs[j]) / np.linalg.norm(covs[j])
            for i, j in zip(rows, cols, strict=True)
        ]
    )
    weight_err = np.abs(model.weights_[rows] - weights[cols]).mean()
    return np.array([mean_err, cov_err, weight_err])


def test_missing_em_beats_complete_rows_and_other_imputers():
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    err_missing, err_complete = [], []
    for seed in range(3):
        truth = truth_mixture(seed)
        X = draw(truth, 1500, seed + 100)
        mask = np.random.RandomState(seed).rand(*X.shape) < 0.2
        mask[mask.all(axis=1), 0] = False
        Xm = np.where(mask, np.nan, X)
        complete = ~mask.any(axis=1)

        def gmm():
            return fastem.GaussianMixture(
                3, n_init=3, random_state=0, max_iter=500, tol=1e-6
            )

        with_missing = gmm().fit(Xm)
        complete_only = gmm().fit(X[complete])
        err_missing.append(parameter_errors(with_missing, truth))
        err_complete.append(parameter_errors(complete_only, truth))

        imputed = with_missing.impute(Xm)
        rmse = np.sqrt(np.mean((imputed[mask] - X[mask]) ** 2))
        filled = np.where(mask, np.nanmean(Xm, axis=0), X)
        rmse_mean = np.sqrt(np.mean((filled[mask] - X[mask]) ** 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # IterativeImputer's ConvergenceWarning
            iterative = IterativeImputer(random_state=0, max_iter=20).fit_transform(Xm)
        rmse_iter = np.sqrt(np.mean((iterative[mask] - X[mask]) ** 2))
        print(
            f"\nseed {seed}: {complete.mean():.0%} complete rows; errors (means, "
            f"covariances, weights) missing-data EM {np.round(err_missing[-1], 3)} vs "
            f"complete rows only {np.round(err_complete[-1], 3)}; imputation RMSE "
            f"fastem {rmse:.3f}, column mean {rmse_mean:.3f}, "
            f"IterativeImputer {rmse_iter:.3f}"
        )
        assert rmse < rmse_mean
        assert rmse < rmse_iter
    # Averaged over the data sets (a single small sample can go either way).
    mean_missing = np.mean(err_missing, axis=0)
    mean_complete = np.mean(err_complete, axis=0)
    print(f"mean errors: {np.round(mean_missing, 3)} vs {np.round(mean_complete, 3)}")
    assert np.all(mean_missing < mean_complete)
