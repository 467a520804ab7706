"""Flash attention vs plain softmax attention and vs ``F.scaled_dot_product_attention``: output and dq/dk/dv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmkernels.flash_attention import flash_attention, flash_attention_reference
from tests.kernels.conftest import assert_close, grads

CASES = [  # (batch, q heads, kv heads, seq, head_dim, causal): ragged seqs, GQA, head_dim 16/32/64 and 40
    (1, 2, 2, 33, 16, True),
    (2, 4, 2, 80, 32, True),
    (1, 4, 2, 47, 64, False),
    (1, 2, 1, 64, 40, True),
]


def _ids(case: tuple) -> str:
    b, h, hkv, s, d, causal = case
    return f"b{b}h{h}kv{hkv}s{s}d{d}{'c' if causal else ''}"


def _qkv(b: int, h: int, hkv: int, s: int, d: int, device: str, dtype: torch.dtype, seed: int = 8):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, n, s, d, generator=g).to(device, dtype).requires_grad_() for n in (h, hkv, hkv))
    return q, k, v, torch.randn(b, h, s, d, generator=g).to(device, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_flash_attention_matches_reference(case, dtype, device):
    b, h, hkv, s, d, causal = case
    q, k, v, do = _qkv(b, h, hkv, s, d, device, dtype)
    o = flash_attention(q, k, v, causal=causal)
    o_ref = flash_attention_reference(q, k, v, causal=causal)
    assert o.dtype == dtype and o.shape == (b, h, s, d)
    assert_close(o, o_ref, dtype, "o")
    for name, a, e in zip(("dq", "dk", "dv"), grads(o, do, q, k, v), grads(o_ref, do, q, k, v)):
        assert a.shape == e.shape
        assert_close(a, e, dtype, name, bf16_tol=3e-2)


def test_flash_attention_matches_sdpa_with_scale(device):
    q, k, v, do = _qkv(2, 4, 2, 40, 32, device, torch.float32, seed=9)
    o = flash_attention(q, k, v, causal=True, scale=0.3)
    o_sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3, enable_gqa=True)
    assert_close(o, o_sdpa, torch.float32, "o")
    for name, a, e in zip(("dq", "dk", "dv"), grads(o, do, q, k, v), grads(o_sdpa, do, q, k, v)):
        assert_close(a, e, torch.float32, name)


def test_flash_attention_non_contiguous_megatron_layout(device):
    # megatron hands [s, b, heads, d] tensors; permuted to [b, heads, s, d] they are strided views
    s, b, h, d = 37, 2, 2, 32
    q, k, v = (torch.randn(s, b, h, d, device=device).permute(1, 2, 0, 3) for _ in range(3))
    assert not q.is_contiguous()
    assert_close(flash_attention(q, k, v), flash_attention_reference(q, k, v), torch.float32, "o")


def test_flash_attention_rejects_bad_heads():
    q = torch.randn(1, 3, 8, 16)
    k = torch.randn(1, 2, 8, 16)
    with pytest.raises(ValueError):
        flash_attention(q, k, k)
