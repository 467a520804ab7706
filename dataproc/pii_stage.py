"""The PII stage: every input file's documents, PII replaced by placeholders (:mod:`dataproc.pii`).

Writes ``kept/`` (every valid document, its text redacted, every other column and every byte
outside a match unchanged) and ``quarantine/`` (rows that failed validation); it removes nothing.
``stats.json`` gains ``pii``: replacements per kind and how many documents changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dataproc.filter_stage import FilterStage, SplitOutputs
from dataproc.pii import PIIRedactor
from dataproc.stage import UnitStats


class PIIStage(FilterStage):
    """datatrove ``PipelineStep``: ``redactor`` over every input file, one unit per file.

    A :class:`~dataproc.filter_stage.FilterStage` (same units, reading, outputs and resume) whose unit
    redacts instead of filtering. Batches arrive with their text column named ``text`` whatever
    ``text_column`` is, which is the redactor's default column.
    """

    name = "pii"

    def __init__(self, inputs: Sequence[str] | str, output_dir: str, redactor: PIIRedactor, **options: Any) -> None:
        super().__init__(inputs, output_dir, [], **options)
        self.redactor = redactor

    def process(self, unit_index: int, unit: str) -> UnitStats:
        outputs = SplitOutputs(self.out, unit, self.max_shard_bytes)
        counts = {f"pii_{k}": 0 for k in (*self.redactor.kinds, "documents_changed")}
        for b in self.read(unit_index):
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

    def summarize(self) -> dict[str, Any]:
        """The stage summary, its merged ``pii_*`` unit counters regrouped under ``pii``."""
        summary = super().summarize()
        extra = summary.get("extra", {})
        totals = {k[4:]: extra.pop(k) for k in list(extra) if k.startswith("pii_")}
        changed = totals.pop("documents_changed", 0)
        summary["pii"] = {"kinds": list(self.redactor.kinds), "replaced": totals, "documents_changed": changed,
                          "public_ips_only": self.redactor.public_ips_only}
        return summary
