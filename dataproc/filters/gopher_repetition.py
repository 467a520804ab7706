"""Gopher repetition filter (Rae et al. 2021, Table A1) as a batch filter.

Decides exactly as datatrove 0.10.1's ``GopherRepetitionFilter`` (same thresholds, same check
order, same reason strings), but over whole Arrow batches with compiled kernels: texts are
decoded to code points once, words come from :mod:`dataproc.text.words` (spaCy-compatible),
and duplicate lines, paragraphs and n-grams are found with 64-bit hashes in per-batch
open-addressing tables (:mod:`dataproc.text.hashtable`). Checks run lazily in datatrove's
order, so a document stops at its first failing check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from numba import njit

from dataproc.filters.base import FilterOutput, decisions, threshold_or_off
from dataproc.text.buffers import text_buffers
from dataproc.text.hashtable import batch_sizes, counter_add, hash_span, set_add, table_mask
from dataproc.text.spacy_en import WS
from dataproc.text.words import decode_utf8, tables, tokenize_words, word_scratch

_NL = 10
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial n-gram hash
_SEP = np.uint64(0x110000)  # joins words in " ".join n-grams (never a code point)


@njit(cache=True, nogil=True)
def _duplicates(cp, s, e, sep_min, keys, stamps, gen, mask):
    """``find_duplicates`` over pieces of ``cp[s:e]`` split at runs of ``sep_min``+ newlines.

    Returns ``(pieces, duplicate pieces, duplicate characters)``.
    """
    pieces = 0
    dups = 0
    dup_chars = 0
    p = s
    q = s
    while q <= e:
        if q < e and cp[q] != _NL:
            q += 1
            continue
        r = q
        while r < e and cp[r] == _NL:
            r += 1
        if q == e or r - q >= sep_min:
            pieces += 1
            if not set_add(keys, stamps, gen, mask, hash_span(cp, p, q)):
                dups += 1
                dup_chars += q - p
            p = r
        if q == e:
            break
        q = r
    return pieces, dups, dup_chars


@njit(cache=True, nogil=True)
def _repetition_doc(cp, n, tb, fr, top_n, top_frac, dup_n, dup_frac, sc, ks, st, cnt, fst, gen, pw) -> int:
    """Reason index of the first failing check (-1: keep). ``gen[0]`` is the table stamp."""
    if n == 0:
        return 0
    T = tb[0]
    a = 0
    b = n
    while a < b and (T[cp[a]] & WS):
        a += 1
    while b > a and (T[cp[b - 1]] & WS):
        b -= 1
    newlines = 0
    for i in range(n):
        if cp[i] == _NL:
            newlines += 1
    mask = table_mask(newlines + 1, len(ks))
    gen[0] += 1
    pieces, dups, dup_chars = _duplicates(cp, a, b, 2, ks, st, gen[0], mask)
    if fr[0] > 0 and dups / pieces > fr[0]:
        return 1
    if fr[1] > 0 and dup_chars / n > fr[1]:
        return 2
    gen[0] += 1
    pieces, dups, dup_chars = _duplicates(cp, 0, n, 1, ks, st, gen[0], mask)
    if fr[2] > 0 and dups / pieces > fr[2]:
        return 3
    if fr[3] > 0 and dup_chars / n > fr[3]:
        return 4

    ws, gc, gs, lc = sc
    out_s, out_e = ws[0], ws[1]
    k = tokenize_words(cp, 0, n, tb, ws)
    # Prefix hashes over the words: gc of their concatenation ("".join n-grams), gs with a
    # separator after each word (" ".join n-grams); lc = characters so far.
    hc = np.uint64(0)
    hs = np.uint64(0)
    gc[0] = hc
    gs[0] = hs
    lc[0] = 0
    for t in range(k):
        for q in range(out_s[t], out_e[t]):
            c = np.uint64(cp[q] + 1)
            hc = hc * _BASE + c
            hs = hs * _BASE + c
        hs = hs * _BASE + _SEP
        gc[t + 1] = hc
        gs[t + 1] = hs
        lc[t + 1] = lc[t] + out_e[t] - out_s[t]

    for j in range(len(top_n)):
        m = top_n[j]
        if k < m:
            continue
        gen[0] += 1
        mask = table_mask(k - m + 1, len(ks))
        best_count = 0
        best_first = 0
        for i in range(k - m + 1):
            h = gs[i + m] - gs[i] * pw[lc[i + m] - lc[i] + m]
            slot = counter_add(ks, st, cnt, fst, gen[0], mask, h, i)
            c = cnt[slot]
            if c > best_count or (c == best_count and fst[slot] < best_first):
                best_count = c
                best_first = fst[slot]
        top_chars = (lc[best_first + m] - lc[best_first] + m - 1) * best_count
        if top_chars / n > top_frac[j]:
            return 5 + j

    for j in range(len(dup_n)):
        m = dup_n[j]
        gen[0] += 1
        mask = table_mask(max(k - m + 1, 1), len(ks))
        repeated = 0
        i = 0
        while i < k - m + 1:
            h = gc[i + m] - gc[i] * pw[lc[i + m] - lc[i]]
            if set_add(ks, st, gen[0], mask, h):
                i += 1
            else:
                repeated += lc[i + m] - lc[i]
                i += m
        if repeated / n > dup_frac[j]:
            return 5 + len(top_n) + j
    return -1


@njit(cache=True, nogil=True)
def _repetition_batch(data, offsets, tb, fr, top_n, top_frac, dup_n, dup_frac):
    longest, cap = batch_sizes(offsets)
    cp = np.empty(longest + 1, dtype=np.int32)
    sc = (
        word_scratch(longest),
        np.empty(longest + 2, dtype=np.uint64),
        np.empty(longest + 2, dtype=np.uint64),
        np.empty(longest + 2, dtype=np.int64),
    )
    pw = np.empty(2 * longest + 2, dtype=np.uint64)
    pw[0] = 1
    for i in range(1, len(pw)):
        pw[i] = pw[i - 1] * _BASE
    ks = np.zeros(cap, dtype=np.uint64)
    st = np.zeros(cap, dtype=np.int32)
    cnt = np.zeros(cap, dtype=np.int32)
    fst = np.zeros(cap, dtype=np.int32)
    gen = np.zeros(1, dtype=np.int32)
    out = np.empty(len(offsets) - 1, dtype=np.int16)
    for d in range(len(offsets) - 1):
        n = decode_utf8(data, offsets[d], offsets[d + 1], cp)
        out[d] = _repetition_doc(
            cp, n, tb, fr, top_n, top_frac, dup_n, dup_frac, sc, ks, st, cnt, fst, gen, pw
        )
    return out


class GopherRepetition:
    """Gopher repetition filter: duplicate paragraphs/lines, top n-grams, duplicated n-grams.

    Parameters and defaults are datatrove's ``GopherRepetitionFilter``'s; a falsy line or
    paragraph threshold disables that check, as there.
    """

    name = "gopher_repetition"

    def __init__(
        self,
        dup_line_frac: float | None = 0.3,
        dup_para_frac: float | None = 0.3,
        dup_line_char_frac: float | None = 0.2,
        dup_para_char_frac: float | None = 0.2,
        top_n_grams: Sequence[tuple[int, float]] = ((2, 0.2), (3, 0.18), (4, 0.16)),
        dup_n_grams: Sequence[tuple[int, float]] = (
            (5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10),
        ),
    ) -> None:  # fmt: skip
        self.fractions = np.array(
            [threshold_or_off(x) for x in (dup_para_frac, dup_para_char_frac, dup_line_frac, dup_line_char_frac)]
        )
        self.top_n = np.array([n for n, _ in top_n_grams], dtype=np.int64)
        self.top_frac = np.array([f for _, f in top_n_grams], dtype=np.float64)
        self.dup_n = np.array([n for n, _ in dup_n_grams], dtype=np.int64)
        self.dup_frac = np.array([f for _, f in dup_n_grams], dtype=np.float64)
        if np.any(self.top_n < 1) or np.any(self.dup_n < 1):
            raise ValueError("n-gram sizes must be >= 1")
        self.reasons = (
            "empty",
            "dup_para_frac",
            "dup_para_char_frac",
            "dup_line_frac",
            "dup_line_char_frac",
            *(f"top_{n}_gram" for n, _ in top_n_grams),
            *(f"duplicated_{n}_n_grams" for n, _ in dup_n_grams),
        )

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        data, offsets = text_buffers(batch.column("text"))
        reason = _repetition_batch(
            data, offsets, tables(), self.fractions, self.top_n, self.top_frac, self.dup_n, self.dup_frac
        )
        return decisions(reason < 0, reason, self.reasons)
