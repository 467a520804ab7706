"""Whole data pipeline (``dataproc run``) on docs_sections: wall time, docs/s and peak RSS.

Peak RSS is measured for several batch sizes and corpus sizes, to show memory follows the batch
size, not the corpus. Each configuration runs in a fresh process (``resource`` maxrss of the child).

    python benchmarks/pipeline.py                      # full corpus, batch sizes 2,000 and 10,000
    python benchmarks/pipeline.py --smoke              # 1,000 docs, harness check (temporary folder)

Writes ``pipeline.csv`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from _results import add_output_arg, output_dir, written

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "docs_sections.parquet"
LID = ROOT.parent / "shared" / "assets" / "lid.176.ftz"


_WRAP = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def run_once(input_path: Path, out: Path, batch_size: int, filters: bool) -> dict:
    overrides = [f"input={input_path}", f"output={out}", f"read.batch_size={batch_size}"]
    if not filters:
        overrides.append("filters={}")
    elif LID.exists():
        overrides.append(f"filters.language.model_path={LID}")
    cmd = [sys.executable, "-m", "dataproc", "run", str(ROOT / "configs/dataproc/default.yaml"), *overrides,
           "--no-progress"]
    # A fresh wrapper per run, so ru_maxrss of its children is this run's peak alone.
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *cmd], capture_output=True, text=True,
                          env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    peak = int(proc.stdout.strip().splitlines()[-1])
    stats = json.loads((out / "stats.json").read_text())
    return {"wall_s": round(wall, 2), "docs_in": stats["docs_in"], "kept": stats["kept"],
            "removed": stats["removed"], "balanced": stats["balanced"],
            "docs_per_s": round(stats["docs_in"] / wall), "peak_rss_mib": round(peak / 1024),
            "stages": {s["stage"]: s["time_s"] for s in stats["stages"]}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    p.add_argument("--batch-sizes", default="2000,10000")
    p.add_argument("--limit", type=int, default=None, help="use the first N docs")
    p.add_argument("--smoke", action="store_true", help="1,000 docs: harness check")
    add_output_arg(p)
    a = p.parse_args()
    limit = 1000 if a.smoke else a.limit
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = a.input
        table = pq.read_table(src)
        warm = Path(tmp) / "warmup.parquet"
        pq.write_table(table.slice(0, 500), warm)
        run_once(warm, Path(tmp) / "warmup-out", 500, True)  # fills numba's cache: JIT time is not measured
        sizes = [limit or table.num_rows]
        if not a.smoke and not limit:
            sizes = [table.num_rows // 2, table.num_rows]
        for n in sizes:
            path = Path(tmp) / f"corpus-{n}.parquet"
            pq.write_table(table.slice(0, n), path)
            for bs in [int(b) for b in a.batch_sizes.split(",")]:
                for filters in (True, False):
                    r = run_once(path, Path(tmp) / f"out-{n}-{bs}-{filters}", bs, filters)
                    r.update(docs=n, batch_size=bs, pipeline="filters+exact+minhash" if filters else "exact+minhash")
                    rows.append(r)
                    print(json.dumps(r))
    out = output_dir(a.output_dir, a.smoke, "pipeline")
    name = "pipeline_smoke.csv" if a.smoke else "pipeline.csv"
    with open(out / name, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0].keys(), "machine"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "stages": json.dumps(r["stages"]),
                        "machine": f"{platform.machine()} {os.cpu_count()} cpus {platform.platform()}"})
    print(f"{'docs':>7} {'batch':>6} {'pipeline':<22} {'wall s':>7} {'docs/s':>7} {'peak RSS MiB':>12}")
    for r in rows:
        print(f"{r['docs']:>7} {r['batch_size']:>6} {r['pipeline']:<22} {r['wall_s']:>7} {r['docs_per_s']:>7} "
              f"{r['peak_rss_mib']:>12}")
    print(written(out, a.smoke, name))


if __name__ == "__main__":
    main()
