"""Word splitting and word hashing kernels of the MinHash shingler.

The rules (separator / word / single-character classes, case folding, the word hash) are
specified in the docstring of :mod:`dataproc.dedup.minhash`; this module implements them
over a document's UTF-8 bytes. Two paths give identical results:

* :func:`ascii_word_hashes`, for pure-ASCII documents (most of any web or docs corpus):
  byte flags, 64-bit word masks and bit tricks, no per-byte branches;
* :func:`word_hashes`, the general path: one code point at a time.

Inlining rule for the hot loops: numba-IR-inlined helpers (``inline="always"``) may take
arrays but must not call non-inlined functions that take arrays; numba would wrap such a
call in per-iteration NRT incref/decref (atomic) calls. Rare paths (words longer than 16
bytes) are plain calls made directly from a loop body, which cost nothing when not taken.

numba's on-disk cache keys a compiled function on its own source file only: after editing
this module, clear the cache (``.cache/numba``) or callers in other modules keep stale code.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from dataproc.text.hashing import LEN_MASK, U64, hash16, read64, xxh64

SEP, WORD, SINGLE = 0, 1, 2

# Per-ASCII-byte lowercase word character, or 0 for a separator.
ASCII_FOLD = np.zeros(128, dtype=np.uint8)
for _c in b"0123456789abcdefghijklmnopqrstuvwxyz":
    ASCII_FOLD[_c] = _c
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    ASCII_FOLD[_c] = _c + 32

_ONES = U64(0x0101010101010101)
_HIGH = U64(0x8080808080808080)
_GATHER = U64(0x0102040810204080)  # moves bit 0 of each byte into the top byte


@numba.njit(cache=True, nogil=True)
def code_point_class(cp: int) -> int:
    """SEP, WORD or SINGLE for a non-ASCII code point."""
    if cp < 0x2000:
        if cp < 0xC0:
            return SEP
        return SEP if cp == 0xD7 or cp == 0xF7 else WORD
    if cp < 0x2C00:
        return SEP
    if cp < 0x2E80:
        return SEP if cp >= 0x2E00 else WORD
    if cp < 0x2FE0:
        return SINGLE
    if cp < 0x3040:
        return SEP if cp >= 0x3000 else WORD
    if cp < 0xA000:
        return SINGLE
    if cp < 0xF900:
        return WORD
    if cp < 0xFB00:
        return SINGLE
    if cp < 0xFE10:
        return WORD
    if cp < 0xFE70 or cp == 0xFEFF:
        return SEP
    if 0xFF00 <= cp <= 0xFF65:
        if cp <= 0xFF0F or 0xFF1A <= cp <= 0xFF20 or 0xFF3B <= cp <= 0xFF40 or cp >= 0xFF5B:
            return SEP
        return WORD
    if 0xFF66 <= cp <= 0xFF9F or 0x20000 <= cp <= 0x3FFFF:
        return SINGLE
    return WORD


@numba.njit(cache=True, nogil=True)
def fold_code_point(cp: int) -> int:
    """Lowercase a 2-byte code point with a length-preserving simple mapping (else unchanged)."""
    if 0xC0 <= cp <= 0xDE:
        return cp + 0x20 if cp != 0xD7 else cp
    if 0x100 <= cp <= 0x17E:
        if cp == 0x178:
            return 0xFF
        if cp <= 0x137 or 0x14A <= cp <= 0x177:
            # İ (U+0130) lowercases to two code points: left alone.
            return cp + 1 if (cp & 1) == 0 and cp != 0x130 else cp
        if 0x139 <= cp <= 0x148 or cp >= 0x179:
            return cp + 1 if (cp & 1) == 1 else cp
        return cp
    if 0x391 <= cp <= 0x3A9 and cp != 0x3A2:
        return cp + 0x20
    if 0x400 <= cp <= 0x40F:
        return cp + 0x50
    if 0x410 <= cp <= 0x42F:
        return cp + 0x20
    return cp


@numba.njit(cache=True, nogil=True, inline="always")
def _is_cont(data: np.ndarray, p: int, end: int) -> bool:
    return p < end and (data[p] & 0xC0) == 0x80


@numba.njit(cache=True, nogil=True)
def word_hashes(data: np.ndarray, start: int, end: int, wbuf: np.ndarray, whash: np.ndarray) -> int:
    """Hash every word of ``data[start:end]`` into ``whash``; return the word count.

    The general path, one code point at a time. The current word's lowercased bytes go
    to ``wbuf`` and, for the first 16, into two registers (``lo``, ``hi``): short words
    hash from registers, only long ones re-read the buffer. A byte that does not start a
    structurally valid UTF-8 sequence (possible only for raw buffers: Arrow validates
    strings) is a word character on its own.
    """
    nw = 0
    wlen = 0
    lo = U64(0)
    hi = U64(0)
    i = start
    while i < end:
        c = data[i]
        n = 1
        cp = np.int64(c)
        if c < 0x80:
            cls = WORD if ASCII_FOLD[c] != 0 else SEP
        else:
            if 0xC2 <= c <= 0xDF and _is_cont(data, i + 1, end):
                n = 2
                cp = ((c & 0x1F) << 6) | (data[i + 1] & 0x3F)
            elif 0xE0 <= c <= 0xEF and _is_cont(data, i + 1, end) and _is_cont(data, i + 2, end):
                n = 3
                cp = ((c & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F)
            elif (0xF0 <= c <= 0xF4 and _is_cont(data, i + 1, end) and _is_cont(data, i + 2, end)
                  and _is_cont(data, i + 3, end)):
                n = 4
                cp = (((c & 0x07) << 18) | ((data[i + 1] & 0x3F) << 12) | ((data[i + 2] & 0x3F) << 6)
                      | (data[i + 3] & 0x3F))
            cls = code_point_class(cp) if n > 1 else WORD  # n == 1: an invalid byte
        if cls == WORD:
            # Case mappings exist only for ASCII and 2-byte code points, and keep lengths.
            lc = fold_code_point(cp) if n == 2 else 0
            for j in range(n):
                if n == 1:
                    v = np.int64(ASCII_FOLD[c]) if c < 0x80 else np.int64(c)
                elif n == 2:
                    v = 0xC0 | (lc >> 6) if j == 0 else 0x80 | (lc & 0x3F)
                else:
                    v = np.int64(data[i + j])
                if wlen < 8:
                    lo |= U64(v) << U64(8 * wlen)
                elif wlen < 16:
                    hi |= U64(v) << U64(8 * (wlen - 8))
                wbuf[wlen] = v
                wlen += 1
        else:
            if wlen != 0:
                whash[nw] = hash16(lo, hi, wlen) if wlen <= 16 else xxh64(wbuf, 0, wlen, U64(wlen))
                nw += 1
                wlen = 0
                lo = U64(0)
                hi = U64(0)
            if cls == SINGLE:
                v1 = U64(0)
                for j in range(n):
                    v1 |= U64(data[i + j]) << U64(8 * j)
                whash[nw] = hash16(v1, U64(0), n)
                nw += 1
        i += n
    if wlen != 0:
        whash[nw] = hash16(lo, hi, wlen) if wlen <= 16 else xxh64(wbuf, 0, wlen, U64(wlen))
        nw += 1
    return nw


@numba.njit(cache=True, nogil=True, inline="always")
def _lower8(w: np.uint64) -> np.uint64:
    """SWAR ASCII lowercase of 8 bytes: sets bit 5 of every byte in 'A'..'Z'.

    Exact for bytes < 0x80, where adding (0x80 - bound) cannot carry into the next byte; a
    byte >= 0x80 can only spoil the bytes above it (later in memory), which callers mask.
    """
    upper = ((w + U64(0x80 - 0x41) * _ONES) & ~(w + U64(0x80 - 0x5B) * _ONES)) & _HIGH
    return w | (upper >> U64(2))


@numba.njit(cache=True, nogil=True, inline="always")
def _load_tail(data: np.ndarray, p: int, end: int) -> np.uint64:
    """Little-endian load of ``data[p:min(p + 8, end)]``, zero-padded."""
    w = U64(0)
    for j in range(min(end, p + 8) - p):
        w |= U64(data[p + j]) << U64(8 * j)
    return w


@numba.njit(cache=True, nogil=True)
def _ascii_long_word_hash(data: np.ndarray, p: int, length: int, wbuf: np.ndarray) -> np.uint64:
    for j in range(length):
        c = data[p + j]
        wbuf[j] = c | 0x20 if 0x41 <= c <= 0x5A else c
    return xxh64(wbuf, 0, length, U64(length))


@numba.njit(cache=True, nogil=True)
def ascii_word_hashes(data: np.ndarray, start: int, end: int, flags: np.ndarray, wbuf: np.ndarray,
                      spans: np.ndarray, whash: np.ndarray) -> int:
    """Fast path of :func:`word_hashes` for pure-ASCII text: same words, same hashes.

    Returns -1 (the caller then takes the general path) if the text is not pure ASCII.
    1. A vectorisable byte loop writes a 0/1 word-character flag per byte (and ORs the
       bytes to detect non-ASCII text).
    2. Flags are packed into one 64-bit mask per 64 bytes (multiply-gather), and word
       boundaries are the mask's bit transitions (trailing-zero count). This replaces the
       two hard-to-predict branches per word of a byte loop with a few bit operations.
    3. Words are hashed in a separate branch-free loop, so that the multiply chains of
       consecutive words overlap; each word is re-loaded from ``data`` and lowercased in
       registers (loading bytes just stored byte-wise would stall store forwarding).
    """
    n = end - start
    acc = np.uint8(0)
    for i in range(n):
        c = data[start + i]
        acc |= c
        flags[i] = np.uint8(np.uint8((c | np.uint8(0x20)) - np.uint8(0x61)) < np.uint8(26)) | np.uint8(
            np.uint8(c - np.uint8(0x30)) < np.uint8(10))
    if acc >= 0x80:
        return -1
    nblk = (n + 63) // 64
    flags[n : 64 * nblk] = 0
    nb = 0  # word boundaries found; even entries start words, odd entries end them
    carry = U64(0)
    for blk in range(nblk):
        m = U64(0)
        for q in range(8):
            m |= ((read64(flags, 64 * blk + 8 * q) * _GATHER) >> U64(56)) << U64(8 * q)
        t = m ^ ((m << U64(1)) | carry)
        carry = m >> U64(63)
        while t != U64(0):
            spans[nb] = 64 * blk + trailing_zeros(t)
            nb += 1
            t &= t - U64(1)
    if nb & 1:
        spans[nb] = n
        nb += 1
    nw = nb >> 1
    size = data.shape[0]
    for k in range(nw):
        p = start + spans[2 * k]
        length = spans[2 * k + 1] - spans[2 * k]
        if length > 16:
            whash[k] = _ascii_long_word_hash(data, p, length, wbuf)
            continue
        if p + 16 <= size:
            lo = read64(data, p)
            hi = read64(data, p + 8)
        else:
            lo = _load_tail(data, p, size)
            hi = _load_tail(data, p + 8, size)
        whash[k] = hash16(_lower8(lo) & LEN_MASK[min(length, 8)], _lower8(hi) & LEN_MASK[max(length - 8, 0)],
                          length)
    return nw


@numba.njit(cache=True, nogil=True)
def scratch(longest: int) -> tuple:
    """Per-thread buffers for documents of up to ``longest`` bytes: (flags, wbuf, spans, whash).

    A word needs >= 1 byte, so the byte length bounds the number of words.
    """
    flags = np.empty(longest + 64, dtype=np.uint8)
    wbuf = np.empty(longest + 16, dtype=np.uint8)
    spans = np.empty(longest + 2, dtype=np.int64)
    whash = np.empty(longest + 1, dtype=np.uint64)
    return flags, wbuf, spans, whash


@numba.njit(cache=True, nogil=True)
def doc_word_hashes(data: np.ndarray, start: int, end: int, buffers: tuple) -> int:
    """Word hashes of one document into ``buffers[3]`` (from :func:`scratch`); the word count."""
    flags, wbuf, spans, whash = buffers[0], buffers[1], buffers[2], buffers[3]
    nw = ascii_word_hashes(data, start, end, flags, wbuf, spans, whash)
    if nw >= 0:
        return nw
    return word_hashes(data, start, end, wbuf, whash)
