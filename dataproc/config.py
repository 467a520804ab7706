"""Pipeline configuration: YAML → typed dataclasses, dotted overrides, validation naming the key.

A config describes read → filters (in order) → PII redaction → exact dedup → MinHash near-dedup →
write, and
how to execute it (datatrove's local, Slurm or Ray executor). See ``configs/dataproc/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataproc.errors import ConfigError
from dataproc.filters import check_filter_name
from llmstack.config import build, load_tree


@dataclass
class ReadConfig:
    batch_size: int = 10_000
    text_column: str = "text"
    id_column: str = "id"
    max_text_bytes: int = 10_000_000


@dataclass
class ExecutionConfig:
    executor: str = "local"  # local | slurm | ray
    tasks: int = 1
    workers: int = 1
    # extra keyword arguments for datatrove's SlurmPipelineExecutor / RayPipelineExecutor
    options: dict[str, Any] = field(default_factory=dict)


WARN_COMPONENT_SIZE = 1000  # dedup warns about connected components larger than this


@dataclass
class ExactConfig:
    enabled: bool = True
    warn_component_size: int = WARN_COMPONENT_SIZE  # warn (naming it) about a larger group of copies


@dataclass
class MinHashConfig:
    enabled: bool = True
    num_perm: int = 128
    ngram: int = 5
    seed: int = 1
    bands: int | None = 18  # 18 x 7 LSH bands: a J = 0.8 pair is a candidate with p = 0.986
    rows: int | None = 7
    # Jaccard a candidate pair must reach to be a duplicate; bands/rows null: derived from it too
    threshold: float = 0.8
    # hybrid: signature estimate, and exact shingle Jaccard for estimates within 3 SE of the threshold;
    # estimate: the signatures alone; exact: exact Jaccard for every candidate with an estimate >= 0.75 t
    verify: str = "hybrid"
    # warn (naming it) about a connected component of verified pairs with more documents than this
    warn_component_size: int = WARN_COMPONENT_SIZE


@dataclass
class PIIConfig:
    # a `pii:` section turns the step on (`pii: {}`: these defaults); `enabled: false` turns it off
    enabled: bool = False
    kinds: list[str] = field(default_factory=lambda: ["email", "ipv4", "phone"])  # also: ipv6
    public_ips_only: bool = True  # private, loopback, reserved... addresses are kept, as datatrove
    placeholders: dict[str, str] = field(default_factory=dict)  # kind -> text, e.g. {email: "<EMAIL>"}


@dataclass
class PipelineConfig:
    input: str | list[str] = ""
    output: str = ""
    max_shard_bytes: int = 256 << 20
    read: ReadConfig = field(default_factory=ReadConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    pii: PIIConfig = field(default_factory=PIIConfig)
    exact_dedup: ExactConfig = field(default_factory=ExactConfig)
    minhash: MinHashConfig = field(default_factory=MinHashConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> PipelineConfig:
    """Read YAML (optional), apply ``key.sub=value`` overrides (values parsed as YAML), validate."""
    tree = load_tree(path, overrides, base)
    if "pii" in tree and (tree["pii"] is None or isinstance(tree["pii"], dict)):
        tree["pii"] = {"enabled": True, **(tree["pii"] or {})}  # the section's presence turns it on
    cfg = build(PipelineConfig, tree)
    validate(cfg)
    return cfg


def validate(cfg: PipelineConfig) -> None:
    if not cfg.input:
        raise ConfigError("input", "required: a file, directory, glob or list of them")
    if not cfg.output:
        raise ConfigError("output", "required: the output directory")
    if cfg.execution.executor not in ("local", "slurm", "ray"):
        raise ConfigError("execution.executor", "must be local, slurm or ray")
    for key in ("tasks", "workers"):
        if getattr(cfg.execution, key) < 1:
            raise ConfigError(f"execution.{key}", "must be >= 1")
    if cfg.read.batch_size < 1:
        raise ConfigError("read.batch_size", "must be >= 1")
    if cfg.max_shard_bytes < 1 << 10:
        raise ConfigError("max_shard_bytes", "must be at least 1 KiB")
    for name in cfg.filters:
        check_filter_name(name)
    if cfg.pii.enabled:
        from dataproc.pii import PIIRedactor

        try:
            PIIRedactor(cfg.pii.kinds, cfg.pii.public_ips_only, cfg.pii.placeholders)
        except ValueError as exc:
            raise ConfigError("pii.placeholders" if str(exc).startswith("pii placeholders") else "pii.kinds",
                              str(exc)) from exc
    for key in ("exact_dedup", "minhash"):
        if getattr(cfg, key).warn_component_size < 1:
            raise ConfigError(f"{key}.warn_component_size", "must be >= 1")
    m = cfg.minhash
    if m.enabled:
        if m.num_perm < 1 or m.ngram < 1:
            raise ConfigError("minhash", "num_perm and ngram must be >= 1")
        if (m.bands is None) != (m.rows is None):
            raise ConfigError("minhash.bands", "set both bands and rows, or neither (then threshold)")
        if m.bands is not None and m.bands * m.rows > m.num_perm:
            raise ConfigError("minhash.bands", f"bands*rows = {m.bands * m.rows} exceeds num_perm = {m.num_perm}")
        if not (m.threshold and 0 < m.threshold < 1):
            raise ConfigError("minhash.threshold", "must be in (0, 1)")
        if m.verify not in ("hybrid", "estimate", "exact"):
            raise ConfigError("minhash.verify", "must be hybrid, estimate or exact")
