"""Kernel tests: on CPU the Triton kernels run under the interpreter; with a GPU they run compiled on CUDA.

``TRITON_INTERPRET=1`` must be set before triton is first imported, so the root ``tests/conftest.py``
sets it when no GPU is present (this file repeats it for runs of this directory alone). With a GPU it
is left unset (inductor's own Triton kernels must stay compiled) and the tests run on CUDA.
"""

from __future__ import annotations

import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICES = ["cuda"] if HAS_CUDA else ["cpu"]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Where the kernels run: CUDA (compiled) when present, else CPU under the interpreter."""
    return request.param


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "",
                 fp32_tol: float = 1e-5, bf16_tol: float = 2e-2) -> None:
    """fp32: elementwise ``atol = rtol = fp32_tol`` (loosened on GPU, where fp32 dots use TF32);
    bf16: max error within ``bf16_tol`` of the reference's largest magnitude (at least 1)."""
    a, e = actual.detach().float().cpu(), expected.detach().float().cpu()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    if dtype == torch.float32:
        tol = fp32_tol if actual.device.type == "cpu" else max(fp32_tol, 1e-2)
        torch.testing.assert_close(a, e, atol=tol, rtol=tol, msg=lambda m: f"{what}: {m}")
    else:
        scale = max(1.0, e.abs().max().item())
        err = (a - e).abs().max().item()
        assert err <= bf16_tol * scale, f"{what}: max error {err:.3g} > {bf16_tol} × {scale:.3g}"


def grads(out: torch.Tensor, dout: torch.Tensor, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of ``(out * dout).sum()`` with respect to ``inputs``."""
    return list(torch.autograd.grad(out, inputs, dout))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Silence numpy's deprecation of triton 3.6's interpreter using ``int()`` on 1-element arrays."""
    mark = pytest.mark.filterwarnings("ignore:Conversion of an array with ndim > 0:DeprecationWarning")
    for item in items:
        if "tests/kernels/" in str(item.path).replace("\\", "/"):
            item.add_marker(mark)
