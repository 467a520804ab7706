"""Fused linear + cross-entropy vs full-logits ``F.cross_entropy``: loss, d hidden, d weight, every reduction."""

from __future__ import annotations

import pytest
import torch

from llmkernels.fused_linear_ce import fused_linear_cross_entropy, fused_linear_cross_entropy_reference
from tests.kernels.conftest import assert_close, grads

N, H, V = 37, 48, 500  # ragged token count, non-power-of-two vocabulary, several token chunks


def _inputs(device: str, dtype: torch.dtype, lead: tuple[int, ...] = (N,), seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*lead, H, generator=g).to(device, dtype).requires_grad_()
    weight = (0.3 * torch.randn(V, H, generator=g)).to(device, dtype).requires_grad_()
    target = torch.randint(0, V, lead, generator=g)
    target.view(-1)[::5] = -100  # ignore_index rows
    target.view(-1)[1] = V - 1  # last vocabulary column
    return hidden, weight, target.to(device)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_linear_ce_matches_reference(reduction, dtype, device):
    hidden, weight, target = _inputs(device, dtype)
    loss = fused_linear_cross_entropy(hidden, weight, target, reduction=reduction)
    ref = fused_linear_cross_entropy_reference(hidden, weight, target, reduction=reduction)
    assert loss.dtype == torch.float32 and loss.shape == ref.shape
    assert_close(loss, ref, dtype, "loss", fp32_tol=1e-5, bf16_tol=1e-2)
    if reduction == "none":
        assert torch.all(loss[target == -100] == 0)
    dout = torch.rand(loss.shape, generator=torch.Generator().manual_seed(5)).to(device) + 0.5
    for name, a, e in zip(("dhidden", "dweight"), grads(loss, dout, hidden, weight), grads(ref, dout, hidden, weight)):
        assert a.dtype == dtype
        assert_close(a, e, dtype, name)


def test_fused_linear_ce_3d_hidden_and_custom_ignore_index(device):
    hidden, weight, target = _inputs(device, torch.float32, lead=(3, 13), seed=6)
    target[target == -100] = 7  # class 7 is now ignored; -100 no longer appears
    loss = fused_linear_cross_entropy(hidden, weight, target, ignore_index=7, reduction="none", chunk_size=5)
    ref = fused_linear_cross_entropy_reference(hidden, weight, target, ignore_index=7, reduction="none")
    assert loss.shape == (3, 13)
    assert_close(loss, ref, torch.float32, "loss")
    dout = torch.randn(3, 13).to(device)
    for a, e in zip(grads(loss, dout, hidden, weight), grads(ref, dout, hidden, weight)):
        assert_close(a, e, torch.float32, "grad")


def test_fused_linear_ce_all_ignored_and_no_grad(device):
    hidden, weight, target = _inputs(device, torch.float32, seed=7)
    ignored = torch.full_like(target, -100)
    with torch.no_grad():
        assert torch.isnan(fused_linear_cross_entropy(hidden, weight, ignored))  # torch's mean over nothing
        assert fused_linear_cross_entropy(hidden, weight, ignored, reduction="sum").item() == 0.0
        loss = fused_linear_cross_entropy(hidden, weight, target)
    assert not loss.requires_grad
    assert_close(loss, fused_linear_cross_entropy_reference(hidden, weight, target), torch.float32, "loss")
    dh, dw = grads(fused_linear_cross_entropy(hidden, weight, ignored, reduction="sum"), torch.tensor(1.0),
                   hidden, weight)
    assert torch.count_nonzero(dh) == 0 and torch.count_nonzero(dw) == 0


def test_fused_linear_ce_rejects_bad_arguments():
    hidden, weight, target = _inputs("cpu", torch.float32)
    with pytest.raises(ValueError):
        fused_linear_cross_entropy(hidden, weight, target, reduction="avg")
    with pytest.raises(ValueError):
        fused_linear_cross_entropy(hidden, weight, target[:-1])
