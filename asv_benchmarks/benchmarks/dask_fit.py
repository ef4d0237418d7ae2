"""A Dask fit on a 2-worker ``LocalCluster`` vs the in-process fit.

``DaskFit`` fits the same N = 1e6 x 16 float64 rows (K = 8, ``diag``) from
the same initial parameters for 5 iterations (``tol=0``) twice:

* ``time_fit_dask``: as a ``dask.array.Array`` whose blocks (8 of 125,000
  rows) live on the workers of a ``distributed.LocalCluster`` with 2 worker
  processes of 1 thread each; only the per-block statistics travel back
  and the M-step runs in the benchmark process;
* ``time_fit_in_process``: as an in-memory ndarray, with numba's default
  threads (all cores unless ``NUMBA_NUM_THREADS`` is set).

Both are wall time (a Dask fit's work happens in other processes).
``track_cluster_startup`` records the seconds ``setup`` took to start the
cluster and connect a client (not part of either fit).

``setup`` starts the cluster, writes the data as a stack of ``.npy`` files
(``dask.array.to_npy_stack``, local scheduler) and has the workers load it
(``from_npy_stack`` + ``persist``), so the task graph carries file names,
not data; then it fits once on each side to load the kernels.  ``teardown``
closes the client and the cluster and deletes the files.

Skipped (``NotImplementedError`` in ``setup``) when dask or distributed is
not installed (asv's own virtualenvs, built from ``asv.conf.json``'s matrix,
have neither, so ``asv continuous``/``asv run HEAD^!`` skip it: run it with
``-E existing``), when fastem has no Dask support, or when
``FASTEM_ASV_SKIP_DASK`` is set to a non-empty value.  ``FASTEM_ASV_MAX_ROWS``
caps the rows as everywhere (smoke runs), which keeps it to a few seconds.
Not part of the CI gate's ``Core`` comparison.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings

import fastem

from .common import N_LARGE, WARMUP_ROWS, make_data, make_init, max_rows

warnings.filterwarnings("ignore", category=fastem.ConvergenceWarning)


class DaskFit:
    """Dask fit on 2 worker processes vs in-process fit, same data and init."""

    params = [[N_LARGE], ["16x8"], ["diag"]]
    param_names = ["n_samples", "shape", "covariance_type"]
    #: EM iterations of every timed fit (``tol=0``).
    n_iter = 5
    n_workers = 2
    #: Dask blocks per worker.
    blocks_per_worker = 4
    number = 1
    repeat = (3, 10, 20.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 600

    def setup(self, n_samples, shape, covariance_type):
        if os.environ.get("FASTEM_ASV_SKIP_DASK"):
            raise NotImplementedError("FASTEM_ASV_SKIP_DASK is set")
        try:
            import dask
            import dask.array as da
            import distributed
        except ImportError as exc:
            raise NotImplementedError(
                f"dask/distributed not installed: {exc}"
            ) from None
        n_features, n_components = (int(v) for v in shape.split("x"))
        cap = max_rows()
        if cap is not None:
            n_samples = min(n_samples, cap)
        X, centers = make_data(n_samples, n_features, n_components, "float64")
        self.X = X
        self.init = make_init(X, centers, covariance_type)
        self.n_components = n_components
        self.covariance_type = covariance_type
        # Check that this fastem fits Dask arrays (older commits did not).
        if not hasattr(fastem.GaussianMixture, "partial_fit"):
            raise NotImplementedError("this fastem has no out-of-core/Dask support")

        self.tmp = tempfile.mkdtemp(prefix="fastem-asv-dask-")
        self.cluster = self.client = None
        stack = os.path.join(self.tmp, "X")
        rows = -(-n_samples // (self.blocks_per_worker * self.n_workers))
        with dask.config.set(scheduler="sync"):  # written here, not on the workers
            da.to_npy_stack(stack, da.from_array(X, chunks=(rows, n_features)))

        start = time.perf_counter()
        self.cluster = distributed.LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        )
        self.client = distributed.Client(self.cluster)
        self.client.wait_for_workers(self.n_workers)
        self.startup = time.perf_counter() - start

        self.dX = da.from_npy_stack(stack, mmap_mode=None).persist()
        distributed.wait(self.dX)
        # Load the kernels here and on the workers (numba's on-disk cache).
        self.estimator(max_iter=1).fit(X[:WARMUP_ROWS])
        model = self.estimator(max_iter=1).fit(self.dX)
        if not isinstance(model.predict(self.dX), da.Array):
            raise NotImplementedError("this fastem does not fit Dask arrays")

    def teardown(self, *args):
        client = getattr(self, "client", None)
        cluster = getattr(self, "cluster", None)
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
        if getattr(self, "tmp", None):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def estimator(self, max_iter=None):
        return fastem.GaussianMixture(
            self.n_components,
            covariance_type=self.covariance_type,
            tol=0.0,
            max_iter=self.n_iter if max_iter is None else max_iter,
            weights_init=self.init["weights"],
            means_init=self.init["means"],
            precisions_init=self.init["precisions"],
            random_state=0,
        )

    def time_fit_dask(self, *args):
        self.estimator().fit(self.dX)

    def time_fit_in_process(self, *args):
        self.estimator().fit(self.X)

    def track_cluster_startup(self, *args):
        return self.startup

    track_cluster_startup.unit = "seconds"
