"""Choose where a kernel runs: Triton on CUDA, Triton under the interpreter on CPU, or the torch reference.

The rule, per call, from the input tensors:

* CUDA tensors → the compiled Triton kernel;
* CPU tensors with ``TRITON_INTERPRET=1`` (the test suite) → the same Triton kernel under the interpreter;
* CPU tensors otherwise, or while ``torch.compile`` traces on CPU → the pure-torch reference (interpreted
  kernels cannot be traced, and inductor fuses the reference well on CPU).

Each kernel is wrapped in :class:`Kernel`, which builds the compiled (``JITFunction``) and the
interpreted (``InterpretedFunction``) variants lazily, so *our* modules may be imported before or after
``TRITON_INTERPRET`` is set. Triton itself is not so forgiving: its ``tl.*`` helpers are built when
``triton`` is first imported, and the interpreter only works if ``TRITON_INTERPRET=1`` was set by then
(else: "Cannot call @triton.jit'd outside of the scope of a kernel"). Set it before anything imports
triton (megatron-core does): ``tests/kernels/conftest.py`` sets it at import, and the engine's kernel
test runs its training in a worker process started with it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

# sm_90 (H100/H200) limits used to size launches and checked by the compile test.
SM90_SHARED_MEMORY = 232_448


def interpret_enabled() -> bool:
    """Whether ``TRITON_INTERPRET=1`` is set now."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _compiling() -> bool:
    return bool(torch.compiler.is_compiling())


def backend(*tensors: torch.Tensor) -> str:
    """``"triton"`` (CUDA), ``"interpret"`` (CPU + TRITON_INTERPRET=1) or ``"reference"`` for these inputs."""
    device = tensors[0].device
    if device.type == "cuda":
        return "triton"
    if device.type == "cpu" and interpret_enabled() and not _compiling():
        return "interpret"
    return "reference"


def use_triton(*tensors: torch.Tensor) -> bool:
    """True when the Triton kernel (compiled or interpreted) should run on these inputs."""
    return backend(*tensors) != "reference"


def interpreting(t: torch.Tensor) -> bool:
    """True when a kernel launched on ``t`` runs under the interpreter (CPU tensor)."""
    return t.device.type != "cuda"


class Kernel:
    """A ``@triton.jit``-style kernel whose compiled and interpreted variants are built on first use."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._jit: Any = None
        self._interpreted: Any = None

    @property
    def jit(self) -> Any:
        """The compiled variant (a ``triton.runtime.jit.JITFunction``), as ``ASTSource`` expects."""
        if self._jit is None:
            from triton.runtime.jit import JITFunction

            self._jit = JITFunction(self.fn)
        return self._jit

    @property
    def interpreted(self) -> Any:
        """The variant that runs on CPU tensors with numpy."""
        if self._interpreted is None:
            from triton.runtime.interpreter import InterpretedFunction

            self._interpreted = InterpretedFunction(self.fn)
        return self._interpreted

    def on(self, t: torch.Tensor) -> Any:
        """The variant for tensors on ``t``'s device; index it with the grid, then call it."""
        return self.interpreted if interpreting(t) else self.jit


def kernel(fn: Callable[..., Any]) -> Kernel:
    """Decorator: mark ``fn`` as a Triton kernel (like ``@triton.jit``, but device-aware and lazy)."""
    return Kernel(fn)


@dataclass
class CompileSpec:
    """One launch configuration a dispatcher uses on sm_90, for the no-GPU compile test."""

    name: str
    kernel: Kernel
    signature: dict[str, str]
    constexprs: dict[str, Any] = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 3


def triton_dtype(dtype: torch.dtype) -> str:
    """Triton's name of a torch dtype, for compile signatures."""
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.int64: "i64",
            torch.int32: "i32"}[dtype]


def next_pow2(n: int) -> int:
    """Smallest power of two ≥ ``n`` (≥ 1)."""
    return 1 << max(0, (int(n) - 1).bit_length())
