"""The contract outside automation relies on: tiny_cpu.yaml + the five dotted overrides → metrics.jsonl."""

from __future__ import annotations

import math

from tests.engine.harness import ROOT, read_metrics, torchrun


def test_tiny_cpu_contract_overrides(token_data, tmp_path):
    run_dir = tmp_path / "contract"
    torchrun(2, ROOT / "engine" / "pretrain.py",
             ["--config", "configs/pretrain/tiny_cpu.yaml", "parallel.tp=2", "parallel.pp=1", "train.steps=3",
              f"train.run_dir={run_dir}", f"data.prefix={token_data.prefix}"])
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    for r in records:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(r)
        assert math.isfinite(r["loss"]) and r["tokens_per_s"] > 0
    assert (run_dir / "checkpoints" / "latest").exists()
