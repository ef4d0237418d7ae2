"""Compile options shared by every numba kernel (one place, overridable).

Environment variables
---------------------
FASTEM_CACHE
    ``0`` disables numba's on-disk cache (default ``1``).
FASTEM_FASTMATH
    ``0`` compiles without any fast-math flags (default ``1``).
FASTEM_WIDE_VECTORS
    ``0`` leaves the vector width to LLVM's tuning for the CPU (default
    ``1``: 512-bit vectors on AVX-512 CPUs, see :mod:`fastem._codegen`).

numba's on-disk cache does not know these settings: after changing one,
use a fresh ``NUMBA_CACHE_DIR`` (or ``FASTEM_CACHE=0``).

The fast-math flag set deliberately omits ``nnan`` and ``ninf``: the
log-sum-exp in every E-step relies on ``-inf`` propagating correctly for
components whose weight or density underflows.
"""

from __future__ import annotations

import os

try:
    from . import _codegen
except (ImportError, AttributeError):  # numba moved its compiler internals
    _codegen = None

CACHE: bool = os.environ.get("FASTEM_CACHE", "1") != "0"

FASTMATH: set[str] | bool = (
    {"nsz", "arcp", "contract", "afn", "reassoc"}
    if os.environ.get("FASTEM_FASTMATH", "1") != "0"
    else False
)

#: Helpers are only ever called from other compiled functions, so numba need
#: not build the wrappers that let Python (``no_cpython_wrapper``) or C
#: (``no_cfunc_wrapper``) call them: skipping them took 10-20 % off the
#: first full-covariance fit of a cold cache (alternated runs in a slow hour:
#: 7.7-8.7 s -> 6.7-7.4 s).  Call a helper from Python through a jitted
#: wrapper.
NO_WRAPPERS = {"no_cpython_wrapper": True, "no_cfunc_wrapper": True}

WIDE_VECTORS: bool = os.environ.get("FASTEM_WIDE_VECTORS", "1") != "0"

#: Compile with fastem's pipeline (:mod:`fastem._codegen`): helpers without
#: wrappers get neither a whole-module optimisation nor machine code of their
#: own (their callers link and optimise them), and every function lets LLVM use 512-bit vectors
#: on AVX-512 CPUs, where LLVM would otherwise prefer 256-bit ones (unless
#: ``FASTEM_WIDE_VECTORS=0``).  Every kernel and helper takes these options.
#: Without that pipeline (a numba whose internals it cannot build on), the
#: kernels compile with numba's own.
PIPELINE = (
    {}
    if _codegen is None
    else {
        "pipeline_class": _codegen.WideVectorCompiler
        if WIDE_VECTORS
        else _codegen.LinkOnlyHelperCompiler
    }
)

#: IEEE division, as numpy does it (``x / 0`` is ``inf`` or ``nan``).  numba's
#: default error model checks every division for a zero divisor in order to
#: raise ``ZeroDivisionError``; that branch keeps LLVM from vectorising any
#: loop that divides (the responsibilities' ``w / total``, the Student
#: log1p, :func:`fastem._kernels._math.log_simd`: 5.3 -> 0.45 ns per
#: logarithm).  No kernel divides by zero on valid input.
IEEE_DIVISION = {"error_model": "numpy"}

#: Options for the elementary functions (exponential, logarithm) that a
#: kernel's vectorised loops call: FMA contraction only, because
#: reassociating their range reductions costs up to 12 ulp.
CONTRACT_ONLY = {
    "cache": CACHE,
    "fastmath": {"contract"},
    "nogil": True,
    **NO_WRAPPERS,
    **IEEE_DIVISION,
    **PIPELINE,
}

#: Options for kernel entry points: serial over the tasks they claim from a
#: task queue, released from the GIL so that
#: :func:`fastem._parallel.run_tasks` runs them on several threads.
KERNEL = {
    "cache": CACHE,
    "fastmath": FASTMATH,
    "nogil": True,
    **IEEE_DIVISION,
    **PIPELINE,
}

#: Options for helpers that a model's kernels call from one place each
#: (small helpers, and the parts of a single E-step): numba inlines them into
#: the caller's IR, so they are never compiled on their own.  A helper
#: compiled separately costs numba's whole per-function pipeline plus an
#: optimisation of its own module that nothing uses (LLVM optimises it again
#: inside every caller).
SERIAL = {
    "cache": CACHE,
    "fastmath": FASTMATH,
    "nogil": True,
    "inline": "always",
    **IEEE_DIVISION,
    **PIPELINE,
}

#: Options for helpers that several kernels call: a model's log-density (its
#: E-step and its per-row kernel), the responsibilities (every E-step), the
#: block loaders and the large vectorised loops.  They are compiled once per
#: signature and linked into each caller, where LLVM inlines them; inlining
#: them in numba's IR instead would type them again in every caller (and
#: measurably slowed the spherical E-step's first-moment loop).
SHARED = {
    "cache": CACHE,
    "fastmath": FASTMATH,
    "nogil": True,
    **NO_WRAPPERS,
    **IEEE_DIVISION,
    **PIPELINE,
}

#: ``jit_options`` of fastem's ``@overload`` implementations.  numba compiles
#: those with its own defaults otherwise: a C wrapper, Python's division
#: semantics, and a whole-module optimisation plus machine code of their own
#: that no caller uses (a caller links their LLVM module into its own, as it
#: does a helper's).  Not cached: the callers that are cached hold the code.
OVERLOAD = {key: value for key, value in SHARED.items() if key != "cache"}
