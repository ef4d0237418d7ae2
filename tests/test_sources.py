"""Out-of-core, streaming and Dask sources give the same model as in memory.

Sufficient statistics add, so a chunked fit is the same algorithm as an
in-memory one: the only difference is the order of floating-point additions
(1e-10 relative at most), and two sources with the same chunks (a memmap read
in chunks and a Dask array with those chunks) give bit-identical models.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import fastem

COV_TYPES = ["full", "tied", "diag", "spherical"]


def _mixture(n=24_000, d=3, seed=0):
    rng = np.random.RandomState(seed)
    centers = np.array([[0.0, 0, 0], [4, 4, 0], [0, 5, 5]])[:, :d]
    labels = rng.randint(3, size=n)
    return centers[labels] + rng.standard_normal((n, d)) * (0.5 + labels[:, None] / 2)


@pytest.fixture(scope="module")
def data():
    return _mixture()


@pytest.fixture(scope="module")
def npy_path(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("src") / "x.npy"
    np.save(path, data)
    return path


def _inits(X, cov):
    start = fastem.GaussianMixture(3, covariance_type=cov, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastem.ConvergenceWarning)
        start.fit(X)
    return {
        "weights_init": start.weights_,
        "means_init": start.means_,
        "precisions_init": start.precisions_,
    }


def _fit(X, cov, inits, **kw):
    gm = fastem.GaussianMixture(
        3, covariance_type=cov, tol=0, max_iter=15, **inits, **kw
    )
    with pytest.warns(fastem.ConvergenceWarning):
        return gm.fit(X)


def _assert_same_model(a, b, rtol):
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(
            getattr(a, name), getattr(b, name), rtol=rtol, atol=0
        )
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol)


@pytest.mark.parametrize("cov", COV_TYPES)
def test_memmap_and_path_match_in_memory(data, npy_path, cov):
    inits = _inits(data, cov)
    ref = _fit(data, cov, inits)
    mm = np.load(npy_path, mmap_mode="r")
    chunked = _fit(mm, cov, inits, chunk_rows=5000)
    _assert_same_model(chunked, ref, rtol=1e-10)
    by_path = _fit(str(npy_path), cov, inits, chunk_rows=5000)
    _assert_same_model(by_path, chunked, rtol=0)
    np.testing.assert_array_equal(chunked.predict(mm), ref.predict(data))


def test_iterable_of_chunks_matches_memmap(data, npy_path):
    inits = _inits(data, "full")
    mm = np.load(npy_path, mmap_mode="r")
    chunked = _fit(mm, "full", inits, chunk_rows=5000)

    def chunks():
        for start in range(0, data.shape[0], 5000):
            yield data[start : start + 5000]

    streamed = _fit(chunks, "full", inits)
    _assert_same_model(streamed, chunked, rtol=0)
    listed = _fit(
        [data[i : i + 5000] for i in range(0, len(data), 5000)], "full", inits
    )
    _assert_same_model(listed, chunked, rtol=0)


def test_one_shot_generator_is_rejected(data):
    gen = (data[i : i + 1000] for i in range(0, 5000, 1000))
    with pytest.raises(TypeError, match="one-shot iterator"):
        fastem.GaussianMixture(2).fit(gen)


def test_chunked_weights_match_in_memory(data, npy_path):
    w = np.random.RandomState(1).uniform(0, 2, size=data.shape[0])
    inits = _inits(data, "diag")
    gm = fastem.GaussianMixture(3, covariance_type="diag", tol=0, max_iter=10, **inits)
    with pytest.warns(fastem.ConvergenceWarning):
        ref = gm.fit(data, sample_weight=w)
    gm2 = fastem.GaussianMixture(3, covariance_type="diag", tol=0, max_iter=10, **inits)
    with pytest.warns(fastem.ConvergenceWarning):
        chunked = gm2.set_params(chunk_rows=4096).fit(
            np.load(npy_path, mmap_mode="r"), sample_weight=w
        )
    _assert_same_model(chunked, ref, rtol=1e-10)


def test_bad_values_in_a_late_chunk_raise_before_fitting(tmp_path, data):
    bad = data.copy()
    bad[-3, 1] = np.inf
    path = tmp_path / "bad.npy"
    np.save(path, bad)
    calls = []
    gm = fastem.GaussianMixture(2, callback=lambda *a: calls.append(a), chunk_rows=4096)
    with pytest.raises(ValueError, match="infinite"):
        gm.fit(np.load(path, mmap_mode="r"))
    assert calls == []


def _write_npy(path, n, d, rows_per_piece=500_000):
    """Write an (n, d) float64 .npy with plain file writes (no memory map)."""
    rng = np.random.RandomState(0)
    with open(path, "wb") as fh:
        header = {"descr": "<f8", "fortran_order": False, "shape": (n, d)}
        np.lib.format.write_array_header_1_0(fh, header)
        for start in range(0, n, rows_per_piece):
            rows = min(rows_per_piece, n - start)
            piece = rng.standard_normal((rows, d)) + (start // rows_per_piece % 3) * 4
            piece.astype("<f8").tofile(fh)


@pytest.mark.slow
def test_memmap_fit_keeps_resident_memory_below_file_size(tmp_path):
    """A 768 MB memmap fits with a peak RSS (process included) far below it."""
    n, d = 12_000_000, 8
    path = tmp_path / "big.npy"
    _write_npy(path, n, d)
    script = textwrap.dedent(
        f"""
        import warnings, numpy as np, fastem

        def peak_kb():
            with open("/proc/self/status") as fh:
                return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM"))

        kw = dict(covariance_type="diag", max_iter=3, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Compile (or load from the cache) first: compilation memory is
            # not what this test measures.
            fastem.GaussianMixture(3, **kw).fit(np.random.RandomState(0).rand(5000, 8))
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset the peak-RSS counter (VmHWM)
            mm = np.load({str(path)!r}, mmap_mode="r")
            gm = fastem.GaussianMixture(3, chunk_rows=250_000, **kw).fit(mm)
        assert np.isfinite(gm.means_).all()
        print(peak_kb())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    peak_kb, file_kb = int(out[-1]), n * d * 8 // 1024
    assert peak_kb < file_kb / 2, (peak_kb, file_kb)


dask = pytest.importorskip("dask")


@pytest.mark.parametrize("cov", ["full", "tied"])
def test_dask_matches_memmap_bit_for_bit(data, npy_path, cov):
    """Also for tied, whose total scatter is summed on the first pass only."""
    import dask.array as da

    inits = _inits(data, cov)
    chunked = _fit(np.load(npy_path, mmap_mode="r"), cov, inits, chunk_rows=5000)
    dx = da.from_array(data, chunks=(5000, data.shape[1]))
    distributed_fit = _fit(dx, cov, inits)
    _assert_same_model(distributed_fit, chunked, rtol=0)
    labels = distributed_fit.predict(dx)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(labels.compute(), chunked.predict(data))
    proba = distributed_fit.predict_proba(dx).compute()
    np.testing.assert_allclose(proba, chunked.predict_proba(data), rtol=1e-12)
    np.testing.assert_allclose(
        distributed_fit.score_samples(dx).compute(),
        chunked.score_samples(data),
        rtol=1e-12,
    )


@pytest.mark.slow
def test_dask_cluster_survives_a_killed_worker(data, npy_path):
    """A LocalCluster with worker processes; one worker dies mid-fit and Dask
    recomputes its blocks: the model is the same as without the failure."""
    import dask.array as da

    distributed = pytest.importorskip("distributed")
    inits = _inits(data, "full")
    chunked = _fit(np.load(npy_path, mmap_mode="r"), "full", inits, chunk_rows=3000)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        dx = da.from_array(data, chunks=(3000, data.shape[1]))
        killed = []

        pids = client.run(os.getpid)

        def kill_one_worker(iteration, lower_bound):
            if iteration == 3 and not killed:
                victim = sorted(pids)[0]
                killed.append(victim)
                os.kill(pids[victim], signal.SIGKILL)

        on_cluster = _fit(dx, "full", inits, callback=kill_one_worker)
    assert killed
    # Without failures the Dask and memmap fits are bit-identical (test
    # above); after a worker dies, recomputed blocks may run in another
    # process whose BLAS/threading state differs in the last bit of the small
    # parameter arithmetic, so the same model is asserted to rounding.
    _assert_same_model(on_cluster, chunked, rtol=1e-12)


def test_partial_fit_approaches_the_batch_solution():
    """Stepwise EM over a stationary stream ends near the batch EM solution."""
    X = _mixture(n=60_000, seed=3)
    batch = fastem.GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
    online = fastem.GaussianMixture(
        3,
        covariance_type="full",
        weights_init=batch.weights_,
        means_init=batch.means_ + 0.3,
        random_state=0,
    )
    stream = np.random.RandomState(5)
    for _ in range(3):
        for chunk in np.array_split(X[stream.permutation(len(X))], 30):
            online.partial_fit(chunk)
    np.testing.assert_allclose(online.means_, batch.means_, atol=0.05)
    np.testing.assert_allclose(online.covariances_, batch.covariances_, atol=0.05)
    np.testing.assert_allclose(online.weights_, batch.weights_, atol=0.02)
    assert online.n_iter_ == 90
    assert batch.score(X) - online.score(X) < 1e-3
