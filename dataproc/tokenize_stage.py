"""Tokenize clean shards into a Megatron indexed dataset (``PREFIX.bin`` + ``PREFIX.idx``).

Two datatrove steps, so the local, Slurm and Ray executors all run it:

1. :class:`TokenizeStage` — work units are Parquet row-group runs (or whole JSONL files); each
   unit's tokens (every document followed by the EOD token) and per-document lengths go to
   ``PREFIX.tokenize/parts/<unit>.bin|.npy``, written under a temporary name and renamed, then
   a completion marker with its counts (tokens per value of the source column included).
2. :class:`MergeStage` (one task) — concatenates the parts in unit order into ``PREFIX.bin``,
   writes ``PREFIX.idx`` and the sidecar ``PREFIX.json`` (tokenizer, dtype, counts, tokens per
   source), then drops the parts.

Units depend only on the input files, never on the worker count, and parts are merged in unit
order: any number of workers, and any kill-and-rerun, give byte-identical files.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataproc.errors import ConfigError, DataError
from dataproc.io.indexed import token_dtype, write_dataset
from dataproc.io.storage import Folder
from dataproc.shards import PARQUET_SUFFIXES, parquet_row_groups, read_batches
from dataproc.stage import UNITS_DIR, UnitStage, UnitStats
from dataproc.tokenizer import TokenizerSpec
from llmstack.formats import SIDECAR_FORMAT

SOURCE_KEY = "tokens_by_source/"


def plan_units(files: list[str], min_unit_rows: int) -> list[tuple[str, int, list[int] | None]]:
    """(file, file index, row groups) per unit: runs of row groups of at least ``min_unit_rows`` rows."""
    plan: list[tuple[str, int, list[int] | None]] = []
    for fi, path in enumerate(files):
        if not path.lower().endswith(PARQUET_SUFFIXES):
            plan.append((path, fi, None))
            continue
        run: list[int] = []
        rows = 0
        for g, n in enumerate(parquet_row_groups(path)):
            run.append(g)
            rows += n
            if rows >= min_unit_rows:
                plan.append((path, fi, run))
                run, rows = [], 0
        if run or not any(p[1] == fi for p in plan):
            plan.append((path, fi, run or None))
    return plan


class TokenizeStage(UnitStage):
    name = "tokenize"

    def __init__(self, inputs: list[str], work_dir: str, tokenizer: TokenizerSpec, text_column: str = "text",
                 source_column: str | None = "source", batch_size: int = 16_384, min_unit_rows: int = 16_384,
                 max_text_bytes: int = 10_000_000, on_bad_row: str = "error", progress: bool = True) -> None:
        super().__init__(work_dir, progress=progress, inputs=inputs)
        self.tokenizer, self.text_column, self.source_column = tokenizer, text_column, source_column
        self.batch_size, self.min_unit_rows, self.max_text_bytes = batch_size, min_unit_rows, max_text_bytes
        if on_bad_row not in ("error", "quarantine"):
            raise ConfigError("on_bad_row", f"must be 'error' or 'quarantine', not {on_bad_row!r}")
        self.on_bad_row = on_bad_row
        self._plan: list[tuple[str, int, list[int] | None]] | None = None

    @property
    def plan(self) -> list[tuple[str, int, list[int] | None]]:
        if self._plan is None:
            self._plan = plan_units(self.inputs, self.min_unit_rows)
        return self._plan

    def units(self) -> list[str]:
        seen: dict[int, int] = {}
        names = []
        for _, fi, _ in self.plan:
            k = seen[fi] = seen.get(fi, -1) + 1
            names.append(f"{fi:05d}-{k:05d}")
        return names

    def clear(self, unit: str) -> None:
        for suffix in (".bin", ".npy"):
            self.out.remove("parts", unit + suffix)
        self.out.remove("quarantine", f"{unit}.parquet")

    def process(self, unit_index: int, unit: str) -> UnitStats:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: workers scale out
        tok = self.tokenizer.load()
        dtype = token_dtype(tok.vocab_size)
        path, _, row_groups = self.plan[unit_index]
        stats = UnitStats()
        tokens = 0
        by_source: dict[str, int] = {}
        lengths: list[np.ndarray] = []
        bad: list[pa.RecordBatch] = []
        # the id column too, so a quarantined row keeps its own id; other columns are never read
        columns = [self.text_column, "id"] + ([self.source_column] if self.source_column else [])
        self.out.makedirs("parts")
        final = self.out.path("parts", f"{unit}.bin")
        tmp = self.out.path("parts", f".{unit}.bin.tmp")
        with open(tmp, "wb") as sink:
            for batch in read_batches(path, self.batch_size, text_column=self.text_column, columns=columns,
                                      max_text_bytes=self.max_text_bytes, row_groups=row_groups):
                stats.docs_in += batch.docs_in
                stats.bytes_in += batch.bytes_in
                if batch.quarantine is not None:
                    self._bad_rows(batch.quarantine, stats, bad)
                texts = batch.good.column("text").to_pylist()
                flat, lens = tok.encode_docs(texts, dtype)
                sink.write(flat.tobytes())
                lengths.append(lens)
                tokens += int(lens.sum())
                stats.kept += len(texts)
                stats.kept_bytes += batch.bytes_in - (_text_bytes(batch.quarantine) if batch.quarantine else 0)
                if self.source_column and self.source_column in batch.good.schema.names:
                    _count_sources(batch.good.column(self.source_column), lens, by_source)
                self.tick(batch.docs_in)
        if lengths and max(int(x.max(initial=0)) for x in lengths) > np.iinfo(np.int32).max:
            raise DataError(path, "a document has more than 2**31-1 tokens")
        self.out.save_npy(f"parts/{unit}.npy", np.concatenate(lengths) if lengths else np.zeros(0, np.int64))
        os.replace(tmp, final)
        if bad:
            self.out.write_bytes(f"quarantine/{unit}.parquet", _parquet_bytes(pa.Table.from_batches(bad)))
        stats.extra = {"tokens": tokens, **{SOURCE_KEY + k: v for k, v in by_source.items()}}
        return stats

    def _bad_rows(self, q: pa.RecordBatch, stats: UnitStats, bad: list[pa.RecordBatch]) -> None:
        reasons = q.column("quarantine_reason").to_pylist()
        if self.on_bad_row == "error":
            raise DataError(q.column("source_file")[0].as_py(),
                            f"cannot tokenize this row ({reasons[0]}); clean the shard with `dataproc filter`, "
                            f"or pass --on-bad-row quarantine to set such rows aside",
                            row=q.column("source_row")[0].as_py(), field=self.text_column)
        stats.add_quarantined(reasons, _text_bytes(q))
        bad.append(q)


def _text_bytes(q: pa.RecordBatch) -> int:
    return int(pc.sum(pc.binary_length(q.column("text"))).as_py() or 0)


def _parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _source_names(column: pa.Array) -> pa.Array:
    """The source column as strings: scalars cast, nested values (struct, list, map) as compact JSON."""
    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.dictionary_decode(), t.value_type
    if pa.types.is_nested(t):
        return pa.array([None if v is None else json.dumps(v, sort_keys=True, default=str, separators=(",", ":"))
                         for v in column.to_pylist()], pa.string())
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return pa.array([None if v is None else v.decode("utf-8", "replace") for v in column.to_pylist()],
                        pa.string())
    return column.cast(pa.string())


def _count_sources(column: pa.Array, lens: np.ndarray, acc: dict[str, int]) -> None:
    enc = pc.dictionary_encode(_source_names(column).fill_null("<null>"))
    sums = np.bincount(enc.indices.to_numpy(zero_copy_only=False), weights=lens, minlength=len(enc.dictionary))
    for name, n in zip(enc.dictionary.to_pylist(), sums, strict=True):
        acc[name] = acc.get(name, 0) + int(n)


class MergeStage(UnitStage):
    """One task: parts → ``PREFIX.bin``/``.idx`` + ``PREFIX.json``; then the parts are removed."""

    name = "merge"

    def __init__(self, tokenize: TokenizeStage, prefix: str, meta: dict[str, Any]) -> None:
        super().__init__(tokenize.output_dir, progress=False)
        self.tokenize, self.prefix, self.meta = tokenize, prefix, meta

    def units(self) -> list[str]:
        return ["merge"]

    def unit_done(self, unit: str) -> bool:
        return (super().unit_done(unit) and os.path.exists(f"{self.prefix}.idx")
                and os.path.exists(f"{self.prefix}.json"))

    def process(self, unit_index: int, unit: str) -> UnitStats:
        summary = self.tokenize.summarize()  # raises unless every unit is done
        tok = self.tokenize.tokenizer.load()
        dtype = token_dtype(tok.vocab_size)
        names = self.tokenize.units()
        parts = ((self.out.path("parts", f"{u}.bin"), self.out.load_npy(f"parts/{u}.npy")) for u in names)
        docs, tokens = write_dataset(self.prefix, parts, dtype)
        if docs != summary["kept"] or tokens != summary["extra"].get("tokens", 0):
            raise RuntimeError(f"merge: {docs} docs/{tokens} tokens in parts, markers say "
                               f"{summary['kept']}/{summary['extra'].get('tokens')}")
        by_source = {k[len(SOURCE_KEY):]: v for k, v in sorted(summary["extra"].items()) if k.startswith(SOURCE_KEY)}
        sidecar = {**self.meta, "tokenizer": {**self.meta["tokenizer"], **tok.describe()}, "dtype": dtype.name,
                   "documents": docs, "tokens": tokens, "tokens_by_source": by_source,
                   "bytes_in": summary["bytes_in"], "quarantined": summary["quarantined_total"]}
        Folder(os.path.dirname(os.path.abspath(self.prefix))).write_json(
            os.path.basename(self.prefix) + ".json", sidecar)
        self.out.remove("parts")
        return UnitStats()

    def clear(self, unit: str) -> None:
        self.out.remove(UNITS_DIR, f"{unit}.json")


def sidecar(prefix: str) -> dict[str, Any]:
    """The ``PREFIX.json`` that :class:`MergeStage` writes beside ``PREFIX.bin/.idx``."""
    path = f"{prefix}.json"
    if not os.path.exists(path):
        raise DataError(path, "no such file: not a dataset written by `dataproc tokenize` (or not finished)")
    try:
        return Folder(os.path.dirname(os.path.abspath(path))).read_json(os.path.basename(path))
    except ValueError as exc:
        raise DataError(path, f"not valid JSON ({exc}): not a dataset written by `dataproc tokenize`") from exc


def _is_foreign(path: str) -> bool:
    try:
        with open(path) as f:
            return json.load(f).get("format") != SIDECAR_FORMAT
    except (ValueError, AttributeError):
        return True


def run_tokenize(inputs: list[str], prefix: str, tokenizer: TokenizerSpec, workers: int = 1,
                 tasks: int | None = None, executor: str = "local", options: dict[str, Any] | None = None,
                 overwrite: bool = False, progress: bool = True, **stage_options: Any) -> dict[str, Any]:
    """Tokenize ``inputs`` into ``prefix.bin/.idx/.json``; returns the sidecar (or what was submitted).

    A rerun of the same job resumes (finished units are kept); a different job aimed at the same
    prefix is refused unless ``overwrite``.
    """
    from dataproc.execution import Execution, Step, launch

    if "://" in prefix:
        raise DataError(prefix, "the output prefix must be a local path (megatron memory-maps .bin/.idx)")
    tok = tokenizer.load()  # fail on a bad tokenizer before any work
    work = Folder(f"{prefix}.tokenize")
    spec = tokenizer.spec if tokenizer.spec.startswith("tiktoken:") else os.path.abspath(tokenizer.spec)
    job = {"inputs": list(inputs), "tokenizer": {"spec": spec, "eod": tok.eod_token},
           **{k: stage_options.get(k) for k in ("text_column", "source_column", "max_text_bytes", "on_bad_row")}}
    same_job = work.exists("job.json") and work.read_json("job.json") == job
    if work.exists("job.json") and not same_job and not overwrite:
        raise DataError(f"{prefix}.tokenize/job.json", "this prefix holds (or is building) a dataset of other "
                        "inputs or options; use another --output-prefix, or --overwrite to replace it")
    if os.path.exists(f"{prefix}.json") and _is_foreign(f"{prefix}.json"):
        raise DataError(f"{prefix}.json", "exists and is not a `dataproc tokenize` sidecar; the output would "
                        "overwrite it: choose another --output-prefix")
    if overwrite or not same_job:
        work.remove()
        for suffix in (".bin", ".idx", ".json"):
            if os.path.exists(prefix + suffix):
                os.remove(prefix + suffix)
        work.write_json("job.json", job)
    stage = TokenizeStage(inputs, work.url, tokenizer, progress=progress, **stage_options)
    merge = MergeStage(stage, prefix, {"format": SIDECAR_FORMAT, "prefix": os.path.abspath(prefix),
                                       **job})
    tasks = tasks or workers
    result = launch([Step(stage, tasks), Step(merge, 1)], work.url, [("tokenize", stage)],
                    Execution(executor, tasks, workers, options), top_level=False)
    if "submitted" in result:
        return result
    return {**sidecar(prefix), "wall_s": result.get("wall_s")}
