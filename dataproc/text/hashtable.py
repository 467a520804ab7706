"""Open-addressing hash sets and counters over 64-bit span hashes, for the compiled filter kernels.

Duplicate detection (lines, paragraphs, n-grams inside one document) compares 64-bit hashes of
code-point spans; a collision inside one document is negligible. Sets and counters live in
caller-owned arrays (``keys``, ``stamps``, ...) sized once per batch with :func:`batch_sizes`
and :func:`table_mask`, and are "cleared" between documents by bumping a generation stamp.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def hash_span(cp, s, e) -> np.uint64:
    """64-bit hash of the code points ``cp[s:e]`` (FNV-1a, then a murmur finaliser)."""
    h = np.uint64(0xCBF29CE484222325)
    for k in range(s, e):
        h = (h ^ np.uint64(cp[k])) * np.uint64(0x100000001B3)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    return h


@njit(cache=True, nogil=True)
def table_mask(n_items, capacity) -> np.uint64:
    """Mask of the smallest power-of-two table holding ``n_items`` at load <= 1/2."""
    size = 16
    while size < 2 * n_items and size < capacity:
        size *= 2
    return np.uint64(size - 1)


@njit(cache=True, nogil=True, inline="always")
def set_add(keys, stamps, gen, mask, h) -> bool:
    """Insert ``h`` into the set of generation ``gen``; False if it was already there."""
    slot = np.int64(h & mask)
    while stamps[slot] == gen:
        if keys[slot] == h:
            return False
        slot = np.int64((np.uint64(slot) + np.uint64(1)) & mask)
    stamps[slot] = gen
    keys[slot] = h
    return True


@njit(cache=True, nogil=True, inline="always")
def counter_add(keys, stamps, counts, firsts, gen, mask, h, idx) -> int:
    """Count one more ``h`` (first seen at ``idx``) in the counter of generation ``gen``;
    returns its slot (``counts[slot]``, ``firsts[slot]``)."""
    slot = np.int64(h & mask)
    while stamps[slot] == gen:
        if keys[slot] == h:
            counts[slot] += 1
            return slot
        slot = np.int64((np.uint64(slot) + np.uint64(1)) & mask)
    stamps[slot] = gen
    keys[slot] = h
    counts[slot] = 1
    firsts[slot] = idx
    return slot


@njit(cache=True, nogil=True)
def batch_sizes(offsets):
    """``(longest, capacity)``: the longest document in bytes (which bound its code points) and
    a power-of-two table capacity for its items at load <= 1/2, to size per-batch scratch."""
    longest = 0
    for d in range(len(offsets) - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    cap = 16
    while cap < 2 * (longest + 1):
        cap *= 2
    return longest, cap
