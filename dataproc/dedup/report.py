"""The ``clusters`` section of a dedup stage's ``stats.json``, merged from unit markers (O(units)).

* counters of the bucket units: ``candidates = verified + rejected``, ``capped``, ``repeat_pairs``,
  ``pending`` / ``exact_checked``, ``verify_s``;
* ``similarity``: the distribution of the verified pairs' Jaccard (signature estimate, or the exact
  value where it was checked): counts per 0.02 bin and quantiles;
* the keep units': ``clusters`` (kept documents with removed copies) and their size histogram,
  ``removed``, ``components`` of the verified edges, their size histogram and the 10 largest
  (size, earliest member's id, another member's id), ``component_rounds`` to converge;
* ``warnings``: one line per component over ``warn_component_size`` documents (a boilerplate page,
  or a threshold too low for this corpus: worth a look before trusting the removals).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from dataproc.dedup.base import COUNTERS, DedupStep
from dataproc.dedup.components import converged_round

BIN = 0.02


def similarity_summary(counts: np.ndarray) -> dict[str, Any]:
    """Histogram (0.02 bins, non-empty ones) and quantiles of similarities ``i / (len(counts) - 1)``."""
    n = int(counts.sum())
    if n == 0:
        return {"pairs": 0, "histogram": {}}
    values = np.arange(len(counts)) / max(1, len(counts) - 1)
    bins = np.minimum(np.floor(values / BIN + 1e-9).astype(int), round(1 / BIN) - 1)
    hist = np.bincount(bins, weights=counts, minlength=round(1 / BIN)).astype(np.int64)
    cum = np.cumsum(counts)
    q = {f"p{int(p * 100):02d}": round(float(values[np.searchsorted(cum, p * n, side="left")]), 4)
         for p in (0.01, 0.1, 0.5, 0.9)}
    return {"pairs": n, "min": round(float(values[np.flatnonzero(counts)[0]]), 4), **q,
            "mean": round(float((values * counts).sum() / n), 4),
            "histogram": {f"{b * BIN:.2f}-{(b + 1) * BIN:.2f}": int(c) for b, c in enumerate(hist) if c}}


def dedup_report(step: DedupStep) -> dict[str, Any]:
    """``{"clusters": {...}, "warnings": [...]}`` for the dedup stage whose step is ``step``."""
    from dataproc.dedup.keep import TOP_COMPONENTS

    totals: dict[str, float] = dict.fromkeys((*COUNTERS, "verify_s"), 0)
    similarity: np.ndarray | None = None
    for m in step.markers(step.bucket_units()):
        extra = (m or {}).get("extra", {})
        for k in totals:
            totals[k] += extra.get(k, 0)
        if "similarity" in extra:
            s = np.asarray(extra["similarity"], np.int64)
            similarity = s if similarity is None else similarity + s
    totals["verify_s"] = round(totals["verify_s"], 3)
    keep_marks = [m["extra"] for m in step.markers([f"keep-p{p:04d}" for p in range(step.parts)]) if m]
    groups: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    largest: list[dict[str, Any]] = []
    for e in keep_marks:
        groups.update(e["cluster_sizes"])
        sizes.update(e["component_sizes"])
        largest += e["largest_components"]
    largest = sorted(largest, key=lambda c: (-c["size"], c["earliest_doc"]))[:TOP_COMPONENTS]
    by_size = sorted(groups.items(), key=lambda kv: int(kv[0]))
    info = {"clusters": sum(e["clusters"] for e in keep_marks), "removed": sum(e["removed"] for e in keep_marks),
            "cluster_size_histogram": dict(by_size),
            "threshold": getattr(step.keyer, "threshold", 1.0), "verify": getattr(step.keyer, "verify", "exact_key"),
            **totals,
            "components": sum(e["components"] for e in keep_marks),
            "component_size_histogram": dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
            "largest_components": [{k: c[k] for k in ("size", "earliest_id", "other_id")} for c in largest],
            "component_rounds": converged_round(step),
            "similarity": similarity_summary(similarity if similarity is not None else np.zeros(2, np.int64)),
            "warn_component_size": step.warn_component_size}
    warnings = [f"{step.keyer.name} dedup: a connected component of {c['size']:,} documents linked as duplicates "
                f"(earliest id {c['earliest_id']!r}, also {c['other_id']!r}) exceeds warn_component_size="
                f"{step.warn_component_size}: a template or boilerplate page, or a threshold too low for this "
                f"corpus? Inspect its removed/ rows (duplicate_of) before trusting them"
                for c in largest if c["size"] > step.warn_component_size]
    return {"clusters": info, "warnings": warnings}
