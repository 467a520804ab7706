"""Reward model: the policy architecture with a scalar head, trained with the Bradley–Terry loss.

    torchrun --nproc-per-node N -m engine.stages.reward --config configs/posttrain/reward_sort.yaml [key.sub=value ...]

Rows: pairs (prompt, chosen, rejected) or K ranked answers per prompt (all K·(K−1)/2 pairs; ties
dropped), ranked by people (the file's order) or by ``dataset.judge`` (RLAIF). The body starts from the
SFT checkpoint (``checkpoint.load``) with a fresh zero head; the score of a sequence is the head's
output at its last token. Reports held-out pairwise accuracy.
"""

from __future__ import annotations

from functools import partial

import torch

from engine.posttrain.config import PosttrainConfig
from engine.stages.common import StageRun, posttrain_main, run_main


def last_scores(batch: dict, values: torch.Tensor) -> torch.Tensor:
    """The head's output at each row's last token: ``[b, s] -> [b]``."""
    return values.float().gather(1, batch["last"].to(values.device)[:, None]).squeeze(1)


def value_forward(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return model(batch["tokens"], batch["position_ids"], None)


def reward_task(batches: object) -> object:
    from engine.loop import Task
    from engine.posttrain.losses import bradley_terry

    def loss(batch: dict, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = last_scores(batch, values)
        n = r.shape[0] // 2
        w = batch["pair_weight"].to(r.device)
        return bradley_terry(r[:n], r[n:], w), w.sum()

    return Task(batches=batches, forward=value_forward, loss=loss)


def pairwise_accuracy(model: list[torch.nn.Module], rounds: list[list[dict]], cfg: PosttrainConfig) -> float:
    """Share of held-out pairs whose chosen answer scores above the rejected one (all ranks agree)."""
    from engine.parallel import all_reduce_sum
    from engine.posttrain.models import forward_collect

    def collect(batch: dict, values: torch.Tensor) -> torch.Tensor:
        r = last_scores(batch, values)
        n = r.shape[0] // 2
        w = batch["pair_weight"].to(r.device)
        return torch.stack([((r[:n] > r[n:]).float() * w).sum(), w.sum()])

    right = total = 0.0
    for microbatches in rounds:
        for v in forward_collect(model, microbatches, value_forward, collect, cfg.model.seq_length,
                                 cfg.train.micro_batch_size) or []:
            right += float(v[0])
            total += float(v[1])
    from megatron.core import parallel_state as ps

    tp = ps.get_tensor_model_parallel_world_size()  # each TP rank of the last stage holds the same counts
    right, total = all_reduce_sum([right / tp, total / tp])
    for m in model:
        m.train()
    return right / total if total else float("nan")


def build(cfg: PosttrainConfig) -> StageRun:
    from engine.loop import Trainer
    from engine.posttrain.batches import ListBatches, collate_pairs
    from engine.posttrain.models import ValueGPT
    from engine.stages.common import ckpt_dir, load_split, resume_or_init, setup, trainable

    layout = setup(cfg)
    train, valid, info, _ = load_split(cfg, "pairs")
    t = cfg.train
    collate = partial(collate_pairs, seq_length=cfg.model.seq_length, micro_batch=t.micro_batch_size)
    batches = ListBatches(train, valid, collate, 2, t.global_batch_size, t.micro_batch_size, layout,
                          cfg.dataset.shuffle_seed)
    model, optimizer, scheduler = trainable(cfg, ValueGPT, cfg.checkpoint.load)
    trainer = Trainer(cfg, reward_task(batches), model, optimizer, scheduler)
    resume_or_init(trainer, cfg)
    run = StageRun(cfg, layout, trainer, ckpt_dir(cfg), info)
    run.after_fit = lambda: {"rm_accuracy": pairwise_accuracy(trainer.model, batches.eval_rounds(), cfg)}
    return run


def main(argv: list[str] | None = None) -> int:
    return posttrain_main("reward", build, __doc__, argv)


if __name__ == "__main__":
    run_main(main)
