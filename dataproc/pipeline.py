"""Plan stages as datatrove steps and run them: locally, on Ray, or submitted to Slurm.

A pipeline is a list of steps, each with a task count: filter → exact dedup (keys, buckets,
clusters, filter) → MinHash dedup (the same four) → a summary step that writes every stage's
``stats.json`` and the top-level books, each file once and atomically. Each stage reads the
previous stage's ``kept/`` directory, resolved only when its tasks start, so the whole chain can
be submitted to Slurm at once (each job depending on the previous one). Locally and on Ray the steps run one after the
other from this process.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dataproc.config import MinHashConfig, PipelineConfig
from dataproc.dedup.stages import (
    DedupBuckets,
    DedupClusters,
    DedupFilter,
    DedupKeys,
    ExactKeyer,
    Keyer,
    MinHashKeyer,
)
from dataproc.errors import ConfigError
from dataproc.filter_stage import FilterStage
from dataproc.filters import build_filters
from dataproc.io.storage import Folder
from dataproc.logs import quiet_unless_verbose
from dataproc.shards import resolve_inputs
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


def filter_steps(inputs: Sequence[str] | str, output: str, filters: list[Any], tasks: int = 1,
                 max_shard_bytes: int = 256 << 20, progress: bool = True, **read_options) -> list[Step]:
    return [Step(FilterStage(inputs, output, filters, max_shard_bytes=max_shard_bytes, progress=progress,
                             **read_options), tasks)]


def dedup_steps(inputs: Sequence[str] | str, output: str, keyer: Keyer, tasks: int = 1,
                max_shard_bytes: int = 256 << 20, progress: bool = True, **read_options) -> list[Step]:
    common = {"progress": progress, **read_options}
    return [Step(DedupKeys(inputs, output, keyer, **common), tasks),
            Step(DedupBuckets(inputs, output, keyer, **common), tasks),
            Step(DedupClusters(inputs, output, keyer, **common), 1),
            Step(DedupFilter(inputs, output, keyer, max_shard_bytes=max_shard_bytes, **common), tasks)]


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
        if final.out.exists("work", "clusters.json"):
            s["clusters"] = final.out.read_json("work/clusters.json")
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
            "output_files": final_files}


def execute(step: UnitStage, tasks: int, logging_dir: str, execution: Execution) -> None:
    """Run ``step`` as ``tasks`` datatrove tasks and wait (local and Ray executors)."""
    tasks = max(1, min(tasks, len(step.units())))
    # Leftovers of a killed run: never read, but they should not pile up. Safe: nothing runs now.
    Folder(step.output_dir).remove_tmp_tree()
    # Completion markers per task count: ranks of an N-task run mean nothing to an M-task rerun.
    logging_dir = f"{logging_dir}/tasks-{tasks}"
    if execution.executor == "local" and tasks == 1:
        step.run(None, 0, 1)  # the same PipelineStep, without a process pool for one task
        return
    quiet_unless_verbose()  # datatrove's per-task banners and stats: only with --verbose
    if execution.executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        LocalPipelineExecutor(pipeline=[step], tasks=tasks, workers=min(execution.workers, tasks),
                              logging_dir=logging_dir, **(execution.options or {})).run()
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
    for i, s in enumerate(steps):
        execute(s.step, s.tasks, logs.url_of(f"{i:02d}-{s.step.name}"), execution)
    summary.run(None, 0, 1)
    return summary.result


def run_filter(inputs: Sequence[str], output: str, filters: list[Any], tasks: int = 1, workers: int = 1,
               executor: str = "local", options: dict | None = None, max_shard_bytes: int = 256 << 20,
               progress: bool = True, **read_options) -> dict[str, Any]:
    """The filter stage end to end; returns its ``stats.json``."""
    steps = filter_steps(inputs, output, filters, tasks, max_shard_bytes, progress, **read_options)
    return launch(steps, output, [("filter", steps[-1].step)], Execution(executor, tasks, workers, options),
                  top_level=False)


def run_dedup(inputs: Sequence[str], output: str, keyer: Keyer, tasks: int = 1, workers: int = 1,
              executor: str = "local", options: dict | None = None, max_shard_bytes: int = 256 << 20,
              progress: bool = True, **read_options) -> dict[str, Any]:
    """The four dedup steps end to end; returns the stage's ``stats.json``."""
    steps = dedup_steps(inputs, output, keyer, tasks, max_shard_bytes, progress, **read_options)
    return launch(steps, output, [(f"{keyer.name}-dedup", steps[-1].step)],
                  Execution(executor, tasks, workers, options), top_level=False)


def minhash_keyer(m: MinHashConfig) -> MinHashKeyer:
    return MinHashKeyer(num_perm=m.num_perm, ngram=m.ngram, seed=m.seed, bands=m.bands, rows=m.rows,
                        threshold=m.threshold, verify=m.verify)


def plan_pipeline(cfg: PipelineConfig, progress: bool = True) -> tuple[list[Step], list[tuple[str, UnitStage]]]:
    """All steps of ``cfg``: filter → exact → minhash, each reading the previous ``kept/``."""
    out = Folder(cfg.output)
    ex = cfg.execution
    opts = {"tasks": ex.tasks, "max_shard_bytes": cfg.max_shard_bytes, "progress": progress,
            **{k: getattr(cfg.read, k) for k in ("batch_size", "max_text_bytes")}}
    first_read = {"text_column": cfg.read.text_column, "id_column": cfg.read.id_column}
    steps: list[Step] = []
    stages: list[tuple[str, UnitStage]] = []
    current: Sequence[str] | str = resolve_inputs(cfg.input)
    if cfg.filters:
        steps += filter_steps(current, out.url_of("filter"), build_filters(cfg.filters), **opts, **first_read)
        stages.append(("filter", steps[-1].step))
        current, first_read = out.url_of("filter", "kept"), {}
    for label, enabled, make in (("exact", cfg.exact_dedup.enabled, ExactKeyer),
                                 ("minhash", cfg.minhash.enabled, lambda: minhash_keyer(cfg.minhash))):
        if enabled:
            keyer = make()
            steps += dedup_steps(current, out.url_of(label), keyer, **opts, **first_read)
            stages.append((f"{keyer.name}-dedup", steps[-1].step))
            current, first_read = out.url_of(label, "kept"), {}
    if not steps:
        raise ConfigError("filters", "nothing to run: configure filters, or enable exact_dedup or minhash")
    return steps, stages


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> dict[str, Any]:
    """filter → exact → minhash as configured; writes and returns the top-level stats."""
    steps, stages = plan_pipeline(cfg, progress)
    ex = cfg.execution
    return launch(steps, cfg.output, stages, Execution(ex.executor, ex.tasks, ex.workers, ex.options),
                  top_level=True)
