"""What every dedup step shares: doc ids, how work is partitioned, and where work files live.

Doc ids are ``file_index << 40 | row`` (row = the row number in the input file), so they sort in
input order. Every partition count grows with the number of input files, so no task's share
grows with the corpus:

* bucket units: ``bands x key_ranges(files)`` (a band's keys split by their top bits);
* component partitions: ``partitions(files)``; a document belongs to ``partition_of(doc)``,
  a hash of its id, and a connected component to the partition of its smallest doc id.

Work files (under ``<output>/work/``), each written once, atomically, by one unit:

* ``keys/<file>.npy`` (+ ``-index``): ``(key, doc)`` rows partitioned by bucket unit;
* ``sigs/<file>.npy``: MinHash signatures, one row per input row; ``sets/<file>.npy`` (+
  ``-offsets``): each row's sorted unique 32-bit shingle keys (when exact checks are on);
  ``ids/<file>.bin`` (+ ``-offsets``): each row's ``id``;
* ``verified/<unit>.npy``: a bucket unit's verified edges ``(doc, earlier doc, equal slots)``
  partitioned by the component partition of ``doc``; ``edges/<unit>.npy``: the same
  connectivity as star edges (both directions), the input of the first components round;
* ``cc/r<k>/<part>.npy``: round ``k``'s star edges; ``route/r<k>/<part>.npy``: verified edges
  with their component label, partitioned by the label's partition (written when converged);
* ``removals/<part>.npy``: ``(doc, duplicate_of doc, equal slots)`` partitioned by input file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dataproc.dedup.keyers import Keyer
from dataproc.io.storage import Folder
from dataproc.stage import UNITS_DIR, UnitStage

ROW_BITS = 40
ROW_MASK = (1 << ROW_BITS) - 1
# key ranges and component partitions: one per ~8 input files (a bucket unit then holds a band of
# ~8 files' documents: larger units cost less per file opened, smaller ones hold less at once)
FILES_PER_PARTITION = 8
MAX_PARTITIONS = 1024
# Components rounds planned (Slurm submits them all; locally, rounds after convergence are not run).
# Near-duplicate graphs converge in 3-6 rounds; a 200k-document path needs 12 at 64 partitions.
MAX_CC_ROUNDS = 24
COUNTERS = ("candidates", "verified", "rejected", "capped", "repeat_pairs", "pending", "exact_checked")


def key_ranges(n_files: int, files_per_partition: int = FILES_PER_PARTITION) -> int:
    """Key ranges per band: a power of two, ~``n_files / files_per_partition``, in [1, 1024]."""
    if files_per_partition < 1:
        raise ValueError(f"files_per_partition must be >= 1, got {files_per_partition}")
    want = max(1, -(-n_files // files_per_partition))
    return min(MAX_PARTITIONS, 1 << (want - 1).bit_length())


def partitions(n_files: int, files_per_partition: int = FILES_PER_PARTITION) -> int:
    """Component partitions (connected-components rounds and keep units): as many as key ranges."""
    return key_ranges(n_files, files_per_partition)


def partition_of(docs: np.ndarray, n: int) -> np.ndarray:
    """The component partition of each doc id: a 64-bit mix of the id, mod ``n`` (int64)."""
    h = np.asarray(docs, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return (h % np.uint64(n)).astype(np.int64)


def range_of(keys: np.ndarray, ranges: int) -> np.ndarray:
    """The key range of each uint64 key: its top ``log2(ranges)`` bits."""
    shift = np.uint64(64 - (ranges.bit_length() - 1))
    return (keys >> shift).astype(np.int64) if ranges > 1 else np.zeros(keys.shape, np.int64)


def file_of(docs: np.ndarray) -> np.ndarray:
    return np.asarray(docs, np.int64) >> ROW_BITS


def row_of(docs: np.ndarray) -> np.ndarray:
    return np.asarray(docs, np.int64) & ROW_MASK


def unique_rows(edges: np.ndarray) -> np.ndarray:
    """Distinct rows of an ``(e, k)`` int64 array, sorted lexicographically."""
    if len(edges) == 0:
        return edges
    order = np.lexsort(edges.T[::-1])
    e = edges[order]
    keep = np.ones(len(e), bool)
    keep[1:] = np.any(e[1:] != e[:-1], axis=1)
    return e[keep]


class DedupStep(UnitStage):
    """A dedup step over ``inputs``: the keyer, read options, the work folder and the partitioning."""

    def __init__(self, inputs: Sequence[str] | str, output_dir: str, keyer: Keyer, progress: bool = True,
                 files_per_partition: int = FILES_PER_PARTITION, **read_options) -> None:
        super().__init__(output_dir, progress, inputs)
        self.keyer, self.read_options = keyer, read_options
        self.files_per_partition = files_per_partition

    @property
    def work(self) -> Folder:
        """``<output>/work`` (built once per process: an fsspec lookup costs ~30 us, per file read)."""
        if self.__dict__.get("_work") is None:
            self.__dict__["_work"] = self.out.sub("work")
        return self.__dict__["_work"]

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "_work": None}

    @property
    def n_files(self) -> int:
        return len(self.inputs)

    @property
    def ranges(self) -> int:
        return key_ranges(self.n_files, self.files_per_partition)

    @property
    def parts(self) -> int:
        return partitions(self.n_files, self.files_per_partition)

    @property
    def verifies(self) -> bool:
        """MinHash: candidate pairs are checked against the threshold (exact dedup: equal keys suffice)."""
        return hasattr(self.keyer, "sketch")

    @property
    def exact_sets(self) -> bool:
        """Whether shingle sets are kept for exact Jaccard checks."""
        return bool(getattr(self.keyer, "needs_sets", False))

    def bucket_units(self) -> list[str]:
        return [f"band-{b:03d}-r{r:04d}" for b in range(self.keyer.bands) for r in range(self.ranges)]

    def markers(self, units: Sequence[str]) -> list[dict | None]:
        """The unit markers of ``units`` (None where a unit is not done)."""
        out = []
        for u in units:
            rel = f"{UNITS_DIR}/{u}.json"
            out.append(self.out.read_json(rel) if self.out.exists(rel) else None)
        return out

    def warm_up(self) -> None:
        from dataproc.dedup.warm import warm_up

        warm_up(self.keyer)
