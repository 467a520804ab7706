"""Run megatron-core without CUDA: the four caller-side patches that make it work on CPU with gloo.

megatron-core assumes a GPU in four ways (see ../shared/docs/PLATFORM.md); each is patched from outside,
never by editing site-packages, and only when CUDA is unavailable:

1. its CUDA RNG tracker → a tracker of CPU generator states (``CpuRNGStatesTracker``);
2. ``torch.cuda.current_device()`` → the CPU device, ``torch.cuda.synchronize`` → no-op;
3. hard-coded ``device="cuda"``, ``.cuda()``, ``.to("cuda")`` → CPU, through one ``TorchFunctionMode``;
4. string checks ``t.type() == "torch.cuda.FloatTensor"`` → the same mode reports CUDA type names.

``apply()`` is idempotent and permanent for the process (what a trainer wants); ``patched()`` is the
reversible form the tests use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_CPU = torch.device("cpu")
_STATE: dict[str, Any] = {}


def _is_cuda(device: Any) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    # a bare int is a CUDA ordinal in torch's device arguments
    return isinstance(device, int) and not isinstance(device, bool)


class CpuDeviceMode(TorchFunctionMode):
    """Redirects CUDA device arguments to the CPU and reports CUDA tensor type names."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name.replace("torch.", "torch.cuda.", 1) if "cuda" not in name else name
        device = kwargs.get("device")
        if device is not None and _is_cuda(device):
            kwargs = {**kwargs, "device": _CPU}
        elif func is torch.Tensor.to and len(args) > 1 and _is_cuda(args[1]):
            args = (args[0], _CPU, *args[2:])
        return func(*args, **kwargs)


class CpuRNGStatesTracker:
    """Drop-in for megatron's ``CudaRNGStatesTracker`` keeping named CPU generator states."""

    def __init__(self, *_: Any, **__: Any) -> None:
        self.reset()

    def is_initialized(self) -> bool:
        return self._is_initialized

    def reset(self) -> None:
        self._is_initialized = False
        self.states_: dict[str, torch.Tensor] = {}
        self.seeds_: set[int] = set()

    def get_states(self) -> dict[str, torch.Tensor]:
        return dict(self.states_)

    def set_states(self, states: dict[str, torch.Tensor]) -> None:
        self._is_initialized = True
        self.states_ = dict(states)

    def add(self, name: str, seed: int) -> None:
        self._is_initialized = True
        if seed in self.seeds_:
            raise RuntimeError(f"seed {seed} already exists")
        if name in self.states_:
            raise RuntimeError(f"rng state {name} already exists")
        self.seeds_.add(seed)
        self.states_[name] = torch.Generator().manual_seed(seed).get_state()

    @contextlib.contextmanager
    def fork(self, name: str = "model-parallel-rng") -> Iterator[None]:
        if name not in self.states_:
            raise RuntimeError(f"rng state {name} is not added")
        orig = torch.get_rng_state()
        torch.set_rng_state(self.states_[name])
        try:
            yield
        finally:
            self.states_[name] = torch.get_rng_state()
            torch.set_rng_state(orig)


def _patches() -> list[tuple[Any, str, Any]]:
    from megatron.core.tensor_parallel import random as mrandom

    def manual_seed(seed: int, *_: Any, **kwargs: Any) -> None:
        """CPU version of ``model_parallel_cuda_manual_seed``: same three named streams and offsets."""
        from megatron.core import parallel_state as ps

        tracker = CpuRNGStatesTracker()
        mrandom._CUDA_RNG_STATE_TRACKER = tracker
        mrandom._CUDA_RNG_STATE_TRACKER_INITIALIZED = True
        tp_rank = kwargs.get("tp_rank")
        tp_rank = ps.get_tensor_model_parallel_rank() if tp_rank is None else tp_rank
        tracker.add(mrandom._DATA_PARALLEL_RNG_TRACKER_NAME, seed)
        tracker.add(mrandom._MODEL_PARALLEL_RNG_TRACKER_NAME, seed + 2718 + tp_rank)
        tracker.add(mrandom._EXPERT_PARALLEL_RNG_TRACKER_NAME, seed + 1024)

    return [
        (torch.cuda, "current_device", lambda: _CPU),
        (torch.cuda, "synchronize", lambda *a, **k: None),
        (torch.cuda, "empty_cache", lambda *a, **k: None),
        (torch.cuda, "device_count", lambda: 0),
        (mrandom, "CudaRNGStatesTracker", CpuRNGStatesTracker),
        (mrandom, "model_parallel_cuda_manual_seed", manual_seed),
    ]


def needed() -> bool:
    """True when megatron-core must be patched: no usable CUDA device."""
    return not torch.cuda.is_available()


def apply() -> bool:
    """Patch megatron-core for CPU if CUDA is unavailable; returns whether the patches are active."""
    if not needed():
        return False
    if _STATE:
        return True
    saved = []
    for owner, name, value in _patches():
        saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)
    mode = CpuDeviceMode()
    mode.__enter__()
    _STATE.update(saved=saved, mode=mode)
    # the package re-exports the seeding function: patch that name too
    import megatron.core.tensor_parallel as tp
    from megatron.core.tensor_parallel import random as mrandom

    _STATE["tp_seed"] = tp.model_parallel_cuda_manual_seed
    tp.model_parallel_cuda_manual_seed = mrandom.model_parallel_cuda_manual_seed
    return True


def remove() -> None:
    """Undo ``apply()`` (tests only: a trainer keeps the patches for its whole life)."""
    if not _STATE:
        return
    import megatron.core.tensor_parallel as tp

    _STATE["mode"].__exit__(None, None, None)
    for owner, name, value in reversed(_STATE["saved"]):
        setattr(owner, name, value)
    tp.model_parallel_cuda_manual_seed = _STATE["tp_seed"]
    _STATE.clear()


@contextlib.contextmanager
def patched() -> Iterator[bool]:
    """Apply the patches for the duration of a ``with`` block."""
    already = bool(_STATE)
    active = apply()
    try:
        yield active
    finally:
        if active and not already:
            remove()
