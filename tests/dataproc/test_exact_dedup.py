"""Exact-duplicate hashes: normalisation semantics, hash values, and equality classes on
real documents against a pure-Python reference."""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from dataproc.dedup.exact import SEEDS, duplicate_mask, hash_key, normalise, text_hashes

# Unicode White_Space (what the Rust regex ``\s`` behind polars matches); Python's own
# ``\s``/``str.split`` would also take U+001C..U+001F.
_WS = re.compile("[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")


def _py_normalise(text: str) -> str:
    return _WS.sub(" ", text.lower()).strip(" ")


def test_case_and_whitespace_insensitive() -> None:
    texts = ["Hello   World", "hello world", "  HELLO\tworld\n", "hello\u00a0\u3000world", "hello worlds",
             "helloworld", "ÉCOLE  Straße", "école straße"]
    h = text_hashes(texts)
    assert h.shape == (8, 2) and h.dtype == np.uint64
    assert len({tuple(r) for r in h[:4].tolist()}) == 1
    assert tuple(h[4]) != tuple(h[0]) and tuple(h[5]) != tuple(h[0])
    assert tuple(h[6]) == tuple(h[7])


def test_hash_values_are_xxh64_of_the_normalised_bytes() -> None:
    every_space = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000"
    not_spaces = "\x1c\x1f\u180e\u200b\u2060\ufeff"  # not White_Space (Python's str.split takes \x1c-\x1f)
    texts = ["  Mixed CASE\n\ntext  ", "", "x" * 100, "Ünïcödé  ТЕКСТ 中文", f"{every_space}a{every_space}b{every_space}",
             "".join(f"{c}y" for c in not_spaces), " \u00e1\u2001\u00e2 ", "\u1680", "a\u2000"]
    h = text_hashes(texts)
    for i, t in enumerate(texts):
        b = _py_normalise(t).encode()
        assert h[i].tolist() == [xxhash.xxh64_intdigest(b, seed=SEEDS[0]), xxhash.xxh64_intdigest(b, seed=SEEDS[1])]
    np.testing.assert_array_equal(hash_key(h), h[:, 0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("aB \t\n\r\x0b\x85\xa0\u2003\u3000\u200bÄ中")), max_size=30),
                min_size=1, max_size=8))
def test_hashes_match_reference_on_generated_text(texts: list[str]) -> None:
    h = text_hashes(texts)
    for i, t in enumerate(texts):
        b = _py_normalise(t).encode()
        assert h[i].tolist() == [xxhash.xxh64_intdigest(b, seed=SEEDS[0]), xxhash.xxh64_intdigest(b, seed=SEEDS[1])]


def test_input_types_agree_and_nulls_hash_like_empty() -> None:
    texts = ["A b", "c  D", "", "a B"]
    want = text_hashes(texts)
    for arr in [pa.array(texts), pa.array(texts, type=pa.large_string()), pl.Series(texts),
                pa.chunked_array([pa.array(texts[:1]), pa.array(texts[1:])])]:
        np.testing.assert_array_equal(text_hashes(arr), want)
    np.testing.assert_array_equal(text_hashes(pa.array([None, "x"]))[0], want[2])


def test_duplicate_mask_keeps_first_occurrence() -> None:
    h = text_hashes(["a", "b", "A", "c", " b ", "a"])
    np.testing.assert_array_equal(duplicate_mask(h), [False, False, True, False, True, True])


def test_partitions_match_python_reference(docs_sections) -> None:
    """Group 62,744 real docs by our 128-bit hash and by the normalised string in Python:
    identical partitions (docs_sections has 22,735 rows that duplicate an earlier row
    verbatim; normalisation can only merge more)."""
    texts = pl.read_parquet(docs_sections, columns=["text"])["text"]
    h = text_hashes(texts)
    ours: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, row in enumerate(map(tuple, h.tolist())):
        ours[row].append(i)
    theirs: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(texts.to_list()):
        theirs[_py_normalise(t)].append(i)
    assert sorted(ours.values()) == sorted(theirs.values())
    assert texts.len() - texts.n_unique() == 22_735
    assert int(duplicate_mask(h).sum()) == texts.len() - len(theirs) >= 22_735
    # The normalised strings themselves agree with the Python reference and with polars'
    # regex form of the same rule.
    head = texts.head(3000)
    ours_norm = normalise(head).to_pylist()
    assert ours_norm == [_py_normalise(t) for t in head.to_list()]
    assert ours_norm == head.str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars().to_list()


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_batches(n: int) -> None:
    assert text_hashes(["x"] * n).shape == (n, 2)
