"""Sharded dedup as datatrove steps: keys → buckets → components rounds → keep → filter.

The same steps serve exact dedup (one bucket key per document: its normalised text hash) and
MinHash-LSH near-dedup (one key per band). Each step is a :class:`~dataproc.stage.UnitStage` of
many independent units, so each runs as many tasks as wanted, on any datatrove executor, and
resumes after a crash. Every unit count grows with the number of input files, and every unit
reads only its share of the previous step's output, by range (:mod:`dataproc.io.arrays`):

1. :class:`~dataproc.dedup.keys.DedupKeys` (unit = input file): bucket keys; MinHash signatures and
   shingle sets; ids.
2. :class:`~dataproc.dedup.buckets.DedupBuckets` (unit = band x key range): candidate pairs, each
   verified (estimate, or exact Jaccard near the threshold) where it is found.
3. :class:`~dataproc.dedup.components.DedupComponents` (unit = component partition, one step per
   round): connected components of the verified edges by sharded contraction, until converged.
4. :class:`~dataproc.dedup.keep.DedupKeep` (unit = component partition): the chain-free greedy keep
   pass, whole components at a time; removals partitioned by input file.
5. :class:`~dataproc.dedup.split.DedupFilter` (unit = input file): ``kept/`` and ``removed/``
   (with ``duplicate_of``), and the ``clusters`` section of ``stats.json``.

Where each step's files live: :mod:`dataproc.dedup.base`.
"""

from __future__ import annotations

from dataproc.dedup.base import (
           FILES_PER_PARTITION,
           MAX_CC_ROUNDS,
           ROW_BITS,
           DedupStep,
           key_ranges,
           partitions,
)
from dataproc.dedup.buckets import DedupBuckets
from dataproc.dedup.components import DedupComponents
from dataproc.dedup.keep import DedupKeep
from dataproc.dedup.keyers import ExactKeyer, Keyer, MinHashKeyer
from dataproc.dedup.keys import DedupKeys
from dataproc.dedup.split import WARN_COMPONENT_SIZE, DedupFilter

__all__ = ["FILES_PER_PARTITION", "MAX_CC_ROUNDS", "ROW_BITS", "WARN_COMPONENT_SIZE", "DedupBuckets", "DedupComponents", "DedupFilter",
           "DedupKeep", "DedupKeys", "DedupStep", "ExactKeyer", "Keyer", "MinHashKeyer", "key_ranges", "partitions"]
