"""``train_tokenizer``'s chat specials and digit splitting, checked against HF ``tokenizers`` itself.

References: the tokenizer's own vocabulary and ``Tokenizer.decode`` (HF ``tokenizers``), the input
text (digits counted with ``str.isdigit``), and the chat template that post-training builds from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from dataproc.tokenizer import load_tokenizer
from dataproc.train_tokenizer import CHAT_SPECIALS, DEFAULT_SPECIALS, train_tokenizer

SAMPLES = ["Django 4.2.11 was released on 2024-03-04; ticket #35012 fixed 1234567 rows.",
           "<|user|>3142<|end|><|assistant|>1234<|end|>", "x<|end|>y 99<|endoftext|>100 ",
           "ünïcödé 漢字 ٣٤٥ ½ ² 😀", "  leading and trailing  ", "\x00\x01 control 0"]


@pytest.fixture(scope="module")
def chat_tok(tmp_path_factory, tiny_sections) -> Path:
    out = tmp_path_factory.mktemp("chat") / "tokenizer.json"
    info = train_tokenizer(str(tiny_sections), str(out), vocab_size=900, max_docs=1500, progress=False,
                           chat_specials=True, split_digits=True)
    assert info["special_tokens"] == [*DEFAULT_SPECIALS, *CHAT_SPECIALS] and info["split_digits"]
    return out


@pytest.fixture(scope="module")
def plain_tok(tmp_path_factory, tiny_sections) -> Path:
    out = tmp_path_factory.mktemp("plain") / "tokenizer.json"
    train_tokenizer(str(tiny_sections), str(out), vocab_size=900, max_docs=1500, progress=False)
    return out


def _tokens_with_digits(path: Path) -> list[str]:
    """Decoded vocabulary entries (specials excluded) that contain an ASCII digit."""
    tok = Tokenizer.from_file(str(path))
    specials = {t.content for t in tok.get_added_tokens_decoder().values()}
    pieces = [tok.decode([i]) for t, i in tok.get_vocab().items() if t not in specials]
    return [p for p in pieces if any(c in "0123456789" for c in p)]


def test_every_digit_is_its_own_token(chat_tok, plain_tok, tiny_sections):
    texts = pq.read_table(tiny_sections, columns=["text"]).column("text").to_pylist()[:1500]
    assert sum(c in "0123456789" for t in texts for c in t) > 1000  # the corpus has numbers to merge
    assert any(len(p) > 1 for p in _tokens_with_digits(plain_tok))  # without the option they merge
    assert sorted(_tokens_with_digits(chat_tok)) == list("0123456789")  # with it: the ten digits alone
    tok = Tokenizer.from_file(str(chat_tok))
    for text in [*SAMPLES, *texts[:200]]:
        enc = tok.encode(text, add_special_tokens=False)
        digit_tokens = [text[a:b] for (a, b) in enc.offsets if any(c in "0123456789" for c in text[a:b])]
        assert all(len(d) == 1 for d in digit_tokens), digit_tokens
        assert len(digit_tokens) == sum(c in "0123456789" for c in text)


def test_chat_specials_are_single_never_merged_tokens(chat_tok):
    tok = Tokenizer.from_file(str(chat_tok))
    ids = {s: tok.token_to_id(s) for s in (*DEFAULT_SPECIALS, *CHAT_SPECIALS)}
    assert list(ids.values()) == list(range(len(ids)))  # eod first (id 0), as `dataproc tokenize` expects
    added = {t["content"]: t for t in json.loads(chat_tok.read_text())["added_tokens"]}
    assert all(added[s]["special"] for s in ids)
    # no ordinary vocabulary entry holds a special's text or a piece glued to one
    ordinary = [t for t in tok.get_vocab() if t not in ids]
    assert not [t for t in ordinary if "<|" in t and "|>" in t]
    enc = tok.encode("<|user|>3142<|end|><|assistant|>1234<|end|>", add_special_tokens=False)
    assert enc.ids == [ids["<|user|>"], *[tok.token_to_id(c) for c in "3142"], ids["<|end|>"],
                       ids["<|assistant|>"], *[tok.token_to_id(c) for c in "1234"], ids["<|end|>"]]
    enc = tok.encode("see<|end|>also", add_special_tokens=False)
    assert ids["<|end|>"] in enc.ids and tok.decode(enc.ids[enc.ids.index(ids["<|end|>"]) + 1:]) == "also"


def test_chat_template_accepts_the_tokenizer(chat_tok):
    from engine.posttrain.config import TemplateConfig
    from engine.posttrain.template import ChatTemplate

    tpl = ChatTemplate(chat_tok, TemplateConfig())
    prompt = tpl.prompt([{"role": "user", "content": "3142"}])
    assert len(prompt) == 1 + 4 + 1 + 1  # <|user|> 3 1 4 2 <|end|> <|assistant|>
    assert tpl.decode(tpl.answer("1234")) == "1234"


def test_round_trip_matches_the_library_decode(chat_tok, tiny_sections):
    ref = Tokenizer.from_file(str(chat_tok))
    ours = load_tokenizer(str(chat_tok))
    assert ours.vocab_size == 900 and ours.eod_id == 0 and ours.byte_level
    texts = [*SAMPLES, *pq.read_table(tiny_sections, columns=["text"]).column("text").to_pylist()[1500:1700]]
    for text, ids in zip(texts, ours.encode_batch(texts), strict=True):
        assert ids == ref.encode(text, add_special_tokens=False).ids
        assert ours.decode(ids) == ref.decode(ids, skip_special_tokens=False) == text


def test_defaults_unchanged(plain_tok):
    spec = json.loads(plain_tok.read_text())
    assert spec["pre_tokenizer"]["type"] == "ByteLevel"
    assert [t["content"] for t in spec["added_tokens"]] == list(DEFAULT_SPECIALS)
