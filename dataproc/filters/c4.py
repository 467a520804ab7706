"""C4 quality filter (Raffel et al. 2020) as a batch filter, deciding as datatrove's
``C4QualityFilter`` does.

Per line (``str.splitlines``, stripped): lines with a word over ``max_word_length`` characters,
without terminal punctuation (after removing ``[1]`` / ``[edit]`` / ``[citation needed]``),
with fewer than ``min_words_per_line`` words, or mentioning javascript or a cookie/terms
policy are dropped; "lorem ipsum" or a curly bracket in a kept line drops the document; the
document needs ``min_num_sentences`` sentences (spaCy's sentencizer) over its kept lines.

Sentences are only counted while the document is still short of ``min_num_sentences`` (every
kept line holds at least one), so most documents never reach the tokenizer.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from numba import njit

from dataproc.filters.base import FilterOutput, decisions
from dataproc.text.buffers import text_buffers
from dataproc.text.spacy_en import DECIMAL, LINE_BREAK, WS
from dataproc.text.words import count_sentences, decode_utf8, tables, word_scratch

_LOREM = "lorem ipsum"
_JAVASCRIPT = "javascript"
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def _pack(words: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    text = np.array([ord(c) for w in words for c in w], dtype=np.int32)
    return text, np.cumsum([0] + [len(w) for w in words]).astype(np.int64)


@njit(cache=True, nogil=True, inline="always")
def _lower(c):
    """``str.lower`` where it can produce an ASCII letter (A-Z and the Kelvin sign)."""
    if 65 <= c <= 90:
        return c + 32
    if c == 0x212A:
        return 107
    return c


@njit(cache=True, nogil=True)
def _phrases(line, a, b, words, word_off, first) -> int:
    """Bit ``w`` set when ``line[a:b].lower()`` contains phrase ``w``, bit 62 for a "{".

    One pass: phrases are only tried where the lower-cased character is the first letter of
    one (``first``, an ASCII table)."""
    found = 0
    n_words = len(word_off) - 1
    for i in range(a, b):
        c = _lower(line[i])
        if c == 123:
            found |= 1 << 62
        if c >= 128 or not first[c]:
            continue
        for w in range(n_words):
            p = word_off[w]
            m = word_off[w + 1] - p
            if words[p] != c or i + m > b or (found >> w) & 1:
                continue
            same = True
            for q in range(1, m):
                if _lower(line[i + q]) != words[p + q]:
                    same = False
                    break
            if same:
                found |= 1 << w
    return found


@njit(cache=True, nogil=True)
def _strip_citations(cp, a, b, T, cites, cite_off, out) -> int:
    """``CITATION_REGEX.sub("", cp[a:b])`` (``\\[\\d*]|\\[edit]|\\[citation needed]``) into ``out``."""
    k = 0
    i = a
    while i < b:
        if cp[i] == 91:
            j = i + 1
            while j < b and (T[cp[j]] & DECIMAL):
                j += 1
            end = j + 1 if j < b and cp[j] == 93 else -1
            if end < 0:
                for w in range(len(cite_off) - 1):
                    p = cite_off[w]
                    m = cite_off[w + 1] - p
                    if i + m <= b:
                        same = True
                        for q in range(m):
                            if cp[i + q] != cites[p + q]:
                                same = False
                                break
                        if same:
                            end = i + m
                            break
            if end >= 0:
                i = end
                continue
        out[k] = cp[i]
        k += 1
        i += 1
    return k


@njit(cache=True, nogil=True)
def _c4_doc(cp, n, tb, opts, words, word_off, first, cites, cite_off, buf, ws) -> int:
    """Reason of the C4 decision: -1 keep, 0 lorem_ipsum, 1 curly_bracket, 2 too_few_sentences."""
    T = tb[0]
    terminal, min_sentences, min_words, max_word, lorem, javascript, curly, policy, citations = opts
    n_sent = 0
    s = 0
    while s < n:
        e = s
        while e < n and not (T[cp[e]] & LINE_BREAK):
            e += 1
        nxt = e + 2 if e + 1 < n and cp[e] == 13 and cp[e + 1] == 10 else e + 1
        a = s
        b = e
        s = nxt
        while a < b and (T[cp[a]] & WS):
            a += 1
        while b > a and (T[cp[b - 1]] & WS):
            b -= 1
        # line.split(): count words, drop the line on a word over max_word characters
        n_words = 0
        too_long = False
        i = a
        while i < b:
            if T[cp[i]] & WS:
                i += 1
                continue
            j = i + 1
            while j < b and not (T[cp[j]] & WS):
                j += 1
            n_words += 1
            if max_word != -1 and j - i > max_word:
                too_long = True
                break
            i = j
        if too_long:
            continue
        line = cp
        if citations:
            for i in range(a, b):
                if cp[i] == 91:
                    line = buf
                    b = _strip_citations(cp, a, b, T, cites, cite_off, buf)
                    a = 0
                    break
        if terminal:
            if b == a:
                continue
            c = line[b - 1]
            if not (c == 46 or c == 63 or c == 33 or c == 34 or c == 39):
                continue
            if b - a >= 3 and c == 46 and line[b - 2] == 46 and line[b - 3] == 46:
                continue
        if n_words < min_words:
            continue
        found = _phrases(line, a, b, words, word_off, first)
        if lorem and found & 1:
            return 0
        if javascript and found & 2:
            continue
        if curly and (found >> 62) & 1:
            return 1
        if policy and found & ~(3 | (1 << 62)):
            continue
        if min_sentences != -1 and n_sent < min_sentences:
            # datatrove's split_into_sentences("") is [""]: an empty line counts one
            n_sent += count_sentences(line, a, b, tb, ws) if b > a else 1
    if n_sent < min_sentences:
        return 2
    return -1


@njit(cache=True, nogil=True)
def _c4_batch(data, offsets, tb, opts, words, word_off, first, cites, cite_off):
    longest = 0
    for d in range(len(offsets) - 1):
        longest = max(longest, offsets[d + 1] - offsets[d])
    cp = np.empty(longest + 1, dtype=np.int32)
    buf = np.empty(longest + 1, dtype=np.int32)
    ws = word_scratch(longest)
    out = np.empty(len(offsets) - 1, dtype=np.int16)
    for d in range(len(offsets) - 1):
        n = decode_utf8(data, offsets[d], offsets[d + 1], cp)
        out[d] = _c4_doc(cp, n, tb, opts, words, word_off, first, cites, cite_off, buf, ws)
    return out


class C4Quality:
    """C4 quality heuristics with datatrove ``C4QualityFilter``'s parameters and defaults.

    datatrove's filter also rewrites ``doc.text`` to the kept lines; this class only decides
    keep/drop (the text is left as it is). Only ``split_paragraph=True`` (C4's line mode) is
    supported.
    """

    name = "c4_quality"
    reasons = ("lorem_ipsum", "curly_bracket", "too_few_sentences")

    def __init__(
        self,
        split_paragraph: bool = True,
        remove_citations: bool = True,
        filter_no_terminal_punct: bool = True,
        min_num_sentences: int = 5,
        min_words_per_line: int = 3,
        max_word_length: int = 1000,
        filter_lorem_ipsum: bool = True,
        filter_javascript: bool = True,
        filter_curly_bracket: bool = True,
        filter_policy: bool = True,
    ) -> None:
        if not split_paragraph:
            raise ValueError("C4Quality: split_paragraph=False (spaCy sentence mode) is not supported; C4 itself "
                             "splits on lines (split_paragraph=True)")
        self.opts = (
            bool(filter_no_terminal_punct),
            int(min_num_sentences),
            int(min_words_per_line),
            int(max_word_length),
            bool(filter_lorem_ipsum),
            bool(filter_javascript),
            bool(filter_curly_bracket),
            bool(filter_policy),
            bool(remove_citations),
        )
        self.words, self.word_off = _pack((_LOREM, _JAVASCRIPT, *_POLICY))
        self.first = np.zeros(128, dtype=np.bool_)
        self.first[self.words[self.word_off[:-1]]] = True
        self.cites, self.cite_off = _pack(("[edit]", "[citation needed]"))

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        data, offsets = text_buffers(batch.column("text"))
        reason = _c4_batch(
            data,
            offsets,
            tables(),
            self.opts,
            self.words,
            self.word_off,
            self.first,
            self.cites,
            self.cite_off,
        )
        return decisions(reason < 0, reason, self.reasons)
