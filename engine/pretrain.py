"""GPT pretraining entry point.

    torchrun --nproc-per-node N engine/pretrain.py --config configs/pretrain/tiny_cpu.yaml [key.sub=value ...]

The config is read and validated before anything else happens (a bad key fails in under a second, naming
the key). Then: process groups, model, optimizer, data; resume from ``checkpoint.dir/latest`` if present
(else optional initial weights from ``checkpoint.load``); train, evaluate, checkpoint. Exit status 3 means
the run stopped on a NaN/Inf loss (the last good checkpoint is untouched).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by torchrun: make `engine` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config import ConfigError, PretrainConfig, load_config


@dataclass
class Run:
    """Everything a training run holds, built by ``build_run``."""

    cfg: PretrainConfig
    layout: Any
    trainer: Any
    ckpt_dir: Path


def ckpt_dir(cfg: PretrainConfig) -> Path:
    return Path(cfg.checkpoint.dir or Path(cfg.train.run_dir) / "checkpoints")


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
  torchrun --nproc-per-node 2 engine/pretrain.py --config configs/pretrain/tiny_cpu.yaml \\
      data.prefix=runs/demo/tokens/docs parallel.tp=2 train.steps=100 train.run_dir=runs/tp2
  torchrun --nproc-per-node 4 engine/pretrain.py --config configs/pretrain/tiny_cpu.yaml \\
      data.prefix=runs/demo/tokens/mix.json parallel.pp=2 parallel.vpp=2 parallel.distributed_optimizer=true
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
      engine/pretrain.py --config configs/pretrain/llama_1b_h200.yaml parallel.tp=2 \\
      kernels.fused_linear_cross_entropy=false data.prefix=...
per-step metrics: <train.run_dir>/metrics.jsonl (and TensorBoard); checkpoints: <train.run_dir>/checkpoints;
rerun the same command to resume from the latest checkpoint. Exit codes: 2 bad config, 3 NaN/Inf loss.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML config (configs/pretrain/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. parallel.tp=2")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"ConfigError: {exc}", file=sys.stderr)
        return 2

    import torch.distributed as dist

    from engine.model import num_parameters, precision

    run = build_run(cfg)
    header = {"config": cfg.to_dict(), "world_size": dist.get_world_size(), "layout": vars(run.layout),
              "precision": precision(cfg), "parameters": num_parameters(cfg)}
    return fit_and_close(cfg, run.trainer.step, header, lambda logger: run.trainer.fit(logger, run.ckpt_dir))


def fit_and_close(cfg: PretrainConfig, start_step: int, header: dict[str, Any],
                  body: Callable[[Any], Any]) -> int:
    """Every stage's tail: ``body(logger)`` with rank 0's metrics logger; a NaN stop gives exit code 3;
    the logger is closed and the process group torn down whatever happens."""
    import torch.distributed as dist

    from engine.loop import NonFiniteLoss
    from engine.metrics import MetricsLogger

    rank0 = dist.get_rank() == 0
    logger = MetricsLogger(cfg.train.run_dir, rank0, cfg.logging.tensorboard, cfg.train.steps,
                           start_step, cfg.train.progress, header)
    status = 0
    try:
        body(logger)
    except NonFiniteLoss as exc:
        if rank0:
            print(f"error: {exc}", file=sys.stderr)
        status = 3
    finally:
        logger.close()
    dist.barrier()
    dist.destroy_process_group()
    return status


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
