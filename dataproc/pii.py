"""PII redaction over Arrow batches: emails, IPv4/IPv6 addresses and phone numbers become placeholders.

What is replaced (``kinds``, applied in this order):

* ``email``: the RFC 5322-style address datatrove's ``PIIFormatter`` matches (local part of atoms
  joined by dots, ``@``, a dotted domain or a bracketed IPv4 literal), with the same decisions.
* ``ipv4``: four dotted octets 0-255 (as ``PIIFormatter``: no word boundaries, so the longest
  valid tail of ``1234.5.6.7`` is one), replaced when ``ipaddress`` accepts it (no leading zeros)
  and, with ``public_ips_only`` (the default, as datatrove), when it is globally routable: private,
  loopback, link-local, documentation, multicast and reserved ranges are kept.
* ``ipv6`` (off by default): a run of hex digits and colons holding at least two colons and at
  least three non-empty groups (so not C++'s ``a::b``), not touching a word character or colon,
  that ``ipaddress.IPv6Address`` accepts (full and ``::``-compressed forms; forms with an embedded
  IPv4 tail are not looked for), global ones only unless ``public_ips_only`` is off.
* ``phone``: E.164, ``+`` then 8-15 digits, the first not 0, with at most one space, dot or hyphen
  between digits (``+44 20 7946 0958``, ``+14155552671``); and North-American numbers with a
  separated area code: ``(415) 555-2671``, ``(415)555-2671``, ``415-555-2671``, ``415.555.2671``,
  ``415 555 2671``, optionally after ``1`` and a separator; area code and exchange start with 2-9.
  Neither may touch a letter, digit or ``+`` (nor the E.164 form a trailing digit). Unseparated
  10-digit runs are not taken (too many are ids and timestamps).

Speed: one scan of the batch by Arrow's compiled RE2 kernel finds the documents that can hold a
match (a pattern that every text holding a match also matches); among those, one such scan per kind
picks the documents its Python pattern runs on, and that only over the runs of characters a match is
made of. Everything outside a match, and every document without one, is left byte-identical.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KINDS = ("email", "ipv4", "ipv6", "phone")
DEFAULT_KINDS = ("email", "ipv4", "phone")
PLACEHOLDERS = {"email": "<EMAIL>", "ipv4": "<IP_ADDRESS>", "ipv6": "<IP_ADDRESS>", "phone": "<PHONE_NUMBER>"}

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL = (rf"\b{_ATOM}(?:\.{_ATOM})*@(?:(?:{_LABEL}\.)+{_LABEL}"
          rf"|\[(?:{_OCTET}\.){{3}}(?:{_OCTET}|[A-Za-z0-9-]*[A-Za-z0-9]:)\])")
_IPV4 = rf"(?:{_OCTET}\.){{3}}{_OCTET}"
_IPV6 = r"(?<![\w:])[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:]*(?![\w:])"
_E164 = r"(?<![\w+])\+[1-9](?:[ .-]?[0-9]){7,14}(?![0-9])"
_NANP = r"(?<![\w+])(?:1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}(?!\w)"
_PHONE = rf"{_E164}|{_NANP}"

# RE2 patterns (Arrow's compiled kernels) that every text holding a match of a kind also matches:
# texts that match none are skipped without running a Python regular expression on them.
_PREFILTER = {"email": "@", "ipv4": r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", "ipv6": r":[0-9A-Fa-f]*:",
              "phone": r"\+[1-9]|[0-9]{3}[ .-][0-9]{4}"}
_PATTERN = {"email": _EMAIL, "ipv4": _IPV4, "ipv6": _IPV6, "phone": _PHONE}

# Windows: every match of a kind lies inside a maximal run of the characters it is made of, so the
# kind's pattern runs only over those runs (with re's pos/endpos, so lookbehinds and \b still see the
# character before; one character after is included where the pattern looks ahead).
_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~-.")
_DOMAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.[]:")
_RUNS = {"ipv4": (re.compile(r"[0-9.]{7,}"), 0), "ipv6": (re.compile(r"[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:]*"), 1),
         "phone": (re.compile(r"[0-9+(][0-9+ .()-]{7,}[0-9]"), 1)}


def _email_windows(text: str) -> list[tuple[int, int]]:
    out = []
    at = text.find("@")
    while at != -1:
        start, end = at, at + 1
        while start > 0 and text[start - 1] in _LOCAL:
            start -= 1
        while end < len(text) and text[end] in _DOMAIN:
            end += 1
        out.append((start, end))
        at = text.find("@", end)
    return out


def _windows(kind: str, text: str) -> list[tuple[int, int]]:
    """Merged ``(pos, endpos)`` ranges of ``text`` that hold every match of ``kind``."""
    if kind == "email":
        found = _email_windows(text)
    else:
        runs, after = _RUNS[kind]
        found = [(m.start(), min(len(text), m.end() + after)) for m in runs.finditer(text)]
    merged: list[tuple[int, int]] = []
    for s, e in found:
        if merged and s <= merged[-1][1]:  # touching windows are scanned as one, as the whole text would be
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _ip_ok(text: str, version: int, public_only: bool) -> bool:
    if version == 6 and sum(1 for g in text.split(":") if g) < 3:
        return False
    try:
        ip = ipaddress.IPv4Address(text) if version == 4 else ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return ip.is_global or not public_only


@dataclass
class PIIRedactor:
    """Replace the ``kinds`` of PII in a batch's text column; counts what it replaced."""

    kinds: Sequence[str] = DEFAULT_KINDS
    public_ips_only: bool = True
    placeholders: dict[str, str] = field(default_factory=dict)
    text_column: str = "text"

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"pii kinds must be a non-empty list of {', '.join(KINDS)}; got {list(self.kinds)}")
        bad = [k for k in self.placeholders if k not in KINDS]
        if bad:
            raise ValueError(f"pii placeholders: unknown kind {bad[0]!r} (known: {', '.join(KINDS)})")
        self.kinds = [k for k in KINDS if k in self.kinds]  # the fixed order: email first, as datatrove
        self._replace = {k: self.placeholders.get(k, PLACEHOLDERS[k]) for k in self.kinds}
        self._regex = {k: re.compile(_PATTERN[k]) for k in self.kinds}

    def candidates(self, texts: pa.Array, kinds: Sequence[str] | None = None) -> np.ndarray:
        """Boolean per text: could it hold a match of any of ``kinds`` (default: all the redactor's)?

        One scan of Arrow's compiled RE2 over the column; no Python per text."""
        pattern = "|".join(_PREFILTER[k] for k in (kinds or self.kinds))
        hit = pc.match_substring(texts, "@") if pattern == "@" else pc.match_substring_regex(texts, pattern)
        return pc.fill_null(hit, False).to_numpy(zero_copy_only=False)

    def redact_kind(self, kind: str, text: str, counts: dict[str, int]) -> str:
        """``text`` with every accepted match of ``kind`` replaced; ``counts[kind]`` gains the replacements."""
        regex, placeholder = self._regex[kind], self._replace[kind]
        version = {"ipv4": 4, "ipv6": 6}.get(kind)
        spans = [m.span() for s, e in _windows(kind, text) for m in regex.finditer(text, s, e)
                 if version is None or _ip_ok(m.group(0), version, self.public_ips_only)]
        if not spans:
            return text
        counts[kind] += len(spans)
        pieces, last = [], 0
        for s, e in spans:
            pieces += (text[last:s], placeholder)
            last = e
        pieces.append(text[last:])
        return "".join(pieces)

    def redact_text(self, text: str, counts: dict[str, int]) -> str:
        """``text`` with every kind replaced, kind after kind (the reference for the batch path)."""
        for kind in self.kinds:
            text = self.redact_kind(kind, text, counts)
        return text

    def __call__(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, dict[str, int]]:
        """The batch with its text column redacted, and ``{kind: replacements, "documents_changed": n}``.

        Kind after kind, each kind's own prefilter picks, among the texts as the kinds before left
        them, those its pattern runs on: the same result as :meth:`redact_text` on every text.
        """
        counts = dict.fromkeys(self.kinds, 0)
        texts = batch.column(self.text_column)
        mask = self.candidates(texts)
        if not mask.any():
            counts["documents_changed"] = 0
            return batch, counts
        sub = texts.filter(pa.array(mask))
        current = sub.to_pylist()
        original = list(current)
        for kind in self.kinds:
            edited = False
            for i in np.flatnonzero(self.candidates(sub, [kind])):
                new = self.redact_kind(kind, current[i], counts)
                edited |= new is not current[i]
                current[i] = new
            if edited:  # the next kinds look at the texts as this one left them
                sub = pa.array(current, texts.type)
        changed = sum(1 for a, b in zip(current, original, strict=True) if a is not b and a != b)
        counts["documents_changed"] = changed
        if changed:
            new_texts = pc.replace_with_mask(texts, pa.array(mask), pa.array(current, texts.type))
            batch = batch.set_column(batch.schema.get_field_index(self.text_column), self.text_column, new_texts)
        return batch, counts
