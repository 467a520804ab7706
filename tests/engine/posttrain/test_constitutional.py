"""Constitutional AI end to end on a tiny model, with a principle a program checks (digits in ascending order).

A tiny model can't learn to critique from scratch in seconds, so it is taught the constitution's three
conversations by the checker (``examples.sorting.task.exact``), through the real SFT stage (200 steps): answer a
2-digit prompt over digits 0-4 (sorted half the time, reversed otherwise — so K samples disagree), critique then revise
it when asked the principle's requests (the revision is always sorted), and answer the principle's
multiple-choice question with the label of the sorted option. The stage then has to put the requests and
options where the file and the chat template say, read the labels' log-probabilities the right way round
and undo the position bias: otherwise the model's preferences do not agree with the checker. Agreement is
recomputed here from the written pairs, not read from the stage's summary.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from unittest import mock

import pytest

from tests.engine.harness import ROOT

DIGITS = 2
ALPHABET = "01234"  # few digits: the tiny model learns their order in a few hundred steps
PRINCIPLES = ROOT / "configs/posttrain/principles_sort.yaml"
CONFIG = ROOT / "configs/posttrain/constitution_sort.yaml"
COMMON = ["train.progress=false", "logging.tensorboard=false", "checkpoint.resume=false", "train.precision=fp32"]


def text_tokenizer(path: Path) -> Path:
    """A character tokenizer over printable ASCII and newline, with the chat template's special tokens."""
    from tokenizers import Tokenizer, decoders, models

    from examples.sorting.task import SPECIAL

    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(SPECIAL + chars)}, merges=[], unk_token=None))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL)
    tok.save(str(path))
    return path


def prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(DIGITS)) for _ in range(n)]


def teaching_rows(n: int, seed: int) -> list[dict]:
    """The constitution's conversations, written by the checker (chat rows; loss on every reply)."""
    from engine.stages.constitutional_prompts import load_constitution
    from examples.sorting import task

    cons = load_constitution(PRINCIPLES)
    (p,) = cons.principles
    rng = random.Random(seed)
    rows = []
    for q in prompts(n, seed):
        good, bad = task.target(q), task.target(q)[::-1]
        answer = good if bad == good or rng.random() < 0.5 else bad
        rows.append({"messages": [
            {"role": "user", "content": q}, {"role": "assistant", "content": answer},
            {"role": "user", "content": p.critique},
            {"role": "assistant", "content": "ok" if answer == good else "unsorted"},
            {"role": "user", "content": p.revision}, {"role": "assistant", "content": good}]})
        if bad != good:
            for a, b, label in ((good, bad, "A"), (bad, good, "B")):
                text = cons.choice_template.format(prompt=q, question=p.choice, a=a, b=b, label_a="A",
                                                   label_b="B", conversation="")
                rows.append({"messages": [{"role": "user", "content": text},
                                          {"role": "assistant", "content": label}]})
    return rows


def cai_config(work: Path, ckpt: str, seed: int, extra: tuple[str, ...] = ()) -> object:
    from engine.stages.constitutional import load_cai_config

    return load_cai_config(CONFIG, [*COMMON, f"tokenizer.path={work}/tokenizer.json", f"checkpoint.load={ckpt}",
                                    f"dataset.train={work}/prompts.jsonl", f"train.run_dir={work}/cai_{seed}",
                                    f"constitution.output_dir={work}/cai_{seed}", f"train.seed={seed}", *extra],
                           world_size=1)


@pytest.fixture(scope="module")
def cai(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Teach the tiny model (real SFT stage), then run the CAI stage on 48 held-out prompts, recording
    every prompt the stage sends to the generator."""
    from engine.posttrain.config import load_posttrain_config
    from engine.stages import sft
    from engine.stages.constitutional import run
    from examples.sorting import task

    work = tmp_path_factory.mktemp("cai")
    text_tokenizer(work / "tokenizer.json")
    task.write_jsonl(work / "teach.jsonl", teaching_rows(4000, seed=1))
    cfg = load_posttrain_config("sft", ROOT / "configs/posttrain/sft_sort.yaml", [
        *COMMON, f"tokenizer.path={work}/tokenizer.json", f"dataset.train={work}/teach.jsonl",
        "model.seq_length=80", "train.steps=200", "optim.lr=1e-2", "optim.min_lr=1e-4", "train.seed=1",
        "dataset.valid_fraction=0", f"train.run_dir={work}/teach"], world_size=1)
    s_run = sft.build(cfg)
    s_run.trainer.fit(None, s_run.ckpt_dir)
    ckpt = str(s_run.ckpt_dir / "step_000200")
    del s_run
    held = [q for q in prompts(96, seed=99) if len(set(q)) == DIGITS][:64]
    task.write_jsonl(work / "prompts.jsonl", [{"prompt": q} for q in held])

    import engine.generate

    sent: list[list[int]] = []
    real = engine.generate.generate

    def recording(model, prompts, *args, **kwargs):
        sent.extend(prompts)
        return real(model, prompts, *args, **kwargs)

    with mock.patch.object(engine.generate, "generate", recording):
        summary = run(cai_config(work, ckpt, seed=5))
    return {"work": work, "ckpt": ckpt, "summary": summary, "sent": sent, "out": work / "cai_5"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_revision_conversations_follow_the_template(cai):
    """Every SFT row's critique and revision were asked as chat turns: prompt → answer → the principle's
    critique request → critique → its revision request, ending with the assistant's opening token."""
    from engine.posttrain.config import TemplateConfig
    from engine.posttrain.template import ChatTemplate

    tpl = ChatTemplate(cai["work"] / "tokenizer.json", TemplateConfig())
    u, a, e = (tpl.role_ids[r] for r in ("user", "assistant", "end"))
    sent = {tuple(ids) for ids in cai["sent"]}
    rows = _rows(cai["out"] / "sft.jsonl")
    assert len(rows) >= 40, cai["summary"]
    for row in rows:
        (r,) = row["rounds"]
        assert r["principle"] == "ascending" and row["output"] == r["revision"]
        critique_ask = [u, *tpl.text(row["prompt"]), e, a, *tpl.text(row["initial"]), e,
                        u, *tpl.text("What is out of order?"), e, a]
        revision_ask = [*critique_ask, *tpl.text(r["critique"]), e, u, *tpl.text("Rewrite it sorted."), e, a]
        assert tuple(critique_ask) in sent and tuple(revision_ask) in sent


def test_revisions_pass_the_check_more_often(cai):
    from examples.sorting.task import exact

    rows = _rows(cai["out"] / "sft.jsonl")
    initial = sum(exact(r["prompt"], r["initial"]) for r in rows) / len(rows)
    revised = sum(exact(r["prompt"], r["output"]) for r in rows) / len(rows)
    check = cai["summary"]["checks"]["ascending"]
    assert check["n"] == len(rows) and math.isclose(check["initial"], initial) and math.isclose(check["revised"], revised)
    assert revised >= initial + 0.2, (initial, revised)  # seed 1: 0.50 -> 0.91; another seed: 0.22 -> 0.56


def test_ai_feedback_agrees_with_the_checker(cai):
    """On pairs where the checker prefers one answer, the AI feedback picks it far more often than chance."""
    from examples.sorting.task import exact

    pairs = _rows(cai["out"] / "pairs.jsonl")
    told = [p for p in pairs if exact(p["prompt"], p["chosen"]) != exact(p["prompt"], p["rejected"])]
    agree = sum(exact(p["prompt"], p["chosen"]) > exact(p["prompt"], p["rejected"]) for p in told)
    assert len(told) >= 40, cai["summary"]
    # one-sided binomial tail under "no better than chance": below 1e-4 (seed 1 here: 80/88; another
    # teaching seed: 70/87)
    tail = sum(math.comb(len(told), k) for k in range(agree, len(told) + 1)) / 2 ** len(told)
    assert agree / len(told) >= 0.7 and tail < 1e-4, (agree, len(told))
    assert cai["summary"]["feedback"] == {"pairs_checker_differs": len(told), "agreement": agree / len(told)}
    assert all(0.5 < p["p_chosen"] <= 1.0 and p["principles"] == ["ascending"] for p in pairs)


def test_rows_parse_and_train_sft_and_dpo(cai):
    """records.py reads both files; the real SFT and DPO stages take a few steps on them."""
    from engine.posttrain.config import load_posttrain_config
    from engine.stages import dpo, sft

    work, out = cai["work"], cai["out"]
    common = [*COMMON, f"tokenizer.path={work}/tokenizer.json", f"checkpoint.load={cai['ckpt']}",
              "model.seq_length=80", "train.steps=3", "train.global_batch_size=8", "train.micro_batch_size=8",
              "dataset.valid_fraction=0", "checkpoint.save_every=0", "checkpoint.save_at_end=false",
              "optim.warmup_steps=0"]
    for stage, module, data in (("sft", sft, "sft.jsonl"), ("dpo", dpo, "pairs.jsonl")):
        cfg = load_posttrain_config(stage, ROOT / f"configs/posttrain/{stage}_sort.yaml",
                                    [*common, f"dataset.train={out}/{data}", f"train.run_dir={work}/{stage}"],
                                    world_size=1)
        run = module.build(cfg)
        assert run.info["train_items"] == len(_rows(out / data)) and not run.info["skipped_rows"]["train"]
        records = run.trainer.fit(None, None)
        assert len(records) == 3 and all(math.isfinite(r["loss"]) for r in records)


def test_deterministic_for_a_seed(cai):
    from engine.stages.constitutional import run

    again = run(cai_config(cai["work"], cai["ckpt"], seed=5, extra=(f"constitution.output_dir={cai['work']}/again",)))
    for name in ("sft.jsonl", "pairs.jsonl"):
        assert (cai["out"] / name).read_text() == (Path(again["output_dir"]) / name).read_text()
    other = run(cai_config(cai["work"], cai["ckpt"], seed=6))
    assert (cai["out"] / "pairs.jsonl").read_text() != (Path(other["output_dir"]) / "pairs.jsonl").read_text()


def test_bad_principles_and_unspellable_text_name_the_key(tmp_path, char_tok):
    from engine.config import ConfigError
    from engine.stages.constitutional import load_cai_config, main
    from engine.stages.constitutional_prompts import load_constitution

    bad = tmp_path / "p.yaml"
    bad.write_text("principles:\n  - name: x\n    critique: c\n    choice: q\n")
    with pytest.raises(ConfigError, match=r"constitution\.principles.*principles\[0\].*'revision'"):
        load_constitution(bad)
    bad.write_text("principles: [{name: x, critique: Why?, revision")
    with pytest.raises(ConfigError, match="not YAML"):
        load_constitution(bad)
    bad.write_text("principles:\n  - {name: x, critique: c, revision: r, choice: q, check: nope:fn}\n")
    with pytest.raises(ConfigError, match="check 'nope:fn'"):
        load_constitution(bad)
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "31"}\n')
    cfg = load_cai_config(CONFIG, [f"tokenizer.path={char_tok}", f"checkpoint.load={tmp_path}",
                                   f"dataset.train={tmp_path}/prompts.jsonl"], world_size=1)
    from engine.stages.constitutional import run

    with pytest.raises(ConfigError, match="cannot spell 'What is out of order"):
        run(cfg)  # the digits-only tokenizer would silently drop the requests' letters
    assert main(["--config", str(CONFIG), f"tokenizer.path={char_tok}", "constitution.principle_draw=any",
                 f"dataset.train={tmp_path}/prompts.jsonl"]) == 2
