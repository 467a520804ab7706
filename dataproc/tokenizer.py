"""Load a tokenizer from a spec string, offline: a HF ``tokenizers`` JSON file or a tiktoken ranks file.

A spec is a path:

- ``tokenizer.json`` (or a directory holding one): a HF ``tokenizers`` tokenizer, e.g. the one
  ``dataproc train-tokenizer`` writes;
- ``NAME.tiktoken``: base64 BPE ranks as tiktoken stores them (GPT-2's ship in
  ``../shared/assets/gpt2.tiktoken``). The split pattern and special tokens are those of the
  known encoding with that many ranks (GPT-2/r50k, cl100k); ``tiktoken:PATTERN:PATH`` forces one.

Every tokenizer exposes the same small surface: ``encode_batch`` (ids without special tokens,
one thread), ``decode``, ``vocab_size`` and ``eod_id`` (the end-of-document token appended to
each document). Workers rebuild it from the picklable :class:`TokenizerSpec`.
"""

from __future__ import annotations

import base64
import functools
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataproc.errors import ConfigError

# Split patterns of the public tiktoken encodings (regular expressions, not code).
TIKTOKEN_PATTERNS = {
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|"""
              r"""\s*[\r\n]|\s+(?!\S)|\s+""",
}
TIKTOKEN_SPECIALS = {
    "gpt2": ["<|endoftext|>"],
    "cl100k": ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"],
}
_PATTERN_BY_RANKS = {50256: "gpt2", 100256: "cl100k"}
# Tried in order when no EOD token is named.
EOD_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|eot_id|>", "[SEP]")


@dataclass(frozen=True)
class TokenizerSpec:
    """Where a tokenizer comes from; small and picklable, so worker processes can load it."""

    spec: str
    eod: str | None = None

    def load(self) -> Tokenizer:
        return _cached_load(self.spec, self.eod)


class Tokenizer(ABC):
    """Common surface of the supported tokenizers."""

    kind: str = ""
    vocab_size: int
    eod_id: int
    eod_token: str
    byte_level: bool = True

    @abstractmethod
    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Ids of each text, no special tokens added, one thread."""

    def encode_docs(self, texts: list[str], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Every text's ids followed by EOD, back to back as ``dtype``; and per-document lengths."""
        return flatten_with_eod(self.encode_batch(texts), self.eod_id, dtype)

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``."""

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "eod_id": self.eod_id,
                "eod_token": self.eod_token}


class HFTokenizer(Tokenizer):
    kind = "hf-tokenizers"

    def __init__(self, path: str, eod: str | None) -> None:
        from tokenizers import Tokenizer as _HF

        try:
            self.tok = _HF.from_file(path)
        except Exception as exc:
            raise ConfigError("--tokenizer", f"{path}: not a HF tokenizers JSON file ({exc})") from exc
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        self.eod_token, self.eod_id = _pick_eod(eod, self.tok.token_to_id, path)
        # Not encode_batch_fast: same ids, but measured ~1.4x slower on one thread (tokenizers 0.23).
        self._encode = self.tok.encode_batch
        self.byte_level = type(self.tok.decoder).__name__ == "ByteLevel"

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._encode(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)


class TiktokenTokenizer(Tokenizer):
    kind = "tiktoken"

    def __init__(self, path: str, pattern: str | None, eod: str | None) -> None:
        import tiktoken

        ranks = read_tiktoken_ranks(path)
        pattern = pattern or _PATTERN_BY_RANKS.get(len(ranks))
        if pattern is None:
            raise ConfigError("--tokenizer", f"{path}: {len(ranks)} ranks match no known tiktoken encoding; "
                              f"name its split pattern as tiktoken:{'|'.join(TIKTOKEN_PATTERNS)}:{path}")
        if pattern not in TIKTOKEN_PATTERNS:
            raise ConfigError("--tokenizer", f"unknown tiktoken pattern {pattern!r} "
                              f"(known: {', '.join(TIKTOKEN_PATTERNS)})")
        specials = {tok: len(ranks) + i for i, tok in enumerate(TIKTOKEN_SPECIALS[pattern])}
        self.enc = tiktoken.Encoding(name=os.path.basename(path), pat_str=TIKTOKEN_PATTERNS[pattern],
                                     mergeable_ranks=ranks, special_tokens=specials)
        self.vocab_size = self.enc.n_vocab
        self.eod_token, self.eod_id = _pick_eod(eod, specials.get, path)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.enc.encode_ordinary_batch(texts, num_threads=1)

    def encode_docs(self, texts: list[str], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        # tiktoken's numpy path never builds Python int lists (the costliest step otherwise).
        # Special-token text is encoded as ordinary text, exactly as encode_ordinary does.
        eod = np.array([self.eod_id], dtype=np.uint32)
        arrays = [self.enc.encode_to_numpy(t, disallowed_special=()) for t in texts]
        lengths = np.fromiter(map(len, arrays), dtype=np.int64, count=len(arrays)) + 1
        if not arrays:
            return np.zeros(0, dtype=dtype), lengths
        pieces = [x for a in arrays for x in (a, eod)]
        return np.concatenate(pieces).astype(dtype, copy=False), lengths

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode(ids)


def flatten_with_eod(ids: list[list[int]], eod: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """All documents' ids back to back, each followed by ``eod``; and the per-document lengths."""
    flat: list[int] = []
    for doc in ids:
        flat += doc
        flat.append(eod)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids)) + 1
    return np.array(flat, dtype=dtype), lengths


def read_tiktoken_ranks(path: str) -> dict[bytes, int]:
    """Parse a ``.tiktoken`` file (``base64-token rank`` per line) without tiktoken's downloader."""
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
            except ValueError as exc:
                raise ConfigError("--tokenizer", f"{path}, line {lineno}: not 'base64-token rank'") from exc
    return ranks


def _pick_eod(eod: str | None, lookup: Any, path: str) -> tuple[str, int]:
    for cand in (eod,) if eod else EOD_CANDIDATES:
        tid = lookup(cand)
        if tid is not None:
            return cand, int(tid)
    if eod:
        raise ConfigError("--eod", f"token {eod!r} is not in the vocabulary of {path}")
    raise ConfigError("--eod", f"{path} has none of the usual end-of-document tokens "
                      f"({', '.join(EOD_CANDIDATES)}); name one with --eod")


@functools.lru_cache(maxsize=4)
def _cached_load(spec: str, eod: str | None) -> Tokenizer:
    return load_tokenizer(spec, eod)  # one load per process, however many units it runs


def load_tokenizer(spec: str, eod: str | None = None) -> Tokenizer:
    """Build the tokenizer a spec names (see the module docstring)."""
    pattern = None
    if spec.startswith("tiktoken:"):
        _, pattern, spec = spec.split(":", 2)
    path = os.path.join(spec, "tokenizer.json") if os.path.isdir(spec) else spec
    if not os.path.isfile(path):
        raise ConfigError("--tokenizer", f"{spec}: no such file (give a tokenizer.json, a directory holding "
                          f"one, or a .tiktoken ranks file)")
    if pattern is not None or path.endswith(".tiktoken"):
        return TiktokenTokenizer(path, pattern, eod)
    return HFTokenizer(path, eod)
