"""FineWeb quality filter (Penedo et al. 2024) as a batch filter, deciding as datatrove's
``FineWebQualityFilter`` does.

Over the non-blank ``"\\n"``-separated lines: too few ending in terminal punctuation, too many
short lines, too many characters in duplicated lines, or too many newlines per word (words
from :mod:`dataproc.text.words`, i.e. spaCy's English tokenizer). The word count, the
expensive part, is only computed for documents that pass the three line checks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from datatrove.utils.text import TERMINAL_PUNCTUATION
from numba import njit

from dataproc.filters.base import FilterOutput, decisions
from dataproc.text.buffers import text_buffers
from dataproc.text.hashtable import batch_sizes, hash_span, set_add, table_mask
from dataproc.text.spacy_en import WS
from dataproc.text.words import decode_utf8, tables, tokenize_words, word_scratch

_NL = 10


@njit(cache=True, nogil=True)
def _fineweb_doc(cp, n, tb, stop, fr, exclude_zero, short_len, ks, st, gen, ws) -> int:
    """Reason index of the first failing check (-1: keep)."""
    T = tb[0]
    lines = 0
    ending = 0
    short = 0
    newlines = 0
    for i in range(n):
        if cp[i] == _NL:
            newlines += 1
    mask = table_mask(newlines + 1, len(ks))
    gen[0] += 1
    dup_chars = 0
    s = 0
    while s <= n:
        e = s
        while e < n and cp[e] != _NL:
            e += 1
        blank = True
        for q in range(s, e):
            if not (T[cp[q]] & WS):
                blank = False
                break
        if not blank:
            lines += 1
            if stop[cp[e - 1]]:
                ending += 1
            if e - s <= short_len:
                short += 1
            if not set_add(ks, st, gen[0], mask, hash_span(cp, s, e)):
                dup_chars += e - s
        s = e + 1
    if lines == 0:
        return 0
    ratio = ending / lines
    if ratio < fr[0] and not (ratio == 0 and exclude_zero):
        return 1
    if short / lines > fr[1]:
        return 2
    if dup_chars / (n - newlines) > fr[2]:
        return 3
    words = tokenize_words(cp, 0, n, tb, ws)
    if newlines / words > fr[3]:
        return 4
    return -1


@njit(cache=True, nogil=True)
def _fineweb_batch(data, offsets, tb, stop, fr, exclude_zero, short_len):
    longest, cap = batch_sizes(offsets)
    cp = np.empty(longest + 1, dtype=np.int32)
    ws = word_scratch(longest)
    ks = np.zeros(cap, dtype=np.uint64)
    st = np.zeros(cap, dtype=np.int32)
    gen = np.zeros(1, dtype=np.int32)
    out = np.empty(len(offsets) - 1, dtype=np.int16)
    for d in range(len(offsets) - 1):
        n = decode_utf8(data, offsets[d], offsets[d + 1], cp)
        out[d] = _fineweb_doc(cp, n, tb, stop, fr, exclude_zero, short_len, ks, st, gen, ws)
    return out


class FineWebQuality:
    """FineWeb's line-punctuation, short-line, duplicate-line and list-ratio heuristics with
    datatrove ``FineWebQualityFilter``'s parameters and defaults. ``stop_chars`` must be single
    characters (datatrove's default, ``TERMINAL_PUNCTUATION``, is)."""

    name = "fineweb_quality"
    reasons = ("empty", "line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio")

    def __init__(
        self,
        line_punct_thr: float = 0.12,
        line_punct_exclude_zero: bool = False,
        stop_chars: Sequence[str] | None = None,
        short_line_thr: float = 0.67,
        short_line_length: int = 30,
        char_duplicates_ratio: float = 0.01,
        new_line_ratio: float = 0.3,
    ) -> None:
        chars = tuple(TERMINAL_PUNCTUATION) if stop_chars is None else tuple(stop_chars)
        if any(len(c) != 1 for c in chars):
            raise ValueError("stop_chars must be single characters")
        self.stop = np.zeros(0x110000, dtype=np.bool_)
        self.stop[[ord(c) for c in chars]] = True
        self.fractions = np.array(
            [line_punct_thr, short_line_thr, char_duplicates_ratio, new_line_ratio], dtype=np.float64
        )
        self.exclude_zero = bool(line_punct_exclude_zero)
        self.short_line_length = int(short_line_length)

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        data, offsets = text_buffers(batch.column("text"))
        reason = _fineweb_batch(
            data, offsets, tables(), self.stop, self.fractions, self.exclude_zero, self.short_line_length
        )
        return decisions(reason < 0, reason, self.reasons)
