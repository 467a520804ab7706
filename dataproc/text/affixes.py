"""spaCy's English prefix, suffix, infix and URL rules as compiled matchers over code points.

Each function answers what spaCy's compiled regex would (``prefix_search``, ``suffix_search``,
``infix_finditer``, ``url_match``) for ``cp[s:e]``, the slice spaCy would pass it, using the
class bits of :func:`dataproc.text.spacy_en.char_table` instead of regular expressions.
Lookbehinds never see before ``s`` and lookaheads never past ``e``, as with spaCy's slices.
:mod:`dataproc.text.words` drives them through spaCy's tokenisation loop.
"""

from __future__ import annotations

from numba import njit

from dataproc.text import spacy_en as rules

_SA = rules.SA
_SL = rules.SL
_SU = rules.SU
_QUOTE = rules.QUOTE
_PREFIX = rules.PREFIX
_SUFFIX = rules.SUFFIX
_ICON = rules.ICON
_DOT_LB = rules.DOT_LB
_DECIMAL = rules.DECIMAL
_HOST = rules.HOST
_WORD = rules.WORD
_CURRENCY = rules.CURRENCY
_HYPHEN = rules.HYPHEN
_INFIX = rules.INFIX


@njit(cache=True, nogil=True, inline="always")
def is_digit(c) -> bool:
    return 48 <= c <= 57


@njit(cache=True, nogil=True, inline="always")
def prefix_len(cp, s, e, T) -> int:
    """Length of spaCy's prefix match at ``cp[s:e]`` (first alternative of the regex wins)."""
    c = cp[s]
    if c == 46:  # "\.\.+"
        k = s + 1
        while k < e and cp[k] == 46:
            k += 1
        return k - s if k - s >= 2 else 0
    if T[c] & _PREFIX:
        return 1
    if c == 43:  # r"\+(?![0-9])"
        return 0 if s + 1 < e and is_digit(cp[s + 1]) else 1
    if c == 85 and e - s >= 3 and cp[s + 1] == 83 and cp[s + 2] == 36:  # "US$"
        return 3
    if (c == 67 or c == 65) and e - s >= 2 and cp[s + 1] == 36:  # "C$", "A$"
        return 2
    return 0


@njit(cache=True, nogil=True)
def suffix_len(cp, s, e, T, unit_text, unit_off) -> int:
    """Length of spaCy's suffix match on ``cp[s:e]``: the leftmost start of any suffix rule.

    Lookbehinds see only ``cp[s:p]`` (spaCy searches the sliced string).
    """
    n = e - s
    if n <= 0:
        return 0
    last = cp[e - 1]
    if (T[last] & _SUFFIX) and last != 0x2026:
        return 1  # no longer rule ends in a one-character suffix other than "…"
    best = e
    k = e
    while k > s and cp[k - 1] == 46:
        k -= 1
    if e - k >= 2:  # "\.\.+"
        best = k
    if n >= 2 and best > e - 2:
        a = cp[e - 2]
        b = cp[e - 1]
        if (a == 0x2026 and b == 0x2026) or ((a == 39 or a == 0x2019) and (b == 115 or b == 83)):
            best = e - 2  # "……", "'s", "'S", "’s", "’S"
    if n >= 2 and not is_digit(cp[e - 1]):
        # units and currencies after a digit ("5km", "64MB", "10US$"): at most 5 characters
        lo = max(s, e - 6)
        has_digit = False
        for q in range(lo, e - 1):
            if is_digit(cp[q]):
                has_digit = True
        if has_digit:
            for u in range(len(unit_off) - 1):
                a = unit_off[u]
                ln = unit_off[u + 1] - a
                p = e - ln
                if p - 1 < s or p >= best or not is_digit(cp[p - 1]):
                    continue
                same = True
                for q in range(ln):
                    if unit_text[a + q] != cp[p + q]:
                        same = False
                        break
                if same:
                    best = p
    if best > e - 1:
        c = cp[e - 1]
        if T[c] & _SUFFIX:
            best = e - 1
        elif c == 43 or (T[c] & _CURRENCY):  # after a digit
            if n >= 2 and is_digit(cp[e - 2]):
                best = e - 1
        elif c == 46:
            after_lower = n >= 2 and (T[cp[e - 2]] & _DOT_LB) != 0  # lower, digit, punct...
            after_degree = n >= 3 and cp[e - 3] == 0xB0 and cp[e - 2] in (70, 102, 67, 99, 75, 107)
            after_upper2 = n >= 3 and (T[cp[e - 2]] & _SU) != 0 and (T[cp[e - 3]] & _SU) != 0
            if after_lower or after_degree or after_upper2:
                best = e - 1
    return e - best


@njit(cache=True, nogil=True)
def _remainder_ok(cp, t, e, T) -> bool:
    """``(?::\\d{2,5})?(?:[/?#]\\S*)?$`` at ``cp[t:e]`` (the URL's port and path)."""
    if t == e:
        return True
    c = cp[t]
    if c == 47 or c == 63 or c == 35:
        return True
    if c != 58:
        return False
    q = t + 1
    while q < e and (T[cp[q]] & _DECIMAL):
        q += 1
    d = q - t - 1
    return 2 <= d <= 5 and (q == e or cp[q] == 47 or cp[q] == 63 or cp[q] == 35)


@njit(cache=True, nogil=True)
def _octet(cp, q, e, lo, hi, zero_ok):
    """Parse an ASCII decimal octet at ``q``: returns (value or -1, end)."""
    v = 0
    k = q
    while k < e and is_digit(cp[k]) and k - q < 4:
        v = v * 10 + cp[k] - 48
        k += 1
    if k == q or k - q > 3 or v < lo or v > hi:
        return -1, k
    if not zero_ok and cp[q] == 48:
        return -1, k
    if zero_ok and k - q == 3 and cp[q] != 49 and cp[q] != 50:
        return -1, k  # "1?\d{1,2}|2[0-4]\d|25[0-5]": three digits start with 1 or 2
    return v, k


@njit(cache=True, nogil=True)
def _ip_host(cp, h, e, T) -> bool:
    """spaCy's public-IPv4 alternative of its URL host, followed by port/path."""
    a, q = _octet(cp, h, e, 1, 223, False)
    if a < 0 or q >= e or cp[q] != 46:
        return False
    b, q = _octet(cp, q + 1, e, 0, 255, True)
    if b < 0 or q >= e or cp[q] != 46:
        return False
    c, q = _octet(cp, q + 1, e, 0, 255, True)
    if c < 0 or q >= e or cp[q] != 46:
        return False
    d, q = _octet(cp, q + 1, e, 1, 254, False)
    if d < 0:
        return False
    if a == 10 or a == 127 or (a == 169 and b == 254) or (a == 192 and b == 168):
        return False
    if a == 172 and 16 <= b <= 31:
        return False
    return _remainder_ok(cp, q, e, T)


@njit(cache=True, nogil=True)
def _domain_host(cp, h, e, T) -> bool:
    """``(label\\.)+tld`` from ``h`` (labels of [A-Za-z0-9\\u00a1-\\uffff_-], lower-case TLD)."""
    t = h
    while t < e:
        c = cp[t]
        if (T[c] & (_HOST | _SL)) or c == 95 or c == 45 or c == 46:
            t += 1
        else:
            break
    if not _remainder_ok(cp, t, e, T):
        return False
    last_dot = -1
    for q in range(h, t):
        if cp[q] == 46:
            last_dot = q
    if last_dot < 0:
        return False
    tld = t - last_dot - 1
    if tld < 2 or tld > 63:
        return False
    for q in range(last_dot + 1, t):
        if not (T[cp[q]] & _SL):
            return False
    a = h  # labels: 1..64 characters, first and last a host letter
    for q in range(h, last_dot + 1):
        if cp[q] == 46:
            if q == a or q - a > 64:
                return False
            if not (T[cp[a]] & _HOST) or not (T[cp[q - 1]] & _HOST):
                return False
            for r in range(a, q):
                if not (T[cp[r]] & _HOST) and cp[r] != 95 and cp[r] != 45:
                    return False
            a = q + 1
    return True


@njit(cache=True, nogil=True)
def url_match(cp, s, e, T) -> bool:
    """spaCy's ``URL_MATCH`` on the whole of ``cp[s:e]`` (which holds no whitespace)."""
    has_dot = False
    for q in range(s, e):
        if cp[q] == 46:
            has_dot = True
            break
    if not has_dot:
        return False
    base2 = -1  # host start after an optional "scheme://"
    k = s
    while k < e and ((T[cp[k]] & _WORD) or cp[k] == 43 or cp[k] == 45 or cp[k] == 46):
        k += 1
    if k - s >= 2 and k + 2 < e and cp[k] == 58 and cp[k + 1] == 47 and cp[k + 2] == 47:
        base2 = k + 3
    for h in range(s, e):
        # host starts: the string start, after the scheme, or after any "user@"
        starts = h in (s, base2) or (h - 1 > s and cp[h - 1] == 64)
        if starts and (_domain_host(cp, h, e, T) or _ip_host(cp, h, e, T)):
            return True
    return False


@njit(cache=True, nogil=True, inline="always")
def infix_at(cp, pos, s, e, T) -> int:
    """End of the infix match starting at ``pos`` in ``cp[s:e]``, or -1 (alternatives in order)."""
    c = cp[pos]
    if c == 46 and pos + 1 < e and cp[pos + 1] == 46:
        k = pos + 2
        while k < e and cp[k] == 46:
            k += 1
        return k
    if c == 0x2026 or (T[c] & _ICON):
        return pos + 1
    has_prev = pos > s
    has_next = pos + 1 < e
    prev = cp[pos - 1] if has_prev else 0
    nxt = cp[pos + 1] if has_next else 0
    # (?<=[0-9])[+\-*^](?=[0-9-])
    if c in (43, 45, 42, 94) and has_prev and has_next and is_digit(prev) and (is_digit(nxt) or nxt == 45):
        return pos + 1
    if c == 46:  # (?<=[{al}{q}])\.(?=[{au}{q}])
        if has_prev and has_next and (T[prev] & (_SL | _QUOTE)) and (T[nxt] & (_SU | _QUOTE)):
            return pos + 1
        return -1
    if c == 44:  # (?<=[{a}]),(?=[{a}])
        if has_prev and has_next and (T[prev] & _SA) and (T[nxt] & _SA):
            return pos + 1
        return -1
    if not has_prev or not ((T[prev] & _SA) or is_digit(prev)):
        return -1
    if T[c] & _HYPHEN:  # (?<=[{a}0-9])(?:-|–|—|--|---|——|~)(?=[{a}])
        if has_next and (T[nxt] & _SA):
            return pos + 1
        if c == 45 and has_next and nxt == 45:
            if pos + 2 < e and (T[cp[pos + 2]] & _SA):
                return pos + 2
            if pos + 3 < e and cp[pos + 2] == 45 and (T[cp[pos + 3]] & _SA):
                return pos + 3
        if c == 0x2014 and has_next and nxt == 0x2014 and pos + 2 < e and (T[cp[pos + 2]] & _SA):
            return pos + 2
        return -1
    # (?<=[{a}0-9])[:<>=/](?=[{a}])
    if c in (58, 60, 62, 61, 47) and has_next and (T[nxt] & _SA):
        return pos + 1
    return -1


@njit(cache=True, nogil=True)
def split_infixes(cp, s, e, T, out_s, out_e, k) -> int:
    """Cut ``cp[s:e]`` at spaCy's infixes (``finditer`` order); append the pieces."""
    any_infix = False
    for q in range(s, e):
        if T[cp[q]] & _INFIX:
            any_infix = True
            break
    if not any_infix:
        out_s[k] = s
        out_e[k] = e
        return k + 1
    start = s
    pos = s
    while pos < e:
        end = infix_at(cp, pos, s, e, T) if T[cp[pos]] & _INFIX else -1
        if end < 0:
            pos += 1
            continue
        if pos != s:  # spaCy skips an infix at the very start of the string
            if pos != start:
                out_s[k] = start
                out_e[k] = pos
                k += 1
            out_s[k] = pos
            out_e[k] = end
            k += 1
            start = end
        pos = end
    if start < e:
        out_s[k] = start
        out_e[k] = e
        k += 1
    return k


@njit(cache=True, nogil=True)
def affixes_found(cp, s, e, T, unit_text, unit_off) -> bool:
    """Whether spaCy's prefix, suffix or infix search matches ``cp[s:e]`` anywhere (the test
    that puts an exception into its special-case matcher)."""
    if prefix_len(cp, s, e, T) > 0 or suffix_len(cp, s, e, T, unit_text, unit_off) > 0:
        return True
    found = False
    for pos in range(s, e):
        found = found or infix_at(cp, pos, s, e, T) >= 0
    return found
