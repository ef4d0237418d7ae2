"""EM with missing values (NaN) against a slow textbook reference, plus the
properties the issue asks for: bit-identical complete-data results,
monotone likelihood, thread determinism, validation, imputation and draws."""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
from _reference_missing import full_covariances
from _reference_missing import impute as ref_impute
from _reference_missing import run_em as ref_run_em
from _reference_missing import score_samples as ref_score_samples
from _testing import needs_threads

import fastem
from fastem import kernels
from fastem.exceptions import ConvergenceWarning
from fastem.families import gaussian as g
from fastem.families import gaussian_missing as gm
from fastem.families.gaussian_fit import GaussianEM
from fastem.sources import ArraySource

COV_TYPES = ("full", "tied", "diag", "spherical")


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def mixture_data(n, d, k, seed, *, offset=0.0):
    """Rows of a random, well separated Gaussian mixture and its parameters."""
    rng = np.random.RandomState(seed)
    means = rng.uniform(-6, 6, (k, d)) + offset
    factors = rng.uniform(-0.4, 0.4, (k, d, d)) + np.eye(d) * rng.uniform(
        0.7, 1.3, (k, 1, 1)
    )
    covs = np.einsum("kij,klj->kil", factors, factors)
    weights = rng.uniform(1, 2, k)
    weights /= weights.sum()
    labels = rng.choice(k, size=n, p=weights)
    X = means[labels] + np.einsum("nij,nj->ni", factors[labels], rng.randn(n, d))
    return X, (weights, means, covs)


def remove(X, kind, seed):
    """A copy of X with NaN in one of several missingness patterns."""
    rng = np.random.RandomState(seed)
    X = X.copy()
    n, d = X.shape
    if kind == "random":
        mask = rng.rand(n, d) < 0.25
    elif kind == "sparse-rows":
        # Every third row keeps a single coordinate; the others are complete.
        mask = np.zeros((n, d), dtype=bool)
        keep = rng.randint(d, size=n)
        mask[::3] = True
        mask[np.arange(n)[::3], keep[::3]] = False
    elif kind == "monotone":
        # Drop-out: the last coordinates go missing together.
        first = rng.choice(np.arange(1, d + 1), size=n, p=None)
        mask = np.arange(d)[None, :] >= first[:, None]
    elif kind == "many-patterns":
        mask = rng.rand(n, d) < 0.45
    else:
        raise AssertionError(kind)
    empty = mask.all(axis=1)
    mask[empty, rng.randint(d, size=int(empty.sum()))] = False
    X[mask] = np.nan
    return X


def init_params(truth, cov, seed):
    """Perturbed true parameters as (weights, means, covariances), and the
    matching ``precisions_init``."""
    weights, means, covs = truth
    rng = np.random.RandomState(seed)
    K = means.shape[0]
    w = weights * rng.uniform(0.8, 1.2, K)
    w /= w.sum()
    mu = means + rng.normal(scale=0.5, size=means.shape)
    if cov == "full":
        c = covs * 1.3
    elif cov == "tied":
        c = covs.mean(axis=0) * 1.3
    elif cov == "diag":
        c = np.diagonal(covs, axis1=1, axis2=2) * 1.3
    else:
        c = np.diagonal(covs, axis1=1, axis2=2).mean(axis=1) * 1.3
    prec = np.linalg.inv(c) if cov in ("full", "tied") else 1.0 / c
    return (w, mu, c), prec


def fit(X, cov, init, prec, n_iter, sample_weight=None, **kw):
    model = fastem.GaussianMixture(
        init[1].shape[0],
        covariance_type=cov,
        weights_init=init[0],
        means_init=init[1],
        precisions_init=prec,
        max_iter=n_iter,
        tol=0.0,
        **kw,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, sample_weight=sample_weight)


def assert_rel(actual, desired, rtol, what=""):
    """``|a - d| <= rtol * max|d|`` elementwise (scale of the whole array)."""
    actual = np.asarray(actual, dtype=np.float64)
    desired = np.asarray(desired, dtype=np.float64)
    scale = np.abs(desired).max()
    err = np.abs(actual - desired).max() / scale
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:g}"


# ---------------------------------------------------------------------------
# Exact EM: 20 iterations against the reference
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COV_TYPES)
@pytest.mark.parametrize("kind", ["random", "sparse-rows", "monotone", "many-patterns"])
def test_twenty_iterations_match_reference(cov, kind):
    X, truth = mixture_data(90, 4, 3, seed=11)
    Xm = remove(X, kind, seed=5)
    init, prec = init_params(truth, cov, seed=2)
    model = fit(Xm, cov, init, prec, 20)
    (w, mu, c), lls = ref_run_em(Xm, None, init, cov, 1e-6, 20)
    assert model.n_iter_ == 20
    assert_rel(model.weights_, w, 1e-8, "weights")
    assert_rel(model.means_, mu, 1e-8, "means")
    assert_rel(model.covariances_, c, 1e-8, "covariances")
    assert_rel(np.array(model.lower_bounds_) * len(X), lls, 1e-8, "log-likelihoods")


@pytest.mark.parametrize("cov", COV_TYPES)
def test_reference_with_sample_weight_and_offset(cov):
    """Non-integer weights, data far from the origin (second moments are
    accumulated around the means, so nothing cancels)."""
    X, truth = mixture_data(80, 3, 2, seed=3, offset=1e5)
    Xm = remove(X, "random", seed=1)
    sw = np.random.RandomState(0).uniform(0.1, 3.0, len(X))
    init, prec = init_params(truth, cov, seed=4)
    model = fit(Xm, cov, init, prec, 20, sample_weight=sw)
    (w, mu, c), _ = ref_run_em(Xm, sw, init, cov, 1e-6, 20)
    assert_rel(model.weights_, w, 1e-8, "weights")
    assert_rel(model.means_, mu, 1e-8, "means")
    # Covariances are ~1 while the data sit at 1e5: relative to their own
    # scale they are as accurate as the subtraction x - mu allows.
    assert_rel(model.covariances_, c, 1e-7, "covariances")


@pytest.mark.parametrize("cov", COV_TYPES)
def test_per_row_outputs_and_impute_match_reference(cov):
    X, truth = mixture_data(70, 5, 3, seed=8)
    Xm = remove(X, "many-patterns", seed=9)
    Xm[3] = np.nan
    Xm[3, 2] = 1.0  # all but one coordinate missing
    init, prec = init_params(truth, cov, seed=1)
    model = fit(Xm, cov, init, prec, 3)
    params = (model.weights_, model.means_, model.covariances_)
    logp, resp = ref_score_samples(Xm, params, cov)
    np.testing.assert_allclose(model.score_samples(Xm), logp, rtol=1e-10)
    np.testing.assert_allclose(model.predict_proba(Xm), resp, atol=1e-10)
    np.testing.assert_array_equal(model.predict(Xm), resp.argmax(axis=1))
    np.testing.assert_allclose(model.score(Xm), logp.mean(), rtol=1e-10)
    np.testing.assert_allclose(
        model.impute(Xm), ref_impute(Xm, params, cov), rtol=1e-10
    )


# ---------------------------------------------------------------------------
# Complete data pay nothing and get the same bits
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COV_TYPES)
def test_no_nan_is_bit_identical_to_complete_path(cov):
    X, truth = mixture_data(300, 3, 3, seed=21)
    init, prec = init_params(truth, cov, seed=3)
    model = fit(X, cov, init, prec, 7)
    params = kernels.make_gaussian_params(*init, cov)
    for _ in range(7):
        params, _ = kernels.gaussian_mstep(kernels.gaussian_stats(X, params))
    # A tied fit sums the total scatter once and moves it to each pass's
    # mixture mean (TiedScatterMemo); the stateless low-level loop sums it
    # every pass, so the two agree to rounding only.
    same = (
        np.testing.assert_array_equal
        if cov != "tied"
        else partial(np.testing.assert_allclose, rtol=1e-12, atol=1e-15)
    )
    same(model.means_, params.means)
    same(model.covariances_, params.covariances)
    same(model.weights_, params.weights)
    lse, resp, labels = g.per_row(
        X, model._params, log_likelihood=True, responsibilities=True, labels=True
    )
    np.testing.assert_array_equal(model.score_samples(X), lse)
    np.testing.assert_array_equal(model.predict_proba(X), resp)
    np.testing.assert_array_equal(model.predict(X), labels)
    imputed = model.impute(X)
    np.testing.assert_array_equal(imputed, X)
    assert imputed is not X


@pytest.mark.parametrize("cov", COV_TYPES)
def test_complete_rows_use_the_complete_kernel(cov):
    """In a fit with NaN, the complete rows' statistics are exactly those of
    the complete-data kernel on those rows (the split copies, nothing else)."""
    X, truth = mixture_data(200, 3, 2, seed=4)
    Xm = remove(X, "random", seed=3)
    params = kernels.make_gaussian_params(*init_params(truth, cov, 0)[0], cov)
    source = gm.MissingArraySource.from_array(Xm, np.empty(0))
    complete = ~np.isnan(Xm).any(axis=1)
    a = g.e_step(np.ascontiguousarray(Xm[complete]), np.empty(0), params)
    b = g.e_step(source.X_complete, source.w_complete, params)
    np.testing.assert_array_equal(a.sum_xx, b.sum_xx)
    stats = gm.GaussianMissingEM(cov, 1e-6).e_step(source, params)
    rest = gm.e_step(source.incomplete, params)
    np.testing.assert_array_equal(stats.sum_xx, (a + rest).sum_xx)


# ---------------------------------------------------------------------------
# EM properties
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("cov", COV_TYPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_observed_likelihood_never_decreases(cov, seed):
    X, _ = mixture_data(250, 4, 3, seed=seed)
    Xm = remove(X, "many-patterns" if seed % 2 else "random", seed=seed)
    model = fastem.GaussianMixture(
        3,
        covariance_type=cov,
        reg_covar=0.0,
        max_iter=40,
        tol=0.0,
        init_params="random",
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Xm)
    lb = np.array(model.lower_bounds_)
    assert np.all(np.diff(lb) >= -1e-10 * np.abs(lb[1:])), np.diff(lb).min()


@pytest.mark.parametrize("cov", COV_TYPES)
def test_thread_count_does_not_change_the_bits(cov):
    """Enough incomplete rows for several tasks, several patterns per task."""
    needs_threads(2)
    X, truth = mixture_data(12000, 3, 2, seed=5)
    Xm = remove(X, "many-patterns", seed=6)
    init, prec = init_params(truth, cov, seed=7)
    one = fit(Xm, cov, init, prec, 3, n_threads=1)
    two = fit(Xm, cov, init, prec, 3, n_threads=2)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(one, name), getattr(two, name))
    np.testing.assert_array_equal(one.lower_bounds_, two.lower_bounds_)
    d1 = one.sample_missing(Xm[:500], 2, random_state=0)
    two.n_threads = 2
    d2 = two.sample_missing(Xm[:500], 2, random_state=0)
    np.testing.assert_array_equal(d1, d2)


def test_integer_weights_equal_repeated_rows():
    X, truth = mixture_data(60, 3, 2, seed=12)
    Xm = remove(X, "random", seed=2)
    counts = np.random.RandomState(1).randint(0, 4, len(X))
    counts[:2] = 1
    init, prec = init_params(truth, "full", seed=3)
    weighted = fit(Xm, "full", init, prec, 10, sample_weight=counts)
    repeated = fit(np.repeat(Xm, counts, axis=0), "full", init, prec, 10)
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-10)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-10)
    np.testing.assert_allclose(weighted.weights_, repeated.weights_, rtol=1e-10)


def test_float32_with_nan_stays_close_to_float64():
    X, truth = mixture_data(300, 4, 2, seed=13)
    Xm = remove(X, "random", seed=1)
    init, prec = init_params(truth, "full", seed=2)
    m64 = fit(Xm, "full", init, prec, 10)
    m32 = fit(Xm.astype(np.float32), "full", init, prec, 10)
    np.testing.assert_allclose(m32.means_, m64.means_, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(m32.covariances_, m64.covariances_, rtol=1e-3, atol=1e-4)
    out = m32.impute(Xm.astype(np.float32))
    assert out.dtype == np.float32
    assert not np.isnan(out).any()


@pytest.mark.parametrize("cov", COV_TYPES)
def test_default_fit_with_nan_all_inits(cov):
    """Initialisation on column-mean-filled data, for every init method;
    fit_predict agrees with predict; warm start continues."""
    X, _ = mixture_data(200, 3, 3, seed=14)
    Xm = remove(X, "random", seed=3)
    for init in ("kmeans", "k-means++", "random", "random_from_data"):
        model = fastem.GaussianMixture(
            3, covariance_type=cov, init_params=init, random_state=0, max_iter=200
        )
        labels = model.fit_predict(Xm)
        np.testing.assert_array_equal(labels, model.predict(Xm))
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            assert np.isfinite(getattr(model, name)).all()
    before = Xm.copy()
    model = fastem.GaussianMixture(
        3, covariance_type=cov, warm_start=True, max_iter=5, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(Xm)
        first = model.lower_bound_
        model.fit(Xm)
    assert model.lower_bound_ >= first - 1e-12
    np.testing.assert_array_equal(Xm, before)  # input untouched
    assert np.isfinite(model.bic(Xm)) and np.isfinite(model.aic(Xm))


# ---------------------------------------------------------------------------
# Imputation and draws
# ---------------------------------------------------------------------------


def test_impute_all_missing_row_gets_the_mixture_mean():
    X, _ = mixture_data(200, 3, 2, seed=15)
    model = fastem.GaussianMixture(2, random_state=0).fit(remove(X, "random", 0))
    rows = np.array([[np.nan, np.nan, np.nan], [1.0, np.nan, 2.0]])
    out = model.impute(rows)
    np.testing.assert_allclose(out[0], model.weights_ @ model.means_, rtol=1e-12)
    assert out[1, 0] == 1.0 and out[1, 2] == 2.0
    draws = model.sample_missing(rows, 3, random_state=0)
    assert draws.shape == (3, 2, 3) and np.isfinite(draws).all()
    with pytest.raises(ValueError, match="X row 0"):
        model.predict(rows)


@pytest.mark.parametrize("cov", ["full", "tied", "diag"])
def test_draws_follow_the_conditional_distribution(cov):
    """One component: draws of the missing block have the conditional mean
    and covariance of the textbook formulas."""
    X, truth = mixture_data(500, 3, 1, seed=16)
    model = fastem.GaussianMixture(1, covariance_type=cov, random_state=0).fit(X)
    row = np.array([[0.5, np.nan, np.nan]]) + truth[1][0] * [1, 0, 0]
    draws = model.sample_missing(row, 20000, random_state=1)[:, 0, 1:]
    cov_full = full_covariances(model.covariances_, cov, 1, 3)[0]
    s_mo = cov_full[1:, :1]
    gain = s_mo / cov_full[0, 0]
    mean = model.means_[0, 1:] + gain[:, 0] * (row[0, 0] - model.means_[0, 0])
    ccov = cov_full[1:, 1:] - gain @ s_mo.T
    se = np.sqrt(np.diag(ccov).max() / len(draws))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=5 * se)
    np.testing.assert_allclose(np.cov(draws.T), ccov, atol=0.05 * np.abs(ccov).max())
    np.testing.assert_allclose(model.impute(row)[0, 1:], mean, rtol=1e-10)


def test_draws_mix_components_by_posterior():
    """Two components far apart in the missing coordinate and overlapping in
    the observed one: the share of draws near each matches the posterior."""
    rng = np.random.RandomState(17)
    X = np.vstack([rng.randn(400, 2) + [-10.0, -1.0], rng.randn(600, 2) + [10.0, 1.0]])
    model = fastem.GaussianMixture(2, random_state=0).fit(X)
    row = np.array([[np.nan, 0.2]])
    post = model.predict_proba(row)[0]
    assert 0.2 < post.min()
    draws = model.sample_missing(row, 20000, random_state=3)[:, 0, 0]
    nearest = np.abs(draws[:, None] - model.means_[None, :, 0]).argmin(axis=1)
    share = np.bincount(nearest, minlength=2) / len(draws)
    np.testing.assert_allclose(share, post, atol=0.02)
    assert np.mean(draws) == pytest.approx(model.impute(row)[0, 0], abs=0.3)


def test_sample_missing_copies_observed_values_and_is_seeded():
    X, _ = mixture_data(150, 3, 2, seed=18)
    Xm = remove(X, "random", 4)
    model = fastem.GaussianMixture(2, random_state=0).fit(Xm)
    a = model.sample_missing(Xm, 3, random_state=7)
    b = model.sample_missing(Xm, 3, random_state=np.random.RandomState(7))
    np.testing.assert_array_equal(a, b)
    obs = ~np.isnan(Xm)
    for draw in a:
        np.testing.assert_array_equal(draw[obs], Xm[obs])
        assert np.isfinite(draw).all()
    assert not np.array_equal(a[0], a[1])
    with pytest.raises(ValueError, match="n_draws"):
        model.sample_missing(Xm, 0)
    with pytest.raises(TypeError, match="n_draws"):
        model.sample_missing(Xm, 1.5)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def test_bad_input_is_rejected_before_any_kernel():
    X, _ = mixture_data(50, 3, 2, seed=19)
    model = fastem.GaussianMixture(2)
    bad = X.copy()
    bad[4, 1] = np.inf
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="infinite"):
        model.fit(bad)
    bad = X.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="X row 7 has every value missing"):
        model.fit(bad)
    bad = X.copy()
    bad[:, 2] = np.nan
    with pytest.raises(ValueError, match="column 2 has no observed value"):
        model.fit(bad)
    bad = X.copy()
    bad[::2, 1] = np.nan
    sw = np.where(np.isnan(bad[:, 1]), 1.0, 0.0)
    with pytest.raises(ValueError, match=r"column 1 .*positive sample_weight"):
        model.fit(bad, sample_weight=sw)
    with pytest.raises(fastem.NotFittedError):
        model.impute(X)
    model.fit(X)
    with pytest.raises(ValueError, match="features"):
        model.impute(X[:, :2])
    with pytest.raises(ValueError, match="infinite"):
        model.score_samples(np.where(X > 3, np.inf, X))


def test_low_level_stats_still_reject_nan():
    X, truth = mixture_data(40, 2, 2, seed=20)
    params = kernels.make_gaussian_params(*init_params(truth, "full", 0)[0], "full")
    with pytest.raises(ValueError, match="NaN"):
        kernels.gaussian_stats(remove(X, "random", 0), params)


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------


def test_missing_kernels_compile_once_per_dtype():
    from fastem._kernels import gaussian_missing as km

    X, _ = mixture_data(100, 3, 2, seed=22)
    Xm = remove(X, "random", 1)
    for cov in COV_TYPES:
        model = fastem.GaussianMixture(
            2, covariance_type=cov, random_state=0, max_iter=3
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(Xm).impute(Xm)
            model.fit(Xm.astype(np.float32)).impute(Xm.astype(np.float32))
        # Read-only parameters (as a loaded or shared model may hold).
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            getattr(model, name).setflags(write=False)
        model.impute(Xm)
        model.score_samples(Xm)
        model.sample_missing(Xm, 1, random_state=0)
        kernels.gaussian_stats_missing(Xm, model._params)
    for kernel in (
        km.estep_missing_full,
        km.estep_missing_tied,
        km.estep_missing_diag,
        km.rows_missing_full,
        km.rows_missing_tied,
        km.rows_missing_diag,
    ):
        assert len(kernel.signatures) == 1, (kernel, kernel.signatures)


def test_mixed_pattern_blocks_match_one_pattern_at_a_time():
    """The full kernel walks blocks that span many patterns; computing each
    pattern's rows alone gives the same statistics up to rounding."""
    X, truth = mixture_data(600, 5, 3, seed=23)
    Xm = remove(X, "many-patterns", seed=2)
    params = kernels.make_gaussian_params(*init_params(truth, "full", 0)[0], "full")
    inc = gm.MissingArraySource.from_array(Xm, np.empty(0)).incomplete
    assert inc.n_patterns > 20
    total = gm.e_step(inc, params)
    parts = None
    for p in range(inc.n_patterns):
        lo, hi = inc.starts[p], inc.starts[p + 1]
        one = gm.group_incomplete(
            inc.X[lo:hi], np.empty(0), np.arange(hi - lo), np.isnan(inc.X[lo:hi])
        )
        stats = gm.e_step(one, params)
        parts = stats if parts is None else parts + stats
    np.testing.assert_allclose(total.nk, parts.nk, rtol=1e-12)
    np.testing.assert_allclose(total.sum_x, parts.sum_x, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(total.sum_xx, parts.sum_xx, rtol=1e-11, atol=1e-10)
    assert total.log_likelihood == pytest.approx(parts.log_likelihood, rel=1e-12)


def test_complete_path_untouched_by_split():
    """GaussianEM over an ArraySource is what a NaN-free fit runs."""
    X, truth = mixture_data(100, 2, 2, seed=24)
    params = kernels.make_gaussian_params(*init_params(truth, "diag", 0)[0], "diag")
    a = GaussianEM("diag", 1e-6).e_step(ArraySource(X, np.empty(0)), params)
    b = kernels.gaussian_stats(X, params)
    np.testing.assert_array_equal(a.sum_xx, b.sum_xx)


@pytest.mark.parametrize("cov", COV_TYPES)
def test_empty_component_is_reseeded_with_missing_values(cov):
    """A component that gets no responsibility is re-seeded at the
    worst-explained row (scored on its observed values) as without NaN."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(100, 3) - 3, rng.randn(100, 3) + 3])
    Xm = remove(X, "random", seed=1)
    model = fastem.GaussianMixture(
        3,
        covariance_type=cov,
        means_init=[[-3, -3, -3], [3, 3, 3], [1e4, 1e4, 1e4]],
        max_iter=20,
        random_state=0,
    )
    with pytest.warns(fastem.DegenerateComponentWarning):
        model.fit(Xm)
    assert np.all(model.weights_ > 0.01)
    assert np.abs(model.means_).max() < 10
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.isfinite(getattr(model, name)).all()


@pytest.mark.parametrize("d", [3, 12, 20, 40, 70])
def test_rows_grouped_by_pattern(d):
    """Every incomplete row once, grouped by its exact NaN pattern, original
    order kept within a pattern; the index lists observed then missing."""
    from fastem._patterns import split_rows

    rng = np.random.RandomState(d)
    X = rng.randn(400, d)
    X[rng.rand(400, d) < 0.3 / d * 3] = np.nan
    X[5] = np.nan
    X[5, 0] = 1.0
    complete, inc = split_rows(X, np.empty(0))
    nan = np.isnan(X)
    np.testing.assert_array_equal(complete, np.flatnonzero(~nan.any(axis=1)))
    assert sorted(inc.rows) == list(np.flatnonzero(nan.any(axis=1)))
    np.testing.assert_array_equal(inc.X, X[inc.rows])
    seen = set()
    for p in range(inc.n_patterns):
        rows = inc.rows[inc.starts[p] : inc.starts[p + 1]]
        assert len(rows) and np.all(np.diff(rows) > 0)
        key = nan[rows[0]].tobytes()
        assert key not in seen
        seen.add(key)
        assert all(nan[r].tobytes() == key for r in rows)
        o = inc.n_observed[p]
        obs, mis = inc.index[p, :o], inc.index[p, o:]
        np.testing.assert_array_equal(obs, np.flatnonzero(~nan[rows[0]]))
        np.testing.assert_array_equal(mis, np.flatnonzero(nan[rows[0]]))


@pytest.mark.parametrize("cov", COV_TYPES)
def test_low_level_missing_stats_chunked_loop(cov):
    """kernels.gaussian_stats_missing: exactly gaussian_stats without NaN;
    summed over chunks, an EM loop reproduces GaussianMixture.fit."""
    X, truth = mixture_data(240, 3, 2, seed=25)
    init, prec = init_params(truth, cov, seed=5)
    params = kernels.make_gaussian_params(*init, cov)
    a = kernels.gaussian_stats_missing(X, params)
    b = kernels.gaussian_stats(X, params)
    np.testing.assert_array_equal(a.sum_xx, b.sum_xx)
    assert a.log_likelihood == b.log_likelihood
    Xm = remove(X, "random", seed=6)
    sw = np.random.RandomState(2).uniform(0.5, 2.0, len(X))
    for _ in range(5):
        parts = [
            kernels.gaussian_stats_missing(Xm[i : i + 80], params, sw[i : i + 80])
            for i in range(0, len(X), 80)
        ]
        stats = parts[0] + parts[1] + parts[2]
        params, _ = kernels.gaussian_mstep(stats)
    model = fit(Xm, cov, init, prec, 5, sample_weight=sw)
    np.testing.assert_allclose(params.means, model.means_, rtol=1e-12)
    np.testing.assert_allclose(params.covariances, model.covariances_, rtol=1e-11)
    with pytest.raises(ValueError, match="X row 0"):
        kernels.gaussian_stats_missing(np.full((2, 3), np.nan), params)
