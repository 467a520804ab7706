"""Post-training losses in plain torch: masked CE, Bradley–Terry, DPO, PPO (clipped policy/value), GAE, KL.

Each returns *sums* (plus the count to divide by) where the shared loop normalises over the global batch,
so a stage's update is the same under every TP/PP/DP layout. Tests compare each with a hand-written
reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values.float() * mask.float()).sum()


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of per-token log-probabilities over the answer tokens of each row: ``[b, s] -> [b]``."""
    return (token_logps.float() * mask.float()).sum(-1)


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Summed ``-log σ(r_chosen - r_rejected)`` over pairs (InstructGPT's reward-model loss)."""
    loss = -F.logsigmoid(chosen.float() - rejected.float())
    return (loss * weight).sum() if weight is not None else loss.sum()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Summed DPO loss ``-log σ(β[(π_c − ref_c) − (π_r − ref_r)])`` over pairs of sequence log-probs."""
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(beta * logits.float())
    return (loss * weight).sum() if weight is not None else loss.sum()


def chosen_nll(policy_chosen: torch.Tensor, chosen_tokens: torch.Tensor,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Summed per-token NLL of the chosen answers, ``−log π(chosen) / |chosen|`` per pair — the RPO /
    "DPO + NLL" term (TRL's ``rpo_alpha``) that keeps DPO from lowering the chosen answers' likelihood."""
    loss = -policy_chosen.float() / chosen_tokens.float().clamp(min=1)
    return (loss * weight).sum() if weight is not None else loss.sum()


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimators of KL(π‖ref) from samples of π (Schulman's k1, k2, k3)."""
    log_ratio = logp.float() - ref_logp.float()
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    if kind == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {kind!r} (k1 | k2 | k3)")


def kl_penalised_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, coef: float) -> torch.Tensor:
    """Per-token PPO rewards ``[b, s]``: ``−coef·kl`` on every response token (``mask``), plus each row's
    sequence score ``scores[b]`` on its last response token (the one that emitted EOS, when reached)."""
    mask = mask.float()
    rewards = -coef * kl.float() * mask
    last = (mask * torch.arange(mask.shape[1], device=mask.device)).argmax(1)
    real = mask.sum(1) > 0
    rows = torch.arange(mask.shape[0], device=mask.device)[real]
    rewards[rows, last[real]] += scores.float()[real]
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over left-aligned responses ``[b, T]`` (mask: 1 on real tokens).

    The value after a row's last token is 0 (the episode ends). Returns (advantages, returns), zero on
    padding.
    """
    mask = mask.float()
    values = values.float() * mask
    adv = torch.zeros_like(values)
    last = torch.zeros(values.shape[0], dtype=values.dtype, device=values.device)
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t].float() + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < values.shape[1] else 0.0)
        adv[:, t] = last * mask[:, t]
    return adv, (adv + values) * mask


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mask = mask.float()
    n = mask.sum().clamp(min=1)
    mean = (values * mask).sum() / n
    var = (((values - mean) * mask) ** 2).sum() / n
    return (values - mean) * torch.rsqrt(var + eps) * mask


def ppo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                    clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed clipped surrogate ``max(−A·ρ, −A·clip(ρ, 1±ε))`` over tokens; and the clipped-token count."""
    ratio = torch.exp(logp.float() - old_logp.float())
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = torch.maximum(unclipped, clipped)
    return masked_sum(loss, mask), masked_sum((clipped > unclipped).float(), mask)


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip: float) -> torch.Tensor:
    """Summed clipped value loss ``½·max((V−R)², (V_old + clip(V−V_old, ±ε) − R)²)`` over tokens."""
    clipped = old_values + torch.clamp(values.float() - old_values, -clip, clip)
    loss = 0.5 * torch.maximum((values.float() - returns) ** 2, (clipped - returns) ** 2)
    return masked_sum(loss, mask)


class AdaptiveKLController:
    """Ziegler et al. (2019): move the KL coefficient so the measured KL tracks ``target``."""

    def __init__(self, init_coef: float, target: float | None, horizon: int) -> None:
        self.coef, self.target, self.horizon = init_coef, target, horizon

    def update(self, kl: float, n_steps: int) -> float:
        if self.target:  # None/0: a fixed coefficient
            error = max(-0.2, min(0.2, kl / self.target - 1.0))
            self.coef *= 1.0 + error * n_steps / self.horizon
        return self.coef
