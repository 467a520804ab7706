"""Per-task overhead of datatrove's LocalPipelineExecutor vs dataproc's PooledLocalExecutor, same run.

Both run the same step: ``--tasks`` tasks of ``--task-ms`` milliseconds of busy CPU each (about a
dedup task on the 16x corpus: 64 tasks of 150-300 ms), on ``--workers`` forked workers, so every
core is busy, as in a real step. Overhead per task = (wall - tasks x task_ms / workers) x workers /
tasks. The two executors alternate, ``--repeats`` times, and the medians are compared.

    python benchmarks/local_executor.py                    # 64 tasks x 100 and 250 ms, 2 workers, 5 repeats
    python benchmarks/local_executor.py --smoke            # harness check (temporary folder)

Writes ``local_executor.csv`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import add_output_arg, output_dir, scratch_dir, write_csv, written  # noqa: E402
from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.base import PipelineStep  # noqa: E402

from dataproc.local_executor import PooledLocalExecutor  # noqa: E402
from dataproc.logs import quiet_datatrove  # noqa: E402

EXECUTORS = {"datatrove LocalPipelineExecutor": LocalPipelineExecutor, "dataproc PooledLocalExecutor": PooledLocalExecutor}


class BusyTask(PipelineStep):
    """``ms`` milliseconds of busy CPU per task."""

    name = "busy task"

    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = ms

    def run(self, data, rank: int = 0, world_size: int = 1):
        end = time.perf_counter() + self.ms / 1000
        while time.perf_counter() < end:
            pass
        return data


def one_run(cls: type, tasks: int, workers: int, ms: float, logs: Path) -> float:
    """Wall seconds of one executor run (its Manager or pool start and stop included)."""
    shutil.rmtree(logs, ignore_errors=True)
    started = time.perf_counter()
    cls(pipeline=[BusyTask(ms)], tasks=tasks, workers=workers, logging_dir=str(logs), start_method="fork").run()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--task-ms", type=float, nargs="+", default=[100.0, 250.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="8 tasks x 20 ms, 2 repeats")
    add_output_arg(parser)
    args = parser.parse_args()
    if args.smoke:
        args.tasks, args.task_ms, args.repeats = 8, [20.0], 2
    out = output_dir(args.output_dir, args.smoke, "local_executor")
    scratch = scratch_dir(out, "local_executor")
    quiet_datatrove()
    rows = []
    for ms in args.task_ms:
        walls: dict[str, list[float]] = {name: [] for name in EXECUTORS}
        for _ in range(args.repeats):
            for name, cls in EXECUTORS.items():
                walls[name].append(one_run(cls, args.tasks, args.workers, ms, scratch / "logs"))
        ideal = args.tasks * ms / 1000 / args.workers
        for name, w in walls.items():
            median = statistics.median(w)
            rows.append({"executor": name, "tasks": args.tasks, "workers": args.workers, "task_ms": ms,
                         "repeats": args.repeats, "wall_s_median": round(median, 3),
                         "wall_s_min": round(min(w), 3), "wall_s_max": round(max(w), 3), "ideal_s": round(ideal, 3),
                         "overhead_ms_per_task": round((median - ideal) * args.workers / args.tasks * 1000, 2)})
        peer, mine = rows[-2], rows[-1]
        print(f"{args.tasks} tasks x {ms:g} ms, {args.workers} workers (median of {args.repeats}): "
              f"datatrove {peer['wall_s_median']:.2f} s ({peer['overhead_ms_per_task']:.1f} ms/task), "
              f"pooled {mine['wall_s_median']:.2f} s ({mine['overhead_ms_per_task']:.1f} ms/task); "
              f"wall vs peer {peer['wall_s_median'] / mine['wall_s_median']:.2f}x, "
              f"overhead vs peer {peer['overhead_ms_per_task'] / max(mine['overhead_ms_per_task'], 1e-3):.1f}x less")
    shutil.rmtree(scratch, ignore_errors=True)
    write_csv(out, "local_executor.csv", rows)
    print(written(out, args.smoke, "local_executor.csv"))


if __name__ == "__main__":
    main()
