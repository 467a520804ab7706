"""Megatron's indexed dataset files: ``PREFIX.bin`` (tokens) and ``PREFIX.idx`` (where each document is).

``.idx`` layout (little endian), as megatron-core's ``IndexedDataset`` reads it:
``b"MMIDIDX\\x00\\x00"``, version ``u64 = 1``, dtype code ``u8``, sequence count ``u64``,
document count ``u64`` (= sequences + 1), then ``int32`` sequence lengths, ``int64`` byte
pointers into ``.bin``, ``int64`` document indices (``0, 1, ..., n``: one sequence per document).
``.bin`` is the tokens of all documents back to back, in the dtype named by the code.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterable

import numpy as np

from llmstack.formats import CODE_DTYPES, DTYPE_CODES, INDEX_HEADER, INDEX_VERSION

UINT16_LIMIT = 65_500  # megatron-core's own cut-off for uint16 token storage


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (with megatron's margin), else int32."""
    return np.dtype(np.uint16) if vocab_size < UINT16_LIMIT else np.dtype(np.int32)


def index_bytes(lengths: np.ndarray, dtype: np.dtype) -> bytes:
    """The whole ``.idx`` file for documents of ``lengths`` tokens stored as ``dtype``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n and int(lengths.max()) > np.iinfo(np.int32).max:
        raise ValueError("a document longer than 2**31-1 tokens does not fit the .idx format")
    pointers = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1] * dtype.itemsize, out=pointers[1:])
    head = INDEX_HEADER + struct.pack("<Q", INDEX_VERSION) + struct.pack("<B", DTYPE_CODES[dtype])
    head += struct.pack("<Q", n) + struct.pack("<Q", n + 1)
    return b"".join([head, lengths.astype("<i4").tobytes(), pointers.astype("<i8").tobytes(),
                     np.arange(n + 1, dtype="<i8").tobytes()])


def read_index(path: str) -> tuple[np.dtype, np.ndarray, np.ndarray]:
    """(dtype, lengths, document indices) of an ``.idx`` file; raises ValueError on a bad file."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:9] != INDEX_HEADER:
        raise ValueError(f"{path}: not a Megatron .idx file (bad header)")
    (version,) = struct.unpack_from("<Q", raw, 9)
    (code,) = struct.unpack_from("<B", raw, 17)
    n, docs = struct.unpack_from("<QQ", raw, 18)
    if version != INDEX_VERSION or code not in CODE_DTYPES:
        raise ValueError(f"{path}: unsupported version {version} or dtype code {code}")
    off = 34
    lengths = np.frombuffer(raw, dtype="<i4", count=n, offset=off)
    doc_idx = np.frombuffer(raw, dtype="<i8", count=docs, offset=off + 12 * n)
    return CODE_DTYPES[code], lengths, doc_idx


def write_dataset(prefix: str, parts: Iterable[tuple[str, np.ndarray]], dtype: np.dtype) -> tuple[int, int]:
    """Concatenate token files ``parts`` (path, per-document lengths) into ``prefix.bin/.idx``.

    Both files are written under temporary names and renamed, ``.idx`` last, so a reader never
    sees an index without its complete data. Returns (documents, tokens).
    """
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    tmp_bin, tmp_idx = f"{prefix}.bin.tmp", f"{prefix}.idx.tmp"
    all_lengths = []
    with open(tmp_bin, "wb") as out:
        for path, lengths in parts:
            expect = int(np.asarray(lengths, dtype=np.int64).sum()) * dtype.itemsize
            if os.path.getsize(path) != expect:
                raise ValueError(f"{path}: {os.path.getsize(path)} bytes, its lengths say {expect}")
            with open(path, "rb") as f:
                shutil.copyfileobj(f, out, 16 << 20)
            all_lengths.append(np.asarray(lengths, dtype=np.int64))
    lengths = np.concatenate(all_lengths) if all_lengths else np.zeros(0, dtype=np.int64)
    with open(tmp_idx, "wb") as f:
        f.write(index_bytes(lengths, dtype))
    os.replace(tmp_bin, f"{prefix}.bin")
    os.replace(tmp_idx, f"{prefix}.idx")
    return len(lengths), int(lengths.sum())
