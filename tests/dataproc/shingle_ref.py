"""Pure-Python reference of the MinHash shingling documented in ``dataproc.dedup.minhash``.

Written from the module docstring, not from the kernels: per-character classification on
Python ``str``, ``str.lower`` for the documented case mappings, the ``xxhash`` package for
word hashes, and Python integers for the shingle combination and the permutations. Slow;
tests use it on a few thousand documents.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import xxhash

MASK64 = (1 << 64) - 1
P1 = 0x9E3779B185EBCA87
P2 = 0xC2B2AE3D27D4EB4F

# (first, last) inclusive code point ranges, straight from the docstring.
SEPARATOR_RANGES = [
    (0x80, 0xBF), (0xD7, 0xD7), (0xF7, 0xF7), (0x2000, 0x2BFF), (0x2E00, 0x2E7F), (0x3000, 0x303F),
    (0xFE10, 0xFE6F), (0xFEFF, 0xFEFF), (0xFF00, 0xFF0F), (0xFF1A, 0xFF20), (0xFF3B, 0xFF40),
    (0xFF5B, 0xFF65),
]
SINGLE_RANGES = [(0x2E80, 0x2FDF), (0x3040, 0x9FFF), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3FFFF)]
FOLD_RANGES = [(0x41, 0x5A), (0xC0, 0xDE), (0x100, 0x12F), (0x131, 0x17E), (0x391, 0x3A9), (0x400, 0x42F)]


def _in(cp: int, ranges: list[tuple[int, int]]) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def char_class(ch: str) -> str:
    """'sep', 'single' or 'word'."""
    cp = ord(ch)
    if cp < 0x80:
        return "word" if ch.isascii() and ch.isalnum() else "sep"
    if _in(cp, SEPARATOR_RANGES):
        return "sep"
    if _in(cp, SINGLE_RANGES):
        return "single"
    return "word"


def words(text: str) -> list[str]:
    """The lowercased words of ``text``, in order."""
    out: list[str] = []
    cur: list[str] = []
    for ch in text:
        cls = char_class(ch)
        if cls == "word":
            cur.append(ch.lower() if _in(ord(ch), FOLD_RANGES) else ch)
            continue
        if cur:
            out.append("".join(cur))
            cur = []
        if cls == "single":
            out.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def word_hash(word: str) -> int:
    b = word.encode("utf-8")
    return xxhash.xxh64_intdigest(b.ljust(16, b"\0") if len(b) <= 16 else b, seed=len(b))


def fmix64(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    return h ^ (h >> 33)


def shingle_list(text: str, ngram: int = 5) -> list[tuple[str, ...]]:
    """Word n-grams in text order (one shingle of all words if there are fewer than ``ngram``)."""
    ws = words(text)
    if not ws:
        return []
    k = min(ngram, len(ws))
    return [tuple(ws[i : i + k]) for i in range(len(ws) - k + 1)]


def shingle_set(text: str, ngram: int = 5) -> set[tuple[str, ...]]:
    return set(shingle_list(text, ngram))


def shingle_hash(shingle: tuple[str, ...]) -> int:
    h = (len(shingle) * P2) & MASK64
    for w in shingle:
        h = (h * P1 + word_hash(w)) & MASK64
    return fmix64(h)


def signature(text: str, a: np.ndarray, b: np.ndarray, ngram: int = 5) -> np.ndarray:
    """The MinHash signature, with ``a``/``b`` the uint32 permutation parameters."""
    shingles = shingle_set(text, ngram)
    if not shingles:
        return np.full(len(a), 0xFFFFFFFF, dtype=np.uint32)
    x = [shingle_hash(s) >> 32 for s in shingles]
    # Python integers: (a * x + b) mod 2^32 without relying on any fixed-width wrapping.
    return np.array([min((int(ak) * xi + int(bk)) & 0xFFFFFFFF for xi in x) for ak, bk in zip(a, b)],
                    dtype=np.uint32)


def jaccard(s1: set, s2: set) -> float:
    if not s1 and not s2:
        return 1.0
    return len(s1 & s2) / len(s1 | s2)


def similar_pairs(sets: list[set], threshold: float) -> dict[tuple[int, int], float]:
    """Every pair ``(i, j)``, ``i < j``, with exact Jaccard >= ``threshold`` (prefix-filtered inverted index:
    exact, not approximate)."""
    df: dict = defaultdict(int)
    for s in sets:
        for g in s:
            df[g] += 1
    # Rarest shingles first: a pair with J >= t shares one of each doc's first |A| - ceil(t |A|) + 1
    # shingles in this order (prefix filtering).
    index: dict = defaultdict(list)
    candidates: set[tuple[int, int]] = set()
    for i, s in enumerate(sets):
        toks = sorted(s, key=lambda g: (df[g], g))
        prefix = len(toks) - math.ceil(threshold * len(toks)) + 1 if toks else 0
        for g in toks[:prefix]:
            for j in index[g]:
                candidates.add((j, i))
            index[g].append(i)
    sims = {}
    for a, b in candidates:
        j = jaccard(sets[a], sets[b])
        if j >= threshold:
            sims[(a, b)] = j
    return sims
