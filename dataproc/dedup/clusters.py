"""Connected components of the duplicate graph, each labelled by its smallest doc id.

Doc ids are arbitrary int64 (the dedup stage packs ``file_index << 40 | row``); they are
remapped to ``0..m-1`` with ``np.unique`` (sorted, so a smaller index is a smaller id) and
merged with a compiled union-find. Linking every union to the smaller root keeps each
root the minimum of its set, so no second pass is needed to find the minimum; path
halving keeps the trees shallow.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _find(parent: np.ndarray, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving
        x = parent[x]
    return x


@numba.njit(cache=True, nogil=True)
def _union_find(src: np.ndarray, dst: np.ndarray, m: int) -> np.ndarray:
    parent = np.arange(m, dtype=np.int64)
    for i in range(src.shape[0]):
        ra = _find(parent, src[i])
        rb = _find(parent, dst[i])
        if ra < rb:
            parent[rb] = ra
        elif rb < ra:
            parent[ra] = rb
    for x in range(m):
        parent[x] = _find(parent, x)
    return parent


def connected_components(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(doc_ids, representative)`` for every doc id appearing in ``edges`` ((e, 2) int64).

    ``doc_ids`` is sorted and unique; ``representative[i]`` is the minimum doc id of the
    connected component containing ``doc_ids[i]`` (so it equals ``doc_ids[i]`` exactly
    for the one document per component that is kept).
    """
    edges = np.asarray(edges, dtype=np.int64)
    if edges.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy()
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape (e, 2), got {edges.shape}")
    ids, inverse = np.unique(edges.ravel(), return_inverse=True)
    inverse = inverse.reshape(-1, 2)
    roots = _union_find(np.ascontiguousarray(inverse[:, 0]), np.ascontiguousarray(inverse[:, 1]), ids.size)
    return ids, ids[roots]
