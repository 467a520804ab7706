"""pretrain → SFT → reward model → PPO / DPO on a checkable task, judged by the checker (slow: ~3–5 min).

The checker score is the exact-match rate of greedy answers to 200 held-out prompts (0.005 per prompt).
"""

from __future__ import annotations

import pytest


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 6 open: last run (seed 0) gave base=0.000 sft=0.500 ppo=0.075 "
                   "dpo=0.315 rm_acc=0.869 kl=3.398 — PPO/DPO below SFT, RM under 0.9; strict, so it "
                   "fails loudly once the stages meet the thresholds and this mark must go")
def test_posttraining_improves_checker_score(tmp_path):
    from engine.posttrain_check import run

    s = run(tmp_path)
    print(s)
    assert s["sft"] >= s["base"] + 0.15, s  # SFT clearly above the base model
    assert s["rm_acc"] >= 0.9, s  # held-out pairwise accuracy of the reward model
    assert s["ppo"] >= s["sft"] + 0.03, s  # PPO on the learned reward raises the checker's score
    assert 0.0 <= s["kl"] <= 2.0 * s["kl_target"], s  # ... with the (on-policy, k1) KL near its target
    assert s["dpo"] > s["sft"], s  # DPO on the same rankings too
