"""A NaN/Inf loss stops (or skips) the step as configured and never corrupts the last good checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from tests.engine.harness import TINY, data_overrides


def _run(token_data, run_dir, *extra: str):
    from engine.config import load_config
    from engine.stages.pretrain import build_run

    cfg = load_config(TINY, [*data_overrides(token_data), f"train.run_dir={run_dir}", "train.steps=6",
                             "train.progress=false", "train.eval_batches=1", "checkpoint.save_every=2",
                             "train.inject_nan_steps=[3]", *extra], world_size=1)
    return build_run(cfg)


def _params(run) -> list[torch.Tensor]:
    return [p.detach().clone() for m in run.trainer.model for p in m.parameters()]


def test_stop_leaves_last_good_checkpoint(token_data, tmp_path):
    from engine import checkpoint
    from engine.loop import NonFiniteLoss

    run = _run(token_data, tmp_path, "train.on_nan=stop")
    with pytest.raises(NonFiniteLoss, match="step 3"):
        run.trainer.fit(None, run.ckpt_dir)
    assert checkpoint.latest(run.ckpt_dir).name == "step_000002"
    assert sorted(p.name for p in run.ckpt_dir.iterdir()) == ["latest", "step_000002"]
    after_nan = _params(run)
    assert all(torch.isfinite(p).all() for p in after_nan)
    state = checkpoint.load(checkpoint.latest(run.ckpt_dir), run.trainer.model, run.trainer.optimizer,
                            run.trainer.scheduler)
    assert state["step"] == 2
    # the NaN step changed nothing: the weights in memory are the checkpointed step-2 weights
    assert all(torch.equal(a, b) for a, b in zip(after_nan, _params(run)))


def test_skip_drops_the_update_and_continues(token_data, tmp_path):
    run = _run(token_data, tmp_path / "skip", "train.on_nan=skip")
    records = run.trainer.fit(None, run.ckpt_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[2]["skipped"] and math.isnan(records[2]["loss"])
    assert all(math.isfinite(r["loss"]) and not r["skipped"] for i, r in enumerate(records) if i != 2)
    # the skipped step neither moved Adam's step count nor the learning-rate schedule
    steps = {int(s["step"]) for s in run.trainer.optimizer.optimizer.state.values()}
    assert steps == {5}
    assert run.trainer.scheduler.num_steps == 5
    clean = _run(token_data, tmp_path / "clean", "train.inject_nan_steps=[]", "train.stop_after=2")
    assert [r["loss"] for r in clean.trainer.fit()] == [r["loss"] for r in records[:2]]
