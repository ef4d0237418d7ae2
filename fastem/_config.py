"""Compile options shared by every numba kernel (one place, overridable).

Environment variables
---------------------
FASTEM_CACHE
    ``0`` disables numba's on-disk cache (default ``1``).
FASTEM_FASTMATH
    ``0`` compiles without any fast-math flags (default ``1``).

The fast-math flag set deliberately omits ``nnan`` and ``ninf``: the
log-sum-exp in every E-step relies on ``-inf`` propagating correctly for
components whose weight or density underflows.
"""

from __future__ import annotations

import os

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

#: IEEE division, as numpy does it (``x / 0`` is ``inf`` or ``nan``).  numba's
#: default error model checks every division for a zero divisor in order to
#: raise ``ZeroDivisionError``; that branch keeps LLVM from vectorising any
#: loop that divides (the responsibilities' ``w / total``, the Student
#: log1p, :func:`fastem._kernels._math.log_simd`: 5.3 -> 0.45 ns per
#: logarithm).  No kernel divides by zero on valid input.
IEEE_DIVISION = {"error_model": "numpy"}

#: Options for kernel entry points: serial over a range of tasks, released
#: from the GIL so that :func:`fastem._parallel.run_tasks` runs them on
#: several threads.
KERNEL = {"cache": CACHE, "fastmath": FASTMATH, "nogil": True, **IEEE_DIVISION}

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
}


def wide_vector_features(features: str) -> str | None:
    """``NUMBA_CPU_FEATURES`` that lets LLVM use 512-bit vectors, from a CPU's
    feature string (llvmlite's ``get_host_cpu_features().flatten()``).

    LLVM tunes Intel's AVX-512 cores to prefer 256-bit vectors (its
    ``prefer-256-bit`` tuning flag), so numba-compiled loops use half the
    width of the registers: on an AVX-512 Xeon VM (LLVM CPU ``rocketlake``)
    fits at N = 10^6 on two threads ran 11-24 % faster with the flag turned
    off (16x16 full 156.5 -> 118.2 ms per iteration, diag 47.7 -> 36.3,
    64x16 full 1,966 -> 1,642).  numba reads the features once per process,
    for all of its code, so this is the user's choice, set in the
    environment before numba compiles anything (``python -m fastem
    cpu-env`` prints it).

    Parameters
    ----------
    features : str
        Comma-separated LLVM features (``+avx512f,...``).

    Returns
    -------
    str or None
        ``features`` with ``-prefer-256-bit`` appended; None when the CPU has
        no AVX-512 or the flag is already off.
    """
    flags = [f.strip() for f in features.split(",") if f.strip()]
    if "+avx512f" not in flags or "-prefer-256-bit" in flags:
        return None
    return ",".join([*flags, "-prefer-256-bit"])
