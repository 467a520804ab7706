"""The decoder layer spec: megatron-core's local layers with SDPA attention, or Transformer Engine.

On CPU (and on GPUs without Transformer Engine) the layer is megatron-core's local spec with two
modules swapped in: ``SDPAttention`` (``F.scaled_dot_product_attention``: flash/efficient kernels on
GPU, the fast CPU flash path, GQA without copying K/V) and ``RMSNorm`` (a plain norm whose weight is
tagged ``sequence_parallel`` so megatron all-reduces its gradient over the TP group, which the local
``WrappedTorchNorm`` refuses to do). With Transformer Engine installed and a GPU present, TE's spec.

The ``kernels`` config switches put the Triton kernels of ``llmkernels.modules`` into the local spec (any
switch on selects it): ``FusedRMSNorm`` for the three norms, ``FusedSwiGLU`` as the MLP's activation
module (megatron calls it once on the ``[gate | up]`` fc1 output when the TransformerConfig has
``use_te_activation_func=True``; ``engine.model`` sets that), ``FlashCoreAttention`` as core attention,
and RoPE through :func:`install_kernels_rope` (see there). The fused output layer + cross-entropy is a
model-level switch (``engine.model``). Parameter names and shapes do not change with the switches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_config import TransformerConfig

from engine.config import KernelsConfig


class RMSNorm(torch.nn.Module):
    """RMSNorm over the last dimension; weight marked for megatron's sequence-parallel grad all-reduce."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, **_: Any) -> None:
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=config.params_dtype))
        self.weight.sequence_parallel = config.sequence_parallel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class SDPAttention(MegatronModule):
    """Causal core attention on ``F.scaled_dot_product_attention``, same interface as DotProductAttention.

    Takes ``[s, b, heads, head_dim]`` query and ``[s, b, groups, head_dim]`` key/value for this TP rank
    and returns ``[s, b, heads * head_dim]``.
    """

    def __init__(self, config: TransformerConfig, layer_number: int, attn_mask_type: Any,
                 attention_type: str, attention_dropout: float | None = None,
                 softmax_scale: float | None = None, **_: Any) -> None:
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("SDPAttention does not support context parallelism")
        self.attn_mask_type = attn_mask_type
        self.softmax_scale = softmax_scale or 1.0 / math.sqrt(config.kv_channels)
        self.dropout = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None, attn_mask_type: Any = None,
                attention_bias: Any = None, packed_seq_params: Any = None) -> torch.Tensor:
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("SDPAttention supports neither packed sequences nor attention bias")
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, d]
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, scale=self.softmax_scale, enable_gqa=q.shape[1] != k.shape[1],
            dropout_p=self.dropout if self.training else 0.0,
        )
        s, b = query.shape[0], query.shape[1]
        return out.permute(2, 0, 1, 3).reshape(s, b, -1)


def have_transformer_engine() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available()


def _norm(kernels: KernelsConfig) -> type[torch.nn.Module]:
    if kernels.rms_norm:
        from llmkernels.modules import FusedRMSNorm

        return FusedRMSNorm
    return RMSNorm


def layer_spec(backend: str = "auto", kernels: KernelsConfig | None = None) -> ModuleSpec:
    """The spec of one decoder layer for ``backend`` (auto | sdpa | te) and the ``kernels`` switches."""
    kernels = kernels or KernelsConfig()
    if not kernels.enabled() and (backend == "te" or (backend == "auto" and have_transformer_engine())):
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        return get_gpt_layer_with_transformer_engine_spec()  # TE norms follow config.normalization
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    sub = spec.submodules
    sub.input_layernorm = _norm(kernels)
    sub.pre_mlp_layernorm = _norm(kernels)
    sub.self_attention.submodules.core_attention = SDPAttention
    if kernels.flash_attention:
        from llmkernels.modules import FlashCoreAttention

        sub.self_attention.submodules.core_attention = FlashCoreAttention
    if kernels.swiglu:  # takes effect with TransformerConfig.use_te_activation_func=True (engine.model)
        from llmkernels.modules import FusedSwiGLU

        sub.mlp.submodules.activation_func = ModuleSpec(module=FusedSwiGLU)
    return spec


def block_spec(config: TransformerConfig, backend: str = "auto", vp_stage: int | None = None,
               kernels: KernelsConfig | None = None) -> Any:
    """This pipeline stage's layers plus the final norm (RMSNorm, FusedRMSNorm, or TE's with TE layers)."""
    kernels = kernels or KernelsConfig()
    spec = layer_spec(backend, kernels)
    norm: Any = _norm(kernels)
    if spec.submodules.input_layernorm is not norm:
        from megatron.core.extensions.transformer_engine import TENorm

        norm = TENorm
    layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[spec] * layers, layer_norm=norm)


_megatron_rope: Callable[..., torch.Tensor] | None = None  # attention.apply_rotary_pos_emb before install


def _rope(t: torch.Tensor, freqs: torch.Tensor, config: TransformerConfig, cu_seqlens: torch.Tensor | None = None,
          mscale: float = 1.0, cp_group: Any = None) -> torch.Tensor:
    """megatron's RoPE entry point: the Triton kernel for configs with ``kernels_rope``, else megatron's own."""
    if getattr(config, "kernels_rope", False):
        from llmkernels.modules import apply_rotary_pos_emb

        fn: Callable[..., torch.Tensor] = apply_rotary_pos_emb
    else:
        assert _megatron_rope is not None
        fn = _megatron_rope
    return fn(t, freqs, config, cu_seqlens=cu_seqlens, mscale=mscale, cp_group=cp_group)


def install_kernels_rope() -> None:
    """Route megatron's attention RoPE through :func:`_rope` (idempotent; called when ``kernels.rope`` is on).

    ``megatron.core.transformer.attention`` looks ``apply_rotary_pos_emb`` up as a module global at each
    call, so there is no per-module hook: the global is replaced once per process by a dispatcher that
    reads the flag ``kernels_rope`` of the calling attention's TransformerConfig (``engine.model``). Models
    built with the switch off call megatron's original function with the same arguments, so several
    models in one process, kernels on and off, each keep their own behaviour (activation recomputation
    included, which a context manager around the forward would miss).
    """
    global _megatron_rope
    from megatron.core.transformer import attention

    if attention.apply_rotary_pos_emb is _rope:
        return
    _megatron_rope = attention.apply_rotary_pos_emb
    attention.apply_rotary_pos_emb = _rope
