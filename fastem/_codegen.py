"""fastem's numba compiler pipeline: numba's nopython passes with a lowering
step that changes two things for fastem's own functions only.

Wide vectors
    LLVM tunes Intel's AVX-512 cores (Skylake-X through Sapphire Rapids, the
    ``rocketlake`` Xeon VMs) to prefer 256-bit vectors (the ``prefer-256-bit``
    tuning flag), so numba-compiled loops use half the width of the
    registers.  numba can only turn the flag off for the whole process
    (``NUMBA_CPU_FEATURES``, read once), which would change other libraries'
    code.  LLVM also reads the preferred width from each function's
    ``"prefer-vector-width"`` attribute (clang's ``-mprefer-vector-width``)
    and lets it override the CPU's tuning, so :class:`WideVectorCompiler`
    sets that attribute on fastem's functions and nothing else changes.  On
    CPUs without AVX-512 the attribute changes nothing: LLVM never picks a
    vector wider than the registers.

Helpers that are only linked
    A function compiled without the wrappers that let Python or C call it
    (``no_cpython_wrapper`` and ``no_cfunc_wrapper``: fastem's helpers) can
    only be called from other compiled functions, which link its LLVM module
    into their own and optimise the whole again.  numba still optimises the
    helper's module on its own and generates its machine code, and neither
    is ever used.  :class:`LinkOnlyLibrary` skips both.  It keeps numba's
    function-level passes on the helper: without them the callers' code came
    out slower (diag E-step +8-11 % at D = 16 and 64).  The on-disk cache
    keeps a helper's module for linking and no machine code of it
    (:meth:`LinkOnlyLibrary.serialize_using_object_code`).

Both rely on numba's compiler internals (checked on numba 0.60.0 and 0.68.1);
:mod:`fastem._config` falls back to numba's own pipeline if this module
cannot be built on the installed numba.
"""

from __future__ import annotations

from llvmlite.binding import parse_assembly
from numba.core.codegen import JITCodeLibrary
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import register_pass
from numba.core.lowering import Lower
from numba.core.typed_passes import NativeLowering

#: The LLVM string attribute, written into each lowered function's IR.
PREFER_VECTOR_WIDTH = '"prefer-vector-width"="512"'

#: How numba names the global that holds a function's environment pointer.
_ENVIRONMENT_PREFIX = "_ZN08NumbaEnv"

# The parts of numba's code library that LinkOnlyLibrary builds on; if one
# moves, importing this module fails and fastem uses numba's own pipeline.
for _internal in (
    "_optimize_final_module",
    "_finalize_final_module",
    "_finalize_dynamic_globals",
    "_verify_declare_only_symbols",
    "_ensure_finalized",
    "_get_module_for_linking",
    "serialize_using_object_code",
):
    if not callable(getattr(JITCodeLibrary, _internal, None)):
        raise ImportError(f"numba's JITCodeLibrary has no {_internal}")


class _CodegenWithoutEnvironment:
    """numba's code generator, except that it does not store a function's
    environment: that lives in the function's own machine code, which a
    :class:`LinkOnlyLibrary` does not generate."""

    def __init__(self, codegen) -> None:
        self._codegen = codegen

    def __getattr__(self, name: str):
        return getattr(self._codegen, name)

    def set_env(self, env_name: str, env) -> None:
        pass


class LinkOnlyLibrary(JITCodeLibrary):
    """The code library of a function that only other compiled functions
    call: finalising it links its dependencies but neither optimises the
    module as a whole nor generates machine code, because every caller links
    the module into its own and optimises the whole."""

    @property
    def codegen(self):
        return _CodegenWithoutEnvironment(self._codegen)

    def _optimize_final_module(self) -> None:
        pass

    def _finalize_final_module(self) -> None:
        self._finalize_dynamic_globals()
        self._verify_declare_only_symbols()
        self._finalized = True

    def serialize_using_object_code(self):
        """numba's cache entry: the module for linking, as numba stores it,
        with object code that defines the function's environment globals
        only.

        A process that loads the helper from the cache then links the
        module into new kernels without adding the helper's own machine code
        to the JIT.  Machine code for it made from the cached module (which
        had no module-level optimisation) would be slow, and a kernel that
        calls the helper, rather than inlining it, would bind to that code:
        the kernel's own copy of the helper has weak (``linkonce_odr``)
        linkage, and the JIT binds a weak symbol to its first definition.
        """
        self._ensure_finalized()
        environments = "".join(
            f'@"{gv.name}" = common global i8* null\n'
            for gv in self._final_module.global_variables
            if not gv.is_declaration and gv.name.startswith(_ENVIRONMENT_PREFIX)
        )
        env_module = parse_assembly(environments)
        env_module.triple = self._final_module.triple
        env_module.data_layout = self._final_module.data_layout
        object_code = self._codegen._tm.emit_object(env_module)
        linkable = self._get_module_for_linking().as_bitcode()
        return (self.name, "object", (object_code, linkable))


@register_pass(mutates_CFG=True, analysis_only=False)
class LinkOnlyHelperLowering(NativeLowering):
    """numba's native lowering pass, with a :class:`LinkOnlyLibrary` for
    functions compiled without wrappers."""

    _name = "fastem_link_only_helper_lowering"

    def run_pass(self, state) -> bool:
        flags = state.flags
        if (
            state.library is None
            and flags.no_cpython_wrapper
            and flags.no_cfunc_wrapper
        ):
            codegen = state.targetctx.codegen()
            state.library = LinkOnlyLibrary(codegen, state.func_id.func_qualname)
            state.library.enable_object_caching()
        return super().run_pass(state)


class _WideVectorLower(Lower):
    """numba's lowering, plus the preferred vector width on the function."""

    def pre_lower(self) -> None:
        super().pre_lower()
        # llvmlite's attribute set accepts only LLVM's enum attributes and
        # writes its members into the IR as they are, so the key-value
        # string attribute is added past its check.
        set.add(self.builder.function.attributes, PREFER_VECTOR_WIDTH)


@register_pass(mutates_CFG=True, analysis_only=False)
class WideVectorLowering(LinkOnlyHelperLowering):
    """:class:`LinkOnlyHelperLowering` with :class:`_WideVectorLower`."""

    _name = "fastem_wide_vector_lowering"

    @property
    def lowering_class(self) -> type[Lower]:
        return _WideVectorLower


def _nopython_pipeline_with(state, lowering_pass) -> list:
    pipeline = DefaultPassBuilder.define_nopython_pipeline(state)
    pipeline.passes = [
        (lowering_pass, description)
        if pass_class is NativeLowering
        else (pass_class, description)
        for pass_class, description in pipeline.passes
    ]
    pipeline.finalize()
    return [pipeline]


class LinkOnlyHelperCompiler(CompilerBase):
    """numba's nopython pipeline with :class:`LinkOnlyHelperLowering` (pass
    it as ``pipeline_class`` to ``numba.njit``)."""

    def define_pipelines(self) -> list:
        return _nopython_pipeline_with(self.state, LinkOnlyHelperLowering)


class WideVectorCompiler(CompilerBase):
    """numba's nopython pipeline with :class:`WideVectorLowering`: link-only
    helpers and 512-bit vectors (pass it as ``pipeline_class`` to
    ``numba.njit``)."""

    def define_pipelines(self) -> list:
        return _nopython_pipeline_with(self.state, WideVectorLowering)
