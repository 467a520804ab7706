"""The chat template: messages ↔ token ids with role special tokens, and where the loss applies.

A turn is ``<role> text <end>``; a prompt ends with the assistant's opening token, and an answer is
``text <end>`` (generation stops on ``<end>``). The role and end markers must be *special* tokens of
the tokenizer (one id each), never spelled out of ordinary pieces.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.posttrain.config import TemplateConfig

Message = dict[str, str]


class TemplateError(ValueError):
    pass


class ChatTemplate:
    def __init__(self, tokenizer_path: str | Path, cfg: TemplateConfig) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.cfg = cfg
        special = {t["content"]: t["id"] for t in json.loads(Path(tokenizer_path).read_text())
                   .get("added_tokens", []) if t.get("special")}
        self.role_ids: dict[str, int] = {}
        for role in ("system", "user", "assistant", "end"):
            token = getattr(cfg, role)
            if token not in special:
                raise TemplateError(f"template.{role}: {token!r} is not a special token of {tokenizer_path} "
                                    "(add it with tokenizer.add_special_tokens)")
            self.role_ids[role] = special[token]
        self.end_id = self.role_ids["end"]

    def text(self, s: str) -> list[int]:
        return self.tokenizer.encode(s, add_special_tokens=False).ids

    def turn(self, role: str, content: str) -> list[int]:
        if role not in ("system", "user", "assistant"):
            raise TemplateError(f"unknown role {role!r} (system | user | assistant)")
        return [self.role_ids[role], *self.text(content), self.end_id]

    def prompt(self, messages: list[Message]) -> list[int]:
        """Ids of the conversation so far, ending with the assistant's opening token."""
        ids: list[int] = []
        if self.cfg.default_system and not (messages and messages[0]["role"] == "system"):
            ids += self.turn("system", self.cfg.default_system)
        for m in messages:
            ids += self.turn(m["role"], m["content"])
        return [*ids, self.role_ids["assistant"]]

    def answer(self, content: str) -> list[int]:
        return [*self.text(content), self.end_id]

    def conversation(self, messages: list[Message]) -> tuple[list[int], list[int]]:
        """Ids and loss mask of a whole chat: the loss falls on every assistant answer (and its end)."""
        ids: list[int] = []
        mask: list[int] = []
        if self.cfg.default_system and not (messages and messages[0]["role"] == "system"):
            ids += self.turn("system", self.cfg.default_system)
            mask += [0] * len(ids)
        for m in messages:
            if m["role"] == "assistant":
                ans = self.answer(m["content"])
                ids += [self.role_ids["assistant"], *ans]
                mask += [0] + [1] * len(ans)
            else:
                t = self.turn(m["role"], m["content"])
                ids += t
                mask += [0] * len(t)
        return ids, mask

    def decode(self, ids: list[int]) -> str:
        """Text of an answer's ids, up to (not including) the end token."""
        if self.end_id in ids:
            ids = ids[: ids.index(self.end_id)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def alpaca_messages(instruction: str, inp: str | None) -> list[Message]:
    content = instruction if not inp else f"{instruction}\n\n{inp}"
    return [{"role": "user", "content": content}]
