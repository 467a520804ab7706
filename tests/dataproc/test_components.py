"""Sharded connected components (``dataproc.dedup.components``) against scipy's, and the keep pass
per component against the greedy rule on all edges at once.

The rounds are run here exactly as the stage runs them, partition by partition (the same
``partition_of``, ``star_violations``, ``contract`` and ``labels_of``), on graphs that stress them:
long paths with random ids (many rounds), a star, random sparse graphs, and duplicate edges.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from dataproc.dedup.base import partition_of, unique_rows
from dataproc.dedup.components import contract, labels_of, star_violations
from dataproc.dedup.keep import component_sizes
from dataproc.dedup.verify import greedy_keep


def sharded_labels(edges: np.ndarray, parts: int, max_rounds: int = 64) -> tuple[dict[int, int], int]:
    """``({vertex: smallest id of its component}, rounds)`` by the stage's rounds over ``parts`` partitions."""
    current = unique_rows(np.concatenate([edges, edges[:, ::-1]]))
    for rnd in range(1, max_rounds + 1):
        owner = partition_of(current[:, 0], parts)
        pieces, violations, labels = [], 0, {}
        for p in range(parts):
            mine = unique_rows(current[owner == p])
            v = star_violations(mine)
            violations += v
            pieces.append(contract(mine))
            if v == 0 and len(mine):
                verts, lab = labels_of(mine)
                labels.update(zip(verts.tolist(), lab.tolist(), strict=True))
        if violations == 0:
            return labels, rnd
        current = np.concatenate(pieces)
    raise AssertionError(f"no convergence in {max_rounds} rounds")


def scipy_labels(edges: np.ndarray) -> dict[int, int]:
    ids, inv = np.unique(edges, return_inverse=True)
    inv = inv.reshape(-1, 2)
    n = len(ids)
    _, comp = scipy_components(coo_matrix((np.ones(len(inv)), (inv[:, 0], inv[:, 1])), shape=(n, n)),
                               directed=False)
    smallest = np.full(comp.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(smallest, comp, ids)
    return dict(zip(ids.tolist(), smallest[comp].tolist(), strict=True))


def _random_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    # doc-id-like: file << 40 | row, scattered
    return (rng.integers(0, 300, n) << 40) | rng.permutation(10**7)[:n]


GRAPHS = {
    "path": lambda rng: (lambda v: np.stack([v[:-1], v[1:]], 1))(_random_ids(rng, 3000)),
    "star": lambda rng: (lambda v: np.stack([v[1:], np.full(len(v) - 1, v[0])], 1))(_random_ids(rng, 2000)),
    "sparse": lambda rng: _random_ids(rng, 5000)[rng.integers(0, 5000, (4000, 2))],
    "duplicates": lambda rng: np.tile(_random_ids(rng, 600)[rng.integers(0, 600, (500, 2))], (3, 1)),
}


@pytest.mark.parametrize("graph", sorted(GRAPHS))
@pytest.mark.parametrize("parts", [1, 3, 16])
def test_sharded_components_equal_scipy(graph: str, parts: int) -> None:
    rng = np.random.default_rng(parts)
    edges = GRAPHS[graph](rng).astype(np.int64)
    edges = edges[edges[:, 0] != edges[:, 1]]
    got, rounds = sharded_labels(edges, parts)
    assert got == scipy_labels(edges)
    if graph == "path" and parts > 1:
        assert rounds > 2  # a long path needs several rounds: the test exercises them


def test_every_converged_vertex_is_a_centre_or_a_leaf() -> None:
    star = np.array([[1, 5], [1, 7], [5, 1], [7, 1]], np.int64)
    assert star_violations(unique_rows(star)) == 0
    path = unique_rows(np.array([[1, 5], [5, 1], [5, 7], [7, 5]], np.int64))
    assert star_violations(path) == 1  # 5 has a smaller neighbour and two neighbours


def python_greedy(edges: np.ndarray) -> dict[int, tuple[int, int]]:
    """The chain-free rule in plain Python: ``{removed: (duplicate_of, equal)}``."""
    by_src: dict[int, list[tuple[int, int]]] = {}
    for s, d, e in edges.tolist():
        by_src.setdefault(s, []).append((-e, d))
    out: dict[int, tuple[int, int]] = {}
    for s in sorted(by_src):
        best = sorted(c for c in by_src[s] if c[1] not in out)
        if best:
            out[s] = (best[0][1], -best[0][0])
    return out


def test_keep_per_component_equals_keep_over_all_edges() -> None:
    """The keep step runs the greedy rule per component partition: the union equals the rule on
    all edges at once (and a plain-Python version of the rule)."""
    rng = np.random.default_rng(0)
    ids = _random_ids(rng, 4000)
    pairs = ids[rng.integers(0, 4000, (6000, 2))]
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    edges = np.concatenate([np.sort(pairs, 1)[:, ::-1], rng.integers(100, 129, (len(pairs), 1))], axis=1)
    edges = edges[np.unique(edges[:, :2], axis=0, return_index=True)[1]]
    whole = greedy_keep(edges)
    ref = python_greedy(edges)
    assert dict(zip(whole[0].tolist(), zip(whole[1].tolist(), whole[2].tolist(), strict=True), strict=True)) == ref
    labels = scipy_labels(edges[:, :2])
    label = np.array([labels[s] for s in edges[:, 0].tolist()], np.int64)
    for parts in (2, 7):
        got = [greedy_keep(edges[partition_of(label, parts) == q]) for q in range(parts)]
        merged = np.concatenate([np.stack(g, 1) for g in got])
        merged = merged[np.argsort(merged[:, 0])]
        assert np.array_equal(merged, np.stack(whole, 1))
    # component sizes as the keep units report them
    routes = np.concatenate([label[:, None], edges], axis=1)
    lab, size, other = component_sizes(routes)
    members: dict[int, set[int]] = {}
    for v, lv in labels.items():
        members.setdefault(lv, set()).add(v)
    assert dict(zip(lab.tolist(), size.tolist(), strict=True)) == {k: len(v) for k, v in members.items()}
    assert all(o in members[lv] and o != lv for lv, o in zip(lab.tolist(), other.tolist(), strict=True))
