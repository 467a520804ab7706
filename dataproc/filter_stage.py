"""The filter stage: run a chain of batch filters over every input file.

Writes ``kept/`` (with the columns filters add, e.g. ``language``), ``removed/`` (plus a
``reason`` column ``<filter>:<reason>``, the first filter that dropped the document) and
``quarantine/`` (rows that failed validation). A document dropped by one filter is not shown to
the next, as in datatrove, so each reason count is "dropped here, after the previous filters".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from dataproc.filters.base import BatchFilter
from dataproc.io.storage import Folder, ShardWriter
from dataproc.shards import Batch, read_batches
from dataproc.stage import UnitStage, UnitStats


def text_bytes(batch: pa.RecordBatch | pa.Table, column: str = "text") -> int:
    """UTF-8/raw byte size of a text column."""
    col = batch.column(column)
    if isinstance(col, pa.ChunkedArray):
        return sum(text_bytes(pa.RecordBatch.from_arrays([c], [column]), column) for c in col.chunks)
    if len(col) == 0:
        return 0
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int64 if pa.types.is_large_string(col.type)
                            or pa.types.is_large_binary(col.type) else np.int32)
    return int(offsets[col.offset + len(col)] - offsets[col.offset])


class SplitOutputs:
    """The three outputs of a unit — kept, removed, quarantine — and their accounting."""

    def __init__(self, out: Folder, unit: str, max_shard_bytes: int) -> None:
        self.stats = UnitStats()
        self._kept = ShardWriter(out.sub("kept"), unit, max_shard_bytes)
        self._removed = ShardWriter(out.sub("removed"), unit, max_shard_bytes)
        self._quarantine = ShardWriter(out.sub("quarantine"), unit, max_shard_bytes)

    def arrived(self, b: Batch) -> None:
        """Count a batch in and send its quarantined rows aside."""
        self.stats.docs_in += b.docs_in
        self.stats.bytes_in += b.bytes_in
        if b.quarantine is not None:
            self._quarantine.write(b.quarantine)
            self.stats.add_quarantined(b.quarantine.column("quarantine_reason").to_pylist(),
                                       text_bytes(b.quarantine))

    def keep(self, batch: pa.RecordBatch) -> None:
        self._kept.write(batch)
        self.stats.kept += batch.num_rows
        self.stats.kept_bytes += text_bytes(batch)

    def remove(self, batch: pa.RecordBatch, reasons: list[str]) -> None:
        """Write ``batch`` (already holding its ``reason`` column) to ``removed/``."""
        self._removed.write(batch)
        self.stats.add_removed(reasons, text_bytes(batch))

    def close(self) -> UnitStats:
        for w in (self._kept, self._removed, self._quarantine):
            w.close()
        return self.stats


def clear_split_outputs(out: Folder, unit: str) -> None:
    """Remove the kept/removed/quarantine shards (and temp files) of an interrupted ``unit``."""
    for sub in ("kept", "removed", "quarantine"):
        folder = out.sub(sub)
        folder.remove_stale_tmp(prefix=f"{unit}-")
        for name in folder.list(suffix=".parquet"):
            if name.startswith(f"{unit}-"):
                folder.remove(name)


def _spread(col: pa.Array, positions: np.ndarray, n: int) -> pa.Array:
    """An ``n``-long array holding ``col`` at ``positions`` and nulls elsewhere."""
    if len(positions) == n:
        return col
    index = np.full(n, len(col), dtype=np.int64)
    index[positions] = np.arange(len(col))
    return pa.concat_arrays([col, pa.nulls(1, col.type)]).take(pa.array(index))


def apply_filters(filters: Sequence[BatchFilter], batch: pa.RecordBatch) -> tuple[pa.RecordBatch, np.ndarray]:
    """Run ``filters`` in order; return the batch with added columns and a reason per row (None = kept)."""
    n = batch.num_rows
    alive = np.arange(n)
    reason = np.full(n, None, dtype=object)
    added: dict[str, list[tuple[np.ndarray, pa.Array]]] = {}
    for f in filters:
        if len(alive) == 0:
            break
        sub = batch if len(alive) == n else batch.take(pa.array(alive))
        out = f(sub)
        for name, col in out.columns.items():
            added.setdefault(name, []).append((alive, col))
        dropped = ~out.keep
        if dropped.any():
            names = np.array([f"{f.name}:{r}" for r in out.reasons] + [None], dtype=object)
            reason[alive[dropped]] = names[out.reason[dropped]]
        alive = alive[out.keep]
    for name, pieces in added.items():
        # Columns a later filter adds exist for fewer rows; fill the others with nulls.
        pos = np.concatenate([p for p, _ in pieces])
        col = pa.concat_arrays([c for _, c in pieces]) if len(pieces) > 1 else pieces[0][1]
        if len(pieces) > 1:  # a column added by several filters: the last value wins
            pos, first = np.unique(pos[::-1], return_index=True)
            col = col.take(pa.array(len(col) - 1 - first))
        batch = batch.append_column(name, _spread(col, pos, n))
    return batch, reason


class FilterStage(UnitStage):
    """datatrove ``PipelineStep`` running ``filters`` over ``inputs`` into ``output_dir``."""

    name = "filter"

    def __init__(self, inputs: Sequence[str] | str, output_dir: str, filters: Sequence[BatchFilter],
                 batch_size: int = 10_000, max_shard_bytes: int = 256 << 20, text_column: str = "text",
                 id_column: str = "id", max_text_bytes: int = 10_000_000, progress: bool = True) -> None:
        super().__init__(output_dir, progress, inputs)
        self.filters = list(filters)
        self.batch_size, self.max_shard_bytes = batch_size, max_shard_bytes
        self.text_column, self.id_column, self.max_text_bytes = text_column, id_column, max_text_bytes

    def units(self) -> list[str]:
        return [f"{i:05d}" for i in range(len(self.inputs))]

    def clear(self, unit: str) -> None:
        clear_split_outputs(self.out, unit)

    def read(self, unit_index: int) -> Iterator[Batch]:
        return read_batches(self.inputs[unit_index], self.batch_size, self.text_column, self.id_column,
                            self.max_text_bytes)

    def process(self, unit_index: int, unit: str) -> UnitStats:
        outputs = SplitOutputs(self.out, unit, self.max_shard_bytes)
        for b in self.read(unit_index):
            self.tick(b.docs_in)
            outputs.arrived(b)
            if b.good.num_rows == 0:
                continue
            batch, reason = apply_filters(self.filters, b.good)
            drop = np.flatnonzero(reason != None)  # noqa: E711 (object array comparison)
            outputs.keep(batch.take(pa.array(np.flatnonzero(reason == None))))  # noqa: E711
            if len(drop):
                removed = batch.take(pa.array(drop)).append_column("reason", pa.array(reason[drop], pa.string()))
                outputs.remove(removed, reason[drop].tolist())
        return outputs.close()
