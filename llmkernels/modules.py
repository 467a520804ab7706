"""Drop-in pieces for megatron-core's local layer spec, backed by the kernels (see each class for the hook).

* :class:`FusedRMSNorm` — the ``input_layernorm`` / ``pre_mlp_layernorm`` / ``final_layernorm`` module
  (megatron's norm constructor ``(config, hidden_size, eps)``; parameter ``weight`` as in
  ``torch.nn.RMSNorm``, so checkpoints are interchangeable; tagged ``sequence_parallel``).
* :class:`FusedSwiGLU` — ``MLPSubmodules.activation_func``: megatron's ``MLP`` calls it on the whole fc1
  output ``[gate | up]`` when ``config.use_te_activation_func`` is true.
* :func:`apply_rotary_pos_emb` — the signature of megatron's ``rope_utils.apply_rotary_pos_emb``, using
  :func:`llmkernels.rope` for the plain ``bshd`` case and megatron's own code otherwise;
  :func:`patch_megatron_rope` installs it where ``megatron.core.transformer.attention`` looks it up.
* :class:`FlashCoreAttention` — a ``core_attention`` module (megatron's ``DotProductAttention`` interface).
* :func:`language_model_loss` — per-token ``[b, s]`` losses from the final hidden states and the output
  weight, for a GPTModel whose output layer is bypassed when labels are given.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch

from llmkernels.flash_attention import flash_attention
from llmkernels.fused_linear_ce import fused_linear_cross_entropy
from llmkernels.rms_norm import rms_norm
from llmkernels.rope import rope
from llmkernels.swiglu import swiglu_glu


class FusedRMSNorm(torch.nn.Module):
    """RMSNorm on :func:`llmkernels.rms_norm`, built like megatron's norms: ``FusedRMSNorm(config, hidden_size, eps)``."""

    def __init__(self, config: Any, hidden_size: int, eps: float = 1e-5, **_: Any) -> None:
        super().__init__()
        if getattr(config, "normalization", "RMSNorm") != "RMSNorm":
            raise ValueError(f"FusedRMSNorm implements RMSNorm, config asks for {config.normalization}")
        if getattr(config, "layernorm_zero_centered_gamma", False):
            raise ValueError("FusedRMSNorm does not implement zero-centered gamma")
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.ones(hidden_size, dtype=getattr(config, "params_dtype", None)))
        # megatron all-reduces the grads of params tagged so over the TP group under sequence parallelism
        self.weight.sequence_parallel = bool(getattr(config, "sequence_parallel", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class FusedSwiGLU(torch.nn.Module):
    """``silu(gate) * up`` of megatron's fused fc1 output ``[..., 2·ffn]`` → ``[..., ffn]`` in one kernel."""

    def __init__(self, config: Any = None, **_: Any) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu_glu(x)

    def sharded_state_dict(self, prefix: str = "", sharded_offsets: tuple = (),
                           metadata: dict | None = None) -> dict:
        """megatron's ``MLP.sharded_state_dict`` asks every child for one: parameter-free, so empty."""
        return {}


def apply_rotary_pos_emb(t: torch.Tensor, freqs: torch.Tensor, config: Any, cu_seqlens: torch.Tensor | None = None,
                         mscale: float = 1.0, cp_group: Any = None) -> torch.Tensor:
    """megatron's ``apply_rotary_pos_emb`` with the Triton kernel for ``t`` ``[s, b, h, d]``, ``freqs``
    ``[s, 1, 1, rot]``, non-interleaved RoPE; packed (``cu_seqlens``), interleaved and MLA fall back."""
    if (cu_seqlens is None and not getattr(config, "rotary_interleaved", False)
            and not getattr(config, "multi_latent_attention", False) and freqs.shape[0] == t.shape[0]
            and freqs[0].numel() == freqs.shape[-1]):
        f = freqs.float()
        return rope(t, torch.cos(f) * mscale, torch.sin(f) * mscale)
    from megatron.core.models.common.embeddings import rope_utils

    return rope_utils.apply_rotary_pos_emb(t, freqs, config, cu_seqlens=cu_seqlens, mscale=mscale,
                                           cp_group=cp_group)


@contextlib.contextmanager
def patch_megatron_rope() -> Iterator[None]:
    """Within the block, megatron's attention applies RoPE with :func:`apply_rotary_pos_emb` above."""
    from megatron.core.transformer import attention

    original = attention.apply_rotary_pos_emb
    attention.apply_rotary_pos_emb = apply_rotary_pos_emb
    try:
        yield
    finally:
        attention.apply_rotary_pos_emb = original


class FlashCoreAttention(torch.nn.Module):
    """Causal core attention on :func:`llmkernels.flash_attention` (megatron ``DotProductAttention`` interface).

    Takes query ``[s, b, heads, d]`` and key/value ``[s, b, groups, d]`` for this TP rank and returns
    ``[s, b, heads·d]``. No dropout, packed sequences, attention bias or context parallelism.
    """

    def __init__(self, config: Any, layer_number: int, attn_mask_type: Any, attention_type: str,
                 attention_dropout: float | None = None, softmax_scale: float | None = None, **_: Any) -> None:
        super().__init__()
        self.config = config
        dropout = config.attention_dropout if attention_dropout is None else attention_dropout
        if dropout or getattr(config, "context_parallel_size", 1) != 1:
            raise ValueError("FlashCoreAttention supports neither attention dropout nor context parallelism")
        self.softmax_scale = softmax_scale or 1.0 / math.sqrt(config.kv_channels)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: torch.Tensor | None = None, attn_mask_type: Any = None,
                attention_bias: Any = None, packed_seq_params: Any = None) -> torch.Tensor:
        if packed_seq_params is not None or attention_bias is not None:
            raise ValueError("FlashCoreAttention supports neither packed sequences nor attention bias")
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))  # [b, heads, s, d]
        out = flash_attention(q, k, v, causal=True, scale=self.softmax_scale)
        s, b = query.shape[0], query.shape[1]
        return out.permute(2, 0, 1, 3).reshape(s, b, -1)


def language_model_loss(hidden_states: torch.Tensor, output_weight: torch.Tensor, labels: torch.Tensor,
                        ignore_index: int = -100) -> torch.Tensor:
    """What ``GPTModel`` returns with labels — per-token fp32 losses ``[b, s]`` — from the final (normed)
    hidden states ``[s, b, h]`` and the output weight ``[V, h]``, without materialising the logits.
    Needs the whole vocabulary on this rank (tensor-parallel size 1)."""
    loss_sb = fused_linear_cross_entropy(hidden_states, output_weight, labels.transpose(0, 1),
                                         ignore_index=ignore_index, reduction="none")
    return loss_sb.transpose(0, 1)
