"""RoPE kernel vs its reference and vs megatron-core's own ``_apply_rotary_pos_emb_bshd`` (same layout)."""

from __future__ import annotations

import pytest
import torch

from llmkernels.rope import rope, rope_reference
from tests.kernels.conftest import assert_close, grads


def _freqs(seq: int, rot: int, base: float = 10000.0) -> torch.Tensor:
    """megatron's ``RotaryEmbedding`` table: ``[seq, 1, 1, rot]``, non-interleaved ``cat(f, f)``."""
    inv = 1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float32) / rot)
    f = torch.outer(torch.arange(seq, dtype=torch.float32), inv)
    return torch.cat((f, f), dim=-1)[:, None, None, :]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("s", "b", "h", "d", "rot"), [(33, 2, 3, 64, 64), (50, 1, 4, 32, 32), (17, 2, 2, 48, 24)])
def test_rope_matches_reference(s, b, h, d, rot, dtype, device):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(s, b, h, d, generator=g).to(device, dtype).requires_grad_()
    f = _freqs(s, rot).to(device)
    cos, sin = f.cos(), f.sin()
    dy = torch.randn(s, b, h, d, generator=g).to(device, dtype)
    y, y_ref = rope(x, cos, sin), rope_reference(x, cos, sin)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, y_ref, dtype, "y")
    assert_close(grads(y, dy, x)[0], grads(y_ref, dy, x)[0], dtype, "dx")


def test_rope_matches_megatron_and_leaves_input_alone(device):
    rope_utils = pytest.importorskip("megatron.core.models.common.embeddings.rope_utils")

    s, b, ng, hd = 40, 2, 2, 32
    qkv = torch.randn(s, b, ng, 3 * hd, device=device)  # fused qkv buffer: q and k are strided views
    q, k = qkv[..., :hd], qkv[..., hd:2 * hd]
    before = qkv.clone()
    f = _freqs(s, hd).to(device)
    for t in (q, k):
        torch.testing.assert_close(rope(t, f.cos(), f.sin()), rope_utils._apply_rotary_pos_emb_bshd(t, f), atol=1e-5, rtol=1e-5)
    assert torch.equal(qkv, before)


def test_rope_gradient_is_the_transposed_rotation(device):
    s, d = 21, 16
    x = torch.randn(s, 1, 3, d, device=device, dtype=torch.float64 if device == "cpu" else torch.float32)
    f = _freqs(s, d).to(device)
    # RoPE is linear and orthogonal per position: <R x, y> == <x, Rᵀ y>, and |R x| == |x|
    x32 = x.float().requires_grad_()
    y = rope(x32, f.cos(), f.sin())
    dy = torch.randn_like(y)
    dx = grads(y, dy, x32)[0]
    torch.testing.assert_close((y * dy).sum(), (x32 * dx).sum(), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(y.norm(dim=-1), x32.norm(dim=-1), atol=1e-5, rtol=1e-5)
