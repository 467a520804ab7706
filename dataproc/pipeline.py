"""Compose pipelines: which steps, in which order, reading what (execution: :mod:`dataproc.execution`).

A pipeline is a list of steps, each with a task count: filter → PII redaction → exact dedup → MinHash dedup
(each dedup: keys, buckets, components rounds, keep, filter; :mod:`dataproc.dedup.stages`), then a
summary step that writes every stage's ``stats.json`` and the top-level books. Each stage reads
the previous stage's ``kept/`` directory, resolved only when its tasks start, so the whole chain
can be submitted to Slurm at once (each job depending on the previous one). Locally and on Ray
the steps run one after the other from this process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dataproc.config import MinHashConfig, PipelineConfig
from dataproc.dedup.stages import (
    FILES_PER_PARTITION,
    MAX_CC_ROUNDS,
    WARN_COMPONENT_SIZE,
    DedupBuckets,
    DedupComponents,
    DedupFilter,
    DedupKeep,
    DedupKeys,
    ExactKeyer,
    Keyer,
    MinHashKeyer,
)
from dataproc.errors import ConfigError
from dataproc.execution import Execution, Step, launch
from dataproc.filter_stage import FilterStage
from dataproc.filters import build_filters
from dataproc.io.storage import Folder
from dataproc.pii import PIIRedactor
from dataproc.pii_stage import PIIStage
from dataproc.shards import resolve_inputs
from dataproc.stage import UnitStage


def filter_steps(inputs: Sequence[str] | str, output: str, filters: list[Any], tasks: int = 1,
                 max_shard_bytes: int = 256 << 20, progress: bool = True, **read_options) -> list[Step]:
    return [Step(FilterStage(inputs, output, filters, max_shard_bytes=max_shard_bytes, progress=progress,
                             **read_options), tasks)]


def dedup_steps(inputs: Sequence[str] | str, output: str, keyer: Keyer, tasks: int = 1,
                max_shard_bytes: int = 256 << 20, progress: bool = True,
                warn_component_size: int = WARN_COMPONENT_SIZE, files_per_partition: int = FILES_PER_PARTITION,
                **read_options) -> list[Step]:
    """keys → buckets → up to ``MAX_CC_ROUNDS`` components rounds → keep → filter, each ``tasks`` tasks.

    Rounds after the components have converged do nothing (and are not launched locally or on Ray).
    ``files_per_partition`` sets the unit sizes (:mod:`dataproc.dedup.base`); outputs do not depend on it.
    """
    common = {"progress": progress, "files_per_partition": files_per_partition, **read_options}
    rounds = [Step(DedupComponents(inputs, output, keyer, round_index=k, **common), tasks)
              for k in range(1, MAX_CC_ROUNDS + 1)]
    return [Step(DedupKeys(inputs, output, keyer, **common), tasks),
            Step(DedupBuckets(inputs, output, keyer, **common), tasks),
            *rounds,
            Step(DedupKeep(inputs, output, keyer, **common), tasks),
            Step(DedupFilter(inputs, output, keyer, max_shard_bytes=max_shard_bytes,
                             warn_component_size=warn_component_size, **common), tasks)]


def run_filter(inputs: Sequence[str], output: str, filters: list[Any], tasks: int = 1, workers: int = 1,
               executor: str = "local", options: dict | None = None, max_shard_bytes: int = 256 << 20,
               progress: bool = True, **read_options) -> dict[str, Any]:
    """The filter stage end to end; returns its ``stats.json``."""
    steps = filter_steps(inputs, output, filters, tasks, max_shard_bytes, progress, **read_options)
    return launch(steps, output, [("filter", steps[-1].step)], Execution(executor, tasks, workers, options),
                  top_level=False)


def run_dedup(inputs: Sequence[str], output: str, keyer: Keyer, tasks: int = 1, workers: int = 1,
              executor: str = "local", options: dict | None = None, max_shard_bytes: int = 256 << 20,
              progress: bool = True, warn_component_size: int = WARN_COMPONENT_SIZE,
              files_per_partition: int = FILES_PER_PARTITION, **read_options) -> dict[str, Any]:
    """The dedup steps end to end; returns the stage's ``stats.json``."""
    steps = dedup_steps(inputs, output, keyer, tasks, max_shard_bytes, progress, warn_component_size,
                        files_per_partition, **read_options)
    return launch(steps, output, [(f"{keyer.name}-dedup", steps[-1].step)],
                  Execution(executor, tasks, workers, options), top_level=False)


def minhash_keyer(m: MinHashConfig) -> MinHashKeyer:
    return MinHashKeyer(num_perm=m.num_perm, ngram=m.ngram, seed=m.seed, bands=m.bands, rows=m.rows,
                        threshold=m.threshold, verify=m.verify)


def plan_pipeline(cfg: PipelineConfig, progress: bool = True) -> tuple[list[Step], list[tuple[str, UnitStage]]]:
    """All steps of ``cfg``: filter → pii → exact → minhash, each reading the previous ``kept/``."""
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
    if cfg.pii.enabled:
        p = cfg.pii
        redactor = PIIRedactor(p.kinds, p.public_ips_only, p.placeholders)
        stage_opts = {k: v for k, v in opts.items() if k != "tasks"}
        steps.append(Step(PIIStage(current, out.url_of("pii"), redactor, **stage_opts, **first_read), ex.tasks))
        stages.append(("pii", steps[-1].step))
        current, first_read = out.url_of("pii", "kept"), {}
    for label, section, make in (("exact", cfg.exact_dedup, ExactKeyer),
                                 ("minhash", cfg.minhash, lambda: minhash_keyer(cfg.minhash))):
        if section.enabled:
            keyer = make()
            steps += dedup_steps(current, out.url_of(label), keyer, **opts, **first_read,
                                 warn_component_size=section.warn_component_size)
            stages.append((f"{keyer.name}-dedup", steps[-1].step))
            current, first_read = out.url_of(label, "kept"), {}
    if not steps:
        raise ConfigError("filters", "nothing to run: configure filters or pii, or enable exact_dedup or minhash")
    return steps, stages


def run_pipeline(cfg: PipelineConfig, progress: bool = True) -> dict[str, Any]:
    """filter → pii → exact → minhash as configured; writes and returns the top-level stats."""
    steps, stages = plan_pipeline(cfg, progress)
    ex = cfg.execution
    return launch(steps, cfg.output, stages, Execution(ex.executor, ex.tasks, ex.workers, ex.options),
                  top_level=True)
