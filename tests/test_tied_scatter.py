"""The tied total scatter is summed on the first pass over a source only."""

from __future__ import annotations

import numpy as np
import pytest

from fastem.families import gaussian as g
from fastem.families.gaussian_fit import TiedScatterMemo
from fastem.kernels import make_gaussian_params
from fastem.sources import ArraySource

K, D = 3, 4


class CountingSource(ArraySource):
    """An in-memory source that records the extra arguments of each pass."""

    def map_reduce(self, func, *args):
        self.__dict__.setdefault("calls", []).append(args)
        return super().map_reduce(func, *args)


@pytest.fixture(scope="module")
def data(make_mixture):
    X, _ = make_mixture(3000, D, K, seed=5, separation=4.0)
    sw = np.random.RandomState(6).uniform(0.0, 3.0, X.shape[0])
    return X, sw


def _params(X, offset, weights):
    rng = np.random.RandomState(7)
    means = X[rng.choice(X.shape[0], K, replace=False)] + offset
    cov = np.cov(X.T) + 0.1 * np.eye(D)
    return make_gaussian_params(np.asarray(weights), means, cov, "tied")


def _total_scatter(X, sw, center):
    """``sum_i w_i (x_i - c)(x_i - c)^T`` in float64 with numpy."""
    z = np.asarray(X, dtype=np.float64) - center
    return (z * sw[:, None]).T @ z


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_later_passes_move_the_first_scatter(data, dtype, weighted):
    X, sw = data
    X = X.astype(dtype)
    w = sw if weighted else np.empty(0)
    source = CountingSource(X, w)
    memo = TiedScatterMemo()
    first = _params(X, 0.0, [0.2, 0.3, 0.5])
    # A mixture mean far from the first one (several standard deviations).
    later = _params(X, 5.0, [0.6, 0.1, 0.3])
    a = memo.e_step(source, first)
    b = memo.e_step(source, later)
    assert [args[3:] for args in source.calls] == [(), (False,)]
    ww = sw if weighted else np.ones(X.shape[0])
    c = later.weights @ later.means
    np.testing.assert_allclose(b.shift, np.broadcast_to(c, (K, D)), rtol=1e-6)
    expected = _total_scatter(X, ww, b.shift[0])
    # Summed and moved in float64 whatever the dtype of the rows: the move
    # takes the first moment summed with the scatter, not the components'
    # float32 block sums (which left 1e-6 here).
    rtol = 1e-12
    scale = np.abs(expected).max()
    np.testing.assert_allclose(b.sum_xx, expected, rtol=0, atol=rtol * scale)
    np.testing.assert_allclose(
        a.sum_xx, _total_scatter(X, ww, a.shift[0]), rtol=0, atol=rtol * scale
    )
    for stats in (a, b):
        z = np.asarray(X, dtype=np.float64) - stats.shift[0]
        first = ww @ z
        np.testing.assert_allclose(
            stats.total_first, first, rtol=0, atol=1e-12 * (ww @ np.abs(z)).max()
        )
    # Everything else is the one-pass statistics, bit for bit: the pass with
    # the scatter uses the same blocks and the same float32 rows.
    full = g.e_step(X, w, later)
    for name in ("nk", "sum_x", "shift", "log_likelihood", "total_weight"):
        np.testing.assert_array_equal(getattr(b, name), getattr(full, name))


def test_the_kernel_leaves_the_scatter_out_on_request(data):
    X, sw = data
    params = _params(X, 0.0, [0.2, 0.3, 0.5])
    without = g.e_step(X, sw, params, total_scatter=False)
    full = g.e_step(X, sw, params)
    np.testing.assert_array_equal(without.sum_xx, np.zeros((D, D)))
    np.testing.assert_array_equal(without.nk, full.nk)
    np.testing.assert_array_equal(without.sum_x, full.sum_x)
    assert without.log_likelihood == full.log_likelihood


def test_a_new_source_gets_its_own_scatter(data):
    X, sw = data
    params = _params(X, 0.0, [0.2, 0.3, 0.5])
    memo = TiedScatterMemo()
    memo.e_step(ArraySource(X, sw), params)
    other = ArraySource(X[::2].copy(), sw[::2].copy())
    stats = memo.e_step(other, params)
    expected = _total_scatter(X[::2], sw[::2], stats.shift[0])
    np.testing.assert_allclose(stats.sum_xx, expected, rtol=1e-12)


def test_other_covariance_types_pass_through(data):
    X, sw = data
    source = CountingSource(X, sw)
    memo = TiedScatterMemo()
    tied = _params(X, 0.0, [0.2, 0.3, 0.5])
    params = make_gaussian_params(tied.weights, tied.means, np.ones((K, D)), "diag")
    for _ in range(2):
        stats = memo.e_step(source, params)
    assert [args[3:] for args in source.calls] == [(), ()]
    full = g.e_step(X, sw, params)
    np.testing.assert_array_equal(stats.sum_xx, full.sum_xx)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_statistics_of_two_halves_add_up_around_either_centre(data, dtype):
    """``a + b`` of tied statistics under different mixture means (``b`` is
    moved to ``a``'s centre, as stepwise EM does) gives the total scatter
    and first moment of all rows around ``a``'s centre, and ``scaled``
    scales both."""
    X, sw = data
    X = X.astype(dtype)
    half = X.shape[0] // 2
    first = _params(X, 0.0, [0.2, 0.3, 0.5])
    second = _params(X, 40.0, [0.6, 0.1, 0.3])
    a = g.e_step(X[:half], sw[:half], first)
    b = g.e_step(X[half:], sw[half:], second)
    assert not np.allclose(a.shift, b.shift)
    both = (a + b).scaled(0.5)
    z = np.asarray(X, dtype=np.float64) - a.shift[0]
    scatter = 0.5 * _total_scatter(X, sw, a.shift[0])
    np.testing.assert_allclose(
        both.sum_xx, scatter, rtol=0, atol=1e-12 * np.abs(scatter).max()
    )
    moment = 0.5 * (sw @ z)
    np.testing.assert_allclose(
        both.total_first, moment, rtol=0, atol=1e-12 * 0.5 * (sw @ np.abs(z)).max()
    )
