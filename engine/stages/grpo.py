"""GRPO / RLOO: policy-gradient post-training from a Python reward function — no critic, no reward model.

    torchrun --nproc-per-node N -m engine.stages.grpo --config configs/posttrain/grpo_sort.yaml [key.sub=value ...]

Each iteration: take ``grpo.prompts_per_rollout`` prompts (the PPO stage's seeded order), sample
``grpo.group_size`` answers to each with the KV-cache generator, score every answer with
``reward.fn`` (``module:function(prompt, answer) -> float``, e.g. ``examples.sorting.task:score``),
turn the scores into group-relative advantages (``grpo.estimator``: ``grpo`` = (r − mean)/std within the
group, Shao et al. 2024; ``rloo`` = r − mean of the other answers, Ahmadian et al. 2024), then
``grpo.epochs`` passes of the clipped policy loss plus ``grpo.kl_coef`` × k3 KL to the frozen reference,
each update one ``Trainer.train_step`` of the shared loop (``train.steps`` counts them). A group stays
on one data-parallel rank, so its advantages need no communication.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import torch

from engine.posttrain.config import PosttrainConfig
from engine.stages.common import StageRun, posttrain_main, run_iterations, run_main


def user_text(template: Any, prompt_ids: list[int]) -> str:
    """The last user turn's text of a templated prompt (what the reward function is asked about)."""
    user, end = template.role_ids["user"], template.end_id
    start = max(i for i, t in enumerate(prompt_ids) if t == user) + 1 if user in prompt_ids else 0
    stop = prompt_ids.index(end, start) if end in prompt_ids[start:] else len(prompt_ids)
    return template.tokenizer.decode(prompt_ids[start:stop], skip_special_tokens=True)


def grpo_task(batches: Any, clip: float, kl_coef: float, stats: dict[str, float], logps_forward: Any) -> Any:
    from engine.loop import Task
    from engine.posttrain.losses import grpo_policy_loss

    def loss(batch: dict, logps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["loss_mask"].to(logps.device)
        ref = batch.get("ref_logps", batch["old_logps"])  # kl_coef 0: no reference, no KL term
        total, clipped, kl = grpo_policy_loss(logps, batch["old_logps"], ref, batch["advantages"], mask, clip,
                                              kl_coef)
        stats["clipped"] = stats.get("clipped", 0.0) + float(clipped)
        stats["kl"] = stats.get("kl", 0.0) + float(kl)
        stats["tokens"] = stats.get("tokens", 0.0) + float(mask.sum())
        return total, mask.sum()

    return Task(batches=batches, forward=logps_forward, loss=loss)


class GRPO:
    """The policy, an optional frozen reference and the reward function; rollout → advantages → updates."""

    def __init__(self, cfg: PosttrainConfig) -> None:
        from megatron.core.models.gpt import GPTModel

        from engine.loop import Trainer
        from engine.posttrain.config import load_reward_fn
        from engine.posttrain.models import token_logps
        from engine.stages.common import frozen, load_split, setup, trainable
        from engine.stages.ppo import CurrentBatches

        g, t = cfg.grpo, cfg.train
        self.cfg, self.layout = cfg, setup(cfg)
        self.prompts, _, self.info, self.template = load_split(cfg, "prompts")
        self.reward_fn = load_reward_fn(cfg.reward.fn)
        self.minibatches = g.prompts_per_rollout * g.group_size // t.global_batch_size
        self.iterations = max(1, t.steps // (g.epochs * self.minibatches))
        self.batches = CurrentBatches(t.global_batch_size // (t.micro_batch_size * self.layout.dp))
        self.stats: dict[str, float] = {}
        self.logps_forward = partial(token_logps, vocab_size=cfg.tokenizer.vocab_size, temperature=g.temperature)
        model, opt, sched = trainable(cfg, GPTModel, cfg.checkpoint.load)
        self.actor = Trainer(cfg, grpo_task(self.batches, g.clip, g.kl_coef, self.stats, self.logps_forward),
                             model, opt, sched)
        self.reference = frozen(cfg, GPTModel, g.reference or cfg.checkpoint.load) if g.kl_coef > 0 else None
        self.iteration = 0

    @property
    def step(self) -> int:
        return self.actor.step

    def rollout(self) -> tuple[list[dict], dict[str, float]]:
        from engine.generate import generate
        from engine.model import unwrap
        from engine.posttrain.batches import model_device, sequences_batch, to_device
        from engine.posttrain.losses import group_advantages
        from engine.posttrain.models import forward_collect
        from engine.stages.ppo import rollout_prompts

        cfg, g = self.cfg, self.cfg.grpo
        prompts = rollout_prompts(self.prompts, self.iteration, g.prompts_per_rollout, cfg.dataset.shuffle_seed,
                                  self.layout)
        asked = [q for q in prompts for _ in range(g.group_size)]
        gen_seed = cfg.train.seed + 7919 * self.iteration + 104729 * self.layout.dp_rank
        t0 = time.perf_counter()
        room = cfg.model.seq_length - max(len(q) for q in asked)
        gen = generate(unwrap(self.actor.model[0]), asked, min(g.max_new_tokens, room), self.template.end_id,
                       cfg.tokenizer.vocab_size, g.temperature, g.top_p, torch.Generator().manual_seed(gen_seed))
        gen_time = time.perf_counter() - t0
        rewards = torch.tensor([float(self.reward_fn(user_text(self.template, q), self.template.decode(r)))
                                for q, r in zip(asked, gen.responses, strict=True)])
        groups = rewards.view(-1, g.group_size)
        adv = group_advantages(groups, g.estimator).flatten()
        mbs = cfg.train.micro_batch_size
        device = model_device(self.actor.model)
        seqs = list(zip(asked, gen.responses, strict=True))
        micro = []
        for i in range(0, len(seqs), mbs):
            b = sequences_batch(seqs[i:i + mbs], cfg.model.seq_length, mbs)
            row_adv = torch.zeros(mbs)
            row_adv[:len(seqs[i:i + mbs])] = adv[i:i + mbs]
            micro.append(to_device({**b, "advantages": row_adv}, device))

        def collect(model: list) -> list[torch.Tensor]:
            return forward_collect(model, micro, self.logps_forward, lambda b, o: o, cfg.model.seq_length, mbs)

        for b, o in zip(micro, collect(self.actor.model), strict=True):
            b["old_logps"] = o
        if self.reference is not None:
            for b, r in zip(micro, collect(self.reference), strict=True):
                b["ref_logps"] = r
        stats = {"reward": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
                 # groups whose answers all score the same: zero advantage, no learning signal
                 "flat_groups": float((groups.std(1) == 0).float().mean()),
                 "entropy": gen.entropy, "response_tokens": gen.tokens / max(len(asked), 1),
                 "gen_time_s": gen_time, "score_time_s": time.perf_counter() - t0 - gen_time}
        return micro, stats

    def iterate(self) -> dict[str, Any]:
        """One rollout and its epochs of updates; returns the iteration's metrics (world means)."""
        from engine.parallel import all_reduce_sum

        micro, stats = self.rollout()
        t0 = time.perf_counter()
        n = self.batches.num_microbatches
        self.stats.clear()
        for _ in range(self.cfg.grpo.epochs):
            for k in range(self.minibatches):
                self.batches.current = micro[k * n:(k + 1) * n]
                res = self.actor.train_step()
        clipped, kl, tokens = all_reduce_sum([self.stats.get(k, 0.0) for k in ("clipped", "kl", "tokens")])
        world = all_reduce_sum([stats["reward"], stats["flat_groups"], 1.0])
        self.iteration += 1
        return {"step": self.step, "iteration": self.iteration, **stats, "reward": world[0] / world[2],
                "flat_groups": world[1] / world[2], "policy_loss": res.loss,
                "kl": kl / max(tokens, 1.0) * stats["response_tokens"], "clip_frac": clipped / max(tokens, 1.0),
                "train_time_s": time.perf_counter() - t0}

    def fit(self, logger: Any = None, ckpt_dir: Any = None) -> list[dict]:
        records = run_iterations(self, logger)
        if ckpt_dir is not None and self.cfg.checkpoint.save_at_end:
            self.actor.save(ckpt_dir)
        return records


def build(cfg: PosttrainConfig) -> StageRun:
    from engine.stages.common import ckpt_dir

    grpo = GRPO(cfg)
    return StageRun(cfg, grpo.layout, grpo, ckpt_dir(cfg), grpo.info)


def main(argv: list[str] | None = None) -> int:
    return posttrain_main("grpo", build, __doc__, argv)


if __name__ == "__main__":
    run_main(main)
