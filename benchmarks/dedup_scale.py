"""Crawl-scale MinHash dedup: time and per-task memory of every step as the corpus grows, 1x to 64x.

Corpora: ``Nx`` is ``../shared/tools/make_scale_corpus.py docs_sections.parquet DIR --copies N
--files 4N``: copy 0 is docs_sections itself (62,744 documents), even copies replace ~3% of the
words (exact Jaccard to the original ~0.75: just under the 0.8 threshold, the hard case for
verification), odd copies ~40% (distinct documents); rows are shuffled over the files. The exact
word-5-gram Jaccard (``tests/dataproc/shingle_ref.py``, plain Python) of a sample of the pairs it
makes is printed and written, so the corpus is shown to hold near-duplicates around the threshold.

Per scale, with as many tasks as input files:

* per-task peak RSS and time of every step: each task is a child forked from a warmed parent
  (imports and compiled kernels loaded, as a datatrove worker has them) whose peak RSS is reset
  (``/proc/self/clear_refs``) before it runs, then read (``VmHWM``): the floor plus the task's data;
* ``dataproc dedup`` end to end (launch to exit) with 1 and 2 workers (``--repeats`` times,
  alternating, after a ``sync``); MB/s per core = text bytes in / wall / workers; the two outputs
  must be byte-identical;
* on 1x, datatrove's own MinHash dedup (``benchmarks/minhash.py``'s four stages) in the same run.

    python benchmarks/dedup_scale.py                      # 1x 4x 16x 64x: about an hour (64x: ~4 M documents, ~30 min)
    python benchmarks/dedup_scale.py --scales 16 --repeats 4   # one scale, more timing repeats
    python benchmarks/dedup_scale.py --smoke              # 2 small scales: harness check (temporary folder)

Writes ``dedup_scale.csv``, ``dedup_scale_pairs.csv`` and ``dedup_scale.png`` to ``--output-dir``
(``dedup_scale_<scales>.*`` for other ``--scales``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import add_output_arg, output_dir, scratch_dir, written  # noqa: E402

SHARED = ROOT.parent / "shared"
DEFAULT_INPUT = SHARED / "data" / "docs_sections.parquet"
TOOL = SHARED / "tools" / "make_scale_corpus.py"
STEPS = ("keys", "buckets", "components", "keep", "filter")
DEFAULT_SCALES = [1, 4, 16, 64]


def make_corpus(src: Path, folder: Path, copies: int, files: int) -> int:
    """The ``copies``x corpus in ``folder`` (the shared tool); returns its text bytes."""
    if not TOOL.exists():
        raise SystemExit(f"{TOOL} not found: the scaled corpora are built by the shared tool")
    # the tool draws replacement words from a set: a fixed hash seed makes the corpus the same every run
    subprocess.run([sys.executable, str(TOOL), str(src), str(folder), "--copies", str(copies), "--files",
                    str(files)], check=True, capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    total = 0
    for p in sorted(folder.glob("*.parquet")):
        col = pq.read_table(p, columns=["text"]).column("text")
        total += int(pc.sum(pc.binary_length(col)).as_py() or 0)
    return total


def pair_similarity(folder: Path, copies: int, sample: int) -> list[dict]:
    """Exact Jaccard (plain-Python reference) of pairs of copies of the same source document."""
    from tests.dataproc.shingle_ref import jaccard, shingle_set

    table = pa.concat_tables(pq.read_table(p, columns=["id"]) for p in sorted(folder.glob("*.parquet")))
    ids = table.column("id").to_pylist()
    files = sorted(folder.glob("*.parquet"))
    kinds = [("original vs 3% copy", 0, 2), ("3% copy vs 3% copy", 2, 4), ("original vs 40% copy", 0, 1)]
    kinds = [k for k in kinds if k[2] < copies]
    n_src = sum(i.startswith("c00-") for i in ids)
    js = list(range(0, n_src, max(1, n_src // sample)))[:sample]
    want = {f"c{c:02d}-{j:07d}" for _, a, b in kinds for c in (a, b) for j in js}
    texts: dict[str, str] = {}
    for p in files:
        t = pq.read_table(p, columns=["id", "text"])
        mask = pc.is_in(t.column("id"), value_set=pa.array(sorted(want & set(ids))))
        for i, x in zip(t.filter(mask).column("id").to_pylist(), t.filter(mask).column("text").to_pylist(),
                        strict=True):
            texts[i] = x
    rows = []
    for name, a, b in kinds:
        values = sorted(jaccard(shingle_set(texts[f"c{a:02d}-{j:07d}"]), shingle_set(texts[f"c{b:02d}-{j:07d}"]))
                        for j in js if f"c{a:02d}-{j:07d}" in texts and f"c{b:02d}-{j:07d}" in texts)
        if not values:
            continue
        q = statistics.quantiles(values, n=10) if len(values) > 1 else values * 9
        rows.append({"pair": name, "pairs": len(values), "min": round(values[0], 3), "p10": round(q[0], 3),
                     "median": round(statistics.median(values), 3), "p90": round(q[-1], 3),
                     "max": round(values[-1], 3),
                     "share_0.7_to_0.8": round(sum(0.7 <= v < 0.8 for v in values) / len(values), 3),
                     "share_ge_0.8": round(sum(v >= 0.8 for v in values) / len(values), 3)})
    return rows


def _status() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def measure_tasks(paths: list[str], out: str, tasks: int) -> dict[str, dict[str, float]]:
    """Per step: tasks, summed and largest task time, largest per-task peak RSS and its data part.

    Each step runs in a fresh child process (imports, compiled kernels warmed: what a datatrove
    worker holds), which forks one grandchild per task, one at a time; the grandchild's peak RSS
    is reset before its task and read after it. So every task starts from the same state.
    """
    from dataproc.dedup.stages import MinHashKeyer
    from dataproc.pipeline import dedup_steps

    res: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    plan = dedup_steps(paths, out, MinHashKeyer(), tasks=tasks, progress=False)
    for index, step in enumerate(plan):
        if step.step.skippable():  # a components round after convergence: never launched
            continue
        spec = Path(out) / f".measure-step-{index}.json"
        spec.parent.mkdir(parents=True, exist_ok=True)
        spec.write_text(json.dumps({"paths": paths, "out": out, "tasks": tasks, "index": index}))
        env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
        subprocess.run([sys.executable, __file__, "--step-child", str(spec)], check=True, env=env, cwd=ROOT)
        report = json.loads(spec.with_suffix(".out").read_text())
        if report["skipped"]:
            continue
        agg = res[report["kind"]]
        agg["steps"] += 1
        for r in report["tasks"]:
            agg["tasks"] += 1
            agg["s"] += r["s"]
            agg["max_task_s"] = max(agg["max_task_s"], r["s"])
            agg["rss_mib"] = max(agg["rss_mib"], r["peak"])
            agg["data_mib"] = max(agg["data_mib"], r["peak"] - r["start"])
            agg["floor_mib"] = max(agg["floor_mib"], r["start"])
    return res


def step_child(spec_path: Path) -> None:
    """Run step ``index`` of the plan task by task, each in a forked grandchild (see measure_tasks)."""
    from dataproc.dedup.stages import MinHashKeyer
    from dataproc.pipeline import dedup_steps

    spec = json.loads(spec_path.read_text())
    s = dedup_steps(spec["paths"], spec["out"], MinHashKeyer(), tasks=spec["tasks"], progress=False)[spec["index"]]
    kind = next(k for k in STEPS if k in s.step.name)
    report: dict = {"kind": kind, "skipped": s.step.skippable(), "tasks": []}
    if not report["skipped"]:
        s.step.warm_up()
        s.step.units()  # resolve inputs before forking
        world = max(1, min(s.tasks, len(s.step.units())))
        result = spec_path.with_suffix(".task")
        for rank in range(world):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    Path("/proc/self/clear_refs").write_text("5")
                    start = _status()["VmRSS"]
                    t0 = time.perf_counter()
                    s.step.run(None, rank, world)
                    result.write_text(json.dumps({"s": time.perf_counter() - t0, "peak": _status()["VmHWM"],
                                                  "start": start}))
                    code = 0
                finally:
                    os._exit(code)
            if os.waitpid(pid, 0)[1] != 0:
                raise RuntimeError(f"{s.step.name} task {rank} failed")
            report["tasks"].append(json.loads(result.read_text()))
    spec_path.with_suffix(".out").write_text(json.dumps(report))


def output_digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted([*out.glob("kept/*.parquet"), *out.glob("removed/*.parquet")]):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def run_cli(folder: Path, out: Path, tasks: int, workers: int) -> float:
    """Launch to exit of ``dataproc dedup`` (after a ``sync``, so earlier writes are not flushed during it)."""
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    time.sleep(2)
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dataproc", "dedup", "--input", str(folder), "--output", str(out),
                           "--tasks", str(tasks), "--workers", str(workers), "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"dataproc dedup failed:\n{proc.stderr[-3000:]}")
    return wall


def run_datatrove(folder: Path, work: Path) -> float:
    from minhash import run_datatrove as dt

    return dt(folder / "*.parquet", work)[0]


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [r["docs"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for step in STEPS:
        ax1.plot(docs, [r[f"{step}_s"] for r in rows], "o-", label=f"{step} (sum of task times)")
        ax2.plot(docs, [r[f"{step}_rss_mib"] for r in rows], "o-", label=step)
    ax1.plot(docs, [r["e2e_1w_s"] for r in rows], "k^--", label="end to end, 1 worker")
    ax1.plot(docs, [r["e2e_2w_s"] for r in rows], "kv:", label="end to end, 2 workers")
    ax1.set(xscale="log", yscale="log", xlabel="documents", ylabel="seconds", title="time per step")
    ax2.plot(docs, [r["floor_mib"] for r in rows], "k--", label="floor (imports, kernels)")
    ax2.set(xscale="log", xlabel="documents", ylabel="MiB", title="largest per-task peak RSS per step",
            ylim=(0, None))
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.suptitle("dataproc dedup (MinHash, 18x7 bands, hybrid verification), tasks = input files = 4N")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    p.add_argument("--scales", type=int, nargs="+", default=DEFAULT_SCALES)
    p.add_argument("--repeats", type=int, default=2, help="end-to-end runs per worker count (alternating)")
    p.add_argument("--pair-sample", type=int, default=300, help="source documents per pair kind")
    p.add_argument("--skip-datatrove", action="store_true")
    p.add_argument("--smoke", action="store_true", help="1x and 2x of a 3,000-document slice: harness check")
    p.add_argument("--step-child", type=Path, help=argparse.SUPPRESS)
    add_output_arg(p)
    a = p.parse_args()
    if a.step_child:
        step_child(a.step_child)
        return
    out_dir = output_dir(a.output_dir, a.smoke, "dedup_scale")
    tmp = scratch_dir(out_dir, f"dedup-scale-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    src = a.input
    if a.smoke:
        a.scales, a.repeats, a.pair_sample = [1, 2], 1, 20
        src = tmp / "slice.parquet"
        pq.write_table(pq.read_table(a.input, columns=["id", "text"]).slice(0, 3000), src)
    rows, pair_rows = [], []
    try:
        for n in a.scales:
            folder, out = tmp / f"in-{n}", tmp / f"out-{n}"
            t0 = time.perf_counter()
            text_bytes = make_corpus(src, folder, n, 4 * n)
            paths = [str(x) for x in sorted(folder.glob("*.parquet"))]
            docs = sum(pq.ParquetFile(x).metadata.num_rows for x in paths)
            print(f"{n}x: {docs:,} docs, {text_bytes / 1e6:.0f} MB of text, {len(paths)} files "
                  f"(built in {time.perf_counter() - t0:.0f} s)", flush=True)
            if not pair_rows and (n >= 4 or n == a.scales[-1]):
                pair_rows = pair_similarity(folder, n, a.pair_sample)
                for r in pair_rows:
                    print("  exact Jaccard,", r, flush=True)
            row: dict = {"scale": f"{n}x", "files": len(paths), "docs": docs, "text_mb": round(text_bytes / 1e6),
                         "tasks": len(paths)}
            measured = measure_tasks(paths, str(out / "measure"), len(paths))
            row["component_rounds_run"] = int(measured["components"]["steps"])
            for step in STEPS:
                m = measured[step]
                row.update({f"{step}_tasks": int(m["tasks"]), f"{step}_s": round(m["s"], 1),
                            f"{step}_max_task_s": round(m["max_task_s"], 2), f"{step}_rss_mib": round(m["rss_mib"]),
                            f"{step}_data_mib": round(m["data_mib"])})
            row["floor_mib"] = round(max(measured[s]["floor_mib"] for s in STEPS))
            stats = json.loads((out / "measure" / "stats.json").read_text()) if (out / "measure" / "stats.json").exists() \
                else None
            digest = output_digest(out / "measure")
            shutil.rmtree(out / "measure", ignore_errors=True)
            walls: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(a.repeats):
                for w in (1, 2):
                    walls[w].append(run_cli(folder, out / f"w{w}", len(paths), w))
                    if output_digest(out / f"w{w}") != digest:
                        raise RuntimeError(f"{n}x: the {w}-worker output differs from the per-task run's")
            stats = json.loads((out / "w1" / "stats.json").read_text())
            c = stats["clusters"]
            e1, e2 = statistics.mean(walls[1]), statistics.mean(walls[2])
            task_sum = sum(row[f"{s}_s"] for s in STEPS)
            row.update({
                "e2e_1w_s": round(e1, 1), "e2e_2w_s": round(e2, 1),
                "e2e_1w_runs": " ".join(f"{w:.1f}" for w in walls[1]),
                "e2e_2w_runs": " ".join(f"{w:.1f}" for w in walls[2]),
                "mb_s_per_core_1w": round(text_bytes / 1e6 / e1, 1), "mb_s_per_core_2w": round(text_bytes / 2e6 / e2, 1),
                "speedup_2w": round(e1 / e2, 2),
                "largest_task_share": round(max(row[f"{s}_max_task_s"] for s in STEPS) / e1, 3),
                "outside_tasks_s": round(max(0.0, e1 - task_sum), 1),
                "removed": stats["removed_total"], "components": c["components"],
                "largest_component": c["largest_components"][0]["size"] if c["largest_components"] else 0,
                "component_rounds": c["component_rounds"], "candidates": c["candidates"],
                "exact_checked": c["exact_checked"], "identical_1w_2w": True})
            if n == 1 and not a.skip_datatrove:
                dt = run_datatrove(folder, tmp / "datatrove")
                row.update({"datatrove_s": round(dt, 1), "speedup_vs_datatrove": round(dt / e1, 1)})
            rows.append(row)
            print(json.dumps(row), flush=True)
            shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    name = "dedup_scale_smoke" if a.smoke else "dedup_scale"
    if not a.smoke and a.scales != DEFAULT_SCALES:  # a partial run never overwrites the full one
        name += "_" + "-".join(f"{n}x" for n in a.scales)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(out_dir / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    if pair_rows:
        with open(out_dir / f"{name}_pairs.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(pair_rows[0]))
            w.writeheader()
            w.writerows(pair_rows)
    plot(out_dir / f"{name}.png", rows)
    print(written(out_dir, a.smoke, f"{name}.csv, {name}_pairs.csv, {name}.png"))


if __name__ == "__main__":
    main()
