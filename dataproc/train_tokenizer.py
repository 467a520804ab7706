"""Train a byte-level BPE tokenizer (HF ``tokenizers``) on shards and save it as ``tokenizer.json``.

Byte-level means every string round-trips: ``decode(encode(text)) == text`` for any text, no
unknown token, no normalisation. Training streams Arrow batches (memory bounded by the batch
size, not the corpus); ``max_docs``/``max_bytes`` cap the sample for very large inputs.

Two options make the tokenizer fit chat post-training and arithmetic-like tasks:

- ``chat_specials`` adds the chat template's role markers (``CHAT_SPECIALS``, the defaults of
  ``engine.posttrain.config.TemplateConfig``) as special tokens: one id each, matched in text before
  pre-tokenization, so never merged with neighbouring text;
- ``split_digits`` splits every digit into its own pre-token before the byte-level step (as the Llama
  and Qwen tokenizers do), so no merge ever spans two digits: "2024" is four tokens, each a digit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from tqdm import tqdm

from dataproc.errors import ConfigError
from dataproc.shards import read_batches, resolve_inputs

DEFAULT_SPECIALS = ("<|endoftext|>", "<|pad|>")
CHAT_SPECIALS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")


def _texts(files: list[str], text_column: str, max_docs: int | None, max_bytes: int | None,
           bar: tqdm, seen: list[int]) -> Iterator[list[str]]:
    docs = nbytes = 0
    for path in files:
        for batch in read_batches(path, batch_size=2000, text_column=text_column, columns=[text_column]):
            texts = batch.good.column("text").to_pylist()
            if max_docs is not None or max_bytes is not None:
                keep = []
                for t in texts:
                    if (max_docs is not None and docs >= max_docs) or (max_bytes is not None
                                                                        and nbytes >= max_bytes):
                        break
                    keep.append(t)
                    docs += 1
                    nbytes += len(t.encode()) if max_bytes is not None else 0
                texts = keep
            if not texts:
                return
            bar.update(len(texts))
            seen[0] += len(texts)
            yield texts


def train_tokenizer(inputs: str | Sequence[str], output: str, vocab_size: int = 32_000, min_frequency: int = 2,
                    special_tokens: Sequence[str] = DEFAULT_SPECIALS, text_column: str = "text",
                    max_docs: int | None = None, max_bytes: int | None = None,
                    progress: bool = True, chat_specials: bool = False,
                    split_digits: bool = False) -> dict[str, Any]:
    """Train byte-level BPE with ``vocab_size`` entries (specials included); write ``output``.

    ``output`` is a ``.json`` file, or a directory that receives ``tokenizer.json``. ``chat_specials``
    appends ``CHAT_SPECIALS`` to ``special_tokens`` (those not already there); ``split_digits`` gives
    every digit its own token (see the module docstring).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    special_tokens = list(dict.fromkeys([*special_tokens, *(CHAT_SPECIALS if chat_specials else ())]))

    if vocab_size < 256 + len(special_tokens) + 1:
        raise ConfigError("--vocab-size", f"{vocab_size} is below the 256 byte symbols + "
                          f"{len(special_tokens)} special tokens + 1 merge")
    if vocab_size > 2**31 - 1:
        raise ConfigError("--vocab-size", f"{vocab_size} does not fit int32 token ids")
    files = resolve_inputs(inputs)
    path = output if output.endswith(".json") else os.path.join(output, "tokenizer.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if split_digits else byte_level)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(special_tokens), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t0 = time.perf_counter()
    seen = [0]
    with tqdm(desc="train-tokenizer: reading", unit=" docs", disable=not progress, leave=False) as bar:
        tok.train_from_iterator(_texts(files, text_column, max_docs, max_bytes, bar, seen), trainer=trainer)
    docs = seen[0]
    if docs == 0:
        raise ConfigError("--input", f"no documents to train on in {', '.join(files)}")
    tmp = f"{path}.tmp"
    tok.save(tmp)
    os.replace(tmp, path)
    return {"tokenizer": path, "vocab_size": tok.get_vocab_size(with_added_tokens=True), "docs": docs,
            "special_tokens": special_tokens, "split_digits": split_digits,
            "time_s": round(time.perf_counter() - t0, 3)}
