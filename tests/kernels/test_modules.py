"""The megatron drop-ins: constructor signatures, parameter names, and equality with megatron's own maths."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("megatron.core")

from llmkernels.modules import (
    FlashCoreAttention,
    FusedRMSNorm,
    FusedSwiGLU,
    apply_rotary_pos_emb,
    language_model_loss,
    patch_megatron_rope,
)
from tests.kernels.conftest import assert_close
from tests.kernels.test_rope import _freqs


@pytest.fixture(scope="module")
def config():
    from megatron.core.transformer.transformer_config import TransformerConfig

    return TransformerConfig(num_layers=1, hidden_size=64, num_attention_heads=4, num_query_groups=2,
                             ffn_hidden_size=96, normalization="RMSNorm", gated_linear_unit=True,
                             activation_func=F.silu, add_bias_linear=False, attention_dropout=0.0,
                             hidden_dropout=0.0)


def test_fused_rms_norm_is_a_drop_in_for_torch_rms_norm(config, device):
    norm = FusedRMSNorm(config=config, hidden_size=64, eps=1e-5).to(device)
    torch_norm = torch.nn.RMSNorm(64, eps=1e-5).to(device)  # what megatron's WrappedTorchNorm builds
    assert list(norm.state_dict()) == list(torch_norm.state_dict()) == ["weight"]
    assert norm.weight.sequence_parallel is False
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    torch_norm.load_state_dict(norm.state_dict())
    x = torch.randn(7, 2, 64, device=device)
    assert_close(norm(x), torch_norm(x), torch.float32, "y")


def test_fused_swiglu_matches_megatron_glu(config, device):
    x = torch.randn(5, 2, 2 * 96, device=device)
    gate, up = torch.chunk(x, 2, dim=-1)
    assert_close(FusedSwiGLU(config=config)(x), config.activation_func(gate) * up, torch.float32, "y")


def test_rope_hook_matches_megatron(config, device):
    from megatron.core.models.common.embeddings import rope_utils
    from megatron.core.transformer import attention

    freqs = _freqs(24, 16).to(device)  # megatron's RotaryEmbedding table (its forward wants CUDA)
    t = torch.randn(24, 2, 4, 16, device=device)
    want = rope_utils.apply_rotary_pos_emb(t, freqs, config, mscale=1.5, cp_group=object())
    assert_close(apply_rotary_pos_emb(t, freqs, config, mscale=1.5), want, torch.float32, "rope")
    original = attention.apply_rotary_pos_emb
    with patch_megatron_rope():
        assert attention.apply_rotary_pos_emb is apply_rotary_pos_emb
    assert attention.apply_rotary_pos_emb is original


def test_flash_core_attention_matches_sdpa(config, device):
    core = FlashCoreAttention(config, layer_number=1, attn_mask_type=None, attention_type="self")
    s, b = 21, 2
    q = torch.randn(s, b, 4, 16, device=device)
    k, v = (torch.randn(s, b, 2, 16, device=device) for _ in range(2))
    out = core(q, k, v, attention_mask=None)
    want = F.scaled_dot_product_attention(*(t.permute(1, 2, 0, 3) for t in (q, k, v)), is_causal=True,
                                          scale=1 / math.sqrt(16), enable_gqa=True)
    assert out.shape == (s, b, 64)
    assert_close(out, want.permute(2, 0, 1, 3).reshape(s, b, 64), torch.float32, "out")


def test_language_model_loss_matches_megatron_layout(device):
    s, b, h, vocab = 9, 3, 32, 130
    hidden = torch.randn(s, b, h, device=device, requires_grad=True)
    weight = torch.randn(vocab, h, device=device, requires_grad=True)
    labels = torch.randint(0, vocab, (b, s), device=device)
    labels[0, :3] = -100
    loss = language_model_loss(hidden, weight, labels)
    logits = hidden @ weight.t()  # megatron: output_layer → [s, b, V]; loss per token → [b, s]
    want = F.cross_entropy(logits.reshape(-1, vocab), labels.t().reshape(-1), reduction="none").view(s, b).t()
    assert loss.shape == (b, s)
    assert_close(loss, want, torch.float32, "loss")
    mask = (labels != -100).float()
    g = torch.autograd.grad((loss * mask).sum() / mask.sum(), (hidden, weight))
    g_ref = torch.autograd.grad((want * mask).sum() / mask.sum(), (hidden, weight))
    for a, e in zip(g, g_ref):
        assert_close(a, e, torch.float32, "grad")
