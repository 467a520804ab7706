"""Constitutional AI (Bai et al. 2022): critique-revision SFT rows and AI-feedback preference pairs.

    python -m engine.stages.constitutional --config configs/posttrain/constitution_sort.yaml [key.sub=value ...]
    torchrun --nproc-per-node N -m engine.stages.constitutional ...   # prompts split over data-parallel ranks

From a policy checkpoint (``checkpoint.load``: an engine checkpoint, or ``python -m engine.convert import`` output
with ``model.preset=CKPT/model.yaml tokenizer.path=CKPT/tokenizer.json``), the prompts of
``dataset.train`` (any row format records.py reads) and a principles file (``constitution.principles``,
see ``engine/stages/constitutional_prompts.py``), it writes to ``constitution.output_dir``:

- ``sft.jsonl`` — supervised CAI: the policy samples an answer; for ``revisions`` rounds the feedback model
  (``constitution.feedback_model``, default the policy) is asked the principle's critique request, then its
  revision request, in one chat-templated conversation; the row is prompt → final revision (``output``),
  with the answer, critiques and principles beside it. Read by ``engine/stages/sft.py``.
- ``pairs.jsonl`` — RLAIF: K answers per prompt from the policy; for each pair the feedback model answers
  "which is better under principle P: (A) or (B)"; the preference is the softmax of the two labels'
  log-probabilities, averaged over both option orders (position bias) and ``feedback_ensemble`` principles.
  Rows are (prompt, chosen, rejected) with ``p_chosen``; read by ``engine/stages/reward.py`` /
  ``engine/stages/dpo.py``.
- ``summary.json`` — counts, skips, and for principles with a ``check``: how often answers and revisions
  pass it, and how often the AI feedback agrees with it on pairs it tells apart.

Answers/revisions that do not end (no end token within ``max_new_tokens``) or are empty are dropped and
counted, as are prompts that do not fit ``model.seq_length``. Deterministic for a seed and layout.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.config import ConfigError, _build, config_tree, resolve_tokenizer, validate
from engine.posttrain.config import PosttrainConfig, validate_posttrain
from engine.posttrain.records import prompt_messages
from engine.posttrain.template import Message
from engine.stages.common import guarded, parse_args, run_main, stage_parser
from engine.stages.constitutional_prompts import (
    Constitution,
    choice_messages,
    critique_messages,
    load_constitution,
    prompt_text,
    revision_messages,
)


@dataclass
class ConstitutionConfig:
    principles: str = ""  # the principles YAML
    output_dir: str | None = None  # sft.jsonl, pairs.jsonl, summary.json (default: train.run_dir)
    feedback_model: str | None = None  # critiques, revises, compares (default: checkpoint.load; same arch)
    max_prompts: int | None = None  # the first N prompts of dataset.train (null: all)
    answers_per_prompt: int = 1  # answers sampled per prompt and revised (0: no SFT rows)
    revisions: int = 1  # sequential critique → revision rounds per answer
    principle_draw: str = "random"  # each round's principle: random (seeded) | cycle (in file order)
    feedback_samples: int = 4  # K answers per prompt compared pairwise for AI feedback (0: no pairs)
    feedback_ensemble: int = 1  # principles (drawn per pair) whose preferences are averaged
    debias: bool = True  # also ask with the options swapped and average (removes position bias)
    min_confidence: float = 0.5  # keep a pair only if max(p, 1 - p) exceeds this
    max_new_tokens: int = 64  # answers and revisions
    critique_tokens: int = 64
    temperature: float = 1.0  # the policy's answers
    revision_temperature: float = 0.0  # critiques and revisions (0: greedy)
    top_p: float = 1.0
    batch_size: int = 64  # sequences per generate / scoring call


@dataclass
class CAIConfig(PosttrainConfig):
    constitution: ConstitutionConfig = field(default_factory=ConstitutionConfig)


def load_cai_config(path: str | Path | None = None, overrides: list[str] | None = None,
                    world_size: int | None = None) -> CAIConfig:
    """The post-training config system (YAML → dataclasses → overrides → checks naming the key)."""
    cfg = _build(CAIConfig, config_tree(path, overrides))
    world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    if not cfg.tokenizer.path:
        raise ConfigError("tokenizer.path", "required: the tokenizer.json with the template's special tokens")
    resolve_tokenizer(cfg)
    validate(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, prefix="<dataset>")), world_size,
             check_files=False)
    validate_posttrain(cfg, "constitutional", world_size)
    c = cfg.constitution
    if not cfg.checkpoint.load:
        raise ConfigError("checkpoint.load", "required: the policy checkpoint that answers the prompts")
    if cfg.parallel.pp != 1 or cfg.parallel.vpp:
        raise ConfigError("parallel.pp", "generation runs the KV-cache sampler, which needs pp=1")
    if not c.principles:
        raise ConfigError("constitution.principles", "required: the principles YAML")
    if c.principle_draw not in ("random", "cycle"):
        raise ConfigError("constitution.principle_draw", f"must be random or cycle, got {c.principle_draw!r}")
    if c.feedback_samples == 1 or c.feedback_samples < 0:
        raise ConfigError("constitution.feedback_samples", "0 (no pairs) or K >= 2")
    for key in ("answers_per_prompt", "revisions", "feedback_ensemble", "max_new_tokens", "critique_tokens",
                "batch_size"):
        if getattr(c, key) < (0 if key == "answers_per_prompt" else 1):
            raise ConfigError(f"constitution.{key}", f"too small: {getattr(c, key)}")
    if not 0.5 <= c.min_confidence < 1.0:
        raise ConfigError("constitution.min_confidence", "must be in [0.5, 1)")
    if c.temperature < 0 or c.revision_temperature < 0 or not 0 < c.top_p <= 1:
        raise ConfigError("constitution.temperature", "temperatures >= 0 and 0 < top_p <= 1")
    load_constitution(c.principles)  # the file's own checks
    return cfg


class Models:
    """The policy and the feedback model with the template: sampling and option log-probabilities."""

    def __init__(self, cfg: CAIConfig, policy: list, feedback: list, template: Any, seed: int) -> None:
        self.cfg, self.c, self.policy, self.feedback, self.template = cfg, cfg.constitution, policy, feedback, template
        self.vocab = cfg.tokenizer.vocab_size
        self.gen = torch.Generator().manual_seed(seed)
        self.skipped: dict[str, int] = {}

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def sample(self, model: list, convs: list[list[Message]], max_new: int, temperature: float) -> list[str | None]:
        """One reply per conversation; None where it does not fit, does not end, or is empty."""
        from engine.generate import generate

        ids = [self.template.prompt(m) for m in convs]
        fits = [i for i, x in enumerate(ids) if len(x) + max_new <= self.cfg.model.seq_length]
        out: list[str | None] = [None] * len(convs)
        if len(fits) < len(convs):
            self.skipped["prompt_too_long"] = self.skipped.get("prompt_too_long", 0) + len(convs) - len(fits)
        for s in range(0, len(fits), self.c.batch_size):
            chunk = fits[s:s + self.c.batch_size]
            g = generate(model[0], [ids[i] for i in chunk], max_new, self.template.end_id, self.vocab,
                         temperature, self.c.top_p, self.gen)
            for i, r in zip(chunk, g.responses, strict=True):
                text = self.template.decode(r)
                if not r or r[-1] != self.template.end_id:
                    self.skip("unfinished")
                elif not text.strip():
                    self.skip("empty")
                else:
                    out[i] = text
        return out

    @torch.no_grad()
    def label_probs(self, questions: list[list[Message]], labels: tuple[str, str]) -> list[float | None]:
        """P(first label) of the feedback model's reply to each question, from the two labels'
        log-probabilities (softmax over the pair); None where the question does not fit."""
        from engine.posttrain.batches import sequences_batch
        from engine.posttrain.losses import sequence_logps
        from engine.posttrain.models import token_logps

        label_ids = [self.template.text(s) for s in labels]
        ids = [self.template.prompt(q) for q in questions]
        fits = [i for i, x in enumerate(ids) if len(x) + max(map(len, label_ids)) <= self.cfg.model.seq_length]
        seqs = [(ids[i], lab) for i in fits for lab in label_ids]
        logps = []
        for s in range(0, len(seqs), self.c.batch_size):
            chunk = seqs[s:s + self.c.batch_size]
            batch = sequences_batch(chunk, self.cfg.model.seq_length, len(chunk))
            m = self.feedback[0]
            m.eval()
            logps.append(sequence_logps(token_logps(m, batch, self.vocab), batch["loss_mask"]))
        out: list[float | None] = [None] * len(questions)
        if fits:
            pair = torch.cat(logps).view(len(fits), 2)
            for i, p in zip(fits, torch.softmax(pair, -1)[:, 0].tolist(), strict=True):
                out[i] = p
        return out


def critique_revision(m: Models, cons: Constitution, prompts: list[list[Message]], rng: random.Random,
                      raw: list[Any]) -> tuple[list[dict], dict]:
    """SFT rows prompt → final revision after ``revisions`` critique → revision rounds."""
    c = m.c
    items = [(k, raw[k], p) for k, p in enumerate(prompts) for _ in range(c.answers_per_prompt)]
    answers = m.sample(m.policy, [p for _, _, p in items], c.max_new_tokens, c.temperature)
    live = [{"prompt": raw_p, "msgs": p, "initial": a, "current": a, "rounds": []}
            for (_, raw_p, p), a in zip(items, answers, strict=True) if a is not None]
    ps_ = cons.principles
    for r in range(c.revisions):
        for j, it in enumerate(live):
            it["principle"] = ps_[(j + r) % len(ps_)] if c.principle_draw == "cycle" else rng.choice(ps_)
        convs = [critique_messages(cons, it["msgs"], it["current"], it["principle"]) for it in live]
        crits = m.sample(m.feedback, convs, c.critique_tokens, c.revision_temperature)
        kept = [(it, conv, cr) for it, conv, cr in zip(live, convs, crits, strict=True) if cr is not None]
        revs = m.sample(m.feedback, [revision_messages(conv, cr, it["principle"]) for it, conv, cr in kept],
                        c.max_new_tokens, c.revision_temperature)
        live = []
        for (it, _, cr), rev in zip(kept, revs, strict=True):
            if rev is not None:
                it["rounds"].append({"principle": it["principle"].name, "critique": cr, "revision": rev})
                it["current"] = rev
                live.append(it)
    rows, checks = [], {}
    checkers = {p.name: fn for p in ps_ if (fn := p.checker()) is not None}
    for it in live:
        rows.append({"prompt": it["prompt"], "output": it["current"], "initial": it["initial"],
                     "rounds": it["rounds"]})
        used = {r["principle"] for r in it["rounds"]}
        text = prompt_text(it["msgs"])
        for name, fn in checkers.items():
            if name in used:
                s = checks.setdefault(name, {"initial": 0.0, "revised": 0.0, "n": 0})
                s["initial"] += float(fn(text, it["initial"]))
                s["revised"] += float(fn(text, it["current"]))
                s["n"] += 1
    for s in checks.values():
        s["initial"], s["revised"] = s["initial"] / s["n"], s["revised"] / s["n"]
    return rows, checks


def ai_feedback(m: Models, cons: Constitution, prompts: list[list[Message]], rng: random.Random,
                raw: list[Any]) -> tuple[list[dict], dict]:
    """Preference rows from the feedback model's choice between pairs of the policy's K answers."""
    c = m.c
    k = c.feedback_samples
    answers = m.sample(m.policy, [p for p in prompts for _ in range(k)], c.max_new_tokens, c.temperature)
    pairs = []  # (prompt index, a, b, principles)
    for i in range(len(prompts)):
        mine = list(dict.fromkeys(a for a in answers[i * k:(i + 1) * k] if a is not None))
        for a, b in itertools.combinations(mine, 2):
            pairs.append((i, a, b, rng.sample(cons.principles, min(c.feedback_ensemble, len(cons.principles)))))
    questions, where = [], []
    for n, (i, a, b, principles) in enumerate(pairs):
        for p in principles:
            questions.append(choice_messages(cons, prompts[i], p, a, b))
            where.append((n, False))
            if c.debias:
                questions.append(choice_messages(cons, prompts[i], p, b, a))
                where.append((n, True))
    probs = m.label_probs(questions, cons.labels)
    votes: list[list[float]] = [[] for _ in pairs]
    for (n, swapped), p in zip(where, probs, strict=True):
        if p is None:
            m.skip("question_too_long")
        else:
            votes[n].append(1.0 - p if swapped else p)  # P(a is better)
    rows, agree, told = [], 0, 0
    checkers = {p.name: p.checker() for p in cons.principles}
    for (i, a, b, principles), v in zip(pairs, votes, strict=True):
        if not v:
            continue
        pa = sum(v) / len(v)
        if max(pa, 1 - pa) <= c.min_confidence:
            m.skip("low_confidence")
            continue
        chosen, rejected = (a, b) if pa > 0.5 else (b, a)
        rows.append({"prompt": raw[i], "chosen": chosen, "rejected": rejected, "p_chosen": max(pa, 1 - pa),
                     "principles": [p.name for p in principles]})
        text = prompt_text(prompts[i])
        diff = sum(float(fn(text, chosen)) - float(fn(text, rejected))
                   for p in principles if (fn := checkers[p.name]) is not None)
        if diff != 0:
            told += 1
            agree += diff > 0
    return rows, {"pairs_checker_differs": told, "agreement": agree / told if told else None}


def run(cfg: CAIConfig) -> dict[str, Any]:
    """The whole stage in this process group; rank 0 writes the files and returns the summary."""
    import torch.distributed as dist
    from megatron.core.models.gpt import GPTModel

    from engine.posttrain.records import DataError, read_rows
    from engine.posttrain.template import ChatTemplate, TemplateError
    from engine.stages.common import frozen, setup

    t0 = time.perf_counter()
    c = cfg.constitution
    cons = load_constitution(c.principles)
    template = ChatTemplate(cfg.tokenizer.path, cfg.template)
    for where, text in cons.texts():
        if template.decode(template.text(text)).strip() != text.strip():
            raise ConfigError("constitution.principles", f"{where}: the tokenizer cannot spell {text!r}")
    layout = setup(cfg)
    rows = read_rows(cfg.dataset.train)[:c.max_prompts]
    prompts, raw = [], []
    for i, row in enumerate(rows):
        try:
            msgs = prompt_messages(row)
            template.prompt(msgs)
        except (ValueError, TypeError, KeyError, TemplateError) as exc:
            if cfg.dataset.on_bad_row == "skip":
                continue
            raise DataError(f"{cfg.dataset.train} row {i}: {exc}") from exc
        prompts.append(msgs)
        raw.append(row["prompt"] if row.get("prompt") is not None else msgs)
    prompts, raw = prompts[layout.dp_rank::layout.dp], raw[layout.dp_rank::layout.dp]
    policy = frozen(cfg, GPTModel, cfg.checkpoint.load)
    fb_path = c.feedback_model or cfg.checkpoint.load
    feedback = policy if fb_path == cfg.checkpoint.load else frozen(cfg, GPTModel, fb_path)
    seed = cfg.train.seed + 1000 * layout.dp_rank  # the same on the TP ranks of a data-parallel rank
    m = Models(cfg, policy, feedback, template, seed)
    sft_rows, checks = critique_revision(m, cons, prompts, random.Random(seed), raw)
    pair_rows, agreement = ai_feedback(m, cons, prompts, random.Random(seed + 1), raw) if c.feedback_samples \
        else ([], {})
    mine = (layout.tp_rank, sft_rows, pair_rows, m.skipped, checks, agreement, len(prompts))
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    if dist.get_rank() != 0:
        return {}
    parts = [g for g in gathered if g[0] == 0]
    return write(cfg, parts, time.perf_counter() - t0)


def write(cfg: CAIConfig, parts: list[tuple], seconds: float) -> dict[str, Any]:
    """sft.jsonl, pairs.jsonl and summary.json from the data-parallel ranks' results."""
    out = Path(cfg.constitution.output_dir or cfg.train.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    sft = [r for p in parts for r in p[1]]
    pairs = [r for p in parts for r in p[2]]
    for name, rows in (("sft.jsonl", sft), ("pairs.jsonl", pairs)):
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    skipped: dict[str, int] = {}
    checks: dict[str, dict] = {}
    told = agree = 0
    for p in parts:
        for k, v in p[3].items():
            skipped[k] = skipped.get(k, 0) + v
        for name, s in p[4].items():
            t = checks.setdefault(name, {"initial": 0.0, "revised": 0.0, "n": 0})
            t["initial"] += s["initial"] * s["n"]
            t["revised"] += s["revised"] * s["n"]
            t["n"] += s["n"]
        if p[5].get("pairs_checker_differs"):
            told += p[5]["pairs_checker_differs"]
            agree += round(p[5]["agreement"] * p[5]["pairs_checker_differs"])
    for t in checks.values():
        t["initial"], t["revised"] = t["initial"] / t["n"], t["revised"] / t["n"]
    summary = {"prompts": sum(p[6] for p in parts), "sft_rows": len(sft), "pairs": len(pairs),
               "skipped": skipped, "checks": checks,
               "feedback": {"pairs_checker_differs": told, "agreement": agree / told if told else None},
               "output_dir": str(out), "seconds": round(seconds, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__, config_help="YAML config (configs/posttrain/constitution*.yaml)")
    args = parse_args(parser, argv)

    def body() -> int:
        import torch.distributed as dist

        try:
            summary = run(load_cai_config(args.config, args.overrides))
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        if summary:
            print(json.dumps(summary), flush=True)
        return 0

    return guarded(body)


if __name__ == "__main__":
    run_main(main)
