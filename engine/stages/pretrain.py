"""GPT pretraining, the first stage: the same command line and tail as the post-training stages.

    torchrun --nproc-per-node N -m engine.stages.pretrain --config configs/pretrain/tiny_cpu.yaml [key.sub=value ...]
    torchrun --nproc-per-node N engine/pretrain.py ...   # the same (engine/pretrain.py calls this main)

The config is read and validated before anything else happens (a bad key fails in under a second, naming
the key). Then: process groups, model, optimizer, data; resume from ``checkpoint.dir/latest`` if present
(else optional initial weights from ``checkpoint.load``); train, evaluate, checkpoint. Exit status 3 means
the run stopped on a NaN/Inf loss (the last good checkpoint is untouched).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import PretrainConfig, load_config
from engine.stages.common import ckpt_dir, fit_and_close, fit_run, guarded, parse_args, run_main, stage_parser


@dataclass
class Run:
    """Everything a training run holds, built by ``build_run``."""

    cfg: PretrainConfig
    layout: Any
    trainer: Any
    ckpt_dir: Path


def build_run(cfg: PretrainConfig, resume: bool | None = None) -> Run:
    """Process groups (kept if they exist), model, optimizer, scheduler, data and a Trainer for ``cfg``."""
    from engine import checkpoint
    from engine.data import PretrainBatches
    from engine.loop import Trainer, pretrain_task
    from engine.model import build_model
    from engine.optim import build_optimizer, build_scheduler
    from engine.parallel import init_distributed, seed_everything, setup_model_parallel

    init_distributed()
    layout = setup_model_parallel(cfg.parallel)
    seed_everything(cfg.train.seed)
    model = build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    scheduler = build_scheduler(cfg, optimizer)
    batches = PretrainBatches(cfg, layout)
    trainer = Trainer(cfg, pretrain_task(batches), model, optimizer, scheduler)
    directory = ckpt_dir(cfg)
    resume = cfg.checkpoint.resume if resume is None else resume
    found = checkpoint.latest(directory) if resume else None
    if found is not None:
        trainer.resume(found)
    elif cfg.checkpoint.load:
        checkpoint.load_weights(cfg.checkpoint.load, model, optimizer)
    return Run(cfg, layout, trainer, directory)


EXAMPLES = """examples:
  torchrun --nproc-per-node 2 -m engine.stages.pretrain --config configs/pretrain/tiny_cpu.yaml \\
      data.prefix=runs/demo/tokens/docs parallel.tp=2 train.steps=100 train.run_dir=runs/tp2
  torchrun --nproc-per-node 4 -m engine.stages.pretrain --config configs/pretrain/tiny_cpu.yaml \\
      data.prefix=runs/demo/tokens/mix.json parallel.pp=2 parallel.vpp=2 parallel.distributed_optimizer=true
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
      -m engine.stages.pretrain --config configs/pretrain/llama_1b_h200.yaml parallel.tp=2 \\
      kernels.fused_linear_cross_entropy=false data.prefix=...
per-step metrics: <train.run_dir>/metrics.jsonl (and TensorBoard); checkpoints: <train.run_dir>/checkpoints;
rerun the same command to resume from the latest checkpoint. Exit codes: 2 bad config, 3 NaN/Inf loss.
"""


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, EXAMPLES, "YAML config (configs/pretrain/*.yaml)")
    args = parse_args(parser, argv)

    def body() -> int:
        cfg = load_config(args.config, args.overrides)  # before any heavy import: a bad key fails fast

        import torch.distributed as dist

        from engine.model import num_parameters, precision

        run = build_run(cfg)
        header = {"config": cfg.to_dict(), "world_size": dist.get_world_size(), "layout": vars(run.layout),
                  "precision": precision(cfg), "parameters": num_parameters(cfg)}
        return fit_and_close(cfg, run.trainer.step, header, lambda logger: fit_run(run, logger), desc="pretrain")

    return guarded(body)


if __name__ == "__main__":
    run_main(main)
