"""CPU step time: the engine (megatron-core, TP=PP=DP=1, fp32) vs a plain PyTorch model of the same architecture.

Both do the same work per optimizer step: the same micro-batches of real tokens, forward + backward per
micro-batch, gradient clipping and one AdamW step. Times are best-of-``--repeats`` medians measured in
one process, interleaved, on this (noisy, shared) machine; the target is engine time / reference time ≤ 1.3.

    python benchmarks/train_cpu.py [--smoke] [--data PREFIX --tokenizer tokenizer.json]

Without ``--data`` it tokenizes ``../shared/data/tiny_sections.parquet`` first (as the tests do).
Writes ``train_cpu.csv`` to ``--output-dir`` (default ``benchmarks/results``; ``--smoke``: a
temporary folder, with the smoke run's scratch files).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import add_output_arg, output_dir, scratch_dir, written  # noqa: E402

# (name, overrides) — the tiny preset and a wider one where matmuls dominate
SHAPES = [
    ("tiny h64 L4 s128", []),
    ("small h256 L4 s256", ["model.hidden_size=256", "model.ffn_hidden_size=768", "model.seq_length=256"]),
]


def _data(args: argparse.Namespace, out_dir: Path) -> tuple[str, str]:
    if args.data:
        return args.data, args.tokenizer
    from tests.engine.conftest import build_token_prefix

    out = scratch_dir(out_dir, "train_cpu_tokens")
    if not (out / "tokens.idx").exists():
        build_token_prefix(ROOT.parent / "shared" / "data" / "tiny_sections.parquet", out)
    return str(out / "tokens"), str(out / "tokenizer.json")


def _median_step(fn, steps: int) -> float:
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_shape(name: str, overrides: list[str], prefix: str, tok: str, steps: int, repeats: int,
                run_dir: Path) -> dict:
    import torch

    from engine.config import load_config
    from engine.model import unwrap
    from engine.stages.pretrain import build_run
    from tests.engine.reference_model import ReferenceLlama

    cfg = load_config(ROOT / "configs/pretrain/tiny_cpu.yaml", [
        f"data.prefix={prefix}", f"tokenizer.path={tok}", "tokenizer.vocab_size=null", "tokenizer.eod_id=null",
        f"train.run_dir={run_dir}", f"train.steps={10 * steps * repeats + 10}", "train.progress=false",
        "checkpoint.resume=false", "optim.warmup_steps=0", "optim.schedule=constant", *overrides],
        world_size=1)
    run = build_run(cfg)
    trainer, m, o = run.trainer, cfg.model, cfg.optim
    state = {k: v.detach().clone() for k, v in unwrap(trainer.model[0]).state_dict().items()
             if isinstance(v, torch.Tensor)}
    ref = ReferenceLlama.from_megatron(state, m.num_layers, m.num_attention_heads, m.num_query_groups,
                                       m.norm_epsilon, m.rotary_base)
    decay = [p for p in ref.parameters() if p.ndim > 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                             {"params": [p for p in ref.parameters() if p.ndim == 1], "weight_decay": 0.0}],
                            lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    micro = trainer.task.batches.train_step(0)
    n_tokens = sum(int(b["loss_mask"].sum()) for b in micro)

    def ref_step() -> None:
        for b in micro:
            logits = ref(b["tokens"])
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), b["labels"].flatten(),
                                                     reduction="sum") / n_tokens
            loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), o.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up both
        trainer.train_step()
        ref_step()
    engine_t, ref_t = [], []
    for _ in range(repeats):  # interleaved so machine noise hits both alike
        engine_t.append(_median_step(trainer.train_step, steps))
        ref_t.append(_median_step(ref_step, steps))
    e, r = min(engine_t), min(ref_t)
    return {"shape": name, "tokens_per_step": n_tokens, "engine_ms": round(e * 1e3, 2),
            "reference_ms": round(r * 1e3, 2), "ratio": round(e / r, 3),
            "engine_tok_s": round(n_tokens / e), "reference_tok_s": round(n_tokens / r)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shape, few steps")
    parser.add_argument("--data", help="a .bin/.idx prefix (default: tokenize tiny_sections)")
    parser.add_argument("--tokenizer", help="its tokenizer.json")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    add_output_arg(parser)
    args = parser.parse_args()
    import megatron.core
    import torch

    out_dir = output_dir(args.output_dir, args.smoke, "train_cpu")
    prefix, tok = _data(args, out_dir)
    shapes = SHAPES[:1] if args.smoke else SHAPES
    steps, repeats = (3, 2) if args.smoke else (args.steps, args.repeats)
    rows = []
    for i, (name, overrides) in enumerate(shapes):
        rows.append(bench_shape(name, overrides, prefix, tok, steps, repeats, scratch_dir(out_dir, f"train_cpu_{i}")))
    meta = {"torch": torch.__version__, "megatron_core": megatron.core.__version__,
            "machine": f"{platform.machine()} {os.cpu_count()} cpus", "threads": torch.get_num_threads()}
    print(f"{'shape':22} {'tok/step':>9} {'engine ms':>10} {'torch ms':>9} {'ratio':>6}  (target <= 1.3)")
    for r in rows:
        print(f"{r['shape']:22} {r['tokens_per_step']:>9} {r['engine_ms']:>10} {r['reference_ms']:>9} "
              f"{r['ratio']:>6}")
    print(", ".join(f"{k}={v}" for k, v in meta.items()))
    out = out_dir / ("train_cpu_smoke.csv" if args.smoke else "train_cpu.csv")
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], *meta])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, **meta})
    print(written(out_dir, args.smoke, out.name))


if __name__ == "__main__":
    main()
