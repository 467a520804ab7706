"""The decoder layer spec: megatron-core's local layers with SDPA attention, or Transformer Engine.

On CPU (and on GPUs without Transformer Engine) the layer is megatron-core's local spec with two
modules swapped in: ``SDPAttention`` (``F.scaled_dot_product_attention``: flash/efficient kernels on
GPU, the fast CPU flash path, GQA without copying K/V) and ``RMSNorm`` (a plain norm whose weight is
tagged ``sequence_parallel`` so megatron all-reduces its gradient over the TP group, which the local
``WrappedTorchNorm`` refuses to do). With Transformer Engine installed and a GPU present, TE's spec.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_config import TransformerConfig


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


def layer_spec(backend: str = "auto") -> ModuleSpec:
    """The spec of one decoder layer for ``backend`` (auto | sdpa | te)."""
    if backend == "te" or (backend == "auto" and have_transformer_engine()):
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        return get_gpt_layer_with_transformer_engine_spec()  # TE norms follow config.normalization
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    sub = spec.submodules
    sub.input_layernorm = RMSNorm
    sub.pre_mlp_layernorm = RMSNorm
    sub.self_attention.submodules.core_attention = SDPAttention
    return spec


def block_spec(config: TransformerConfig, backend: str = "auto", vp_stage: int | None = None) -> Any:
    """This pipeline stage's layers plus the final norm (RMSNorm, or TE's with TE layers)."""
    spec = layer_spec(backend)
    norm: Any = RMSNorm
    if spec.submodules.input_layernorm is not RMSNorm:
        from megatron.core.extensions.transformer_engine import TENorm

        norm = TENorm
    layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[spec] * layers, layer_norm=norm)
