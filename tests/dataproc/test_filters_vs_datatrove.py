"""Oracle: our quality filters and tokenizer against datatrove 0.10.1 (spaCy 3.8) on real docs.

A deterministic sample of ``docs_sections`` (every source, plus the linux-doc translations in
Chinese, Japanese, Korean and Italian) goes through datatrove's own filter classes and ours;
keep/drop decisions must agree on >= 99.5% of documents per filter. Reason agreement and
mismatch counts are printed (``pytest -s``). datatrove is run once per document for all four
filters so its spaCy tokenisation is shared through its own ``lru_cache``.
"""

from __future__ import annotations

import random
import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataproc.filters import filter_class
from dataproc.text import spacy_en
from dataproc.text.words import sentence_count, split_words

pytest.importorskip("spacy")
datatrove_filters = pytest.importorskip("datatrove.pipeline.filters")
from datatrove.data import Document  # noqa: E402
from datatrove.utils.text import split_into_sentences, split_into_words  # noqa: E402

pytestmark = pytest.mark.oracle

PER_SOURCE = 950
TRANSLATIONS = 250
MIN_AGREEMENT = 0.995


def _sample(path) -> pa.Table:
    """~5,050 documents: 950 per source plus translated linux docs (all ja/ko, some zh/it)."""
    table = pq.read_table(path, columns=["text", "source", "path"])
    sources = np.asarray(table.column("source").to_pylist(), dtype=object)
    paths = table.column("path").to_pylist()
    rng = np.random.default_rng(20240611)
    picked: set[int] = set()
    for source in sorted(set(sources)):
        rows = np.flatnonzero(sources == source)
        picked.update(rng.choice(rows, size=min(PER_SOURCE, len(rows)), replace=False).tolist())
    translated = [i for i, p in enumerate(paths) if "translations/" in p]
    cjk = [i for i in translated if "/ja_JP/" in paths[i] or "/ko_KR/" in paths[i]]
    picked.update(cjk)
    picked.update(rng.choice(translated, size=TRANSLATIONS, replace=False).tolist())
    return table.take(sorted(picked))


@pytest.fixture(scope="module")
def sample(docs_sections) -> pa.Table:
    return _sample(docs_sections)


@pytest.fixture(scope="module")
def peer(sample):
    """datatrove's (keep, reason) per filter, and its word lists, for every sampled doc."""
    filters = {
        "gopher_repetition": datatrove_filters.GopherRepetitionFilter(),
        "gopher_quality": datatrove_filters.GopherQualityFilter(),
        "fineweb_quality": datatrove_filters.FineWebQualityFilter(),
        "c4_quality": datatrove_filters.C4QualityFilter(),  # last: it rewrites doc.text
    }
    results: dict[str, list[tuple[bool, str | None]]] = {name: [] for name in filters}
    words = []
    for i, text in enumerate(sample.column("text").to_pylist()):
        words.append(split_into_words(text))
        for name, filt in filters.items():
            out = filt.filter(Document(text=text, id=str(i)))
            results[name].append(out if isinstance(out, tuple) else (bool(out), None))
    return results, words


OURS = {name: filter_class(name) for name in ("gopher_repetition", "gopher_quality", "fineweb_quality", "c4_quality")}


def test_sample_covers_all_sources_and_translations(sample):
    assert sample.num_rows >= 5000
    assert len(set(sample.column("source").to_pylist())) == 5
    paths = sample.column("path").to_pylist()
    for lang in ("zh_CN", "ja_JP", "ko_KR", "it_IT"):
        assert any(f"translations/{lang}/" in p for p in paths), lang


@pytest.mark.parametrize("name", list(OURS))
def test_decisions_agree_with_datatrove(name, sample, peer):
    results, _ = peer
    ref_keep = np.array([keep for keep, _ in results[name]])
    ref_reason = [None if keep else reason for keep, reason in results[name]]
    batch = pa.RecordBatch.from_arrays([sample.column("text").combine_chunks()], names=["text"])
    out = OURS[name]()(batch)
    agree = float(np.mean(out.keep == ref_keep))
    reasons = out.reason_names()
    reason_agree = float(np.mean([a == b for a, b in zip(reasons, ref_reason)]))
    mismatches = int(np.sum(out.keep != ref_keep))
    print(
        f"\n{name}: keep/drop agreement {agree:.4%} ({mismatches} mismatches of {len(ref_keep)}), "
        f"reason agreement {reason_agree:.4%}, datatrove drops {int((~ref_keep).sum())}"
    )
    assert agree >= MIN_AGREEMENT, f"{name}: {mismatches} decisions differ"
    # The reason must be datatrove's first failing check wherever the decisions agree.
    assert reason_agree >= MIN_AGREEMENT


def test_words_match_spacy(sample, peer):
    _, words = peer
    texts = sample.column("text").to_pylist()
    same = [split_words(t) == w for t, w in zip(texts, words)]
    print(f"\nword lists identical to spaCy's on {np.mean(same):.4%} of {len(same)} docs")
    assert np.mean(same) >= 0.995


def test_sentence_counts_match_spacy(sample):
    lines = [line.strip() for t in sample.column("text").to_pylist()[:1500] for line in t.splitlines()]
    lines = [line for line in lines if line][:5000]
    ours = [sentence_count(line) for line in lines]
    ref = [len(split_into_sentences(line)) for line in lines]
    assert np.mean(np.array(ours) == np.array(ref)) >= 0.999
    assert sum(r > 1 for r in ref) > 100  # the sample does exercise multi-sentence lines


def test_tokenizer_fuzz_against_spacy():
    """Random strings over the characters spaCy's rules care about."""
    import spacy

    nlp = spacy.blank("en")
    alphabet = list("aAzZeEgGiIsSmMtTkK059.,;:!?'\"()[]{}<>-_/=+*^%$#@&~`|\\ ") + list("…—–’“”«»°²€£·。、，")
    pieces = ["e.g.", "U.S.", "don't", "it's", ":)", "):", "http://a.com/x-y", "www.b.org", "5km", "10:30",
              "C++", "a--b", "...", "co.", "Mr.", "y'all", "i.e.", "1.2.3.4", "x@y.io", "\n", "  "]  # fmt: skip
    rng = random.Random(7)
    bad = []
    for _ in range(3000):
        parts = [
            rng.choice(pieces) if rng.random() < 0.3 else rng.choice(alphabet)
            for _ in range(rng.randint(1, 12))
        ]
        text = "".join(parts)
        ref = [t.text for t in nlp(text) if t.text.strip()]
        if split_words(text) != ref:
            bad.append((text, ref, split_words(text)))
    assert len(bad) <= 3, bad[:5]


def test_exception_table_is_spacys():
    import spacy
    from spacy.symbols import ORTH

    rules = spacy.blank("en").tokenizer.rules
    ref = {k: tuple(len(t[ORTH]) for t in v) for k, v in rules.items() if not k.isspace()}
    assert spacy_en.special_cases() == ref


def test_character_classes_are_spacys():
    from spacy.lang import char_classes as cc
    from spacy.pipeline.sentencizer import Sentencizer

    table = spacy_en.char_table()
    # the BMP, where every class but a few icons lives, code point by code point
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    cps = np.array([ord(c) for c in chars])
    for bit, body in (
        (spacy_en.SA, cc.ALPHA),
        (spacy_en.SL, cc.ALPHA_LOWER),
        (spacy_en.SU, cc.ALPHA_UPPER),
        (spacy_en.QUOTE, cc.CONCAT_QUOTES),
        (spacy_en.ICON, cc._other_symbols),
    ):
        rx = re.compile(f"[{body}]")
        ref = np.array([rx.fullmatch(c) is not None for c in chars])
        assert np.array_equal((table[cps] & bit) != 0, ref), body[:40]
    sent = {ord(c) for c in Sentencizer.default_punct_chars}
    assert set(np.flatnonzero(table & spacy_en.SENT).tolist()) == sent
    punct = np.array([unicodedata.category(c).startswith("P") for c in chars])
    assert np.array_equal((table[cps] & spacy_en.U_PUNCT) != 0, punct)
