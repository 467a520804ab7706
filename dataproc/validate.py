"""Row-level checks that decide which documents are quarantined before any filter sees them.

A quarantined document is not dropped silently: it is written to ``quarantine/`` with its raw
bytes, the reason, and its source file and row. Reasons: ``null_text``, ``empty_text``
(no bytes, or ASCII whitespace only), ``invalid_utf8`` and ``too_large``.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

QUARANTINE_REASONS = ("null_text", "empty_text", "invalid_utf8", "too_large")


@numba.njit(cache=True, nogil=True)
def _scan(data: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per document: is it valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF), is it blank."""
    n = len(offsets) - 1
    valid = np.ones(n, dtype=np.bool_)
    blank = np.zeros(n, dtype=np.bool_)
    for d in range(n):
        i, end = offsets[d], offsets[d + 1]
        # Leading ASCII whitespace only decides blankness; the rest is a UTF-8 check.
        while i < end and (data[i] == 32 or 9 <= data[i] <= 13):
            i += 1
        if i == end:
            blank[d] = True
            continue
        while i < end:
            b = data[i]
            if b < 0x80:
                i += 1
                continue
            if 0xC2 <= b <= 0xDF:
                need, lo, hi = 1, 0x80, 0xBF
            elif b == 0xE0:
                need, lo, hi = 2, 0xA0, 0xBF
            elif b == 0xED:
                need, lo, hi = 2, 0x80, 0x9F
            elif 0xE1 <= b <= 0xEF:
                need, lo, hi = 2, 0x80, 0xBF
            elif b == 0xF0:
                need, lo, hi = 3, 0x90, 0xBF
            elif 0xF1 <= b <= 0xF3:
                need, lo, hi = 3, 0x80, 0xBF
            elif b == 0xF4:
                need, lo, hi = 3, 0x80, 0x8F
            else:
                valid[d] = False
                break
            if i + need >= end:  # truncated sequence
                valid[d] = False
                break
            c = data[i + 1]
            ok = lo <= c <= hi
            for k in range(2, need + 1):
                c = data[i + k]
                ok = ok and 0x80 <= c <= 0xBF
            if not ok:
                valid[d] = False
                break
            i += need + 1
    return valid, blank


def quarantine_codes(column: pa.Array, data: np.ndarray, offsets: np.ndarray, max_bytes: int) -> np.ndarray:
    """Index into :data:`QUARANTINE_REASONS` per document, ``-1`` for a healthy one."""
    valid, blank = _scan(data, offsets)
    lengths = np.diff(offsets)
    codes = np.full(len(lengths), -1, dtype=np.int8)
    codes[lengths > max_bytes] = 3
    codes[~valid] = 2
    codes[blank] = 1
    if column.null_count:
        codes[~np.asarray(column.is_valid(), dtype=bool)] = 0
    return codes
