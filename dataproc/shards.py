"""Find input shards and read them as validated Arrow record batches.

Inputs are Parquet, JSONL or JSONL.gz files given as a directory, a glob, a single file or a
list of those, on the local disk or behind any fsspec URL (``s3://``, ``gs://``, ``hf://``...).
Files are read batch by batch (memory bounded by the batch size) and every batch is checked:
file-level problems (unreadable/truncated file, no text column, a text column that is not a
string) raise :class:`~dataproc.errors.DataError` naming the file; row-level problems (null,
empty, invalid UTF-8 or oversized text) send the row to quarantine with its file and row number.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from dataproc.errors import DataError
from dataproc.text.buffers import text_buffers
from dataproc.validate import QUARANTINE_REASONS, quarantine_codes

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz", ".json.gz")
SUPPORTED_SUFFIXES = PARQUET_SUFFIXES + JSONL_SUFFIXES


def _is_supported(path: str) -> bool:
    return path.lower().endswith(SUPPORTED_SUFFIXES)


def resolve_inputs(spec: str | os.PathLike | Sequence[str | os.PathLike], allow_empty: bool = False) -> list[str]:
    """Expand ``spec`` (file, directory, glob, or a list of them) into a sorted, de-duplicated list.

    Directories are searched recursively for supported files. Order: entries of a list keep
    their order, files within one entry are sorted, so the result is deterministic.
    ``allow_empty`` accepts a missing or empty directory (a previous stage that kept nothing).
    """
    entries = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    if not entries and not allow_empty:
        raise DataError("<input>", "no input given")
    out: list[str] = []
    for entry in entries:
        entry = os.fspath(entry)
        fs, path = fsspec.core.url_to_fs(entry)
        protocol = entry.split("://", 1)[0] + "://" if "://" in entry else ""
        if any(ch in path for ch in "*?["):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p) and _is_supported(p))
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if _is_supported(p))
        elif fs.isfile(path):
            found = [path]
        elif allow_empty:
            found = []
        else:
            raise DataError(entry, "no such file, directory or glob match")
        if not found and not allow_empty:
            raise DataError(entry, f"no input files ending in {', '.join(SUPPORTED_SUFFIXES)}")
        out.extend(protocol + p if protocol and not p.startswith(protocol) else p for p in found)
    return list(dict.fromkeys(out))


@dataclass
class Batch:
    """One validated slice of an input file.

    ``good`` holds the healthy rows (``text`` as string, ``id`` as string); ``quarantine`` the
    rows that failed a row-level check, with ``text`` as raw bytes plus ``quarantine_reason``,
    ``source_file`` and ``source_row``. ``rows`` are the row numbers of ``good`` in the file.
    """

    good: pa.RecordBatch
    rows: np.ndarray
    quarantine: pa.RecordBatch | None
    bytes_in: int
    docs_in: int


def _open(path: str):
    fs, p = fsspec.core.url_to_fs(path)
    return fs.open(p, "rb")


def _parquet_batches(path: str, batch_size: int, columns: list[str] | None,
                     row_groups: Sequence[int] | None = None, first_row: int = 0,
                     text_column: str | None = None) -> Iterator[pa.RecordBatch]:
    try:
        handle = _open(path)
        pf = pq.ParquetFile(handle)
    except Exception as exc:
        raise DataError(path, f"not a readable Parquet file ({exc}); is it truncated or another format?") from exc
    if text_column is not None:  # against the whole schema, so the error lists every column
        try:
            _check_schema(path, pf.schema_arrow, text_column)
        except DataError:
            handle.close()
            raise
    if columns is not None:
        columns = [c for c in columns if c in pf.schema_arrow.names]
    row = first_row
    try:
        for batch in pf.iter_batches(batch_size=batch_size, columns=columns, row_groups=row_groups):
            row += batch.num_rows
            yield batch
    except DataError:
        raise
    except Exception as exc:
        raise DataError(path, f"corrupt Parquet data after row {row} ({exc})", row=row) from exc
    finally:
        handle.close()


def parquet_row_groups(path: str) -> list[int]:
    """Rows per row group of a Parquet file (from its footer only)."""
    try:
        with _open(path) as handle:
            meta = pq.ParquetFile(handle).metadata
    except Exception as exc:
        raise DataError(path, f"not a readable Parquet file ({exc}); is it truncated or another format?") from exc
    return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]


def _jsonl_batches(path: str, batch_size: int) -> Iterator[pa.RecordBatch]:
    handle = pa.PythonFile(_open(path), mode="r")
    stream = pa.CompressedInputStream(handle, "gzip") if path.lower().endswith(".gz") else handle
    opts = pajson.ParseOptions(newlines_in_values=False, unexpected_field_behavior="infer")
    row = 0
    try:
        reader = pajson.open_json(stream, read_options=pajson.ReadOptions(block_size=1 << 23), parse_options=opts)
        for batch in reader:
            for start in range(0, batch.num_rows, batch_size):
                part = batch.slice(start, batch_size)
                row += part.num_rows
                yield part
    except Exception as exc:
        raise DataError(path, f"invalid JSONL near row {row} ({exc})", row=row) from exc
    finally:
        handle.close()


def _check_schema(path: str, schema: pa.Schema, text_column: str) -> None:
    if text_column not in schema.names:
        raise DataError(path, f"no {text_column!r} column (columns: {', '.join(schema.names)}); "
                        f"set text_column to the column holding the document text", field=text_column)
    t = schema.field(text_column).type
    if pa.types.is_dictionary(t):  # e.g. a pandas/polars categorical column: decoded in _validate
        t = t.value_type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_string_view(t) or pa.types.is_null(t)):
        raise DataError(path, f"text column has type {t}, expected a string", field=text_column)


def read_batches(path: str, batch_size: int = 10_000, text_column: str = "text", id_column: str = "id",
                 max_text_bytes: int = 10_000_000, columns: list[str] | None = None,
                 row_groups: Sequence[int] | None = None) -> Iterator[Batch]:
    """Yield validated :class:`Batch` es of ``path``, renaming the text/id columns to ``text``/``id``.

    A missing id column is synthesised as ``<file name>:<row>`` so every document stays traceable.
    ``row_groups`` (Parquet only, consecutive) reads just those row groups; row numbers stay
    those of the whole file.
    """
    lower = path.lower()
    start = 0
    if lower.endswith(PARQUET_SUFFIXES):
        if row_groups:
            start = sum(parquet_row_groups(path)[: row_groups[0]])
        raw_batches = _parquet_batches(path, batch_size, columns, row_groups, start, text_column)
    elif row_groups is not None:
        raise DataError(path, "row groups exist only in Parquet files")
    elif lower.endswith(JSONL_SUFFIXES):
        raw_batches = _jsonl_batches(path, batch_size)
    else:
        raise DataError(path, f"unsupported file type (expected one of {', '.join(SUPPORTED_SUFFIXES)})")
    base = os.path.basename(path)
    for batch in raw_batches:
        _check_schema(path, batch.schema, text_column)
        yield _validate(batch, path, base, start, text_column, id_column, max_text_bytes)
        start += batch.num_rows


def _validate(batch: pa.RecordBatch, path: str, base: str, start: int, text_column: str, id_column: str,
              max_text_bytes: int) -> Batch:
    n = batch.num_rows
    rows = np.arange(start, start + n, dtype=np.int64)
    names = list(batch.schema.names)
    text = batch.column(text_column)
    if pa.types.is_dictionary(text.type):
        text = text.dictionary_decode()
    if pa.types.is_null(text.type):
        text = pa.nulls(n, pa.string())
    if pa.types.is_string_view(text.type):
        text = text.cast(pa.large_string())
    raw = text.cast(pa.large_binary() if pa.types.is_large_string(text.type) else pa.binary()) \
        if pa.types.is_string(text.type) or pa.types.is_large_string(text.type) else text
    data, offsets = text_buffers(raw)
    codes = quarantine_codes(raw, data, offsets, max_text_bytes)
    bytes_in = int(offsets[-1] - offsets[0])

    if id_column in names:
        ids = batch.column(id_column)
        if not (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)):
            try:
                ids = ids.cast(pa.string())
            except pa.ArrowInvalid as exc:
                raise DataError(path, f"id column of type {ids.type} cannot be read as text ({exc})",
                                field=id_column) from exc
        if ids.null_count:
            fill = pc.binary_join_element_wise(pa.scalar(base), pa.array(rows.astype(str)), ":")
            ids = pc.if_else(ids.is_valid(), ids, fill)
    else:
        ids = pc.binary_join_element_wise(pa.scalar(base), pa.array(rows.astype(str)), ":")

    others = [(nm, batch.column(nm)) for nm in names if nm not in (text_column, id_column)]
    bad = codes >= 0
    quarantine = None
    if bad.any():
        idx = np.flatnonzero(bad)
        reason = np.array(QUARANTINE_REASONS, dtype=object)[codes[idx]]
        cols = {"id": ids.take(idx), "text": raw.take(idx)}
        cols.update({nm: col.take(idx) for nm, col in others})
        cols["quarantine_reason"] = pa.array(reason, pa.string())
        cols["source_file"] = pa.array([path] * len(idx), pa.string())
        cols["source_row"] = pa.array(rows[idx])
        quarantine = pa.RecordBatch.from_pydict(cols)
    keep = np.flatnonzero(~bad)
    # UTF-8 was checked by the scan above: a zero-copy view, not a re-validating cast.
    text_ok = (raw.take(keep) if bad.any() else raw).view(
        pa.large_string() if pa.types.is_large_binary(raw.type) else pa.string())
    good_cols = {"id": ids.take(keep) if bad.any() else ids, "text": text_ok}
    good_cols.update({nm: (col.take(keep) if bad.any() else col) for nm, col in others})
    good = pa.RecordBatch.from_pydict(good_cols)
    return Batch(good=good, rows=rows[keep], quarantine=quarantine, bytes_in=bytes_in, docs_in=n)
