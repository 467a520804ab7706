"""Exact-duplicate keys: a 128-bit hash of each document's normalised text.

Normalisation: Unicode lowercase (polars ``str.to_lowercase``), then, in a compiled kernel
over the UTF-8 buffers (:func:`dataproc.text.buffers.text_buffers`), every run of Unicode
``White_Space`` characters collapsed to one space and leading/trailing whitespace
stripped: the same as polars ``str.replace_all(r"\\s+", " ").str.strip_chars()``, whose
regex took 1.4 s of the 1.5 s per 62k documents. Two texts that differ only in case or
whitespace get equal hashes. The hash is two XXH64 passes with different seeds over the
normalised bytes, so an accidental collision needs both 64-bit halves to collide (~2^-128
per pair). Null texts hash like "".
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import polars as pl
import pyarrow as pa

from dataproc.text.buffers import text_buffers
from dataproc.text.hashing import U64, xxh64

SEEDS = (0, 0x5851F42D4C957F2D)


@numba.njit(cache=True, nogil=True, inline="always")
def _space_len(data: np.ndarray, i: int, end: int) -> int:
    """Byte length of the White_Space character at ``data[i]``, or 0 if it is not one."""
    c = data[i]
    if c < 0x80:
        return 1 if c == 0x20 or 0x09 <= c <= 0x0D else 0
    if c == 0xC2 and i + 1 < end:  # U+0085, U+00A0
        return 2 if data[i + 1] == 0x85 or data[i + 1] == 0xA0 else 0
    if 0xE1 <= c <= 0xE3 and i + 2 < end:
        c1, c2 = data[i + 1], data[i + 2]
        if c == 0xE1:  # U+1680
            return 3 if c1 == 0x9A and c2 == 0x80 else 0
        if c == 0xE3:  # U+3000
            return 3 if c1 == 0x80 and c2 == 0x80 else 0
        if c1 == 0x80:  # U+2000..U+200A, U+2028, U+2029, U+202F
            return 3 if c2 <= 0x8A or c2 == 0xA8 or c2 == 0xA9 or c2 == 0xAF else 0
        return 3 if c1 == 0x81 and c2 == 0x9F else 0  # U+205F
    return 0


@numba.njit(cache=True, nogil=True)
def _collapse_ascii(data: np.ndarray, start: int, end: int, out: np.ndarray) -> int:
    """:func:`_collapse_spaces` for pure-ASCII text (-1 otherwise), without branches per byte.

    Every byte is stored (whitespace as a space) and the output position advances unless
    the byte is whitespace following whitespace: mispredicted branches at every word end
    would cost more than the copy.
    """
    acc = np.uint8(0)
    for i in range(start, end):
        acc |= data[i]
    if acc >= 0x80:
        return -1
    n = 0
    prev = 1  # as if preceded by whitespace: leading whitespace is dropped
    for i in range(start, end):
        c = data[i]
        ws = np.int64((c == 0x20) | (np.uint8(c - np.uint8(0x09)) < np.uint8(5)))
        out[n] = np.uint8(0x20) if ws else c
        n += 1 - (ws & prev)
        prev = ws
    return n - prev if n > 0 else 0  # a trailing space is dropped


@numba.njit(cache=True, nogil=True)
def _collapse_spaces(data: np.ndarray, start: int, end: int, out: np.ndarray) -> int:
    """Copy ``data[start:end]`` to ``out`` with whitespace runs as one space, stripped; the length."""
    n = _collapse_ascii(data, start, end, out)
    if n >= 0:
        return n
    n = 0
    pending = False
    i = start
    while i < end:
        k = _space_len(data, i, end)
        if k:
            pending = n > 0  # a space is written only between two kept characters
            i += k
            continue
        if pending:
            out[n] = 0x20
            n += 1
            pending = False
        out[n] = data[i]
        n += 1
        i += 1
    return n


@numba.njit(cache=True, nogil=True)
def _normalise_spaces(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All documents through :func:`_collapse_spaces`: new ``(data, offsets)`` buffers."""
    n = offsets.shape[0] - 1
    out = np.empty(data.shape[0], dtype=np.uint8)  # normalising never lengthens a text
    out_off = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        out_off[i + 1] = out_off[i] + _collapse_spaces(data, offsets[i], offsets[i + 1], out[out_off[i] :])
    return out, out_off


@numba.njit(cache=True, nogil=True)
def _hash_spans(data: np.ndarray, offsets: np.ndarray, seed0: np.uint64, seed1: np.uint64) -> np.ndarray:
    n = offsets.shape[0] - 1
    out = np.empty((n, 2), dtype=np.uint64)
    for i in range(n):
        out[i, 0] = xxh64(data, offsets[i], offsets[i + 1] - offsets[i], seed0)
        out[i, 1] = xxh64(data, offsets[i], offsets[i + 1] - offsets[i], seed1)
    return out


def _as_series(texts: Sequence[str] | pa.Array | pa.ChunkedArray | pl.Series) -> pl.Series:
    if isinstance(texts, pl.Series):
        return texts
    if isinstance(texts, pa.Array | pa.ChunkedArray):
        return pl.Series(pl.from_arrow(texts))
    return pl.Series(list(texts), dtype=pl.String)


def _normalised_buffers(texts: Sequence[str] | pa.Array | pa.ChunkedArray | pl.Series) -> tuple[np.ndarray, np.ndarray]:
    return _normalise_spaces(*text_buffers(_as_series(texts).str.to_lowercase().to_arrow()))


def normalise(texts: Sequence[str] | pa.Array | pa.ChunkedArray | pl.Series) -> pa.Array:
    """The normalised texts that :func:`text_hashes` hashes, as an Arrow ``large_string`` array."""
    data, offsets = _normalised_buffers(texts)
    return pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets), pa.py_buffer(data))


def text_hashes(texts: Sequence[str] | pa.Array | pa.ChunkedArray | pl.Series) -> np.ndarray:
    """``(n, 2)`` uint64: the 128-bit hash of each normalised text (list, Arrow or polars)."""
    return _hash_spans(*_normalised_buffers(texts), U64(SEEDS[0]), U64(SEEDS[1]))


def hash_key(h: np.ndarray) -> np.ndarray:
    """One uint64 per row of ``text_hashes`` output, for bucketing/sorting.

    It is the first 64-bit half; rows with equal keys are exact duplicates unless the
    second halves differ (compare the full rows to rule out a 2^-64 collision).
    """
    h = np.asarray(h, dtype=np.uint64)
    return np.ascontiguousarray(h[:, 0])


def duplicate_mask(h: np.ndarray) -> np.ndarray:
    """True for every row whose 128-bit hash already occurred in an earlier row."""
    h = np.ascontiguousarray(h, dtype=np.uint64)
    _, first = np.unique(h.view(np.dtype((np.void, 16))).ravel(), return_index=True)
    dup = np.ones(h.shape[0], dtype=bool)
    dup[first] = False
    return dup
