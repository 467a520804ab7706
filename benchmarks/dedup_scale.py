"""Peak memory and wall time of the four MinHash dedup steps as the corpus grows (1x, 4x, 16x).

The corpus: ``--docs-per-file`` real sections of ``docs_sections.parquet`` per Parquet file,
``--files`` files at 1x; larger scales add files made of crawl-style variants of the same
sections (a mirror header and one sentence dropped per copy), so duplicates grow with the
corpus as on the web. Each step runs as ``--tasks`` tasks, each a fresh child process
(``stage.run(rank, world_size)``, as an executor would run it); a task's peak RSS is its
``VmHWM``. Bucket and filter tasks should stay flat: bucket keys are partitioned by
band x key range (key ranges grow with the number of files) and removals by input file.
The clusters step is one task over the *verified* edges only (it grows with duplicates).

    python benchmarks/dedup_scale.py                    # 1x, 4x, 16x
    python benchmarks/dedup_scale.py --scales 1 4       # quicker
    python benchmarks/dedup_scale.py --smoke            # 1x of 2 files x 200 docs: harness check (temporary folder)

Writes ``dedup_scale.csv`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import csv
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import add_output_arg, output_dir, scratch_dir, written  # noqa: E402

DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "docs_sections.parquet"
STEPS = ("keys", "buckets", "clusters", "filter")


def make_corpus(src: Path, folder: Path, files: int, docs_per_file: int, scale: int) -> list[str]:
    """``files * scale`` Parquet files; the files beyond the first ``files`` hold edited copies."""
    table = pq.read_table(src, columns=["id", "text"]).slice(0, files * docs_per_file)
    texts, ids = table["text"].to_pylist(), table["id"].to_pylist()
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for copy in range(scale):
        for f in range(files):
            part_t, part_i = [], []
            for t, i in zip(texts[f * docs_per_file:(f + 1) * docs_per_file],
                            ids[f * docs_per_file:(f + 1) * docs_per_file], strict=True):
                if copy:
                    sents = re.split(r"(?<=[.!?])\s+", t)
                    if len(sents) > 3:
                        sents.pop(rng.randrange(len(sents)))
                    t = f"Mirror {copy} of the documentation. " + " ".join(sents)
                part_t.append(t)
                part_i.append(f"{i}#{copy}")
            p = folder / f"part-{copy:03d}-{f:03d}.parquet"
            pq.write_table(pa.table({"id": part_i, "text": part_t}), p)
            paths.append(str(p))
    return paths


def stage_of(step: str, paths: list[str], out: str, verify: str = "hybrid"):
    from dataproc.dedup.stages import DedupBuckets, DedupClusters, DedupFilter, DedupKeys, MinHashKeyer

    cls = {"keys": DedupKeys, "buckets": DedupBuckets, "clusters": DedupClusters, "filter": DedupFilter}[step]
    return cls(paths, out, MinHashKeyer(verify=verify), progress=False)


def run_step(step: str, paths: list[str], out: str, tasks: int,
             verify: str = "hybrid") -> tuple[float, float, float]:
    """Wall seconds of the step, the largest peak RSS (MiB) of its tasks, and the largest growth
    of a task's RSS while it ran (peak minus the RSS after imports: the data it held)."""
    spec = Path(out) / f".spec-{step}.pkl"
    spec.write_bytes(pickle.dumps((step, paths, out, verify)))
    world = 1 if step == "clusters" else tasks
    t0, peak, grown = time.perf_counter(), 0.0, 0.0
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    for rank in range(world):
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(spec), str(rank), str(world)], env=env)
        if proc.wait() != 0:
            raise RuntimeError(f"{step} task {rank} failed")
        task_peak, task_grown = map(float, Path(f"{spec}.{rank}").read_text().split())
        peak, grown = max(peak, task_peak), max(grown, task_grown)
    return time.perf_counter() - t0, peak, grown


def child(spec: str, rank: int, world: int) -> None:
    step, paths, out, verify = pickle.loads(Path(spec).read_bytes())
    stage = stage_of(step, paths, out, verify)
    import dataproc.dedup.verify  # noqa: F401  (imports count as the floor, not as data)

    start = peak_rss_mib()
    stage.run(rank=rank, world_size=world)
    peak = peak_rss_mib()
    Path(f"{spec}.{rank}").write_text(f"{peak} {peak - start}")


def peak_rss_mib() -> float:
    """This process's peak RSS (``VmHWM``: per address space, so unlike ``ru_maxrss`` it does
    not inherit the parent's high-water mark across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def baseline_rss() -> float:
    """Peak RSS of a child that only imports the stages (the floor under every task)."""
    code = ("import dataproc.dedup.stages, dataproc.dedup.verify, dataproc.dedup.minhash, datatrove, sys; "
            "sys.path.insert(0, 'benchmarks'); import dedup_scale; print(dedup_scale.peak_rss_mib())")
    return float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    p.add_argument("--scales", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--files", type=int, default=4, help="input files at 1x")
    p.add_argument("--docs-per-file", type=int, default=2500)
    p.add_argument("--tasks", type=int, default=4, help="tasks per step (clusters: always 1)")
    p.add_argument("--verify", default="hybrid", choices=("hybrid", "estimate", "exact"),
                   help="candidate verification (minhash.verify; default hybrid)")
    p.add_argument("--smoke", action="store_true", help="1x of 2 files x 200 docs, 2 tasks: harness check")
    add_output_arg(p)
    a = p.parse_args()
    if a.child:
        child(a.child[0], int(a.child[1]), int(a.child[2]))
        return
    if a.smoke:
        a.scales, a.files, a.docs_per_file, a.tasks = [1], 2, 200, 2
    out_dir = output_dir(a.output_dir, a.smoke, "dedup_scale")
    tmp = scratch_dir(out_dir, f"dedup-scale-{os.getpid()}")
    rows = []
    floor = baseline_rss()
    print(f"import-only child: {floor:.0f} MiB peak RSS")
    try:
        for scale in a.scales:
            paths = make_corpus(a.input, tmp / f"in-{scale}", a.files, a.docs_per_file, scale)
            out = tmp / f"out-{scale}"
            out.mkdir(parents=True)
            row = {"scale": f"{scale}x", "files": len(paths), "docs": len(paths) * a.docs_per_file,
                   "import_only_rss_mib": round(floor)}
            total = 0.0
            for step in STEPS:
                wall, rss, grown = run_step(step, paths, str(out), a.tasks, a.verify)
                total += wall
                row[f"{step}_s"], row[f"{step}_rss_mib"] = round(wall, 1), round(rss)
                row[f"{step}_data_mib"] = round(grown, 1)
            from dataproc.dedup.stages import key_ranges
            from dataproc.io.storage import Folder

            info = Folder(str(out)).read_json("work/clusters.json")
            row.update(total_s=round(total, 1), key_ranges=key_ranges(len(paths)), removed=info["removed"],
                       candidates=info["candidates"], verified=info["verified"], rejected=info["rejected"],
                       exact_checked=info.get("exact_checked", 0), verify_s=info["verify_s"], verify=a.verify)
            rows.append(row)
            print(row, flush=True)
            shutil.rmtree(tmp / f"in-{scale}", ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    suffix = "" if a.verify == "hybrid" else f"_{a.verify}"
    name = f"dedup_scale{suffix}_smoke.csv" if a.smoke else f"dedup_scale{suffix}.csv"
    with open(out_dir / name, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(written(out_dir, a.smoke, name))


if __name__ == "__main__":
    main()
