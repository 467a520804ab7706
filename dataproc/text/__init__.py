"""Text and hashing primitives shared by the filters and the dedup kernels.

* :mod:`~dataproc.text.buffers` — zero-copy ``(data, offsets)`` views of Arrow string columns;
* :mod:`~dataproc.text.spacy_en`, :mod:`~dataproc.text.affixes`, :mod:`~dataproc.text.words` —
  spaCy's blank-English word and sentence tokenisation, emulated by compiled kernels;
* :mod:`~dataproc.text.word_hashes` — the MinHash shingler's word splitting and word hashes;
* :mod:`~dataproc.text.hashing` — XXH64 and 64-bit mixers; :mod:`~dataproc.text.hashtable` —
  per-document open-addressing hash sets and counters over span hashes.
"""
