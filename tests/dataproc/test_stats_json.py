"""Every ``stats.json`` of a run is written exactly once, with its final content."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataproc.config import load_config
from dataproc.filters.base import FilterOutput, decisions
from dataproc.io.storage import Folder
from dataproc.pipeline import run_filter, run_pipeline
from dataproc.shards import resolve_inputs


class Short:
    name = "short"

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        n = np.array([len(t) for t in batch.column("text").to_pylist()])
        return decisions(n >= 60, np.zeros(len(n)), ("too_short",))


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    for part in range(2):
        texts = [" ".join(words[(i + part) % 12:] + words[: (i + part) % 12]) * (1 + i % 3) for i in range(30)]
        texts[1] = texts[2]
        pq.write_table(pa.table({"id": [f"{part}-{i}" for i in range(30)], "text": texts}), d / f"p{part}.parquet")
    return resolve_inputs(str(d))


@pytest.fixture
def writes(monkeypatch):
    """(folder, name) of every ``Folder.write_json`` call."""
    seen: list[tuple[str, str]] = []
    original = Folder.write_json

    def spy(self, rel, obj):
        seen.append((self.url, rel))
        return original(self, rel, obj)

    monkeypatch.setattr(Folder, "write_json", spy)
    return seen


def _stats_writes(seen: list[tuple[str, str]]) -> Counter:
    return Counter(url for url, rel in seen if rel == "stats.json")


def test_single_stage_stats_json_written_once(inputs, tmp_path, writes):
    out = tmp_path / "f"
    result = run_filter(inputs, str(out), [Short()], progress=False)
    assert _stats_writes(writes) == {str(out): 1}
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk == result and on_disk["stage"] == "filter" and "wall_s" in on_disk
    assert on_disk["docs_in"] == 60 and on_disk["balanced"]


def test_pipeline_stats_json_each_written_once(inputs, tmp_path, writes):
    out = tmp_path / "p"
    cfg = load_config(None, ["filters={gopher_repetition: {}}", "minhash.num_perm=32", "minhash.bands=4",
                             "minhash.rows=8"], base={"input": str(tmp_path / "in"), "output": str(out)})
    top = run_pipeline(cfg, progress=False)
    assert _stats_writes(writes) == {str(out / s): 1 for s in ("filter", "exact", "minhash")} | {str(out): 1}
    assert json.loads((out / "stats.json").read_text()) == top and "wall_s" in top and top["balanced"]
    minhash = json.loads((out / "minhash" / "stats.json").read_text())
    assert minhash["stage"] == "minhash-dedup" and "clusters" in minhash and "wall_s" not in minhash
    assert [s["stage"] for s in top["stages"]] == ["filter", "exact-dedup", "minhash-dedup"]
