"""Post-training fixtures: a character-level tokenizer with the chat template's special tokens."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def char_tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.sorting.task import char_tokenizer

    return char_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.fixture(scope="session")
def bpe_tok(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small byte-level BPE trained on the real SFT demo rows, with the template's specials added."""
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from tests.conftest import DATA

    path = DATA / "sft_alpaca_demo.parquet"
    if not path.exists():
        pytest.skip(f"needs {path}")
    rows = pq.read_table(path).to_pylist()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((r["instruction"] + " " + r["output"] for r in rows), trainer)
    out = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(out))
    return out
