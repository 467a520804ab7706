"""Post-training learns, in the default test run (~1–2 min on 2 cores): a 3-digit sorting task through the
real stage code — a fresh tiny model (base) → SFT on correct answers → GRPO with the checker as reward.

Scores are exact-match rates of sampled answers (temperature 1, the distribution RL optimises) on held-out
prompts; each gain must exceed ``Z`` per-prompt paired standard errors (and a fixed margin), so a stage
that stops learning fails and noise alone does not pass.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

DIGITS = 3
HELD = 200  # held-out prompts the checker grades
SAMPLES = 8  # answers sampled per held-out prompt
Z = 2.0
SEED = 0
COMMON = ["model.seq_length=16", "train.progress=false", "logging.tensorboard=false", "checkpoint.resume=false",
          "train.precision=fp32", f"train.seed={1234 + SEED}", f"dataset.shuffle_seed={1234 + SEED}"]


def prompt_exact(model: list, template: object, prompts: list[str], vocab: int, samples: int,
                 seed: int) -> list[float]:
    """Each prompt's exact-match rate over ``samples`` answers drawn at temperature 1."""
    import torch

    from engine.generate import generate
    from examples.sorting import task

    asked = [p for p in prompts for _ in range(samples)]
    ids = [template.prompt([{"role": "user", "content": p}]) for p in asked]
    out = generate(model[0], ids, DIGITS + 2, template.end_id, vocab, temperature=1.0,
                   generator=torch.Generator().manual_seed(seed))
    hits = [task.exact(p, template.decode(r)) for p, r in zip(asked, out.responses, strict=True)]
    return [sum(hits[i * samples:(i + 1) * samples]) / samples for i in range(len(prompts))]


def paired_se(a: list[float], b: list[float]) -> float:
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / len(d)
    return (sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d)) ** 0.5


def run_fast(work: Path, sft_steps: int = 60, grpo_steps: int = 64, estimator: str = "grpo",
             extra: tuple[str, ...] = ()) -> dict:
    """base → SFT → GRPO on 3-digit sorting; per-prompt scores of each stage and the timings."""
    from engine.posttrain.config import TemplateConfig, load_posttrain_config
    from engine.posttrain.template import ChatTemplate
    from engine.stages import grpo as grpo_stage
    from engine.stages import sft as sft_stage
    from examples.sorting import task

    root = Path(__file__).resolve().parents[3]
    t0 = time.perf_counter()
    tok = task.char_tokenizer(work / "tokenizer.json")
    template = ChatTemplate(tok, TemplateConfig())
    held = task.prompts(HELD, DIGITS, seed=999)
    train = [p for p in task.prompts(4000, DIGITS, seed=1) if p not in set(held)]
    task.write_jsonl(work / "sft.jsonl", [{"instruction": p, "input": "", "output": task.target(p)}
                                          for p in train[:2000]])
    task.write_jsonl(work / "prompts.jsonl", [{"prompt": p} for p in train[2000:]])
    per_prompt: dict[str, list[float]] = {}

    cfg = load_posttrain_config("sft", root / "configs/posttrain/sft_sort.yaml", [
        *COMMON, f"tokenizer.path={tok}", f"dataset.train={work}/sft.jsonl", f"train.run_dir={work}/sft",
        "checkpoint.load=null", f"train.steps={sft_steps}", "dataset.valid_fraction=0", "model.seq_length=48",
        "optim.lr=3e-3", "optim.min_lr=1e-3"], world_size=1)
    vocab = cfg.tokenizer.vocab_size
    run = sft_stage.build(cfg)
    per_prompt["base"] = prompt_exact(run.trainer.model, template, held, vocab, SAMPLES, seed=5)
    run.trainer.fit(None, run.ckpt_dir)
    per_prompt["sft"] = prompt_exact(run.trainer.model, template, held, vocab, SAMPLES, seed=5)
    sft_ckpt = run.ckpt_dir / f"step_{sft_steps:06d}"
    del run
    t_sft = time.perf_counter() - t0

    cfg = load_posttrain_config("grpo", root / "configs/posttrain/grpo_sort.yaml", [
        *COMMON, f"tokenizer.path={tok}", f"dataset.train={work}/prompts.jsonl", f"train.run_dir={work}/grpo",
        f"checkpoint.load={sft_ckpt}", f"train.steps={grpo_steps}", f"grpo.estimator={estimator}",
        "reward.fn=examples.sorting.task:exact", "grpo.prompts_per_rollout=16", "grpo.group_size=8",
        "train.global_batch_size=64", "train.micro_batch_size=64", "optim.lr=3e-4", "optim.min_lr=3e-5",
        "optim.warmup_steps=0", "grpo.kl_coef=0.01", "checkpoint.save_at_end=false", *extra], world_size=1)
    run = grpo_stage.build(cfg)
    records = run.trainer.fit(None, None)
    per_prompt["rl"] = prompt_exact(run.trainer.actor.model, template, held, vocab, SAMPLES, seed=5)
    scores = {k: sum(v) / len(v) for k, v in per_prompt.items()}
    return {"scores": scores, "per_prompt": per_prompt, "records": records, "t_sft_s": t_sft,
            "t_total_s": time.perf_counter() - t0}


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_sft_beats_base_and_rl_beats_sft(tmp_path, estimator):
    out = run_fast(tmp_path, estimator=estimator)
    s, pp = out["scores"], out["per_prompt"]
    se_sft = paired_se(pp["sft"], pp["base"])
    se_rl = paired_se(pp["rl"], pp["sft"])
    rewards = [r["reward"] for r in out["records"]]
    msg = {**s, "se_sft": se_sft, "se_rl": se_rl, "t_total_s": out["t_total_s"], "reward": rewards}
    assert s["sft"] > s["base"] + max(0.1, Z * se_sft), msg
    assert s["rl"] > s["sft"] + max(0.03, Z * se_rl), msg
    # the rollout reward (the same checker on training prompts) rises too: last quarter over first
    q = max(1, len(rewards) // 4)
    assert sum(rewards[-q:]) / q > sum(rewards[:q]) / q, msg
