"""Deduplication: exact (normalised-text hashes) and MinHash-LSH near-dedup, as sharded datatrove steps.

:mod:`~dataproc.dedup.stages` lists the steps (keys → buckets → components rounds → keep → filter),
none of them a single task; :mod:`~dataproc.dedup.keyers` says what documents are bucketed by
(:mod:`~dataproc.dedup.exact` and :mod:`~dataproc.dedup.minhash` compute it, :mod:`~dataproc.dedup.lsh`
bands it), :mod:`~dataproc.dedup.verify` checks candidate pairs and keeps one document per group,
:mod:`~dataproc.dedup.clusters` is the in-memory union-find each components partition runs.
"""
