"""The resumable stage: work units, completion markers, per-unit accounting, stage summaries.

Every stage is a datatrove ``PipelineStep`` so that datatrove's executors (local
multi-process, Slurm, Ray) run it unchanged: task ``rank`` of ``world_size`` processes units
``rank, rank + world_size, ...``. A unit (usually one input file) writes its outputs under
names derived from the unit index, atomically, then a marker ``.units/<unit>.json`` holding
its stats. A rerun skips marked units and redoes the others from scratch, so a killed job
reruns to byte-identical output, whatever the number of tasks.
"""

from __future__ import annotations

import os
import socket
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from datatrove.pipeline.base import PipelineStep
from tqdm import tqdm

from dataproc import logs
from dataproc.io.storage import Folder
from dataproc.shards import resolve_inputs

UNITS_DIR = ".units"


def ran_on() -> dict[str, Any]:
    """Where a unit ran (kept in its marker, for finding a slow or failing machine): host, process,
    and on Ray the raylet's pid (two Ray nodes on one host differ by it)."""
    where: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    if "RAY_RAYLET_PID" in os.environ:
        where["ray_raylet_pid"] = int(os.environ["RAY_RAYLET_PID"])
    return where


@dataclass
class UnitStats:
    """What one unit saw and did. ``docs_in == kept + sum(removed) + sum(quarantined)``."""

    docs_in: int = 0
    bytes_in: int = 0
    kept: int = 0
    kept_bytes: int = 0
    removed: dict[str, int] = field(default_factory=dict)
    removed_bytes: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    quarantined_bytes: int = 0
    time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def add_removed(self, reasons: Iterable[str], nbytes: int) -> None:
        for reason, n in Counter(reasons).items():
            self.removed[reason] = self.removed.get(reason, 0) + n
        self.removed_bytes += nbytes

    def add_quarantined(self, reasons: Iterable[str], nbytes: int) -> None:
        for reason, n in Counter(reasons).items():
            self.quarantined[reason] = self.quarantined.get(reason, 0) + n
        self.quarantined_bytes += nbytes

    def balanced(self) -> bool:
        return self.docs_in == self.kept + sum(self.removed.values()) + sum(self.quarantined.values())


def merge_stats(parts: Iterable[UnitStats]) -> UnitStats:
    """Sum unit stats (dict fields added key by key, ``extra`` counters summed when numeric)."""
    total = UnitStats()
    for p in parts:
        for name in ("docs_in", "bytes_in", "kept", "kept_bytes", "removed_bytes", "quarantined_bytes", "time_s"):
            setattr(total, name, getattr(total, name) + getattr(p, name))
        for name in ("removed", "quarantined", "extra"):
            acc = getattr(total, name)
            for k, v in getattr(p, name).items():
                acc[k] = acc.get(k, 0) + v if isinstance(v, int | float) else v
    return total


class UnitStage(PipelineStep):
    """Base class: subclasses define ``units()`` and ``process(unit) -> UnitStats``."""

    type = "dataproc"
    name = "stage"
    bar_unit = " docs"  # what the progress bar counts: " docs" (ticked by process) or " units"

    def __init__(self, output_dir: str, progress: bool = True, inputs: Sequence[str] | str = ()) -> None:
        super().__init__()
        self.output_dir = str(output_dir)
        self.progress = progress
        # A string (a previous stage's kept/ directory) is resolved when first needed, so a
        # stage can be planned, and submitted to a cluster, before its input exists.
        self._inputs_spec = inputs
        self._inputs: list[str] | None = None if isinstance(inputs, str) else list(inputs)

    def __getstate__(self) -> dict[str, Any]:
        # a stage pickled to a worker carries the driver's console-logging choice (see dataproc.logs)
        return {**self.__dict__, "_quiet_logs": logs.is_quiet()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        quiet = state.pop("_quiet_logs", False)
        self.__dict__.update(state)
        if quiet:
            logs.quiet_datatrove()

    @property
    def inputs(self) -> list[str]:
        if self._inputs is None:
            self._inputs = resolve_inputs(self._inputs_spec, allow_empty=True)
        return self._inputs

    @property
    def out(self) -> Folder:
        return Folder(self.output_dir)

    # --- to implement -------------------------------------------------------------------
    @abstractmethod
    def units(self) -> list[str]:
        """Names of the work units, in a fixed order (e.g. ``00000`` per input file)."""

    @abstractmethod
    def process(self, unit_index: int, unit: str) -> UnitStats:
        """Do unit ``unit_index``; write outputs atomically; return its stats."""

    def clear(self, unit: str) -> None:
        """Remove whatever a previous, interrupted attempt at ``unit`` may have left."""

    def skippable(self) -> bool:
        """True when this step has nothing to do (the driver then does not launch it)."""
        return False

    def warm_up(self) -> None:
        """Load this step's compiled kernels in this process (workers forked from it inherit them)."""

    def report(self) -> dict[str, Any]:
        """Extra entries for this stage's ``stats.json`` (merged from unit markers; O(units))."""
        return {}

    # --- machinery ----------------------------------------------------------------------
    def unit_done(self, unit: str) -> bool:
        return self.out.exists(UNITS_DIR, f"{unit}.json")

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> None:
        units = self.units()
        mine = [(i, u) for i, u in enumerate(units) if i % world_size == rank]
        todo = [(i, u) for i, u in mine if not self.unit_done(u)]
        self._bar = tqdm(desc=f"{self.name} [task {rank}/{world_size}, {len(todo)} units]", unit=self.bar_unit,
                         total=len(todo) if self.bar_unit == " units" else None,
                         disable=not self.progress or not todo, leave=False, mininterval=0.5)
        for i, u in todo:
            self.clear(u)
            t0 = time.perf_counter()
            stats = self.process(i, u)
            if self.bar_unit == " units":
                self.tick(1)
            stats.time_s = round(time.perf_counter() - t0, 3)
            if not stats.balanced():
                raise RuntimeError(f"{self.name} unit {u}: accounting does not balance: {stats}")
            self.out.write_json(f"{UNITS_DIR}/{u}.json", {**asdict(stats), "ran_on": ran_on()})
            self.stat_update("units")
            self.stat_update("docs_in", value=stats.docs_in)
            self.stat_update("kept", value=stats.kept)
        self._bar.close()
        self._bar = None
        return None

    def tick(self, docs: int) -> None:
        """Advance the progress bar by ``docs`` documents."""
        bar = getattr(self, "_bar", None)
        if bar is not None:
            bar.update(docs)

    def summarize(self) -> dict[str, Any]:
        """Merge the unit markers (all units must be done) into the stage's summary.

        Nothing is written: :class:`dataproc.pipeline.Summary` writes ``stats.json`` once.
        """
        units = self.units()
        missing = [u for u in units if not self.unit_done(u)]
        if missing:
            raise RuntimeError(f"{self.name}: {len(missing)} unit(s) not done yet (first: {missing[0]}); "
                               f"rerun the same command to finish them")
        parts = [UnitStats(**{k: v for k, v in self.out.read_json(f"{UNITS_DIR}/{u}.json").items() if k != "ran_on"})
                 for u in units]
        total = merge_stats(parts)
        summary = {"stage": self.name, "units": len(units), **asdict(total),
                   "removed_total": sum(total.removed.values()),
                   "quarantined_total": sum(total.quarantined.values()),
                   "balanced": total.balanced()}
        summary["time_s"] = round(summary["time_s"], 3)
        summary.update(self.report())
        return summary
