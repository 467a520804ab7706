"""Compiled 64-bit byte hashes shared by the dedup kernels (MinHash, exact, LSH band keys).

``xxh64`` is a faithful XXH64 (same output as ``xxhash.xxh64_intdigest``), so the pure-Python
test references can recompute any hash we produce with the ``xxhash`` package. ``fmix64`` is
the MurmurHash3 64-bit finaliser: a bijective avalanche used to spread combined values.
All arithmetic is on ``np.uint64`` explicitly: numba promotes ``uint64 op int64`` to float64.

numba's on-disk cache keys a compiled function on its own source file only: after editing
this module, clear the cache (``.cache/numba``) or callers in other modules keep stale code.
"""

from __future__ import annotations

import numba
import numpy as np

U64 = np.uint64
P1 = U64(0x9E3779B185EBCA87)
P2 = U64(0xC2B2AE3D27D4EB4F)
P3 = U64(0x165667B19E3779F9)
P4 = U64(0x85EBCA77C2B2AE63)
P5 = U64(0x27D4EB2F165667C5)
_FM1 = U64(0xFF51AFD7ED558CCD)
_FM2 = U64(0xC4CEB9FE1A85EC53)


@numba.njit(cache=True, nogil=True, inline="always")
def rotl64(x: np.uint64, r: int) -> np.uint64:
    return (x << U64(r)) | (x >> U64(64 - r))


@numba.njit(cache=True, nogil=True, inline="always")
def fmix64(h: np.uint64) -> np.uint64:
    h ^= h >> U64(33)
    h *= _FM1
    h ^= h >> U64(33)
    h *= _FM2
    h ^= h >> U64(33)
    return h


# Indices are cast to unsigned so that numba emits no negative-index wraparound checks,
# which would block LLVM's load combining.
@numba.njit(cache=True, nogil=True, inline="always")
def read64(buf: np.ndarray, p: int) -> np.uint64:
    """Little-endian 8-byte load (LLVM folds the byte loads into one unaligned load)."""
    q = U64(p)
    return (
        U64(buf[q])
        | (U64(buf[q + U64(1)]) << U64(8))
        | (U64(buf[q + U64(2)]) << U64(16))
        | (U64(buf[q + U64(3)]) << U64(24))
        | (U64(buf[q + U64(4)]) << U64(32))
        | (U64(buf[q + U64(5)]) << U64(40))
        | (U64(buf[q + U64(6)]) << U64(48))
        | (U64(buf[q + U64(7)]) << U64(56))
    )


@numba.njit(cache=True, nogil=True, inline="always")
def read32(buf: np.ndarray, p: int) -> np.uint64:
    q = U64(p)
    return (U64(buf[q]) | (U64(buf[q + U64(1)]) << U64(8)) | (U64(buf[q + U64(2)]) << U64(16))
            | (U64(buf[q + U64(3)]) << U64(24)))


@numba.njit(cache=True, nogil=True, inline="always")
def _round(acc: np.uint64, lane: np.uint64) -> np.uint64:
    acc += lane * P2
    return rotl64(acc, 31) * P1


@numba.njit(cache=True, nogil=True, inline="always")
def _merge(acc: np.uint64, val: np.uint64) -> np.uint64:
    acc ^= _round(U64(0), val)
    return acc * P1 + P4


@numba.njit(cache=True, nogil=True)
def xxh64(buf: np.ndarray, start: int, length: int, seed: np.uint64) -> np.uint64:
    """XXH64 of ``buf[start:start + length]`` (uint8) with a 64-bit seed."""
    p = start
    end = start + length
    if length >= 32:
        v1 = seed + P1 + P2
        v2 = seed + P2
        v3 = seed
        v4 = seed - P1
        limit = end - 32
        while p <= limit:
            v1 = _round(v1, read64(buf, p))
            v2 = _round(v2, read64(buf, p + 8))
            v3 = _round(v3, read64(buf, p + 16))
            v4 = _round(v4, read64(buf, p + 24))
            p += 32
        h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = seed + P5
    h += U64(length)
    while p + 8 <= end:
        h ^= _round(U64(0), read64(buf, p))
        h = rotl64(h, 27) * P1 + P4
        p += 8
    if p + 4 <= end:
        h ^= read32(buf, p) * P1
        h = rotl64(h, 23) * P2 + P3
        p += 4
    while p < end:
        h ^= U64(buf[p]) * P5
        h = rotl64(h, 11) * P1
        p += 1
    h ^= h >> U64(33)
    h *= P2
    h ^= h >> U64(29)
    h *= P3
    h ^= h >> U64(32)
    return h


# LEN_MASK[k] keeps the low k bytes of a little-endian 64-bit word (k = 0..8).
LEN_MASK = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


@numba.njit(cache=True, nogil=True, inline="always")
def hash16(lo: np.uint64, hi: np.uint64, length: int) -> np.uint64:
    """``XXH64(b.ljust(16, b"\\0"), seed=len(b))`` of a ``b`` of ``length <= 16`` bytes.

    ``lo``/``hi`` are bytes 0-7 and 8-15 of ``b`` as little-endian words, zero past the
    end. No branches: plain XXH64 branches three times on the length, which mispredicts
    on natural-language words. Callers pass registers, never re-load bytes they have just
    stored (a wide load over narrow stores stalls store-to-load forwarding).
    """
    h = U64(length) + P5 + U64(16)
    h ^= _round(U64(0), lo)
    h = rotl64(h, 27) * P1 + P4
    h ^= _round(U64(0), hi)
    h = rotl64(h, 27) * P1 + P4
    h ^= h >> U64(33)
    h *= P2
    h ^= h >> U64(29)
    h *= P3
    h ^= h >> U64(32)
    return h
