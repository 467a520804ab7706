"""Optimizer and learning-rate schedule: megatron-core's AdamW (optionally distributed) and its scheduler.

Weight decay applies to matrices only (megatron's default: no decay on 1-D params and biases). The
schedule is linear warmup then constant, linear, cosine or WSD (warmup–stable–decay) down to ``min_lr``.
"""

from __future__ import annotations

import torch
from megatron.core.optimizer import MegatronOptimizer, OptimizerConfig, get_megatron_optimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from engine.config import PretrainConfig
from engine.model import precision


def build_optimizer(cfg: PretrainConfig, model: list[torch.nn.Module]) -> MegatronOptimizer:
    o = cfg.optim
    bf16 = precision(cfg) == "bf16"
    config = OptimizerConfig(
        optimizer="adam",
        lr=o.lr,
        min_lr=o.min_lr,
        weight_decay=o.weight_decay,
        adam_beta1=o.beta1,
        adam_beta2=o.beta2,
        adam_eps=o.eps,
        clip_grad=o.clip_grad,
        bf16=bf16,
        params_dtype=torch.float32,
        use_distributed_optimizer=cfg.parallel.distributed_optimizer,
        overlap_param_gather=cfg.parallel.overlap_param_gather,
    )
    return get_megatron_optimizer(config, model)


def build_scheduler(cfg: PretrainConfig, optimizer: MegatronOptimizer) -> OptimizerParamScheduler:
    """Megatron's scheduler counted in optimizer steps (it is stepped with increment=1)."""
    o, steps = cfg.optim, cfg.train.steps
    style = o.schedule
    wsd_steps = None
    if style == "wsd":
        wsd_steps = o.wsd_decay_steps if o.wsd_decay_steps is not None else max(1, steps // 10)
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0 if o.warmup_steps else o.lr,
        max_lr=o.lr,
        min_lr=o.min_lr,
        lr_warmup_steps=o.warmup_steps,
        lr_decay_steps=steps,
        lr_decay_style=style,
        start_wd=o.weight_decay,
        end_wd=o.weight_decay,
        wd_incr_steps=steps,
        wd_incr_style="constant",
        wsd_decay_steps=wsd_steps,
        lr_wsd_decay_style=o.wsd_decay_style if style == "wsd" else None,
    )


def current_lr(optimizer: MegatronOptimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
