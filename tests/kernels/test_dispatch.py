"""The dispatcher: Triton on CUDA, interpreted Triton on CPU with TRITON_INTERPRET=1, else the reference."""

from __future__ import annotations

import pytest
import torch

import llmkernels
from llmkernels import dispatch
from llmkernels.rms_norm import rms_norm_reference


def test_public_api_is_complete():
    for name in ("rms_norm", "rope", "swiglu", "fused_linear_cross_entropy", "flash_attention"):
        assert callable(getattr(llmkernels, name))
    with pytest.raises(AttributeError):
        _ = llmkernels.not_a_kernel


def test_cpu_backend_follows_triton_interpret(monkeypatch):
    x = torch.randn(4, 8)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dispatch.backend(x) == "interpret"
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert dispatch.backend(x) == "reference"
    monkeypatch.delenv("TRITON_INTERPRET")
    assert dispatch.backend(x) == "reference"


def test_cpu_under_compile_uses_reference(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(dispatch, "_compiling", lambda: True)
    assert dispatch.backend(torch.randn(2, 2)) == "reference"


def test_reference_path_on_plain_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, w = torch.randn(5, 16, requires_grad=True), torch.randn(16)
    y = llmkernels.rms_norm(x, w, 1e-5)
    assert "RMSNormFn" not in type(y.grad_fn).__name__  # plain autograd of the reference
    torch.testing.assert_close(y, rms_norm_reference(x, w, 1e-5), atol=0, rtol=0)


def test_interpreted_path_runs_the_kernel(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(5, 16, requires_grad=True)
    y = llmkernels.rms_norm(x, torch.ones(16), 1e-5)
    assert "RMSNormFn" in type(y.grad_fn).__name__


@pytest.mark.slow
def test_torch_compile_on_cpu_traces_the_reference(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x, w = torch.randn(6, 32), torch.randn(32)
    f = torch.compile(lambda a, b: llmkernels.rms_norm(llmkernels.swiglu(a, a), b, 1e-5), fullgraph=True)
    torch.testing.assert_close(f(x, w), rms_norm_reference(llmkernels.swiglu(x, x), w, 1e-5), atol=1e-5, rtol=1e-5)
