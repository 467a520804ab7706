"""Step 4 of dedup (unit = one component partition): which documents go, component by component.

Each unit reads the verified edges that the converged components round routed to it: whole
components, since an edge is routed by the component label of its endpoints. It runs the
chain-free greedy rule (:func:`~dataproc.dedup.verify.greedy_keep`) on them. The rule only
looks along edges, so running it per component gives exactly what it gives on all edges at
once: a document is removed only for a verified-near, earlier, *kept* document, its
``duplicate_of`` the most similar such document. Removals ``(doc, duplicate_of, equal slots)``
go out partitioned by input file; the unit marker keeps its largest components and size counts.
"""

from __future__ import annotations

import numpy as np

from dataproc.dedup.base import MAX_CC_ROUNDS, DedupStep
from dataproc.dedup.components import converged_round, round_units
from dataproc.io.arrays import read_partitions, save_partitioned
from dataproc.stage import UnitStats

TOP_COMPONENTS = 10


def component_sizes(routes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(label, size, other member)`` of every component in ``routes`` rows ``(label, doc, doc, equal)``.

    ``other member`` is the component's second-smallest doc id (its label is the smallest). Every
    vertex has one label, so the components are counted over the distinct vertices (~40 bytes an edge).
    """
    if len(routes) == 0:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    n = len(routes)
    verts, first = np.unique(np.concatenate([routes[:, 1], routes[:, 2]]), return_index=True)
    label = routes[first % n, 0]
    order = np.lexsort((verts, label))  # by label, then vertex: each run starts with the label itself
    label, verts = label[order], verts[order]
    labels, start, size = np.unique(label, return_index=True, return_counts=True)
    return labels, size, np.where(size > 1, verts[np.minimum(start + 1, len(verts) - 1)], labels)


class DedupKeep(DedupStep):
    """Step 4: the greedy keep pass over whole components; removals partitioned by input file."""

    name = "dedup-keep"
    bar_unit = " units"

    def units(self) -> list[str]:
        return [f"keep-p{p:04d}" for p in range(self.parts)]

    def process(self, unit_index: int, unit: str) -> UnitStats:
        from dataproc.dedup.keys import read_ids
        from dataproc.dedup.verify import greedy_keep

        rnd = converged_round(self)
        if rnd is None:
            missing = next((k for k in range(1, MAX_CC_ROUNDS + 1)
                            if any(m is None for m in self.markers(round_units(k, self.parts)))), None)
            if missing is not None:
                raise RuntimeError(f"{self.name}: components round {missing} has not finished; rerun the same "
                                   f"command to finish it")
            raise RuntimeError(f"{self.name}: connected components did not converge within {MAX_CC_ROUNDS} rounds "
                               f"(violations per round: {self.output_dir}/.units/cc-r*.json); a duplicate graph "
                               f"this deep is unexpected: please report it with those markers")
        parts, work = self.parts, self.work
        routes = read_partitions(work, [f"route/r{rnd:02d}/{p:04d}.npy" for p in range(parts)], unit_index, 4)
        doc, rep, equal = greedy_keep(routes[:, 1:])
        save_partitioned(work, f"removals/{unit_index:04d}.npy", np.stack([doc, rep, equal], 1),
                         doc >> 40, self.n_files)
        labels, sizes, other = component_sizes(routes)
        top = np.lexsort((labels, -sizes))[:TOP_COMPONENTS]
        names = read_ids(work, np.concatenate([labels[top], other[top]])).to_pylist()
        largest = [{"size": int(sizes[i]), "earliest_id": names[j], "other_id": names[len(top) + j],
                    "earliest_doc": int(labels[i])} for j, i in enumerate(top.tolist())]
        groups = np.unique(rep, return_counts=True)[1] + 1 if len(rep) else np.zeros(0, np.int64)
        hist = dict(zip(*[a.tolist() for a in np.unique(groups, return_counts=True)], strict=True))
        comp_hist = dict(zip(*[a.tolist() for a in np.unique(sizes, return_counts=True)], strict=True))
        return UnitStats(extra={"round": rnd, "edges": len(routes), "components": len(labels),
                                "removed": len(doc), "clusters": len(groups),
                                "cluster_sizes": {str(k): v for k, v in hist.items()},
                                "component_sizes": {str(k): v for k, v in comp_hist.items()},
                                "largest_components": largest})
