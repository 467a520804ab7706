"""Tokenization throughput: ``dataproc tokenize`` end to end vs the tokenizer's own batch encode.

The peer is the tokenizer alone, on texts already in memory as a Python list (reading them is
not timed), through each of its own batch APIs, one thread: HF ``tokenizers`` ``encode_batch``
and ``encode_batch_fast`` (``TOKENIZERS_PARALLELISM=false``); tiktoken
``encode_ordinary_batch(num_threads=1)`` and ``encode_to_numpy`` per text. Ratios are against
the fastest of them. Ours is the whole job, launch to exit:
Parquet read and validation, encoding, EOD, ``.bin``/``.idx`` written and merged, with 1 and 2
worker processes. Both count the same tokens (EOD excluded for the peer: it writes none).
Runs alternate between systems; the best of ``--repeats`` counts (the machine is shared).

    python benchmarks/tokenization.py            # docs_sections.parquet (62,744 docs, 84 MB)
    python benchmarks/tokenization.py --smoke    # 2,000 docs, harness check
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the peer's one thread; set before tokenizers loads

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

from dataproc.tokenize_stage import run_tokenize  # noqa: E402
from dataproc.tokenizer import TokenizerSpec, load_tokenizer  # noqa: E402
from dataproc.train_tokenizer import train_tokenizer  # noqa: E402

SHARED = ROOT.parent / "shared"
DEFAULT_INPUT = SHARED / "data" / "docs_sections.parquet"
GPT2_RANKS = SHARED / "assets" / "gpt2.tiktoken"
RESULTS = ROOT / "benchmarks" / "results"


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
                        progress=False, min_unit_rows=8192)


def bench_tokenizer(name: str, spec: str, inputs: list[str], texts: list[str], work: Path, repeats: int,
                    worker_counts: list[int]) -> list[dict]:
    peer_fns = peers(load_tokenizer(spec))
    best: dict[str, float] = {}
    tokens: dict[str, int] = {}
    for _ in range(repeats):
        for key, fn in peer_fns.items():
            t0 = time.perf_counter()
            tokens[key] = fn(texts)
            best[key] = min(best.get(key, 1e30), time.perf_counter() - t0)
        for w in worker_counts:
            key = f"ours-w{w}"
            t0 = time.perf_counter()
            meta = ours(inputs, work / f"{name}-w{w}", spec, w)
            best[key] = min(best.get(key, 1e30), time.perf_counter() - t0)
            tokens[key] = meta["tokens"] - meta["documents"]  # without the EOD tokens
    if len({tokens[k] for k in tokens}) != 1:
        raise RuntimeError(f"{name}: token counts differ between peer and ours: {tokens}")
    for w in worker_counts[1:]:
        a, b = work / f"{name}-w{worker_counts[0]}", work / f"{name}-w{w}"
        for suffix in (".bin", ".idx"):
            if Path(f"{a}{suffix}").read_bytes() != Path(f"{b}{suffix}").read_bytes():
                raise RuntimeError(f"{name}: {suffix} differs between worker counts")
    n = next(iter(tokens.values()))
    peer_rate = max(n / best[k] for k in peer_fns)  # the fastest of the tokenizer's own APIs
    rows = [{"tokenizer": name, "system": f"peer: {k}", "workers": 1, "tokens": n,
             "seconds": round(best[k], 3), "tokens_per_s": round(n / best[k]),
             "ratio_vs_best_peer": round(n / best[k] / peer_rate, 3)} for k in peer_fns]
    for w in worker_counts:
        s = best[f"ours-w{w}"]
        rows.append({"tokenizer": name, "system": "ours: dataproc tokenize, Parquet → .bin/.idx", "workers": w,
                     "tokens": n, "seconds": round(s, 3), "tokens_per_s": round(n / s),
                     "ratio_vs_best_peer": round(n / s / peer_rate, 3)})
    return rows


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    for dist in ("tokenizers", "tiktoken", "pyarrow", "numpy", "megatron-core"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


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
        vals = [r["tokens_per_s"] / 1e6 for r in sub]
        bars = ax.bar(labels, vals, color=["#999999" if r["system"].startswith("peer") else "#2b6cb0" for r in sub])
        for bar, r in zip(bars, sub, strict=True):
            ax.annotate(f"{r['ratio_vs_best_peer']:.2f}×", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=9)
        ax.set_title(name)
        ax.set_ylabel("M tokens/s")
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("Tokenization: Parquet → .bin/.idx vs the tokenizer's own batch encode")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=str(DEFAULT_INPUT))
    ap.add_argument("--smoke", action="store_true", help="2,000 docs, one repeat: checks the harness")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vocab-size", type=int, default=32_000, help="BPE vocabulary trained for the run")
    ap.add_argument("--workers", default="1,2", help="worker counts for ours (default 1,2)")
    a = ap.parse_args()

    work = RESULTS / "tmp" / ("tokenize-smoke" if a.smoke else "tokenize")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    inputs = [a.input]
    if a.smoke:
        small = work / "smoke.parquet"
        pq.write_table(pq.read_table(a.input).slice(0, 2000), small)
        inputs, a.repeats, a.vocab_size = [str(small)], 1, 2048
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
    print(f"{'tokenizer':<16} {'system':<48} {'workers':>7} {'M tok/s':>8} {'s':>7} {'vs best peer':>12}")
    for r in rows:
        print(f"{r['tokenizer']:<16} {r['system']:<48} {r['workers']:>7} {r['tokens_per_s'] / 1e6:>8.3f} "
              f"{r['seconds']:>7.2f} {r['ratio_vs_best_peer']:>11.2f}×")
    if a.smoke:
        print("smoke run: results not written")
        return
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "tokenize.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    env = {**versions(), "input": inputs[0], "docs": len(texts), "repeats": a.repeats,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    (RESULTS / "tokenize.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2) + "\n")
    plot(rows, RESULTS / "tokenize.png")
    print(f"wrote {RESULTS / 'tokenize.csv'}, tokenize.json, tokenize.png")


if __name__ == "__main__":
    main()
