"""What the dedup steps bucket documents by: a keyer turns a batch into per-band keys.

* :class:`ExactKeyer`: one key per document, its normalised-text hash (exact dedup).
* :class:`MinHashKeyer`: ``bands`` LSH keys per document from a MinHash signature, plus the
  signature itself (candidate pairs are verified against ``threshold``) and, unless
  ``verify == "estimate"``, each document's shingle set (pairs near the threshold are settled
  by their exact Jaccard).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pyarrow as pa


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

    @property
    def needs_sets(self) -> bool:
        """Whether some pairs are settled by exact Jaccard (so the keys step keeps shingle sets)."""
        return self.verify != "estimate"

    def _hasher(self):
        from dataproc.dedup.minhash import MinHasher

        return MinHasher(num_perm=self.num_perm, ngram=self.ngram, seed=self.seed)

    def sketch(self, batch: pa.RecordBatch, sets: bool = False
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """``(band keys, usable-row mask, signatures, shingle sets or None)`` of a batch.

        ``sets``: also each row's sorted unique 32-bit shingle keys, CSR ``(values, offsets)``,
        from the same pass over the text.
        """
        from dataproc.dedup.lsh import band_keys

        hasher = self._hasher()
        if sets:
            sigs, vals, off = hasher.signatures_and_sets(batch.column("text"))
            csr: tuple[np.ndarray, np.ndarray] | None = (vals, off)
        else:
            sigs, csr = hasher.signatures(batch.column("text")), None
        return band_keys(sigs, self.bands, self.rows), ~hasher.empty_mask(sigs), sigs, csr

    def keys(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        keys, ok, _, _ = self.sketch(batch)
        return keys, ok

    def shingle_sets(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """Sorted unique 32-bit shingle keys per document, CSR ``(values, offsets)``."""
        _, _, _, csr = self.sketch(batch, sets=True)
        assert csr is not None
        return csr
