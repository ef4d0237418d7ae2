"""The public low-level API (fastem.kernels) against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from _reference import (
    COVARIANCE_TYPES,
    Mixture,
    e_step,
    em_step,
    initial_parameters,
    log_joint,
    m_step,
    mixture_from_precisions,
    predict_proba,
    score_samples,
)
from _testing import assert_close, assert_labels_agree

import fastem
from fastem.families.gaussian_fit import TiedScatterMemo
from fastem.kernels import (
    GaussianParams,
    GaussianStats,
    gaussian_mstep,
    gaussian_per_row,
    gaussian_stats,
    make_gaussian_params,
)
from fastem.sources import ArraySource

K = 3
# Sums in a different order: measured ~1e-15 (float64 data) and ~4e-8
# (float32 data, whose blocks are computed in single precision).
RTOL_SUM = {np.float64: 1e-12, np.float32: 1e-5}
RTOL_STEP = 1e-10
# Per-row outputs against the float64 reference: measured ~1e-14 (float64)
# and ~2e-7 (float32, single-precision densities).
RTOL_PER_ROW = {np.float64: 1e-10, np.float32: 1e-5}


@pytest.fixture(scope="module")
def problem(make_mixture):
    X, _ = make_mixture(700, 3, K, seed=61, separation=3.0)
    sw = np.random.RandomState(62).uniform(0.0, 2.5, X.shape[0])
    return X, sw


def _start(X, cov, sw=None):
    """A reference mixture and the same parameters as GaussianParams."""
    inits = initial_parameters(X, K, cov, seed=63, sample_weight=sw)
    ref = mixture_from_precisions(
        inits["weights_init"], inits["means_init"], inits["precisions_init"], cov
    )
    params = make_gaussian_params(ref.weights, ref.means, ref.covariances, cov)
    return ref, params


def test_block_buffers_start_on_a_cache_line():
    """Block scratch is 64-byte aligned for every dtype and shape (numba's own
    ``np.empty`` guarantees 32 bytes, which splits AVX-512 accesses), and is
    a writable C-contiguous array of the asked shape, never aliasing another."""
    from numba import njit

    from fastem._kernels._blocks import aligned_rows

    @njit
    def buffers(rows, cols, dt):
        a = aligned_rows(rows, cols, dt)
        b = aligned_rows(1, cols, dt)[0]
        a[:] = 1
        b[:] = 2
        return a, b

    for dtype in (np.float64, np.float32, np.int64):
        for rows, cols in [(1, 1), (3, 16), (5, 48), (16, 256), (7, 512)]:
            # Many allocations, so that malloc hands out both alignments.
            for _ in range(8):
                a, b = buffers(rows, cols, dtype)
                assert a.shape == (rows, cols) and b.shape == (cols,)
                assert a.dtype == dtype and a.flags.c_contiguous
                assert a.ctypes.data % 64 == 0 and b.ctypes.data % 64 == 0
                assert (a == 1).all() and (b == 2).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_responsibilities_are_weighted_posteriors_without_subnormals(dtype, weighted):
    """The block responsibilities are the normalised posteriors (numpy
    reference) times the row weights.  In float32, relative weights
    ``exp(L - max L)`` below 2^-92 are exactly zero, so nothing downstream
    computes with subnormal numbers; in float64 only those below e^-708 (the
    exponential's cut-off).  The log-likelihood is unchanged."""
    from numba import njit

    from fastem._kernels._blocks import responsibilities

    @njit
    def run(L, nb, sw, resp, acc):
        rowmax = np.empty(L.shape[1], L.dtype)
        total = np.empty(L.shape[1], L.dtype)
        responsibilities(L, nb, sw, 0, rowmax, resp, total, acc)

    floor = 2.0**-92 if dtype == np.float32 else np.exp(-708.0)
    tiny = np.finfo(dtype).tiny
    rng = np.random.default_rng(0)
    K, B = 5, 64
    L = rng.normal(scale=2.0, size=(K, B))
    # Gaps to the row maximum that give relative weights on both sides of
    # the float32 floor, and in float32's subnormal range without it.
    gaps = np.log([2.0**-95, 2.0**-89, 2.0**-125, 0.5])
    L[1, :16] = L[:, :16].max(axis=0) + 1.0
    L[2, :16] = L[1, :16] + np.repeat(gaps, 4)
    L = L.astype(dtype)
    sw = rng.uniform(0.5, 2.0, B) if weighted else np.empty(0)
    resp = np.empty((K, B), dtype)
    acc = np.zeros(3)
    run(L, B, sw, resp, acc)

    L64 = L.astype(np.float64)
    rel = np.exp(L64 - L64.max(axis=0))
    post = rel / rel.sum(axis=0)
    w = sw if weighted else np.ones(B)
    expected = np.where(rel >= floor, post * w, 0.0)
    assert_close(resp, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
    assert not ((resp > 0) & (resp < tiny)).any()
    if dtype == np.float32:
        assert (resp[2, :4] == 0).all() and (resp[2, 4:8] > 0).all()
        assert (resp[2, 8:12] == 0).all()
    else:
        assert (resp[2, :12] > 0).all()
    log_lik = np.log(rel.sum(axis=0)) + L64.max(axis=0)
    assert acc[0] == pytest.approx(float(w @ log_lik), rel=1e-6)


@pytest.mark.parametrize(
    "dtype, block_dtype",
    [
        (np.float64, np.float64),
        (np.float32, np.float32),
        (np.float32, np.float64),
        (np.int64, np.float64),
    ],
)
def test_rows_load_into_block_columns(dtype, block_dtype):
    """The block load (8 x 8 register tiles, sixteen rows or a last eight at a
    time, then the leftover features and rows) equals numpy's transpose of ``X[r0:r0 + nb] - center`` exactly,
    for every way D and nb split into tiles, and writes no other column.
    Rows are converted to the block's dtype before centring (float32 rows in
    a float64 block are centred in float64)."""
    from numba import njit

    from fastem._kernels._blocks import load_rows, load_rows_centered

    # The helpers have no Python wrapper (fastem/_config.py): call them from
    # jitted code.
    @njit
    def load_centered(X, r0, nb, center, xt):
        load_rows_centered(X, r0, nb, center, xt)

    @njit
    def load(X, r0, nb, xt):
        load_rows(X, r0, nb, xt)

    rng = np.random.default_rng(64)
    center_dtype = dtype if np.issubdtype(dtype, np.floating) else block_dtype
    for D in (1, 2, 3, 4, 7, 8, 9, 16, 21, 64):
        X = (rng.standard_normal((90, D)) * 100).astype(dtype)
        center = rng.standard_normal(D).astype(center_dtype)
        for r0, nb in [
            (0, 0),
            (3, 1),
            (5, 8),
            (0, 17),
            (2, 24),
            (7, 41),
            (11, 64),
            (26, 64),
        ]:
            rows = X[r0 : r0 + nb].astype(block_dtype)
            xt = np.full((D, 64), np.nan, block_dtype)
            load_centered(X, r0, nb, center, xt)
            assert np.array_equal(xt[:, :nb], (rows - center.astype(block_dtype)).T)
            assert np.isnan(xt[:, nb:]).all()
            xt = np.full((D, 64), np.nan, block_dtype)
            load(X, r0, nb, xt)
            assert np.array_equal(xt[:, :nb], rows.T)
            assert np.isnan(xt[:, nb:]).all()


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_statistics_of_halves_add_up(problem, cov, dtype, weighted):
    X, sw = problem
    X = X.astype(dtype)
    w = sw if weighted else None
    _, params = _start(X.astype(np.float64), cov)
    cut = 311
    whole = gaussian_stats(X, params, w)
    first = gaussian_stats(X[:cut], params, None if w is None else w[:cut])
    second = gaussian_stats(X[cut:], params, None if w is None else w[cut:])
    total = first + second
    assert isinstance(total, GaussianStats)
    for name in ("nk", "sum_x", "sum_xx", "shift"):
        assert_close(getattr(total, name), getattr(whole, name), RTOL_SUM[dtype], name)
    assert abs(total.log_likelihood - whole.log_likelihood) <= RTOL_SUM[dtype] * abs(
        whole.log_likelihood
    )
    expected_weight = X.shape[0] if w is None else w.sum()
    np.testing.assert_allclose(total.total_weight, expected_weight, rtol=1e-13)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_statistics_around_different_shifts_add_after_reshifting(problem, cov):
    """Halves of the data whose statistics were accumulated around different
    shifts add up to the statistics of the whole: the sum re-expresses the
    second around the first's shift (x - s1 = (x - s2) + (s2 - s1))."""
    X, _ = problem
    _, a = _start(X, cov)
    moved = a.means + np.array([1.0, -2.0, 0.5])[: a.means.shape[1]]
    b = make_gaussian_params(a.weights, moved, a.covariances, cov)
    half = X.shape[0] // 2
    first, second = gaussian_stats(X[:half], a), gaussian_stats(X[half:], b)
    assert not np.array_equal(first.shift, second.shift)
    # Responsibilities differ between a and b, so compare with the statistics
    # of each half re-expressed around a common shift by hand.
    total = first + second
    delta = second.shift - first.shift
    np.testing.assert_allclose(total.nk, first.nk + second.nk, rtol=1e-12)
    np.testing.assert_allclose(
        total.sum_x, first.sum_x + second.sum_x + second.nk[:, None] * delta, rtol=1e-10
    )
    m_total, _ = gaussian_mstep(total)
    resum, _ = gaussian_mstep(second.reshift(first.shift) + first)
    np.testing.assert_allclose(m_total.means, resum.means, rtol=1e-12)
    np.testing.assert_allclose(m_total.covariances, resum.covariances, rtol=1e-10)
    # Statistics of different covariance types never add.
    other = "diag" if cov == "spherical" else "spherical"
    unit = np.ones((K, X.shape[1])) if other == "diag" else np.ones(K)
    other_stats = gaussian_stats(
        X, make_gaussian_params(a.weights, a.means, unit, other)
    )
    with pytest.raises(ValueError, match="covariance types"):
        first + other_stats


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_statistics_match_their_definition(problem, cov):
    """``nk``, ``sum_x``, ``sum_xx`` and the log-likelihood as documented in
    GaussianStats, from reference responsibilities."""
    X, sw = problem
    ref, params = _start(X, cov, sw)
    stats = gaussian_stats(X, params, sw)
    resp, mean_loglik = e_step(X, ref, sw)
    r = resp * sw[:, None]
    assert_close(stats.nk, r.sum(axis=0), 1e-12, "nk")
    # sum_x is around the shift; add the shift back to get sum_i r_ik x_i.
    raw = stats.sum_x + stats.nk[:, None] * stats.shift
    assert_close(raw, r.T @ X, 1e-12, "sum_x")
    if cov == "tied":
        c = stats.shift[0]
        np.testing.assert_array_equal(stats.shift, np.broadcast_to(c, (K, 3)))
        assert_close(c, params.weights @ params.means, 1e-14, "mixture mean")
        expected = ((X - c) * sw[:, None]).T @ (X - c)
    else:
        # The shift is the E-step's means (up to rounding of how the kernel
        # arguments are formed); the sums are around the shift it reports.
        assert_close(stats.shift, params.means, 1e-14, "shift")
        m = stats.shift
        expected = np.array(
            [(r[:, k, None] * (X - m[k])).T @ (X - m[k]) for k in range(K)]
        )
        if cov in ("diag", "spherical"):
            expected = np.diagonal(expected, axis1=1, axis2=2)
        if cov == "spherical":
            expected = expected.sum(axis=1)
    assert_close(stats.sum_xx, expected, 1e-12, "sum_xx")
    np.testing.assert_allclose(stats.total_weight, sw.sum(), rtol=1e-13)
    np.testing.assert_allclose(
        stats.log_likelihood / stats.total_weight, mean_loglik, rtol=1e-12
    )


def _reference_joint_and_entropy(X, mixture, sw):
    """``sum_i w_i sum_k r_ik log p(x_i, k)`` and ``-sum_i w_i sum_k r_ik log
    r_ik`` from the reference's responsibilities and log-densities."""
    resp, _ = e_step(X, mixture, sw)
    joint = float(np.sum(sw[:, None] * resp * log_joint(X, mixture)))
    logs = np.log(np.where(resp > 0, resp, 1.0))
    return joint, -float(np.sum(sw[:, None] * resp * logs))


@pytest.mark.parametrize("n_features", [2, 9])
@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_expected_log_joint_matches_its_definition(
    make_mixture, cov, n_features, dtype
):
    """The Gaussian E-steps derive ``expected_log_joint`` from their second
    moments instead of summing ``r L`` row by row; checked against the
    reference with 2 and 9 features (spherical mixtures with few features run
    the diag kernel, full ones the small-D kernel), and for tied also on a
    later pass that reuses the remembered total scatter."""
    X, _ = make_mixture(900, n_features, K, seed=67, separation=3.0)
    sw = np.random.RandomState(68).uniform(0.0, 2.5, X.shape[0])
    ref, params = _start(X, cov, sw)
    Xd = X.astype(dtype)
    # float32 blocks round each log-density to single precision.
    rtol = 1e-11 if dtype == np.float64 else 1e-6
    joint, entropy = _reference_joint_and_entropy(Xd, ref, sw)
    stats = gaussian_stats(Xd, params, sw)
    assert stats.expected_log_joint == pytest.approx(joint, rel=rtol)
    if dtype == np.float64:
        got = stats.log_likelihood - stats.expected_log_joint
        assert got == pytest.approx(entropy, rel=1e-8)
    if cov == "tied":
        memo = TiedScatterMemo()
        source = ArraySource(Xd, sw)
        memo.e_step(source, params)
        moved = Mixture(cov, ref.weights, ref.means + 0.3, ref.covariances)
        later = memo.e_step(
            source,
            make_gaussian_params(moved.weights, moved.means, moved.covariances, cov),
        )
        joint, _ = _reference_joint_and_entropy(Xd, moved, sw)
        assert later.expected_log_joint == pytest.approx(joint, rel=rtol)


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 11])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_full_statistics_and_log_densities_for_every_dimension(
    make_mixture, n_features, dtype
):
    """Full covariances take a written-out path for D <= 3 (the triangular
    product and the scatter of a row in registers) and the general sweeps
    above: both give the log-densities and the statistics of their
    definition, from reference responsibilities (600 rows: two whole blocks
    and a partial one; weighted)."""
    X, _ = make_mixture(600, n_features, K, seed=70 + n_features, separation=2.0)
    X = X + 50.0  # rows far from the origin; the kernels centre them
    sw = np.random.RandomState(71).uniform(0.0, 2.0, X.shape[0])
    ref, params = _start(X, "full", sw)
    Xd = X.astype(dtype)
    Xr = Xd.astype(np.float64)
    stats = gaussian_stats(Xd, params, sw)
    resp, mean_loglik = e_step(Xr, ref, sw)
    r = resp * sw[:, None]
    tol = RTOL_SUM[dtype] * (10 if dtype == np.float32 else 1)
    assert_close(stats.nk, r.sum(axis=0), tol, "nk")
    m = stats.shift
    assert_close(stats.sum_x + stats.nk[:, None] * m, r.T @ Xr, tol, "sum_x")
    expected = np.array(
        [(r[:, k, None] * (Xr - m[k])).T @ (Xr - m[k]) for k in range(K)]
    )
    np.testing.assert_allclose(
        stats.sum_xx, expected, rtol=tol, atol=tol * np.abs(expected).max()
    )
    np.testing.assert_allclose(
        stats.log_likelihood / stats.total_weight, mean_loglik, rtol=tol
    )
    logp, _, _ = gaussian_per_row(Xd, params, log_likelihood=True)
    assert_close(logp, score_samples(Xr, ref), RTOL_PER_ROW[dtype])


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_mstep_of_stats_is_one_reference_em_step(problem, cov, weighted):
    X, sw = problem
    w = sw if weighted else None
    ref, params = _start(X, cov, w)
    for _ in range(3):  # a few steps, each compared from the same start
        stats = gaussian_stats(X, params, w)
        new, degenerate = gaussian_mstep(stats, reg_covar=1e-6)
        ref_new, ref_bound = em_step(X, ref, w, reg_covar=1e-6)
        assert degenerate == []
        assert isinstance(new, GaussianParams)
        assert new.covariance_type == cov
        assert_close(new.weights, ref_new.weights, RTOL_STEP, "weights")
        assert_close(new.means, ref_new.means, RTOL_STEP, "means")
        assert_close(new.covariances, ref_new.covariances, RTOL_STEP, "covariances")
        assert_close(
            new.precisions_cholesky, ref_new.precisions_cholesky(), RTOL_STEP, "U"
        )
        assert_close(new.precisions(), ref_new.precisions(), RTOL_STEP, "precisions")
        np.testing.assert_allclose(
            stats.log_likelihood / stats.total_weight, ref_bound, rtol=1e-12
        )
        ref, params = ref_new, new


def test_mstep_reports_an_empty_component(problem):
    X, _ = problem
    ref, _ = _start(X, "diag")
    means = ref.means.copy()
    means[1] = 1e4  # nothing is near: zero responsibility
    params = make_gaussian_params(ref.weights, means, ref.covariances, "diag")
    stats = gaussian_stats(X, params)
    assert stats.nk[1] == 0.0
    new, degenerate = gaussian_mstep(stats)
    assert degenerate == [1]
    # The others are the reference M-step on the same responsibilities.
    resp, _ = e_step(
        X, mixture_from_precisions(ref.weights, means, 1 / ref.covariances, "diag")
    )
    expected = m_step(X, resp, "diag")
    assert_close(new.means[[0, 2]], expected.means[[0, 2]], RTOL_STEP)


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_per_row_matches_reference_and_estimator(problem, cov, dtype):
    X, _ = problem
    Xd = X.astype(dtype)
    model = fastem.GaussianMixture(K, covariance_type=cov, random_state=0).fit(X)
    params = make_gaussian_params(model.weights_, model.means_, model.covariances_, cov)
    logp, resp, labels = gaussian_per_row(
        Xd, params, log_likelihood=True, responsibilities=True, labels=True
    )
    # Same parameters (up to recomputing the Cholesky factors) and kernel.
    assert_close(logp, model.score_samples(Xd), 1e-12)
    np.testing.assert_allclose(resp, model.predict_proba(Xd), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(labels, model.predict(Xd))
    ref = mixture_from_precisions(model.weights_, model.means_, model.precisions_, cov)
    Xr = Xd.astype(np.float64)
    rtol = RTOL_PER_ROW[dtype]
    assert_close(logp, score_samples(Xr, ref), rtol)
    np.testing.assert_allclose(resp, predict_proba(Xr, ref), rtol=0, atol=10 * rtol)
    assert_labels_agree(labels, predict_proba(Xr, ref), tie=10 * rtol)
    # Only what is asked for is computed.
    only = gaussian_per_row(Xd, params)
    assert only[1] is None and only[2] is None
    np.testing.assert_array_equal(only[0], logp)


@pytest.mark.parametrize("n_components", [8, 13, 16])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_posteriors_of_many_components_match_reference(problem, n_components, dtype):
    """Posteriors are written in 8 x 8 tiles of components and rows, then the
    leftovers: with 8, 13 and 16 components and 700 rows (blocks of 256, the
    last of 188 = 23 x 8 + 4 rows) every entry matches the reference."""
    X, _ = problem
    inits = initial_parameters(X, n_components, "diag", seed=65)
    ref = mixture_from_precisions(
        inits["weights_init"], inits["means_init"], inits["precisions_init"], "diag"
    )
    params = make_gaussian_params(ref.weights, ref.means, ref.covariances, "diag")
    Xd = X.astype(dtype)
    logp, resp, _ = gaussian_per_row(Xd, params, responsibilities=True)
    expected = predict_proba(Xd.astype(np.float64), ref)
    rtol = RTOL_PER_ROW[dtype]
    np.testing.assert_allclose(resp, expected, rtol=0, atol=10 * rtol)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, rtol=0, atol=10 * rtol)
    assert_close(logp, score_samples(Xd.astype(np.float64), ref), rtol)


def test_per_row_with_a_zero_weight_component(problem):
    """log(0) = -inf must propagate (fast-math without nnan/ninf)."""
    X, _ = problem
    ref, _ = _start(X, "full")
    weights = np.array([0.5, 0.5, 0.0])
    params = make_gaussian_params(weights, ref.means, ref.covariances, "full")
    logp, resp, labels = gaussian_per_row(X, params, responsibilities=True, labels=True)
    assert np.all(resp[:, 2] == 0.0)
    assert not np.any(labels == 2)
    ref.weights = weights
    assert_close(logp, score_samples(X, ref), 1e-10)
    assert np.isneginf(log_joint(X[:1], ref)[0, 2])


def test_make_gaussian_params_validates():
    means = np.zeros((2, 2))
    covs = np.stack([np.eye(2)] * 2)
    with pytest.raises(ValueError, match="covariance_type"):
        make_gaussian_params([0.5, 0.5], means, covs, "ful")
    with pytest.raises(ValueError, match="weights"):
        make_gaussian_params([0.5, 0.6], means, covs, "full")
    with pytest.raises(ValueError, match="weights"):
        make_gaussian_params([0.5, 0.5, 0.0], means, covs, "full")
    with pytest.raises(ValueError, match="covariances"):
        make_gaussian_params([0.5, 0.5], means, np.eye(2), "full")
    bad = covs.copy()
    bad[1] = [[1.0, 2.0], [2.0, 1.0]]
    with pytest.raises(ValueError, match="not positive definite"):
        make_gaussian_params([0.5, 0.5], means, bad, "full")
    with pytest.raises(ValueError, match="means"):
        make_gaussian_params([0.5, 0.5], np.zeros(2), covs, "full")


def test_low_level_functions_validate(problem):
    X, sw = problem
    _, params = _start(X, "diag")
    with pytest.raises(ValueError, match="X has 2 features"):
        gaussian_stats(X[:, :2], params)
    with pytest.raises(ValueError, match="sample_weight"):
        gaussian_stats(X, params, sw[:-1])
    with pytest.raises(ValueError, match="X contains NaN"):
        gaussian_stats(np.where(X > 2, np.nan, X), params)
    with pytest.raises(TypeError, match="params"):
        gaussian_stats(X, {"weights": params.weights})
    with pytest.raises(TypeError, match="stats"):
        gaussian_mstep(params)
    with pytest.raises(ValueError, match="X has 4 features"):
        gaussian_per_row(np.zeros((3, 4)), params)


def test_low_level_functions_do_not_modify_inputs(problem):
    X, sw = problem
    X32 = np.asfortranarray(X.astype(np.float32))
    _, params = _start(X, "full")
    keep = [X32.copy(order="A"), sw.copy()] + [
        np.copy(a)
        for a in (
            params.weights,
            params.means,
            params.covariances,
            params.precisions_cholesky,
        )
    ]
    stats = gaussian_stats(X32, params, sw)
    snapshot = [np.copy(a) for a in (stats.nk, stats.sum_x, stats.sum_xx)]
    gaussian_mstep(stats)
    gaussian_per_row(X32, params, responsibilities=True, labels=True)
    after = [
        X32,
        sw,
        params.weights,
        params.means,
        params.covariances,
        params.precisions_cholesky,
    ]
    for before, now in zip(keep, after, strict=True):
        np.testing.assert_array_equal(before, now)
    for before, now in zip(
        snapshot, (stats.nk, stats.sum_x, stats.sum_xx), strict=True
    ):
        np.testing.assert_array_equal(before, now)


def _in_place_loop(scalar_function):
    """A compiled fast-math loop ``v[i] = scalar_function(v[i])`` over a 1-D
    array, the way the kernels inline the vectorised elementary functions."""
    from numba import njit

    @njit(fastmath=True)
    def apply(v):
        for i in range(v.shape[0]):
            v[i] = scalar_function(v[i])

    return apply


@pytest.mark.parametrize("nb", [192, 133])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_exponentials_match_numpy(dtype, nb):
    """shifted_exponentials against numpy: the row maximum exactly, the
    exponentials within an ulp (float64; float32: 2 ulp) on [-708, 0]
    (float32: [-87, 0]), exactly 0 below that and for rows whose every
    log-density is -inf, the sums, and nothing written past row nb (133:
    a partial last vector of rows)."""
    from numba import njit

    from fastem._kernels._blocks import aligned_rows
    from fastem._kernels._exp_block import shifted_exponentials

    @njit
    def run(L, nb, rowmax, E, total):
        shifted_exponentials(L, nb, rowmax, E, total)

    K, B = 7, 192
    lowest = -708.0 if dtype == np.float64 else -87.0
    rng = np.random.RandomState(7)
    L = aligned_rows(K, B, dtype)
    L[:] = rng.uniform(lowest - 40.0, 0.0, (K, B)) + rng.uniform(-5, 5, B)
    L[:, :24] = rng.uniform(-3.0, 3.0, (K, 24))  # overlapping components
    L[2, 30:40] = -np.inf
    L[:, 50] = -np.inf
    L[:, 60] = [lowest + 1.0, 0.0, lowest - 1.0, -np.inf, -0.5, -1e-300, -20.0]
    before = L.copy()
    E = aligned_rows(K, B, dtype)
    rowmax = aligned_rows(1, B, dtype)[0]
    total = aligned_rows(1, B, dtype)[0]
    for out in (E, rowmax, total):
        out[...] = 123.0
    run(L, nb, rowmax, E, total)

    np.testing.assert_array_equal(L, before)
    expected_max = L[:, :nb].max(axis=0)
    np.testing.assert_array_equal(rowmax[:nb], expected_max)
    with np.errstate(invalid="ignore"):
        # The differences are rounded to the dtype before exponentiating.
        x = (L[:, :nb] - expected_max).astype(np.float64)
    reference = np.exp(x)
    reference[~(x >= lowest)] = 0.0  # NaN (-inf - -inf) included
    got = E[:, :nb].astype(np.float64)
    assert np.all(got[reference == 0.0] == 0.0)
    normal = reference >= np.finfo(dtype).tiny
    ulp = np.spacing(reference.astype(dtype)).astype(np.float64)
    ulps = np.abs(got - reference)[normal] / ulp[normal]
    assert ulps.max() <= (1.0 if dtype == np.float64 else 2.0)
    assert normal[:, 60].sum() == 5 and got[0, 60] > 0.0 and got[2, 60] == 0.0
    assert np.all(E[:, 50] == 0.0) and rowmax[50] == -np.inf and total[50] == 0.0
    np.testing.assert_allclose(
        total[:nb], got.sum(axis=0), rtol=8 * np.finfo(dtype).eps
    )
    assert np.all(E[:, nb:] == 123.0)
    assert np.all(rowmax[nb:] == 123.0) and np.all(total[nb:] == 123.0)


def test_vectorised_reciprocal_is_accurate():
    """reciprocal against numpy's division, inlined into a fast-math loop as
    in the kernels: within 1 ulp in float64 over float32's normal range
    (the sums of the responsibilities lie in [1, K]), and the float32
    division itself in float32."""
    from fastem._kernels._math import reciprocal

    reciprocal_array = _in_place_loop(reciprocal)

    rng = np.random.RandomState(6)
    v = np.concatenate(
        [
            rng.uniform(1.0, 64.0, 20000),
            np.exp(rng.uniform(-80.0, 80.0, 20000)),
            1.0 + np.arange(1000) * np.spacing(1.0),
            np.arange(1.0, 65.0),
            [np.float32(np.finfo(np.float32).tiny) * 4.0, 3.0e38],
        ]
    )
    out = v.copy()
    reciprocal_array(out)
    ref = 1.0 / v
    assert (np.abs(out - ref) / np.spacing(ref)).max() <= 1.0

    v32 = v[v < 3.0e38].astype(np.float32)
    out32 = v32.copy()
    reciprocal_array(out32)
    assert out32.dtype == np.float32
    np.testing.assert_array_equal(out32, np.float32(1.0) / v32)


def test_vectorised_log_is_accurate():
    """log_simd against numpy, inlined into a fast-math loop as in the
    kernels: within 1 ulp from subnormal numbers to the largest float64,
    next to 1, and on the range of the log-sum-exp's argument ``[1, K]``;
    numpy's values at 0, infinity, negative numbers and NaN."""
    from numba import njit

    from fastem._kernels._math import log_simd

    log_array = _in_place_loop(log_simd)

    rng = np.random.RandomState(6)
    v = np.concatenate(
        [
            10.0 ** rng.uniform(-307.5, 308.2, 20000),
            10.0 ** rng.uniform(-323.3, -308.0, 2000),
            1.0 + rng.choice([-1, 1], 5000) * 10.0 ** rng.uniform(-16, -1, 5000),
            rng.uniform(1.0, 1000.0, 5000),
            [5e-324, 2.2250738585072014e-308, 0.5, 2.0, np.sqrt(0.5), np.sqrt(2)],
            [np.nextafter(1.0, 2.0), np.nextafter(1.0, 0.0), np.finfo(float).max],
        ]
    )
    out = v.copy()
    log_array(out)
    ref = np.log(v)
    ulps = np.abs(out - ref) / np.spacing(np.abs(ref))
    assert ulps.max() <= 1.0

    special = np.array([0.0, -0.0, np.inf, -np.inf, -1.0, np.nan, 1.0])
    out = special.copy()
    log_array(out)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(out, np.log(special))

    @njit(fastmath=True)
    def log_into(v, out):
        for i in range(v.shape[0]):
            out[i] = log_simd(v[i])

    v32 = rng.uniform(1.0, 64.0, 1000).astype(np.float32)
    out = np.empty(v32.shape[0])
    log_into(v32, out)  # float32 arguments are converted, not reinterpreted
    ref = np.log(v32.astype(np.float64))
    assert (np.abs(out - ref) / np.spacing(ref)).max() <= 1.0


@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wide_data_over_several_blocks(make_mixture, cov, dtype):
    """37 features (short blocks, feature loops with a remainder after the
    four-feature sweeps) and a partial last block: statistics and per-row
    outputs still match their definitions."""
    X, _ = make_mixture(1100, 37, K, seed=71, separation=4.0)
    sw = np.random.RandomState(72).uniform(0.0, 2.0, X.shape[0])
    ref, params = _start(X, cov, sw)
    Xd = X.astype(dtype)
    Xr = Xd.astype(np.float64)
    stats = gaussian_stats(Xd, params, sw)
    resp, _ = e_step(Xr, ref, sw)
    r = resp * sw[:, None]
    rtol = 1e-12 if dtype == np.float64 else 1e-4
    assert_close(stats.nk, r.sum(axis=0), rtol, "nk")
    raw = stats.sum_x + stats.nk[:, None] * stats.shift
    assert_close(raw, r.T @ Xr, rtol, "sum_x")
    if cov != "tied":
        m = stats.shift
        scatter = np.array(
            [(r[:, k, None] * (Xr - m[k])).T @ (Xr - m[k]) for k in range(K)]
        )
        expected = {
            "full": scatter,
            "diag": np.diagonal(scatter, axis1=1, axis2=2),
            "spherical": np.trace(scatter, axis1=1, axis2=2),
        }[cov]
        assert_close(stats.sum_xx, expected, rtol, "sum_xx")
    logp, proba = gaussian_per_row(Xd, params, responsibilities=True)[:2]
    assert_close(logp, score_samples(Xr, ref), RTOL_PER_ROW[dtype])
    np.testing.assert_allclose(
        proba, predict_proba(Xr, ref), rtol=0, atol=10 * RTOL_PER_ROW[dtype]
    )


@pytest.mark.parametrize("cov", ["spherical", "tied", "diag"])
@pytest.mark.parametrize(("n_features", "n_components"), [(6, 5), (9, 8), (16, 7)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_component_sweeps_with_remainders_and_an_empty_component(
    make_mixture, cov, n_features, n_components, dtype
):
    """The distance, projection and first-moment sweeps take four (or two)
    components and four features at a time and finish the rest one by one:
    with 5, 7 and 8 components on 6, 9 and 16 features every combination of
    whole and partial sweeps runs.  One component sits far from every row,
    so its responsibilities are exactly zero in every block and the pairing
    of components in the first-moment sweeps has to skip it.  Statistics and
    per-row outputs match their definitions (weighted, 700 rows)."""
    X, _ = make_mixture(700, n_features, n_components, seed=90 + n_features)
    sw = np.random.RandomState(91).uniform(0.0, 2.0, X.shape[0])
    inits = initial_parameters(X, n_components, cov, seed=92, sample_weight=sw)
    means = inits["means_init"].copy()
    means[1] = X.mean(axis=0) + 1e4 * X.std(axis=0)
    # A tiny weight keeps the mixture mean (where rows are centred) inside
    # the data, as float32 blocks need.
    weights = inits["weights_init"].copy()
    weights[1] = 1e-9
    weights /= weights.sum()
    ref = mixture_from_precisions(weights, means, inits["precisions_init"], cov)
    params = make_gaussian_params(ref.weights, ref.means, ref.covariances, cov)
    Xd = X.astype(dtype)
    Xr = Xd.astype(np.float64)
    stats = gaussian_stats(Xd, params, sw)
    resp, mean_loglik = e_step(Xr, ref, sw)
    assert resp[:, 1].max() == 0.0
    assert stats.nk[1] == 0.0
    r = resp * sw[:, None]
    rtol = RTOL_SUM[dtype] * (10 if dtype == np.float32 else 1)
    assert_close(stats.nk, r.sum(axis=0), rtol, "nk")
    raw = stats.sum_x + stats.nk[:, None] * stats.shift
    np.testing.assert_allclose(
        raw, r.T @ Xr, rtol=rtol, atol=rtol * np.abs(r.T @ Xr).max()
    )
    if cov != "tied":
        m = stats.shift
        sq = np.array([r[:, k] @ (Xr - m[k]) ** 2 for k in range(n_components)])
        expected = sq.sum(axis=1) if cov == "spherical" else sq
        assert_close(stats.sum_xx, expected, rtol, "sum_xx")
    np.testing.assert_allclose(
        stats.log_likelihood / stats.total_weight, mean_loglik, rtol=rtol
    )
    logp, proba = gaussian_per_row(Xd, params, responsibilities=True)[:2]
    assert_close(logp, score_samples(Xr, ref), RTOL_PER_ROW[dtype])
    np.testing.assert_allclose(
        proba, predict_proba(Xr, ref), rtol=0, atol=10 * RTOL_PER_ROW[dtype]
    )


@pytest.mark.parametrize("n_components", [1, 3, 64, 1500])
def test_block_log_likelihood_with_many_equal_components(n_components):
    """The block log-likelihood sums logs of products of row totals; with
    every component equally likely each total is exactly K, the largest a
    total can be, so an over-long product would overflow to inf."""
    from numba import njit

    from fastem._kernels._blocks import responsibilities

    @njit
    def block_responsibilities(L, nb, sw, r0, rowmax, resp, total, acc):
        responsibilities(L, nb, sw, r0, rowmax, resp, total, acc)

    rng = np.random.RandomState(0)
    B = 256
    shift = rng.normal(size=B) * 50.0
    L = np.repeat(shift[None, :], n_components, axis=0) + np.log(0.5)
    L[:, :7] += rng.normal(size=(n_components, 7))  # a few unequal rows too
    resp, rowmax, total = np.empty_like(L), np.empty(B), np.empty(B)
    acc = np.zeros(3)
    block_responsibilities(L, B, np.empty(0), 0, rowmax, resp, total, acc)
    row_max = L.max(axis=0)
    ref = np.sum(row_max + np.log(np.exp(L - row_max).sum(axis=0)))
    assert np.isfinite(acc[0])
    assert abs(acc[0] - ref) <= 1e-12 * np.abs(L).sum() / n_components
    np.testing.assert_allclose(resp.sum(axis=0), 1.0, rtol=1e-13)


def _block_and_weights(n_features, n_components, nb, dtype, B=256):
    """A ``(D, B)`` block of normal rows and ``(K, B)`` uniform weights in
    aligned buffers, NaN past row ``nb`` (which a kernel must not read)."""
    from fastem._kernels._blocks import aligned_rows

    rng = np.random.RandomState(n_features + n_components)
    x = aligned_rows(n_features, B, dtype)
    x[:] = rng.normal(size=(n_features, B))
    x[:, nb:] = np.nan
    r = aligned_rows(n_components, B, dtype)
    r[:] = rng.uniform(size=(n_components, B))
    r[:, nb:] = np.nan
    return x, r


@pytest.mark.parametrize(
    "n_features, n_components, nb",
    [
        (1, 1, 3),
        (1, 9, 17),
        (2, 8, 250),
        (2, 11, 77),
        (3, 5, 1),
        (5, 7, 133),
        (16, 16, 256),
        (9, 17, 200),
    ],
)
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_row_sums_match_numpy(dtype, n_features, n_components, nb, shifted):
    """weighted_row_sums against numpy's R X, and weighted_shifted_row_sums
    against sum_b r_kb (x_b - s_k): components and features that fill whole
    tiles or end inside one, row counts that end inside a vector (NaN past
    them must not leak in), and nothing written outside the (K, D)
    output."""
    from numba import njit

    from fastem._kernels._simd import weighted_row_sums, weighted_shifted_row_sums

    @njit
    def run(x, nb, r, out):
        weighted_row_sums(x, nb, r, out)

    @njit
    def run_shifted(x, nb, r, shift, out):
        weighted_shifted_row_sums(x, nb, r, shift, out)

    D, K = n_features, n_components
    x, r = _block_and_weights(D, K, nb, dtype)
    guarded = np.full(K * D + 16, 7.0)
    out = guarded[8 : 8 + K * D].reshape(K, D)
    r64 = r[:, :nb].astype(np.float64)
    x64 = x[:, :nb].astype(np.float64)
    if shifted:
        shift = np.random.RandomState(D * K).normal(size=(K, D)).astype(dtype)
        run_shifted(x, nb, r, shift, out)
        diff = x64[None] - shift.astype(np.float64)[:, :, None]  # (K, D, nb)
        expected = np.einsum("kb,kdb->kd", r64, diff)
        scale = np.einsum("kb,kdb->kd", np.abs(r64), np.abs(diff))
    else:
        run(x, nb, r, out)
        expected = r64 @ x64.T
        scale = np.abs(r64) @ np.abs(x64.T)
    # The products alone stay within a few ulps of their absolute sum; the
    # rounded differences x - s take the worst-case bound of nb terms.
    eps = (nb + 2 if shifted else 4) * np.finfo(dtype).eps
    assert np.all(np.abs(out - expected) <= eps * scale + 1e-300)
    assert np.all(guarded[:8] == 7.0) and np.all(guarded[-8:] == 7.0)


@pytest.mark.parametrize(
    "n_features, n_components, nb", [(1, 1, 3), (1, 6, 64), (2, 8, 250), (2, 9, 77)]
)
@pytest.mark.parametrize("exact_shift", [False, True])
@pytest.mark.parametrize("with_sq", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_first_moments_few_features_match_numpy(
    dtype, n_features, n_components, nb, exact_shift, with_sq
):
    """accumulate_first_moments_few_features against numpy: the block
    weights sum_b r_kb, the first moments added around the shifts, and the
    spherical sums sum_b r_kb (c_k - L_kb), with r_kb = E_kb scale_b (float32
    weights below 2^-92 dropped) for numbers of components that fill groups
    of four or end inside one, NaN past row nb, and E left as it was."""
    from numba import njit

    from fastem._kernels._blocks import accumulate_first_moments_few_features

    @njit
    def run(xt, nb, E, scale, shift, nblk, sx, exact_shift, log_norm, L, sq):
        accumulate_first_moments_few_features(
            xt, nb, E, scale, shift, nblk, sx, exact_shift, log_norm, L, sq
        )

    D, K = n_features, n_components
    x, E = _block_and_weights(D, K, nb, dtype)
    L, _ = _block_and_weights(K, 1, nb, dtype)
    rng = np.random.RandomState(D * K + nb)
    E[K - 1, :nb] = 2.0**-100  # below the float32 floor
    before = E.copy()
    scale = rng.uniform(0.5, 2.0, E.shape[1]).astype(dtype)
    shift = (rng.normal(size=(K, D)) * 3).astype(dtype)
    log_norm = rng.normal(size=K).astype(dtype)
    nblk = np.full(K, 7.0, dtype)
    start = rng.normal(size=(K, D))
    sx = start.copy()
    sq = np.full(K, 0.25) if with_sq else None
    run(x, nb, E, scale, shift, nblk, sx, exact_shift, log_norm, L, sq)

    np.testing.assert_array_equal(E, before)
    e64 = E[:, :nb].astype(np.float64)
    if dtype == np.float32:
        e64[e64 < 2.0**-92] = 0.0
    r = e64 * scale[:nb].astype(np.float64)
    x64 = x[:, :nb].astype(np.float64)
    s64 = shift.astype(np.float64)
    eps = (nb + 4) * np.finfo(dtype).eps
    n = r.sum(axis=1)
    assert np.all(np.abs(nblk - n) <= eps * n)
    if dtype == np.float32:
        assert nblk[K - 1] == 0.0 and np.all(sx[K - 1] == start[K - 1])
    else:
        assert nblk[K - 1] > 0.0
    diff = x64[None] - s64[:, :, None]  # (K, D, nb)
    expected = start + np.einsum("kb,kdb->kd", r, diff)
    # Sums around the center lose eps |x| |s| n in the correction; float32
    # sums around the shifts lose the rounding of each x - s.
    bound = eps * (np.abs(r) @ np.abs(x64.T) + np.abs(s64) * n[:, None])
    bound += eps * np.einsum("kb,kdb->kd", r, np.abs(diff))
    assert np.all(np.abs(sx - expected) <= bound + 1e-300)
    if with_sq:
        gap = log_norm.astype(np.float64)[:, None] - L[:K, :nb].astype(np.float64)
        expected_sq = 0.25 + (r * gap).sum(axis=1)
        assert np.all(np.abs(sq - expected_sq) <= eps * (r * np.abs(gap)).sum(axis=1))


@pytest.mark.parametrize(
    "n_features, n_components, nb", [(1, 1, 3), (1, 6, 64), (2, 8, 250), (2, 9, 77)]
)
@pytest.mark.parametrize(
    "dtype, offset", [(np.float64, 0.5), (np.float32, 0.5), (np.float32, 40.0)]
)
def test_diag_moments_few_features_match_numpy(
    dtype, offset, n_features, n_components, nb
):
    """The diag E-step's moments for one or two features against numpy:
    block weights, and the first and second moments around the means added
    to what the outputs held, with r_kb = E_kb scale_b (float32 weights
    below 2^-92 dropped) and E left as it was.  float32 sums go around the
    means: accurate to the spread of the rows about each mean even where
    rows and means sit 40 spreads from the center (raw sums would lose
    40^2 eps; float64 callers keep such components off this path)."""
    from numba import njit

    from fastem._kernels.gaussian import _moments_few_features

    @njit
    def run(xt, nb, E, scale, means, nblk, nk, sx, sxx):
        _moments_few_features(xt, nb, E, scale, means, nblk, nk, sx, sxx)

    D, K = n_features, n_components
    x, E = _block_and_weights(D, K, nb, dtype)
    E[K - 1, :nb] = 2.0**-100  # below the float32 floor
    before = E.copy()
    rng = np.random.RandomState(D * K + nb)
    scale = rng.uniform(0.5, 2.0, E.shape[1]).astype(dtype)
    means = (rng.normal(size=(K, D)) * 0.5).astype(dtype)
    if offset > 1.0:
        x[:, :nb] += dtype(offset)
        means += dtype(offset)
    nblk = np.full(K, 7.0, dtype)
    nk0, sx0, sxx0 = (
        rng.uniform(size=K),
        rng.normal(size=(K, D)),
        rng.uniform(size=(K, D)),
    )
    nk, sx, sxx = nk0.copy(), sx0.copy(), sxx0.copy()
    run(x, nb, E, scale, means, nblk, nk, sx, sxx)

    np.testing.assert_array_equal(E, before)
    e64 = E[:, :nb].astype(np.float64)
    if dtype == np.float32:
        e64[e64 < 2.0**-92] = 0.0
    r = e64 * scale[:nb].astype(np.float64)
    z = x[:, :nb].astype(np.float64)[None] - means.astype(np.float64)[:, :, None]
    n = r.sum(axis=1)
    eps = (nb + 4) * np.finfo(dtype).eps
    assert np.all(np.abs(nblk - n) <= eps * n)
    # nk gains n in float64, rounded to nk's own ulp.
    assert np.all(np.abs(nk - nk0 - n) <= eps * n + 2 * np.spacing(nk))
    if dtype == np.float32:
        assert nblk[K - 1] == 0.0 and np.all(sxx[K - 1] == sxx0[K - 1])
    first = np.einsum("kb,kdb->kd", r, z)
    second = np.einsum("kb,kdb->kd", r, z**2)
    if dtype == np.float64:
        # Raw sums shifted to the means lose eps (|x| + |m|)^2 n at most.
        rows = np.abs(x[:, :nb]).astype(np.float64) + np.abs(means).max()
        spread = np.einsum("kb,db->kd", r, rows**2)
    else:
        # Sums around the means: eps of sum r (|z| + z^2), not of the offset.
        spread = np.einsum("kb,kdb->kd", r, np.abs(z) + z**2)
    assert np.all(
        np.abs(sx - sx0 - first) <= 4 * eps * spread + 2 * np.abs(np.spacing(sx))
    )
    assert np.all(
        np.abs(sxx - sxx0 - second) <= 4 * eps * spread + 2 * np.abs(np.spacing(sxx))
    )


@pytest.mark.parametrize(
    "n_features, n_components, picked, nb",
    [
        (1, 1, [0], 3),
        (2, 8, [0, 1, 2, 3, 4, 5, 6, 7], 250),
        (3, 5, [4, 1], 1),
        (5, 7, [6, 0, 3, 2, 5], 133),
        (16, 16, list(range(0, 16, 2)), 256),
        (9, 17, [16, 3, 8, 11, 0, 5, 9, 2, 14], 200),
        (4, 6, [], 64),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weighted_row_moments_match_numpy(dtype, n_features, n_components, picked, nb):
    """weighted_row_moments against numpy's R X and R X^2 for the picked
    components (any order, groups that fill whole tiles of four or end
    inside one, none at all), row counts that end inside a vector (NaN past
    them must not leak in), and nothing written to the other components or
    outside the (K, D) outputs."""
    from numba import njit

    from fastem._kernels._simd import weighted_row_moments

    @njit
    def run(x, nb, r, order, count, first, second):
        weighted_row_moments(x, nb, r, order, count, first, second)

    D, K = n_features, n_components
    x, r = _block_and_weights(D, K, nb, dtype)
    order = np.full(K, -1, np.int64)
    order[: len(picked)] = picked
    outputs = [np.full(K * D + 16, 7.0) for _ in range(2)]
    first, second = (o[8 : 8 + K * D].reshape(K, D) for o in outputs)
    run(x, nb, r, order, len(picked), first, second)
    x64 = x[:, :nb].astype(np.float64)
    r64 = r[:, :nb].astype(np.float64)
    # The worst-case bound of a sum of nb rounded products (and squares).
    eps = (nb + 2) * np.finfo(dtype).eps
    for out, power in ((first, 1), (second, 2)):
        expected = r64 @ (x64**power).T
        scale = np.abs(r64) @ np.abs(x64.T) ** power
        assert np.all(np.abs(out[picked] - expected[picked]) <= eps * scale[picked])
        others = np.setdiff1d(np.arange(K), picked)
        assert np.all(out[others] == 7.0)
    for o in outputs:
        assert np.all(o[:8] == 7.0) and np.all(o[-8:] == 7.0)


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 5, 6, 7, 8, 13, 16, 18])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_scatter_kernels_match_numpy(n_features, dtype):
    """The block scatter kernel (the second moments of the full, tied,
    missing-value and Student-t E-steps) against numpy, for numbers of
    features that fill groups of four rows or end with one to three more
    (or fewer than four in all), and row counts that fill whole SIMD vectors
    or end inside one, with NaN in the buffers past the last row: the lower
    triangle gets the products, the entries above the diagonal are left
    alone, and the kernel returns the sums of its weighted rows."""
    from numba import njit

    from fastem._kernels._simd import weighted_lower_scatter

    # The kernel has no Python wrapper of its own.
    @njit
    def weighted(xt, nb, r, shift, w, S, sums):
        weighted_lower_scatter(xt, nb, r, shift, w, S, sums)

    rng = np.random.default_rng(n_features)
    D, B = n_features, 64
    shift = rng.standard_normal(D).astype(dtype)
    start = np.triu(np.full((D, D), 7.0), 1) + np.tril(np.full((D, D), 0.5))
    rtol = RTOL_SUM[dtype]
    for nb in (61, 64):
        xt = np.full((D, B), np.nan, dtype)
        xt[:, :nb] = rng.standard_normal((D, nb))
        r = np.full(B, np.nan, dtype)
        r[:nb] = rng.uniform(size=nb)
        x = xt[:, :nb].astype(np.float64)
        wz = r[:nb].astype(np.float64) * (x - shift[:, None].astype(np.float64))

        S = start.copy()
        sums = np.full(D, np.nan)
        w = np.empty((4, B), dtype)
        weighted(xt, nb, r, shift, w, S, sums)
        expected = start + np.tril(wz @ x.T)
        np.testing.assert_allclose(
            S, expected, rtol=rtol, atol=rtol * np.abs(expected).max()
        )
        np.testing.assert_array_equal(np.triu(S, 1), np.triu(start, 1))
        np.testing.assert_allclose(sums, wz.sum(axis=1), rtol=rtol, atol=rtol * nb)


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 5, 7, 8, 9, 16, 18])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_upper_triangular_micro_kernels_match_numpy(n_features, dtype):
    """The SIMD micro-kernels of the full, tied and spherical log-densities
    against numpy: ``x^T U``, ``||x^T U - o||^2`` and the squared distances
    to five means (a group of four and one more) for numbers of features on both
    sides of the groups of four columns (D < 4 included), and row counts that
    fill whole tiles of vectors, leave a last vector or two on their own, or
    end inside a vector.  Entries of ``U`` below the diagonal are NaN (never
    read), the norms are added to ``out``, and the product writes its D rows
    and nothing else (the distances their five rows)."""
    from numba import njit

    from fastem._kernels._simd import (
        affine_sq_distances,
        upper_tri_product,
        upper_tri_sq_norms,
    )

    @njit
    def sq_norms(x, nb, U, off, out):
        upper_tri_sq_norms(x, nb, U, off, out)

    @njit
    def distances(x, nb, means, offsets, scales, out, expanded):
        affine_sq_distances(x, nb, means, offsets, scales, out, expanded)

    @njit
    def product(x, nb, U, y):
        upper_tri_product(x, nb, U, y)

    rng = np.random.default_rng(n_features)
    D, B = n_features, 64
    x = rng.standard_normal((D, B)).astype(dtype)
    U = np.triu(rng.standard_normal((D, D)) + 3 * np.eye(D))
    off = rng.standard_normal(D)
    U_nan = U.astype(dtype)
    U_nan[np.tril_indices(D, -1)] = np.nan
    rtol = RTOL_SUM[dtype]
    for nb in (5, 37, 61, 64):
        xU = x[:, :nb].astype(np.float64).T @ U.astype(dtype).astype(np.float64)
        norms = ((xU - off.astype(dtype)) ** 2).sum(axis=1)
        out = np.full(B, 0.25, dtype)
        sq_norms(x, nb, U_nan, off.astype(dtype), out)
        np.testing.assert_allclose(out[:nb], 0.25 + norms, rtol=10 * rtol)
        y = np.full((D + 1, B), 7.0, dtype)
        product(x, nb, U_nan, y[:D])
        np.testing.assert_allclose(
            y[:D, :nb], xU.T, rtol=10 * rtol, atol=rtol * np.abs(xU).max()
        )
        np.testing.assert_array_equal(y[D], 7.0)
        # Five components: a group of four and one more.
        means = rng.standard_normal((5, D)).astype(dtype)
        means[0] = x[:, 0]  # a distance of 0: the expansion must not go below
        expected = ((x[:, :nb].T[None] - means[:, None]).astype(np.float64) ** 2).sum(
            -1
        )
        offsets = rng.standard_normal(5).astype(dtype)
        scales = rng.uniform(0.5, 2.0, 5).astype(dtype)
        for expanded in (False, True):
            out = np.full((6, B), 7.0, dtype)
            distances(x, nb, means, offsets, scales, out, expanded)
            # Expanded: ||x||^2 + ||m||^2 - 2 m^T x, whose rounding is
            # relative to the two squared norms.
            bound = (x[:, :nb] ** 2).sum(0) + (means**2).sum(1)[:, None]
            Q = (offsets[:, None] - out[:5, :nb]) / scales[:, None]
            np.testing.assert_allclose(
                Q, expected, rtol=10 * rtol, atol=10 * rtol * bound.max()
            )
            # A distance never goes below 0, nor the output above its offset.
            assert np.all(out[:5, :nb] <= offsets[:, None])
            np.testing.assert_array_equal(out[5], 7.0)


def test_micro_kernels_without_avx512(tmp_path):
    """On a CPU without AVX-512 the SIMD kernels use 32-byte vectors and
    tiles of two (numba told to compile for Haswell, in a fresh process):
    the same checks as on this machine."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    env.update(
        NUMBA_CPU_NAME="haswell",
        NUMBA_CPU_FEATURES="+64bit,+avx,+avx2,+fma,+sse,+sse2,+sse3,+ssse3,"
        "+sse4.1,+sse4.2,+popcnt,+cmov,+cx16,+f16c,+bmi,+bmi2,+lzcnt,+movbe",
        NUMBA_CACHE_DIR=str(tmp_path),
    )
    script = (
        "from numba.core.registry import cpu_target\n"
        "from fastem._kernels._simd import _vector_bytes\n"
        "assert _vector_bytes(cpu_target.target_context) == 32\n"
        "import pytest, sys\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-k',"
        " '(micro_kernels_match or scatter_kernels_match) and"
        " (float64-3 or float64-9 or float32-5 or float32-13)"
        " or block_exponentials or weighted_row_sums or weighted_row_moments"
        " or few_features',"
        f" {__file__!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100 passed" in result.stdout


@pytest.mark.parametrize("block_bytes", [32768, 131072])
@pytest.mark.parametrize("cov", COVARIANCE_TYPES)
def test_compute_bound_block_size_changes_only_rounding(
    make_mixture, monkeypatch, cov, block_bytes
):
    """The statistics and per-row outputs of the Gaussian kernels agree with
    the reference for either block size the hosts use (64 or 256 rows of 40
    features; 3,000 rows leave a partial block at the end of each task)."""
    import fastem._layout as layout

    monkeypatch.setattr(layout, "COMPUTE_BOUND_BLOCK_BYTES", block_bytes)
    monkeypatch.setattr(layout, "FULL_COVARIANCE_BLOCK_BYTES", block_bytes)
    expected_rows = min(256, block_bytes // (40 * 8) // 16 * 16)
    assert layout.block_rows(40, compute_bound=True) == expected_rows
    assert layout.block_rows(40, compute_bound=True, full_covariance=True) == (
        expected_rows
    )
    X, _ = make_mixture(3000, 40, K, seed=64, separation=3.0)
    ref, params = _start(X, cov)
    stats = gaussian_stats(X, params)
    resp, mean_loglik = e_step(X, ref)
    assert_close(stats.nk, resp.sum(axis=0), 1e-12, "nk")
    m = stats.shift
    assert_close(stats.sum_x + stats.nk[:, None] * m, resp.T @ X, 1e-12, "sum_x")
    if cov == "tied":
        expected = (X - m[0]).T @ (X - m[0])
    else:
        expected = np.array(
            [(resp[:, k, None] * (X - m[k])).T @ (X - m[k]) for k in range(K)]
        )
        expected = {
            "full": expected,
            "diag": np.diagonal(expected, axis1=1, axis2=2),
            "spherical": np.trace(expected, axis1=1, axis2=2),
        }[cov]
    assert_close(stats.sum_xx, expected, 1e-12, "sum_xx")
    np.testing.assert_allclose(
        stats.log_likelihood / X.shape[0], mean_loglik, rtol=1e-12
    )
    lse, proba, _ = gaussian_per_row(X, params, responsibilities=True)
    assert_close(lse, score_samples(X, ref), RTOL_PER_ROW[np.float64], "lse")
    np.testing.assert_allclose(proba, predict_proba(X, ref), rtol=0, atol=1e-10)


def test_block_bytes_environment_variable(monkeypatch):
    """FASTEM_BLOCK_BYTES overrides the host's compute-bound and
    full-covariance block bytes and is validated; without it, a CPU missing
    from a table gets the default."""
    import fastem._layout as layout

    monkeypatch.setenv("FASTEM_BLOCK_BYTES", "65536")
    assert layout._compute_bound_block_bytes() == 65536
    assert layout._full_covariance_block_bytes() == 65536
    for bad in ("64k", "1024"):
        monkeypatch.setenv("FASTEM_BLOCK_BYTES", bad)
        with pytest.raises(ValueError, match="FASTEM_BLOCK_BYTES"):
            layout._compute_bound_block_bytes()
    monkeypatch.delenv("FASTEM_BLOCK_BYTES")
    monkeypatch.setattr(layout, "_host_cpu_name", lambda: "no-such-cpu")
    assert layout._compute_bound_block_bytes() == layout._BLOCK_BYTES
    assert layout._full_covariance_block_bytes() == layout._BLOCK_BYTES
    for name in ("znver4", "rocketlake"):
        monkeypatch.setattr(layout, "_host_cpu_name", lambda name=name: name)
        assert layout._compute_bound_block_bytes() == 131072
        assert layout._full_covariance_block_bytes() == 131072
    monkeypatch.setattr(layout, "_host_cpu_name", lambda: "znver5")
    assert layout._compute_bound_block_bytes() == layout._BLOCK_BYTES
    assert layout._full_covariance_block_bytes() == 131072


@pytest.mark.parametrize("n_features", [3, 9, 16])
def test_diag_log_densities_of_tight_components_far_from_the_mixture_mean(
    n_features,
):
    """The diag log-density forms ``x prec - (mu - c) prec`` with one FMA, so
    its error is that of rounding the scaled mean, ``eps |mu - c| / sigma``
    (here 2e4: about 3e-12 on a distance of order one), not the
    ``eps (|mu - c| / sigma)^2`` of an expanded square.  Rows of three tight
    components 2e4 standard deviations from the mixture mean, feature
    counts that take the eight-, four- and one-feature sweeps."""
    rng = np.random.default_rng(80 + n_features)
    sigma = np.array([0.5, 1.0, 2.0])
    means = rng.choice([-2e4, 2e4], size=(K, n_features)) * sigma[:, None]
    covariances = np.repeat(sigma[:, None] ** 2, n_features, axis=1)
    covariances *= rng.uniform(0.5, 1.5, covariances.shape)
    weights = np.array([0.2, 0.3, 0.5])
    labels = rng.integers(0, K, 600)
    X = means[labels] + rng.normal(size=(600, n_features)) * np.sqrt(
        covariances[labels]
    )
    ref = mixture_from_precisions(weights, means, 1.0 / covariances, "diag")
    params = make_gaussian_params(weights, means, covariances, "diag")
    lse, resp, _ = gaussian_per_row(X, params, responsibilities=True)
    expected = score_samples(X, ref)
    # Measured: at most 5e-11; the expanded square around the mixture mean
    # (x^2 p - 2 x mu p + mu^2 p) is 2e-6 to 1e-5 off on these rows.
    np.testing.assert_allclose(lse, expected, rtol=0, atol=1e-9)
    assert_close(resp, predict_proba(X, ref), 1e-9, "responsibilities")


@pytest.mark.parametrize(("n_features", "n_components"), [(9, 7), (16, 8)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_diag_second_moments_at_any_distance_from_the_mixture_mean(
    n_features, n_components, dtype
):
    """diag sums raw second moments around the mixture mean ``c`` for
    components near it and shifts them to the means, which cancels
    ``(mu - c)^2 / sigma^2`` in relative terms; features farther than 32
    (float64) or 4 (float32) standard deviations are summed around the mean
    instead.  Means log-uniformly 0.1 to 1e5 (float64) or 100 (float32)
    standard deviations from ``c = 0``, rows shuffled so that every block
    holds every component (groups of four and the ones left over).  Every
    ``sum_xx[k, d]`` against float64 sums around the reported shift, each
    relative to itself.  Measured: at most 1.4e-13 (float64) and 1e-6
    (float32); raw moments everywhere were up to 9e-7 and 7.5e-4 off."""
    rng = np.random.default_rng(120 + n_features)
    D, Kc = n_features, n_components
    sigma = rng.uniform(0.5, 2.0, (Kc, D))
    top = 1e5 if dtype == np.float64 else 100.0
    distance = np.exp(rng.uniform(np.log(0.1), np.log(top), (Kc, D)))
    means = distance * rng.choice([-1.0, 1.0], (Kc, D)) * sigma
    # Component 0 balances the others so that the mixture mean is 0.
    weights = 1.0 / (1.0 + distance.max(axis=1))
    weights[0] = 0.0
    weights *= 0.5 / weights.sum()
    weights[0] = 0.5
    means[0] = -(weights[1:] @ means[1:]) / weights[0]
    labels = rng.permutation(np.repeat(np.arange(Kc), 300))
    X = (means[labels] + rng.normal(size=(labels.size, D)) * sigma[labels]).astype(
        dtype
    )
    ref = mixture_from_precisions(weights, means, 1.0 / sigma**2, "diag")
    stats = gaussian_stats(X, make_gaussian_params(weights, means, sigma**2, "diag"))
    Xr = X.astype(np.float64)
    resp, _ = e_step(Xr, ref)
    m = stats.shift
    expected = np.array([resp[:, k] @ (Xr - m[k]) ** 2 for k in range(Kc)])
    # Both sides of the limit are covered.
    limit = 32.0 if dtype == np.float64 else 4.0
    assert (distance[1:] <= limit).any() and (distance[1:] > limit).any()
    np.testing.assert_allclose(
        stats.sum_xx, expected, rtol=1e-11 if dtype == np.float64 else 1e-5
    )


def _assert_rows_match_reference(Xd, params, ref):
    """Per-row log-densities and posteriors of ``Xd`` under ``params``, and
    the E-step's log-likelihood, against the float64 reference mixture."""
    dtype = Xd.dtype.type
    Xr = Xd.astype(np.float64)
    logp, proba = gaussian_per_row(Xd, params, responsibilities=True)[:2]
    assert_close(logp, score_samples(Xr, ref), RTOL_PER_ROW[dtype])
    np.testing.assert_allclose(
        proba, predict_proba(Xr, ref), rtol=0, atol=10 * RTOL_PER_ROW[dtype]
    )
    stats = gaussian_stats(Xd, params)
    _, mean_loglik = e_step(Xr, ref)
    np.testing.assert_allclose(
        stats.log_likelihood / stats.total_weight, mean_loglik, rtol=RTOL_SUM[dtype]
    )


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
@pytest.mark.parametrize(
    "cov, as_diag_max", [("spherical", 0), ("spherical", 8), ("tied", None)]
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_distance_log_densities_for_every_feature_remainder(
    make_mixture, monkeypatch, n_features, cov, as_diag_max, dtype
):
    """The tied log-density, and the spherical one above
    ``SPHERICAL_AS_DIAG_MAX_FEATURES`` features (0 or 8, by host CPU; both
    set here), sum squared distances four components at a time, the one to
    three features after the sweeps of four first (repeating the last
    feature with zero weight), and the components after the groups of four
    one at a time; spherical mixtures with fewer features run the diag
    kernels.  With five components, every feature remainder, with and
    without sweeps of four, on both sides of the switch, gives the reference
    log-densities, posteriors and log-likelihood (300 rows)."""
    import fastem.families.gaussian as family

    if as_diag_max is not None:
        monkeypatch.setattr(family, "SPHERICAL_AS_DIAG_MAX_FEATURES", as_diag_max)
    n_components = 5
    X, _ = make_mixture(300, n_features, n_components, seed=170 + n_features)
    inits = initial_parameters(X, n_components, cov, seed=171)
    ref = mixture_from_precisions(
        inits["weights_init"], inits["means_init"], inits["precisions_init"], cov
    )
    params = make_gaussian_params(ref.weights, ref.means, ref.covariances, cov)
    _assert_rows_match_reference(X.astype(dtype), params, ref)


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_diag_log_densities_for_every_feature_remainder(
    make_mixture, n_features, dtype
):
    """The diag log-density takes features eight (float64) or four
    (float32) at a time and the one to three left over in a first sweep
    with zero coefficients for the missing ones: every remainder, with and
    without whole sweeps before it, gives the reference log-densities and
    posteriors (300 rows)."""
    X, _ = make_mixture(300, n_features, K, seed=130 + n_features)
    ref, params = _start(X, "diag")
    _assert_rows_match_reference(X.astype(dtype), params, ref)


@pytest.mark.parametrize("spreads_away", [20.0, 2e4])
@pytest.mark.parametrize("cov", ["spherical", "tied"])
def test_expanded_distances_only_near_the_mixture_mean(cov, spreads_away):
    """float64 spherical and tied distances are expanded (``||x||^2 +
    ||m||^2 - 2 m^T x``, one FMA per feature) only when every mean is within
    ``32 sqrt(D)`` spreads of the mixture mean: the expansion cancels
    ``eps (|mu - c| / sigma)^2`` of a row's distance to its component (4e-8
    at 2e4 spreads), the distances around each mean ``eps |mu - c| /
    sigma``.  Means 20 (expanded) and 2e4 (not expanded) spreads from ``c =
    0``; per-row log-densities against numpy.  Nine features: spherical
    mixtures with fewer may run the diag kernel.  On hosts that never expand
    (``fastem._layout.EXPANDED_DISTANCES`` false: Zen 5) both cases take
    the subtracted form and must meet the same bound."""
    D, n = 9, 600
    rng = np.random.default_rng(int(spreads_away))
    sigma = np.array([0.5, 1.0, 2.0]) if cov == "spherical" else np.ones(K)
    means = rng.choice([-1.0, 1.0], size=(K, D)) * spreads_away * sigma[:, None]
    means /= np.sqrt(D)
    weights = np.array([0.2, 0.3, 0.5])
    labels = rng.integers(0, K, n)
    X = means[labels] + rng.normal(size=(n, D)) * sigma[labels, None]
    center = X.mean(axis=0)
    X -= center
    means -= center
    covariances = sigma**2 if cov == "spherical" else np.eye(D)
    precisions = 1.0 / covariances if cov == "spherical" else covariances
    ref = mixture_from_precisions(weights, means, precisions, cov)
    params = make_gaussian_params(weights, means, covariances, cov)
    lse, resp, _ = gaussian_per_row(X, params, responsibilities=True)
    np.testing.assert_allclose(lse, score_samples(X, ref), rtol=0, atol=1e-9)
    assert_close(resp, predict_proba(X, ref), 1e-9, "responsibilities")
