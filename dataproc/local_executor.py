"""datatrove's ``LocalPipelineExecutor`` without its per-task rank bookkeeping through a Manager.

With more than one worker, datatrove's local executor hands every task to its pool together with
three ``multiprocess.Manager`` proxies (a queue of free local ranks, a completion counter and its
lock). A proxy that is unpickled, used and freed opens fresh authenticated connections to the
manager process (incref, a connection for its calls, decref): about 7 connections and 12 ms per
task on a 2-core machine whose cores are both busy, more than 5% of a 250 ms dedup task.
:class:`PooledLocalExecutor` is that executor with the bookkeeping moved where it costs nothing:
each pool worker takes a local rank once, when it starts (the same ranks 0..workers-1, one per
running task, that datatrove's queue hands out), and the parent counts completions as results
come back. Everything else is datatrove's own: ``_run_for_rank`` (task logs, per-task stats,
completion markers), skipping completed ranks, ``executor.json`` and the merged ``stats.json``,
and, as in datatrove's one-worker loop, a fresh copy of the pipeline for every task.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from datatrove.executor import LocalPipelineExecutor
from datatrove.utils.logging import logger
from datatrove.utils.stats import PipelineStats

_worker: dict[str, Any] = {}  # in a pool worker: its executor and local rank


def _start_worker(executor: PooledLocalExecutor, next_local_rank: Any) -> None:
    with next_local_rank.get_lock():
        _worker["local_rank"] = next_local_rank.value
        next_local_rank.value += 1
    _worker["executor"], _worker["pipeline"] = executor, executor.pipeline


def _run_rank(rank: int) -> PipelineStats:
    executor = _worker["executor"]
    executor.pipeline = deepcopy(_worker["pipeline"])  # no step state carried from one task to the next
    return executor._run_for_rank(rank, _worker["local_rank"])


class PooledLocalExecutor(LocalPipelineExecutor):
    """``LocalPipelineExecutor`` (same arguments, files and logs) whose pool tasks carry only a rank."""

    def run(self) -> PipelineStats | None:
        if self.workers == 1 or self.depends:
            return super().run()  # no pool, or a dependency to wait for: datatrove's path as it is
        import multiprocess

        self._launched = True
        local = range(self.local_rank_offset, self.local_rank_offset + self.local_tasks)
        ranks = self.get_incomplete_ranks(local)
        if not ranks:
            logger.info(f"Not doing anything as all {self.local_tasks} tasks have already been completed.")
            return None
        if (skipped := self.local_tasks - len(ranks)) > 0:
            logger.info(f"Skipping {skipped} already completed tasks")
        self.save_executor_as_json()
        context = multiprocess.get_context(self.start_method)
        # With fork, the executor reaches the workers by inheritance; otherwise pickled once per worker.
        with context.Pool(min(self.workers, len(ranks)), initializer=_start_worker,
                          initargs=(self, context.Value("i", 0))) as pool:
            stats = []
            for done, task_stats in enumerate(pool.imap_unordered(_run_rank, ranks), start=skipped + 1):
                stats.append(task_stats)
                logger.info(f"{done}/{self.world_size} tasks completed.")
        merged = sum(stats, start=PipelineStats())
        with self.logging_dir.open("stats.json", "wt") as statsfile:
            merged.save_to_disk(statsfile)
        logger.success(merged.get_repr(f"All {self.local_tasks} tasks"))
        return merged
