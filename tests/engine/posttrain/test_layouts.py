"""Each stage at TP=2 and PP=2 gives the losses of TP=PP=1 (same init, same data; PPO at TP=2 only)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine import harness

WORKER = Path(__file__).with_name("layouts_worker.py")


def test_stages_match_across_layouts(tmp_path):
    subprocess.run([sys.executable, str(WORKER), "prepare", str(tmp_path)], check=True, env=harness.env(),
                   cwd=harness.ROOT, capture_output=True, timeout=300)
    harness.torchrun(1, WORKER, ["run", str(tmp_path), str(tmp_path / "one.json"), "tp1"])
    harness.torchrun(2, WORKER, ["run", str(tmp_path), str(tmp_path / "two.json"), "tp2", "pp2"])
    one = json.loads((tmp_path / "one.json").read_text())["tp1"]
    two = json.loads((tmp_path / "two.json").read_text())
    for layout in ("tp2", "pp2"):
        got = two[layout]
        for key in ("sft", "sft_eval", "reward", "reward_eval", "rm_acc", "dpo", "dpo_eval"):
            assert got[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6), (layout, key, got[key], one[key])
    for key in ("ppo_value", "ppo_reward"):
        assert two["tp2"][key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), (key, two["tp2"][key], one[key])
    # the policy loss of whitened advantages is ~0 ± rounding: compare it absolutely
    assert two["tp2"]["ppo"] == pytest.approx(one["ppo"], abs=2e-3)
    assert one["sft"][-1] < one["sft"][0]
