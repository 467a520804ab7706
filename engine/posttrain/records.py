"""Post-training rows from Parquet/JSONL: SFT examples, preference pairs, prompts — with bad-row handling.

Formats: ``alpaca`` (instruction, input, output), ``chat`` (messages: [{role, content}, ...]),
``pairs`` (prompt, chosen, rejected) and ``ranked`` (prompt, answers best first — K answers give all
K·(K−1)/2 pairs, as in InstructGPT; or unranked answers ordered by a judge function, RLAIF). A prompt
is a string or a messages list. A bad row (missing field, empty answer, too long for the context, K<2)
raises ``DataError`` naming the file and row, or is skipped and counted (``dataset.on_bad_row=skip``).
"""

from __future__ import annotations

import importlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.posttrain.config import DatasetConfig
from engine.posttrain.template import ChatTemplate, Message, TemplateError, alpaca_messages


class DataError(ValueError):
    """A bad row: the message names the file and the (0-based) row."""


@dataclass
class SFTExample:
    ids: list[int]
    mask: list[int]  # 1 where the next-token loss applies (answer tokens)


@dataclass
class Pair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


@dataclass
class Loaded:
    items: list[Any]
    skipped: Counter = field(default_factory=Counter)  # reason -> rows skipped


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for i, line in enumerate(path.read_text().splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as exc:
                    raise DataError(f"{path} row {i}: not JSON ({exc})") from exc
        return rows
    raise DataError(f"{path}: unknown file type (want .parquet or .jsonl)")


def detect_format(row: dict[str, Any]) -> str:
    if "messages" in row:
        return "chat"
    if "chosen" in row or "rejected" in row:
        return "pairs"
    if "answers" in row:
        return "ranked"
    if "instruction" in row or "output" in row:
        return "alpaca"
    return "prompts"


def _field(row: dict[str, Any], name: str, kind: type = str) -> Any:
    if name not in row or row[name] is None:
        raise ValueError(f"missing field {name!r}")
    value = row[name]
    if not isinstance(value, kind):
        raise ValueError(f"field {name!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def prompt_messages(row: dict[str, Any]) -> list[Message]:
    """The prompt of a row as messages: ``prompt`` (text or messages) or alpaca instruction/input."""
    if "prompt" in row and row["prompt"] is not None:
        p = row["prompt"]
        return [{"role": "user", "content": p}] if isinstance(p, str) else list(p)
    return alpaca_messages(_field(row, "instruction"), row.get("input"))


def load_judge(spec: str) -> Callable[[str, str], float]:
    module, _, name = spec.partition(":")
    if not name:
        raise DataError(f"dataset.judge={spec!r}: write it as module:function")
    return getattr(importlib.import_module(module), name)


class RowReader:
    """Turns the rows of one file into SFT examples / pairs / prompts for a context of ``seq_length``."""

    def __init__(self, template: ChatTemplate, cfg: DatasetConfig, seq_length: int) -> None:
        self.template, self.cfg, self.seq_length = template, cfg, seq_length
        self.judge = load_judge(cfg.judge) if cfg.judge else None

    def _fits(self, n: int, what: str) -> None:
        if n > self.seq_length:
            raise ValueError(f"{what} is {n} tokens, longer than the context (model.seq_length="
                             f"{self.seq_length})")

    def sft(self, row: dict[str, Any], fmt: str) -> list[SFTExample]:
        if fmt == "chat":
            msgs = _field(row, "messages", list)
            if not any(m.get("role") == "assistant" and m.get("content") for m in msgs):
                raise ValueError("no non-empty assistant message")
            ids, mask = self.template.conversation(msgs)
        else:
            answer = _field(row, "output")
            if not answer.strip():
                raise ValueError("empty answer ('output')")
            prompt = self.template.prompt(prompt_messages(row))
            ans = self.template.answer(answer)
            ids, mask = prompt + ans, [0] * len(prompt) + [1] * len(ans)
        self._fits(len(ids), "prompt + answer")
        # mask[i] marks token i as a target: the loss of position i-1 predicting it
        return [SFTExample(ids, mask)]

    def pairs(self, row: dict[str, Any], fmt: str) -> list[Pair]:
        prompt = self.template.prompt(prompt_messages(row))
        self._fits(len(prompt) + 1, "the prompt")
        if fmt == "pairs":
            ranked = [_field(row, "chosen"), _field(row, "rejected")]
            scores = None
        else:
            ranked = list(_field(row, "answers", list))
            scores = row.get("scores")
            if self.judge is not None:
                text = self.template.decode(prompt) if "prompt" not in row else row["prompt"]
                scores = [float(self.judge(text, a)) for a in ranked]
                order = sorted(range(len(ranked)), key=lambda i: -scores[i])
                ranked, scores = [ranked[i] for i in order], [scores[i] for i in order]
        if len(ranked) < 2:
            raise ValueError(f"{len(ranked)} answer(s): a ranking needs K >= 2")
        for a in ranked:
            if not isinstance(a, str) or not a.strip():
                raise ValueError("empty answer")
        answers = [self.template.answer(a) for a in ranked]
        for a in answers:
            self._fits(len(prompt) + len(a), "prompt + answer")
        out = []
        for i in range(len(answers)):
            for j in range(i + 1, len(answers)):
                if scores is not None and scores[i] == scores[j]:
                    continue  # a tie says nothing about preference
                out.append(Pair(prompt, answers[i], answers[j]))
        return out

    def prompts(self, row: dict[str, Any], fmt: str) -> list[list[int]]:
        prompt = self.template.prompt(prompt_messages(row))
        self._fits(len(prompt) + 1, "the prompt")
        return [prompt]

    def load(self, path: str | Path, kind: str) -> Loaded:
        """``kind``: sft | pairs | prompts. Every row is checked; a bad one raises or is counted."""
        rows = read_rows(path)
        out = Loaded([])
        for i, row in enumerate(rows):
            fmt = self.cfg.format if self.cfg.format != "auto" else detect_format(row)
            try:
                out.items.extend(getattr(self, kind)(row, fmt))
            except (ValueError, TypeError, KeyError, TemplateError) as exc:
                if self.cfg.on_bad_row == "skip":
                    out.skipped[str(exc).split(" (")[0]] += 1
                    continue
                raise DataError(f"{path} row {i}: {exc}") from exc
        if not out.items:
            raise DataError(f"{path}: no usable rows ({sum(out.skipped.values())} skipped: "
                            f"{dict(out.skipped)})")
        return out
