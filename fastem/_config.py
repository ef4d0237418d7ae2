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

#: Options for kernel entry points: serial over a range of tasks, released
#: from the GIL so that :func:`fastem._parallel.run_tasks` runs them on
#: several threads.
KERNEL = {"cache": CACHE, "fastmath": FASTMATH, "nogil": True}

#: Options for serial helpers called from kernels (inlined by LLVM).
SERIAL = {"cache": CACHE, "fastmath": FASTMATH, "nogil": True}
