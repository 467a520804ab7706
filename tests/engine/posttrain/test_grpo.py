"""GRPO / RLOO and the PPO fixes, piece by piece against hand-written references: group advantages, the
GRPO loss, the bounded KL controller, the running score moments, ``reward.fn`` validation, the prompt
text given to the reward function, and post-training batches landing on the model's device."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.config import ConfigError
from engine.posttrain.losses import (
    AdaptiveKLController,
    RunningMoments,
    group_advantages,
    grpo_policy_loss,
)


def test_group_advantages_match_hand_written_estimators():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(5, 4))
    r[2] = 0.7  # a flat group: no signal
    grpo = group_advantages(torch.tensor(r), "grpo").numpy()
    rloo = group_advantages(torch.tensor(r), "rloo").numpy()
    for i in range(5):
        row = r[i]
        mean = sum(row) / 4
        std = math.sqrt(sum((x - mean) ** 2 for x in row) / 3)
        for j in range(4):
            others = [row[k] for k in range(4) if k != j]
            assert grpo[i, j] == pytest.approx((row[j] - mean) / (std + 1e-6), abs=1e-5)
            assert rloo[i, j] == pytest.approx(row[j] - sum(others) / 3, abs=1e-6)
    assert np.all(grpo[2] == 0) and np.all(rloo[2] == 0)
    with pytest.raises(ValueError, match="estimator"):
        group_advantages(torch.tensor(r), "ppo")


def test_grpo_loss_matches_reference():
    torch.manual_seed(0)
    b, s = 3, 5
    logp = torch.randn(b, s) * 0.3 - 1.0
    old = logp + torch.randn(b, s) * 0.2
    ref = logp + torch.randn(b, s) * 0.2
    adv = torch.randn(b)
    mask = (torch.rand(b, s) > 0.3).float()
    clip, beta = 0.2, 0.05
    loss, clipped, kl = grpo_policy_loss(logp, old, ref, adv, mask, clip, beta)
    want_loss, want_clipped, want_kl = 0.0, 0.0, 0.0
    lp, od, rf, am, mk = logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), mask.tolist()
    for i in range(b):
        for t in range(s):
            if not mk[i][t]:
                continue
            ratio = math.exp(lp[i][t] - od[i][t])
            a = am[i]
            surr = max(-a * ratio, -a * min(max(ratio, 1 - clip), 1 + clip))
            k3 = math.exp(rf[i][t] - lp[i][t]) - (rf[i][t] - lp[i][t]) - 1  # GRPO paper, eq. 4
            want_loss += surr + beta * k3
            want_kl += k3
            want_clipped += float(-a * min(max(ratio, 1 - clip), 1 + clip) > -a * ratio)
    assert float(loss) == pytest.approx(want_loss, rel=1e-5)
    assert float(kl) == pytest.approx(want_kl, rel=1e-5)
    assert float(clipped) == want_clipped


def test_grpo_kl_term_pulls_towards_reference():
    logp = torch.tensor([[-0.5, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.0, -1.0]])
    loss, _, _ = grpo_policy_loss(logp, logp.detach(), ref, torch.zeros(1), torch.ones(1, 2), 0.2, 1.0)
    loss.backward()
    # d/dlogp [exp(ref - logp) - (ref - logp) - 1] = 1 - exp(ref - logp)
    assert logp.grad[0].tolist() == pytest.approx([1 - math.exp(-0.5), 1 - math.exp(1.0)], rel=1e-6)


def test_kl_controller_is_bounded():
    ctl = AdaptiveKLController(0.05, target=0.5, horizon=10, min_coef=1e-3, max_coef=0.2)
    seen = [ctl.update(0.0, 100) for _ in range(50)]  # KL far under target: the coefficient falls...
    assert min(seen) == 1e-3 and seen[-1] == 1e-3  # ...to the floor, not to ~1e-7
    seen = [ctl.update(10.0, 100) for _ in range(50)]
    assert max(seen) == 0.2 and seen[-1] == 0.2
    # inside the bounds: Ziegler et al.'s proportional update
    ctl = AdaptiveKLController(0.05, target=0.5, horizon=1000, min_coef=1e-3, max_coef=1.0)
    assert ctl.update(0.6, 100) == pytest.approx(0.05 * (1 + 0.2 * 100 / 1000))
    fixed = AdaptiveKLController(0.05, target=None, horizon=10, min_coef=0.1)
    assert fixed.update(0.0, 100) == 0.05  # no target: a fixed coefficient


def test_running_moments_match_numpy_over_batches():
    rng = np.random.default_rng(1)
    batches = [rng.normal(3.0, 5.0, size=n) for n in (7, 1, 30, 12)]
    m = RunningMoments()
    for x in batches:
        m.update(len(x), float(x.mean()), float(((x - x.mean()) ** 2).sum()))
    allx = np.concatenate(batches)
    assert m.mean == pytest.approx(allx.mean(), rel=1e-10)
    assert m.std == pytest.approx(allx.std(), rel=1e-10)
    assert m.normalise(torch.tensor([allx.mean() + allx.std()])).item() == pytest.approx(1.0, rel=1e-6)


def _grpo_cfg(tmp_path, char_tok, *extra):
    from pathlib import Path

    from engine.posttrain.config import load_posttrain_config

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "312"}\n')
    root = Path(__file__).resolve().parents[3]
    return load_posttrain_config("grpo", root / "configs/posttrain/grpo_sort.yaml",
                                 [f"tokenizer.path={char_tok}", f"dataset.train={prompts}",
                                  "checkpoint.load=some/ckpt", *extra], world_size=1)


@pytest.mark.parametrize("spec, says", [("examples.sorting.task", "module:function"),
                                        ("examples.sorting.task:nope", "cannot load"),
                                        ("no_such_module_xyz:score", "cannot load"),
                                        ("examples.sorting.task:TASK", "not callable"),
                                        ("", "required")])
def test_bad_reward_fn_is_a_config_error_naming_the_key(tmp_path, char_tok, spec, says):
    with pytest.raises(ConfigError, match=says) as err:
        _grpo_cfg(tmp_path, char_tok, f"reward.fn={spec}")
    assert "reward.fn" in str(err.value)


def test_grpo_config_checks(tmp_path, char_tok):
    cfg = _grpo_cfg(tmp_path, char_tok)
    assert cfg.reward.fn == "examples.sorting.task:score" and cfg.grpo.estimator == "grpo"
    for bad, key in (("grpo.estimator=ppo", "grpo.estimator"), ("grpo.group_size=1", "grpo.group_size"),
                     ("grpo.prompts_per_rollout=3", "grpo.prompts_per_rollout"),
                     ("grpo.temperature=0", "grpo.temperature")):
        with pytest.raises(ConfigError) as err:
            _grpo_cfg(tmp_path, char_tok, bad)
        assert key in str(err.value)
    with pytest.raises(ConfigError, match=r"ppo\.min_kl_coef"):
        from engine.posttrain.config import validate_posttrain

        cfg.ppo.reward_model, cfg.ppo.prompts_per_rollout = "rm", 64
        cfg.ppo.min_kl_coef, cfg.ppo.max_kl_coef = 0.5, 0.1
        validate_posttrain(cfg, "ppo", 1)


def test_reward_fn_sees_the_user_text(char_tok):
    from engine.posttrain.config import TemplateConfig
    from engine.posttrain.template import ChatTemplate
    from engine.stages.grpo import user_text

    template = ChatTemplate(char_tok, TemplateConfig(default_system="9"))
    ids = template.prompt([{"role": "user", "content": "3142"}])
    assert user_text(template, ids) == "3142"


def test_batches_move_to_the_model_device():
    from engine.posttrain.batches import ListBatches, model_device, sequences_batch, to_device
    from engine.posttrain.models import token_logps

    batch = sequences_batch([([1, 2], [3, 4])], seq_length=6, rows=2)
    moved = to_device(batch, "meta")
    assert all(v.device.type == "meta" for v in moved.values())
    assert model_device([torch.nn.Linear(2, 2, device="meta")]).type == "meta"

    class Layout:
        dp, dp_rank = 1, 0

    lb = ListBatches([([1], [2])] * 4, [], lambda items: sequences_batch(items, 4, 2), 1, 2, 2, Layout(), 0,
                     device="meta")
    assert all(v.device.type == "meta" for b in lb.train_step(0) for v in b.values())

    seen = {}

    class Model(torch.nn.Module):  # records where the forward's inputs are
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, device="meta"))
            self.post_process = False

        def forward(self, tokens, position_ids, attention_mask):
            seen["device"] = tokens.device.type
            return tokens

    token_logps(Model(), batch, vocab_size=10)
    assert seen["device"] == "meta"
