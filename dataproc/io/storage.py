"""Atomic, fsspec-aware file output: everything is written to a temporary name and renamed.

A killed job therefore leaves either a complete file or a stray ``.tmp`` that the rerun
removes; never a half-written file under a final name.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class Folder:
    """A directory on any fsspec filesystem, with atomic writes."""

    def __init__(self, url: str) -> None:
        self.url = str(url).rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.url)
        self._protocol = self.url.split("://", 1)[0] + "://" if "://" in self.url else ""

    @property
    def is_local(self) -> bool:
        """On this machine's filesystem (plain path or ``file://``): files can be opened directly."""
        return self._protocol in ("", "file://")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def url_of(self, *parts: str) -> str:
        return self._protocol + self.path(*parts) if self._protocol else self.path(*parts)

    def sub(self, *parts: str) -> Folder:
        return Folder(self.url_of(*parts))

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def makedirs(self, *parts: str) -> None:
        self.fs.makedirs(self.path(*parts), exist_ok=True)

    def list(self, *parts: str, suffix: str = "") -> list[str]:
        """Sorted file names (not paths) directly under ``parts``."""
        p = self.path(*parts)
        if not self.fs.exists(p):
            return []
        return sorted(os.path.basename(f) for f in self.fs.ls(p, detail=False)
                      if f.endswith(suffix) and not os.path.basename(f).startswith("."))

    def remove(self, *parts: str) -> None:
        p = self.path(*parts)
        if self.fs.exists(p):
            self.fs.rm(p, recursive=True)

    def remove_tmp_tree(self) -> int:
        """Remove every temp file below this folder (only safe while no task is writing here)."""
        if not self.fs.exists(self.root):
            return 0
        stale = [f for f in self.fs.find(self.root) if os.path.basename(f).endswith(".tmp")]
        for f in stale:
            self.fs.rm(f)
        return len(stale)

    def _tmp(self, final: str) -> str:
        d, b = os.path.split(final)
        return f"{d}/.{b}.{uuid.uuid4().hex[:8]}.tmp"

    def write_bytes(self, rel: str, data: bytes) -> None:
        final = self.path(rel)
        self.fs.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = self._tmp(final)
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
        self.fs.mv(tmp, final)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open(self.path(rel), "rb") as f:
            return f.read()

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def save_npy(self, rel: str, arr: np.ndarray) -> None:
        if self.is_local:  # straight to the file: no in-memory copy of a large array
            final = self.path(rel)
            os.makedirs(os.path.dirname(final), exist_ok=True)
            tmp = self._tmp(final)
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
            os.replace(tmp, final)
            return
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        self.write_bytes(rel, buf.getvalue())

    def load_npy(self, rel: str) -> np.ndarray:
        return np.load(io.BytesIO(self.read_bytes(rel)), allow_pickle=False)

    def remove_stale_tmp(self, prefix: str = "") -> None:
        """Remove temp files of final names starting with ``prefix`` (other tasks' are left alone)."""
        p = self.path()
        if self.fs.exists(p):
            for f in self.fs.ls(p, detail=False):
                name = os.path.basename(f)
                if name.endswith(".tmp") and name.startswith(f".{prefix}"):
                    self.fs.rm(f)


class ShardWriter:
    """Writes batches into size-bounded zstd Parquet shards ``<stem>-<part>.parquet``.

    A new shard starts once the uncompressed Arrow size of the current one passes ``max_bytes``.
    Shard boundaries depend only on the batches written, so output is deterministic.
    """

    def __init__(self, folder: Folder, stem: str, max_bytes: int = 256 << 20, compression: str = "zstd") -> None:
        self.folder, self.stem, self.max_bytes, self.compression = folder, stem, max_bytes, compression
        self.files: list[str] = []
        self._writer: pq.ParquetWriter | None = None
        self._handle = None
        self._tmp = ""
        self._final = ""
        self._size = 0
        self._schema: pa.Schema | None = None

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        if self._schema is None:
            self._schema = batch.schema
        elif batch.schema != self._schema:
            try:
                batch = batch.cast(self._schema)
            except (pa.ArrowInvalid, ValueError) as exc:
                raise ValueError(f"shard {self.stem}: batch schema {batch.schema} != {self._schema}") from exc
        if self._writer is None:
            self._open()
        self._writer.write(batch)
        self._size += batch.nbytes
        if self._size >= self.max_bytes:
            self._close_part()

    def _open(self) -> None:
        self.folder.makedirs()
        self._final = self.folder.path(f"{self.stem}-{len(self.files):05d}.parquet")
        self._tmp = self.folder._tmp(self._final)
        self._handle = self.folder.fs.open(self._tmp, "wb")
        self._writer = pq.ParquetWriter(self._handle, self._schema, compression=self.compression)
        self._size = 0

    def _close_part(self) -> None:
        self._writer.close()
        self._handle.close()
        self.folder.fs.mv(self._tmp, self._final)
        self.files.append(self._final)
        self._writer = self._handle = None

    def close(self) -> list[str]:
        if self._writer is not None:
            self._close_part()
        return self.files
