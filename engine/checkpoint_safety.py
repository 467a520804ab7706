"""Loading a checkpoint never runs code from it.

Two files of a checkpoint are pickles: each rank's RNG states and the distributed checkpoint's
``.metadata`` (torch's ``FileSystemReader.read_metadata`` reads it with plain ``pickle.load``, and
megatron-core calls it on every load). A pickle can name any importable callable, so a crafted file
runs code as soon as it is read.

* RNG states are saved as tensors and plain numbers (:func:`rng_to_tensors`) and read back with
  ``torch.load(weights_only=True)`` (:func:`load_rng`), which admits nothing else.
* ``.metadata`` is read first through :class:`MetadataUnpickler`, which admits only the classes
  torch's checkpoint metadata is made of (:data:`ALLOWED`); anything else is a
  :class:`UnsafeCheckpointError` naming the file and the global, raised before torch or megatron-core
  unpickle the file. :func:`check_checkpoint` runs it; every loader calls it first.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

_DCP = "torch.distributed.checkpoint"
# (module, name) pairs a torch distributed checkpoint's .metadata is built from (torch 2.4-2.13):
# dataclasses and enums that only hold data, and torch's own value types.
ALLOWED: frozenset[tuple[str, str]] = frozenset({
    *((f"{_DCP}.metadata", n) for n in ("Metadata", "MetadataIndex", "StorageMeta", "TensorProperties",
                                        "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
                                        "_MEM_FORMAT_ENCODING")),
    *((f"{_DCP}.planner", n) for n in ("SavePlan", "LoadPlan", "WriteItem", "WriteItemType", "ReadItem",
                                       "LoadItemType", "TensorWriteData", "BytesIOWriteData")),
    (f"{_DCP}.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),  # a name -> torch.layout lookup, nothing else
    ("collections", "OrderedDict"),
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"),  # StorageMeta.checkpoint_id
})
_TORCH_VALUE_TYPES = (torch.dtype, torch.layout, torch.memory_format)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file that could only be read by running code it names."""


class MetadataUnpickler(pickle.Unpickler):
    """Unpickles torch checkpoint metadata; any other global is refused."""

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), _TORCH_VALUE_TYPES):
            return getattr(torch, name)  # torch.float32, torch.strided, torch.contiguous_format, ...
        raise UnsafeCheckpointError(
            f"{self.source}: refers to {module}.{name}, which is not part of torch's checkpoint metadata; "
            "loading it would run code from the file. Not loaded: use a checkpoint from a trusted source")


def read_metadata(path: str | Path) -> Any:
    """A distributed checkpoint's ``.metadata``, unpickled with only metadata classes admitted."""
    meta = Path(path) / ".metadata"
    with open(meta, "rb") as f:
        try:
            return MetadataUnpickler(f, str(meta)).load()
        except UnsafeCheckpointError:
            raise
        except Exception as e:  # truncated or not a pickle at all
            raise UnsafeCheckpointError(f"{meta}: not a readable checkpoint metadata file ({e})") from e


def check_checkpoint(path: str | Path) -> None:
    """Raise :class:`UnsafeCheckpointError` unless ``path``'s ``.metadata`` holds metadata only.

    A folder without ``.metadata`` is left to the loader, which says that it is no checkpoint.
    """
    if (Path(path) / ".metadata").is_file():
        read_metadata(path)


def rng_to_tensors(state: dict[str, Any]) -> dict[str, Any]:
    """RNG states (Python, NumPy, torch, CUDA tracker) as tensors and plain numbers only."""
    version, words, gauss = state["python"]
    kind, keys, pos, has_gauss, cached = state["numpy"]
    return {"python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
            "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            **{k: v for k, v in state.items() if k not in ("python", "numpy")}}


def rng_from_tensors(saved: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`rng_to_tensors`: states that ``random``/``numpy``/``torch`` take back."""
    py, npy = saved["python"], saved["numpy"]
    state = dict(saved)
    if isinstance(py, dict):  # older checkpoints hold the tuples themselves (still weights_only-loadable)
        state["python"] = (py["version"], tuple(int(w) for w in py["state"].tolist()), py["gauss"])
    if isinstance(npy, dict):
        state["numpy"] = (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                          npy["cached_gaussian"])
    return state


def load_rng(path: str | Path) -> dict[str, Any]:
    """A rank's RNG file, read with ``weights_only=True``; a file that needs more is refused, not run."""
    try:
        saved = torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: holds more than tensors and numbers (an older checkpoint, or a crafted file), so reading "
            f"it could run code; not loaded. Delete the checkpoint's rng/ folder to resume without restoring "
            f"RNG states. ({str(e).splitlines()[0]})") from e
    if not isinstance(saved, dict) or not {"python", "numpy", "torch"} <= set(saved):
        raise UnsafeCheckpointError(f"{path}: not an RNG state file (keys {sorted(saved) if isinstance(saved, dict) else type(saved)})")
    return rng_from_tensors(saved)
