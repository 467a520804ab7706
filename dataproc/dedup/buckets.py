"""Step 2 of dedup (unit = one band x key range): candidate pairs, verified where they are found.

A unit reads its range of every file's keys, and the documents sharing a key are candidates
(:mod:`dataproc.dedup.verify`). MinHash candidates are checked against the threshold with their
signatures (the rows needed are read by range from ``sigs/``); pairs whose estimate is too close
to call (``hybrid``; every pair with ``exact``) are settled right here by the exact Jaccard of their
shingle sets, read by range from ``sets/``. So no step ever holds the corpus's pairs, and each
pair is decided once (a pair seen in an earlier band was decided there). Exact dedup's
candidates need no check: they become star edges to the bucket's smallest doc id.

Outputs: the verified edges ``(doc, earlier doc, equal slots)`` partitioned by component
partition of ``doc`` (``verified/``), and the same connectivity contracted to star edges to the
smallest doc of each connected piece, both directions (``edges/``, the components rounds' input).
"""

from __future__ import annotations

import time

import numba
import numpy as np

from dataproc.dedup.base import DedupStep, file_of, partition_of, row_of
from dataproc.io.arrays import NpyFile, read_partitions, read_ranges, save_partitioned
from dataproc.stage import UnitStats


def star_edges(edges: np.ndarray) -> np.ndarray:
    """Both directions of an edge from every vertex of ``edges[:, :2]`` to its component's smallest id."""
    from dataproc.dedup.clusters import connected_components

    ids, rep = connected_components(edges[:, :2])
    leaf = ids != rep
    a, b = ids[leaf], rep[leaf]
    return np.concatenate([np.stack([a, b], 1), np.stack([b, a], 1)]).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _gather(values: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray) -> None:
    m = 0
    for i in range(starts.shape[0]):
        for j in range(starts[i], ends[i]):
            out[m] = values[j]
            m += 1


def gather_runs(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``values[starts[i]:ends[i]]`` for every ``i``, concatenated (``values`` may be memory-mapped)."""
    starts, ends = np.ascontiguousarray(starts, np.int64), np.ascontiguousarray(ends, np.int64)
    out = np.empty(int((ends - starts).sum()), values.dtype)
    _gather(values, starts, ends, out)
    return out


def similarity_histogram(equal: np.ndarray, num_perm: int) -> list[int]:
    """Counts of verified edges by equal-slot count ``0..num_perm`` (exact checks: rounded Jaccard)."""
    return np.bincount(np.clip(equal, 0, num_perm), minlength=num_perm + 1).tolist()


class DedupBuckets(DedupStep):
    """Step 2: verified edges between documents that share a key in one band x key range."""

    name = "dedup-buckets"
    bar_unit = " units"

    def units(self) -> list[str]:
        return self.bucket_units()

    def process(self, unit_index: int, unit: str) -> UnitStats:
        band = unit_index // self.ranges
        work = self.work
        rows = read_partitions(work, [f"keys/{f:05d}.npy" for f in range(self.n_files)], unit_index, 2)
        keys, docs = np.ascontiguousarray(rows[:, 0]).view(np.uint64), np.ascontiguousarray(rows[:, 1])
        del rows
        t0 = time.perf_counter()
        if self.verifies:
            edges, counts = self._verified(keys, docs, band)
            num_perm = self.keyer.num_perm
        else:
            from dataproc.dedup.lsh import bucket_edges

            star = bucket_edges(keys, docs)
            edges = np.concatenate([star, np.ones((len(star), 1), np.int64)], axis=1)
            counts = {"candidates": len(star), "verified": len(star), "rejected": 0, "capped": 0,
                      "repeat_pairs": 0, "pending": 0, "exact_checked": 0}
            num_perm = 1
        edges = np.asarray(edges, np.int64).reshape(-1, 3)
        parts = self.parts
        save_partitioned(work, f"verified/{unit}.npy", edges, partition_of(edges[:, 0], parts), parts)
        star = star_edges(edges)
        save_partitioned(work, f"edges/{unit}.npy", star, partition_of(star[:, 0], parts), parts)
        return UnitStats(extra={**counts, "edges": len(edges), "verify_s": round(time.perf_counter() - t0, 4),
                                "similarity": similarity_histogram(edges[:, 2], num_perm)})

    def _verified(self, keys: np.ndarray, docs: np.ndarray, band: int) -> tuple[np.ndarray, dict]:
        from dataproc.dedup.verify import bucket_order, verify_buckets

        keys, docs, _ = bucket_order(keys, docs)
        uniq, rows_of = np.unique(docs, return_inverse=True)
        sigs = np.zeros((len(uniq), self.keyer.num_perm), np.uint32)
        files = file_of(uniq)
        for f in np.unique(files).tolist():
            sel = np.flatnonzero(files == f)
            sigs[sel] = NpyFile(self.work, f"sigs/{f:05d}.npy").rows(row_of(uniq[sel]))
        edges, pending, counts = verify_buckets(keys, docs, rows_of, sigs, band, self.keyer.rows,
                                                self.keyer.threshold, self.keyer.max_checks, self.keyer.verify)
        del sigs
        exact = self._settle(pending)
        counts["exact_checked"] = len(pending)
        # A pending pair was neither verified nor rejected by its estimate: its exact value decides.
        counts["verified"] += len(exact)
        counts["rejected"] += len(pending) - len(exact)
        return np.concatenate([edges, exact]), counts

    def _settle(self, pending: np.ndarray) -> np.ndarray:
        """The pending pairs whose exact Jaccard reaches the threshold, with ``round(J * num_perm)`` slots."""
        from dataproc.dedup.verify import exact_jaccard_pairs

        if len(pending) == 0:
            return np.zeros((0, 3), np.int64)
        need = np.unique(pending[:, :2])
        vals, off = self._sets(need)
        a, b = np.searchsorted(need, pending[:, 0]), np.searchsorted(need, pending[:, 1])
        jac = exact_jaccard_pairs(vals, off, a, b)
        ok = jac >= self.keyer.threshold
        edges = pending[ok].copy()
        # The exact value orders a document's candidate representatives like the estimate would.
        edges[:, 2] = np.round(jac[ok] * self.keyer.num_perm).astype(np.int64)
        return edges

    def _sets(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR of the shingle sets of ``docs`` (sorted doc ids), read by range from each file's ``sets/``."""
        lens, vals = np.zeros(len(docs), np.int64), []
        files = file_of(docs)
        work = self.work
        for f in np.unique(files).tolist():
            sel = np.flatnonzero(files == f)
            rows = row_of(docs[sel])
            bounds = NpyFile(work, f"sets/{f:05d}-offsets.npy").rows(np.concatenate([rows, rows + 1]))
            starts, ends = bounds[:len(rows)], bounds[len(rows):]
            values = NpyFile(work, f"sets/{f:05d}.npy")
            if work.is_local:
                vals.append(gather_runs(np.asarray(values.mmap()), starts, ends))
            else:
                itemsize = values.dtype.itemsize
                chunks = read_ranges(work, values.path, values.offset + starts * itemsize,
                                     values.offset + ends * itemsize)
                vals.append(np.frombuffer(b"".join(chunks), values.dtype))
            lens[sel] = ends - starts
        # ``docs`` is sorted, so file by file the runs come in ``docs`` order.
        offsets = np.zeros(len(docs) + 1, np.int64)
        np.cumsum(lens, out=offsets[1:])
        return (np.concatenate(vals) if vals else np.zeros(0, np.uint32)), offsets



