"""Bad input gets a ValueError or TypeError that names the argument
(documented in DESIGN.md, "What bad input gets"); inputs are never modified."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import COVARIANCE_TYPES, initial_parameters
from _testing import thread_counts

import fastem

rng = np.random.RandomState(0)
X_OK = rng.standard_normal((40, 2))


@pytest.fixture(scope="module")
def fitted():
    return fastem.GaussianMixture(2, random_state=0).fit(X_OK)


# ---------------------------------------------------------------------------
# X
# ---------------------------------------------------------------------------

BAD_X = [
    pytest.param(np.zeros(10), ValueError, r"X must be (a )?2-d", id="1-d"),
    pytest.param(np.zeros((4, 3, 2)), ValueError, r"X must be (a )?2-d", id="3-d"),
    pytest.param(np.float64(3.0), ValueError, r"X must be (a )?2-d", id="0-d"),
    pytest.param(np.zeros((0, 3)), ValueError, r"X has 0 samples", id="no-rows"),
    pytest.param(np.zeros((5, 0)), ValueError, r"X has 0 features", id="no-columns"),
    pytest.param(
        np.array([["a", "b"], ["c", "d"]]), TypeError, r"X must be numeric", id="str"
    ),
    pytest.param(
        np.array([[1.0, "x"], [2.0, 3.0]], dtype=object),
        TypeError,
        r"X must contain real numbers",
        id="object-str",
    ),
    pytest.param(
        np.ones((5, 2), dtype=np.complex128), TypeError, r"X must be real", id="complex"
    ),
    pytest.param(
        np.array(["2020-01-01"] * 4, dtype="datetime64[D]").reshape(2, 2),
        TypeError,
        r"X must be numeric",
        id="datetime",
    ),
    pytest.param([[1.0, 2.0], [3.0]], ValueError, r"X", id="ragged"),
]


def _with(value, row, col, X=X_OK):
    X = X.copy()
    X[row, col] = value
    return X


NON_FINITE_X = [
    pytest.param(_with(np.inf, 3, 1), r"X contains infinite", id="inf"),
    pytest.param(_with(-np.inf, 0, 0), r"X contains infinite", id="-inf"),
    # NaN marks a missing value; a row with nothing observed is an error.
    pytest.param(_with(np.nan, 5, slice(None)), r"X row 5", id="all-nan-row"),
]


@pytest.mark.parametrize(("X", "error", "match"), BAD_X)
def test_fit_rejects_bad_X(X, error, match):
    with pytest.raises(error, match=match):
        fastem.GaussianMixture(1).fit(X)


@pytest.mark.parametrize(("X", "match"), NON_FINITE_X)
def test_fit_rejects_non_finite_X(X, match):
    with pytest.raises(ValueError, match=match):
        fastem.GaussianMixture(2).fit(X)


@pytest.mark.parametrize(("X", "error", "match"), BAD_X)
@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "score_samples", "score", "bic", "aic"]
)
def test_inference_rejects_bad_X(fitted, method, X, error, match):
    with pytest.raises(error, match=match):
        getattr(fitted, method)(X)


@pytest.mark.parametrize(("X", "match"), NON_FINITE_X)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples"])
def test_inference_rejects_non_finite_X(fitted, method, X, match):
    with pytest.raises(ValueError, match=match):
        getattr(fitted, method)(X)


@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "score_samples", "score", "bic", "aic"]
)
@pytest.mark.parametrize("n_features", [1, 3])
def test_wrong_number_of_features(fitted, method, n_features):
    with pytest.raises(ValueError, match=rf"X has {n_features} features.*2 features"):
        getattr(fitted, method)(np.zeros((4, n_features)))


def test_sparse_X_is_rejected(fitted):
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.random(20, 2, density=0.5, format="csr", random_state=0)
    with pytest.raises(TypeError, match="X is a sparse matrix"):
        fastem.GaussianMixture(1).fit(X)
    with pytest.raises(TypeError, match="X is a sparse matrix"):
        fitted.predict(X)


# ---------------------------------------------------------------------------
# Hyper-parameters
# ---------------------------------------------------------------------------

BAD_PARAMS = [
    ({"n_components": 0}, ValueError, "n_components"),
    ({"n_components": -2}, ValueError, "n_components"),
    ({"n_components": 2.5}, TypeError, "n_components"),
    ({"n_components": 41}, ValueError, "n_components"),  # > n_samples
    ({"covariance_type": "ful"}, ValueError, "covariance_type"),
    ({"covariance_type": None}, ValueError, "covariance_type"),
    ({"init_params": "kmeans++"}, ValueError, "init_params"),
    ({"tol": -1e-3}, ValueError, "tol"),
    ({"tol": np.nan}, ValueError, "tol"),
    ({"tol": "small"}, TypeError, "tol"),
    ({"reg_covar": -1e-6}, ValueError, "reg_covar"),
    ({"reg_covar": np.inf}, ValueError, "reg_covar"),
    ({"max_iter": -1}, ValueError, "max_iter"),
    ({"max_iter": 10.0}, TypeError, "max_iter"),
    ({"max_iter": True}, TypeError, "max_iter"),
    ({"n_init": 0}, ValueError, "n_init"),
    ({"n_init": 1.5}, TypeError, "n_init"),
    ({"warm_start": "yes"}, TypeError, "warm_start"),
    ({"verbose": -1}, ValueError, "verbose"),
    ({"verbose_interval": 0}, ValueError, "verbose_interval"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"n_threads": 10_000}, ValueError, "n_threads"),
    ({"n_threads": 1.0}, TypeError, "n_threads"),
    ({"callback": 3}, TypeError, "callback"),
    ({"random_state": "seed"}, ValueError, "random_state"),
]


@pytest.mark.parametrize(
    ("params", "error", "name"),
    BAD_PARAMS,
    ids=[f"{next(iter(p))}={next(iter(p.values()))!r}" for p, _, _ in BAD_PARAMS],
)
def test_bad_hyperparameters(params, error, name):
    kwargs = {"n_components": 2, **params}
    with pytest.raises(error, match=name):
        fastem.GaussianMixture(**kwargs).fit(X_OK)


# ---------------------------------------------------------------------------
# weights_init / means_init / precisions_init
# ---------------------------------------------------------------------------

K, D = 2, 2
GOOD_PREC = {
    "full": np.stack([np.eye(D), 2 * np.eye(D)]),
    "tied": np.eye(D),
    "diag": np.ones((K, D)),
    "spherical": np.ones(K),
}
WRONG_SHAPE_PREC = {
    "full": np.ones((K, D)),
    "tied": np.ones((K, D, D)),
    "diag": np.ones(K),
    "spherical": np.ones((K, D)),
}
NOT_PD_PREC = {
    "full": np.stack([np.eye(D), np.array([[1.0, 2.0], [2.0, 1.0]])]),
    "tied": np.array([[1.0, 0.0], [0.0, -1.0]]),
    "diag": np.array([[1.0, 1.0], [1.0, 0.0]]),
    "spherical": np.array([1.0, -2.0]),
}


@pytest.mark.parametrize(
    ("weights_init", "match"),
    [
        (np.array([0.5, 0.3, 0.2]), r"weights_init must have shape \(2,\)"),
        (np.array([[0.5, 0.5]]), r"weights_init must have shape"),
        (np.array([0.6, 0.6]), r"weights_init must sum to 1"),
        (np.array([0.3, 0.3]), r"weights_init must sum to 1"),
        (np.array([1.5, -0.5]), r"weights_init must be in \[0, 1\]"),
        (np.array([np.nan, 1.0]), r"weights_init contains non-finite"),
    ],
)
def test_bad_weights_init(weights_init, match):
    with pytest.raises(ValueError, match=match):
        fastem.GaussianMixture(K, weights_init=weights_init).fit(X_OK)


@pytest.mark.parametrize(
    ("means_init", "match"),
    [
        (np.zeros((3, D)), r"means_init must have shape \(2, 2\)"),
        (np.zeros((K, D + 1)), r"means_init must have shape \(2, 2\)"),
        (np.zeros(K), r"means_init must have shape"),
        (np.array([[0.0, np.inf], [1.0, 1.0]]), r"means_init contains non-finite"),
    ],
)
def test_bad_means_init(means_init, match):
    with pytest.raises(ValueError, match=match):
        fastem.GaussianMixture(K, means_init=means_init).fit(X_OK)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_bad_precisions_init(cov):
    model = fastem.GaussianMixture(K, covariance_type=cov)
    with pytest.raises(ValueError, match=r"precisions_init must have shape"):
        model.set_params(precisions_init=WRONG_SHAPE_PREC[cov]).fit(X_OK)
    with pytest.raises(ValueError, match=r"precisions_init"):
        model.set_params(precisions_init=NOT_PD_PREC[cov]).fit(X_OK)
    bad = GOOD_PREC[cov].astype(float).copy()
    bad.flat[0] = np.nan
    with pytest.raises(ValueError, match=r"precisions_init contains non-finite"):
        model.set_params(precisions_init=bad).fit(X_OK)
    # The good one is accepted (the checks above are not over-eager).
    model.set_params(precisions_init=GOOD_PREC[cov], max_iter=0).fit(X_OK)


def test_non_symmetric_precisions_init():
    prec = np.stack([np.eye(D), np.array([[2.0, 0.5], [0.0, 2.0]])])
    with pytest.raises(ValueError, match=r"precisions_init.*symmetric"):
        fastem.GaussianMixture(K, precisions_init=prec).fit(X_OK)


def test_precisions_init_with_other_n_features():
    model = fastem.GaussianMixture(
        K, covariance_type="diag", precisions_init=np.ones((K, 3))
    )
    with pytest.raises(ValueError, match="precisions_init"):
        model.fit(X_OK)


# ---------------------------------------------------------------------------
# sample_weight
# ---------------------------------------------------------------------------

N = X_OK.shape[0]


def _sw(**changes):
    w = np.ones(N)
    for index, value in changes.items():
        w[int(index[1:])] = value
    return w


BAD_WEIGHTS = [
    pytest.param(
        _sw(i3=-0.5), ValueError, r"sample_weight must be non-negative", id="negative"
    ),
    pytest.param(
        _sw(i0=np.nan), ValueError, r"sample_weight contains non-finite", id="nan"
    ),
    pytest.param(
        _sw(i7=np.inf), ValueError, r"sample_weight contains non-finite", id="inf"
    ),
    pytest.param(
        np.ones(N - 1), ValueError, r"sample_weight must have shape \(40,\)", id="short"
    ),
    pytest.param(
        np.ones(N + 1), ValueError, r"sample_weight must have shape", id="long"
    ),
    pytest.param(
        np.ones((N, 1)), ValueError, r"sample_weight must have shape", id="2-d"
    ),
    pytest.param(np.zeros(N), ValueError, r"sample_weight sums to zero", id="all-zero"),
    pytest.param(
        np.array(["1"] * N), TypeError, r"sample_weight must be numeric", id="str"
    ),
    pytest.param(
        np.r_[1.0, np.zeros(N - 1)],
        ValueError,
        r"sample_weight .*n_components",
        id="too-few-positive",
    ),
]


@pytest.mark.parametrize(("sample_weight", "error", "match"), BAD_WEIGHTS)
def test_fit_rejects_bad_sample_weight(sample_weight, error, match):
    with pytest.raises(error, match=match):
        fastem.GaussianMixture(2).fit(X_OK, sample_weight=sample_weight)


@pytest.mark.parametrize(("sample_weight", "error", "match"), BAD_WEIGHTS[:-1])
@pytest.mark.parametrize("method", ["score", "bic", "aic"])
def test_scores_reject_bad_sample_weight(fitted, method, sample_weight, error, match):
    with pytest.raises(error, match=match):
        getattr(fitted, method)(X_OK, sample_weight=sample_weight)


# ---------------------------------------------------------------------------
# Not fitted
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("predict", (X_OK,)),
        ("predict_proba", (X_OK,)),
        ("score_samples", (X_OK,)),
        ("score", (X_OK,)),
        ("bic", (X_OK,)),
        ("aic", (X_OK,)),
        ("sample", (3,)),
        ("save", ("unused.npz",)),
    ],
)
def test_not_fitted(method, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = fastem.GaussianMixture(2)
    with pytest.raises(fastem.NotFittedError, match="not fitted") as info:
        getattr(model, method)(*args)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AttributeError)
    assert not (tmp_path / "unused.npz").exists()


def test_not_fitted_is_recognised_by_sklearn():
    from sklearn.utils.validation import check_is_fitted

    with pytest.raises(fastem.NotFittedError):
        fastem.GaussianMixture().predict(X_OK)
    from sklearn.exceptions import NotFittedError as SklearnNotFitted

    with pytest.raises(SklearnNotFitted):
        check_is_fitted(fastem.GaussianMixture())


def test_sample_rejects_bad_n_samples(fitted):
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample(0)
    with pytest.raises(TypeError, match="n_samples"):
        fitted.sample(2.0)


def test_warm_start_with_other_n_features():
    model = fastem.GaussianMixture(2, warm_start=True, random_state=0).fit(X_OK)
    with pytest.raises(ValueError, match="features"):
        model.fit(np.random.RandomState(1).standard_normal((40, 3)))


# ---------------------------------------------------------------------------
# Inputs are never modified
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("order", ["C", "F"])
def test_inputs_are_not_modified(cov, dtype, order):
    X = np.asarray(X_OK + 100.0, dtype=dtype, order=order)
    sw = np.random.RandomState(3).uniform(0.5, 2.0, N)
    inits = initial_parameters(X.astype(np.float64), K, cov, seed=1)
    copies = {"X": X.copy(order="A"), "sw": sw.copy()}
    copies.update({k: v.copy() for k, v in inits.items()})

    model = fastem.GaussianMixture(K, covariance_type=cov, max_iter=5, tol=0.0, **inits)
    with pytest.warns(fastem.ConvergenceWarning):
        model.fit(X, sample_weight=sw)
    model.predict(X)
    model.predict_proba(X)
    model.score_samples(X)
    model.score(X, sample_weight=sw)
    model.bic(X, sample_weight=sw)
    model.sample(5)

    np.testing.assert_array_equal(X, copies["X"])
    assert X.dtype == dtype and X.flags.f_contiguous == (order == "F")
    np.testing.assert_array_equal(sw, copies["sw"])
    for name, value in inits.items():
        np.testing.assert_array_equal(value, copies[name], err_msg=name)
        assert getattr(model, name) is value  # sklearn convention: stored as given
    # Fitted arrays are the model's own, not views of the user's inputs.
    for fitted_name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        for value in (X, sw, *inits.values()):
            assert not np.shares_memory(getattr(model, fitted_name), value)


# -- the one-pass finiteness check -------------------------------------------

# 300,000 x 4 float64 rows are 9.6 MB: three tasks of all_finite's 4 MB.
_LARGE_SHAPE = (300_000, 4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 131_071, 299_999])
@pytest.mark.parametrize("n_threads", thread_counts(1, 2))
def test_all_finite_finds_one_non_finite_value_anywhere(dtype, value, row, n_threads):
    from fastem._validation import all_finite

    X = np.random.default_rng(row).normal(size=_LARGE_SHAPE).astype(dtype)
    assert all_finite(X, n_threads)
    X[row, row % 4] = value
    assert not all_finite(X, n_threads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_values_whose_sum_overflows_are_valid_and_not_missing(dtype):
    """The fast check's sum overflows; the exact check must still accept them."""
    from fastem._patterns import has_nan
    from fastem._validation import check_data_with_nan

    big = np.finfo(dtype).max / 2
    X = np.full((100, 3), big, dtype=dtype)
    X[::2] *= -0.5
    for allow_nan in (False, True):
        checked, nan = check_data_with_nan(X, allow_nan=allow_nan)
        assert checked is X and not nan
    assert not has_nan(X)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_validation_reports_missing_values(dtype):
    from fastem._patterns import has_nan
    from fastem._validation import check_data_with_nan

    X = np.random.default_rng(0).normal(size=_LARGE_SHAPE).astype(dtype)
    checked, nan = check_data_with_nan(X, allow_nan=True)
    assert not nan and not has_nan(checked)
    X[200_000, 2] = np.nan
    checked, nan = check_data_with_nan(X, allow_nan=True)
    assert nan and has_nan(checked)
    with pytest.raises(ValueError, match=r"X contains NaN.*row 200000, column 2"):
        check_data_with_nan(X)


@pytest.mark.parametrize("n_threads", thread_counts(1, 2))
def test_validation_runs_on_the_estimators_threads(monkeypatch, n_threads):
    """fit and the per-row methods check the values of X on the estimator's
    ``n_threads`` (a caller limiting fastem to one thread gets one thread)."""
    import fastem._validation as validation

    seen = []
    run_tasks = validation.run_tasks

    def recording(kernel, n_tasks, *args, n_threads=None):
        seen.append(n_threads)
        return run_tasks(kernel, n_tasks, *args, n_threads=n_threads)

    monkeypatch.setattr(validation, "run_tasks", recording)
    X = np.random.default_rng(0).normal(size=(300, 3))
    model = fastem.GaussianMixture(2, n_threads=n_threads, random_state=0).fit(X)
    model.predict(X)
    assert seen and set(seen) == {n_threads}


def test_per_row_methods_take_the_nan_flag_from_validation(monkeypatch):
    """The validation pass finds whether X holds NaN, and GaussianMixture's
    per-row methods and fit_predict use that flag instead of scanning X
    again; rows with
    NaN still go to the missing-value kernels (the outputs equal those
    found with the scan)."""
    import fastem.mixture as mixture

    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 3))
    X_nan = X.copy()
    X_nan[::7, 1] = np.nan
    model = fastem.GaussianMixture(2, random_state=0).fit(X)
    methods = ("predict", "predict_proba", "score_samples")
    expected = {
        (name, i): getattr(model, name)(data)
        for name in methods
        for i, data in enumerate((X, X_nan))
    }

    def no_second_scan(*args, **kwargs):
        raise AssertionError("X scanned for NaN a second time")

    monkeypatch.setattr(mixture, "_has_nan", no_second_scan)
    for name in methods:
        for i, data in enumerate((X, X_nan)):
            np.testing.assert_array_equal(getattr(model, name)(data), expected[name, i])
    assert np.isnan(X_nan).any() and not np.isnan(expected["score_samples", 1]).any()
    # fit_predict takes the flag from the fit's own validation pass.
    for data in (X, X_nan):
        refit = fastem.GaussianMixture(2, random_state=0)
        labels = refit.fit_predict(data)
        np.testing.assert_array_equal(labels, refit.predict(data))
