"""Deduplication: exact (normalised-text hashes) and MinHash-LSH near-dedup, as four sharded steps.

:mod:`~dataproc.dedup.stages` runs keys → buckets → clusters → filter; :mod:`~dataproc.dedup.exact`
and :mod:`~dataproc.dedup.minhash` compute the keys, :mod:`~dataproc.dedup.lsh` bands them,
:mod:`~dataproc.dedup.verify` checks candidate pairs and :mod:`~dataproc.dedup.clusters` groups them.
"""
