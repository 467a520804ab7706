"""Kill after step k, resume: steps k+1… have exactly the losses of the uninterrupted run.

Runs the real entry point (``torchrun engine/pretrain.py``) on 2 ranks with the distributed optimizer
(the state that is hardest to restore: sharded Adam moments and step counts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.engine.harness import ROOT, TINY, _free_port, data_overrides, env, read_metrics, torchrun

PRETRAIN = ROOT / "engine" / "pretrain.py"


def _args(token_data, run_dir, *extra: str) -> list[str]:
    return ["--config", str(TINY), *data_overrides(token_data), f"train.run_dir={run_dir}", "train.steps=8",
            "checkpoint.save_every=3", "optim.warmup_steps=2", "train.eval_every=4", "train.eval_batches=1",
            "parallel.distributed_optimizer=true", *extra]


@pytest.fixture(scope="module")
def uninterrupted(token_data, tmp_path_factory):
    full = tmp_path_factory.mktemp("full")
    torchrun(2, PRETRAIN, _args(token_data, full))
    ref = read_metrics(full)
    assert [r["step"] for r in ref] == list(range(1, 9))
    for key in ("step", "loss", "lr", "grad_norm", "tokens_per_s"):
        assert key in ref[0]
    return ref


def _same_run(got: list[dict], ref: list[dict]) -> None:
    assert [r["step"] for r in got] == list(range(1, 9))  # the lost steps' records are gone
    for a, b in zip(got, ref, strict=True):
        assert (a["step"], a["loss"], a["lr"], a["grad_norm"]) == (b["step"], b["loss"], b["lr"], b["grad_norm"])
    assert got[-1]["eval_loss"] == ref[-1]["eval_loss"]


def test_stopped_run_resumes_with_identical_losses(token_data, tmp_path, uninterrupted):
    killed = tmp_path / "stopped"
    # stops after step 5, like a kill: the last checkpoint is step 3, steps 4-5 are lost
    torchrun(2, PRETRAIN, _args(token_data, killed, "train.stop_after=5"))
    assert (killed / "checkpoints" / "latest").read_text() == "step_000003"
    torchrun(2, PRETRAIN, _args(token_data, killed))
    _same_run(read_metrics(killed), uninterrupted)


def test_sigkilled_run_resumes_with_identical_losses(token_data, tmp_path, uninterrupted):
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
           str(_free_port()), str(PRETRAIN), *_args(token_data, run_dir, "train.progress=false")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if metrics.exists() and '"step": 5,' in metrics.read_text():
                os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, mid-run
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert (run_dir / "checkpoints" / "latest").read_text() in ("step_000003", "step_000006")
    torchrun(2, PRETRAIN, _args(token_data, run_dir))
    _same_run(read_metrics(run_dir), uninterrupted)
