"""PPO: actor (from SFT), frozen reference (SFT), critic (from the reward model), frozen reward model.

    torchrun --nproc-per-node N -m engine.stages.ppo --config configs/posttrain/ppo_sort.yaml [key.sub=value ...]

Each iteration: sample ``ppo.prompts_per_rollout`` prompts, generate answers with the KV cache
(temperature/top-p, stop on the template's end token), score them with the reward model, normalise the
scores by their running mean/std (``ppo.normalise_rewards``: the critic's targets stay O(1)), add a
per-token KL penalty toward the reference (coefficient from an adaptive controller tracking
``ppo.target_kl``, kept in ``[ppo.min_kl_coef, ppo.max_kl_coef]``), compute GAE advantages, then ``ppo.epochs`` passes of clipped policy and value
updates — each update one ``Trainer.train_step`` of the shared loop. ``train.steps`` counts those
updates. Logs reward, KL, entropy, clip fraction, value loss, generation vs training time.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.posttrain.config import PosttrainConfig
from engine.stages.common import StageRun, posttrain_main, run_iterations, run_main


class CurrentBatches:
    """The batch builder of a PPO update: whatever minibatch the PPO loop set last."""

    def __init__(self, num_microbatches: int) -> None:
        self.num_microbatches = num_microbatches
        self.current: list[dict] = []

    def train_step(self, step: int) -> list[dict]:
        return self.current

    def eval_rounds(self) -> list:
        return []


def actor_task(batches: CurrentBatches, clip: float, stats: dict[str, float], logps_forward: Any) -> Any:
    from engine.loop import Task
    from engine.posttrain.losses import ppo_policy_loss

    def loss(batch: dict, logps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["loss_mask"].to(logps.device)
        total, clipped = ppo_policy_loss(logps, batch["old_logps"], batch["advantages"], mask, clip)
        stats["clipped"] = stats.get("clipped", 0.0) + float(clipped)
        stats["tokens"] = stats.get("tokens", 0.0) + float(mask.sum())
        return total, mask.sum()

    return Task(batches=batches, forward=logps_forward, loss=loss)


def critic_task(batches: CurrentBatches, clip: float) -> Any:
    from engine.loop import Task
    from engine.posttrain.losses import ppo_value_loss
    from engine.stages.reward import value_forward

    def loss(batch: dict, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["loss_mask"].to(values.device)
        return ppo_value_loss(values, batch["old_values"], batch["returns"], mask, clip), mask.sum()

    return Task(batches=batches, forward=value_forward, loss=loss)


class PPO:
    """Holds the four models and runs rollout → advantages → updates."""

    def __init__(self, cfg: PosttrainConfig) -> None:
        from megatron.core.models.gpt import GPTModel

        from engine.loop import Trainer
        from engine.posttrain.losses import AdaptiveKLController, RunningMoments
        from engine.posttrain.models import ValueGPT, token_logps
        from engine.stages.common import frozen, load_split, setup, trainable

        p, t = cfg.ppo, cfg.train
        self.cfg, self.layout = cfg, setup(cfg)
        train, _, self.info, self.template = load_split(cfg, "prompts")
        self.prompts = train
        self.minibatches = p.prompts_per_rollout // t.global_batch_size
        self.iterations = max(1, t.steps // (p.epochs * self.minibatches))
        n_micro = t.global_batch_size // (t.micro_batch_size * self.layout.dp)
        self.actor_batches, self.critic_batches = CurrentBatches(n_micro), CurrentBatches(n_micro)
        self.stats: dict[str, float] = {}
        # the log-probs of the sampling distribution: real vocabulary only, at the sampling temperature
        self.logps_forward = partial(token_logps, vocab_size=cfg.tokenizer.vocab_size, temperature=p.temperature)
        model, opt, sched = trainable(cfg, GPTModel, cfg.checkpoint.load)
        self.actor = Trainer(cfg, actor_task(self.actor_batches, p.clip, self.stats, self.logps_forward), model,
                             opt, sched)
        model, opt, sched = trainable(cfg, ValueGPT, p.critic or p.reward_model, lr=p.critic_lr)
        self.critic = Trainer(cfg, critic_task(self.critic_batches, p.value_clip), model, opt, sched)
        self.reference = frozen(cfg, GPTModel, p.reference or cfg.checkpoint.load)
        self.reward_model = frozen(cfg, ValueGPT, p.reward_model)
        self.kl = AdaptiveKLController(p.init_kl_coef, p.target_kl, p.kl_horizon, p.min_kl_coef, p.max_kl_coef)
        self.score_moments = RunningMoments()
        self.iteration = 0

    @property
    def step(self) -> int:
        return self.actor.step

    def _prompts(self, iteration: int) -> list[list[int]]:
        """This DP rank's share of the iteration's prompts (the same global set in every layout)."""
        return rollout_prompts(self.prompts, iteration, self.cfg.ppo.prompts_per_rollout,
                               self.cfg.dataset.shuffle_seed, self.layout)

    def _collect(self, model: list, microbatches: list[dict], forward: Any, collect: Any) -> list[torch.Tensor]:
        from engine.posttrain.models import forward_collect

        return forward_collect(model, microbatches, forward, collect, self.cfg.model.seq_length,
                               self.cfg.train.micro_batch_size)

    def rollout(self) -> tuple[list[dict], dict[str, float]]:
        from engine.generate import generate
        from engine.model import unwrap
        from engine.posttrain.batches import model_device, sequences_batch, to_device
        from engine.posttrain.losses import gae, kl_estimate, kl_penalised_rewards
        from engine.stages.reward import last_scores, value_forward

        cfg, p = self.cfg, self.cfg.ppo
        prompts = self._prompts(self.iteration)
        gen_seed = cfg.train.seed + 7919 * self.iteration + 104729 * self.layout.dp_rank
        t0 = time.perf_counter()
        room = cfg.model.seq_length - max(len(q) for q in prompts)
        gen = generate(unwrap(self.actor.model[0]), prompts, min(p.max_new_tokens, room), self.template.end_id,
                       cfg.tokenizer.vocab_size, p.temperature, p.top_p,
                       torch.Generator().manual_seed(gen_seed))
        gen_time = time.perf_counter() - t0
        mbs = cfg.train.micro_batch_size
        seqs = list(zip(prompts, gen.responses, strict=True))
        micro = [sequences_batch(seqs[i:i + mbs], cfg.model.seq_length, mbs) for i in range(0, len(seqs), mbs)]
        micro = [to_device(b, model_device(self.actor.model)) for b in micro]
        ident = lambda b, o: o  # noqa: E731
        old = self._collect(self.actor.model, micro, self.logps_forward, ident)
        ref = self._collect(self.reference, micro, self.logps_forward, ident)
        values = self._collect(self.critic.model, micro, value_forward, ident)
        scores = self._collect(self.reward_model, micro, value_forward, last_scores)
        coef = self.kl.coef
        real_scores = torch.cat([s[b["loss_mask"].sum(1) > 0] for b, s in zip(micro, scores, strict=True)])
        batch_mean, batch_std = self._update_score_moments(real_scores)
        raw = scores
        if p.normalise_rewards:
            scores = [self.score_moments.normalise(s) for s in scores]
        kls, rewards_seen, gaps = [], [], []
        for i, (b, o, r, v, s, s_raw) in enumerate(zip(micro, old, ref, values, scores, raw, strict=True)):
            mask = b["loss_mask"]
            # the sampler's own log-probs, placed where token_logps puts them (label position = token - 1)
            sampled = torch.zeros_like(mask)
            for row, (q, lp) in enumerate(zip(prompts[i * mbs:(i + 1) * mbs], gen.logps[i * mbs:(i + 1) * mbs],
                                              strict=True)):
                sampled[row, len(q) - 1:len(q) - 1 + len(lp)] = torch.tensor(lp)
            gaps.append(((o.float() - sampled).abs() * mask).sum() / mask.sum().clamp(min=1))
            kl = kl_estimate(o, r, p.kl_estimator) * mask
            rewards = kl_penalised_rewards(s, kl, mask, coef)
            real = mask.sum(1) > 0
            adv, ret = gae(rewards, v, mask, p.gamma, p.lam)
            b.update(old_logps=o, old_values=v * mask, advantages=adv, returns=ret)
            kls.append(kl.sum(1)[real])
            rewards_seen.append(s_raw[real])
        if p.whiten_advantages:
            _whiten_global(micro)
        kl_seq = float(torch.cat(kls).mean())
        stats = {"reward": float(torch.cat(rewards_seen).mean()), "kl": kl_seq, "kl_coef": coef,
                 "score_mean": batch_mean, "score_std": batch_std,
                 "score_running_mean": self.score_moments.mean, "score_running_std": self.score_moments.std,
                 "entropy": gen.entropy, "response_tokens": gen.tokens / max(len(prompts), 1),
                 # |log π_train − log π_sample| per response token: ~1e-6 unless the two disagree
                 # (top_p < 1 truncates the sampler; anything else is a bug)
                 "logp_gap": float(torch.stack(gaps).mean()),
                 "gen_time_s": gen_time, "score_time_s": time.perf_counter() - t0 - gen_time}
        return micro, stats

    def _update_score_moments(self, scores: torch.Tensor) -> tuple[float, float]:
        """Fold this rollout's raw scores (all DP ranks) into the running moments; the rollout's mean/std."""
        from megatron.core import parallel_state as ps

        from engine.parallel import all_reduce_sum

        tp = ps.get_tensor_model_parallel_world_size()  # every TP rank holds the same scores
        x = scores.double().cpu()
        n, total, sq = all_reduce_sum([len(x) / tp, float(x.sum()) / tp, float((x**2).sum()) / tp])
        mean = total / max(n, 1.0)
        m2 = max(sq - n * mean**2, 0.0)
        self.score_moments.update(n, mean, m2)
        return mean, (m2 / max(n, 1.0)) ** 0.5

    def iterate(self) -> dict[str, Any]:
        """One rollout and its PPO epochs; returns the iteration's metrics."""
        from engine.parallel import all_reduce_sum

        micro, stats = self.rollout()
        t0 = time.perf_counter()
        n = self.actor_batches.num_microbatches
        self.stats.clear()
        value_losses = []
        for _ in range(self.cfg.ppo.epochs):
            for k in range(self.minibatches):
                chunk = micro[k * n:(k + 1) * n]
                self.actor_batches.current = chunk
                self.critic_batches.current = chunk
                res = self.actor.train_step()
                value_losses.append(self.critic.train_step().loss)
        clipped, tokens = all_reduce_sum([self.stats.get("clipped", 0.0), self.stats.get("tokens", 0.0)])
        world_kl = all_reduce_sum([stats["kl"], stats["reward"], 1.0])
        stats["kl"], stats["reward"] = world_kl[0] / world_kl[2], world_kl[1] / world_kl[2]
        self.kl.update(stats["kl"], self.cfg.ppo.prompts_per_rollout)
        self.iteration += 1
        return {"step": self.step, "iteration": self.iteration, **stats, "policy_loss": res.loss,
                "value_loss": float(np.mean(value_losses)), "clip_frac": clipped / max(tokens, 1.0),
                "train_time_s": time.perf_counter() - t0}

    def fit(self, logger: Any = None, ckpt_dir: Any = None) -> list[dict]:
        records = run_iterations(self, logger)
        if ckpt_dir is not None and self.cfg.checkpoint.save_at_end:
            self.actor.save(ckpt_dir)
            self.critic.save(Path(ckpt_dir).parent / "critic_checkpoints")
        return records


def rollout_prompts(prompts: list[Any], iteration: int, per_rollout: int, seed: int, layout: Any) -> list[Any]:
    """This DP rank's share of iteration ``iteration``'s ``per_rollout`` prompts: a seeded per-epoch
    permutation of ``prompts``, the same global set in every layout."""
    n, out = len(prompts), []
    for i in range(iteration * per_rollout, (iteration + 1) * per_rollout):
        perm = np.random.RandomState(seed + i // n).permutation(n)
        out.append(prompts[perm[i % n]])
    per = per_rollout // layout.dp
    return out[layout.dp_rank * per:(layout.dp_rank + 1) * per]


def _whiten_global(micro: list[dict]) -> None:
    """Whiten advantages with the mean/std of the whole rollout (over data-parallel ranks too)."""
    from megatron.core import parallel_state as ps

    from engine.parallel import all_reduce_sum

    adv = torch.stack([b["advantages"] for b in micro])
    mask = torch.stack([b["loss_mask"] for b in micro])
    tp = ps.get_tensor_model_parallel_world_size()
    s, s2, c = all_reduce_sum([float((adv * mask).sum()) / tp, float((adv**2 * mask).sum()) / tp,
                               float(mask.sum()) / tp])
    mean = s / max(c, 1.0)
    var = max(s2 / max(c, 1.0) - mean**2, 0.0)
    for b in micro:
        b["advantages"] = (b["advantages"] - mean) / (var + 1e-8) ** 0.5 * b["loss_mask"]


def build(cfg: PosttrainConfig) -> StageRun:
    from engine.stages.common import ckpt_dir

    ppo = PPO(cfg)
    return StageRun(cfg, ppo.layout, ppo, ckpt_dir(cfg), ppo.info)


def main(argv: list[str] | None = None) -> int:
    return posttrain_main("ppo", build, __doc__, argv)


if __name__ == "__main__":
    run_main(main)
