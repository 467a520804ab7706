"""Unit tests of the Gopher / C4 / FineWeb batch filters and the spaCy-compatible tokenizer.

Hand-made edge cases (empty, whitespace-only, non-ASCII, CJK, a very long line, exact
repeats, ...) are checked against datatrove's own filter classes, plus fixed expectations
that need no peer, the ``FilterOutput`` contract, Arrow column variants and parameters.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from dataproc.filters import C4Quality, FineWebQuality, GopherQuality, GopherRepetition
from dataproc.filters.base import BatchFilter
from dataproc.text.words import sentence_count, split_words

PARA = (
    "The quick brown fox jumps over the lazy dog, and that is the end of the story for now. "
    "It was a good day to have a walk with the dog in the park of the town."
)
LONG_WORD = "x" * 1200
DOCS = {
    "empty": "",
    "whitespace": "   \n\t \n\n  \r\n ",
    "english": "\n\n".join(
        f"Paragraph {i}: {PARA} Number {i} has its own words, {i * 7} of them." for i in range(8)
    ),
    "non_ascii": "Ça coûte 5€ — naïve café, Straße und Übermaß. Ελληνικά κείμενα εδώ. Русский текст тоже есть.\n"
    * 3,
    "cjk": "内核文档的中文翻译。这是一个测试段落，包含中文标点符号！\n日本語の文書です。カタカナも。\n한국어 문서입니다. 테스트.\n"
    * 4,
    "long_line": " ".join(f"word{i % 97} and the other" for i in range(3000)) + ".",
    "long_word": f"This line has a {LONG_WORD} giant word in it.\n" + (PARA + "\n") * 6,
    "exact_repeats": "\n\n".join([PARA] * 6),
    "repeated_lines": "\n".join(["Same line here, with the words of it."] * 10 + [PARA]),
    "repeated_ngrams": " ".join(["the cat sat on the mat with the hat"] * 40),
    "bullets": "\n".join(f"- item {i} of the list with the words" for i in range(60)),
    "ellipsis": "\n".join(f"and then the story went on and on {i}..." for i in range(30)),
    "hashes": " ".join(f"#tag{i} the and" for i in range(100)),
    "citations": "\n".join(f"This is the sentence {i} of the text.[{i}]" for i in range(6))
    + "\nAn edit link sits here.[edit]\nA claim without a source.[citation needed]\nEmpty cite.[]",
    "lorem": PARA + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.\n" + PARA,
    "javascript": "\n".join([PARA, "Please enable JavaScript to view the site and the page."] * 4),
    "policy": "\n".join([PARA, "By using this site you agree to our terms of use and the rules."] * 4),
    "curly": PARA + "\nThe dict is {'a': 1} and that is the end of it.\n" + PARA,
    "code": "def foo():\n    return bar(x) + baz[1]  # comment\n\n" * 5 + PARA,
    "contractions": "I don't think it's what we'd've wanted, y'all. Can't stop, won't stop! " * 12,
    "urls": "See https://docs.djangoproject.com/en/5.0/ref/models-fields/ and www.example.com/a-b for the docs. "
    * 12,
    "no_newline_punct": "short\nlines\nonly\nhere\n" * 10,
    "mixed_breaks": "Line one ends here.\rLine two\x0bthree\x0cfour\u2028five\u2029six.\r\n" * 8,
}


def _batch(texts: list[str | None], type_: pa.DataType | None = None) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(texts, type=type_ or pa.string())], names=["text"])


ALL = [GopherRepetition, GopherQuality, C4Quality, FineWebQuality]


@pytest.fixture(scope="module")
def datatrove_filters():
    pytest.importorskip("spacy")
    filters = pytest.importorskip("datatrove.pipeline.filters")
    return {
        GopherRepetition: filters.GopherRepetitionFilter,
        GopherQuality: filters.GopherQualityFilter,
        C4Quality: filters.C4QualityFilter,
        FineWebQuality: filters.FineWebQualityFilter,
    }


@pytest.mark.oracle
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_edge_cases_agree_with_datatrove(cls, datatrove_filters):
    from datatrove.data import Document

    peer = datatrove_filters[cls]()
    names = list(DOCS)
    out = cls()(_batch([DOCS[k] for k in names]))
    got = out.reason_names()
    for i, name in enumerate(names):
        res = peer.filter(Document(text=DOCS[name], id=name))
        keep, reason = res if isinstance(res, tuple) else (res, None)
        assert (bool(out.keep[i]), got[i]) == (bool(keep), None if keep else reason), name


def test_fixed_expectations():
    batch = _batch(
        [DOCS[k] for k in ("empty", "exact_repeats", "repeated_lines", "bullets", "curly", "lorem")]
    )
    assert list(GopherRepetition()(batch).reason_names()[:3]) == ["empty", "dup_para_frac", "dup_line_frac"]
    assert GopherQuality()(batch).reason_names()[0] == "gopher_short_doc"
    assert FineWebQuality()(batch).reason_names()[0] == "empty"
    c4 = C4Quality()(batch).reason_names()
    assert list(c4[4:]) == ["curly_bracket", "lorem_ipsum"]
    assert GopherQuality(max_bullet_lines_ratio=0.5, min_doc_words=10)(batch).reason_names()[3] == (
        "gopher_too_many_bullets"
    )


def test_whitespace_only_and_empty():
    batch = _batch(["", " \n\t\u3000 \n"])
    # whitespace holds no repetition, so datatrove's Gopher repetition keeps it; the rest drop
    assert list(GopherRepetition()(batch).reason_names()) == ["empty", None]
    assert list(GopherQuality()(batch).reason_names()) == ["gopher_short_doc"] * 2
    assert list(C4Quality()(batch).reason_names()) == ["too_few_sentences"] * 2
    assert list(FineWebQuality()(batch).reason_names()) == ["empty"] * 2


CLEAN = """The museum opened its doors in the spring of that year, and visitors came from all over the region.
Its first exhibition covered the history of the river trade and the people who built the harbour.
Many of the objects had been donated by families whose grandparents worked on the boats.
A small team of volunteers spent two winters cleaning, labelling and photographing each item.
Critics praised the clear writing on the panels, which avoided jargon and told personal stories.
Schools now visit every week, and the education room is booked months in advance.
The city council has promised to fund a second wing that will focus on modern shipping.
Until then, the temporary gallery will host travelling shows from other maritime collections."""


def test_clean_english_passes_all_filters():
    for f in ALL:
        assert f()(_batch([CLEAN])).keep[0], f.name


def test_output_contract():
    texts = [DOCS[k] for k in DOCS]
    for cls in ALL:
        f = cls()
        assert isinstance(f, BatchFilter)
        out = f(_batch(texts))
        assert out.keep.shape == (len(texts),) and out.reason.dtype == np.int16
        assert np.all((out.reason == -1) == out.keep)
        assert out.reason.max() < len(out.reasons)
    assert {c.name for c in ALL} == {"gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"}


def test_column_variants_give_the_same_decisions():
    texts = [DOCS[k] for k in DOCS]
    for cls in ALL:
        f = cls()
        ref = f(_batch(texts)).reason
        assert np.array_equal(f(_batch(texts, pa.large_string())).reason, ref)
        sliced = _batch(["pad"] * 3 + texts).slice(3)
        assert np.array_equal(f(sliced).reason, ref)
        with_null = f(_batch([None, *texts])).reason
        assert with_null[0] == f(_batch([""])).reason[0] and np.array_equal(with_null[1:], ref)


NON_DEFAULT = [
    (GopherRepetition, {"dup_para_frac": None, "dup_para_char_frac": 0, "dup_line_frac": None}),
    (GopherRepetition, {"top_n_grams": ((2, 0.05),), "dup_n_grams": ((3, 0.05), (4, 0.2))}),
    (GopherQuality, {"stop_words": ["xyzzy", "the"], "min_doc_words": 1, "min_stop_words": 2}),
    (GopherQuality, {"max_bullet_lines_ratio": 0.5, "min_doc_words": 10, "max_avg_word_length": None}),
    (C4Quality, {"min_num_sentences": -1, "filter_curly_bracket": False, "min_words_per_line": 1}),
    (C4Quality, {"remove_citations": False, "filter_no_terminal_punct": False, "max_word_length": 20}),
    (FineWebQuality, {"stop_chars": ("!", "."), "line_punct_exclude_zero": True, "short_line_length": 10}),
    (FineWebQuality, {"char_duplicates_ratio": 0.5, "new_line_ratio": 0.05}),
]


@pytest.mark.oracle
@pytest.mark.parametrize(("cls", "params"), NON_DEFAULT)
def test_non_default_parameters_agree_with_datatrove(cls, params, datatrove_filters):
    from datatrove.data import Document

    peer = datatrove_filters[cls](**params)
    out = cls(**params)(_batch(list(DOCS.values())))
    for i, (name, text) in enumerate(DOCS.items()):
        res = peer.filter(Document(text=text, id=name))
        keep, reason = res if isinstance(res, tuple) else (res, None)
        assert (bool(out.keep[i]), out.reason_names()[i]) == (bool(keep), None if keep else reason), name


def test_disabled_checks_move_to_the_next_reason():
    batch = _batch([DOCS["exact_repeats"], DOCS["no_newline_punct"]])
    assert GopherRepetition()(batch).reason_names()[0] == "dup_para_frac"
    relaxed = GopherRepetition(dup_para_frac=None, dup_para_char_frac=0, dup_line_frac=None)
    assert relaxed(batch).reason_names()[0] == "dup_line_char_frac"
    assert C4Quality()(batch).reason_names()[1] == "too_few_sentences"
    assert C4Quality(min_num_sentences=-1)(batch).keep[1]


def test_unsupported_parameters_are_refused():
    with pytest.raises(ValueError, match="split_paragraph"):
        C4Quality(split_paragraph=False)
    with pytest.raises(ValueError):
        FineWebQuality(stop_chars=("..",))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("don't stop", ["do", "n't", "stop"]),
        ("e.g. this (e.g.,", ["e.g.", "this", "(", "e.g.", ","]),
        ("foo.Bar os.path.join()", ["foo", ".", "Bar", "os.path.join", "(", ")"]),
        ("https://docs.djangoproject.com/en/dev/ x", ["https://docs.djangoproject.com/en/dev/", "x"]),
        ("64MB 5km 1st 10:30", ["64", "MB", "5", "km", "1st", "10:30"]),
        ("a--b a-b hello... ...hi", ["a", "--", "b", "a", "-", "b", "hello", "...", "...", "hi"]),
        ("def foo(): :)", ["def", "foo", "(", "):", ":)"]),
        ("Ελληνικά 中文，标点。", ["Ελληνικά", "中文，标点", "。"]),  # "，" is no infix
        ("   \n\t ", []),
    ],
)
def test_split_words_known_cases(text, words):
    assert split_words(text) == words


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("Hello world. This is it.", 2),
        ("See e.g. the docs, i.e. these.", 1),
        ("Version 2.0 is out! Get it now? Yes.", 3),
        ("Wait... what?", 1),
        ("One sentence only (really).", 1),
        ("A.  . B", 2),
        ("", 0),
    ],
)
def test_sentence_count_known_cases(text, n):
    assert sentence_count(text) == n


@pytest.mark.oracle
def test_tokenizer_cases_agree_with_spacy():
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    for text in [*DOCS.values(), "Mr.Smith", "U.S.A. and the U.K.", "£5 US$10 10US$ +3 -3 3+4 ‘quote’ «x»"]:
        doc = nlp(text)
        assert split_words(text) == [t.text for t in doc if t.text.strip()], text[:60]
        for line in text.splitlines():
            if line.strip():
                assert sentence_count(line.strip()) == len(list(nlp(line.strip()).sents)), line
