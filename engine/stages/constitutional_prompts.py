"""The constitution of a Constitutional AI run: principles from YAML, and the conversations built on them.

A principles file (``constitution.principles``)::

    labels: [A, B]                 # option labels of the AI-feedback question (default A, B)
    choice_template: "..."         # the multiple-choice question (default: Bai et al. 2022, appendix)
    few_shot: [{role, content}]    # messages put before every critique conversation (default none)
    principles:
      - name: harmless
        critique: Identify specific ways in which the assistant's last response is harmful ...
        revision: Please rewrite the assistant response to remove any and all harmful ... content.
        choice: Which of these assistant responses is less harmful? ...
        check: module:function     # optional (prompt, answer) -> bool | float: reports and tests only

``choice_template`` placeholders: ``{conversation}`` (the prompt as "Human: …" / "Assistant: …" lines),
``{prompt}`` (the last user message), ``{question}`` (the principle's ``choice``), ``{a}``, ``{b}`` (the two
answers), ``{label_a}``, ``{label_b}``. The assistant's reply to it is one label; its log-probability is
the preference. Every text goes through the chat template (``engine.posttrain.template``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from engine.config import ConfigError
from engine.posttrain.template import Message

DEFAULT_CHOICE = ("Consider the following conversation between a human and an assistant:\n{conversation}\n"
                  "{question}\nOptions:\n({label_a}) {a}\n({label_b}) {b}\nThe answer is:")
KEY = "constitution.principles"


@dataclass
class Principle:
    name: str
    critique: str  # the critique request (a user turn after the answer)
    revision: str  # the revision request (a user turn after the critique)
    choice: str  # the question of the AI-feedback comparison
    check: str | None = None  # "module:function" (prompt, answer) -> bool | float

    def checker(self) -> Callable[[str, str], float] | None:
        from engine.posttrain.records import load_judge

        return load_judge(self.check) if self.check else None


@dataclass
class Constitution:
    principles: list[Principle]
    labels: tuple[str, str] = ("A", "B")
    choice_template: str = DEFAULT_CHOICE
    few_shot: list[Message] = field(default_factory=list)

    def texts(self) -> list[tuple[str, str]]:
        """(where, text) of every fixed text, for the tokenizer round-trip check."""
        out = [(f"{p.name}.{k}", getattr(p, k)) for p in self.principles for k in ("critique", "revision",
                                                                                   "choice")]
        out += [(f"labels[{i}]", s) for i, s in enumerate(self.labels)]
        return out + [(f"few_shot[{i}]", m["content"]) for i, m in enumerate(self.few_shot)]


def load_constitution(path: str | Path) -> Constitution:
    """Read and check a principles file; ``ConfigError`` names the file and the bad entry."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(KEY, f"{path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(KEY, f"{path}: not YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("principles"), list) or not data["principles"]:
        raise ConfigError(KEY, f"{path}: want a mapping with a non-empty list 'principles'")
    unknown = set(data) - {"principles", "labels", "choice_template", "few_shot"}
    if unknown:
        raise ConfigError(KEY, f"{path}: unknown key(s) {sorted(unknown)}")
    principles = []
    for i, item in enumerate(data["principles"]):
        where = f"{path} principles[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(KEY, f"{where}: want a mapping")
        extra = set(item) - {"name", "critique", "revision", "choice", "check"}
        if extra:
            raise ConfigError(KEY, f"{where}: unknown key(s) {sorted(extra)}")
        for key in ("name", "critique", "revision", "choice"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ConfigError(KEY, f"{where}: missing or empty {key!r}")
        principles.append(Principle(**item))
    names = [p.name for p in principles]
    if len(set(names)) != len(names):
        raise ConfigError(KEY, f"{path}: principle names repeat: {names}")
    labels = data.get("labels", ["A", "B"])
    if (not isinstance(labels, list) or len(labels) != 2 or not all(isinstance(s, str) and s for s in labels)
            or labels[0] == labels[1]):
        raise ConfigError(KEY, f"{path}: labels must be two different non-empty strings, got {labels!r}")
    template = data.get("choice_template", DEFAULT_CHOICE)
    try:
        template.format(conversation="", prompt="", question="", a="", b="", label_a="", label_b="")
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(KEY, f"{path}: choice_template: bad placeholder ({exc})") from exc
    few_shot = data.get("few_shot") or []
    if not all(isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
               and isinstance(m.get("content"), str) for m in few_shot):
        raise ConfigError(KEY, f"{path}: few_shot must be a list of {{role, content}} messages")
    for p in principles:
        if p.check:
            try:
                p.checker()
            except (ImportError, AttributeError, ValueError) as exc:
                raise ConfigError(KEY, f"{path} principle {p.name!r}: check {p.check!r}: {exc}") from exc
    return Constitution(principles, (labels[0], labels[1]), template, list(few_shot))




def prompt_text(messages: list[Message]) -> str:
    """The last user message: what a checker is given as the prompt."""
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def render(messages: list[Message]) -> str:
    names = {"system": "System", "user": "Human", "assistant": "Assistant"}
    return "\n\n".join(f"{names[m['role']]}: {m['content']}" for m in messages)


def critique_messages(c: Constitution, prompt: list[Message], answer: str, p: Principle) -> list[Message]:
    """prompt → answer → the principle's critique request (the assistant's critique comes next)."""
    return [*c.few_shot, *prompt, {"role": "assistant", "content": answer}, {"role": "user", "content": p.critique}]


def revision_messages(critique_conv: list[Message], critique: str, p: Principle) -> list[Message]:
    """… → critique → the principle's revision request (the assistant's revision comes next)."""
    return [*critique_conv, {"role": "assistant", "content": critique}, {"role": "user", "content": p.revision}]


def choice_messages(c: Constitution, prompt: list[Message], p: Principle, a: str, b: str) -> list[Message]:
    """The multiple-choice question "which of (A) a, (B) b is better under p" as one user turn."""
    text = c.choice_template.format(conversation=render(prompt), prompt=prompt_text(prompt), question=p.choice,
                                    a=a, b=b, label_a=c.labels[0], label_b=c.labels[1])
    return [{"role": "user", "content": text}]
