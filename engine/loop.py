"""The training loop shared by every stage: a stage supplies batches and a loss, the loop does the rest.

A ``Task`` is what a stage (``engine/stages/``: pretraining, SFT, reward model, DPO; PPO and GRPO per update)
contributes:

- ``batches``: an object with ``train_step(step) -> list[micro-batch]``, ``eval_rounds()`` and
  ``num_microbatches`` (see ``engine.data.PretrainBatches``);
- ``forward(model, batch) -> output``: one model call on a micro-batch;
- ``loss(batch, output) -> (loss_sum, num_tokens)``: summed over this micro-batch's loss tokens.

The loop runs megatron's pipeline schedule (no pipelining, 1F1B or interleaved 1F1B, picked from the
parallel state) with per-token loss normalisation over the whole global batch, so the update is the
same under every layout. It guards against NaN/Inf losses (skip the update or stop before any save),
logs metrics and saves checkpoints.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from megatron.core import parallel_state as ps
from megatron.core.distributed import finalize_model_grads
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.utils import get_model_config

from engine import checkpoint
from engine.config import PretrainConfig
from engine.metrics import MetricsLogger, flops_per_token, memory_gb, peak_tflops
from engine.model import precision
from engine.optim import current_lr
from engine.parallel import all_reduce_sum

Batch = dict[str, torch.Tensor]


class NonFiniteLoss(RuntimeError):
    """A step produced a NaN/Inf loss and ``train.on_nan=stop``: no update, no checkpoint."""


@dataclass
class Task:
    batches: Any
    forward: Callable[[torch.nn.Module, Batch], torch.Tensor]
    loss: Callable[[Batch, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class StepResult:
    loss: float
    num_tokens: int
    grad_norm: float | None
    lr: float
    skipped: bool


class Trainer:
    """Holds model chunks, optimizer and scheduler; runs steps, evaluation, checkpointing."""

    def __init__(self, cfg: PretrainConfig, task: Task, model: list[torch.nn.Module], optimizer: Any,
                 scheduler: Any) -> None:
        self.cfg, self.task, self.model = cfg, task, model
        self.optimizer, self.scheduler = optimizer, scheduler
        self.step = 0  # optimizer steps done (the next step to run is step + 1)
        self._nan_steps = set(cfg.train.inject_nan_steps)
        self._fwd_bwd = get_forward_backward_func()
        config = get_model_config(model[0])
        config.finalize_model_grads_func = finalize_model_grads
        config.grad_scale_func = optimizer.scale_loss if optimizer is not None else None

    # -- one step ------------------------------------------------------------------------------
    def _forward_step(self, inject_nan: bool, data_iterator: Any, model: torch.nn.Module) -> Any:
        batch = next(data_iterator)
        output = self.task.forward(model, batch)
        return output, partial(self._loss, batch, inject_nan)

    def _loss(self, batch: Batch, inject_nan: bool, output: torch.Tensor) -> tuple:
        loss_sum, num_tokens = self.task.loss(batch, output)
        if inject_nan:
            loss_sum = loss_sum * float("nan")
        num_tokens = num_tokens.to(torch.int)
        report = torch.stack([loss_sum.detach().float(), num_tokens.float()])
        return loss_sum, num_tokens, {"loss": report}

    def _run_schedule(self, microbatches: list[Batch], forward_only: bool, inject_nan: bool = False) -> tuple:
        iterators: Any = [iter(microbatches) for _ in self.model]
        if len(self.model) == 1:
            iterators = iterators[0]
        t = self.cfg.train
        reports = self._fwd_bwd(
            forward_step_func=partial(self._forward_step, inject_nan),
            data_iterator=iterators,
            model=self.model if len(self.model) > 1 else self.model[0],
            num_microbatches=len(microbatches),
            seq_length=self.cfg.model.seq_length,
            micro_batch_size=t.micro_batch_size,
            forward_only=forward_only,
        )
        local = [0.0, 0.0]
        for r in reports or []:
            local[0] += float(r["loss"][0])
            local[1] += float(r["loss"][1])
        # last-stage ranks hold the losses (each TP rank the same ones): the TP factor cancels in the ratio
        loss_sum, tokens = all_reduce_sum(local)
        tokens_global = tokens / ps.get_tensor_model_parallel_world_size()
        return (loss_sum / tokens if tokens else float("nan")), round(tokens_global)

    def train_step(self) -> StepResult:
        step = self.step + 1
        for m in self.model:
            m.train()
            m.zero_grad_buffer()
        self.optimizer.zero_grad()
        lr = current_lr(self.optimizer)
        microbatches = self.task.batches.train_step(self.step)
        loss, tokens = self._run_schedule(microbatches, forward_only=False,
                                          inject_nan=step in self._nan_steps)
        if not math.isfinite(loss):
            for m in self.model:
                m.zero_grad_buffer()
            self.optimizer.zero_grad()
            if self.cfg.train.on_nan == "stop":
                raise NonFiniteLoss(f"step {step}: loss is {loss}; stopping (train.on_nan=stop)")
            self.step = step
            return StepResult(loss, tokens, None, lr, skipped=True)
        ok, grad_norm, _ = self.optimizer.step()
        if ok:
            self.scheduler.step(increment=1)
        self.step = step
        return StepResult(loss, tokens, None if grad_norm is None else float(grad_norm), lr, skipped=not ok)

    @torch.no_grad()
    def evaluate(self) -> float | None:
        rounds = self.task.batches.eval_rounds()
        if not rounds:
            return None
        for m in self.model:
            m.eval()
        total, count = 0.0, 0
        for microbatches in rounds:
            loss, tokens = self._run_schedule(microbatches, forward_only=True)
            total += loss * tokens
            count += tokens
        for m in self.model:
            m.train()
        return total / count

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, ckpt_dir: str | Path) -> Path:
        extra = {"consumed_samples": self.step * self.cfg.train.global_batch_size}
        return checkpoint.save(ckpt_dir, self.step, self.model, self.optimizer, self.scheduler, extra,
                               keep_last=self.cfg.checkpoint.keep_last)

    def resume(self, path: str | Path) -> None:
        state = checkpoint.load(path, self.model, self.optimizer, self.scheduler)
        self.step = int(state["step"])

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, logger: MetricsLogger | None = None, ckpt_dir: str | Path | None = None) -> list[dict]:
        """Run until ``train.steps``; returns this run's step records (rank 0: also logged)."""
        t, c = self.cfg.train, self.cfg.checkpoint
        prec = precision(self.cfg)
        peak = peak_tflops(self.cfg, prec)
        fpt = flops_per_token(self.cfg)
        world = torch.distributed.get_world_size()
        records = []
        while self.step < t.steps:
            t0 = time.perf_counter()
            res = self.train_step()
            dt = time.perf_counter() - t0
            tokens_per_s = res.num_tokens / dt
            tflops = fpt * tokens_per_s / world / 1e12  # per device
            record = {"step": self.step, "loss": res.loss, "lr": res.lr, "grad_norm": res.grad_norm,
                      "tokens_per_s": tokens_per_s, "step_time_s": dt, "tflops_per_device": tflops,
                      "mfu": tflops / peak if peak else None, "peak_tflops": peak,
                      "skipped": res.skipped, "consumed_samples": self.step * t.global_batch_size,
                      **memory_gb()}
            last = self.step == t.steps
            if (t.eval_every and self.step % t.eval_every == 0) or last:
                ev = self.evaluate()
                if ev is not None:
                    record["eval_loss"] = ev
            records.append(record)
            if logger is not None:
                logger.log(record)
            if ckpt_dir is not None and ((c.save_every and self.step % c.save_every == 0)
                                         or (last and c.save_at_end)):
                self.save(ckpt_dir)
            if t.stop_after is not None and self.step >= t.stop_after:
                break
        return records


def pretrain_task(batches: Any) -> Task:
    """Next-token prediction: the model computes per-token cross-entropy from ``labels``."""

    def forward(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        if torch.cuda.is_available():
            batch = {k: v.cuda(non_blocking=True) for k, v in batch.items()}
        return model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"])

    def loss(batch: Batch, per_token: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = batch["loss_mask"].to(per_token.device).float()
        return (per_token.float() * mask).sum(), mask.sum()

    return Task(batches=batches, forward=forward, loss=loss)
