"""End-to-end post-training check on a task a program can grade (sorting digit strings), CPU, minutes.

    python engine/posttrain_check.py [--work runs/posttrain_check] [--quick]

pretrain briefly (answers are random permutations: the format, not the skill) → SFT on correct
answers → sample K answers per prompt from the SFT model, ranked by the checker (``dataset.judge``) →
reward model (Bradley–Terry) → PPO on the learned reward → DPO on the same rankings. Every stage is the
same code ``torchrun engine/<stage>.py`` runs, here in one process (world of one). A stage's checker
score is the exact-match rate of the policy on held-out prompts: 4 answers per prompt sampled at
temperature 1 (the distribution PPO and DPO optimise); greedy exact match is printed beside it. PPO's
critic starts from the SFT weights with a zero value head (the reward model's head was trained on final
tokens only). The last line printed is

    checker_score base=X sft=X ppo=X dpo=X rm_acc=X kl=X
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
DIGITS = 4
N_HELD = 200  # held-out prompts the checker grades
K = 8  # sampled answers per ranking prompt
SAMPLES = 4  # answers per held-out prompt drawn from each policy for its checker score
STEPS = {"pretrain": 200, "sft": 250, "reward": 1200, "ppo": 384, "dpo": 120}


def _write_pretrain_tokens(work: Path, template: object, n_docs: int, seed: int) -> str:
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from engine.posttrain import sorting_task as task

    rng = random.Random(seed)
    prefix = str(work / "pretrain_tokens")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.int32)
    for p in task.prompts(n_docs, DIGITS, seed):
        shuffled = "".join(rng.sample(p, len(p)))
        ids = template.prompt([{"role": "user", "content": p}]) + template.answer(shuffled) + [0]
        builder.add_item(torch.tensor(ids, dtype=torch.int32))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def checker_score(stage_model: list, template: object, prompts: list[str], vocab_size: int,
                  samples: int = 0, seed: int = 0) -> float:
    """The checker's exact-match rate on ``prompts``: of the policy itself (``samples`` answers per prompt
    drawn at temperature 1, the distribution RLHF optimises), or of greedy answers (``samples=0``)."""
    import torch

    from engine.generate import generate
    from engine.posttrain import sorting_task as task

    k = max(samples, 1)
    asked = [p for p in prompts for _ in range(k)]
    ids = [template.prompt([{"role": "user", "content": p}]) for p in asked]
    out = generate(stage_model[0], ids, DIGITS + 2, template.end_id, vocab_size,
                   temperature=1.0 if samples else 0.0, generator=torch.Generator().manual_seed(seed))
    return sum(task.exact(p, template.decode(r)) for p, r in zip(asked, out.responses, strict=True)) / len(asked)


def _score(scores: dict[str, float], name: str, model: list, template: object, held: list[str],
           vocab_size: int, seed: int) -> None:
    scores[name] = checker_score(model, template, held, vocab_size, samples=SAMPLES, seed=seed)
    scores[name + "_greedy"] = checker_score(model, template, held, vocab_size)


def sample_rankings(model: list, template: object, prompts: list[str], k: int, vocab_size: int,
                    seed: int) -> list[dict]:
    """K sampled answers per prompt (unranked: the judge orders them when the RM/DPO data is read)."""
    import torch

    from engine.generate import generate

    ids = [template.prompt([{"role": "user", "content": p}]) for p in prompts for _ in range(k)]
    out = generate(model[0], ids, DIGITS + 2, template.end_id, vocab_size, temperature=1.0,
                   generator=torch.Generator().manual_seed(seed))
    answers = [template.decode(r) for r in out.responses]
    rows = []
    for i, p in enumerate(prompts):
        mine = [a for a in answers[i * k:(i + 1) * k] if a.strip()]
        if len(mine) >= 2:
            rows.append({"prompt": p, "answers": mine})
    return rows


def _fit(name: str, cfg: object, run: object, progress: bool) -> list[dict]:
    """``run.trainer.fit`` with a metrics logger writing ``<train.run_dir>/metrics.jsonl`` + ``run.json``;
    a stage with final metrics (the reward model's accuracy) logs them as one last record."""
    from engine.metrics import MetricsLogger

    header = {"stage": name, "config": cfg.to_dict(), "world_size": 1}
    logger = MetricsLogger(cfg.train.run_dir, True, False, cfg.train.steps, 0, progress, header, desc=name)
    try:
        records = run.trainer.fit(logger, run.ckpt_dir)
        if getattr(run, "after_fit", None) is not None:
            final = {"step": run.trainer.step, **run.after_fit()}
            logger.log(final)
            records.append(final)
        return records
    finally:
        logger.close()


def run(work: Path, quick: bool = False, seed: int = 0, progress: bool = False) -> dict[str, float]:
    """The whole check in ``work``; ``seed`` changes every prompt set, initialisation and sample.
    Each stage writes ``work/<stage>/metrics.jsonl``; the scores go to ``work/summary.json``."""
    from engine.config import load_config
    from engine.posttrain import sorting_task as task
    from engine.posttrain.config import TemplateConfig, load_posttrain_config
    from engine.posttrain.stage import frozen
    from engine.posttrain.template import ChatTemplate

    t_start = time.perf_counter()
    times: dict[str, float] = {}

    def lap(name: str) -> None:
        times[name] = time.perf_counter() - t_start - sum(times.values())

    work.mkdir(parents=True, exist_ok=True)
    tok = task.char_tokenizer(work / "tokenizer.json")
    template = ChatTemplate(tok, TemplateConfig())
    held = task.prompts(N_HELD, DIGITS, seed=999 + 7 * seed)
    held_set = set(held)
    train_prompts = [p for p in task.prompts(8000, DIGITS, seed=1 + 7 * seed) if p not in held_set]
    sft_prompts, rank_prompts, ppo_prompts = train_prompts[:3000], train_prompts[3000:4200], train_prompts[4200:]
    common = [f"tokenizer.path={tok}", "model.seq_length=16", "train.progress=false",
              "logging.tensorboard=false", "checkpoint.resume=false", "train.precision=fp32",
              f"train.seed={1234 + seed}"]
    scale = 0.5 if quick else 1.0
    steps = {k: max(4, int(v * scale)) for k, v in STEPS.items()}

    # 1. pretraining: the engine's own pretrain path on task-formatted text with shuffled answers
    from engine.pretrain import build_run

    prefix = _write_pretrain_tokens(work, template, 4000, seed=2 + 7 * seed)
    cfg = load_config(ROOT / "configs/pretrain/tiny_cpu.yaml",
                      [*common, f"data.prefix={prefix}", f"train.run_dir={work}/pretrain",
                       f"train.steps={steps['pretrain']}", "train.global_batch_size=32", "train.micro_batch_size=32",
                       "optim.warmup_steps=0", "train.eval_every=0", "checkpoint.save_every=0"], world_size=1)
    pre = build_run(cfg, resume=False)
    _fit("pretrain", cfg, pre, progress)
    pre_ckpt = str(pre.ckpt_dir / f"step_{steps['pretrain']:06d}")
    vocab = cfg.tokenizer.vocab_size
    lap("pretrain")

    def posttrain_cfg(stage: str, extra: list[str]) -> object:
        return load_posttrain_config(stage, ROOT / f"configs/posttrain/{stage}_sort.yaml",
                                     [*common, f"train.run_dir={work}/{stage}", f"train.steps={steps[stage]}",
                                      f"dataset.shuffle_seed={1234 + seed}", *extra], world_size=1)

    from megatron.core.models.gpt import GPTModel

    scores: dict[str, float] = {}
    # 2. SFT on correct answers (rows of 64 tokens: ~5 packed examples each)
    sft_rows = [{"instruction": p, "input": "", "output": task.target(p)} for p in sft_prompts]
    task.write_jsonl(work / "sft.jsonl", sft_rows)
    from engine import sft as sft_stage

    cfg_sft = posttrain_cfg("sft", [f"dataset.train={work}/sft.jsonl", f"checkpoint.load={pre_ckpt}",
                                    "model.seq_length=64"])
    base_model = frozen(cfg_sft, GPTModel, pre_ckpt)
    _score(scores, "base", base_model, template, held, vocab, seed)
    del base_model
    s_run = sft_stage.build(cfg_sft)
    _fit("sft", cfg_sft, s_run, progress)
    sft_ckpt = str(s_run.ckpt_dir / f"step_{steps['sft']:06d}")
    _score(scores, "sft", s_run.trainer.model, template, held, vocab, seed)
    lap("sft")
    print(f"[{time.perf_counter() - t_start:.0f}s] base={scores['base']:.3f} sft={scores['sft']:.3f} "
          f"(greedy: base={scores['base_greedy']:.3f} sft={scores['sft_greedy']:.3f})", flush=True)

    # 3. K sampled answers per prompt from the SFT model, ranked by the checker (partial credit, so
    #    ties are rare) → all K(K-1)/2 pairs → reward model
    rows = sample_rankings(s_run.trainer.model, template, rank_prompts[:int(len(rank_prompts) * scale)], K,
                           vocab, seed=3 + 7 * seed)
    task.write_jsonl(work / "ranked.jsonl", rows)
    del s_run
    from engine import reward as reward_stage

    cfg_rm = posttrain_cfg("reward", [f"dataset.train={work}/ranked.jsonl", f"checkpoint.load={sft_ckpt}"])
    r_run = reward_stage.build(cfg_rm)
    scores["rm_acc"] = _fit("reward", cfg_rm, r_run, progress)[-1]["rm_accuracy"]
    rm_ckpt = str(r_run.ckpt_dir / f"step_{steps['reward']:06d}")
    lap("reward")
    print(f"[{time.perf_counter() - t_start:.0f}s] rm_acc={scores['rm_acc']:.3f} "
          f"pairs={r_run.info['train_items']}+{r_run.info['valid_items']}", flush=True)
    del r_run

    # 4. PPO on the learned reward
    task.write_jsonl(work / "prompts.jsonl", [{"prompt": p} for p in ppo_prompts])
    from engine import ppo as ppo_stage

    cfg_ppo = posttrain_cfg("ppo", [f"dataset.train={work}/prompts.jsonl", f"checkpoint.load={sft_ckpt}",
                                    f"ppo.reward_model={rm_ckpt}", f"ppo.critic={sft_ckpt}"])
    p_run = ppo_stage.build(cfg_ppo)
    records = _fit("ppo", cfg_ppo, p_run, progress)
    tail = records[-max(1, len(records) // 4):]
    scores["kl"] = sum(r["kl"] for r in tail) / len(tail)
    scores["kl_target"] = cfg_ppo.ppo.target_kl or 0.0
    _score(scores, "ppo", p_run.trainer.actor.model, template, held, vocab, seed)
    lap("ppo")
    print(f"[{time.perf_counter() - t_start:.0f}s] ppo={scores['ppo']:.3f} kl={scores['kl']:.3f}", flush=True)
    del p_run

    # 5. DPO on the same rankings
    from engine import dpo as dpo_stage

    cfg_dpo = posttrain_cfg("dpo", [f"dataset.train={work}/ranked.jsonl", f"checkpoint.load={sft_ckpt}"])
    d_run = dpo_stage.build(cfg_dpo)
    _fit("dpo", cfg_dpo, d_run, progress)
    _score(scores, "dpo", d_run.trainer.model, template, held, vocab, seed)
    lap("dpo")
    print(f"[{time.perf_counter() - t_start:.0f}s] dpo={scores['dpo']:.3f}", flush=True)
    scores["seconds"] = time.perf_counter() - t_start
    scores.update({f"seconds_{k}": v for k, v in times.items()})
    (work / "summary.json").write_text(json.dumps(
        {"checker_score": {k: round(scores[k], 4) for k in ("base", "sft", "ppo", "dpo")},
         "greedy_exact_match": {k: round(scores[k + "_greedy"], 4) for k in ("base", "sft", "ppo", "dpo")},
         "rm_acc": round(scores["rm_acc"], 4), "kl": round(scores["kl"], 4), "kl_target": scores["kl_target"],
         "seed": seed, "seconds": {k: round(v, 1) for k, v in times.items()}}, indent=2))
    return scores


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/posttrain_check")
    parser.add_argument("--quick", action="store_true", help="half the steps (a smoke run)")
    parser.add_argument("--seed", type=int, default=0, help="another seed: other prompts, inits, samples")
    parser.add_argument("--progress", action="store_true", help="a progress bar per stage")
    args = parser.parse_args(argv)
    s = run(Path(args.work), args.quick, args.seed, args.progress)
    print(f"seed={args.seed} seconds={s['seconds']:.0f} kl_target={s['kl_target']} "
          + " ".join(f"{k}={v:.0f}" for k, v in s.items() if k.startswith("seconds_")))
    print("greedy_exact_match " + " ".join(f"{k}={s[k + '_greedy']:.3f}" for k in ("base", "sft", "ppo", "dpo")))
    print(f"checker_score base={s['base']:.3f} sft={s['sft']:.3f} ppo={s['ppo']:.3f} dpo={s['dpo']:.3f} "
          f"rm_acc={s['rm_acc']:.3f} kl={s['kl']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
