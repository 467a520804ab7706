"""The contract every batch filter implements.

A filter looks at a whole Arrow batch at once and answers, per document, keep or drop and
why. Filters never loop over documents in Python on the hot path: they use compiled kernels
over :func:`dataproc.text.buffers.text_buffers`, numpy, polars or pyarrow compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa


@dataclass
class FilterOutput:
    """Per-document decisions of one filter over one batch.

    ``reason[i]`` indexes ``reasons`` for dropped documents and is ``-1`` for kept ones.
    ``columns`` are extra per-document columns the filter adds to the output (for example
    ``language`` and ``language_score``), kept and removed documents alike.
    """

    keep: np.ndarray  # bool, shape (n,)
    reason: np.ndarray  # int16, shape (n,), -1 where kept
    reasons: tuple[str, ...]
    columns: dict[str, pa.Array] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.keep)
        if self.reason.shape != (n,):
            raise ValueError(f"reason has shape {self.reason.shape}, expected ({n},)")
        if np.any(self.keep & (self.reason >= 0)) or np.any(~self.keep & (self.reason < 0)):
            raise ValueError("every dropped document needs a reason and no kept document may have one")

    def reason_names(self) -> np.ndarray:
        """Reason name per document (``None`` where kept), as an object array."""
        names = np.array((*self.reasons, None), dtype=object)
        return names[self.reason]


@runtime_checkable
class BatchFilter(Protocol):
    """A keep/drop decision over a batch; ``name`` prefixes reasons (``name:reason``)."""

    name: str

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        """Decide for every row of ``batch`` (which has at least a ``text`` column)."""
        ...


def decisions(keep: np.ndarray, reason: np.ndarray, reasons: tuple[str, ...]) -> FilterOutput:
    """Build a :class:`FilterOutput`, normalising dtypes (``reason`` is forced to -1 where kept)."""
    keep = np.asarray(keep, dtype=bool)
    reason = np.where(keep, -1, np.asarray(reason)).astype(np.int16)
    return FilterOutput(keep=keep, reason=reason, reasons=tuple(reasons))


def threshold_or_off(x: float | None) -> float:
    """datatrove skips a check whose threshold is falsy (None or 0): encode that as -1."""
    return float(x) if x else -1.0
