"""Tokenization throughput: ``dataproc tokenize`` end to end vs the tokenizer's own batch encode.

The peer is the tokenizer alone, on texts already in memory as a Python list (reading them is
not timed), through each of its own batch APIs, one thread: HF ``tokenizers`` ``encode_batch``
and ``encode_batch_fast`` (``TOKENIZERS_PARALLELISM=false``; ours uses ``encode_batch``); tiktoken
``encode_ordinary_batch(num_threads=1)`` and ``encode_to_numpy`` per text. Ratios are against
the fastest of them. Ours is the whole job, launch to exit:
Parquet read and validation, encoding, EOD, ``.bin``/``.idx`` written and merged, with 1 and 2
worker processes. Both count the same tokens (EOD excluded for the peer: it writes none).
With one worker, ours runs in this process like the peer, so the headline ratio is tokens per
CPU-second of this process (robust to other users of the shared cores); two workers are
compared by wall time (their speed-up over one worker). Runs alternate between systems; the
best of ``--repeats`` counts.

    python benchmarks/tokenization.py                    # first 32,000 docs of docs_sections.parquet
    python benchmarks/tokenization.py --docs 0 --repeats 2   # all 62,744 docs (84 MB)
    python benchmarks/tokenization.py --smoke            # 2,000 docs, harness check (temporary folder)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the peer's one thread; set before tokenizers loads

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

from _results import add_output_arg, output_dir, scratch_dir, written  # noqa: E402
from _timing import versions  # noqa: E402

from dataproc.tokenize_stage import run_tokenize  # noqa: E402
from dataproc.tokenizer import TokenizerSpec, load_tokenizer  # noqa: E402
from dataproc.train_tokenizer import train_tokenizer  # noqa: E402

SHARED = ROOT.parent / "shared"
DEFAULT_INPUT = SHARED / "data" / "docs_sections.parquet"
GPT2_RANKS = SHARED / "assets" / "gpt2.tiktoken"


def peers(tok) -> dict[str, object]:
    """The tokenizer's own batch encodes, as its users call them; each returns its token count."""
    if tok.kind == "tiktoken":
        return {"encode_ordinary_batch(num_threads=1)":
                lambda texts: sum(map(len, tok.enc.encode_ordinary_batch(texts, num_threads=1))),
                "encode_to_numpy per text": lambda texts: sum(
                    len(tok.enc.encode_to_numpy(t, disallowed_special=())) for t in texts)}
    return {"encode_batch": lambda texts: sum(len(e.ids) for e in tok.tok.encode_batch(texts, add_special_tokens=False)),
            "encode_batch_fast": lambda texts: sum(
                len(e.ids) for e in tok.tok.encode_batch_fast(texts, add_special_tokens=False))}


def ours(inputs: list[str], prefix: Path, spec: str, workers: int) -> dict:
    return run_tokenize(inputs, str(prefix), TokenizerSpec(spec), workers=workers, overwrite=True,
                        progress=False)


def _timed(fn) -> tuple[float, float, object]:
    """Wall seconds, this process's CPU seconds, result."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def bench_tokenizer(name: str, spec: str, inputs: list[str], texts: list[str], work: Path, repeats: int,
                    worker_counts: list[int]) -> list[dict]:
    """Best-of-``repeats`` wall and CPU seconds of each peer API and of ours at each worker count.

    One tokenizer thread and one worker run in this process, so their CPU seconds compare directly
    (and shrug off other users of the shared cores); more workers are separate processes: wall time.
    """
    peer_fns = peers(load_tokenizer(spec))
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    tokens: dict[str, int] = {}

    def keep(key: str, w: float, c: float) -> None:
        wall[key] = min(wall.get(key, 1e30), w)
        cpu[key] = min(cpu.get(key, 1e30), c)

    for _ in range(repeats):
        for key, fn in peer_fns.items():
            w, c, tokens[key] = _timed(lambda fn=fn: fn(texts))
            keep(key, w, c)
        for n_workers in worker_counts:
            key = f"ours-w{n_workers}"
            w, c, meta = _timed(lambda n=n_workers: ours(inputs, work / f"{name}-w{n}", spec, n))
            keep(key, w, c)
            tokens[key] = meta["tokens"] - meta["documents"]  # without the EOD tokens
    if len(set(tokens.values())) != 1:
        raise RuntimeError(f"{name}: token counts differ between peer and ours: {tokens}")
    for n_workers in worker_counts[1:]:
        a, b = work / f"{name}-w{worker_counts[0]}", work / f"{name}-w{n_workers}"
        for suffix in (".bin", ".idx"):
            if Path(f"{a}{suffix}").read_bytes() != Path(f"{b}{suffix}").read_bytes():
                raise RuntimeError(f"{name}: {suffix} differs between worker counts")
    n = next(iter(tokens.values()))
    best_cpu = max(n / cpu[k] for k in peer_fns)  # the fastest of the tokenizer's own APIs, per CPU-second
    best_wall = max(n / wall[k] for k in peer_fns)
    rows = []
    for key in [*peer_fns, *(f"ours-w{w}" for w in worker_counts)]:
        workers = int(key.rsplit("w", 1)[1]) if key.startswith("ours-w") else 1
        in_process = workers == 1
        rows.append({
            "tokenizer": name,
            "system": f"peer: {key}" if key in peer_fns else "ours: dataproc tokenize, Parquet → .bin/.idx",
            "workers": workers, "tokens": n, "wall_s": round(wall[key], 3),
            "cpu_s": round(cpu[key], 3) if in_process else None,
            "tokens_per_cpu_s": round(n / cpu[key]) if in_process else None,
            "tokens_per_wall_s": round(n / wall[key]),
            "ratio_vs_best_peer_cpu": round(n / cpu[key] / best_cpu, 3) if in_process else None,
            "ratio_vs_best_peer_wall": round(n / wall[key] / best_wall, 3),
            "speedup_vs_1_worker": round(wall[f"ours-w{worker_counts[0]}"] / wall[key], 3)
            if key.startswith("ours") else None})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({r["tokenizer"] for r in rows})
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        sub = [r for r in rows if r["tokenizer"] == name]
        labels = [r["system"].split(": ", 1)[1].replace("(num_threads=1)", "").replace(" per text", "")
                  if r["system"].startswith("peer") else f"ours, {r['workers']} worker(s)" for r in sub]
        vals = [(r["tokens_per_cpu_s"] or r["tokens_per_wall_s"]) / 1e6 for r in sub]
        bars = ax.bar(labels, vals, color=["#999999" if r["system"].startswith("peer") else "#2b6cb0" for r in sub])
        for bar, r in zip(bars, sub, strict=True):
            ratio = r["ratio_vs_best_peer_cpu"] or r["ratio_vs_best_peer_wall"]
            ax.annotate(f"{ratio:.2f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=9)
        ax.set_title(name)
        ax.set_ylabel("M tokens per CPU-s (1 worker) / per s (2)")
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("Tokenization: Parquet → .bin/.idx vs the tokenizer's own batch encode")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--smoke", action="store_true", help="2,000 docs, one repeat: checks the harness")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--docs", type=int, default=32_000,
                    help="documents of --input to use (0: all); more repeats of a shorter run resist noise better")
    ap.add_argument("--vocab-size", type=int, default=32_000, help="BPE vocabulary trained for the run")
    ap.add_argument("--workers", default="1,2", help="worker counts for ours (default 1,2)")
    add_output_arg(ap)
    a = ap.parse_args()

    out = output_dir(a.output_dir, a.smoke, "tokenize")
    stem = "tokenize_smoke" if a.smoke else "tokenize"
    work = scratch_dir(out, stem.replace("_", "-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if a.smoke:
        a.docs, a.repeats, a.vocab_size = 2000, 1, 2048
    inputs = [a.input]
    if a.docs:
        subset = work / f"first-{a.docs}.parquet"
        pq.write_table(pq.read_table(a.input).slice(0, a.docs), subset, row_group_size=2048)
        inputs = [str(subset)]
    texts = pq.read_table(inputs[0], columns=["text"]).column("text").to_pylist()
    bpe = work / f"bpe-{a.vocab_size}.json"
    info = train_tokenizer(inputs, str(bpe), vocab_size=a.vocab_size, progress=False)
    print(f"trained byte-level BPE-{a.vocab_size} on {info['docs']} docs in {info['time_s']:.1f}s")

    specs = [(f"HF BPE-{a.vocab_size // 1000}k" if a.vocab_size >= 1000 else f"HF BPE-{a.vocab_size}", str(bpe))]
    if GPT2_RANKS.exists():
        specs.append(("tiktoken GPT-2", str(GPT2_RANKS)))
    workers = [int(w) for w in a.workers.split(",")]
    rows: list[dict] = []
    for name, spec in specs:
        rows += bench_tokenizer(name, spec, inputs, texts, work, a.repeats, workers)

    print(f"\n{len(texts)} docs from {inputs[0]}")
    print(f"{'tokenizer':<15} {'system':<46} {'wk':>2} {'M tok/CPU-s':>11} {'vs best peer':>12} "
          f"{'M tok/s wall':>12} {'vs peer':>7} {'speed-up':>8}")

    def fmt(v, spec: str, unit: str = "") -> str:
        return "-" if v is None else f"{v:{spec}}{unit}"

    for r in rows:
        cpu_rate = None if r["tokens_per_cpu_s"] is None else r["tokens_per_cpu_s"] / 1e6
        print(f"{r['tokenizer']:<15} {r['system']:<46} {r['workers']:>2} {fmt(cpu_rate, '11.3f')} "
              f"{fmt(r['ratio_vs_best_peer_cpu'], '11.2f', '×'):>12} {r['tokens_per_wall_s'] / 1e6:>12.3f} "
              f"{r['ratio_vs_best_peer_wall']:>6.2f}× {fmt(r['speedup_vs_1_worker'], '7.2f', '×'):>8}")
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    env = {**versions(("tokenizers", "tiktoken", "pyarrow", "numpy", "megatron-core")), "input": a.input, "docs": len(texts), "repeats": a.repeats,
           "date": time.strftime("%Y-%m-%d %H:%M"), "load_avg_1_5_15": [round(x, 1) for x in os.getloadavg()]}
    (out / f"{stem}.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    plot(rows, out / f"{stem}.png")
    print(written(out, a.smoke, f"{stem}.csv/.json/.png"))


if __name__ == "__main__":
    main()
