"""Load converted checkpoints under several layouts inside ONE torchrun launch and record the logits.

    torchrun --nproc-per-node 2 tests/engine/convert_worker.py SPEC.json

SPEC.json: {"tokens": [[...], ...], "out": path.pt, "layouts": {name: {"checkpoint": dir,
"overrides": [...]}}, "perturb": optional {"layout": name, "dir": checkpoints root}}. Each layout builds the
model from ``configs/pretrain/tiny_cpu.yaml`` plus its overrides (``model.preset=CKPT/model.yaml`` ...),
loads the checkpoint with ``checkpoint.load_weights`` and runs a forward-only pipeline pass. ``perturb``
then changes that layout's weights elementwise, saves them with ``checkpoint.save`` under the layout
(a checkpoint written by TP/PP-sharded ranks, for export) and records the new logits. Rank 0 writes
``{name: logits [b, s, padded vocab]}`` (and ``"perturbed"``) to ``out``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _build(overrides: list[str]) -> tuple[Any, list[Any]]:
    from engine.config import load_config
    from engine.model import build_model
    from engine.parallel import init_distributed, seed_everything, setup_model_parallel

    cfg = load_config(ROOT / "configs/pretrain/tiny_cpu.yaml", ["data.prefix=unused", *overrides],
                      check_files=False)
    init_distributed()
    setup_model_parallel(cfg.parallel)
    seed_everything(1)
    return cfg, build_model(cfg, wrap_ddp=False)


def _logits(model: list[Any], tokens: Any) -> Any:
    """Full-vocabulary logits on every rank (gathered over TP, broadcast from the last pipeline stage)."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core import tensor_parallel
    from megatron.core.pipeline_parallel import get_forward_backward_func

    b, s = tokens.shape
    positions = torch.arange(s).expand(b, -1)
    kept: list[Any] = []

    def step(data_iterator: Any, chunk: Any) -> Any:
        next(data_iterator)
        out = chunk(tokens, positions, None)

        def report(o: Any) -> tuple:
            kept.append(tensor_parallel.gather_from_tensor_model_parallel_region(o.detach()))
            return o.sum() * 0.0, torch.tensor(1, dtype=torch.int), {}

        return out, report

    for m in model:
        m.eval()
    with torch.no_grad():
        get_forward_backward_func()(forward_step_func=step, data_iterator=iter([None]), model=model[0],
                                    num_microbatches=1, seq_length=s, micro_batch_size=b, forward_only=True)
    if ps.get_pipeline_model_parallel_world_size() == 1:
        return kept[0]
    group, last = ps.get_pipeline_model_parallel_group(), ps.get_pipeline_model_parallel_last_rank()
    shape = torch.tensor(list(kept[0].shape) if kept else [0, 0, 0])
    dist.broadcast(shape, last, group=group)
    logits = kept[0].contiguous() if kept else torch.empty(*shape.tolist())
    dist.broadcast(logits, last, group=group)
    return logits


def main() -> None:
    import torch
    import torch.distributed as dist

    from engine import checkpoint

    spec = json.loads(Path(sys.argv[1]).read_text())
    tokens = torch.tensor(spec["tokens"])
    results: dict[str, Any] = {}
    for name, layout in spec["layouts"].items():
        _, model = _build(layout["overrides"])
        checkpoint.load_weights(layout["checkpoint"], model, None)
        results[name] = _logits(model, tokens)
        if spec.get("perturb", {}).get("layout") == name:
            with torch.no_grad():
                for m in model:
                    for p in m.parameters():
                        p.mul_(0.75).add_(0.01)
            checkpoint.save(spec["perturb"]["dir"], 3, model, None, None)
            results["perturbed"] = _logits(model, tokens)
    if dist.get_rank() == 0:
        torch.save(results, spec["out"])
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
