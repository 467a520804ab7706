"""What every post-training stage shares: process groups, models from the pretraining builder, the
previous stage's weights, a ``Trainer`` over the shared loop, and the command-line entry.

A stage module supplies ``build(cfg) -> StageRun`` (its data, task and models) and calls ``main``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.config import ConfigError
from engine.posttrain.config import PosttrainConfig, load_posttrain_config


@dataclass
class StageRun:
    cfg: PosttrainConfig
    layout: Any
    trainer: Any
    ckpt_dir: Path
    info: dict[str, Any] = field(default_factory=dict)  # logged in the header (e.g. skipped rows)
    after_fit: Callable[[], dict[str, Any]] | None = None  # final metrics (e.g. pairwise accuracy)


def setup(cfg: PosttrainConfig) -> Any:
    from engine.parallel import init_distributed, seed_everything, setup_model_parallel

    init_distributed()
    layout = setup_model_parallel(cfg.parallel)
    seed_everything(cfg.train.seed)
    return layout


def trainable(cfg: PosttrainConfig, model_cls: Any, init: str | None, lr: float | None = None) -> tuple:
    """Model chunks (masked-attention capable), optimizer and scheduler, initialised from ``init``."""
    import dataclasses

    from engine.model import build_model
    from engine.optim import build_optimizer, build_scheduler
    from engine.posttrain.models import load_backbone, with_masked_attention

    model = build_model(cfg, model_cls=with_masked_attention(model_cls))
    ocfg = cfg if lr is None else dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=lr,
                                                                                     min_lr=lr * 0.1))
    optimizer = build_optimizer(ocfg, model)
    scheduler = build_scheduler(ocfg, optimizer)
    if init:
        load_backbone(init, model, optimizer)
    return model, optimizer, scheduler


def frozen(cfg: PosttrainConfig, model_cls: Any, path: str) -> list[torch.nn.Module]:
    """An eval-mode, gradient-free copy built by the same builder (reference policy, reward model)."""
    from engine.model import build_model
    from engine.posttrain.models import load_backbone, with_masked_attention

    model = build_model(cfg, model_cls=with_masked_attention(model_cls), wrap_ddp=False)
    load_backbone(path, model)
    for m in model:
        m.eval()
        m.requires_grad_(False)
    return model


def ckpt_dir(cfg: PosttrainConfig) -> Path:
    return Path(cfg.checkpoint.dir or Path(cfg.train.run_dir) / "checkpoints")


def resume_or_init(trainer: Any, cfg: PosttrainConfig) -> None:
    """Continue this stage from its latest checkpoint if there is one (the init weights were loaded)."""
    from engine import checkpoint

    found = checkpoint.latest(ckpt_dir(cfg)) if cfg.checkpoint.resume else None
    if found is not None:
        trainer.resume(found)


def run_iterations(stage: Any, logger: Any = None) -> list[dict]:
    """Call ``stage.iterate()`` until ``stage.iteration`` reaches ``stage.iterations`` (the rollout stages:
    PPO, GRPO), logging each record; returns the records."""
    records = []
    while stage.iteration < stage.iterations:
        records.append(rec := stage.iterate())
        if logger is not None:
            logger.log(rec)
    return records


def rank0_print(*args: Any) -> None:
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        print(*args, flush=True)


def main(stage: str, build: Callable[[PosttrainConfig], StageRun], doc: str,
         argv: list[str] | None = None, fit: Callable[[StageRun, Any], None] | None = None) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", required=True, help=f"YAML config (configs/posttrain/{stage}*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. parallel.tp=2")
    args = parser.parse_args(argv)
    try:
        cfg = load_posttrain_config(stage, args.config, args.overrides)
    except ConfigError as exc:
        print(f"ConfigError: {exc}", file=sys.stderr)
        return 2

    import torch.distributed as dist

    from engine.posttrain.records import DataError
    from engine.pretrain import fit_and_close

    try:
        run = build(cfg)
    except DataError as exc:
        print(f"DataError: {exc}", file=sys.stderr)
        return 4
    header = {"stage": stage, "config": cfg.to_dict(), "world_size": dist.get_world_size(),
              "layout": vars(run.layout), **run.info}

    def body(logger: Any) -> None:
        if fit is not None:
            fit(run, logger)
        else:
            run.trainer.fit(logger, run.ckpt_dir)
        if run.after_fit is not None:
            final = run.after_fit()
            logger.log({"step": run.trainer.step, **final})
            rank0_print(" ".join(f"{k}={v:.4f}" for k, v in final.items()))

    return fit_and_close(cfg, run.trainer.step, header, body)


def load_split(cfg: PosttrainConfig, kind: str) -> tuple[list[Any], list[Any], dict[str, Any], Any]:
    """Train and held-out items of ``kind`` (sft | pairs | prompts), the skip counts, and the template."""
    from engine.posttrain.records import RowReader
    from engine.posttrain.template import ChatTemplate

    template = ChatTemplate(cfg.tokenizer.path, cfg.template)
    reader = RowReader(template, cfg.dataset, cfg.model.seq_length)
    train = reader.load(cfg.dataset.train, kind)
    skipped = {"train": dict(train.skipped)}
    items = train.items
    if cfg.dataset.valid:
        valid = reader.load(cfg.dataset.valid, kind)
        skipped["valid"] = dict(valid.skipped)
        held = valid.items
    else:
        cut = len(items) - int(len(items) * cfg.dataset.valid_fraction)
        items, held = items[:cut], items[cut:]
    if any(skipped.values()):
        rank0_print(f"skipped bad rows: {skipped}")
    return items, held, {"skipped_rows": skipped, "train_items": len(items), "valid_items": len(held)}, template
