"""Tasks whose answers a program can check: sort ("3142" → "1234", the default) or reverse ("2413") digits.

Used by the end-to-end post-training check. ``score`` (the checker, also a ``dataset.judge``) gives
partial credit: the share of positions holding the right digit (a wrong length costs the missing
positions). ``char_tokenizer`` writes a character-level HF tokenizer with the chat template's special
tokens, so a tiny model learns the task in minutes on CPU.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHARS = list("0123456789")


def char_tokenizer(path: str | Path) -> Path:
    """A character-level tokenizer.json: the specials first (ids 0..4), then the digits."""
    from tokenizers import Tokenizer, decoders, models

    vocab = {t: i for i, t in enumerate(SPECIAL + CHARS)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return path


TASK = "sort"  # sort | reverse


def target(prompt: str, task: str | None = None) -> str:
    return "".join(sorted(prompt)) if (task or TASK) == "sort" else prompt[::-1]


def score(prompt: str, answer: str) -> float:
    """Share of the right answer's positions that ``answer`` gets right, in [0, 1]."""
    want = target(prompt)
    right = sum(a == w for a, w in zip(answer, want, strict=False))
    return right / max(len(want), len(answer))


def exact(prompt: str, answer: str) -> float:
    """1.0 when ``answer`` is exactly the right answer, else 0.0 (the reported checker score)."""
    return float(answer == target(prompt))


def prompts(n: int, length: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(CHARS) for _ in range(length)) for _ in range(n)]


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
