"""Post-training losses in plain torch: masked CE, Bradley–Terry, DPO, PPO (clipped policy/value), GAE, KL,
group-relative advantages (GRPO / RLOO), and the running reward statistics PPO normalises with.

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
    """Ziegler et al. (2019): move the KL coefficient so the measured KL tracks ``target``, kept within
    ``[min_coef, max_coef]`` (unbounded, a KL below target decays it geometrically towards 0 and the
    constraint is gone for good)."""

    def __init__(self, init_coef: float, target: float | None, horizon: int, min_coef: float = 0.0,
                 max_coef: float = float("inf")) -> None:
        self.coef, self.target, self.horizon = init_coef, target, horizon
        self.min_coef, self.max_coef = min_coef, max_coef

    def update(self, kl: float, n_steps: int) -> float:
        if self.target:  # None/0: a fixed coefficient
            error = max(-0.2, min(0.2, kl / self.target - 1.0))
            self.coef *= 1.0 + error * n_steps / self.horizon
            self.coef = min(self.max_coef, max(self.min_coef, self.coef))
        return self.coef


class RunningMoments:
    """Mean and standard deviation of every value seen so far (Chan et al.'s parallel update from each
    batch's count, mean and M2), used to put PPO's sequence scores on a unit scale so the critic's
    targets — the returns — stay O(1) whatever the reward model's scale."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0.0, 0.0, 0.0

    def update(self, count: float, mean: float, m2: float) -> None:
        """Merge a batch given by its count, mean and sum of squared deviations from its mean."""
        if count <= 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.m2 += m2 + delta**2 * self.count * count / total
        self.mean += delta * count / total
        self.count = total

    @property
    def std(self) -> float:
        return (self.m2 / self.count) ** 0.5 if self.count > 1 else 1.0

    def normalise(self, x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        return (x.float() - self.mean) / (self.std + eps)


def group_advantages(rewards: torch.Tensor, estimator: str = "grpo", eps: float = 1e-6) -> torch.Tensor:
    """Per-answer advantages of ``[prompts, G]`` rewards, relative to the other answers to the same prompt.

    ``grpo`` (Shao et al. 2024): ``(r − mean_g) / (std_g + eps)`` (unbiased std over the group);
    ``rloo`` (Ahmadian et al. 2024): ``r − mean of the other G−1`` = ``G/(G−1)·(r − mean_g)``.
    A group whose answers all score the same gets advantage 0 (nothing to learn from it).
    """
    r = rewards.float()
    g = r.shape[1]
    if g < 2:
        raise ValueError("group advantages need at least 2 answers per prompt")
    centred = r - r.mean(1, keepdim=True)
    if estimator == "grpo":
        return centred / (r.std(1, keepdim=True) + eps)
    if estimator == "rloo":
        return centred * g / (g - 1)
    raise ValueError(f"unknown group estimator {estimator!r} (grpo | rloo)")


def grpo_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor,
                     advantages: torch.Tensor, mask: torch.Tensor, clip: float,
                     kl_coef: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GRPO's token loss summed over ``mask``: the clipped surrogate of ``ppo_policy_loss`` (advantages
    ``[b]`` per sequence, broadcast over its tokens) plus ``kl_coef`` × the k3 estimate of KL(π‖ref) taken
    inside the loss (so it has gradient). Returns (loss, clipped-token count, summed k3 KL)."""
    adv = advantages.float()[:, None].expand_as(logp) if advantages.dim() == 1 else advantages.float()
    surrogate, clipped = ppo_policy_loss(logp, old_logp, adv, mask, clip)
    kl = masked_sum(kl_estimate(logp, ref_logp, "k3"), mask)
    return surrogate + kl_coef * kl, clipped, kl.detach()
