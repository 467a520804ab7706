"""The CPU compatibility layer: each of its four patches, that it undoes cleanly, and CPU seeding (fresh process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from tests.engine.harness import ROOT, env

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the layer applies only without CUDA")

CHECKS = textwrap.dedent("""
    import torch
    from engine import cpu_compat

    cpu = torch.device("cpu")
    try:
        torch.zeros(1, device="cuda")
        raise SystemExit("expected CUDA to be unusable before patching")
    except (RuntimeError, AssertionError):
        pass
    with cpu_compat.patched() as active:
        assert active
        # 2. current_device / synchronize
        assert torch.cuda.current_device() == cpu
        torch.cuda.synchronize()
        assert torch.empty(3, device=torch.cuda.current_device()).device == cpu
        # 3. hard-coded CUDA devices
        assert torch.zeros(2, device="cuda").device == cpu
        assert torch.tensor([1.0], device="cuda:0").device == cpu
        assert torch.ones(2, device=0).device == cpu
        t = torch.ones(2)
        assert t.cuda() is t and t.to("cuda").device == cpu and t.to(torch.device("cuda")).device == cpu
        assert t.to(torch.float64).dtype == torch.float64
        # 4. CUDA type names for megatron's string checks
        assert t.type() == "torch.cuda.FloatTensor"
        assert t.bfloat16().type() == "torch.cuda.BFloat16Tensor"
        assert t.type(torch.float64).dtype == torch.float64
        # 1. the RNG tracker: named CPU streams, forked without disturbing the default stream
        from megatron.core.tensor_parallel import random as mrandom
        tracker = mrandom.CudaRNGStatesTracker()
        tracker.add("a", 1)
        torch.manual_seed(7)
        before = torch.get_rng_state()
        with tracker.fork("a"):
            x = torch.rand(3)
        assert torch.equal(torch.get_rng_state(), before)
        assert torch.equal(x, torch.rand(3, generator=torch.Generator().manual_seed(1)))
        with tracker.fork("a"):
            y = torch.rand(3)
        assert not torch.equal(x, y)  # the stream advanced
    # removed again
    assert torch.cuda.current_device is not None and torch.ones(1).type() == "torch.FloatTensor"
    try:
        torch.zeros(1, device="cuda")
        raise SystemExit("patch not removed")
    except (RuntimeError, AssertionError):
        pass
    # megatron's seeding on CPU: the TP stream is offset by the TP rank, the DP stream is not
    cpu_compat.apply()
    from megatron.core import tensor_parallel
    draws = []
    for tp_rank in (0, 1):
        tensor_parallel.model_parallel_cuda_manual_seed(5, tp_rank=tp_rank)
        tr = tensor_parallel.get_cuda_rng_tracker()
        with tr.fork():
            a = torch.rand(2)
        with tr.fork(mrandom._DATA_PARALLEL_RNG_TRACKER_NAME):
            b = torch.rand(2)
        draws.append((a, b))
    assert not torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    print("ok")
""")


def test_patches_apply_undo_and_seed():
    proc = subprocess.run([sys.executable, "-c", CHECKS], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")

