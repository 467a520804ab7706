"""Sharded dedup as four datatrove steps: keys → buckets → clusters → filter.

The same four steps serve exact dedup (one bucket key per document: its normalised text
hash) and MinHash-LSH near-dedup (one key per band). Each step is a :class:`UnitStage`, so
each runs as many independent tasks and resumes after a crash:

1. ``DedupKeys`` (unit = input file): per band ``b``, ``work/keys/b<b>/<file>.npy`` holding
   ``(key, doc_id)`` rows, and ``work/ids/<file>.parquet`` (the ``id`` of each row).
2. ``DedupBuckets`` (unit = band): documents sharing a key in a band → star edges to the
   bucket's smallest doc id, ``work/edges/<band>.npy``.
3. ``DedupClusters`` (one unit): union-find over all edges; in every connected component the
   smallest doc id (earliest file, earliest row) is the representative and is kept; every other
   member is written to ``work/removed.parquet`` with ``duplicate_of`` = representative's ``id``.
4. ``DedupFilter`` (unit = input file): splits each file into ``kept/`` and ``removed/``.

Doc ids are ``file_index << 40 | row`` so they sort by input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataproc.filter_stage import SplitOutputs, clear_split_outputs
from dataproc.shards import read_batches
from dataproc.stage import UnitStage, UnitStats

ROW_BITS = 40


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
    """``bands`` LSH keys per document from a MinHash signature of word n-grams."""

    name = "minhash"

    def __init__(self, num_perm: int = 128, ngram: int = 5, seed: int = 1, bands: int | None = 14,
                 rows: int | None = 8, threshold: float | None = None) -> None:
        from dataproc.dedup.lsh import lsh_params

        self.num_perm, self.ngram, self.seed = num_perm, ngram, seed
        self.bands, self.rows = lsh_params(num_perm, threshold=threshold, bands=bands, rows=rows)

    def keys(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        from dataproc.dedup.lsh import band_keys
        from dataproc.dedup.minhash import MinHasher

        hasher = MinHasher(num_perm=self.num_perm, ngram=self.ngram, seed=self.seed)
        sigs = hasher.signatures(batch.column("text"))
        return band_keys(sigs, self.bands, self.rows), ~hasher.empty_mask(sigs)


class _DedupBase(UnitStage):
    def __init__(self, inputs: Sequence[str] | str, output_dir: str, keyer: Keyer, progress: bool = True,
                 **read_options) -> None:
        super().__init__(output_dir, progress, inputs)
        self.keyer, self.read_options = keyer, read_options

    @property
    def work(self):
        return self.out.sub("work")


class DedupKeys(_DedupBase):
    """Step 1: bucket keys and ids of every healthy document of one input file."""

    name = "dedup-keys"

    def units(self) -> list[str]:
        return [f"keys-{i:05d}" for i in range(len(self.inputs))]

    def process(self, unit_index: int, unit: str) -> UnitStats:
        keys, ids, ids_col, docs = [], [], [], 0
        # Only the text and id columns are needed to compute keys.
        columns = [self.read_options.get("text_column", "text"), self.read_options.get("id_column", "id")]
        for b in read_batches(self.inputs[unit_index], columns=columns, **self.read_options):
            self.tick(b.docs_in)
            docs += b.docs_in
            if b.good.num_rows == 0:
                continue
            k, ok = self.keyer.keys(b.good)
            doc_ids = (np.int64(unit_index) << ROW_BITS) | b.rows
            keys.append(k[ok])
            ids.append(doc_ids[ok])
            ids_col.append(pa.RecordBatch.from_arrays([pa.array(doc_ids), b.good.column("id")], ["doc_id", "id"]))
        k = np.concatenate(keys) if keys else np.zeros((0, self.keyer.bands), np.uint64)
        d = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        for band in range(self.keyer.bands):
            self.work.save_npy(f"keys/b{band:03d}/{unit_index:05d}.npy",
                               np.stack([k[:, band].view(np.int64), d], axis=1))
        table = pa.Table.from_batches(ids_col) if ids_col else pa.table({"doc_id": pa.array([], pa.int64()),
                                                                           "id": pa.array([], pa.string())})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self.work.write_bytes(f"ids/{unit_index:05d}.parquet", sink.getvalue().to_pybytes())
        # Nothing is kept or removed yet: this step only reads, so its docs all count as "kept".
        return UnitStats(docs_in=docs, kept=docs)


class DedupBuckets(_DedupBase):
    """Step 2: star edges between documents that share a key in one band."""

    name = "dedup-buckets"

    def units(self) -> list[str]:
        return [f"band-{b:03d}" for b in range(self.keyer.bands)]

    def process(self, unit_index: int, unit: str) -> UnitStats:
        from dataproc.dedup.lsh import bucket_edges

        parts = [self.work.load_npy(f"keys/b{unit_index:03d}/{i:05d}.npy") for i in range(len(self.inputs))]
        rows = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
        edges = bucket_edges(np.ascontiguousarray(rows[:, 0]).view(np.uint64), np.ascontiguousarray(rows[:, 1]))
        self.work.save_npy(f"edges/{unit_index:03d}.npy", np.asarray(edges, dtype=np.int64).reshape(-1, 2))
        return UnitStats(extra={"edges": len(edges)})


class DedupClusters(_DedupBase):
    """Step 3 (a single task): connected components; who is removed and who represents them."""

    name = "dedup-clusters"

    def units(self) -> list[str]:
        return ["clusters"]

    def process(self, unit_index: int, unit: str) -> UnitStats:
        from dataproc.dedup.clusters import connected_components

        edges = [self.work.load_npy(f"edges/{b:03d}.npy") for b in range(self.keyer.bands)]
        all_edges = np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)
        doc, rep = connected_components(all_edges) if len(all_edges) else (np.zeros(0, np.int64),) * 2
        doc, rep = np.asarray(doc, np.int64), np.asarray(rep, np.int64)
        removed = doc != rep
        doc, rep = doc[removed], rep[removed]
        order = np.argsort(doc, kind="stable")
        doc, rep = doc[order], rep[order]
        rep_ids = self._ids_of(rep)
        table = pa.table({"doc_id": pa.array(doc), "representative": pa.array(rep), "duplicate_of": rep_ids})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self.work.write_bytes("removed.parquet", sink.getvalue().to_pybytes())
        sizes = np.unique(rep, return_counts=True)[1] + 1 if len(rep) else np.zeros(0, np.int64)
        hist = dict(zip(*[a.tolist() for a in np.unique(sizes, return_counts=True)], strict=True))
        self.work.write_json("clusters.json", {"clusters": len(sizes), "removed": len(doc),
                                               "cluster_size_histogram": {str(k): v for k, v in hist.items()}})
        return UnitStats(extra={"clusters": len(sizes), "duplicates": len(doc)})

    def _ids_of(self, doc_ids: np.ndarray) -> pa.Array:
        """The ``id`` strings of ``doc_ids``, reading only the id files that hold them."""
        files = doc_ids >> ROW_BITS
        order, parts = [], []
        for f in np.unique(files):
            t = pq.read_table(pa.BufferReader(self.work.read_bytes(f"ids/{int(f):05d}.parquet")))
            sel = np.flatnonzero(files == f)
            parts.append(t.column("id").take(pa.array(np.searchsorted(t.column("doc_id").to_numpy(), doc_ids[sel]))))
            order.append(sel)
        if not parts:
            return pa.array([], pa.string())
        # Gathered file by file; put back in the order of ``doc_ids``.
        ids = pa.chunked_array([c for p in parts for c in p.chunks], pa.string()).combine_chunks()
        return ids.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))


class DedupFilter(_DedupBase):
    """Step 4: every input file split into ``kept/`` and ``removed/`` (with ``duplicate_of``)."""

    name = "dedup-filter"

    def __init__(self, inputs: Sequence[str] | str, output_dir: str, keyer: Keyer, progress: bool = True,
                 max_shard_bytes: int = 256 << 20, **read_options) -> None:
        super().__init__(inputs, output_dir, keyer, progress, **read_options)
        self.max_shard_bytes = max_shard_bytes
        self._removed: pa.Table | None = None

    def units(self) -> list[str]:
        return [f"{i:05d}" for i in range(len(self.inputs))]

    def clear(self, unit: str) -> None:
        clear_split_outputs(self.out, unit)

    def process(self, unit_index: int, unit: str) -> UnitStats:
        if self._removed is None:
            self._removed = pq.read_table(pa.BufferReader(self.work.read_bytes("removed.parquet")))
        all_docs = self._removed.column("doc_id").to_numpy()
        lo, hi = np.searchsorted(all_docs, [unit_index << ROW_BITS, (unit_index + 1) << ROW_BITS])
        gone_rows = all_docs[lo:hi] & ((1 << ROW_BITS) - 1)
        gone_of = self._removed.column("duplicate_of").slice(lo, hi - lo)
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
