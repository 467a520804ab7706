"""Step 3 of dedup: connected components of the verified edges, by rounds of sharded contraction.

The edge set is symmetric and partitioned by its first vertex (``partition_of``), so partition
``p`` holds every edge of the vertices it owns. A round, in each partition: union-find over its
edges, then for every vertex of every local piece an edge to the piece's smallest id (both
directions, sent to the partitions of their first vertex). Pieces only ever join vertices of one
component, so components are kept; smallest ids spread along them, so each round shortens them
(a 200,000-vertex path takes 12 rounds at 64 partitions; near-duplicate graphs 3-6).

A round's input is *converged* when every component is a star around its smallest id: every
owned vertex either has only larger neighbours (a centre) or exactly one neighbour (a leaf). Each
partition checks this for its own vertices; when all report no violation, each vertex's label
(itself, or its one neighbour) is its component's smallest doc id. A partition whose input is
converged also routes its vertices' verified edges to the partition of their label
(``route/r<k>/``), so the round where all partitions are converged has routed every edge: the
keep step reads that round's routes. Rounds after it do nothing, and are not launched locally.

Memory: a partition holds its share of the edges; a component's centre holds one edge per member,
so the largest component sets a floor (``stats.json`` lists the largest components).
"""

from __future__ import annotations

import numpy as np

from dataproc.dedup.base import MAX_CC_ROUNDS, DedupStep, partition_of, unique_rows
from dataproc.io.arrays import read_partitions, save_partitioned
from dataproc.stage import UnitStats


def star_violations(edges: np.ndarray) -> int:
    """Vertices (first column) of sorted unique ``edges`` that are neither a centre nor a leaf."""
    if len(edges) == 0:
        return 0
    u = edges[:, 0]
    first = np.ones(len(u), bool)
    first[1:] = u[1:] != u[:-1]
    starts = np.flatnonzero(first)
    degree = np.diff(np.append(starts, len(u)))
    smallest = edges[starts, 1]  # sorted: the first neighbour is the smallest
    return int(np.sum((smallest < u[starts]) & (degree > 1)))


def labels_of(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(vertices, labels)`` of converged sorted unique ``edges``: a centre labels itself, a leaf its neighbour."""
    u = edges[:, 0]
    first = np.ones(len(u), bool)
    first[1:] = u[1:] != u[:-1]
    verts, smallest = u[first], edges[first, 1]
    return verts, np.minimum(verts, smallest)


def contract(edges: np.ndarray) -> np.ndarray:
    """One round in one partition: star edges (both directions) of the union-find pieces of ``edges``."""
    from dataproc.dedup.buckets import star_edges

    return star_edges(edges) if len(edges) else np.zeros((0, 2), np.int64)


class DedupComponents(DedupStep):
    """One connected-components round (``round_index`` >= 1); units are the component partitions."""

    bar_unit = " units"

    def __init__(self, *args, round_index: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 1 <= round_index <= MAX_CC_ROUNDS:
            raise ValueError(f"round_index must be in [1, {MAX_CC_ROUNDS}], got {round_index}")
        self.round_index = round_index
        self.name = f"dedup-components-r{round_index:02d}"

    def units(self) -> list[str]:
        return round_units(self.round_index, self.parts)

    def skippable(self) -> bool:
        """An earlier round's input was converged (its routes are final): O(rounds x partitions) markers,
        read once per process (earlier rounds are complete before this one starts)."""
        if self.__dict__.get("_skip") is None:
            self.__dict__["_skip"] = self.round_index > 1 and converged_round(self, self.round_index - 1) is not None
        return self.__dict__["_skip"]

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_skip": None}

    def process(self, unit_index: int, unit: str) -> UnitStats:
        k, p, parts, work = self.round_index, unit_index, self.parts, self.work
        if self.skippable():
            return UnitStats(extra={"skipped": 1})
        sources = ([f"edges/{u}.npy" for u in self.bucket_units()] if k == 1
                   else [f"cc/r{k - 1:02d}/{q:04d}.npy" for q in range(parts)])
        edges = unique_rows(read_partitions(work, sources, p, 2))
        violations = star_violations(edges)
        star = contract(edges)
        save_partitioned(work, f"cc/r{k:02d}/{p:04d}.npy", star, partition_of(star[:, 0], parts), parts)
        routed = 0
        if violations == 0:
            verts, labels = labels_of(edges)
            verified = read_partitions(work, [f"verified/{u}.npy" for u in self.bucket_units()], p, 3)
            pos = np.searchsorted(verts, verified[:, 0])
            if len(verified) and (pos.max(initial=0) >= len(verts) or np.any(verts[pos] != verified[:, 0])):
                raise RuntimeError(f"{self.name} partition {p}: a verified edge's vertex has no component edge")
            label = labels[pos]
            routes = np.concatenate([label[:, None], verified], axis=1)
            save_partitioned(work, f"route/r{k:02d}/{p:04d}.npy", routes, partition_of(label, parts), parts)
            routed = len(routes)
        return UnitStats(extra={"violations": violations, "edges_in": len(edges), "edges_out": len(star),
                                "routed": routed, "skipped": 0})


def round_units(round_index: int, parts: int) -> list[str]:
    return [f"cc-r{round_index:02d}-p{p:04d}" for p in range(parts)]


def converged_round(step: DedupStep, last: int = MAX_CC_ROUNDS) -> int | None:
    """The first round <= ``last`` whose input all partitions found converged (None if none yet).

    Reads the rounds' unit markers only: O(rounds x partitions).
    """
    parts = step.parts
    for k in range(1, last + 1):
        marks = step.markers(round_units(k, parts))
        if any(m is None for m in marks):
            return None
        if any(m["extra"].get("skipped") for m in marks):
            continue
        if sum(m["extra"]["violations"] for m in marks) == 0:
            return k
    return None
