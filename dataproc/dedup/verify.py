"""Candidate verification and chain-free clustering of near-duplicates.

LSH buckets only propose pairs. :func:`verify_buckets` turns one band's buckets into
candidate pairs and sorts each by how many of the ``num_perm`` signature slots agree (the
unbiased Jaccard estimate is ``equal / num_perm``, standard error ``sqrt(t(1-t)/num_perm)``):

* ``accept_equal <= equal``: a verified edge;
* ``pending_equal <= equal < accept_equal``: *pending*, settled later by the exact Jaccard of
  the two documents' shingle sets (:func:`exact_jaccard_pairs`; only the documents of pending
  pairs are shingled again);
* otherwise rejected.

:func:`verify_bounds` sets the two bounds per mode: ``estimate`` (nothing pending: the estimate
alone decides), ``hybrid`` (the default: estimates within ``HYBRID_SE`` standard errors of the
threshold, on either side, are checked exactly, so a pair at J = t is accepted instead of passing a
coin flip, and a pair at J < t is not accepted on a lucky estimate; only clear estimates decide
alone) and ``exact`` (every pair with an estimate above ``0.75 t`` is decided by the exact value).

Pairs: in a bucket sorted by doc id, every member is checked against the earlier members,
earliest first, at most ``max_checks`` of them (buckets of thousands of copies stay linear;
capped pairs are counted). A pair whose signatures also agree on a whole earlier band was
already a candidate in that band and is skipped, so each pair is verified once overall.

:func:`greedy_keep` clusters the verified edges without chaining: documents are visited in
doc-id order and one is removed only if it has a verified edge to an earlier document that
is *kept*; its ``duplicate_of`` is the most similar such document (then the smallest id).
So every removed document is near (>= threshold) to the document that stands for it, and a
group of near copies can never be removed entirely: its earliest member is either kept or
removed for a kept document it is near to.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _exact_jaccard(va: np.ndarray, oa: np.ndarray, a: int, vb: np.ndarray, ob: np.ndarray, b: int) -> float:
    """Jaccard of row ``a`` of the CSR ``(va, oa)`` and row ``b`` of ``(vb, ob)``: sorted, unique runs."""
    i, ie, j, je = oa[a], oa[a + 1], ob[b], ob[b + 1]
    na, nb = ie - i, je - j
    if na + nb == 0:
        return 1.0
    common = 0
    while i < ie and j < je:
        if va[i] == vb[j]:
            common += 1
            i += 1
            j += 1
        elif va[i] < vb[j]:
            i += 1
        else:
            j += 1
    return common / (na + nb - common)


HYBRID_SE = 3.0  # hybrid: estimates within this many standard errors of the threshold go to exact
VERIFY_MODES = ("hybrid", "estimate", "exact")


def verify_bounds(threshold: float, num_perm: int, mode: str = "hybrid") -> tuple[int, int]:
    """``(accept_equal, pending_equal)``: equal-slot counts to accept a pair, and to check it exactly."""
    if mode not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {mode!r}")
    accept = int(np.ceil(threshold * num_perm - 1e-9))
    if mode == "estimate":
        return accept, accept
    if mode == "exact":  # estimates far below the threshold need no exact check
        return num_perm + 1, int(np.ceil(0.75 * accept))
    se = np.sqrt(threshold * (1 - threshold) / num_perm)
    return (min(num_perm, int(np.ceil((threshold + HYBRID_SE * se) * num_perm))),
            max(1, int(np.floor((threshold - HYBRID_SE * se) * num_perm))))


@numba.njit(cache=True, nogil=True)
def _verify(keys: np.ndarray, docs: np.ndarray, rows_of: np.ndarray, sigs: np.ndarray, band: int, rows: int,
            accept_equal: int, pending_equal: int, max_checks: int, out: np.ndarray, pend: np.ndarray,
            counts: np.ndarray) -> tuple[int, int]:
    """Verify the pairs of the buckets of ``keys`` (sorted by key, then doc); return (#edges, #pending).

    ``rows_of[i]`` is the row of ``sigs`` holding document ``docs[i]``. ``counts`` gets
    [candidates, verified, rejected, capped, seen_in_earlier_band, pending].
    """
    n = keys.shape[0]
    num_perm = sigs.shape[1]
    ne = 0
    npend = 0
    s = 0
    while s < n:
        e = s + 1
        while e < n and keys[e] == keys[s]:
            e += 1
        for p in range(s + 1, e):
            checks = 0
            for q in range(s, p):
                if docs[q] == docs[p]:
                    continue
                if checks >= max_checks:
                    counts[3] += p - q
                    break
                checks += 1
                ra, rb = rows_of[p], rows_of[q]
                equal = 0
                earlier = False
                for k in range(num_perm):
                    if sigs[ra, k] == sigs[rb, k]:
                        equal += 1
                # Did a whole earlier band agree? Then that band's unit verified this pair.
                for b in range(band):
                    full = True
                    for k in range(b * rows, (b + 1) * rows):
                        if sigs[ra, k] != sigs[rb, k]:
                            full = False
                            break
                    if full:
                        earlier = True
                        break
                if earlier:
                    counts[4] += 1
                    continue
                counts[0] += 1
                if equal >= accept_equal:
                    out[ne, 0] = docs[p]
                    out[ne, 1] = docs[q]
                    out[ne, 2] = equal
                    ne += 1
                    counts[1] += 1
                elif equal >= pending_equal:
                    pend[npend, 0] = docs[p]
                    pend[npend, 1] = docs[q]
                    pend[npend, 2] = equal
                    npend += 1
                    counts[5] += 1
                else:
                    counts[2] += 1
        s = e
    return ne, npend


@numba.njit(cache=True, nogil=True)
def _pairs_jaccard(va: np.ndarray, oa: np.ndarray, a: np.ndarray, vb: np.ndarray, ob: np.ndarray,
                   b: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape[0], np.float64)
    for i in range(a.shape[0]):
        out[i] = _exact_jaccard(va, oa, a[i], vb, ob, b[i])
    return out


def exact_jaccard_pairs(vals: np.ndarray, off: np.ndarray, a: np.ndarray, b: np.ndarray,
                        other: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Exact Jaccard of rows ``a[i]`` and ``b[i]`` of CSRs of sorted unique shingle keys.

    Row ``a[i]`` is in ``(vals, off)``; row ``b[i]`` in ``other`` (default: the same CSR).
    """
    vb, ob = other if other is not None else (vals, off)
    if vb.dtype != vals.dtype:
        raise ValueError(f"both CSRs need one key type, got {vals.dtype} and {vb.dtype}")
    return _pairs_jaccard(np.ascontiguousarray(vals), np.ascontiguousarray(off, np.int64),
                          np.ascontiguousarray(a, np.int64), np.ascontiguousarray(vb),
                          np.ascontiguousarray(ob, np.int64), np.ascontiguousarray(b, np.int64))


@numba.njit(cache=True, nogil=True)
def _sorted_sets(vals: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty_like(vals)
    out_off = np.zeros_like(off)
    n = 0
    for d in range(off.shape[0] - 1):
        run = np.sort(vals[off[d]:off[d + 1]])
        for i in range(run.shape[0]):
            if i == 0 or run[i] != run[i - 1]:
                out[n] = run[i]
                n += 1
        out_off[d + 1] = n
    return out[:n].copy(), out_off


@numba.njit(cache=True, nogil=True)
def _top32(vals: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(vals.shape[0], np.uint32)
    out_off = np.zeros_like(off)
    n = 0
    for d in range(off.shape[0] - 1):
        first = n
        for i in range(off[d], off[d + 1]):
            x = np.uint32(vals[i] >> np.uint64(32))
            if n == first or out[n - 1] != x:
                out[n] = x
                n += 1
        out_off[d + 1] = n
    return out[:n].copy(), out_off


def top32_sets(vals: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique 64-bit shingle hashes (CSR) → their top 32 bits, still sorted and unique.

    These are the keys the MinHash permutations see (``x = s >> 32``), at half the memory.
    """
    return _top32(np.ascontiguousarray(vals, np.uint64), np.ascontiguousarray(off, np.int64))


def sorted_sets(vals: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each CSR row ``vals[off[i]:off[i + 1]]`` sorted with repeats dropped (for exact Jaccard)."""
    return _sorted_sets(np.ascontiguousarray(vals, np.uint64), np.ascontiguousarray(off, np.int64))


def bucket_order(keys: np.ndarray, doc_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by (key, doc id), restricted to buckets of >= 2 rows: ``(keys, docs, positions)``."""
    order = np.lexsort((doc_ids, keys))
    k = keys[order]
    if k.size < 2:
        return k[:0], doc_ids[:0], order[:0]
    same = k[1:] == k[:-1]
    multi = np.zeros(k.size, dtype=bool)
    multi[1:] |= same
    multi[:-1] |= same
    order = order[multi]
    return keys[order], doc_ids[order], order


def verify_buckets(keys: np.ndarray, docs: np.ndarray, rows_of: np.ndarray, sigs: np.ndarray, band: int,
                   rows: int, threshold: float, max_checks: int = 32, mode: str = "estimate",
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """``(edges, pending, counts)`` of one band's buckets, each ``(e, 3)`` int64 ``(doc, earlier doc, equal slots)``.

    ``keys``/``docs`` come from :func:`bucket_order`; ``sigs[rows_of[i]]`` is the signature of
    ``docs[i]``. ``mode`` sets the bounds of :func:`verify_bounds`; ``pending`` pairs still need
    their exact Jaccard (:func:`exact_jaccard_pairs`) to become edges.
    """
    accept_equal, pending_equal = verify_bounds(threshold, sigs.shape[1], mode)
    # Member p of a bucket (0-based) is checked against min(p, max_checks) earlier members.
    m = np.unique(keys, return_counts=True)[1].astype(np.int64) if len(keys) else np.zeros(0, np.int64)
    small = np.minimum(m - 1, max_checks)
    bound = int(np.sum(small * (small + 1) // 2 + np.maximum(m - 1 - max_checks, 0) * max_checks))
    out = np.empty((bound, 3), dtype=np.int64)
    pend = np.empty((bound if pending_equal < accept_equal else 0, 3), dtype=np.int64)
    counts = np.zeros(6, dtype=np.int64)
    ne, npend = _verify(keys.view(np.uint64), docs, rows_of.astype(np.int64), sigs, band, rows, accept_equal,
                        pending_equal, max_checks, out, pend, counts)
    names = ("candidates", "verified", "rejected", "capped", "repeat_pairs", "pending")
    return out[:ne], pend[:npend], dict(zip(names, counts.tolist(), strict=True))


@numba.njit(cache=True, nogil=True)
def _is_removed(removed: np.ndarray, n: int, doc: int) -> bool:
    """Binary search of ``doc`` in the sorted ``removed[:n]``."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) >> 1
        if removed[mid] < doc:
            lo = mid + 1
        else:
            hi = mid
    return lo < n and removed[lo] == doc


@numba.njit(cache=True, nogil=True)
def _greedy(src: np.ndarray, dst: np.ndarray, eq: np.ndarray, order: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk the edges in ``order`` (by source, best first); a source is removed for its first edge to a
    document not removed. Every ``dst < src`` was settled before ``src`` (sources ascend), and the
    removed sources are appended in ascending order, so membership is a binary search."""
    groups = 0
    for i in range(order.shape[0]):
        if i == 0 or src[order[i]] != src[order[i - 1]]:
            groups += 1
    removed = np.empty(groups, np.int64)
    dup = np.empty(groups, np.int64)
    sim = np.empty(groups, np.int64)
    n = 0
    i = 0
    ne = order.shape[0]
    while i < ne:
        s = src[order[i]]
        chosen = -1
        while i < ne and src[order[i]] == s:
            k = order[i]
            if chosen < 0 and dst[k] < s and not _is_removed(removed, n, dst[k]):
                chosen = k
            i += 1
        if chosen >= 0:
            removed[n] = s
            dup[n] = dst[chosen]
            sim[n] = eq[chosen]
            n += 1
    return removed[:n].copy(), dup[:n].copy(), sim[:n].copy()


def greedy_keep(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(removed, duplicate_of, equal_slots)`` from verified edges ``(doc, earlier doc, equal)``.

    The rule of the module docstring: a document is removed iff it has an edge to an earlier,
    kept document; ``duplicate_of`` is the most similar one (ties: the smallest doc id).
    Outputs are sorted by removed doc id. Edges with ``doc <= earlier doc`` are ignored. Memory:
    one sort index and the outputs (~16 bytes an edge besides the input; edges are read in place).
    """
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 3)
    if len(edges) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty.copy(), empty.copy()
    src, dst, eq = edges[:, 0], edges[:, 1], edges[:, 2]
    order = np.lexsort((dst, -eq, src))
    return _greedy(src, dst, eq, order)
