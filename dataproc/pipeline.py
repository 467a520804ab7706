"""Run stages on datatrove executors and chain them into the whole pipeline.

``run_pipeline(cfg)`` = filter → exact dedup → MinHash dedup, each stage reading the previous
stage's ``kept/`` shards. Every stage directory gets ``stats.json``; the output directory gets
a top-level ``stats.json`` that checks the books balance end to end.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Sequence
from typing import Any

from dataproc.config import MinHashConfig, PipelineConfig, build_filters
from dataproc.dedup.stages import (
    DedupBuckets,
    DedupClusters,
    DedupFilter,
    DedupKeys,
    ExactKeyer,
    Keyer,
    MinHashKeyer,
)
from dataproc.filter_stage import FilterStage
from dataproc.shards import resolve_inputs
from dataproc.stage import UnitStage
from dataproc.storage import Folder

log = logging.getLogger("dataproc")


def _quiet_datatrove() -> None:
    """datatrove logs every task at INFO through loguru; keep the console to our progress bars."""
    import sys

    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")


def execute(step: UnitStage, tasks: int, workers: int, logging_dir: str, executor: str = "local",
            options: dict[str, Any] | None = None) -> None:
    """Run ``step`` as ``tasks`` datatrove tasks (``workers`` at a time) and wait for it."""
    units = len(step.units())
    tasks = max(1, min(tasks, units))
    # Completion markers per task count: ranks of an N-task run mean nothing to an M-task rerun.
    logging_dir = f"{logging_dir}/tasks-{tasks}"
    if executor == "local" and tasks == 1:
        # Same PipelineStep, without the executor: avoids its process pool for a single task.
        step.run(None, 0, 1)
        return
    _quiet_datatrove()
    if executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        LocalPipelineExecutor(pipeline=[step], tasks=tasks, workers=min(workers, tasks), logging_dir=logging_dir,
                              **(options or {})).run()
    elif executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        SlurmPipelineExecutor(pipeline=[step], tasks=tasks, workers=workers, logging_dir=logging_dir,
                              job_name=f"dataproc-{step.name}", **(options or {})).run()
    elif executor == "ray":
        from datatrove.executor import RayPipelineExecutor

        RayPipelineExecutor(pipeline=[step], tasks=tasks, workers=workers, logging_dir=logging_dir,
                            **(options or {})).run()
    else:
        raise ValueError(f"unknown executor {executor!r}")


def run_filter(inputs: Sequence[str], output: str, filters: list[Any], tasks: int = 1, workers: int = 1,
               executor: str = "local", options: dict | None = None, max_shard_bytes: int = 256 << 20,
               progress: bool = True, **read_options) -> dict[str, Any]:
    """Filter stage end to end; returns its ``stats.json``."""
    step = FilterStage(inputs, output, filters, max_shard_bytes=max_shard_bytes, progress=progress, **read_options)
    t0 = time.perf_counter()
    execute(step, tasks, workers, Folder(output).url_of("logs"), executor, options)
    summary = step.summarize()
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    Folder(output).write_json("stats.json", summary)
    return summary


def run_dedup(inputs: Sequence[str], output: str, keyer: Keyer, tasks: int = 1, workers: int = 1,
              executor: str = "local", options: dict | None = None, max_shard_bytes: int = 256 << 20,
              progress: bool = True, **read_options) -> dict[str, Any]:
    """The four dedup steps end to end; returns the stage's ``stats.json``."""
    t0 = time.perf_counter()
    out = Folder(output)
    common = {"progress": progress, **read_options}
    keys = DedupKeys(inputs, output, keyer, **common)
    buckets = DedupBuckets(inputs, output, keyer, **common)
    clusters = DedupClusters(inputs, output, keyer, **common)
    final = DedupFilter(inputs, output, keyer, max_shard_bytes=max_shard_bytes, **common)
    for step in (keys, buckets, clusters, final):
        n = 1 if step is clusters else tasks
        execute(step, n, workers, out.url_of("logs", step.name), executor, options)
    summary = final.summarize()
    summary["stage"] = f"{keyer.name}-dedup"
    summary["clusters"] = out.read_json("work/clusters.json")
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    out.write_json("stats.json", summary)
    return summary


def minhash_keyer(m: MinHashConfig) -> MinHashKeyer:
    return MinHashKeyer(num_perm=m.num_perm, ngram=m.ngram, seed=m.seed, bands=m.bands, rows=m.rows,
                        threshold=m.threshold)


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> dict[str, Any]:
    """filter → exact → minhash as configured; writes and returns the top-level stats."""
    out = Folder(cfg.output)
    inputs = resolve_inputs(cfg.input)
    ex = cfg.execution
    run_opts = {"tasks": ex.tasks, "workers": ex.workers, "executor": ex.executor, "options": ex.options,
                "max_shard_bytes": cfg.max_shard_bytes, "progress": progress,
                **{k: getattr(cfg.read, k) for k in ("batch_size", "text_column", "id_column", "max_text_bytes")}}
    stages: list[dict[str, Any]] = []
    current = inputs
    t0 = time.perf_counter()

    def next_inputs(stage_dir: str) -> list[str]:
        kept = Folder(stage_dir).sub("kept")
        return [kept.url_of(n) for n in kept.list(suffix=".parquet")]

    if cfg.filters:
        d = out.url_of("filter")
        stages.append(run_filter(current, d, build_filters(cfg), **run_opts))
        current = next_inputs(d)
    dedup_opts = dict(run_opts, text_column="text", id_column="id")
    if cfg.exact_dedup.enabled and current:
        d = out.url_of("exact")
        stages.append(run_dedup(current, d, ExactKeyer(), **dedup_opts))
        current = next_inputs(d)
    if cfg.minhash.enabled and current:
        d = out.url_of("minhash")
        stages.append(run_dedup(current, d, minhash_keyer(cfg.minhash), **dedup_opts))
        current = next_inputs(d)
    summary = summarize_pipeline(stages, current, time.perf_counter() - t0)
    out.write_json("stats.json", summary)
    return summary


def summarize_pipeline(stages: list[dict[str, Any]], final_files: list[str], wall_s: float) -> dict[str, Any]:
    """Top-level books: input = final kept + everything removed or quarantined on the way."""
    if not stages:
        raise ValueError("nothing to run: enable at least one of filters, exact_dedup, minhash")
    docs_in, bytes_in = stages[0]["docs_in"], stages[0]["bytes_in"]
    removed = sum(s["removed_total"] for s in stages)
    quarantined = sum(s["quarantined_total"] for s in stages)
    kept = stages[-1]["kept"]
    chained = all(a["kept"] == b["docs_in"] for a, b in itertools.pairwise(stages))
    return {"docs_in": docs_in, "bytes_in": bytes_in, "kept": kept, "kept_bytes": stages[-1]["kept_bytes"],
            "removed": removed, "quarantined": quarantined, "balanced": chained
            and docs_in == kept + removed + quarantined and all(s["balanced"] for s in stages),
            "stages": [{k: s[k] for k in ("stage", "docs_in", "kept", "removed", "quarantined", "wall_s")}
                       for s in stages],
            "output_files": final_files, "wall_s": round(wall_s, 3)}
