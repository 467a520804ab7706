"""End-to-end post-training check on a task a program can grade (sorting digit strings), CPU, minutes.

    python -m examples.sorting.posttrain_check [--work runs/posttrain_check] [--quick] [--verbose]
    python -m examples.sorting.posttrain_check --pretrained RUN/pretrain/checkpoints/step_N --tokenizer RUN/tokenizer.json

pretrain briefly (answers are random permutations: the format, not the skill) → SFT on a demonstrator's
answers → sample K answers per prompt from the SFT model, ranked by the checker (``dataset.judge``) →
reward model (Bradley–Terry) → PPO on the learned reward → DPO on the same rankings. Every stage is the
same code ``torchrun -m engine.stages.<stage>`` runs, here in one process (world of one). With ``--pretrained``
and ``--tokenizer`` (``make demo``) the check skips its own pretraining and post-trains that checkpoint
(pretrained on documents mixed with task-format text, by a tokenizer with the chat specials that splits
digits); the model sizes are ``model.preset`` of the posttrain configs, as in the pretraining config.

The demonstrator is sloppy the way human demonstrations are and judgements are not: with probability
``--slip`` (default 0.6) it writes the last two digits of the sorted answer swapped (``examples.sorting.
task.demonstration``), while the checker that ranks answers is exact. That is the case RLHF is for: judging is
easier than demonstrating. SFT, and any amount of continued SFT, can only imitate the demonstrator (at
slip 0.6, the wrong order is the mode, so a colder sampler is worse); the reward model and DPO learn the
ranking. With ``--slip 0`` (perfect, free demonstrations) continued SFT is the stronger method on this task
and the check says so.

A stage's checker score is the exact-match rate of the policy on held-out prompts: SAMPLES answers per
prompt sampled at temperature 1 (the distribution PPO and DPO optimise); its standard error is computed
over prompts (each prompt's mean over its samples; the samples of one prompt are not independent).
Greedy exact match is printed beside it. PPO's critic starts from the SFT weights with a zero value head.

Two controls separate "RL taught the skill" from "RL made the policy more deterministic" and "more
updates": ``sft_T`` samples the SFT model at the temperature whose per-token entropy on the held-out
prompts matches the PPO policy's (``sft_Tdpo``: DPO's), found by bisection; ``sft_cont`` continues SFT
for as many optimizer updates as PPO with PPO's learning-rate schedule (warmup + cosine), on the
demonstrator's answers to the SFT and PPO prompts (the same demonstrator: more of the data SFT had). PPO (DPO) beats the controls when its score exceeds each control's
by more than 2 standard errors of the per-prompt paired difference. The last line printed is

    checker_score base=X sft=X ppo=X dpo=X rm_acc=X kl=X sft_T=X (T=X) sft_Tdpo=X (T=X) sft_cont=X
        se=base:X,sft:X,... beats_controls=ppo:yes|no,dpo:yes|no
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DIGITS = 4
N_HELD = 200  # held-out prompts the checker grades
SLIP = 0.6  # the demonstrator swaps the last two digits of its answer with this probability
K = 8  # sampled answers per ranking prompt
SAMPLES = 8  # answers per held-out prompt drawn from each policy for its checker score
# SFT runs to convergence (the demonstrator's ceiling), so continued SFT is a fair control
STEPS = {"pretrain": 200, "sft": 1000, "reward": 1200, "ppo": 384, "dpo": 120}
STAGES = ("base", "sft", "ppo", "dpo", "sft_T", "sft_Tdpo", "sft_cont")
CONTROLS = (("ppo", "sft_T"), ("ppo", "sft_cont"), ("dpo", "sft_Tdpo"), ("dpo", "sft_cont"))


def _write_pretrain_tokens(work: Path, template: object, n_docs: int, seed: int) -> str:
    import numpy as np
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    from examples.sorting import task

    prefix = str(work / "pretrain_tokens")
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.int32)
    for p, shuffled in task.format_examples(n_docs, DIGITS, seed):
        ids = template.prompt([{"role": "user", "content": p}]) + template.answer(shuffled) + [0]
        builder.add_item(torch.tensor(ids, dtype=torch.int32))
        builder.end_document()
    builder.finalize(prefix + ".idx")
    return prefix


def prompt_scores(model: list, template: object, prompts: list[str], vocab_size: int, samples: int = 0,
                  seed: int = 0, temperature: float = 1.0) -> tuple[list[float], float]:
    """Each prompt's exact-match rate over ``samples`` answers drawn at ``temperature`` (``samples=0``:
    one greedy answer), and the mean per-token entropy (nats) of the sampling distribution."""
    import torch

    from engine.generate import generate
    from examples.sorting import task

    k = max(samples, 1)
    asked = [p for p in prompts for _ in range(k)]
    ids = [template.prompt([{"role": "user", "content": p}]) for p in asked]
    out = generate(model[0], ids, DIGITS + 2, template.end_id, vocab_size,
                   temperature=temperature if samples else 0.0, generator=torch.Generator().manual_seed(seed))
    hits = [task.exact(p, template.decode(r)) for p, r in zip(asked, out.responses, strict=True)]
    return [sum(hits[i * k:(i + 1) * k]) / k for i in range(len(prompts))], out.entropy


def checker_score(stage_model: list, template: object, prompts: list[str], vocab_size: int,
                  samples: int = 0, seed: int = 0) -> float:
    """The checker's exact-match rate on ``prompts``: of the policy itself (``samples`` answers per prompt
    drawn at temperature 1, the distribution RLHF optimises), or of greedy answers (``samples=0``)."""
    per_prompt, _ = prompt_scores(stage_model, template, prompts, vocab_size, samples, seed)
    return sum(per_prompt) / len(per_prompt)


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample standard deviation / sqrt(n))."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / max(n - 1, 1)
    return mean, math.sqrt(var / n)


def paired_se(a: list[float], b: list[float]) -> float:
    """Standard error of mean(a) - mean(b) when a[i] and b[i] belong to the same prompt."""
    return mean_se([x - y for x, y in zip(a, b, strict=True)])[1]


def matched_temperature(model: list, template: object, prompts: list[str], vocab_size: int, target: float,
                        seed: int, lo: float = 0.05, hi: float = 2.0, iters: int = 10) -> tuple[float, float]:
    """The sampling temperature at which ``model``'s mean per-token entropy on ``prompts`` is ``target``
    (bisection; entropy grows with temperature), and the entropy reached. Clipped to [lo, hi]."""
    def entropy(t: float) -> float:  # 2 answers per prompt: the mean over ~2,000 tokens is precise enough
        return prompt_scores(model, template, prompts, vocab_size, 2, seed, temperature=t)[1]

    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if entropy(mid) < target else (lo, mid)
    t = 0.5 * (lo + hi)
    return t, entropy(t)


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
    """The stages' own fit path (``engine.stages.common.fit_and_close`` + ``fit_run``) in this process:
    ``<train.run_dir>/metrics.jsonl`` + ``run.json``, a stage's final metrics (the reward model's accuracy)
    as one last record; the process group stays up for the next stage. A NaN/Inf loss exits with 3."""
    from engine.stages.common import fit_and_close, fit_run

    records: list[dict] = []
    header = {"stage": name, "config": cfg.to_dict(), "world_size": 1}
    status = fit_and_close(cfg, 0, header, lambda logger: records.extend(fit_run(run, logger)),
                           progress=progress, desc=name, teardown=False, summary=False)
    if status:
        raise SystemExit(status)
    return records


def _stats(scores: dict, per_prompt: dict[str, list[float]]) -> None:
    """Means, per-prompt standard errors and the verdict of PPO/DPO against both controls."""
    for name, values in per_prompt.items():
        scores[name], scores["se_" + name] = mean_se(values)
    for method in ("ppo", "dpo"):
        scores[f"beats_{method}"] = 1.0
    for method, control in CONTROLS:
        diff = scores[method] - scores[control]
        se = paired_se(per_prompt[method], per_prompt[control])
        scores[f"diff_{method}_{control}"], scores[f"diff_se_{method}_{control}"] = diff, se
        if not diff > 2 * se:
            scores[f"beats_{method}"] = 0.0


def run(work: Path, quick: bool = False, seed: int = 0, progress: bool = False, pretrained: str | None = None,
        tokenizer: str | None = None, steps: dict[str, int] | None = None, slip: float = SLIP) -> dict[str, float]:
    """The whole check in ``work``; ``seed`` changes every prompt set, initialisation and sample; ``slip`` is
    the demonstrator's error rate (the SFT data).
    ``pretrained`` + ``tokenizer``: post-train that checkpoint (skip the pretraining). ``steps`` overrides
    stage step counts. Each stage writes ``work/<stage>/metrics.jsonl``; the scores go to ``work/summary.json``."""
    from engine.config import load_config
    from engine.posttrain.config import TemplateConfig, load_posttrain_config
    from engine.posttrain.template import ChatTemplate
    from engine.stages.common import frozen, setup
    from examples.sorting import task

    t_start = time.perf_counter()
    times: dict[str, float] = {}

    def lap(name: str) -> None:
        times[name] = time.perf_counter() - t_start - sum(times.values())

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:.0f}s] {msg}", flush=True)

    work.mkdir(parents=True, exist_ok=True)
    if (pretrained is None) != (tokenizer is None):
        raise ValueError("--pretrained and --tokenizer go together (the checkpoint's own tokenizer)")
    tok = Path(tokenizer) if tokenizer else task.char_tokenizer(work / "tokenizer.json")
    template = ChatTemplate(tok, TemplateConfig())
    held = task.prompts(N_HELD, DIGITS, seed=999 + 7 * seed)
    held_set = set(held)
    train_prompts = [p for p in task.prompts(8000, DIGITS, seed=1 + 7 * seed) if p not in held_set]
    sft_prompts, rank_prompts, ppo_prompts = train_prompts[:3000], train_prompts[3000:4200], train_prompts[4200:]
    common = [f"tokenizer.path={tok}", "model.seq_length=16", "train.progress=false",
              "logging.tensorboard=false", "checkpoint.resume=false", "train.precision=fp32",
              f"train.seed={1234 + seed}"]
    scale = 0.5 if quick else 1.0
    steps = {**{k: max(4, int(v * scale)) for k, v in STEPS.items()}, **(steps or {})}

    # 1. pretraining: the engine's own pretrain path on task-formatted text with shuffled answers
    if pretrained is None:
        from engine.stages.pretrain import build_run

        prefix = _write_pretrain_tokens(work, template, 4000, seed=2 + 7 * seed)
        cfg = load_config(ROOT / "configs/pretrain/tiny_cpu.yaml",
                          [*common, f"data.prefix={prefix}", f"train.run_dir={work}/pretrain",
                           f"train.steps={steps['pretrain']}", "train.global_batch_size=32",
                           "train.micro_batch_size=32", "optim.warmup_steps=0", "train.eval_every=0",
                           "checkpoint.save_every=0"], world_size=1)
        pre = build_run(cfg, resume=False)
        _fit("pretrain", cfg, pre, progress)
        pre_ckpt = str(pre.ckpt_dir / f"step_{steps['pretrain']:06d}")
        del pre
    else:
        pre_ckpt = _checkpoint(pretrained)
    lap("pretrain")

    def posttrain_cfg(stage: str, extra: list[str], name: str | None = None) -> object:
        name = name or stage
        return load_posttrain_config(stage, ROOT / f"configs/posttrain/{stage}_sort.yaml",
                                     [*common, f"train.run_dir={work}/{name}", f"train.steps={steps[stage]}",
                                      f"dataset.shuffle_seed={1234 + seed}", *extra], world_size=1)

    from megatron.core.models.gpt import GPTModel

    scores: dict[str, float] = {}
    per_prompt: dict[str, list[float]] = {}
    entropy: dict[str, float] = {}

    def score(name: str, model: list, temperature: float = 1.0) -> None:
        per_prompt[name], entropy[name] = prompt_scores(model, template, held, vocab, SAMPLES, seed, temperature)
        scores[name] = sum(per_prompt[name]) / len(held)
        if temperature == 1.0:
            scores[name + "_greedy"] = checker_score(model, template, held, vocab)

    # 2. SFT on correct answers (rows of 64 tokens: ~5 packed examples each)
    import random

    demonstrator = random.Random(5 + 7 * seed)
    sft_rows = [{"instruction": p, "input": "", "output": task.demonstration(p, demonstrator, slip)}
                for p in sft_prompts]
    task.write_jsonl(work / "sft.jsonl", sft_rows)
    from engine.stages import sft as sft_stage

    cfg_sft = posttrain_cfg("sft", [f"dataset.train={work}/sft.jsonl", f"checkpoint.load={pre_ckpt}",
                                    "model.seq_length=64"])
    vocab = cfg_sft.tokenizer.vocab_size
    if pretrained is not None:  # no pretraining here: start the process group and parallel state
        setup(cfg_sft)
    base_model = frozen(cfg_sft, GPTModel, pre_ckpt)
    score("base", base_model)
    del base_model
    s_run = sft_stage.build(cfg_sft)
    _fit("sft", cfg_sft, s_run, progress)
    sft_ckpt = str(s_run.ckpt_dir / f"step_{steps['sft']:06d}")
    score("sft", s_run.trainer.model)
    lap("sft")
    say(f"base={scores['base']:.3f} sft={scores['sft']:.3f} "
        f"(greedy: base={scores['base_greedy']:.3f} sft={scores['sft_greedy']:.3f})")

    # 3. K sampled answers per prompt from the SFT model, ranked by the checker → all K(K-1)/2 pairs
    #    → reward model
    rows = sample_rankings(s_run.trainer.model, template, rank_prompts[:int(len(rank_prompts) * scale)], K,
                           vocab, seed=3 + 7 * seed)
    task.write_jsonl(work / "ranked.jsonl", rows)
    del s_run
    from engine.stages import reward as reward_stage

    cfg_rm = posttrain_cfg("reward", [f"dataset.train={work}/ranked.jsonl", f"checkpoint.load={sft_ckpt}"])
    r_run = reward_stage.build(cfg_rm)
    scores["rm_acc"] = _fit("reward", cfg_rm, r_run, progress)[-1]["rm_accuracy"]
    rm_ckpt = str(r_run.ckpt_dir / f"step_{steps['reward']:06d}")
    lap("reward")
    say(f"rm_acc={scores['rm_acc']:.3f} pairs={r_run.info['train_items']}+{r_run.info['valid_items']}")
    del r_run

    # 4. PPO on the learned reward
    task.write_jsonl(work / "prompts.jsonl", [{"prompt": p} for p in ppo_prompts])
    from engine.stages import ppo as ppo_stage

    cfg_ppo = posttrain_cfg("ppo", [f"dataset.train={work}/prompts.jsonl", f"checkpoint.load={sft_ckpt}",
                                    f"ppo.reward_model={rm_ckpt}", f"ppo.critic={sft_ckpt}"])
    p_run = ppo_stage.build(cfg_ppo)
    records = _fit("ppo", cfg_ppo, p_run, progress)
    tail = [r for r in records[-max(1, len(records) // 4):] if "kl" in r]
    scores["kl"] = sum(r["kl"] for r in tail) / max(len(tail), 1)
    scores["kl_target"] = cfg_ppo.ppo.target_kl or 0.0
    score("ppo", p_run.trainer.actor.model)
    lap("ppo")
    say(f"ppo={scores['ppo']:.3f} kl={scores['kl']:.3f} entropy={entropy['ppo']:.3f}")
    del p_run

    # 5. DPO on the same rankings
    from engine.stages import dpo as dpo_stage

    cfg_dpo = posttrain_cfg("dpo", [f"dataset.train={work}/ranked.jsonl", f"checkpoint.load={sft_ckpt}"])
    d_run = dpo_stage.build(cfg_dpo)
    _fit("dpo", cfg_dpo, d_run, progress)
    score("dpo", d_run.trainer.model)
    lap("dpo")
    say(f"dpo={scores['dpo']:.3f} entropy={entropy['dpo']:.3f}")
    del d_run

    # 6. controls. (a) the SFT model sampled at the temperature matching the PPO (DPO) policy's entropy:
    #    a sharper SFT sampler, no new training
    sft_model = frozen(cfg_sft, GPTModel, sft_ckpt)
    for name, method in (("sft_T", "ppo"), ("sft_Tdpo", "dpo")):
        t, _ = matched_temperature(sft_model, template, held, vocab, entropy[method], seed)
        scores["T_" + method] = t
        score(name, sft_model, temperature=t)
    del sft_model
    lap("matched_T")
    say(f"sft_T={scores['sft_T']:.3f} (T={scores['T_ppo']:.3f}, entropy {entropy['sft_T']:.3f}) "
        f"sft_Tdpo={scores['sft_Tdpo']:.3f} (T={scores['T_dpo']:.3f}, entropy {entropy['sft_Tdpo']:.3f})")
    # (b) SFT continued for PPO's number of optimizer updates with PPO's learning-rate schedule, on the
    #     demonstrator's answers to the SFT and PPO prompts (PPO itself only sees a learned reward)
    cont_rows = sft_rows + [{"instruction": p, "input": "", "output": task.demonstration(p, demonstrator, slip)}
                            for p in ppo_prompts]
    task.write_jsonl(work / "sft_cont.jsonl", cont_rows)
    o = cfg_ppo.optim
    cfg_cont = posttrain_cfg("sft", [f"dataset.train={work}/sft_cont.jsonl", f"checkpoint.load={sft_ckpt}",
                                     "model.seq_length=64", f"train.steps={cfg_ppo.train.steps}",
                                     f"optim.lr={o.lr}", f"optim.min_lr={o.min_lr}", f"optim.schedule={o.schedule}",
                                     f"optim.warmup_steps={o.warmup_steps}"], name="sft_cont")
    c_run = sft_stage.build(cfg_cont)
    _fit("sft_cont", cfg_cont, c_run, progress)
    score("sft_cont", c_run.trainer.model)
    del c_run
    lap("sft_cont")
    say(f"sft_cont={scores['sft_cont']:.3f} ({cfg_cont.train.steps} updates)")

    _stats(scores, per_prompt)
    scores["seconds"] = time.perf_counter() - t_start
    scores.update({f"seconds_{k}": v for k, v in times.items()})
    r4 = {k: round(v, 4) for k, v in scores.items()}
    (work / "summary.json").write_text(json.dumps(
        {"checker_score": {k: r4[k] for k in STAGES},
         "standard_error": {k: r4["se_" + k] for k in STAGES},
         "greedy_exact_match": {k: r4[k + "_greedy"] for k in ("base", "sft", "ppo", "dpo", "sft_cont")},
         "entropy": {k: round(v, 4) for k, v in entropy.items()},
         "matched_temperature": {"ppo": r4["T_ppo"], "dpo": r4["T_dpo"]},
         "controls": {f"{m}-{c}": {"diff": r4[f"diff_{m}_{c}"], "paired_se": r4[f"diff_se_{m}_{c}"]}
                      for m, c in CONTROLS},
         "beats_controls": {m: bool(scores["beats_" + m]) for m in ("ppo", "dpo")},
         "sft_cont_updates": cfg_cont.train.steps, "samples_per_prompt": SAMPLES, "held_out_prompts": N_HELD,
         "rm_acc": r4["rm_acc"], "kl": r4["kl"], "kl_target": scores["kl_target"], "pretrained": pre_ckpt,
         "tokenizer": str(tok), "seed": seed, "steps": steps, "demonstrator_slip": slip,
         "seconds": {k: round(v, 1) for k, v in times.items()}}, indent=2))
    return scores


def _checkpoint(path: str) -> str:
    """A checkpoint directory, or the newest one of a checkpoints directory or of a run directory."""
    from engine import checkpoint

    for d in (Path(path), Path(path) / "checkpoints"):
        found = checkpoint.latest(d)
        if found is not None:
            return str(found)
    if not Path(path).is_dir():
        raise FileNotFoundError(f"--pretrained {path}: no such checkpoint")
    return path


def _steps(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key not in STEPS or not value.isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: expected STAGE=N with STAGE in {', '.join(STEPS)}")
        out[key] = int(value)
    return out


def checker_line(s: dict[str, float]) -> str:
    """The summary line: the four stages, the reward model, KL, the controls, per-prompt SEs, the verdict."""
    se = ",".join(f"{k}:{s['se_' + k]:.3f}" for k in STAGES)
    verdict = ",".join(f"{m}:{'yes' if s['beats_' + m] else 'no'}" for m in ("ppo", "dpo"))
    return (f"checker_score base={s['base']:.3f} sft={s['sft']:.3f} ppo={s['ppo']:.3f} dpo={s['dpo']:.3f} "
            f"rm_acc={s['rm_acc']:.3f} kl={s['kl']:.3f} sft_T={s['sft_T']:.3f} (T={s['T_ppo']:.2f}) "
            f"sft_Tdpo={s['sft_Tdpo']:.3f} (T={s['T_dpo']:.2f}) sft_cont={s['sft_cont']:.3f} "
            f"se={se} beats_controls(>2se)={verdict}")


def main(argv: list[str] | None = None) -> int:
    import os

    from engine.stages.common import add_verbose, guarded, parse_args

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/posttrain_check")
    parser.add_argument("--quick", action="store_true", help="half the steps (a smoke run)")
    parser.add_argument("--seed", type=int, default=0, help="another seed: other prompts, inits, samples")
    parser.add_argument("--progress", action="store_true", help="a progress bar per stage")
    parser.add_argument("--pretrained", default=None, help="post-train this pretraining checkpoint, or the newest "
                        "of a run directory (no own pretraining); needs --tokenizer, the one of its data")
    parser.add_argument("--tokenizer", default=None, help="tokenizer.json with the chat special tokens")
    parser.add_argument("--slip", type=float, default=SLIP,
                        help=f"the demonstrator's error rate: last two digits swapped (default {SLIP}; 0: perfect)")
    parser.add_argument("--steps", type=_steps, default=None,
                        help="stage step counts, e.g. sft=150,reward=600,ppo=192,dpo=60 (default "
                        + ",".join(f"{k}={v}" for k, v in STEPS.items()) + ")")
    add_verbose(parser)
    args = parse_args(parser, argv)
    if not 0.0 <= args.slip <= 1.0:
        parser.error(f"--slip {args.slip}: must be in [0, 1]")

    def body() -> int:
        s = run(Path(args.work), args.quick, args.seed, args.progress, args.pretrained, args.tokenizer,
                args.steps, args.slip)
        print(f"seed={args.seed} seconds={s['seconds']:.0f} kl_target={s['kl_target']} "
              + " ".join(f"{k}={v:.0f}" for k, v in s.items() if k.startswith("seconds_")))
        print("greedy_exact_match " + " ".join(f"{k}={s[k + '_greedy']:.3f}"
                                               for k in ("base", "sft", "ppo", "dpo", "sft_cont")))
        print(checker_line(s))
        return 0

    return guarded(body)


if __name__ == "__main__":
    sys.exit(main())
