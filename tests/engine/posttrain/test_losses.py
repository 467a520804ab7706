"""Post-training losses against hand-written references (loops over scalars, no shared code)."""

from __future__ import annotations

import math

import pytest
import torch

from engine.posttrain import losses


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_bradley_terry_matches_scalar_formula():
    c, r = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([0.0, 0.5, 2.5])
    w = torch.tensor([1.0, 1.0, 0.0])
    want = sum(-_logsig(a - b) * m for a, b, m in zip(c.tolist(), r.tolist(), w.tolist(), strict=True))
    assert float(losses.bradley_terry(c, r, w)) == pytest.approx(want, rel=1e-6)


def test_dpo_loss_matches_scalar_formula():
    pc, pr = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.5])
    rc, rr = torch.tensor([-3.5, -5.0]), torch.tensor([-3.8, -4.0])
    beta = 0.3
    want = sum(-_logsig(beta * ((a - c) - (b - d))) for a, b, c, d in
               zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), strict=True))
    assert float(losses.dpo_loss(pc, pr, rc, rr, beta)) == pytest.approx(want, rel=1e-6)
    # at the reference the loss is log 2 per pair
    assert float(losses.dpo_loss(rc, rr, rc, rr, beta)) == pytest.approx(2 * math.log(2), rel=1e-6)


def test_chosen_nll_is_per_token_nll_of_the_chosen_answers():
    chosen = torch.tensor([-3.0, -8.0, -1.0])  # summed log-probs of each chosen answer
    tokens = torch.tensor([3.0, 4.0, 2.0])
    w = torch.tensor([1.0, 1.0, 0.0])  # the last pair is padding
    want = 3.0 / 3.0 + 8.0 / 4.0
    assert float(losses.chosen_nll(chosen, tokens, w)) == pytest.approx(want, rel=1e-6)
    assert float(losses.chosen_nll(chosen, tokens)) == pytest.approx(want + 0.5, rel=1e-6)


def test_masked_sequence_logps():
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5]])
    mask = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert losses.sequence_logps(lp, mask).tolist() == [-5.0, -0.5]


def test_gae_hand_computed():
    # one row, 3 tokens then padding; gamma=0.9, lam=0.8
    r = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[0.5, 0.4, 0.3, 9.0]])  # the pad value must be ignored
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    g, lam = 0.9, 0.8
    d2 = 1.0 + 0.0 - 0.3
    d1 = 0.0 + g * 0.3 - 0.4
    d0 = 0.0 + g * 0.4 - 0.5
    a2 = d2
    a1 = d1 + g * lam * a2
    a0 = d0 + g * lam * a1
    adv, ret = losses.gae(r, v, m, g, lam)
    assert adv[0].tolist() == pytest.approx([a0, a1, a2, 0.0], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.4, a2 + 0.3, 0.0], abs=1e-6)


def test_gae_response_not_at_start():
    # a response in the middle of the row (right-padded batch): positions before it do not leak in
    r = torch.tensor([[5.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[7.0, 0.2, 0.1, 3.0]])
    m = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    adv, _ = losses.gae(r, v, m, 1.0, 1.0)
    assert adv[0].tolist() == pytest.approx([0.0, 1.0 - 0.2, 1.0 - 0.1, 0.0], abs=1e-6)


def test_kl_estimators():
    lp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    d = [0.5, -1.0]
    assert losses.kl_estimate(lp, ref, "k1").tolist() == pytest.approx(d)
    assert losses.kl_estimate(lp, ref, "k2").tolist() == pytest.approx([0.5 * x * x for x in d])
    assert losses.kl_estimate(lp, ref, "k3").tolist() == pytest.approx([math.exp(-x) - 1 + x for x in d])
    with pytest.raises(ValueError):
        losses.kl_estimate(lp, ref, "k9")


def test_k3_is_unbiased_kl():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(5), 0)
    q = torch.softmax(torch.randn(5), 0)
    x = torch.multinomial(p, 200000, replacement=True)
    est = losses.kl_estimate(p.log()[x], q.log()[x], "k3").mean()
    assert float(est) == pytest.approx(float((p * (p / q).log()).sum()), rel=0.03)


def test_ppo_policy_loss_clipping():
    old = torch.zeros(4)
    lp = torch.log(torch.tensor([1.5, 0.5, 1.1, 0.7]))  # ratios
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    mask = torch.ones(4)
    eps = 0.2
    want, clipped = 0.0, 0
    for ratio, a in zip([1.5, 0.5, 1.1, 0.7], adv.tolist(), strict=True):
        u, c = -a * ratio, -a * min(max(ratio, 1 - eps), 1 + eps)
        want += max(u, c)
        clipped += c > u
    total, n_clipped = losses.ppo_policy_loss(lp, old, adv, mask, eps)
    assert float(total) == pytest.approx(want, rel=1e-6)
    assert float(n_clipped) == clipped == 2  # 1.5 with A>0 and 0.7 with A<0


def test_ppo_value_loss_clipping():
    v, old, ret = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.1]), torch.tensor([2.0, -1.0])
    eps = 0.2
    want = 0.0
    for a, b, r in zip(v.tolist(), old.tolist(), ret.tolist(), strict=True):
        clipped = b + min(max(a - b, -eps), eps)
        want += 0.5 * max((a - r) ** 2, (clipped - r) ** 2)
    assert float(losses.ppo_value_loss(v, old, ret, torch.ones(2), eps)) == pytest.approx(want, rel=1e-6)


def test_adaptive_kl_controller():
    ctl = losses.AdaptiveKLController(0.1, target=1.0, horizon=100)
    ctl.update(kl=3.0, n_steps=10)  # error clipped to +0.2
    assert ctl.coef == pytest.approx(0.1 * (1 + 0.2 * 10 / 100))
    ctl.update(kl=0.9, n_steps=10)
    assert ctl.coef == pytest.approx(0.1 * 1.02 * (1 - 0.1 * 10 / 100))
    fixed = losses.AdaptiveKLController(0.1, target=None, horizon=100)
    assert fixed.update(5.0, 10) == 0.1
