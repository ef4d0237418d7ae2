"""``python -m fastem cpu-env``: the NUMBA_CPU_FEATURES that allow 512-bit
vectors, and a fit compiled with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastem
from fastem.__main__ import main
from fastem._config import wide_vector_features


def test_wide_vector_features_turns_off_the_256_bit_preference():
    features = "+64bit,+avx2,+avx512f,+fma"
    assert wide_vector_features(features) == features + ",-prefer-256-bit"
    # Spaces and empty entries are dropped; the order is kept.
    assert wide_vector_features(" +avx512f, ,+fma") == "+avx512f,+fma,-prefer-256-bit"


@pytest.mark.parametrize(
    "features",
    ["+64bit,+avx2,+fma", "+avx2,-avx512f", "+avx512f,-prefer-256-bit", ""],
)
def test_wide_vector_features_leaves_other_cpus_alone(features):
    assert wide_vector_features(features) is None


def test_cpu_env_prints_an_export_line(monkeypatch, capsys):
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2,+avx512f")
    assert main(["cpu-env"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == "export NUMBA_CPU_FEATURES=+avx2,+avx512f,-prefer-256-bit"
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2,+fma")
    assert main(["cpu-env"]) == 0
    assert capsys.readouterr().out.startswith("# nothing to set")


def _host_features() -> str:
    from llvmlite import binding

    binding.initialize_native_target()
    return binding.get_host_cpu_features().flatten()


_FIT = """
import json, sys
import numpy as np
import fastem
X = np.random.default_rng(3).normal(size=(3000, 5)) * [1, 2, 3, 4, 5]
gm = fastem.GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
print(json.dumps({"means": gm.means_.tolist(), "lower_bound": gm.lower_bound_}))
"""


@pytest.mark.skipif(
    wide_vector_features(_host_features()) is None,
    reason="the host has no AVX-512 (or already allows 512-bit vectors)",
)
def test_a_fit_compiled_for_512_bit_vectors_matches(tmp_path):
    """The documented setting compiles (a fresh cache) and fits the same
    model, up to the rounding of a different vector width."""
    env = dict(os.environ)
    env["NUMBA_CPU_FEATURES"] = wide_vector_features(_host_features())
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastem.__file__))
    done = subprocess.run(
        [sys.executable, "-c", _FIT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    wide = json.loads(done.stdout.strip().splitlines()[-1])
    X = np.random.default_rng(3).normal(size=(3000, 5)) * [1, 2, 3, 4, 5]
    gm = fastem.GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
    np.testing.assert_allclose(wide["means"], gm.means_, rtol=1e-9, atol=1e-12)
    assert wide["lower_bound"] == pytest.approx(gm.lower_bound_, rel=1e-12)
