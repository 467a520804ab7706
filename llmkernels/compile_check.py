"""Compile every kernel for sm_90 (H100/H200) without a GPU, in the launch configurations the dispatchers use.

``python -m llmkernels.compile_check`` prints one JSON line per configuration (name, ok, shared memory in
bytes, registers-free metadata, error) and exits non-zero on a compile error or shared memory over the
sm_90 limit. Run it without ``TRITON_INTERPRET`` (the test suite runs it in a subprocess).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

from llmkernels.dispatch import SM90_SHARED_MEMORY, CompileSpec

KERNEL_MODULES = ("rms_norm", "swiglu", "rope", "fused_linear_ce", "flash_attention")


def all_specs() -> list[CompileSpec]:
    """Every kernel's sm_90 launch configurations."""
    # import_module, not ``from llmkernels import ...``: the package binds these names to the functions
    modules = [importlib.import_module(f"llmkernels.{m}") for m in KERNEL_MODULES]
    return [s for mod in modules for s in mod.compile_specs()]


def compile_spec(spec: CompileSpec, capability: int = 90, warp_size: int = 32) -> dict[str, Any]:
    """Compile one configuration; returns its report (``ok``, ``shared``, ``error``)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t0 = time.perf_counter()
    try:
        src = ASTSource(spec.kernel.jit, spec.signature, spec.constexprs)
        compiled = triton.compile(src, target=GPUTarget("cuda", capability, warp_size),
                                  options={"num_warps": spec.num_warps, "num_stages": spec.num_stages})
        shared = int(compiled.metadata.shared)
        ok = shared <= SM90_SHARED_MEMORY
        error = None if ok else f"shared memory {shared} B > {SM90_SHARED_MEMORY} B"
    except Exception as e:  # the report names the failing configuration
        shared, ok, error = None, False, f"{type(e).__name__}: {str(e)[-2000:]}"
    return {"name": spec.name, "ok": ok, "shared": shared, "num_warps": spec.num_warps,
            "num_stages": spec.num_stages, "seconds": round(time.perf_counter() - t0, 2), "error": error}


def main(argv: list[str] | None = None) -> int:
    """Compile all (or the named) configurations; print JSON lines; 1 if any failed."""
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET to compile for sm_90", file=sys.stderr)
        return 2
    wanted = set(argv if argv is not None else sys.argv[1:])
    failed = 0
    for spec in all_specs():
        if wanted and not any(w in spec.name for w in wanted):
            continue
        report = compile_spec(spec)
        failed += not report["ok"]
        print(json.dumps(report), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
