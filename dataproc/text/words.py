"""Compiled word and sentence tokenisation that reproduces datatrove's spaCy statistics.

datatrove's quality filters split words with ``spacy.blank("en")`` (whitespace tokens dropped)
and count C4 sentences with spaCy's sentencizer. These numba kernels run the same algorithm
over code points decoded from the Arrow UTF-8 buffer, so counts and word lengths match:

1. split on whitespace (a run's first ``" "`` is absorbed, the rest of the run is a token);
2. per chunk, exception lookup ("don't" → "do" "n't", "e.g.", emoticons), then spaCy's
   prefix / suffix peeling loop with its exception checks;
3. the remainder stays whole if it is a URL (spaCy's ``url_match``), else it is cut at infixes
   (hyphens and ``/ : = < >`` between letters, ``.`` between lower and upper case...).

4. spaCy's special-case matcher pass: token runs inside one chunk that spell an exception in
   its affix-split form (``foo():`` → ``)`` ``:`` → ``):``) are re-merged.

Character classes and exceptions come from :mod:`dataproc.text.spacy_en`, the affix and
URL rules from :mod:`dataproc.text.affixes`. Left out: matcher hits across whitespace
(spaCy keeps those tokens but lets them block overlapping in-chunk hits), which is rare.
Tokens are emitted as ``[start, end)`` code-point spans into caller-provided scratch arrays;
nothing is allocated per token. The whole of ``docs_sections`` (62,744 docs) tokenises to
exactly spaCy's word lists.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from dataproc.text import spacy_en as rules
from dataproc.text.affixes import affixes_found, prefix_len, split_infixes, suffix_len, url_match

_WS = rules.WS
_U_PUNCT = rules.U_PUNCT
_SENT = rules.SENT
_PLAIN = rules.PLAIN

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)


def _base_tables() -> tuple:
    sp_hash, sp_id, sp_text, sp_text_off, sp_tok_len, sp_tok_off, sp_max = rules.packed_specials()
    unit_text, unit_off = rules.packed_units()
    return (
        rules.char_table(),
        sp_hash,
        sp_id,
        sp_text,
        sp_text_off,
        sp_tok_len,
        sp_tok_off,
        int(sp_max),
        unit_text,
        unit_off,
    )


@functools.cache
def tables() -> tuple:
    """Everything the kernels look up, as one tuple (built once per process).

    Besides :func:`_base_tables`, it holds spaCy's special-case *matcher* patterns: every
    exception that affix rules would split (":)" -> ":" ")") is also matched as a token
    sequence after tokenisation and re-merged (see :func:`_apply_matcher`). Entry 10/11 are
    the pattern token lengths per exception (none for exceptions the matcher ignores).
    """
    base = _base_tables()
    none = (np.zeros(0, dtype=np.int32), np.zeros(1, dtype=np.int64))
    no_specials = (*base[:7], 0, *base[8:], *none)  # max exception length 0 disables lookups
    text, text_off = base[3], base[4]
    pat_len: list[int] = []
    pat_off = [0]
    ws = word_scratch(len(text))
    for sid in range(len(text_off) - 1):
        a, b = int(text_off[sid]), int(text_off[sid + 1])
        if affixes_found(text, a, b, base[0], base[8], base[9]):
            k = tokenize(text, a, b, no_specials, ws, False)
            pat_len.extend(int(x) for x in ws[1][:k] - ws[0][:k])
        pat_off.append(len(pat_len))
    return (*base, np.array(pat_len, dtype=np.int32), np.array(pat_off, dtype=np.int64))


@njit(cache=True, nogil=True)
def decode_utf8(data: np.ndarray, start: int, end: int, out: np.ndarray) -> int:
    """Decode valid UTF-8 ``data[start:end]`` into code points ``out[:n]``; returns ``n``."""
    n = 0
    i = start
    while i < end:
        b = np.int32(data[i])
        if b < 0x80:
            out[n] = b
            i += 1
        elif b < 0xE0:
            out[n] = ((b & 0x1F) << 6) | (np.int32(data[i + 1]) & 0x3F)
            i += 2
        elif b < 0xF0:
            out[n] = (
                ((b & 0x0F) << 12) | ((np.int32(data[i + 1]) & 0x3F) << 6) | (np.int32(data[i + 2]) & 0x3F)
            )
            i += 3
        else:
            out[n] = (
                ((b & 0x07) << 18)
                | ((np.int32(data[i + 1]) & 0x3F) << 12)
                | ((np.int32(data[i + 2]) & 0x3F) << 6)
                | (np.int32(data[i + 3]) & 0x3F)
            )
            i += 4
        n += 1
    return n


@njit(cache=True, nogil=True)
def _special(cp, s, e, sp_hash, sp_id, sp_text, sp_text_off, max_len) -> int:
    """Id of the tokenizer exception equal to ``cp[s:e]``, or -1."""
    n = e - s
    if n <= 0 or n > max_len:
        return -1
    h = _FNV_OFFSET
    for k in range(s, e):
        h = (h ^ np.uint64(cp[k])) * _FNV_PRIME
    mask = np.uint64(len(sp_id) - 1)
    slot = np.int64(h & mask)
    while sp_id[slot] >= 0:
        if sp_hash[slot] == h:
            sid = sp_id[slot]
            a = sp_text_off[sid]
            if sp_text_off[sid + 1] - a == n:
                same = True
                for k in range(n):
                    if sp_text[a + k] != cp[s + k]:
                        same = False
                        break
                if same:
                    return sid
        slot = np.int64((np.uint64(slot) + np.uint64(1)) & mask)
    return -1


@njit(cache=True, nogil=True, inline="always")
def _emit_special(sid, s, tok_len, tok_off, out_s, out_e, k) -> int:
    pos = s
    for t in range(tok_off[sid], tok_off[sid + 1]):
        out_s[k] = pos
        pos += tok_len[t]
        out_e[k] = pos
        k += 1
    return k


@njit(cache=True, nogil=True, inline="always")
def _tokenize_chunk(cp, s, e, tb, ws, k) -> int:
    """Append the tokens of the whitespace-free chunk ``cp[s:e]`` at ``ws[0/1][k:]``
    (spaCy's ``_split_affixes`` + ``_attach_tokens``); returns the new count."""
    T, sp_hash, sp_id, sp_text, sp_text_off, tok_len, tok_off, max_len, unit_text, unit_off = tb[:10]
    out_s, out_e, suf_s, suf_e = ws[:4]
    sid = _special(cp, s, e, sp_hash, sp_id, sp_text, sp_text_off, max_len)
    if sid >= 0:
        return _emit_special(sid, s, tok_len, tok_off, out_s, out_e, k)
    ns = 0
    cs = s
    ce = e
    last = -1
    checked = True  # cp[cs:ce] is known not to be an exception
    while ce > cs and ce - cs != last:
        if not checked and _special(cp, cs, ce, sp_hash, sp_id, sp_text, sp_text_off, max_len) >= 0:
            break
        last = ce - cs
        pl = prefix_len(cp, cs, ce, T)
        if (
            pl > 0
            and ce - cs > pl
            and _special(cp, cs + pl, ce, sp_hash, sp_id, sp_text, sp_text_off, max_len) >= 0
        ):
            out_s[k] = cs
            out_e[k] = cs + pl
            k += 1
            cs += pl
            checked = False
            break
        sl = suffix_len(cp, cs + pl, ce, T, unit_text, unit_off)
        if (
            sl > 0
            and ce - cs > sl
            and _special(cp, cs, ce - sl, sp_hash, sp_id, sp_text, sp_text_off, max_len) >= 0
        ):
            suf_s[ns] = ce - sl
            suf_e[ns] = ce
            ns += 1
            ce -= sl
            checked = False
            break
        # what is left was just looked up unless both a prefix and a suffix came off
        checked = pl == 0 or sl == 0
        if pl > 0:
            out_s[k] = cs
            out_e[k] = cs + pl
            k += 1
            cs += pl
        if sl > 0:
            suf_s[ns] = ce - sl
            suf_e[ns] = ce
            ns += 1
            ce -= sl
    if ce > cs:
        sid = -1 if checked else _special(cp, cs, ce, sp_hash, sp_id, sp_text, sp_text_off, max_len)
        if sid >= 0:
            k = _emit_special(sid, cs, tok_len, tok_off, out_s, out_e, k)
        elif url_match(cp, cs, ce, T):
            out_s[k] = cs
            out_e[k] = ce
            k += 1
        else:
            k = split_infixes(cp, cs, ce, T, out_s, out_e, k)
    for q in range(ns - 1, -1, -1):
        out_s[k] = suf_s[q]
        out_e[k] = suf_e[q]
        k += 1
    return k


@njit(cache=True, nogil=True, inline="always")
def _apply_matcher(cp, k0, k1, tb, ws) -> int:
    """spaCy's ``_apply_special_cases`` within one chunk: token runs spelling an exception in
    its affix-split form (":" ")" for ":)") are replaced by the exception's tokens.
    Candidates go longest first, then leftmost; each claims its tokens even when rejected."""
    sp_hash, sp_id, sp_text, sp_text_off, tok_len, tok_off, max_len = tb[1:8]
    pat_len, pat_off = tb[10], tb[11]
    out_s, out_e, _, _, claimed, accept, tmp_s, tmp_e = ws
    found = False
    for t in range(k0, k1):
        claimed[t] = False
        accept[t] = 0
    # Exceptions whose pattern is one token (', ’, —) never change anything: start at two.
    for span in range(min(k1 - k0, max_len), 1, -1):
        for a in range(k0, k1 - span + 1):
            z = a + span - 1
            if out_e[z] - out_s[a] > max_len:
                continue
            sid = _special(cp, out_s[a], out_e[z], sp_hash, sp_id, sp_text, sp_text_off, max_len)
            if sid < 0 or pat_off[sid + 1] - pat_off[sid] != span:
                continue
            same = True
            for q in range(span):
                if pat_len[pat_off[sid] + q] != out_e[a + q] - out_s[a + q]:
                    same = False
                    break
            if not same:
                continue
            if not claimed[a] and not claimed[z]:
                accept[a] = span
                found = True
            for q in range(a, z + 1):
                claimed[q] = True
    if not found:
        return k1
    k = 0
    t = k0
    while t < k1:
        span = accept[t]
        if span == 0:
            tmp_s[k] = out_s[t]
            tmp_e[k] = out_e[t]
            k += 1
            t += 1
            continue
        sid = _special(cp, out_s[t], out_e[t + span - 1], sp_hash, sp_id, sp_text, sp_text_off, max_len)
        k = _emit_special(sid, out_s[t], tok_len, tok_off, tmp_s, tmp_e, k)
        t += span
    for q in range(k):
        out_s[k0 + q] = tmp_s[q]
        out_e[k0 + q] = tmp_e[q]
    return k0 + k


@njit(cache=True, nogil=True)
def word_scratch(n):
    """Scratch for :func:`tokenize` over up to ``n`` code points: ``(start, end, suffix start,
    suffix end, claimed, accepted, tmp start, tmp end)``; tokens land in the first two."""
    m = n + 1
    return (
        np.empty(m, dtype=np.int32),
        np.empty(m, dtype=np.int32),
        np.empty(m, dtype=np.int32),
        np.empty(m, dtype=np.int32),
        np.zeros(m, dtype=np.bool_),
        np.zeros(m, dtype=np.int32),
        np.empty(m, dtype=np.int32),
        np.empty(m, dtype=np.int32),
    )


@njit(cache=True, nogil=True)
def tokenize(cp, s, e, tb, ws, keep_ws) -> int:
    """spaCy's tokens of ``cp[s:e]`` as ``[ws[0][t], ws[1][t])`` spans; returns their count.

    Whitespace tokens are kept only with ``keep_ws`` (a run's leading " " belongs to the
    previous token unless the run opens the text). Chunks of plain characters (letters,
    digits not followed by a unit, most symbols) skip the affix machinery: they are one token
    unless they are an exception.
    """
    T, sp_hash, sp_id, sp_text, sp_text_off, tok_len, tok_off, max_len = tb[:8]
    out_s, out_e = ws[0], ws[1]
    k = 0
    i = s
    while i < e:
        c = cp[i]
        if T[c] & _WS:
            j = i + 1
            while j < e and (T[cp[j]] & _WS):
                j += 1
            if keep_ws:
                a = i + 1 if i > s and c == 32 else i
                if a < j:
                    out_s[k] = a
                    out_e[k] = j
                    k += 1
            i = j
            continue
        plain = True
        j = i
        while j < e:
            f = T[cp[j]]
            if f & _WS:
                break
            if not (f & _PLAIN):
                plain = False
            j += 1
        if plain and not (48 <= cp[j - 1] <= 57):
            # a digit matters only before a unit ("5km"), so only if the chunk ends otherwise
            for q in range(i, j - 1):
                if 48 <= cp[q] <= 57:
                    plain = False
                    break
        if plain:
            sid = _special(cp, i, j, sp_hash, sp_id, sp_text, sp_text_off, max_len)
            if sid >= 0:
                k = _emit_special(sid, i, tok_len, tok_off, out_s, out_e, k)
            else:
                out_s[k] = i
                out_e[k] = j
                k += 1
        else:
            k0 = k
            k = _tokenize_chunk(cp, i, j, tb, ws, k)
            if k - k0 >= 2:
                k = _apply_matcher(cp, k0, k, tb, ws)
        i = j
    return k


@njit(cache=True, nogil=True)
def tokenize_words(cp, s, e, tb, ws) -> int:
    """datatrove's ``split_into_words`` of ``cp[s:e]``: spaCy tokens without whitespace ones."""
    return tokenize(cp, s, e, tb, ws, False)


@njit(cache=True, nogil=True)
def count_sentences(cp, s, e, tb, ws) -> int:
    """Sentences spaCy's sentencizer finds in ``cp[s:e]`` (0 for an empty span).

    A sentence starts at the first token after a sentence-final character token that is
    neither punctuation nor another final character; whitespace tokens count as such.
    """
    T = tb[0]
    if e <= s:
        return 0
    # Fast path: when every sentence-final character sits in the trailing run of punctuation,
    # whatever tokens follow a final one are punctuation too, so there is one sentence.
    z = e
    while z > s and (T[cp[z - 1]] & _U_PUNCT):
        z -= 1
    inner_final = False
    for q in range(s, z):
        if T[cp[q]] & _SENT:
            inner_final = True
            break
    if not inner_final:
        return 1
    k = tokenize(cp, s, e, tb, ws, True)
    out_s, out_e = ws[0], ws[1]
    n_sent = 1 if k > 0 else 0
    seen_period = False
    for t in range(k):
        a = out_s[t]
        b = out_e[t]
        final = b - a == 1 and (T[cp[a]] & _SENT) != 0
        punct = True
        for q in range(a, b):
            if not (T[cp[q]] & _U_PUNCT):
                punct = False
                break
        if seen_period and not punct and not final:
            n_sent += 1
            seen_period = False
        elif final:
            seen_period = True
    return n_sent


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.int32).copy()


def split_words(text: str) -> list[str]:
    """Python convenience (tests, debugging): the words datatrove's ``split_into_words`` gives."""
    cp = _code_points(text)
    ws = word_scratch(len(cp))
    k = tokenize(cp, 0, len(cp), tables(), ws, False)
    return [text[a:b] for a, b in zip(ws[0][:k], ws[1][:k])]


def sentence_count(text: str) -> int:
    """Python convenience (tests): sentences spaCy's sentencizer finds in ``text``."""
    cp = _code_points(text)
    return int(count_sentences(cp, 0, len(cp), tables(), word_scratch(len(cp))))
