"""Step 5 of dedup (unit = one input file): split it into ``kept/`` and ``removed/``.

A unit reads its file's range of every keep unit's removals, looks up the ``id`` of each
``duplicate_of`` document (by row, in that document's file's ``ids/`` blob), and writes the
file's documents out. The stage's ``stats.json`` gains a ``clusters`` section merged from the
bucket, components and keep units' markers (:func:`~dataproc.dedup.report.dedup_report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from dataproc.config import WARN_COMPONENT_SIZE
from dataproc.dedup.base import DedupStep, row_of
from dataproc.dedup.keyers import Keyer
from dataproc.filter_stage import SplitOutputs, clear_split_outputs
from dataproc.io.arrays import read_partitions
from dataproc.shards import read_batches
from dataproc.stage import UnitStats


class DedupFilter(DedupStep):
    """Step 5: every input file split into ``kept/`` and ``removed/`` (with ``duplicate_of``)."""

    name = "dedup-filter"

    def __init__(self, inputs: Sequence[str] | str, output_dir: str, keyer: Keyer, progress: bool = True,
                 max_shard_bytes: int = 256 << 20, warn_component_size: int = WARN_COMPONENT_SIZE,
                 **options) -> None:
        super().__init__(inputs, output_dir, keyer, progress, **options)
        self.max_shard_bytes, self.warn_component_size = max_shard_bytes, warn_component_size

    def units(self) -> list[str]:
        return [f"{i:05d}" for i in range(self.n_files)]

    def clear(self, unit: str) -> None:
        clear_split_outputs(self.out, unit)

    def process(self, unit_index: int, unit: str) -> UnitStats:
        from dataproc.dedup.keys import read_ids

        mine = read_partitions(self.work, [f"removals/{p:04d}.npy" for p in range(self.parts)], unit_index, 3)
        mine = mine[np.argsort(mine[:, 0], kind="stable")]
        gone_rows = row_of(mine[:, 0])
        gone_of = read_ids(self.work, mine[:, 1])
        outputs = SplitOutputs(self.out, unit, self.max_shard_bytes)
        reason = f"{self.keyer.name}_duplicate"
        for b in read_batches(self.inputs[unit_index], **self.read_options):
            self.tick(b.docs_in)
            outputs.arrived(b)
            pos = np.searchsorted(gone_rows, b.rows)
            is_gone = np.zeros(len(b.rows), bool)
            if len(gone_rows):
                is_gone = gone_rows[np.minimum(pos, len(gone_rows) - 1)] == b.rows
            outputs.keep(b.good.filter(pa.array(~is_gone)))
            if is_gone.any():
                removed = b.good.filter(pa.array(is_gone))
                removed = removed.append_column("duplicate_of", gone_of.take(pa.array(pos[is_gone])))
                removed = removed.append_column("reason", pa.array([reason] * removed.num_rows, pa.string()))
                outputs.remove(removed, [reason] * removed.num_rows)
        return outputs.close()

    def report(self) -> dict[str, Any]:
        from dataproc.dedup.report import dedup_report

        return dedup_report(self)
