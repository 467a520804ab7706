"""Chat template, answer-only masks, packing with per-document attention, pairs from rankings, bad rows."""

from __future__ import annotations

import json

import pytest
import torch

from engine.posttrain.batches import block_causal_mask, collate_pairs, collate_sft, pack
from engine.posttrain.config import DatasetConfig, TemplateConfig
from engine.posttrain.records import DataError, RowReader
from engine.posttrain.template import ChatTemplate, TemplateError
from tests.conftest import DATA


def _reader(tok, seq=64, **kw):
    return RowReader(ChatTemplate(tok, TemplateConfig()), DatasetConfig(**kw), seq)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_template_special_tokens_and_answer_mask(char_tok, tmp_path):
    t = ChatTemplate(char_tok, TemplateConfig())
    prompt = t.prompt([{"role": "user", "content": "31"}])
    assert prompt == [t.role_ids["user"], *t.text("31"), t.end_id, t.role_ids["assistant"]]
    ex = _reader(char_tok).load(_jsonl(tmp_path / "a.jsonl", [{"instruction": "31", "input": "", "output": "13"}]),
                                "sft").items[0]
    assert ex.ids == prompt + t.text("13") + [t.end_id]
    assert ex.mask == [0] * len(prompt) + [1, 1, 1]  # the answer and its end token only
    with pytest.raises(TemplateError, match=r"template\.user"):
        ChatTemplate(char_tok, TemplateConfig(user="<|nope|>"))


def test_chat_format_masks_every_assistant_turn(char_tok, tmp_path):
    msgs = [{"role": "user", "content": "1"}, {"role": "assistant", "content": "2"},
            {"role": "user", "content": "3"}, {"role": "assistant", "content": "4"}]
    ex = _reader(char_tok).load(_jsonl(tmp_path / "c.jsonl", [{"messages": msgs}]), "sft").items[0]
    t = ChatTemplate(char_tok, TemplateConfig())
    answered = [i for i, m in zip(ex.ids, ex.mask, strict=True) if m]
    assert answered == [*t.text("2"), t.end_id, *t.text("4"), t.end_id]


def test_packing_labels_and_block_mask(char_tok, tmp_path):
    rows = [{"instruction": p, "input": "", "output": "".join(sorted(p))} for p in ["31", "987", "5"]]
    items = _reader(char_tok).load(_jsonl(tmp_path / "p.jsonl", rows), "sft").items
    packed = pack(items, 32)
    assert len(packed) == 1 and len(packed[0]) == 3
    b = collate_sft(packed, 32, 2, with_mask=True)
    lens = [len(e.ids) for e in items]
    # labels: the next token of the same document; the loss never crosses a document boundary
    at = 0
    for e, n in zip(items, lens, strict=True):
        assert b["tokens"][0, at:at + n].tolist() == e.ids
        assert b["labels"][0, at:at + n - 1].tolist() == e.ids[1:]
        assert b["loss_mask"][0, at:at + n - 1].tolist() == e.mask[1:]
        assert b["loss_mask"][0, at + n - 1] == 0
        assert b["position_ids"][0, at:at + n].tolist() == list(range(n))
        at += n
    mask = b["attention_mask"][0, 0]
    start2 = lens[0]
    assert not mask[start2, start2] and mask[start2, start2 - 1]  # doc 2 cannot see doc 1
    assert not mask[start2 + 1, start2] and mask[start2, start2 + 1]  # causal inside doc 2
    assert b["loss_mask"][1].sum() == 0  # the padding row


def test_block_mask_reference():
    doc = torch.tensor([[0, 0, 1, 1, 1, -1]])
    want = torch.zeros(6, 6, dtype=torch.bool)
    for i in range(6):
        for j in range(6):
            want[i, j] = not (j <= i and doc[0, i] == doc[0, j])
    assert torch.equal(block_causal_mask(doc)[0, 0], want)


def test_ranked_answers_give_all_pairs_and_judge_orders(char_tok, tmp_path):
    r = _reader(char_tok)
    pairs = r.load(_jsonl(tmp_path / "r.jsonl", [{"prompt": "321", "answers": ["123", "132", "321", "312"]}]),
                   "pairs").items
    assert len(pairs) == 6  # K(K-1)/2
    t = ChatTemplate(char_tok, TemplateConfig())
    assert [(t.decode(p.chosen), t.decode(p.rejected)) for p in pairs][:3] == [("123", "132"), ("123", "321"),
                                                                             ("123", "312")]
    judged = _reader(char_tok, judge="examples.sorting.task:score").load(
        _jsonl(tmp_path / "j.jsonl", [{"prompt": "321", "answers": ["321", "123", "120"]}]), "pairs").items
    # scores: 123 → 1, 120 → 2/3, 321 → 1/3: every pair has the better answer first
    assert [(t.decode(p.chosen), t.decode(p.rejected)) for p in judged] == [("123", "120"), ("123", "321"),
                                                                          ("120", "321")]
    b = collate_pairs(pairs[:2], 16, 4)
    assert b["tokens"].shape == (4, 16) and b["pair_weight"].tolist() == [1.0, 1.0]
    assert b["last"][0] == len(pairs[0].prompt) + len(pairs[0].chosen) - 1
    assert b["loss_mask"][0].sum() == len(pairs[0].chosen)


@pytest.mark.parametrize("row, match", [
    ({"instruction": "12", "input": ""}, "missing field 'output'"),
    ({"instruction": "12", "input": "", "output": "  "}, "empty answer"),
    ({"instruction": "1" * 80, "input": "", "output": "1"}, "longer than the context"),
])
def test_bad_sft_rows_name_file_and_row(char_tok, tmp_path, row, match):
    good = {"instruction": "21", "input": "", "output": "12"}
    path = _jsonl(tmp_path / "bad.jsonl", [good, good, row])
    with pytest.raises(DataError, match=rf"bad.jsonl row 2: .*{match}"):
        _reader(char_tok).load(path, "sft")
    loaded = _reader(char_tok, on_bad_row="skip").load(path, "sft")
    assert len(loaded.items) == 2 and sum(loaded.skipped.values()) == 1


def test_ranking_with_fewer_than_two_answers(char_tok, tmp_path):
    path = _jsonl(tmp_path / "k1.jsonl", [{"prompt": "21", "answers": ["12", "21"]}, {"prompt": "3", "answers": ["3"]}])
    with pytest.raises(DataError, match=r"k1.jsonl row 1: 1 answer\(s\): a ranking needs K >= 2"):
        _reader(char_tok).load(path, "pairs")
    assert len(_reader(char_tok, on_bad_row="skip").load(path, "pairs").items) == 1


def test_real_alpaca_and_preference_files(bpe_tok):
    sft = DATA / "sft_alpaca_demo.parquet"
    pref = DATA / "pref_dpo_demo.parquet"
    if not pref.exists():
        pytest.skip(f"needs {pref}")
    loaded = _reader(bpe_tok, seq=256, on_bad_row="skip").load(sft, "sft")
    assert len(loaded.items) + sum(loaded.skipped.values()) == 999
    assert all(0 < sum(e.mask) < len(e.ids) for e in loaded.items)
    with pytest.raises(DataError, match=r"sft_alpaca_demo.parquet row \d+: .*longer than the context"):
        _reader(bpe_tok, seq=48).load(sft, "sft")
    pairs = _reader(bpe_tok, seq=512, on_bad_row="skip").load(pref, "pairs")
    assert len(pairs.items) + sum(pairs.skipped.values()) == 300
    assert all(p.chosen != p.rejected for p in pairs.items)
