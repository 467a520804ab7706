"""Every kernel compiles for sm_90 (H100/H200) without a GPU, in the launch configurations the dispatchers
use, within sm_90's shared memory (``python -m llmkernels.compile_check`` in a subprocess, no TRITON_INTERPRET)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llmkernels.dispatch import SM90_SHARED_MEMORY
from tests.conftest import ROOT


def _compile(*names: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_CACHE_DIR", str(ROOT / ".cache" / "triton"))
    out = subprocess.run([sys.executable, "-m", "llmkernels.compile_check", *names], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    reports = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    failed = [r for r in reports if not r["ok"]]
    assert not failed, "\n".join(f"{r['name']}: {r['error']}" for r in failed)
    assert out.returncode == 0, out.stderr[-3000:]
    for r in reports:
        assert r["shared"] <= SM90_SHARED_MEMORY
    return reports


def test_memory_bound_kernels_compile_for_sm90():
    reports = _compile("rms_", "swiglu_", "rope_", "ce_")
    names = {r["name"] for r in reports}
    for prefix in ("rms_fwd_bf16", "rms_bwd_fp32", "swiglu_bwd_bf16", "rope_fwd_bf16_d128", "ce_bf16_v128256_grad"):
        assert any(n.startswith(prefix) for n in names), prefix


def test_causal_attention_compiles_for_sm90():
    reports = _compile("_causal")
    assert {r["name"] for r in reports} == {f"attn_{k}_{t}_d{d}_causal" for k in ("fwd", "dkdv", "dq")
                                            for t in ("fp32", "bf16") for d in (64, 128)}


@pytest.mark.slow
def test_full_attention_compiles_for_sm90():
    assert len(_compile("_full")) == 12
