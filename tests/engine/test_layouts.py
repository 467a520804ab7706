"""Every parallel layout trains exactly like TP=PP=DP=1: same loss curve over 10 steps on real tokens.

One in-process single-rank run gives the baseline curve and the shared initial weights (a TP=1
checkpoint that every layout loads — which also exercises resharding on load). The layouts then run
inside two torchrun launches (2 and 8 ranks). Tokens per step are fixed (global batch 8 × 128).
"""

from __future__ import annotations

import json

import pytest

from tests.engine.harness import ROOT, TINY, data_overrides, torchrun

STEPS = 10
TOL = dict(rel=1e-5, abs=1e-5)
WORKER = ROOT / "tests" / "engine" / "layouts_worker.py"


def _base(token_data, run_dir) -> list[str]:
    return [*data_overrides(token_data), f"train.run_dir={run_dir}", f"train.steps={STEPS}",
            "optim.warmup_steps=2", "train.progress=false", "train.eval_batches=1", "checkpoint.resume=false",
            "logging.tensorboard=false"]


@pytest.fixture(scope="module")
def baseline(token_data, tmp_path_factory):
    """Single-rank curve, eval loss, and the initial weights as a TP=1 checkpoint."""
    from engine import checkpoint
    from engine.config import load_config
    from engine.stages.pretrain import build_run

    work = tmp_path_factory.mktemp("layouts")
    base = _base(token_data, work / "run")
    cfg = load_config(TINY, base, world_size=1)
    run = build_run(cfg)
    init = checkpoint.save(work / "init", 0, run.trainer.model, None, None)
    records = run.trainer.fit()
    return {"base": base, "init": str(init), "work": work,
            "losses": [r["loss"] for r in records], "eval_loss": records[-1]["eval_loss"]}


def _launch(baseline, nproc: int, layouts: dict, reshard: dict | None = None, name: str = "x") -> dict:
    out = baseline["work"] / f"{name}.json"
    spec = {"base": baseline["base"], "init": baseline["init"], "out": str(out), "layouts": layouts}
    if reshard:
        spec["reshard"] = reshard
    spec_path = baseline["work"] / f"{name}_spec.json"
    spec_path.write_text(json.dumps(spec))
    torchrun(nproc, WORKER, [str(spec_path)], timeout=800)
    return json.loads(out.read_text())


def test_two_rank_layouts_match_single_rank(baseline):
    layouts = {
        "tp2": ["parallel.tp=2"],
        "tp2_sp": ["parallel.tp=2", "parallel.sp=true"],
        "pp2": ["parallel.pp=2"],
        "pp2_interleaved": ["parallel.pp=2", "parallel.vpp=2"],
        "dp2": [],
        "dp2_distributed_optimizer": ["parallel.distributed_optimizer=true"],
    }
    results = _launch(baseline, 2, layouts, name="two")
    assert len(baseline["losses"]) == STEPS
    assert baseline["losses"][-1] < baseline["losses"][0] - 0.1  # it learns
    for name in layouts:
        assert results[name]["losses"] == pytest.approx(baseline["losses"], **TOL), name
        assert results[name]["eval_loss"] == pytest.approx(baseline["eval_loss"], **TOL), name


def test_tp2_pp2_dp2_and_checkpoint_reshard(baseline):
    """8 ranks: TP2×PP2×DP2 (+ distributed optimizer) match; a TP2×PP2 checkpoint loads at TP1×PP1 and back."""
    layouts = {
        "tp2_pp2_dp2": ["parallel.tp=2", "parallel.pp=2"],
        "tp2_pp2_dp2_distopt_sp": ["parallel.tp=2", "parallel.pp=2", "parallel.sp=true",
                                   "parallel.distributed_optimizer=true"],
    }
    reshard = {"from": ["parallel.tp=2", "parallel.pp=2"], "dir": str(baseline["work"] / "reshard"),
               "to": [["parallel.tp=1", "parallel.pp=1", "train.micro_batch_size=1"], ["parallel.tp=1", "parallel.pp=2"],
                      ["parallel.tp=2", "parallel.pp=2"]]}
    results = _launch(baseline, 8, layouts, reshard, name="eight")
    for name in layouts:
        assert results[name]["losses"] == pytest.approx(baseline["losses"], **TOL), name
    assert results["reshard_from"] == pytest.approx(baseline["eval_loss"], **TOL)
    for ev in results["reshard_to"]:
        assert ev == pytest.approx(results["reshard_from"], rel=1e-6)
