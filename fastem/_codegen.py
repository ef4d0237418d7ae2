"""A numba compiler pipeline whose functions may use the CPU's widest vectors.

LLVM tunes Intel's AVX-512 cores (Skylake-X through Sapphire Rapids, the
``rocketlake`` Xeon VMs) to prefer 256-bit vectors (the ``prefer-256-bit``
tuning flag), so numba-compiled loops use half the width of the registers.
numba can only turn the flag off for the whole process
(``NUMBA_CPU_FEATURES``, read once), which would change other libraries'
code.  LLVM also reads the preferred width from each function's
``"prefer-vector-width"`` attribute (clang's ``-mprefer-vector-width``) and
lets it override the CPU's tuning, so fastem's kernels set that attribute on
their own functions and nothing else changes.

On CPUs without AVX-512 the attribute changes nothing: LLVM never picks a
vector wider than the registers.  Measured on the AVX-512 Xeon VM (N = 10^6,
two threads, alternated in one process): see the README's performance
section.
"""

from __future__ import annotations

from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass
from numba.core.lowering import Lower
from numba.core.typed_passes import NativeLowering

#: The LLVM string attribute, written into each lowered function's IR.
PREFER_VECTOR_WIDTH = '"prefer-vector-width"="512"'


class _WideVectorLower(Lower):
    """numba's lowering, plus the preferred vector width on the function."""

    def pre_lower(self) -> None:
        super().pre_lower()
        # llvmlite's attribute set accepts only LLVM's enum attributes and
        # writes its members into the IR as they are, so the key-value
        # string attribute is added past its check.
        set.add(self.builder.function.attributes, PREFER_VECTOR_WIDTH)


@register_pass(mutates_CFG=True, analysis_only=False)
class WideVectorLowering(NativeLowering):
    """numba's native lowering pass with :class:`_WideVectorLower`."""

    _name = "fastem_wide_vector_lowering"

    @property
    def lowering_class(self) -> type[Lower]:
        return _WideVectorLower


class WideVectorCompiler(CompilerBase):
    """numba's nopython pipeline with :class:`WideVectorLowering` (pass it as
    ``pipeline_class`` to ``numba.njit``)."""

    def define_pipelines(self) -> list:
        pipeline = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pipeline.passes = [
            (WideVectorLowering, description)
            if pass_class is NativeLowering
            else (pass_class, description)
            for pass_class, description in pipeline.passes
        ]
        pipeline.finalize()
        return [pipeline]
