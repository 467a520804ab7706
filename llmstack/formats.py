"""The files dataproc writes and engine reads, defined once.

* ``PREFIX.bin`` / ``PREFIX.idx``: megatron-core's indexed dataset. The ``.idx`` starts with
  ``INDEX_HEADER`` (9 bytes), version ``u64 = INDEX_VERSION``, the token dtype's code ``u8``
  (``DTYPE_CODES``), then counts, sizes, pointers and document offsets.
* ``PREFIX.json``: the sidecar ``dataproc tokenize`` writes beside them
  (``{"format": SIDECAR_FORMAT, "prefix", "tokenizer": {"kind", "vocab_size", "eod_id", ...}, "dtype",
  counts...}``); the trainer reads the tokenizer's vocab size and EOD id from it.
* ``mix.json``: a blend ``dataproc blend`` writes (``{"format": BLEND_FORMAT, "prefixes", "weights",
  ...}``); ``data.prefix=mix.json`` trains on it.

numpy only: no torch, no megatron, no dataproc.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

INDEX_HEADER = b"MMIDIDX\x00\x00"
INDEX_VERSION = 1
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7,
               np.dtype(np.uint16): 8}
CODE_DTYPES = {v: k for k, v in DTYPE_CODES.items()}
SIDECAR_FORMAT = "megatron-indexed-dataset"  # PREFIX.json written by `dataproc tokenize`
BLEND_FORMAT = "megatron-blend"  # the file `dataproc blend` writes
TOKENIZER_KEYS = ("kind", "vocab_size", "eod_id")  # what two datasets must share to be blended


def index_dtype(idx_path: str | Path) -> np.dtype | None:
    """The token dtype an ``.idx`` file declares, or None if it is not a megatron index (version 1)."""
    with open(idx_path, "rb") as f:
        head = f.read(len(INDEX_HEADER) + 9)
    if len(head) < len(INDEX_HEADER) + 9 or head[:len(INDEX_HEADER)] != INDEX_HEADER:
        return None
    version = int.from_bytes(head[len(INDEX_HEADER):len(INDEX_HEADER) + 8], "little")
    return CODE_DTYPES.get(head[-1]) if version == INDEX_VERSION else None


def read_tagged_json(path: str | Path, fmt: str) -> dict[str, Any] | None:
    """The JSON object in ``path`` if its ``"format"`` is ``fmt``; None when absent, unreadable or other."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == fmt else None


def read_sidecar(prefix: str) -> dict[str, Any] | None:
    """``PREFIX.json`` if it is a ``dataproc tokenize`` sidecar, else None."""
    return read_tagged_json(prefix + ".json", SIDECAR_FORMAT)


def blend_document(prefixes: list[str], weights: list[float], **extra: Any) -> dict[str, Any]:
    """The blend file's content: absolute prefixes, weights normalised to sum to 1, and ``extra`` keys."""
    total = float(sum(weights))
    return {"format": BLEND_FORMAT, "prefixes": [os.path.abspath(p) for p in prefixes],
            "weights": [w / total for w in weights], **extra}
