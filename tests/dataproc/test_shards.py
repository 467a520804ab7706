"""Input discovery and bad-input handling: clear errors naming the file/row, counted quarantine."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataproc.errors import DataError
from dataproc.shards import read_batches, resolve_inputs
from dataproc.validate import QUARANTINE_REASONS


def _write(path, table):
    pq.write_table(table, path)
    return str(path)


def test_resolve_dir_glob_list_are_sorted_and_deduplicated(tmp_path):
    for name in ("b.parquet", "a.parquet", "c.jsonl.gz", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jsonl").write_bytes(b"x")
    found = resolve_inputs(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in found] == ["a.parquet", "b.parquet", "c.jsonl.gz", "d.jsonl"]
    assert resolve_inputs(str(tmp_path / "*.parquet")) == found[:2]
    assert resolve_inputs([str(tmp_path / "b.parquet"), str(tmp_path / "*.parquet")]) == [found[1], found[0]]
    assert resolve_inputs(f"file://{tmp_path}/a.parquet") == [f"file://{tmp_path}/a.parquet"]
    with pytest.raises(DataError, match="no such file"):
        resolve_inputs(str(tmp_path / "missing.parquet"))
    with pytest.raises(DataError, match="no input files"):
        resolve_inputs(str(tmp_path / "*.arrow"))


def test_parquet_and_jsonl_give_the_same_batches(tmp_path):
    rows = [{"id": f"d{i}", "text": f"document number {i} " * 3, "url": f"http://x/{i}"} for i in range(25)]
    pq_path = _write(tmp_path / "a.parquet", pa.Table.from_pylist(rows))
    jl = tmp_path / "a.jsonl.gz"
    with gzip.open(jl, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    for path in (pq_path, str(jl)):
        batches = list(read_batches(path, batch_size=10))
        assert [b.docs_in for b in batches] == [10, 10, 5]
        got = pa.Table.from_batches([b.good for b in batches]).to_pylist()
        assert got == rows
        assert np.concatenate([b.rows for b in batches]).tolist() == list(range(25))


def test_bad_rows_are_quarantined_with_file_and_row(tmp_path):
    texts = [b"good text here", None, b"", b"   \n\t", b"bad \xff utf8", b"x" * 100, "caf\u00e9 ok".encode()]
    table = pa.table({"id": [f"r{i}" for i in range(len(texts))], "text": pa.array(texts, pa.binary())})
    path = _write(tmp_path / "bad_rows.parquet", table)
    (b,) = list(read_batches(path, max_text_bytes=50))
    assert b.good.column("text").to_pylist() == ["good text here", "caf\u00e9 ok"]
    assert b.rows.tolist() == [0, 6]
    q = b.quarantine.to_pydict()
    assert q["source_row"] == [1, 2, 3, 4, 5]
    assert q["quarantine_reason"] == ["null_text", "empty_text", "empty_text", "invalid_utf8", "too_large"]
    assert set(q["quarantine_reason"]) <= set(QUARANTINE_REASONS)
    assert q["text"][3] == b"bad \xff utf8"  # raw bytes kept: nothing is lost
    assert all(f == path for f in q["source_file"])


def test_invalid_utf8_inside_a_string_column(tmp_path):
    raw = pa.array([b"fine", b"\xc3\x28 broken"], pa.binary()).view(pa.string())
    path = _write(tmp_path / "s.parquet", pa.table({"id": ["a", "b"], "text": raw}))
    (b,) = list(read_batches(path))
    assert b.good.column("id").to_pylist() == ["a"]
    assert b.quarantine.column("quarantine_reason").to_pylist() == ["invalid_utf8"]


def test_missing_id_column_gets_traceable_ids(tmp_path):
    path = _write(tmp_path / "noid.parquet", pa.table({"text": ["a b c", "d e f"]}))
    (b,) = list(read_batches(path))
    assert b.good.column("id").to_pylist() == ["noid.parquet:0", "noid.parquet:1"]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"this is not parquet at all"), "not a readable Parquet file"),
        (lambda p: pq.write_table(pa.table({"body": ["x"]}), p), "no 'text' column"),
        (lambda p: pq.write_table(pa.table({"text": [1, 2]}), p), "text column has type int64"),
    ],
    ids=["not-parquet", "missing-text", "wrong-type"],
)
def test_file_level_errors_name_the_file(tmp_path, make, message):
    path = tmp_path / "shard.parquet"
    make(path)
    with pytest.raises(DataError, match=message) as info:
        list(read_batches(str(path)))
    assert str(path) in str(info.value)


def test_truncated_parquet_names_the_file(tmp_path, tiny_sections):
    data = tiny_sections.read_bytes()
    path = tmp_path / "truncated.parquet"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated") as info:
        list(read_batches(str(path)))
    assert "truncated.parquet" in str(info.value)


def test_broken_jsonl_names_the_file_and_row(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": "ok"}\n{"id": "c", "text": \n')
    with pytest.raises(DataError, match=r"broken\.jsonl") as info:
        list(read_batches(str(path)))
    assert "invalid JSONL" in str(info.value)
