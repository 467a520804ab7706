"""Checkpoints with megatron-core ``dist_checkpointing``: atomic, resumable, and loadable under another layout.

Layout of ``checkpoint.dir``::

    step_000020/            one checkpoint (dist_checkpointing files + rng/rank_N.pt, tensors only)
    latest                  text: the name of the newest complete checkpoint

A checkpoint is written to ``step_N.tmp`` and renamed once every rank has finished, then ``latest`` is
replaced atomically — a run killed mid-save leaves the previous checkpoint as ``latest``. Tensors are
stored by their global (unsharded) coordinates, so a checkpoint saved under one TP/PP/DP layout loads
under another. Adam's step count is stored and restored explicitly: megatron's loader re-creates
optimizer state without it, and bias correction would restart. Loading runs no code from the files
(:mod:`engine.checkpoint_safety`).
"""

from __future__ import annotations

import os
import queue
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing, tensor_parallel
from megatron.core.optimizer import MegatronOptimizer
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from engine.checkpoint_safety import check_checkpoint, load_rng, rng_to_tensors
from engine.model import unwrap

# the distributed optimizer's only format that round-trips exactly in a fresh process (../shared/docs/PLATFORM.md)
_OPTIM_METADATA = {"distrib_optim_sharding_type": "dp_reshardable"}


def _name(step: int) -> str:
    return f"step_{step:06d}"


def latest(ckpt_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``ckpt_dir``, or None."""
    marker = Path(ckpt_dir) / "latest"
    if not marker.is_file():
        return None
    path = Path(ckpt_dir) / marker.read_text().strip()
    return path if path.is_dir() else None


def _model_state(model: list[torch.nn.Module]) -> dict[str, Any]:
    return {f"model{i}": unwrap(m).sharded_state_dict() for i, m in enumerate(model)}


def _adam_step(optimizer: MegatronOptimizer) -> int:
    steps = [0]
    for opt in _torch_optimizers(optimizer):
        for state in opt.state.values():
            if "step" in state:
                steps.append(int(state["step"]))
    return max(steps)


def _torch_optimizers(optimizer: MegatronOptimizer) -> list[torch.optim.Optimizer]:
    inner = getattr(optimizer, "chained_optimizers", [optimizer])
    return [o.optimizer for o in inner]


def _set_adam_step(optimizer: MegatronOptimizer, step: int) -> None:
    for opt in _torch_optimizers(optimizer):
        for group in opt.param_groups:
            for p in group["params"]:
                if opt.state.get(p):
                    old = opt.state[p].get("step")
                    dev = old.device if isinstance(old, torch.Tensor) else torch.device("cpu")
                    opt.state[p]["step"] = torch.tensor(float(step), dtype=torch.float32, device=dev)


def _prefill_optimizer_state(optimizer: MegatronOptimizer) -> None:
    """Give every param an (empty) Adam state: megatron builds its load request from the live state."""
    for opt in _torch_optimizers(optimizer):
        for group in opt.param_groups:
            for p in group["params"]:
                if not opt.state[p]:
                    opt.state[p]["step"] = torch.tensor(0.0, dtype=torch.float32)
                    opt.state[p]["exp_avg"] = torch.zeros_like(p.data)
                    opt.state[p]["exp_avg_sq"] = torch.zeros_like(p.data)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "tracker": tensor_parallel.get_cuda_rng_tracker().get_states()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def _plain_results_queue() -> None:
    """Synchronous saves run megatron's file writer in this process, so a plain queue carries its results.

    Left alone, the writer creates a spawn-context ``Manager`` queue: a fresh interpreter that re-imports
    the main module — seconds per process, the whole cost of a tiny checkpoint.
    """
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    if filesystem_async._results_queue is None:
        filesystem_async._results_queue = queue.Queue()


def save(ckpt_dir: str | Path, step: int, model: list[torch.nn.Module], optimizer: MegatronOptimizer | None,
         scheduler: OptimizerParamScheduler | None, extra: dict[str, Any] | None = None,
         keep_last: int = 0) -> Path:
    """Save everything needed to resume at ``step`` (all ranks call this); returns the final path."""
    root = Path(ckpt_dir)
    final, tmp = root / _name(step), root / f"{_name(step)}.tmp"
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    state = _model_state(model)
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(state, metadata=_OPTIM_METADATA)
        state["adam_step"] = _adam_step(optimizer)
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    state["train_state"] = {"step": step, **(extra or {})}
    state["world_size"] = dist.get_world_size()
    _plain_results_queue()
    dist_checkpointing.save(state, str(tmp), content_metadata=_OPTIM_METADATA)
    (tmp / "rng").mkdir(exist_ok=True)
    torch.save(rng_to_tensors(rng_state()), tmp / "rng" / f"rank_{rank}.pt")
    dist.barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        marker = root / "latest.tmp"
        marker.write_text(final.name)
        os.replace(marker, root / "latest")
        if keep_last > 0:
            done = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
            for old in done[:-keep_last]:
                shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load(path: str | Path, model: list[torch.nn.Module], optimizer: MegatronOptimizer | None = None,
         scheduler: OptimizerParamScheduler | None = None, restore_rng: bool = True) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and optimizer/scheduler/RNG when given); returns ``train_state``.

    Works under any TP/PP/DP layout for the model and the plain optimizer; RNG states are restored only
    when the world size is unchanged.
    """
    path = str(path)
    check_checkpoint(path)
    common = dist_checkpointing.load_common_state_dict(path)
    request = _model_state(model)
    if optimizer is not None:
        _prefill_optimizer_state(optimizer)
        with torch.no_grad():
            request["optimizer"] = optimizer.sharded_state_dict(request, is_loading=True,
                                                                metadata=_OPTIM_METADATA)
    with torch.no_grad():
        loaded = dist_checkpointing.load(request, path)
    for i, m in enumerate(model):
        unwrap(m).load_state_dict(loaded[f"model{i}"])
    if optimizer is not None:
        with torch.no_grad():  # the distributed optimizer copies into views of leaf params
            optimizer.load_state_dict(loaded["optimizer"])
        _set_adam_step(optimizer, int(common.get("adam_step", 0)))
    if scheduler is not None and "scheduler" in common:
        scheduler.load_state_dict(common["scheduler"])
    rng_file = Path(path) / "rng" / f"rank_{dist.get_rank()}.pt"
    if restore_rng and common.get("world_size") == dist.get_world_size() and rng_file.is_file():
        set_rng_state(load_rng(rng_file))
    return dict(common.get("train_state", {}))


def load_weights(path: str | Path, model: list[torch.nn.Module], optimizer: MegatronOptimizer | None) -> None:
    """Model weights only (fine-tuning, or one initialization shared by several layouts)."""
    load(path, model, restore_rng=False)
    if optimizer is not None:
        optimizer.reload_model_params()
