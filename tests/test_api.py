"""scikit-learn conventions and the estimator's documented behaviour."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _reference import COVARIANCE_TYPES, initial_parameters
from _testing import (
    assert_bit_identical,
    assert_close,
    assert_same_model,
    fit_unconverged,
    sklearn_fit_unconverged,
)
from sklearn.mixture import GaussianMixture as SklearnGM

import fastem


@pytest.fixture(scope="module")
def X3(make_mixture):
    """Three well-separated components in 2-d."""
    return make_mixture(240, 2, 3, seed=81, separation=8.0)[0]


# ---------------------------------------------------------------------------
# Import
# ---------------------------------------------------------------------------


def test_import_is_light_and_compiles_nothing():
    code = textwrap.dedent(
        """
        import sys
        import fastem
        from numba.core.registry import CPUDispatcher
        from fastem._kernels import gaussian, kmeans

        assert hasattr(fastem, "GaussianMixture")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "sklearn")
        assert not loaded, loaded
        compiled = [
            name
            for mod in (gaussian, kmeans)
            for name, obj in vars(mod).items()
            if isinstance(obj, CPUDispatcher) and obj.signatures
        ]
        assert not compiled, compiled
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_fit_and_predict_do_not_import_sklearn():
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import fastem

        X = np.random.RandomState(0).standard_normal((64, 2))
        m = fastem.GaussianMixture(2, random_state=0, max_iter=3, tol=0.0)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastem.ConvergenceWarning)
            m.fit(X)
        m.predict(X); m.predict_proba(X); m.sample(3); m.bic(X)
        loaded = sorted(x for x in sys.modules if x.split(".")[0] == "sklearn")
        assert not loaded, loaded
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-W", "error::numba.NumbaWarning", "-c", code],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ---------------------------------------------------------------------------
# Parameters, clone, pipelines, search
# ---------------------------------------------------------------------------


def test_parameters_are_a_superset_of_sklearn():
    ours = fastem.GaussianMixture().get_params()
    theirs = SklearnGM().get_params()
    assert set(theirs) <= set(ours)
    for name, value in theirs.items():
        assert ours[name] == value or (ours[name] is None and value is None), name


def test_get_set_params_round_trip():
    model = fastem.GaussianMixture(
        4, covariance_type="diag", tol=1e-5, n_init=2, random_state=3
    )
    params = model.get_params()
    assert fastem.GaussianMixture(**params).get_params() == params
    assert model.set_params(n_components=5, reg_covar=1e-3) is model
    assert model.n_components == 5 and model.get_params()["reg_covar"] == 1e-3
    with pytest.raises(ValueError, match="n_component"):
        model.set_params(n_component=3)


def test_repr_shows_changed_parameters():
    model = fastem.GaussianMixture(3, covariance_type="diag")
    assert repr(model) == "GaussianMixture(n_components=3, covariance_type='diag')"
    assert repr(fastem.GaussianMixture()) == "GaussianMixture()"


def test_clone(X3):
    from sklearn.base import clone

    model = fastem.GaussianMixture(3, covariance_type="tied", random_state=4)
    model.fit(X3)
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "means_")
    with pytest.raises(fastem.NotFittedError):
        copy.predict(X3)
    np.testing.assert_array_equal(copy.fit(X3).means_, model.means_)


def test_sklearn_tags():
    from sklearn.utils import get_tags

    tags = get_tags(fastem.GaussianMixture())
    assert tags.estimator_type == "density_estimator"
    assert tags.target_tags.required is False


def test_pipeline(X3):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = make_pipeline(
        StandardScaler(), fastem.GaussianMixture(3, random_state=5)
    ).fit(X3)
    Z = StandardScaler().fit_transform(X3)
    direct = fastem.GaussianMixture(3, random_state=5).fit(Z)
    np.testing.assert_array_equal(pipe.predict(X3), direct.predict(Z))
    np.testing.assert_array_equal(pipe.predict_proba(X3), direct.predict_proba(Z))
    assert pipe.score(X3) == direct.score(Z)


def test_grid_search(X3):
    from sklearn.model_selection import GridSearchCV, KFold

    grid = {"n_components": [1, 2, 3], "covariance_type": ["full", "spherical"]}
    cv = KFold(3, shuffle=True, random_state=0)
    search = GridSearchCV(fastem.GaussianMixture(random_state=6), grid, cv=cv)
    search.fit(X3)
    assert search.best_params_["n_components"] == 3
    assert isinstance(search.best_estimator_, fastem.GaussianMixture)
    assert search.best_estimator_.n_features_in_ == 2
    # The search scores with GaussianMixture.score on each held-out fold.
    best = search.best_index_
    manual = [
        fastem.GaussianMixture(random_state=6, **search.best_params_)
        .fit(X3[train])
        .score(X3[test])
        for train, test in cv.split(X3)
    ]
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"][best], np.mean(manual), rtol=1e-12
    )


# ---------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_fit_predict_equals_fit_then_predict(X3, cov):
    a = fastem.GaussianMixture(3, covariance_type=cov, random_state=7)
    b = fastem.GaussianMixture(3, covariance_type=cov, random_state=7)
    labels = a.fit_predict(X3)
    np.testing.assert_array_equal(labels, b.fit(X3).predict(X3))
    assert labels.shape == (X3.shape[0],)
    assert_bit_identical(a, b)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_sample_matches_sklearn(X3, cov):
    model = fastem.GaussianMixture(3, covariance_type=cov, random_state=8).fit(X3)
    X, y = model.sample(500)
    assert X.shape == (500, 2) and y.shape == (500,)
    assert set(np.unique(y)) <= {0, 1, 2}
    assert np.all(np.diff(y) >= 0)  # grouped by component, as scikit-learn
    # The same parameters and seed in scikit-learn draw the same numbers.
    sk = SklearnGM(3, covariance_type=cov, random_state=8)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(sk, name, getattr(model, name))
    X_sk, y_sk = sk.sample(500)
    np.testing.assert_array_equal(X, X_sk)
    np.testing.assert_array_equal(y, y_sk)
    # Every sample is plausible under its own component.
    assert np.mean(model.predict(X) == y) > 0.95


def test_warm_start_continues(X3):
    inits = initial_parameters(X3, 3, "full", seed=9)
    kwargs = dict(n_components=3, tol=0.0, max_iter=4, **inits)
    warm = fastem.GaussianMixture(warm_start=True, **kwargs)
    fit_unconverged(warm, X3)
    fit_unconverged(warm, X3)
    cold = fit_unconverged(fastem.GaussianMixture(**{**kwargs, "max_iter": 8}), X3)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_close(getattr(warm, name), getattr(cold, name), 1e-13, name)
    assert_close(warm.lower_bounds_, cold.lower_bounds_[4:], 1e-13)
    # scikit-learn's warm start does the same.
    sk = SklearnGM(warm_start=True, **kwargs)
    sklearn_fit_unconverged(sk, X3)
    sklearn_fit_unconverged(sk, X3)
    assert_same_model(sk, warm, 1e-10)


def test_n_init_keeps_the_best_run(make_mixture):
    """n_init runs draw their initialisations one after another from the
    same RandomState; the kept run is the one with the highest lower bound."""
    X, _ = make_mixture(200, 2, 5, seed=10, separation=2.0)
    kwargs = dict(n_components=5, init_params="random_from_data", tol=0.0, max_iter=10)
    stream = np.random.RandomState(11)
    runs = [
        fit_unconverged(fastem.GaussianMixture(random_state=stream, **kwargs), X)
        for _ in range(4)
    ]
    bounds = [r.lower_bound_ for r in runs]
    assert len(set(bounds)) > 1, "runs must differ for the test to mean something"
    best = fit_unconverged(
        fastem.GaussianMixture(
            n_init=4, random_state=np.random.RandomState(11), **kwargs
        ),
        X,
    )
    assert best.lower_bound_ == max(bounds)
    assert_bit_identical(best, runs[int(np.argmax(bounds))])


def test_callback_sees_every_iteration(X3):
    calls = []
    model = fastem.GaussianMixture(
        3,
        random_state=12,
        tol=1e-10,
        max_iter=200,
        callback=lambda it, lb: calls.append((it, lb)),
    ).fit(X3)
    assert [c[0] for c in calls] == list(range(1, model.n_iter_ + 1))
    assert [c[1] for c in calls] == list(model.lower_bounds_)


def test_callback_returning_true_stops(X3):
    seen = []

    def stop_at_three(iteration, lower_bound):
        seen.append(iteration)
        return iteration == 3

    model = fastem.GaussianMixture(
        3, random_state=13, tol=0.0, max_iter=50, callback=stop_at_three
    )
    fit_unconverged(model, X3)
    assert seen == [1, 2, 3]
    assert model.n_iter_ == 3 and len(model.lower_bounds_) == 3
    assert model.converged_ is False


def test_verbose_writes_to_stderr(X3, capsys):
    model = fastem.GaussianMixture(
        3, random_state=14, tol=0.0, max_iter=6, verbose=1, verbose_interval=2
    )
    fit_unconverged(model, X3)
    out, err = capsys.readouterr()
    assert out == ""
    assert "Initialization 0" in err
    assert err.count("Iteration") == 3  # iterations 2, 4 and 6
    quiet = fastem.GaussianMixture(3, random_state=14, tol=0.0, max_iter=6)
    fit_unconverged(quiet, X3)
    assert capsys.readouterr() == ("", "")


def test_convergence_warning(X3):
    model = fastem.GaussianMixture(3, random_state=15, tol=1e-12, max_iter=2)
    with pytest.warns(fastem.ConvergenceWarning, match="did not converge"):
        model.fit(X3)
    assert model.converged_ is False and model.n_iter_ == 2
    # A run that converges does not warn.
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastem.ConvergenceWarning)
        converged = fastem.GaussianMixture(3, random_state=15, max_iter=500).fit(X3)
    assert converged.converged_ is True
    assert abs(converged.lower_bounds_[-1] - converged.lower_bounds_[-2]) < 1e-3


@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_stops_at_the_first_change_below_tol(make_mixture, tol):
    """scikit-learn's rule: stop when |lower bound change| < tol."""
    X, _ = make_mixture(300, 2, 3, seed=20, separation=3.0)
    model = fastem.GaussianMixture(
        3, tol=tol, max_iter=1000, init_params="random", random_state=21
    ).fit(X)
    changes = np.abs(np.diff(model.lower_bounds_))
    assert model.converged_ is True
    assert model.n_iter_ == len(model.lower_bounds_) >= 3
    assert changes[-1] < tol
    assert np.all(changes[:-1] >= tol)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_max_iter_zero_keeps_the_initial_parameters(X3, cov):
    inits = initial_parameters(X3, 3, cov, seed=16)
    model = fastem.GaussianMixture(3, covariance_type=cov, max_iter=0, **inits).fit(X3)
    assert model.n_iter_ == 0 and model.lower_bounds_ == []
    np.testing.assert_array_equal(model.weights_, inits["weights_init"])
    np.testing.assert_array_equal(model.means_, inits["means_init"])
    assert_close(model.precisions_, inits["precisions_init"], 1e-12)
    assert model.predict(X3).shape == (X3.shape[0],)


def test_concurrent_fits_from_python_threads(make_mixture):
    """Two Python threads fitting at once get what sequential fits get."""
    data = [make_mixture(3000, 3, 3, seed=s)[0] for s in (17, 18)]

    def fit(X):
        model = fastem.GaussianMixture(
            3, covariance_type="full", random_state=19, tol=0.0, max_iter=5
        )
        return model.fit(X)

    # Warning filters are process-global: catch them here, not in the threads.
    with pytest.warns(fastem.ConvergenceWarning):
        sequential = [fit(X) for X in data]
        with ThreadPoolExecutor(2) as pool:
            concurrent = list(pool.map(fit, data))
    for a, b in zip(sequential, concurrent, strict=True):
        assert_bit_identical(a, b)
