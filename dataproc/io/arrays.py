"""Work arrays on any fsspec filesystem, read by ranges: a task fetches the rows it needs, never a file.

The sharded dedup steps hand each other ``.npy`` arrays. Locally a read is a seek and a read (or
a memory map for scattered rows); on any other filesystem (``s3://``, ``gs://``, ``memory://``)
only the header and the byte ranges of the wanted rows are requested, neighbouring ranges merged
into one request only while that at most doubles the bytes fetched (:func:`merge_ranges`).

A *partitioned* array (:func:`save_partitioned`) is one ``.npy`` whose rows are sorted by
destination partition, plus ``<name>-index.npy`` holding ``parts + 1`` row offsets: partition
``p`` is rows ``index[p]:index[p + 1]``, one ranged read (:func:`read_partition`). This is the
shuffle between steps: M writers x R readers, each reader one range of each writer's file.
A *blob* (:func:`save_blob`) is variable-length byte strings, ``<name>.bin`` + ``<name>-offsets.npy``.
"""

from __future__ import annotations

import ast
import io
import mmap
import re
from collections.abc import Sequence

import numpy as np

from dataproc.io.storage import Folder

# Remote reads: neighbouring ranges are fetched as one request when the bytes in between (wasted)
# stay within the bytes wanted, smallest gaps first (so a read fetches at most twice what it needs),
# and the gap is under MAX_GAP.
MAX_GAP = 1 << 20
HEADER_PROBE = 256  # bytes read first to find a header (typical .npy headers are 128 bytes)
# the header dict numpy writes; parsed by a regex (ast.literal_eval costs ~30 us, per file per task)
_HEADER = re.compile(r"\{'descr': '([^']+)', 'fortran_order': (True|False), 'shape': \(([0-9, ]*)\), \}")


def _parse_header(text: str) -> dict:
    m = _HEADER.match(text)
    if m is None:
        return ast.literal_eval(text)
    shape = tuple(int(x) for x in m.group(3).replace(" ", "").split(",") if x)
    return {"descr": m.group(1), "fortran_order": m.group(2) == "True", "shape": shape}


class NpyFile:
    """One ``.npy`` file's header, and ranged reads of its rows."""

    def __init__(self, folder: Folder, rel: str) -> None:
        self.folder, self.rel, self.path = folder, rel, folder.path(rel)
        head = self._bytes(0, HEADER_PROBE)
        stream = io.BytesIO(head)
        version = np.lib.format.read_magic(stream)
        hlen_bytes = 2 if version == (1, 0) else 4
        hlen = int.from_bytes(head[8:8 + hlen_bytes], "little")
        self.offset = 8 + hlen_bytes + hlen
        if self.offset > len(head):
            head = self._bytes(0, self.offset)
        meta = _parse_header(head[8 + hlen_bytes:self.offset].decode("latin1").strip())
        if meta["fortran_order"]:
            raise ValueError(f"{self.path}: Fortran-ordered arrays are not supported")
        self.dtype = np.dtype(meta["descr"])
        self.shape = tuple(meta["shape"])
        self.row_shape = self.shape[1:]
        self.row_bytes = int(self.dtype.itemsize * int(np.prod(self.row_shape, dtype=np.int64)))

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 1

    def _bytes(self, start: int, end: int) -> bytes:
        if self.folder.is_local:
            with open(self.path, "rb") as f:
                f.seek(start)
                return f.read(end - start)
        return self.folder.fs.cat_file(self.path, start=start, end=end)

    def _array(self, buf: bytes | bytearray, n: int) -> np.ndarray:
        return np.frombuffer(buf, dtype=self.dtype, count=n * max(1, self.row_bytes // self.dtype.itemsize)
                             ).reshape((n, *self.row_shape))

    def slice(self, lo: int, hi: int) -> np.ndarray:
        """Rows ``lo:hi`` (a copy)."""
        lo, hi = max(0, int(lo)), min(len(self), int(hi))
        if hi <= lo:
            return np.zeros((0, *self.row_shape), self.dtype)
        if self.folder.is_local:
            out = np.empty((hi - lo, *self.row_shape), self.dtype)
            with open(self.path, "rb") as f:
                f.seek(self.offset + lo * self.row_bytes)
                if f.readinto(memoryview(out).cast("B")) != out.nbytes:
                    raise OSError(f"{self.path}: file shorter than its header says")
            return out
        buf = self._bytes(self.offset + lo * self.row_bytes, self.offset + hi * self.row_bytes)
        return self._array(bytearray(buf), hi - lo)

    def mmap(self) -> np.ndarray:
        """The whole array, memory-mapped read-only (local files only)."""
        if not self.folder.is_local:
            raise ValueError(f"{self.path}: only local files are memory-mapped")
        count = int(np.prod(self.shape, dtype=np.int64))
        if count == 0:
            return np.zeros(self.shape, self.dtype)
        with open(self.path, "rb") as f:
            # a plain ndarray over the map (np.memmap's Python-level indexing is ~10x slower)
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        return np.frombuffer(mapped, dtype=self.dtype, count=count, offset=self.offset).reshape(self.shape)

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (any order, repeats allowed), fetching each distinct row once."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) == 0:
            return np.zeros((0, *self.row_shape), self.dtype)
        if index.min() < 0 or index.max() >= len(self):
            raise IndexError(f"{self.path}: row out of range [0, {len(self)})")
        if self.folder.is_local:
            return np.ascontiguousarray(self.mmap()[index])
        want, back = np.unique(index, return_inverse=True)
        starts = self.offset + want * self.row_bytes
        chunks = read_ranges(self.folder, self.path, starts, starts + self.row_bytes)
        return self._array(b"".join(chunks), len(want))[back]


def merge_ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Group ids: range ``i`` is fetched with range ``i - 1`` when their group ids are equal.

    Overlapping and touching ranges always merge; then gaps, smallest first, while the bytes
    skipped over stay within the bytes wanted (and each gap is under :data:`MAX_GAP`).
    """
    gaps = starts[1:] - ends[:-1]
    merge = gaps <= 0
    budget = int(np.sum(ends - starts))
    order = np.argsort(gaps, kind="stable")
    cum = np.cumsum(np.maximum(gaps[order], 0))
    merge[order[(cum <= budget) & (gaps[order] < MAX_GAP)]] = True
    return np.concatenate([[0], np.cumsum(~merge)])


def read_ranges(folder: Folder, path: str, starts: np.ndarray, ends: np.ndarray) -> list[bytes]:
    """The bytes ``[starts[i], ends[i])`` of ``path`` (starts sorted), in order.

    Remote: :func:`merge_ranges` groups, one ``fs.cat_ranges`` request each (concurrent on async
    filesystems); locally: one open file, a seek and a read per range.
    """
    starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    if len(starts) == 0:
        return []
    if folder.is_local:
        out = []
        with open(path, "rb") as f:
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                f.seek(s)
                out.append(f.read(e - s))
        return out
    group = merge_ranges(starts, ends)
    first = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    g_start = starts[first]
    g_end = np.maximum.reduceat(ends, first)
    blobs = folder.fs.cat_ranges([path] * len(g_start), g_start.tolist(), g_end.tolist())
    base = g_start[group]
    return [blobs[g][s - b:e - b] for g, s, e, b in zip(group.tolist(), starts.tolist(), ends.tolist(),
                                                         base.tolist(), strict=True)]


def save_partitioned(folder: Folder, rel: str, rows: np.ndarray, parts: np.ndarray, n_parts: int) -> None:
    """Write ``rows`` sorted by ``parts`` (stable) as ``rel`` and its ``parts + 1`` offsets as ``-index``."""
    rows = np.asarray(rows)
    parts = np.asarray(parts, dtype=np.int64)
    if len(parts) and (parts.min() < 0 or parts.max() >= n_parts):
        raise ValueError(f"partition out of range [0, {n_parts})")
    order = np.argsort(parts, kind="stable")
    index = np.searchsorted(parts[order], np.arange(n_parts + 1)).astype(np.int64)
    folder.save_npy(rel, np.ascontiguousarray(rows[order]))
    folder.save_npy(index_name(rel), index)


def index_name(rel: str) -> str:
    return rel[:-4] + "-index.npy" if rel.endswith(".npy") else rel + "-index.npy"


def _partition_rows(folder: Folder, rel: str, part: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of partition ``part`` in a :func:`save_partitioned` array (one small read)."""
    index = NpyFile(folder, index_name(rel)).slice(part, part + 2)
    return int(index[0]), int(index[1])


def read_partition(folder: Folder, rel: str, part: int) -> np.ndarray:
    """Partition ``part`` of a :func:`save_partitioned` array (two small reads and one range)."""
    return NpyFile(folder, rel).slice(*_partition_rows(folder, rel, part))


def read_partitions(folder: Folder, rels: Sequence[str], part: int, width: int) -> np.ndarray:
    """Partition ``part`` of each array in ``rels``, stacked (``width`` columns when all are empty).

    The index files are read first, so the result is filled in place: no second copy in memory.
    """
    files = [(rel, lo, hi) for rel in rels for lo, hi in [_partition_rows(folder, rel, part)] if hi > lo]
    if not files:
        return np.zeros((0, width), np.int64)
    first = NpyFile(folder, files[0][0])
    out = np.empty((sum(hi - lo for _, lo, hi in files), *first.row_shape), first.dtype)
    at = 0
    for rel, lo, hi in files:
        out[at:at + hi - lo] = NpyFile(folder, rel).slice(lo, hi)
        at += hi - lo
    return out


def save_blob(folder: Folder, rel: str, strings: Sequence[bytes] | np.ndarray, offsets: np.ndarray | None = None
              ) -> None:
    """Byte strings as ``<rel>.bin`` + ``<rel>-offsets.npy`` (``len + 1`` int64 offsets).

    ``strings`` is a list of bytes, or (with ``offsets``) one uint8 buffer already laid out.
    """
    if offsets is None:
        lens = np.fromiter((len(s) for s in strings), np.int64, count=len(strings))
        offsets = np.zeros(len(lens) + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        data = b"".join(strings)
    else:
        data = np.asarray(strings, np.uint8).tobytes()
    folder.write_bytes(f"{rel}.bin", data)
    folder.save_npy(f"{rel}-offsets.npy", np.asarray(offsets, np.int64))


def read_blob(folder: Folder, rel: str, index: np.ndarray) -> list[bytes]:
    """Strings ``index`` of a :func:`save_blob` blob, in the order given."""
    index = np.asarray(index, np.int64)
    if len(index) == 0:
        return []
    want, back = np.unique(index, return_inverse=True)
    offsets = NpyFile(folder, f"{rel}-offsets.npy")
    bounds = offsets.rows(np.unique(np.concatenate([want, want + 1])))
    pos = np.searchsorted(np.unique(np.concatenate([want, want + 1])), want)
    starts, ends = bounds[pos], bounds[pos + 1]
    chunks = read_ranges(folder, folder.path(f"{rel}.bin"), starts, ends)
    return [chunks[i] for i in back.tolist()]
