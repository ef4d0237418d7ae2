"""Start-up costs in a fresh interpreter: ``import fastem`` and the first fit.

Each sample is a new process (asv's ``timeraw_``).  The first fit uses the
defaults a new user gets (k-means initialisation), so it compiles or loads
every kernel such a fit needs:

* ``cold``: ``NUMBA_CACHE_DIR`` is a fresh empty directory, so the sample
  includes compiling the kernels (DESIGN.md: 6-15 s per kernel);
* ``warm``: ``NUMBA_CACHE_DIR`` is a directory filled beforehand, in an
  untimed subprocess, by the same fit of the same fastem sources (the
  directory is named by a hash of them), so the sample includes loading
  the kernels from disk only (DESIGN.md: well under a second).
"""

from __future__ import annotations

import os
import tempfile
import textwrap

from .common import fastem_source_hash

_FIT = textwrap.dedent(
    """
    import warnings
    import numpy as np
    import fastem
    warnings.simplefilter("ignore")
    X = np.random.default_rng(0).standard_normal((10_000, 8))
    model = fastem.GaussianMixture(8, covariance_type={cov!r}, max_iter=10, tol=0.0,
                                   random_state=0)
    """
)

_SETUP_COLD = textwrap.dedent(
    """
    import atexit, os, shutil, tempfile
    cache = tempfile.mkdtemp(prefix="fastem-asv-cold-")
    atexit.register(shutil.rmtree, cache, True)
    os.environ["NUMBA_CACHE_DIR"] = cache
    """
)

_SETUP_WARM = textwrap.dedent(
    """
    import os, subprocess, sys
    os.environ["NUMBA_CACHE_DIR"] = {cache!r}
    os.makedirs({cache!r}, exist_ok=True)
    marker = os.path.join({cache!r}, "{cov}.done")
    if not os.path.exists(marker):
        code = bytes.fromhex("{warm_hex}").decode()
        subprocess.run([sys.executable, "-c", code], check=True)
        open(marker, "w").close()
    """
)


def timeraw_import_fastem():
    return "import fastem"


timeraw_import_fastem.repeat = (3, 10, 10.0)


class FirstFit:
    """First ``GaussianMixture(8).fit`` of 10,000 x 8 rows in a new process."""

    params = [["full", "diag", "spherical", "tied"]]
    param_names = ["covariance_type"]
    number = 1
    timeout = 600

    def timeraw_first_fit_cold_cache(self, cov):
        fit = _FIT.format(cov=cov)
        return "model.fit(X)", _SETUP_COLD + fit

    timeraw_first_fit_cold_cache.repeat = (1, 2, 60.0)

    def timeraw_first_fit_warm_cache(self, cov):
        fit = _FIT.format(cov=cov)
        # Named by the sources, so that another commit gets its own cache.
        cache = os.path.join(
            tempfile.gettempdir(), "fastem-asv-warm-" + fastem_source_hash()
        )
        warm_hex = (fit + "model.fit(X)\n").encode().hex()
        setup = _SETUP_WARM.format(cache=cache, cov=cov, warm_hex=warm_hex)
        return "model.fit(X)", setup + fit

    timeraw_first_fit_warm_cache.repeat = (3, 10, 20.0)
