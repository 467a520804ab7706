"""Supervised fine-tuning: answer-only next-token loss on chat-templated, packed examples.

    torchrun --nproc-per-node N -m engine.stages.sft --config configs/posttrain/sft_sort.yaml [key.sub=value ...]

Rows: Alpaca (instruction, input, output) or chat (messages) from Parquet/JSONL (``dataset.train``).
Starts from the pretrained checkpoint (``checkpoint.load``); packs several examples per row with a
per-example attention mask (``sft.pack``); evaluates the loss on held-out answers.
"""

from __future__ import annotations

from functools import partial

from engine.posttrain.config import PosttrainConfig
from engine.stages.common import StageRun, posttrain_main, run_main


def sft_task(batches: object) -> object:
    """The loss of pretraining restricted to answer tokens; the batch may carry a packing mask."""
    import torch

    from engine.loop import Task

    def forward(model: torch.nn.Module, batch: dict) -> torch.Tensor:
        return model(batch["tokens"], batch["position_ids"], batch.get("attention_mask"), labels=batch["labels"])

    def loss(batch: dict, per_token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["loss_mask"].to(per_token.device).float()
        return (per_token.float() * mask).sum(), mask.sum()

    return Task(batches=batches, forward=forward, loss=loss)


def build(cfg: PosttrainConfig) -> StageRun:
    from megatron.core.models.gpt import GPTModel

    from engine.loop import Trainer
    from engine.posttrain.batches import ListBatches, collate_sft, pack
    from engine.stages.common import ckpt_dir, load_split, resume_or_init, setup, trainable

    layout = setup(cfg)
    train, valid, info, _ = load_split(cfg, "sft")
    s, t = cfg.model.seq_length, cfg.train
    rows = pack(train, s) if cfg.sft.pack else [[e] for e in train]
    held = pack(valid, s) if cfg.sft.pack else [[e] for e in valid]
    collate = partial(collate_sft, seq_length=s, micro_batch=t.micro_batch_size, with_mask=cfg.sft.pack)
    batches = ListBatches(rows, held, collate, 1, t.global_batch_size, t.micro_batch_size, layout,
                          cfg.dataset.shuffle_seed)
    model, optimizer, scheduler = trainable(cfg, GPTModel, cfg.checkpoint.load)
    trainer = Trainer(cfg, sft_task(batches), model, optimizer, scheduler)
    resume_or_init(trainer, cfg)
    return StageRun(cfg, layout, trainer, ckpt_dir(cfg), {**info, "packed_rows": len(rows)})


def main(argv: list[str] | None = None) -> int:
    return posttrain_main("sft", build, __doc__, argv)


if __name__ == "__main__":
    run_main(main)
