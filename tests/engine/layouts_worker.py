"""Run several TP/PP/DP layouts inside ONE torchrun launch (start-up is most of a tiny run's cost).

    torchrun --nproc-per-node N tests/engine/layouts_worker.py SPEC.json

SPEC.json: {"base": [overrides...], "out": path, "init": checkpoint to start every layout from,
"layouts": {name: [overrides...]}, "reshard": optional {"from": [...], "to": [[...], ...], "dir": path}}.
Between layouts only megatron's model-parallel groups are rebuilt (re-creating the default gloo group
hangs). Rank 0 writes {name: {"losses": [...], "eval_loss": x}} and the reshard eval losses to "out".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _run(base: list[str], extra: list[str]):
    from engine.config import load_config
    from engine.stages.pretrain import build_run

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs/pretrain/tiny_cpu.yaml", base + extra)
    return build_run(cfg, resume=False)


def main() -> None:
    import torch.distributed as dist

    spec = json.loads(Path(sys.argv[1]).read_text())
    base = [*spec["base"], f"checkpoint.load={spec['init']}"]
    results: dict = {}
    for name, extra in spec.get("layouts", {}).items():
        run = _run(base, extra)
        records = run.trainer.fit()
        results[name] = {"losses": [r["loss"] for r in records], "eval_loss": records[-1].get("eval_loss")}
    if "reshard" in spec:
        from engine import checkpoint

        r = spec["reshard"]
        run = _run(base, r["from"])
        run.trainer.fit()
        results["reshard_from"] = run.trainer.evaluate()
        path = run.trainer.save(r["dir"])
        results["reshard_to"] = []
        for layout in r["to"]:
            run = _run(spec["base"], layout)
            checkpoint.load(path, run.trainer.model, run.trainer.optimizer, run.trainer.scheduler)
            results["reshard_to"].append(run.trainer.evaluate())
    if dist.get_rank() == 0:
        Path(spec["out"]).write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
