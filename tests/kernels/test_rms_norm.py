"""RMSNorm kernel vs its torch reference (and torch's own ``F.rms_norm``): forward and both gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmkernels.rms_norm import rms_norm, rms_norm_reference
from tests.kernels.conftest import assert_close, grads

SHAPES = [(37, 200), (2, 5, 48), (3, 1024), (1, 7, 3, 33)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_rms_norm_matches_reference(shape, dtype, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g).to(device, dtype).requires_grad_()
    w = (1 + 0.1 * torch.randn(shape[-1], generator=g)).to(device, dtype).requires_grad_()
    dy = torch.randn(shape, generator=g).to(device, dtype)
    y = rms_norm(x, w, 1e-5)
    y_ref = rms_norm_reference(x, w, 1e-5)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, y_ref, dtype, "y")
    for name, a, e in zip(("dx", "dw"), grads(y, dy, x, w), grads(y_ref, dy, x, w)):
        assert_close(a, e, dtype, name, fp32_tol=1e-4 if name == "dw" else 1e-5)


def test_rms_norm_matches_torch_rms_norm(device):
    x = torch.randn(37, 200, device=device)
    w = torch.randn(200, device=device)
    torch.testing.assert_close(rms_norm(x, w, 1e-6), F.rms_norm(x, (200,), w, 1e-6), atol=1e-5, rtol=1e-5)


def test_rms_norm_non_contiguous_input(device):
    x = torch.randn(40, 64, device=device)[::2]  # row stride 128
    w = torch.randn(64, device=device)
    torch.testing.assert_close(rms_norm(x, w), rms_norm_reference(x, w), atol=1e-5, rtol=1e-5)
