"""Dedup on a non-local fsspec filesystem reads by range: no task downloads whole work files.

Inputs and outputs live on ``countmem://`` (an in-memory filesystem that counts the bytes it
returns, ``tests/dataproc/counting_fs.py``). Every task of every step runs here one at a time
with the counter reset, so each task's bytes are known. Checked per step: no task reads more
than twice an even share (the step's bytes / its tasks) plus 64 MiB; and, because that bound
alone would pass if every task downloaded every file, the bucket step's total must stay within
the keys read once plus, per band, twice the signatures and shingle sets (a task that fetched
whole signature files would read them once per bucket unit: 8 key ranges x 18 bands here).
The result equals a local run's, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataproc.dedup.stages import MinHashKeyer
from dataproc.execution import summarize
from dataproc.io.storage import Folder
from dataproc.pipeline import dedup_steps, run_dedup
from tests.dataproc import counting_fs

FILES, PER_FILE, TASKS = 6, 2000, 4


@pytest.fixture
def remote_inputs(docs_sections, tmp_path):
    counting_fs.register()
    counting_fs.clear()
    table = pq.read_table(docs_sections, columns=["id", "text"]).slice(0, FILES * PER_FILE)
    local, remote = [], []
    folder = Folder("countmem://in")
    for i in range(FILES):
        sink = pa.BufferOutputStream()
        pq.write_table(table.slice(i * PER_FILE, PER_FILE), sink)
        folder.write_bytes(f"part{i}.parquet", sink.getvalue().to_pybytes())
        remote.append(f"countmem://in/part{i}.parquet")
        pq.write_table(table.slice(i * PER_FILE, PER_FILE), tmp_path / f"part{i}.parquet")
        local.append(str(tmp_path / f"part{i}.parquet"))
    yield local, remote
    counting_fs.clear()


def _size(prefix: str) -> int:
    return sum(f.size for p, f in counting_fs.CountingMemoryFileSystem.store.items() if p.startswith(prefix))


def test_no_task_downloads_whole_work_files(remote_inputs, tmp_path) -> None:
    local, remote = remote_inputs
    keyer = MinHashKeyer()
    steps = dedup_steps(remote, "countmem://out", keyer, tasks=TASKS, files_per_partition=1, progress=False)
    read: dict[str, list[int]] = {}
    for s in steps:
        if s.step.skippable():
            continue
        world = max(1, min(s.tasks, len(s.step.units())))
        per_task = []
        for rank in range(world):
            counting_fs.BYTES_READ["n"] = 0
            s.step.run(None, rank, world)
            per_task.append(counting_fs.BYTES_READ["n"])
        read[s.step.name] = per_task
        share = sum(per_task) / world
        assert max(per_task) <= 2 * share + (64 << 20), (s.step.name, per_task)
    assert "dedup-components-r02" in read and len(read["dedup-buckets"]) == TASKS
    sigs, sets, keys = _size("/out/work/sigs/"), _size("/out/work/sets/"), _size("/out/work/keys/")
    assert sigs > 0 and sets > 0 and keys > 0
    assert sum(read["dedup-buckets"]) <= keys + 2 * keyer.bands * (sigs + sets), (read["dedup-buckets"], sigs, sets)
    # each components/keep task reads its own slices: together about the step's input, not a multiple of it
    edges = _size("/out/work/edges/")
    assert sum(read["dedup-components-r01"]) <= 2 * (edges + (1 << 20))
    summarize("countmem://out", [("minhash-dedup", steps[-1].step)], top_level=False)
    run_dedup(local, str(tmp_path / "local"), keyer, tasks=TASKS, files_per_partition=1, progress=False)
    fs = counting_fs.CountingMemoryFileSystem()
    for sub in ("kept", "removed"):
        names = sorted(Path(p).name for p in fs.ls(f"/out/{sub}", detail=False))
        assert names == sorted(p.name for p in (tmp_path / "local" / sub).glob("*.parquet"))
        for name in names:
            assert fs.cat_file(f"/out/{sub}/{name}") == (tmp_path / "local" / sub / name).read_bytes(), name
