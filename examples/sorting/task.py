"""Tasks whose answers a program can check: sort ("3142" → "1234", the default) or reverse ("2413") digits.

Used by the end-to-end post-training check. ``score`` (the checker, also a ``dataset.judge``) gives
partial credit: the share of positions holding the right digit (a wrong length costs the missing
positions). ``char_tokenizer`` writes a character-level HF tokenizer with the chat template's special
tokens, so a tiny model learns the task in minutes on CPU.

Pretraining text in the task's format (the format, not the skill: each answer is a random permutation
of the prompt's digits) comes from ``format_examples``; ``python -m examples.sorting.task
--output task.jsonl`` writes it as chat-template text (a ``text`` column) for ``dataproc tokenize``,
which gives the same ids as ``ChatTemplate`` when the tokenizer has the chat specials and one token
per digit (``dataproc train-tokenizer --chat-specials --split-digits``).
"""

from __future__ import annotations

import argparse
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


def demonstration(prompt: str, rng: random.Random, slip: float = 0.0) -> str:
    """A demonstrator's answer: the right one, except that with probability ``slip`` the last two digits
    come out swapped (when they differ): demonstrations a checker can rank but that are wrong as written."""
    want = target(prompt)
    if slip > 0 and len(want) >= 2 and want[-1] != want[-2] and rng.random() < slip:
        return want[:-2] + want[-1] + want[-2]
    return want


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


def format_examples(n: int, length: int, seed: int) -> list[tuple[str, str]]:
    """``n`` (prompt, answer) pairs in the task's format whose answer is a random permutation of the
    prompt (so a model pretrained on them learns the format and the digits, not the sorting)."""
    rng = random.Random(seed)
    return [(p, "".join(rng.sample(p, len(p)))) for p in prompts(n, length, seed)]


def chat_text(prompt: str, answer: str, user: str = "<|user|>", assistant: str = "<|assistant|>",
              end: str = "<|end|>") -> str:
    """One exchange as the chat template lays it out (``ChatTemplate.prompt`` + ``answer``, no system
    turn: the template's ``default_system`` is null), as text."""
    return f"{user}{prompt}{end}{assistant}{answer}{end}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write task-format pretraining text (JSONL, a `text` column).")
    parser.add_argument("--output", required=True, help="JSONL file to write")
    parser.add_argument("--docs", type=int, default=20000, help="exchanges, one document each (default 20000)")
    parser.add_argument("--digits", type=int, default=4, help="digits per prompt (default 4)")
    parser.add_argument("--seed", type=int, default=2)
    a = parser.parse_args(argv)
    rows = [{"text": chat_text(p, ans)} for p, ans in format_examples(a.docs, a.digits, a.seed)]
    print(f"examples.sorting.task: {len(rows)} task-format documents → {write_jsonl(a.output, rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
