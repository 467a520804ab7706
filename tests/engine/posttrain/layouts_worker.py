"""Run the SFT, reward, DPO and PPO stages for a few steps under several layouts inside ONE launch.

    python tests/engine/posttrain/layouts_worker.py prepare WORK          (world of one: data + init ckpts)
    torchrun --nproc-per-node N tests/engine/posttrain/layouts_worker.py run WORK OUT LAYOUT...

LAYOUT is ``tp1``, ``tp2`` or ``pp2``; rank 0 writes {layout: {stage: [losses...]}} to OUT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# the padded vocab (make_vocab_size_divisible_by × tp) must match, else the softmax differs
LAYOUTS = {"tp1": [], "tp2": ["parallel.tp=2", "model.make_vocab_size_divisible_by=64"], "pp2": ["parallel.pp=2"]}


def _cfg(stage: str, work: Path, extra: list[str]):
    from engine.posttrain.config import load_posttrain_config

    root = Path(__file__).resolve().parents[3] / "configs/posttrain"
    data = {"sft": "sft.jsonl", "reward": "ranked.jsonl", "dpo": "ranked.jsonl", "ppo": "prompts.jsonl"}[stage]
    base = [f"tokenizer.path={work}/tokenizer.json", f"dataset.train={work}/{data}", "train.steps=3",
            f"train.run_dir={work}/{stage}", "checkpoint.save_at_end=false", "train.global_batch_size=16",
            "train.micro_batch_size=8", "dataset.valid_fraction=0.2", "optim.schedule=constant"]
    if stage != "sft" or (work / "init_sft").exists():
        base.append(f"checkpoint.load={work}/init_sft")
    if stage == "ppo":
        base += [f"ppo.reward_model={work}/init_rm", f"ppo.critic={work}/init_rm", "ppo.prompts_per_rollout=16", "ppo.epochs=2",
                 "train.steps=4", "ppo.temperature=0"]
    return load_posttrain_config(stage, root / f"{stage}_sort.yaml", base + extra)


def prepare(work: Path) -> None:
    from engine.stages import reward, sft
    from examples.sorting import task

    task.char_tokenizer(work / "tokenizer.json")
    ps = task.prompts(200, 4, seed=5)
    task.write_jsonl(work / "sft.jsonl", [{"instruction": p, "input": "", "output": task.target(p)} for p in ps])
    task.write_jsonl(work / "ranked.jsonl", [{"prompt": p, "answers": [p, task.target(p), p[:2] + p[:2]]}
                                             for p in ps])
    task.write_jsonl(work / "prompts.jsonl", [{"prompt": p} for p in ps])
    run = sft.build(_cfg("sft", work, []))
    run.trainer.fit()
    run.trainer.save(work / "init_sft_dir")
    (work / "init_sft").symlink_to(work / "init_sft_dir" / "step_000003")
    run = reward.build(_cfg("reward", work, []))
    run.trainer.fit()
    run.trainer.save(work / "init_rm_dir")
    (work / "init_rm").symlink_to(work / "init_rm_dir" / "step_000003")


def run(work: Path, out: Path, layouts: list[str]) -> None:
    import torch.distributed as dist

    from engine.stages import dpo, ppo, reward, sft

    results: dict = {}
    for name in layouts:
        res = results[name] = {}
        for stage, mod in (("sft", sft), ("reward", reward), ("dpo", dpo), ("ppo", ppo)):
            if stage == "ppo" and name == "pp2":
                continue  # rollouts need pp=1
            r = mod.build(_cfg(stage, work, LAYOUTS[name]))
            records = r.trainer.fit()
            key = "policy_loss" if stage == "ppo" else "loss"
            res[stage] = [rec[key] for rec in records]
            if stage == "ppo":
                res["ppo_value"] = [rec["value_loss"] for rec in records]
                res["ppo_reward"] = [rec["reward"] for rec in records]
            else:
                res[f"{stage}_eval"] = r.trainer.evaluate()
            if stage == "reward":
                res["rm_acc"] = r.after_fit()["rm_accuracy"]
    if dist.get_rank() == 0:
        out.write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    else:
        run(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:])
