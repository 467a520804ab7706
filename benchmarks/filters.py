"""Heuristic quality filters against datatrove 0.10.1, on the same documents in the same run.

For each of Gopher repetition, Gopher quality, C4 quality and FineWeb quality: datatrove's
class (``.filter(Document)`` over the docs, one process, spaCy loaded before timing) vs ours
(``__call__`` over Arrow batches of ``--batch-size`` rows, numba one thread, JIT compile or
cache load timed separately, best of ``--repeats`` warm passes measured before and after the
peer so a change in machine load shows). Reports docs/s, the speed-up, and keep/drop and
reason agreement. A last row chains all four the way a datatrove pipeline does (a document
stops at its first drop; C4 last because datatrove's C4 rewrites the text it keeps).

    python benchmarks/filters.py                # 10,000 docs spread over docs_sections
    python benchmarks/filters.py --limit 62744  # all of it (datatrove takes ~10 minutes)
    python benchmarks/filters.py --smoke        # a few hundred docs: harness check (temporary folder)

Writes ``filters.csv``, ``filters.json`` (versions, machine) and ``filters.png`` to
``--output-dir``.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # before numba is imported: one core

import argparse
import csv
import importlib.metadata as md
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _results import add_output_arg, output_dir, written
from _timing import best_of

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "docs_sections.parquet"
NAMES = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality")
CHAIN = ("gopher_repetition", "gopher_quality", "fineweb_quality", "c4_quality")


def load_docs(path: Path, limit: int) -> pa.Table:
    """``limit`` documents evenly spread over the file (every source is represented)."""
    table = pq.read_table(path, columns=["id", "text"])
    rows = np.unique(np.linspace(0, table.num_rows - 1, min(limit, table.num_rows)).astype(np.int64))
    return table.take(rows)


def ours_filters() -> dict:
    from dataproc.filters import filter_class

    return {name: filter_class(name)() for name in NAMES}


def peer_filters() -> dict:
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return {
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "c4_quality": C4QualityFilter(),
        "fineweb_quality": FineWebQualityFilter(),
    }


def run_peer(filt, texts: list[str]) -> tuple[np.ndarray, list, float]:
    from datatrove.data import Document

    keep, reasons = np.zeros(len(texts), dtype=bool), []
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        res = filt.filter(Document(text=text, id=str(i)))
        ok, why = res if isinstance(res, tuple) else (res, None)
        keep[i] = ok
        reasons.append(None if ok else why)
    return keep, reasons, time.perf_counter() - t0


def run_peer_chain(filters: dict, texts: list[str]) -> tuple[np.ndarray, float]:
    """One document through the filters in turn, as datatrove's pipeline generators do."""
    from datatrove.data import Document

    keep = np.zeros(len(texts), dtype=bool)
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        keep[i] = all(_passes(filters[name].filter(doc)) for name in CHAIN)
    return keep, time.perf_counter() - t0


def _passes(res) -> bool:
    return bool(res[0] if isinstance(res, tuple) else res)


def run_ours(filt, batches: list[pa.RecordBatch]) -> tuple[np.ndarray, np.ndarray]:
    outs = [filt(b) for b in batches]
    return np.concatenate([o.keep for o in outs]), np.concatenate([o.reason_names() for o in outs])


def run_ours_chain(filters: dict, batches: list[pa.RecordBatch]) -> np.ndarray:
    """Each filter sees only the survivors of the previous one, like a pipeline."""
    keep = []
    for batch in batches:
        alive = np.arange(batch.num_rows)
        for name in CHAIN:
            if len(alive) == 0:
                break
            out = filters[name](batch.take(pa.array(alive)))
            alive = alive[out.keep]
        mask = np.zeros(batch.num_rows, dtype=bool)
        mask[alive] = True
        keep.append(mask)
    return np.concatenate(keep)




def environment(args: argparse.Namespace, n_docs: int) -> dict:
    versions = {}
    for pkg in ("numpy", "pyarrow", "numba", "datatrove", "spacy"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "numba_threads": os.environ.get("NUMBA_NUM_THREADS"),
        "load_average": os.getloadavg(),
        "docs": n_docs,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "input": str(args.input),
        "versions": versions,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["filter"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.bar(x - 0.2, [r["datatrove_docs_per_s"] for r in rows], 0.4, label="datatrove 0.10.1")
    ax.bar(x + 0.2, [r["ours_docs_per_s"] for r in rows], 0.4, label="dataproc (numba, 1 thread)")
    for i, r in enumerate(rows):
        ax.annotate(f"{r['speedup']:.0f}x", (x[i] + 0.2, r["ours_docs_per_s"]), ha="center", va="bottom")
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=15)
    ax.set_ylabel("documents / s (one core)")
    ax.set_title(f"Quality filters on {rows[0]['docs']:,} docs_sections documents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)



def result_row(name: str, n: int, peer_s: float, ours_s: tuple[float, float], keep: np.ndarray,
               peer_keep: np.ndarray, reason_agreement: float, first_call: float) -> dict:
    """One CSV row: speeds (best and worst of our two timings around the peer's), agreement."""
    best, worst = min(ours_s), max(ours_s)
    return {
        "filter": name,
        "docs": n,
        "datatrove_docs_per_s": n / peer_s,
        "ours_docs_per_s": n / best,
        "ours_docs_per_s_worst": n / worst,
        "speedup": peer_s / best,
        "keep_agreement": float(np.mean(keep == peer_keep)),
        "reason_agreement": reason_agreement,
        "mismatches": int(np.sum(keep != peer_keep)),
        "peer_drop_rate": float(np.mean(~peer_keep)),
        "ours_first_call_s": first_call,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--limit", type=int, default=10_000, help="documents (spread over the file)")
    parser.add_argument("--batch-size", type=int, default=10_000, help="rows per Arrow batch for ours")
    parser.add_argument("--repeats", type=int, default=5, help="warm passes of ours (best kept)")
    add_output_arg(parser)
    parser.add_argument("--smoke", action="store_true", help="300 docs, 2 repeats: harness check")
    args = parser.parse_args()
    if args.smoke:
        args.limit, args.repeats = 300, 2
    out = output_dir(args.output_dir, args.smoke, "filters")

    table = load_docs(args.input, args.limit)
    texts = table.column("text").to_pylist()
    batches = pa.Table.from_arrays([table.column("text")], names=["text"]).to_batches(
        max_chunksize=args.batch_size
    )
    n = len(texts)
    print(f"{n:,} documents, {sum(map(len, texts)) / 1e6:.1f} M characters, batches of {args.batch_size:,}")

    from datatrove.utils.text import split_into_words

    t0 = time.perf_counter()
    split_into_words("Load spaCy before timing.")
    print(f"spaCy load: {time.perf_counter() - t0:.1f} s (not timed)")

    ours, peers = ours_filters(), peer_filters()
    rows = []
    for name in NAMES:
        t0 = time.perf_counter()
        ours[name](batches[0].slice(0, 64))
        first_call = time.perf_counter() - t0
        before = best_of(lambda f=ours[name]: run_ours(f, batches), args.repeats)
        peer_keep, peer_reasons, peer_s = run_peer(peers[name], texts)
        after = best_of(lambda f=ours[name]: run_ours(f, batches), args.repeats)
        keep, reasons = run_ours(ours[name], batches)
        reason_agreement = float(np.mean([a == b for a, b in zip(reasons, peer_reasons)]))
        rows.append(result_row(name, n, peer_s, (before, after), keep, peer_keep, reason_agreement, first_call))
        print(f"  {name}: done ({n / peer_s:,.0f} vs {n / min(before, after):,.0f} docs/s)")

    before = best_of(lambda: run_ours_chain(ours, batches), args.repeats)
    peer_keep, peer_s = run_peer_chain(peer_filters(), texts)
    after = best_of(lambda: run_ours_chain(ours, batches), args.repeats)
    keep = run_ours_chain(ours, batches)
    rows.append(result_row("all four", n, peer_s, (before, after), keep, peer_keep, float("nan"), float("nan")))

    header = f"{'filter':<18} {'datatrove/s':>12} {'ours/s':>10} {'speed-up':>9} {'keep agree':>11} {'reason agree':>13} {'first call':>11}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        reason = "-" if np.isnan(r["reason_agreement"]) else f"{r['reason_agreement']:.3%}"
        first = "-" if np.isnan(r["ours_first_call_s"]) else f"{r['ours_first_call_s']:.2f}s"
        print(
            f"{r['filter']:<18} {r['datatrove_docs_per_s']:>12,.0f} {r['ours_docs_per_s']:>10,.0f} "
            f"{r['speedup']:>8.1f}x {r['keep_agreement']:>10.3%} {reason:>13} {first:>11}"
        )
    with open(out / "filters.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    env = environment(args, n)
    (out / "filters.json").write_text(json.dumps(env, indent=2) + "\n")
    plot(rows, out / "filters.png")
    print(f"\n{written(out, args.smoke, 'filters.csv/.json/.png')}; load average {env['load_average']}")


if __name__ == "__main__":
    main()
