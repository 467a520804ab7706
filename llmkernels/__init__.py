"""Triton fused kernels (RMSNorm, RoPE, SwiGLU, linear + cross-entropy, flash attention), imported by the model.

Each kernel module holds the Triton forward/backward, a ``torch.autograd.Function``, a pure-torch
reference beside it, and its sm_90 launch configurations (``compile_specs``). ``llmkernels.dispatch`` picks,
per call: Triton on CUDA tensors, Triton under the interpreter on CPU with ``TRITON_INTERPRET=1`` (tests),
otherwise the torch reference (plain CPU, and CPU under ``torch.compile``). ``llmkernels.modules`` has the
drop-in pieces for megatron-core's local layer spec.

The public functions share their modules' names, so ``llmkernels.rms_norm`` is the function: reach a module's
other names with ``from kernels.rms_norm import rms_norm_reference`` (not ``import kernels.rms_norm as m``).
Nothing here is compiled at import; ``TRITON_INTERPRET`` is read at each launch.
"""

from __future__ import annotations

from llmkernels.flash_attention import flash_attention
from llmkernels.fused_linear_ce import fused_linear_cross_entropy
from llmkernels.rms_norm import rms_norm
from llmkernels.rope import rope
from llmkernels.swiglu import swiglu, swiglu_glu

__all__ = ["flash_attention", "fused_linear_cross_entropy", "rms_norm", "rope", "swiglu", "swiglu_glu"]
