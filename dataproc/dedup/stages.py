"""Sharded dedup as four datatrove steps: keys → buckets → clusters → filter.

The same four steps serve exact dedup (one bucket key per document: its normalised text
hash) and MinHash-LSH near-dedup (one key per band). Each step is a :class:`UnitStage`, so
each runs as many independent tasks and resumes after a crash. No bucket or filter task
holds the whole corpus: bucket keys are partitioned by band x key range, removals by file.

1. ``DedupKeys`` (unit = input file): per band ``b`` and key range ``r`` (the top bits of
   the key), ``work/keys/b<b>/r<r>/<file>.npy`` holding ``(key, doc_id)`` rows;
   ``work/ids/<file>.parquet`` (the ``id`` of each row); for MinHash, the full signatures
   ``work/sigs/<file>.npy`` (+ ``-ids.npy``).
2. ``DedupBuckets`` (unit = band x key range): candidate pairs from shared keys, each
   verified against ``threshold`` (:mod:`dataproc.dedup.verify`, signatures read by mmap);
   verified edges ``(doc, earlier doc, equal slots)`` to ``work/edges/<unit>.npy``, pairs whose
   estimate is too close to call to ``work/pending/<unit>.npy``. Keyers without signatures
   (exact dedup) give star edges to the bucket's smallest doc id.
3. ``DedupClusters`` (one unit): the pending pairs settled by exact shingle Jaccard (only
   their documents are read and shingled again), then, over the verified edges only, chain-free
   greedy clustering
   (:func:`~dataproc.dedup.verify.greedy_keep`): a document is removed only for an earlier
   *kept* document it is verified-near to, recorded as ``duplicate_of``. Removals go to
   ``work/removed/<file>.parquet``; counts (candidates, verified, rejected) to
   ``work/clusters.json``, which ``stats.json`` includes.
4. ``DedupFilter`` (unit = input file): splits each file into ``kept/`` and ``removed/``,
   reading only that file's removals.

Doc ids are ``file_index << 40 | row`` so they sort by input order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataproc.filter_stage import SplitOutputs, clear_split_outputs
from dataproc.io.storage import Folder
from dataproc.shards import read_batches
from dataproc.stage import UNITS_DIR, UnitStage, UnitStats

ROW_BITS = 40
FILES_PER_KEY_RANGE = 4  # key ranges per band grow with the corpus: one per ~4 input files
EXACT_BLOCK_DOCS = 50_000  # documents shingled at once when settling pending pairs (two blocks in memory)
COUNTERS = ("candidates", "verified", "rejected", "capped", "repeat_pairs", "pending", "exact_checked")


def key_ranges(n_files: int) -> int:
    """Key ranges per band: a power of two, ~``n_files / FILES_PER_KEY_RANGE``, in [1, 1024]."""
    want = max(1, -(-n_files // FILES_PER_KEY_RANGE))
    return min(1024, 1 << (want - 1).bit_length())


def _range_of(keys: np.ndarray, ranges: int) -> np.ndarray:
    shift = np.uint64(64 - (ranges.bit_length() - 1))
    return (keys >> shift).astype(np.int64) if ranges > 1 else np.zeros(keys.shape, np.int64)


def _write_parquet(folder: Folder, rel: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    folder.write_bytes(rel, sink.getvalue().to_pybytes())


def _load(folder: Folder, rel: str) -> np.ndarray:
    """A ``.npy`` file, memory-mapped when the folder is local (read whole otherwise)."""
    if folder._protocol in ("", "file://"):
        return np.load(folder.path(rel), mmap_mode="r", allow_pickle=False)
    return folder.load_npy(rel)


class Keyer(Protocol):
    """Turns a batch into bucket keys: ``(n, bands)`` uint64 plus a mask of usable rows."""

    bands: int
    name: str

    def keys(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]: ...


class ExactKeyer:
    """One key per document: the 64-bit key of its 128-bit normalised text hash."""

    bands = 1
    name = "exact"

    def keys(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        from dataproc.dedup.exact import hash_key, text_hashes

        keys = hash_key(text_hashes(batch.column("text"))).reshape(-1, 1)
        return keys, np.ones(len(keys), dtype=bool)


class MinHashKeyer:
    """``bands`` LSH keys per document from a MinHash signature of word n-grams.

    ``threshold`` is the Jaccard similarity a candidate pair must reach to count as a
    duplicate; ``verify`` says how it is checked (:func:`~dataproc.dedup.verify.verify_bounds`:
    ``hybrid`` exact Jaccard for estimates near the threshold, ``estimate``, ``exact``); when
    ``bands``/``rows`` are None they are derived from it by :func:`~dataproc.dedup.lsh.verified_lsh_params`
    (a pair at the threshold is a candidate with p >= 0.98).
    """

    name = "minhash"

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 1, bands: int | None = 18,
                 rows: int | None = 7, threshold: float | None = 0.8, verify: str = "hybrid",
                 max_checks: int = 32) -> None:
        from dataproc.dedup.lsh import lsh_params, verified_lsh_params
        from dataproc.dedup.verify import VERIFY_MODES

        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r}")
        self.threshold = 0.8 if threshold is None else float(threshold)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self.verify, self.max_checks = verify, max_checks
        if bands is None and rows is None:
            self.bands, self.rows = verified_lsh_params(num_perm, self.threshold)
        else:
            self.bands, self.rows = lsh_params(num_perm, bands=bands, rows=rows)

    def sketch(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(band keys, usable-row mask, signatures)`` of a batch."""
        from dataproc.dedup.lsh import band_keys
        from dataproc.dedup.minhash import MinHasher

        hasher = MinHasher(num_perm=self.num_perm, ngram=self.ngram, seed=self.seed)
        sigs = hasher.signatures(batch.column("text"))
        return band_keys(sigs, self.bands, self.rows), ~hasher.empty_mask(sigs), sigs

    def keys(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        keys, ok, _ = self.sketch(batch)
        return keys, ok

    def shingle_sets(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique shingle hashes per document, CSR ``(values, offsets)``."""
        from dataproc.dedup.minhash import MinHasher
        from dataproc.dedup.verify import sorted_sets

        return sorted_sets(*MinHasher(num_perm=1, ngram=self.ngram).shingle_hashes(batch.column("text")))


class _DedupBase(UnitStage):
    def __init__(self, inputs: Sequence[str] | str, output_dir: str, keyer: Keyer, progress: bool = True,
                 **read_options) -> None:
        super().__init__(output_dir, progress, inputs)
        self.keyer, self.read_options = keyer, read_options

    @property
    def work(self) -> Folder:
        return self.out.sub("work")

    @property
    def ranges(self) -> int:
        return key_ranges(len(self.inputs))

    @property
    def verifies(self) -> bool:
        return hasattr(self.keyer, "sketch")


class DedupKeys(_DedupBase):
    """Step 1: bucket keys, ids and (MinHash) signatures of every healthy document of one file."""

    name = "dedup-keys"

    def units(self) -> list[str]:
        return [f"keys-{i:05d}" for i in range(len(self.inputs))]

    def process(self, unit_index: int, unit: str) -> UnitStats:
        keys, ids, ids_col, sigs, docs = [], [], [], [], 0
        work = self.work  # one Folder (building one costs ~5 ms)
        # Only the text and id columns are needed to compute keys.
        columns = [self.read_options.get("text_column", "text"), self.read_options.get("id_column", "id")]
        for b in read_batches(self.inputs[unit_index], columns=columns, **self.read_options):
            self.tick(b.docs_in)
            docs += b.docs_in
            if b.good.num_rows == 0:
                continue
            if self.verifies:
                k, ok, sg = self.keyer.sketch(b.good)
                sigs.append(sg[ok])
            else:
                k, ok = self.keyer.keys(b.good)
            doc_ids = (np.int64(unit_index) << ROW_BITS) | b.rows
            keys.append(k[ok])
            ids.append(doc_ids[ok])
            ids_col.append(pa.RecordBatch.from_arrays([pa.array(doc_ids), b.good.column("id")], ["doc_id", "id"]))
        k = np.concatenate(keys) if keys else np.zeros((0, self.keyer.bands), np.uint64)
        d = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        ranges = self.ranges
        part = _range_of(k, ranges) if len(k) else np.zeros((0, self.keyer.bands), np.int64)
        for band in range(self.keyer.bands):
            rows = np.stack([k[:, band].view(np.int64), d], axis=1)
            r_of = part[:, band] if len(k) else np.zeros(0, np.int64)
            if ranges == 1:
                work.save_npy(f"keys/b{band:03d}/r0000/{unit_index:05d}.npy", rows)
                continue
            order = np.argsort(r_of, kind="stable")
            cuts = np.searchsorted(r_of[order], np.arange(ranges + 1))
            for r in range(ranges):
                work.save_npy(f"keys/b{band:03d}/r{r:04d}/{unit_index:05d}.npy", rows[order[cuts[r]:cuts[r + 1]]])
        if self.verifies:
            num_perm = self.keyer.num_perm
            work.save_npy(f"sigs/{unit_index:05d}.npy",
                               np.concatenate(sigs) if sigs else np.zeros((0, num_perm), np.uint32))
            work.save_npy(f"sigs/{unit_index:05d}-ids.npy", d)
        table = pa.Table.from_batches(ids_col) if ids_col else pa.table({"doc_id": pa.array([], pa.int64()),
                                                                           "id": pa.array([], pa.string())})
        _write_parquet(self.work, f"ids/{unit_index:05d}.parquet", table)
        # Nothing is kept or removed yet: this step only reads, so its docs all count as "kept".
        return UnitStats(docs_in=docs, kept=docs)


class DedupBuckets(_DedupBase):
    """Step 2: verified edges between documents that share a key in one band x key range."""

    name = "dedup-buckets"

    def units(self) -> list[str]:
        return [f"band-{b:03d}-r{r:04d}" for b in range(self.keyer.bands) for r in range(self.ranges)]

    def process(self, unit_index: int, unit: str) -> UnitStats:
        band, r = divmod(unit_index, self.ranges)
        work = self.work
        parts = [work.load_npy(f"keys/b{band:03d}/r{r:04d}/{i:05d}.npy") for i in range(len(self.inputs))]
        rows = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
        del parts
        keys, docs = np.ascontiguousarray(rows[:, 0]).view(np.uint64), np.ascontiguousarray(rows[:, 1])
        t0 = time.perf_counter()
        pending = np.zeros((0, 3), np.int64)
        if self.verifies:
            edges, pending, counts = self._verified(keys, docs, band)
        else:
            from dataproc.dedup.lsh import bucket_edges

            star = bucket_edges(keys, docs)
            edges = np.concatenate([star, np.ones((len(star), 1), np.int64)], axis=1)
            counts = {"candidates": len(star), "verified": len(star), "rejected": 0, "capped": 0, "repeat_pairs": 0}
        work.save_npy(f"edges/{unit}.npy", np.asarray(edges, dtype=np.int64).reshape(-1, 3))
        work.save_npy(f"pending/{unit}.npy", pending)
        return UnitStats(extra={**counts, "edges": len(edges), "verify_s": round(time.perf_counter() - t0, 4)})

    def _verified(self, keys: np.ndarray, docs: np.ndarray, band: int) -> tuple[np.ndarray, np.ndarray, dict]:
        from dataproc.dedup.verify import bucket_order, verify_buckets

        keys, docs, _ = bucket_order(keys, docs)
        work = self.work
        uniq, rows_of = np.unique(docs, return_inverse=True)
        sigs = np.zeros((len(uniq), self.keyer.num_perm), np.uint32)
        files = uniq >> ROW_BITS
        for f in np.unique(files).tolist():
            sel = np.flatnonzero(files == f)
            pos = np.searchsorted(_load(work, f"sigs/{f:05d}-ids.npy"), uniq[sel])
            sigs[sel] = _load(work, f"sigs/{f:05d}.npy")[pos]
        return verify_buckets(keys, docs, rows_of, sigs, band, self.keyer.rows, self.keyer.threshold,
                              self.keyer.max_checks, self.keyer.verify)


class DedupClusters(_DedupBase):
    """Step 3 (a single task): chain-free clustering of the verified edges; removals per file."""

    name = "dedup-clusters"

    def units(self) -> list[str]:
        return ["clusters"]

    def process(self, unit_index: int, unit: str) -> UnitStats:
        from dataproc.dedup.verify import greedy_keep

        buckets = DedupBuckets(self._inputs_spec, self.output_dir, self.keyer).units()
        work = self.work
        edges = [work.load_npy(f"edges/{u}.npy") for u in buckets]
        t0 = time.perf_counter()
        exact_edges, checked = self._settle_pending(buckets)
        exact_s = time.perf_counter() - t0
        all_edges = np.concatenate([*edges, exact_edges]) if edges else exact_edges
        doc, rep, equal = greedy_keep(all_edges)
        files = doc >> ROW_BITS
        for f in range(len(self.inputs)):
            lo, hi = np.searchsorted(files, [f, f + 1])
            sim = equal[lo:hi] / getattr(self.keyer, "num_perm", 1)
            table = pa.table({"doc_id": pa.array(doc[lo:hi]), "representative": pa.array(rep[lo:hi]),
                              "duplicate_of": self._ids_of(rep[lo:hi]), "similarity": pa.array(sim)})
            _write_parquet(work, f"removed/{f:05d}.parquet", table)
        sizes = np.unique(rep, return_counts=True)[1] + 1 if len(rep) else np.zeros(0, np.int64)
        hist = dict(zip(*[a.tolist() for a in np.unique(sizes, return_counts=True)], strict=True))
        totals = dict.fromkeys((*COUNTERS, "verify_s"), 0)
        for u in buckets:
            extra = self.out.read_json(f"{UNITS_DIR}/{u}.json").get("extra", {})
            for k in totals:
                totals[k] += extra.get(k, 0)
        totals["verify_s"] = round(totals["verify_s"] + exact_s, 3)
        # Pending pairs were neither verified nor rejected by their bucket: their exact value decides.
        totals["exact_checked"] = checked
        totals["verified"] += len(exact_edges)
        totals["rejected"] += checked - len(exact_edges)
        info = {"clusters": len(sizes), "removed": len(doc), "cluster_size_histogram":
                {str(k): v for k, v in hist.items()}, "threshold": getattr(self.keyer, "threshold", 1.0),
                "verify": getattr(self.keyer, "verify", "exact_key"), **totals}
        self.work.write_json("clusters.json", info)
        return UnitStats(extra={"clusters": len(sizes), "duplicates": len(doc)})

    def _settle_pending(self, buckets: list[str]) -> tuple[np.ndarray, int]:
        """``(edges, #pairs checked)``: the bucket units' pending pairs whose exact Jaccard >= threshold.

        Only the documents in pending pairs are read and shingled again, in blocks of at most
        ``EXACT_BLOCK_DOCS`` documents (doc-id order), two blocks in memory at a time: the pairs
        between a later block and an earlier one are settled with both loaded (an earlier block is
        read again for each later block that needs it).
        """
        from dataproc.dedup.verify import exact_jaccard_pairs

        work = self.work
        parts = [work.load_npy(f"pending/{u}.npy") for u in buckets if work.exists(f"pending/{u}.npy")]
        pend = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
        del parts
        if len(pend) == 0:
            return np.zeros((0, 3), np.int64), 0
        pend = pend[np.lexsort((pend[:, 1], pend[:, 0]))]
        keep = np.ones(len(pend), bool)
        keep[1:] = np.any(pend[1:, :2] != pend[:-1, :2], axis=1)
        pend = pend[keep]
        need = np.unique(pend[:, :2])
        block_of = np.searchsorted(need, pend[:, :2]) // EXACT_BLOCK_DOCS  # (src block, dst block)
        jac = np.zeros(len(pend))
        for i in range(int(block_of[:, 0].max()) + 1):
            mine = block_of[:, 0] == i
            if not mine.any():
                continue
            lo = i * EXACT_BLOCK_DOCS
            src = self._shingle_block(need[lo:lo + EXACT_BLOCK_DOCS])
            for j in np.unique(block_of[mine, 1]).tolist():
                sel = np.flatnonzero(mine & (block_of[:, 1] == j))
                lo_j = j * EXACT_BLOCK_DOCS
                dst = src if j == i else self._shingle_block(need[lo_j:lo_j + EXACT_BLOCK_DOCS])
                a = np.searchsorted(need, pend[sel, 0]) - lo
                b = np.searchsorted(need, pend[sel, 1]) - lo_j
                jac[sel] = exact_jaccard_pairs(*src, a, b, dst)
                del dst
        ok = jac >= self.keyer.threshold
        edges = pend[ok].copy()
        # The exact value orders a document's candidate representatives like the estimate would.
        edges[:, 2] = np.round(jac[ok] * self.keyer.num_perm).astype(np.int64)
        return edges, len(pend)

    def _shingle_block(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CSR of the 32-bit shingle keys of ``docs`` (sorted doc ids), read from their input files."""
        from dataproc.dedup.verify import top32_sets

        vals, lens = [], np.zeros(len(docs), np.int64)
        files = docs >> ROW_BITS
        columns = [self.read_options.get("text_column", "text"), self.read_options.get("id_column", "id")]
        for f in np.unique(files).tolist():
            sel = np.flatnonzero(files == f)
            rows = docs[sel] & ((1 << ROW_BITS) - 1)
            for b in read_batches(self.inputs[f], columns=columns, **self.read_options):
                hit = np.flatnonzero(np.isin(b.rows, rows))
                if len(hit) == 0:
                    continue
                # 32-bit keys (what the permutations see): half the memory of the 64-bit shingle hashes
                v, off = top32_sets(*self.keyer.shingle_sets(b.good.take(pa.array(hit))))
                lens[sel[np.searchsorted(rows, b.rows[hit])]] = np.diff(off)
                vals.append(v)
        # ``docs`` is sorted and files and rows arrive in order, so the runs are already in ``docs`` order.
        return (np.concatenate(vals) if vals else np.zeros(0, np.uint32)), np.concatenate([[0], np.cumsum(lens)])

    def _ids_of(self, doc_ids: np.ndarray) -> pa.Array:
        """The ``id`` strings of ``doc_ids``, reading only the id files that hold them."""
        files = doc_ids >> ROW_BITS
        order, parts, work = [], [], self.work
        for f in np.unique(files):
            t = pq.read_table(pa.BufferReader(work.read_bytes(f"ids/{int(f):05d}.parquet")))
            sel = np.flatnonzero(files == f)
            parts.append(t.column("id").take(pa.array(np.searchsorted(t.column("doc_id").to_numpy(), doc_ids[sel]))))
            order.append(sel)
        if not parts:
            return pa.array([], pa.string())
        # Gathered file by file; put back in the order of ``doc_ids``.
        ids = pa.chunked_array([c.cast(pa.string()) for p in parts for c in p.chunks], pa.string()).combine_chunks()
        return ids.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))


class DedupFilter(_DedupBase):
    """Step 4: every input file split into ``kept/`` and ``removed/`` (with ``duplicate_of``)."""

    name = "dedup-filter"

    def __init__(self, inputs: Sequence[str] | str, output_dir: str, keyer: Keyer, progress: bool = True,
                 max_shard_bytes: int = 256 << 20, **read_options) -> None:
        super().__init__(inputs, output_dir, keyer, progress, **read_options)
        self.max_shard_bytes = max_shard_bytes

    def units(self) -> list[str]:
        return [f"{i:05d}" for i in range(len(self.inputs))]

    def clear(self, unit: str) -> None:
        clear_split_outputs(self.out, unit)

    def process(self, unit_index: int, unit: str) -> UnitStats:
        mine = pq.read_table(pa.BufferReader(self.work.read_bytes(f"removed/{unit_index:05d}.parquet")))
        gone_rows = mine.column("doc_id").to_numpy() & ((1 << ROW_BITS) - 1)
        gone_of = mine.column("duplicate_of")
        outputs = SplitOutputs(self.out, unit, self.max_shard_bytes)
        reason = f"{self.keyer.name}_duplicate"
        for b in read_batches(self.inputs[unit_index], **self.read_options):
            self.tick(b.docs_in)
            outputs.arrived(b)
            pos = np.searchsorted(gone_rows, b.rows)
            is_gone = np.zeros(len(b.rows), bool)
            if len(gone_rows):
                is_gone = gone_rows[np.minimum(pos, len(gone_rows) - 1)] == b.rows
            outputs.keep(b.good.filter(pa.array(~is_gone)))
            if is_gone.any():
                removed = b.good.filter(pa.array(is_gone))
                removed = removed.append_column("duplicate_of", gone_of.take(pa.array(pos[is_gone])))
                removed = removed.append_column("reason", pa.array([reason] * removed.num_rows, pa.string()))
                outputs.remove(removed, [reason] * removed.num_rows)
        return outputs.close()
