"""PooledLocalExecutor against datatrove's own LocalPipelineExecutor on the same pipeline step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.base import PipelineStep

from dataproc import local_executor
from dataproc.local_executor import PooledLocalExecutor

TASKS = 12


class CountRanks(PipelineStep):
    """Counts ``rank + 1`` documents; records which process and local rank ran each rank."""

    name = "count ranks"

    def __init__(self, record_dir: str, fail_rank: int = -1) -> None:
        super().__init__()
        self.record_dir, self.fail_rank = record_dir, fail_rank

    def run(self, data, rank: int = 0, world_size: int = 1):
        if rank == self.fail_rank:
            raise RuntimeError(f"rank {rank} fails on purpose")
        for _ in range(rank + 1):
            self.stat_update("documents")
        record = {"rank": rank, "pid": os.getpid(), "local_rank": local_executor._worker.get("local_rank")}
        tmp = Path(self.record_dir, f"{rank:05d}.tmp")  # a worker stopped mid-write leaves no record
        tmp.write_text(json.dumps(record))
        tmp.rename(tmp.with_suffix(".json"))
        return data


def _records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _stats(path: Path) -> list[dict]:
    """A stats file's counters, without its timings."""
    return [{"name": s["name"], "stats": s["stats"]} for s in json.loads(path.read_text())]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_same_files_and_stats_as_datatrove(tmp_path: Path) -> None:
    runs = {}
    for label, cls in (("datatrove", LocalPipelineExecutor), ("pooled", PooledLocalExecutor)):
        records, logs = tmp_path / f"{label}-records", tmp_path / f"{label}-logs"
        records.mkdir()
        cls(pipeline=[CountRanks(str(records))], tasks=TASKS, workers=2, logging_dir=str(logs),
            start_method="fork").run()
        runs[label] = (records, logs)
    (_, dt_logs), (records, logs) = runs["datatrove"], runs["pooled"]
    assert _files(logs) == _files(dt_logs)  # executor.json, completions, task logs, per-task and merged stats
    assert sorted(r["rank"] for r in _records(records)) == list(range(TASKS))
    for rank in range(TASKS):
        # a fresh pipeline per task: counts are this task's own, not accumulated over a worker's tasks
        mine = _stats(logs / f"stats/{rank:05d}.json")
        assert mine == _stats(dt_logs / f"stats/{rank:05d}.json")
        assert mine[0]["stats"]["documents"] == rank + 1
    assert _stats(logs / "stats.json") == _stats(dt_logs / "stats.json")
    assert _stats(logs / "stats.json")[0]["stats"]["documents"] == TASKS * (TASKS + 1) // 2
    # one local rank per worker process, 0..workers-1, as datatrove's queue of local ranks gives
    by_pid = {}
    for r in _records(records):
        by_pid.setdefault(r["pid"], set()).add(r["local_rank"])
    assert all(len(ranks) == 1 for ranks in by_pid.values())
    assert set().union(*by_pid.values()) <= {0, 1}
    assert os.getpid() not in by_pid


def test_failed_rank_raises_and_rerun_runs_only_what_is_left(tmp_path: Path) -> None:
    logs, first, second = tmp_path / "logs", tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    with pytest.raises(RuntimeError, match="rank 5 fails on purpose"):
        PooledLocalExecutor(pipeline=[CountRanks(str(first), fail_rank=5)], tasks=TASKS, workers=2,
                            logging_dir=str(logs), start_method="fork").run()
    done = {int(p.name) for p in (logs / "completions").iterdir()}
    assert 5 not in done
    assert done <= {r["rank"] for r in _records(first)}  # a task in flight when the pool stopped has no marker
    PooledLocalExecutor(pipeline=[CountRanks(str(second))], tasks=TASKS, workers=2, logging_dir=str(logs),
                        start_method="fork").run()
    assert {r["rank"] for r in _records(second)} == set(range(TASKS)) - done
    assert {int(p.name) for p in (logs / "completions").iterdir()} == set(range(TASKS))
    # all done: a third run starts nothing
    third = tmp_path / "third"
    third.mkdir()
    assert PooledLocalExecutor(pipeline=[CountRanks(str(third))], tasks=TASKS, workers=2, logging_dir=str(logs),
                               start_method="fork").run() is None
    assert not list(third.iterdir())


def test_spawned_workers_get_the_executor_by_pickle(tmp_path: Path) -> None:
    records = tmp_path / "records"
    records.mkdir()
    PooledLocalExecutor(pipeline=[CountRanks(str(records))], tasks=4, workers=2, logging_dir=str(tmp_path / "logs"),
                        start_method="spawn").run()
    assert sorted(r["rank"] for r in _records(records)) == [0, 1, 2, 3]
