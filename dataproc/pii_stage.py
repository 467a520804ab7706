"""The PII stage: every input file's documents, PII replaced by placeholders (:mod:`dataproc.pii`).

Writes ``kept/`` (every valid document, its text redacted, every other column and every byte
outside a match unchanged) and ``quarantine/`` (rows that failed validation); it removes nothing.
``stats.json`` gains ``pii``: replacements per kind and how many documents changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dataproc.filter_stage import SplitOutputs, clear_split_outputs
from dataproc.pii import PIIRedactor
from dataproc.shards import read_batches
from dataproc.stage import UNITS_DIR, UnitStage, UnitStats


class PIIStage(UnitStage):
    """datatrove ``PipelineStep``: ``redactor`` over every input file, one unit per file."""

    name = "pii"

    def __init__(self, inputs: Sequence[str] | str, output_dir: str, redactor: PIIRedactor,
                 batch_size: int = 10_000, max_shard_bytes: int = 256 << 20, text_column: str = "text",
                 id_column: str = "id", max_text_bytes: int = 10_000_000, progress: bool = True) -> None:
        super().__init__(output_dir, progress, inputs)
        self.redactor = redactor
        self.batch_size, self.max_shard_bytes = batch_size, max_shard_bytes
        self.text_column, self.id_column, self.max_text_bytes = text_column, id_column, max_text_bytes
        self.redactor.text_column = text_column

    def units(self) -> list[str]:
        return [f"{i:05d}" for i in range(len(self.inputs))]

    def clear(self, unit: str) -> None:
        clear_split_outputs(self.out, unit)

    def process(self, unit_index: int, unit: str) -> UnitStats:
        outputs = SplitOutputs(self.out, unit, self.max_shard_bytes)
        counts = {f"pii_{k}": 0 for k in (*self.redactor.kinds, "documents_changed")}
        for b in read_batches(self.inputs[unit_index], self.batch_size, self.text_column, self.id_column,
                              self.max_text_bytes):
            self.tick(b.docs_in)
            outputs.arrived(b)
            if b.good.num_rows == 0:
                continue
            batch, found = self.redactor(b.good)
            for k, n in found.items():
                counts[f"pii_{k}"] += n
            outputs.keep(batch)
        stats = outputs.close()
        stats.extra.update(counts)
        return stats

    def report(self) -> dict[str, Any]:
        totals: dict[str, int] = {}
        for u in self.units():
            for k, v in self.out.read_json(f"{UNITS_DIR}/{u}.json").get("extra", {}).items():
                if k.startswith("pii_"):
                    totals[k[4:]] = totals.get(k[4:], 0) + v
        changed = totals.pop("documents_changed", 0)
        return {"pii": {"kinds": list(self.redactor.kinds), "replaced": totals, "documents_changed": changed,
                        "public_ips_only": self.redactor.public_ips_only}}
