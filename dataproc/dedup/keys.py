"""Step 1 of dedup (unit = one input file): bucket keys, and what later steps read of each document.

For every healthy document with words: its ``bands`` bucket keys, as ``(key, doc)`` rows
partitioned by bucket unit (band x key range) in one file with an index, so a bucket unit reads
one range of each file. MinHash adds the signature of every row (``sigs/``) and, when pairs near
the threshold are settled exactly, every row's sorted unique 32-bit shingle keys (``sets/``),
computed in the same pass over the text, so no later step reads or shingles the text again.
Every row's ``id`` goes to ``ids/`` (a blob with offsets: ``duplicate_of`` is looked up by row).
Row-indexed arrays have one entry per input row; quarantined rows are empty.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dataproc.dedup.base import ROW_BITS, DedupStep, range_of
from dataproc.io.arrays import save_blob, save_partitioned
from dataproc.shards import read_batches
from dataproc.stage import UnitStats
from dataproc.text.buffers import text_buffers


def _dense_csr(rows: list[np.ndarray], parts: list[tuple[np.ndarray, np.ndarray]], n_rows: int,
               dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """CSR with one entry per file row from per-batch CSRs of the rows ``rows`` (ascending)."""
    lens = np.zeros(n_rows, np.int64)
    vals = []
    for r, (v, off) in zip(rows, parts, strict=True):
        lens[r] = np.diff(off)
        vals.append(v[off[0]:off[-1]])
    offsets = np.zeros(n_rows + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    return (np.concatenate(vals) if vals else np.zeros(0, dtype)).astype(dtype, copy=False), offsets


class DedupKeys(DedupStep):
    """Step 1: keys, ids and (MinHash) signatures and shingle sets of every healthy document of one file."""

    name = "dedup-keys"

    def units(self) -> list[str]:
        return [f"keys-{i:05d}" for i in range(self.n_files)]

    def process(self, unit_index: int, unit: str) -> UnitStats:
        keys, ids, sig_rows, sigs, set_rows, sets, id_rows, id_parts = [], [], [], [], [], [], [], []
        docs = 0
        work = self.work  # one Folder (building one costs ~5 ms)
        verifies, exact_sets = self.verifies, self.exact_sets
        # Only the text and id columns are needed to compute keys.
        columns = [self.read_options.get("text_column", "text"), self.read_options.get("id_column", "id")]
        for b in read_batches(self.inputs[unit_index], columns=columns, **self.read_options):
            self.tick(b.docs_in)
            docs += b.docs_in
            if b.good.num_rows == 0:
                continue
            id_rows.append(b.rows)
            id_parts.append(text_buffers(b.good.column("id")))
            if verifies:
                k, ok, sg, csr = self.keyer.sketch(b.good, sets=exact_sets)
                sig_rows.append(b.rows)
                sigs.append(sg)
                if csr is not None:
                    set_rows.append(b.rows)
                    sets.append(csr)
            else:
                k, ok = self.keyer.keys(b.good)
            keys.append(k[ok])
            ids.append((np.int64(unit_index) << ROW_BITS) | b.rows[ok])
        bands, ranges = self.keyer.bands, self.ranges
        k = np.concatenate(keys) if keys else np.zeros((0, bands), np.uint64)
        d = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        # (key, doc) rows of every band, each sent to its unit band * ranges + key range
        rows = np.empty((len(d) * bands, 2), np.int64)
        unit_of = np.empty(len(d) * bands, np.int64)
        for band in range(bands):
            sl = slice(band * len(d), (band + 1) * len(d))
            rows[sl, 0] = k[:, band].view(np.int64)
            rows[sl, 1] = d
            unit_of[sl] = band * ranges + range_of(k[:, band], ranges)
        save_partitioned(work, f"keys/{unit_index:05d}.npy", rows, unit_of, bands * ranges)
        if verifies:
            dense = np.full((docs, self.keyer.num_perm), np.uint32(0xFFFFFFFF))
            for r, sg in zip(sig_rows, sigs, strict=True):
                dense[r] = sg
            work.save_npy(f"sigs/{unit_index:05d}.npy", dense)
            if exact_sets:
                vals, offsets = _dense_csr(set_rows, sets, docs, np.dtype(np.uint32))
                work.save_npy(f"sets/{unit_index:05d}.npy", vals)
                work.save_npy(f"sets/{unit_index:05d}-offsets.npy", offsets)
        data, offsets = _dense_csr(id_rows, id_parts, docs, np.dtype(np.uint8))
        save_blob(work, f"ids/{unit_index:05d}", data, offsets)
        # Nothing is kept or removed yet: this step only reads, so its docs all count as "kept".
        return UnitStats(docs_in=docs, kept=docs)


def read_ids(work, docs: np.ndarray) -> pa.Array:
    """The ``id`` strings of ``docs`` (any order), reading only the rows needed of each file's blob."""
    from dataproc.dedup.base import file_of, row_of
    from dataproc.io.arrays import read_blob

    docs = np.asarray(docs, np.int64)
    out: list[bytes] = [b""] * len(docs)
    files = file_of(docs)
    for f in np.unique(files).tolist():
        sel = np.flatnonzero(files == f)
        for i, s in zip(sel.tolist(), read_blob(work, f"ids/{f:05d}", row_of(docs[sel])), strict=True):
            out[i] = s
    return pa.array([s.decode("utf-8") for s in out], pa.string())
