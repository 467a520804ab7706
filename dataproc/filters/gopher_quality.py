"""Gopher quality filter (Rae et al. 2021, Table A1) as a batch filter.

Decides exactly as datatrove 0.10.1's ``GopherQualityFilter`` (same thresholds, same check
order, same reason strings), but over whole Arrow batches with compiled kernels: texts are
decoded to code points once and words come from :mod:`dataproc.text.words`
(spaCy-compatible). Checks run lazily in datatrove's order, so a document stops at its first
failing check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from numba import njit

from dataproc.filters.base import FilterOutput, decisions, threshold_or_off
from dataproc.text.buffers import text_buffers
from dataproc.text.hashtable import batch_sizes
from dataproc.text.spacy_en import ALPHA, DT_PUNCT, LINE_BREAK, WS
from dataproc.text.words import decode_utf8, tables, tokenize_words, word_scratch

_NL = 10


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
    longest, _ = batch_sizes(offsets)
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
                threshold_or_off(x)
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
