"""Run planned steps as datatrove executors: locally, on Ray, or submitted to Slurm; then the books.

A plan is a list of :class:`Step` s (a :class:`~dataproc.stage.UnitStage` and how many tasks run
it). :func:`launch` runs them one after the other from this process on the local or Ray executor
(a step that reports :meth:`~dataproc.stage.UnitStage.skippable`, such as a connected-components
round after convergence, is not launched), or submits the whole chain to Slurm at once (each job
depending on the one before; skippable steps then finish at once). A last :class:`Summary` step
writes every stage's ``stats.json`` and, for a chained pipeline, the top-level books.

Local workers are forked from this process (``start_method="fork"`` on Linux) after the step has
warmed up its compiled kernels (:meth:`~dataproc.stage.UnitStage.warm_up`), so a step's pool starts
in milliseconds instead of re-importing and re-loading numba's cache in every worker. The local
executor is datatrove's, less its per-task Manager round trips
(:class:`~dataproc.local_executor.PooledLocalExecutor`).
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import dataclass
from typing import Any

from dataproc.io.storage import Folder
from dataproc.logs import quiet_unless_verbose, speed_up_loguru
from dataproc.stage import UnitStage, UnitStats


@dataclass
class Step:
    """One datatrove step and how many tasks run it."""

    step: UnitStage
    tasks: int


@dataclass
class Execution:
    executor: str = "local"  # local | slurm | ray
    tasks: int = 1
    workers: int = 1
    options: dict[str, Any] | None = None


class Summary(UnitStage):
    """Last step (one task): each stage's ``stats.json``, then the top-level books if chained.

    ``started`` (a ``time.perf_counter()`` of this process) adds ``wall_s`` to the output
    directory's ``stats.json``; a Slurm job, in another process, leaves it out.
    """

    name = "summary"

    def __init__(self, output_dir: str, stages: list[tuple[str, UnitStage]], top_level: bool,
                 started: float | None = None) -> None:
        super().__init__(output_dir, progress=False)
        self.stages, self.top_level, self.started = stages, top_level, started

    def units(self) -> list[str]:
        return ["summary"]

    def unit_done(self, unit: str) -> bool:
        return False  # cheap, and its inputs may have changed: always rewrite

    def process(self, unit_index: int, unit: str) -> UnitStats:
        self.result = summarize(self.output_dir, self.stages, self.top_level, self.started)
        return UnitStats()


def summarize(output: str, stages: list[tuple[str, UnitStage]], top_level: bool,
              started: float | None = None) -> dict[str, Any]:
    """Write each stage's ``stats.json`` and the output's (the books if ``top_level``, else the
    single stage's), each file exactly once; returns the output's. ``started``: add ``wall_s``."""
    summaries = []
    files: dict[str, tuple[Folder, dict[str, Any]]] = {}  # folder url → its stats.json
    for label, final in stages:
        s = final.summarize()
        s["stage"] = label
        files[final.out.url] = (final.out, s)
        summaries.append(s)
    if top_level:
        kept = stages[-1][1].out.sub("kept")
        result = books(summaries, [kept.url_of(n) for n in kept.list(suffix=".parquet")])
    else:
        result = dict(summaries[0])
    if started is not None:
        result["wall_s"] = round(time.perf_counter() - started, 3)
    out = Folder(output)
    files[out.url] = (out, result)  # a single stage writing to `output` gets this one, with wall_s
    for folder, stats in files.values():
        folder.write_json("stats.json", stats)
    return result


def books(stages: list[dict[str, Any]], final_files: list[str]) -> dict[str, Any]:
    """Top-level books: input = final kept + everything removed or quarantined on the way."""
    docs_in = stages[0]["docs_in"]
    removed = sum(s["removed_total"] for s in stages)
    quarantined = sum(s["quarantined_total"] for s in stages)
    kept = stages[-1]["kept"]
    chained = all(a["kept"] == b["docs_in"] for a, b in itertools.pairwise(stages))
    return {"docs_in": docs_in, "bytes_in": stages[0]["bytes_in"], "kept": kept,
            "kept_bytes": stages[-1]["kept_bytes"], "removed": removed, "quarantined": quarantined,
            "balanced": chained and docs_in == kept + removed + quarantined and all(s["balanced"] for s in stages),
            "stages": [{k: s[k] for k in ("stage", "docs_in", "kept", "removed", "removed_total", "quarantined",
                                          "time_s")} for s in stages],
            "warnings": [w for s in stages for w in s.get("warnings", [])],
            "output_files": final_files}


def _local_options(step: UnitStage, workers: int, options: dict[str, Any] | None) -> dict[str, Any]:
    """The LocalPipelineExecutor's options: forked workers (warmed kernels inherited) unless told otherwise."""
    opts = dict(options or {})
    if workers > 1 and "start_method" not in opts and sys.platform.startswith("linux"):
        step.warm_up()
        opts["start_method"] = "fork"
    return opts


def execute(step: UnitStage, tasks: int, logging_dir: str, execution: Execution) -> None:
    """Run ``step`` as ``tasks`` datatrove tasks and wait (local and Ray executors)."""
    tasks = max(1, min(tasks, len(step.units())))
    # Completion markers per task count: ranks of an N-task run mean nothing to an M-task rerun.
    logging_dir = f"{logging_dir}/tasks-{tasks}"
    if execution.executor == "local" and tasks == 1:
        step.run(None, 0, 1)  # the same PipelineStep, without a process pool for one task
        return
    quiet_unless_verbose()  # datatrove's per-task banners and stats: only with --verbose
    speed_up_loguru()
    if execution.executor == "local":
        from dataproc.local_executor import PooledLocalExecutor

        workers = min(execution.workers, tasks)
        PooledLocalExecutor(pipeline=[step], tasks=tasks, workers=workers, logging_dir=logging_dir,
                            **_local_options(step, workers, execution.options)).run()
    elif execution.executor == "ray":
        from datatrove.executor import RayPipelineExecutor

        # Starting a Ray actor costs seconds: by default each of the `workers` actors runs its share of
        # the ranks (in a process pool) instead of one actor per rank. `options` override this.
        options = {"tasks_per_job": -(-tasks // max(1, execution.workers)), **(execution.options or {})}
        ray_executor = RayPipelineExecutor(pipeline=[step], tasks=tasks, workers=execution.workers,
                                           logging_dir=logging_dir, **options)
        ray_executor.run()
        # datatrove only logs a warning when ranks fail; the next step must not read a partial output.
        failed = ray_executor.get_incomplete_ranks(range(tasks), skip_completed=True)
        if failed:
            raise RuntimeError(f"{step.name}: {len(failed)} of {tasks} Ray task(s) failed (ranks {failed}); "
                               f"see {logging_dir}/logs, then rerun the same command to resume")
    else:
        raise ValueError(f"executor {execution.executor!r} cannot run synchronously")


def slurm_chain(steps: list[Step], logs: Folder, execution: Execution) -> list[Any]:
    """One ``SlurmPipelineExecutor`` per step, each depending on the one before."""
    from datatrove.executor import SlurmPipelineExecutor

    quiet_unless_verbose()
    chain: list[Any] = []
    for i, s in enumerate(steps):
        chain.append(SlurmPipelineExecutor(
            pipeline=[s.step], tasks=s.tasks, workers=execution.workers, job_name=f"dataproc-{i:02d}-{s.step.name}",
            logging_dir=logs.url_of(f"{i:02d}-{s.step.name}"), depends=chain[-1] if chain else None,
            **(execution.options or {})))
    return chain


def launch(steps: list[Step], output: str, stages: list[tuple[str, UnitStage]], execution: Execution,
           top_level: bool) -> dict[str, Any]:
    """Run (or submit) ``steps`` then the summary; returns the summary, or what was submitted."""
    logs = Folder(output).sub("logs")
    if execution.executor == "slurm":
        summary = Summary(output, stages, top_level)
        chain = slurm_chain([*steps, Step(summary, 1)], logs, execution)
        chain[-1].run()  # datatrove submits the dependencies first
        return {"submitted": [c.job_name for c in chain], "output": output,
                "note": "stats.json is written by the last job; rerun the same command to resume"}
    summary = Summary(output, stages, top_level, started=time.perf_counter())
    # Leftovers of a killed run: never read, but they should not pile up. Safe: nothing runs now.
    for folder in {s.step.output_dir for s in steps}:
        Folder(folder).remove_tmp_tree()
    for i, s in enumerate(steps):
        if s.step.skippable():
            continue
        execute(s.step, s.tasks, logs.url_of(f"{i:02d}-{s.step.name}"), execution)
    summary.run(None, 0, 1)
    return summary.result
