"""Direct preference optimisation: the policy against a frozen reference, both from the SFT checkpoint.

    torchrun --nproc-per-node N -m engine.stages.dpo --config configs/posttrain/dpo_sort.yaml [key.sub=value ...]

Same preference files as the reward model. The reference's sequence log-probs are computed per
micro-batch by a second model from the same builder (forward only, the same pipeline layout), then the
policy minimises ``-log σ(β[(π_c − ref_c) − (π_r − ref_r)])``, plus ``dpo.nll_coef`` times the chosen
answer's per-token NLL when set (RPO: near-identical pairs otherwise lower the chosen likelihood too).
"""

from __future__ import annotations

from functools import partial

import torch

from engine.posttrain.config import PosttrainConfig
from engine.stages.common import StageRun, posttrain_main, run_main


def dpo_task(batches: object, beta: float, vocab_size: int, nll_coef: float = 0.0) -> object:
    from engine.loop import Task
    from engine.posttrain.losses import chosen_nll, dpo_loss, sequence_logps
    from engine.posttrain.models import token_logps

    def loss(batch: dict, logps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["loss_mask"].to(logps.device)
        seq = sequence_logps(logps, mask)
        ref = batch["ref_logps"].to(seq.device)
        n = seq.shape[0] // 2
        w = batch["pair_weight"].to(seq.device)
        total = dpo_loss(seq[:n], seq[n:], ref[:n], ref[n:], beta, w)
        if nll_coef:
            total = total + nll_coef * chosen_nll(seq[:n], mask[:n].sum(-1), w)
        return total, w.sum()

    return Task(batches=batches, forward=partial(token_logps, vocab_size=vocab_size), loss=loss)


def reference_logps(reference: list[torch.nn.Module], cfg: PosttrainConfig, microbatches: list[dict]) -> list[dict]:
    """Attach the frozen reference's sequence log-probs (``ref_logps``) on the last pipeline stage."""
    from engine.posttrain.losses import sequence_logps
    from engine.posttrain.models import forward_collect, token_logps

    def collect(batch: dict, logps: torch.Tensor) -> torch.Tensor:
        return sequence_logps(logps, batch["loss_mask"].to(logps.device))

    forward = partial(token_logps, vocab_size=cfg.tokenizer.vocab_size)  # the policy's masking exactly
    out = forward_collect(reference, microbatches, forward, collect, cfg.model.seq_length,
                          cfg.train.micro_batch_size)
    if out is not None:
        for batch, ref in zip(microbatches, out, strict=True):
            batch["ref_logps"] = ref
    return microbatches


def build(cfg: PosttrainConfig) -> StageRun:
    from megatron.core.models.gpt import GPTModel

    from engine.loop import Trainer
    from engine.posttrain.batches import ListBatches, collate_pairs
    from engine.stages.common import ckpt_dir, frozen, load_split, resume_or_init, setup, trainable

    layout = setup(cfg)
    train, valid, info, _ = load_split(cfg, "pairs")
    t = cfg.train
    reference = frozen(cfg, GPTModel, cfg.dpo.reference or cfg.checkpoint.load)
    collate = partial(collate_pairs, seq_length=cfg.model.seq_length, micro_batch=t.micro_batch_size)
    batches = ListBatches(train, valid, collate, 2, t.global_batch_size, t.micro_batch_size, layout,
                          cfg.dataset.shuffle_seed, prepare=partial(reference_logps, reference, cfg))
    model, optimizer, scheduler = trainable(cfg, GPTModel, cfg.checkpoint.load)
    trainer = Trainer(cfg, dpo_task(batches, cfg.dpo.beta, cfg.tokenizer.vocab_size, cfg.dpo.nll_coef), model, optimizer, scheduler)
    resume_or_init(trainer, cfg)
    return StageRun(cfg, layout, trainer, ckpt_dir(cfg), info)


def main(argv: list[str] | None = None) -> int:
    return posttrain_main("dpo", build, __doc__, argv)


if __name__ == "__main__":
    run_main(main)
