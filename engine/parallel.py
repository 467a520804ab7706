"""Process groups and seeding: the default group (gloo on CPU, NCCL on GPU) and megatron's TP/PP/DP groups.

The default process group is created once per process. Model-parallel groups can be torn down and
rebuilt inside one launch (``setup_model_parallel`` again) — re-creating the default gloo group hangs,
so it is kept.
"""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from engine import cpu_compat
from engine.config import ParallelConfig


@dataclass(frozen=True)
class Layout:
    """Where this rank sits: sizes and ranks of the tensor, pipeline and data-parallel groups."""

    tp: int
    pp: int
    dp: int
    vpp: int | None
    tp_rank: int
    pp_rank: int
    dp_rank: int

    @property
    def is_last_stage(self) -> bool:
        return self.pp_rank == self.pp - 1


def device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(timeout_minutes: int = 30) -> None:
    """Create the default process group from torchrun's environment (a 1-rank group without one)."""
    cpu_compat.apply()
    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    timeout = datetime.timedelta(minutes=timeout_minutes)
    if "RANK" not in os.environ:  # plain `python` (or a test process): a world of one
        dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1,
                                timeout=timeout)
    else:
        dist.init_process_group(backend=backend, timeout=timeout)


def setup_model_parallel(cfg: ParallelConfig) -> Layout:
    """(Re)build megatron's TP/PP/DP groups for ``cfg`` on the existing default group."""
    from megatron.core import parallel_state as ps

    if ps.model_parallel_is_initialized():
        ps.destroy_model_parallel()
    ps.initialize_model_parallel(
        tensor_model_parallel_size=cfg.tp,
        pipeline_model_parallel_size=cfg.pp,
        virtual_pipeline_model_parallel_size=cfg.vpp,
    )
    return current_layout()


def current_layout() -> Layout:
    from megatron.core import parallel_state as ps

    return Layout(
        tp=ps.get_tensor_model_parallel_world_size(),
        pp=ps.get_pipeline_model_parallel_world_size(),
        dp=ps.get_data_parallel_world_size(),
        vpp=ps.get_virtual_pipeline_model_parallel_world_size(),
        tp_rank=ps.get_tensor_model_parallel_rank(),
        pp_rank=ps.get_pipeline_model_parallel_rank(),
        dp_rank=ps.get_data_parallel_rank(),
    )


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch RNGs, plus megatron's named TP/DP streams (offset by pipeline rank)."""
    from megatron.core import parallel_state as ps
    from megatron.core import tensor_parallel

    seed = seed + 100 * ps.get_pipeline_model_parallel_rank()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    tensor_parallel.model_parallel_cuda_manual_seed(seed)


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum floats over the whole world (fp64 so per-rank sums add exactly)."""
    t = torch.tensor(values, dtype=torch.float64, device=device())
    dist.all_reduce(t)
    return t.tolist()
