"""Gopher repetition and quality filters (Rae et al. 2021, Table A1) as batch filters.

Both decide exactly as datatrove 0.10.1's ``GopherRepetitionFilter`` and
``GopherQualityFilter`` (same thresholds, same check order, same reason strings), but over
whole Arrow batches with compiled kernels: texts are decoded to code points once, words come
from :mod:`dataproc.filters.words` (spaCy-compatible), and duplicate lines, paragraphs and
n-grams are found with 64-bit hashes in per-batch open-addressing tables. Checks run lazily
in datatrove's order, so a document stops at its first failing check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from numba import njit

from dataproc.filters.base import FilterOutput, decisions
from dataproc.filters.spacy_en import ALPHA, DT_PUNCT, LINE_BREAK, WS
from dataproc.filters.words import decode_utf8, tables, tokenize_words, word_scratch
from dataproc.textbuf import text_buffers

_NL = 10
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial n-gram hash
_SEP = np.uint64(0x110000)  # joins words in " ".join n-grams (never a code point)


# --- hashing of spans, for duplicate lines / paragraphs / n-grams inside one document ---
# Duplicate detection compares 64-bit hashes (a collision inside one document is negligible).
# Hash sets live in caller-owned arrays and are "cleared" by bumping a generation stamp.


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


def _threshold(x: float | None) -> float:
    """datatrove skips a check whose threshold is falsy (None or 0): encode that as -1."""
    return float(x) if x else -1.0


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
def _scratch(offsets):
    """Per-batch scratch sized for the longest document (bytes bound code points)."""
    longest = 0
    for d in range(len(offsets) - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    cap = 16
    while cap < 2 * (longest + 1):
        cap *= 2
    return longest, cap


@njit(cache=True, nogil=True)
def _repetition_batch(data, offsets, tb, fr, top_n, top_frac, dup_n, dup_frac):
    longest, cap = _scratch(offsets)
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
            [_threshold(x) for x in (dup_para_frac, dup_para_char_frac, dup_line_frac, dup_line_char_frac)]
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


_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


@njit(cache=True, nogil=True)
def _quality_doc(cp, n, tb, ints, fr, stop_text, stop_off, found, sc) -> int:
    """Reason index of the first failing Gopher quality check (-1: keep)."""
    T = tb[0]
    out_s, out_e = sc[0], sc[1]
    k = tokenize_words(cp, 0, n, tb, sc)
    n_symbolic = 0
    len_sum = 0
    n_alpha = 0
    found[:] = False
    for t in range(k):
        a = out_s[t]
        b = out_e[t]
        symbol_only = True
        has_alpha = False
        for q in range(a, b):
            f = T[cp[q]]
            if not (f & DT_PUNCT):
                symbol_only = False
            if f & ALPHA:
                has_alpha = True
        if not symbol_only:
            n_symbolic += 1
            len_sum += b - a
        if has_alpha:
            n_alpha += 1
        for w in range(len(stop_off) - 1):
            if stop_off[w + 1] - stop_off[w] == b - a and not found[w]:
                same = True
                for q in range(b - a):
                    if stop_text[stop_off[w] + q] != cp[a + q]:
                        same = False
                        break
                found[w] = same
    min_words, max_words, min_avg, max_avg, min_stop = ints
    if min_words and n_symbolic < min_words:
        return 0
    if max_words and n_symbolic > max_words:
        return 1
    if n_symbolic > 0:  # datatrove's mean of no words is nan, which passes both checks
        avg = len_sum / n_symbolic
        if min_avg and avg < min_avg:
            return 2
        if max_avg and avg > max_avg:
            return 3
    if k == 0:
        return -1  # datatrove divides by zero here; only reachable with min_doc_words off
    if fr[0] > 0:
        hashes = 0
        ellipses = 0
        run = 0
        for i in range(n):
            c = cp[i]
            if c == 46:
                run += 1
                continue
            ellipses += run // 3
            run = 0
            if c == 35:
                hashes += 1
            elif c == 0x2026:
                ellipses += 1
        ellipses += run // 3
        if hashes / k > fr[0]:
            return 4
        if ellipses / k > fr[0]:
            return 5
    if fr[1] > 0 or fr[2] > 0:
        lines = 0
        bullets = 0
        ending = 0
        s = 0
        while s < n:
            e = s
            while e < n and not (T[cp[e]] & LINE_BREAK):
                e += 1
            lines += 1
            a = s
            while a < e and (T[cp[a]] & WS):
                a += 1
            if a < e and (cp[a] == 0x2022 or cp[a] == 45):
                bullets += 1
            b = e
            while b > s and (T[cp[b - 1]] & WS):
                b -= 1
            if b > s and (
                cp[b - 1] == 0x2026
                or (b - s >= 3 and cp[b - 1] == 46 and cp[b - 2] == 46 and cp[b - 3] == 46)
            ):
                ending += 1
            s = e + 2 if e + 1 < n and cp[e] == 13 and cp[e + 1] == _NL else e + 1
        if fr[1] > 0 and bullets / lines > fr[1]:
            return 6
        if fr[2] > 0 and ending / lines > fr[2]:
            return 7
    if fr[3] > 0 and n_alpha / k < fr[3]:
        return 8
    if min_stop:
        n_stop = 0
        for w in range(len(found)):
            n_stop += found[w]
        if n_stop < min_stop:
            return 9
    return -1


@njit(cache=True, nogil=True)
def _quality_batch(data, offsets, tb, ints, fr, stop_text, stop_off):
    longest, _ = _scratch(offsets)
    cp = np.empty(longest + 1, dtype=np.int32)
    sc = word_scratch(longest)
    found = np.zeros(len(stop_off) - 1, dtype=np.bool_)
    out = np.empty(len(offsets) - 1, dtype=np.int16)
    for d in range(len(offsets) - 1):
        n = decode_utf8(data, offsets[d], offsets[d + 1], cp)
        out[d] = _quality_doc(cp, n, tb, ints, fr, stop_text, stop_off, found, sc)
    return out


class GopherQuality:
    """Gopher quality filter: word count and length, symbols, bullets, alphabetic words,
    stop words. Parameters and defaults are datatrove's ``GopherQualityFilter``'s (a falsy
    threshold disables its check); words are spaCy-English words as there."""

    name = "gopher_quality"
    reasons = (
        "gopher_short_doc",
        "gopher_long_doc",
        "gopher_below_avg_threshold",
        "gopher_above_avg_threshold",
        "gopher_too_many_hashes",
        "gopher_too_many_ellipsis",
        "gopher_too_many_bullets",
        "gopher_too_many_end_ellipsis",
        "gopher_below_alpha_threshold",
        "gopher_enough_stop_words",
    )

    def __init__(
        self,
        min_doc_words: int | None = 50,
        max_doc_words: int | None = 100000,
        min_avg_word_length: int | None = 3,
        max_avg_word_length: int | None = 10,
        max_symbol_word_ratio: float | None = 0.1,
        max_bullet_lines_ratio: float | None = 0.9,
        max_ellipsis_lines_ratio: float | None = 0.3,
        max_non_alpha_words_ratio: float | None = 0.8,
        min_stop_words: int | None = 2,
        stop_words: Sequence[str] | None = None,
    ) -> None:
        self.ints = (
            int(min_doc_words or 0),
            int(max_doc_words or 0),
            float(min_avg_word_length or 0),
            float(max_avg_word_length or 0),
            int(min_stop_words or 0),
        )
        self.fractions = np.array(
            [
                _threshold(x)
                for x in (
                    max_symbol_word_ratio,
                    max_bullet_lines_ratio,
                    max_ellipsis_lines_ratio,
                    max_non_alpha_words_ratio,
                )
            ]
        )
        words = sorted(set(_STOP_WORDS if stop_words is None else stop_words))
        self.stop_text = np.array([ord(c) for w in words for c in w], dtype=np.int32)
        self.stop_off = np.cumsum([0] + [len(w) for w in words]).astype(np.int64)

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        data, offsets = text_buffers(batch.column("text"))
        reason = _quality_batch(
            data, offsets, tables(), self.ints, self.fractions, self.stop_text, self.stop_off
        )
        return decisions(reason < 0, reason, self.reasons)
