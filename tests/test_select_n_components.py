"""select_n_components: the generic BIC/AIC sweep for every mixture family."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastem


def _poisson_data(n=3000, seed=0):
    rng = np.random.RandomState(seed)
    rates = np.array(
        [[1.0, 8.0, 2.0, 15.0], [12.0, 1.0, 9.0, 2.0], [5.0, 5.0, 30.0, 6.0]]
    )
    labels = rng.randint(3, size=n)
    return rng.poisson(rates[labels]).astype(float)


def _bernoulli_data(n=3000, seed=1):
    rng = np.random.RandomState(seed)
    probs = np.array([[0.9, 0.1, 0.8, 0.2, 0.9, 0.1], [0.1, 0.9, 0.2, 0.8, 0.1, 0.9]])
    labels = rng.randint(2, size=n)
    return (rng.rand(n, 6) < probs[labels]).astype(float)


@pytest.mark.parametrize(
    ("estimator", "data", "true_k"),
    [
        (fastem.PoissonMixture(random_state=0, n_init=2), _poisson_data, 3),
        (fastem.BernoulliMixture(random_state=0, n_init=2), _bernoulli_data, 2),
        (
            fastem.GaussianMixture(covariance_type="diag", random_state=0),
            _poisson_data,
            None,
        ),
    ],
)
def test_sweep_picks_the_true_size_and_reports_each_fit(estimator, data, true_k):
    X = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastem.ConvergenceWarning)
        best, table = fastem.select_n_components(estimator, X, range(1, 6))
    np.testing.assert_array_equal(table["n_components"], [1, 2, 3, 4, 5])
    assert best.n_components == table["n_components"][np.argmin(table["bic"])]
    # The reported criterion is the fitted model's own bic().
    assert table["bic"].min() == pytest.approx(best.bic(X), rel=1e-12)
    if true_k is not None:
        assert best.n_components == true_k
    assert estimator.get_params()["n_components"] == 1  # the template is untouched


def test_aic_and_bad_arguments():
    X = _poisson_data(n=500)
    _, table = fastem.select_n_components(
        fastem.PoissonMixture(random_state=0), X, [1, 2], criterion="aic"
    )
    assert set(table) == {"n_components", "aic", "lower_bound", "n_iter"}
    with pytest.raises(ValueError, match="criterion"):
        fastem.select_n_components(fastem.PoissonMixture(), X, [1], criterion="icl")
    with pytest.raises(ValueError, match="n_components"):
        fastem.select_n_components(fastem.PoissonMixture(), X, [])
    with pytest.raises(ValueError, match="n_components"):
        fastem.select_n_components(fastem.PoissonMixture(), X, [0, 1])
