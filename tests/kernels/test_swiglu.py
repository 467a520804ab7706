"""SwiGLU kernels vs ``F.silu(gate) * up``: separate tensors and megatron's concatenated ``[gate | up]``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmkernels.swiglu import swiglu, swiglu_glu, swiglu_reference
from tests.kernels.conftest import assert_close, grads


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(37, 200), (3, 11, 96), (5, 1000)], ids=lambda s: "x".join(map(str, s)))
def test_swiglu_matches_reference(shape, dtype, device):
    g = torch.Generator().manual_seed(1)
    gate = (3 * torch.randn(shape, generator=g)).to(device, dtype).requires_grad_()
    up = torch.randn(shape, generator=g).to(device, dtype).requires_grad_()
    dy = torch.randn(shape, generator=g).to(device, dtype)
    y, y_ref = swiglu(gate, up), swiglu_reference(gate, up)
    assert y.dtype == dtype
    assert_close(y, y_ref, dtype, "y")
    for name, a, e in zip(("dgate", "dup"), grads(y, dy, gate, up), grads(y_ref, dy, gate, up)):
        assert_close(a, e, dtype, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_glu_on_concatenated_fc1_output(dtype, device):
    g = torch.Generator().manual_seed(2)
    x = (2 * torch.randn(9, 3, 2 * 120, generator=g)).to(device, dtype).requires_grad_()  # [s, b, 2·ffn]
    dy = torch.randn(9, 3, 120, generator=g).to(device, dtype)
    y = swiglu_glu(x)
    gate, up = torch.chunk(x, 2, dim=-1)
    y_ref = (F.silu(gate.float()) * up.float()).to(dtype)  # megatron's glu with activation_func=F.silu
    assert y.shape == (9, 3, 120)
    assert_close(y, y_ref, dtype, "y")
    assert_close(grads(y, dy, x)[0], grads(y_ref, dy, x)[0], dtype, "dx")


def test_swiglu_shape_mismatch_raises():
    with pytest.raises(ValueError):
        swiglu(torch.randn(2, 3), torch.randn(2, 4))
