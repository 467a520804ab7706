"""Pipeline configuration: YAML → typed dataclasses, dotted overrides, validation naming the key.

A config describes read → filters (in order) → exact dedup → MinHash near-dedup → write, and
how to execute it (datatrove's local, Slurm or Ray executor). See ``configs/dataproc/``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from dataproc.errors import ConfigError

# name in YAML → "module:Class" (imported lazily so the CLI starts fast)
FILTERS: dict[str, str] = {
    "gopher_repetition": "dataproc.filters.gopher:GopherRepetition",
    "gopher_quality": "dataproc.filters.gopher:GopherQuality",
    "c4_quality": "dataproc.filters.c4:C4Quality",
    "fineweb_quality": "dataproc.filters.fineweb:FineWebQuality",
    "language": "dataproc.filters.langid:LanguageID",
    "harmful": "dataproc.filters.harmful:HarmfulContentFilter",
}


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


@dataclass
class ExactConfig:
    enabled: bool = True


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
    verify: str = "estimate"  # estimate (signature agreement) | exact (exact shingle Jaccard)


@dataclass
class PipelineConfig:
    input: str | list[str] = ""
    output: str = ""
    max_shard_bytes: int = 256 << 20
    read: ReadConfig = field(default_factory=ReadConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    exact_dedup: ExactConfig = field(default_factory=ExactConfig)
    minhash: MinHashConfig = field(default_factory=MinHashConfig)


def _check_type(key: str, value: Any, hint: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for arg in get_args(hint):
            try:
                return _check_type(key, value, arg)
            except ConfigError:
                continue
        raise ConfigError(key, f"{value!r} is not a valid {hint}")
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(key, f"expected null, got {value!r}")
    if origin in (list, dict):
        if not isinstance(value, origin):
            raise ConfigError(key, f"expected a {origin.__name__}, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(key, f"expected {hint.__name__}, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(key, f"expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "<root>", f"expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(full, f"unknown key (known: {', '.join(sorted(names))})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{full}.")
        else:
            kwargs[key] = _check_type(full, value, hint)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, f"{p!r} is not a mapping")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> PipelineConfig:
    """Read YAML (optional), apply ``key.sub=value`` overrides (values parsed as YAML), validate."""
    tree: dict[str, Any] = dict(base or {})
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError("<file>", f"config file {path} not found") from exc
        tree.update(loaded or {})
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(item, "overrides look like key.sub=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key, yaml.safe_load(raw))
    cfg = _build(PipelineConfig, tree)
    validate(cfg)
    return cfg


def filter_class(name: str) -> type:
    if name not in FILTERS:
        raise ConfigError(f"filters.{name}", f"unknown filter (known: {', '.join(FILTERS)})")
    module, cls = FILTERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_filters(cfg: PipelineConfig) -> list[Any]:
    """Instantiate the configured filters in order, checking every option name."""
    out = []
    for name, options in cfg.filters.items():
        options = options or {}
        cls = filter_class(name)
        params = inspect.signature(cls).parameters
        for key in options:
            if key not in params:
                known = ", ".join(p for p in params if p not in ("self", "exclusion_writer"))
                raise ConfigError(f"filters.{name}.{key}", f"unknown option (known: {known})")
        try:
            out.append(cls(**options))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"filters.{name}", str(exc)) from exc
    return out


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
        if name not in FILTERS:
            raise ConfigError(f"filters.{name}", f"unknown filter (known: {', '.join(FILTERS)})")
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
        if m.verify not in ("estimate", "exact"):
            raise ConfigError("minhash.verify", "must be estimate or exact")
