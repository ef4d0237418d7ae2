"""fastem's compiler pipeline (:mod:`fastem._codegen`): kernels that may use
512-bit vectors (``FASTEM_WIDE_VECTORS=0`` turns that off) and helpers that
get no machine code of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit, typeof

import fastem
from fastem._codegen import (
    PREFER_VECTOR_WIDTH,
    LinkOnlyHelperCompiler,
    LinkOnlyLibrary,
    WideVectorCompiler,
)


def _host_has_avx512() -> bool:
    from llvmlite import binding

    binding.initialize_native_target()
    return "+avx512f" in binding.get_host_cpu_features().flatten().split(",")


def _weighted_sum(x, w):
    total = 0.0
    for i in range(x.shape[0]):
        total += x[i] * w[i]
    return total


def test_wide_vector_compiler_marks_the_function_and_computes_the_same():
    default = njit(fastmath=True)(_weighted_sum)
    wide = njit(fastmath=True, pipeline_class=WideVectorCompiler)(_weighted_sum)
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=1001), rng.normal(size=1001)
    expected = float(np.dot(x, w))
    assert wide(x, w) == pytest.approx(expected, rel=1e-12)
    assert default(x, w) == pytest.approx(expected, rel=1e-12)
    signature = wide.signatures[0]
    assert PREFER_VECTOR_WIDTH in wide.inspect_llvm(signature)
    assert PREFER_VECTOR_WIDTH not in default.inspect_llvm(default.signatures[0])
    if _host_has_avx512():
        assert "zmm" in wide.inspect_asm(signature)


def test_link_only_helper_has_no_machine_code_and_its_callers_compute_the_same():
    helper = njit(
        no_cpython_wrapper=True,
        no_cfunc_wrapper=True,
        pipeline_class=LinkOnlyHelperCompiler,
    )(_weighted_sum)

    @njit(pipeline_class=LinkOnlyHelperCompiler)
    def caller(x, w):
        return helper(x, w) + helper(w, x)

    rng = np.random.default_rng(1)
    x, w = rng.normal(size=257), rng.normal(size=257)
    argument_types = (typeof(x), typeof(w))
    helper.compile(argument_types)
    helper_result = helper.overloads[argument_types]
    library = helper_result.library
    assert isinstance(library, LinkOnlyLibrary)
    engine = library._codegen._engine
    assert not engine.is_symbol_defined(helper_result.fndesc.mangled_name)
    assert caller(x, w) == pytest.approx(2 * float(np.dot(x, w)), rel=1e-12)
    assert not isinstance(
        caller.overloads[caller.signatures[0]].library, LinkOnlyLibrary
    )


_FIT = """
import json
import numpy as np
import fastem
from fastem._codegen import PREFER_VECTOR_WIDTH
from fastem._kernels import gaussian
X = np.random.default_rng(3).normal(size=(3000, 5)) * [1, 2, 3, 4, 5]
gm = fastem.GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
kernel = gaussian.estep_full
marked = PREFER_VECTOR_WIDTH in kernel.inspect_llvm(kernel.signatures[0])
print(json.dumps({"means": gm.means_.tolist(), "lower_bound": gm.lower_bound_,
                  "marked": marked}))
"""


def _fit_in_fresh_process(cache_dir, wide_vectors: str) -> dict:
    env = dict(os.environ)
    env["FASTEM_WIDE_VECTORS"] = wide_vectors
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastem.__file__))
    done = subprocess.run(
        [sys.executable, "-c", _FIT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=cache_dir,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("wide_vectors", ["1", "0"])
def test_kernels_carry_the_attribute_unless_turned_off_and_fit_the_same(
    tmp_path, wide_vectors
):
    """A fresh process and cache: the full-covariance E-step carries the
    attribute only when ``FASTEM_WIDE_VECTORS`` is not ``0``, and the model
    is the same up to the rounding of a different vector width."""
    fitted = _fit_in_fresh_process(tmp_path, wide_vectors)
    assert fitted["marked"] is (wide_vectors == "1")
    X = np.random.default_rng(3).normal(size=(3000, 5)) * [1, 2, 3, 4, 5]
    gm = fastem.GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
    np.testing.assert_allclose(fitted["means"], gm.means_, rtol=1e-9, atol=1e-12)
    assert fitted["lower_bound"] == pytest.approx(gm.lower_bound_, rel=1e-12)


_FIT_AND_REPORT_CACHE = """
import json, sys
import numpy as np
import fastem
from fastem._kernels import _blocks
X = np.random.default_rng(4).normal(size=(3000, 6)) * [1, 2, 3, 1, 2, 3]
gm = fastem.GaussianMixture(3, covariance_type=sys.argv[1], random_state=0).fit(X)
helper = _blocks.row_log_sum_exp
jit_functions = [
    f.name
    for cres in helper.overloads.values()
    for f in cres.library._final_module.functions
    if not f.is_declaration
]
print(json.dumps({"means": gm.means_.tolist(), "lower_bound": gm.lower_bound_,
                  "helper_from_cache": sum(helper.stats.cache_hits.values()),
                  "helper_jit_functions": jit_functions}))
"""


def test_a_helper_cached_by_one_process_links_into_a_new_kernel_in_the_next(
    tmp_path,
):
    """The tied fit caches the shared helpers (their modules for
    linking, having no machine code); the diag fit in a second process loads
    them from the cache to link into its own E-step, and fits the same model
    as this process.  The loaded helper adds no functions of its own to the
    JIT: the E-step's calls to it must bind to the E-step's optimised copy
    (binding to code made from the cached module ran 2x8 fits 5x slower)."""
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(fastem.__file__))
    reports = []
    # Not spherical first: with six features it runs the diag kernels.
    for covariance_type in ("tied", "diag"):
        done = subprocess.run(
            [sys.executable, "-c", _FIT_AND_REPORT_CACHE, covariance_type],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
        )
        reports.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert reports[0]["helper_from_cache"] == 0
    assert reports[1]["helper_from_cache"] > 0
    assert reports[1]["helper_jit_functions"] == []
    X = np.random.default_rng(4).normal(size=(3000, 6)) * [1, 2, 3, 1, 2, 3]
    gm = fastem.GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    np.testing.assert_allclose(reports[1]["means"], gm.means_, rtol=1e-12, atol=1e-12)
    assert reports[1]["lower_bound"] == pytest.approx(gm.lower_bound_, rel=1e-12)
