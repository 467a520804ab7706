"""Near-dedup quality end to end on a crawl-style corpus of real text, against exact Jaccard.

The corpus (``near_dup_corpus``) mixes real documentation, package descriptions, licences
and stdlib docstrings with the edits that made unverified, connected-component clustering
remove what it should keep: inserted sentences from other documents, boilerplate, cuts,
reordering, syndication chains, bridges between families and pairs in the 0.5-0.7 band.
The four dedup stages run on it (6 input files, so bucket keys span several key ranges).

Metrics (``quality``), with ``J`` the exact word-5-gram Jaccard of ``shingle_ref``:

* precision: removed documents that have some partner with ``J >= 0.7``;
* ``duplicate_of``: every removed document has ``J >= 0.7`` to the document it names;
* recall: the documents that the same chain-free rule removes on the exact graph
  (``J >= 0.8``, doc order), and the share of them we remove (``recall_clear``: of the
  documents with an earlier, kept copy at ``J >= 0.85``, the share we remove);
* wiped clusters: components of the ``J >= 0.8`` graph whose members are all removed with no
  kept document at ``J >= 0.7`` to any of them (their content is gone).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataproc.dedup.clusters import connected_components
from dataproc.dedup.stages import MinHashKeyer
from dataproc.dedup.verify import greedy_keep
from dataproc.pipeline import run_dedup
from tests.dataproc import near_dup_corpus

FILES = 6


@pytest.fixture(scope="module")
def corpus(docs_sections, tmp_path_factory):
    docs = near_dup_corpus.build(str(docs_sections))
    texts = [d["text"] for d in docs]
    sims = near_dup_corpus.similar_pairs(texts, 0.5)
    root = tmp_path_factory.mktemp("near_dup")
    paths = []
    for f, part in enumerate(np.array_split(np.arange(len(docs)), FILES)):
        p = root / f"part{f}.parquet"
        pq.write_table(pa.table({"id": [docs[i]["id"] for i in part], "text": [texts[i] for i in part]}), p)
        paths.append(str(p))
    return docs, sims, paths, root


def quality(n: int, sims: dict[tuple[int, int], float], removed: dict[int, int]) -> dict[str, float]:
    """The metrics of the module docstring; ``removed`` maps doc index -> duplicate_of index."""

    def j(a: int, b: int) -> float:
        return 1.0 if a == b else sims.get((min(a, b), max(a, b)), 0.0)

    has_partner = {i for p, v in sims.items() if v >= 0.7 for i in p}
    def should_go(t: float) -> set[int]:
        strong = [(b, a, 1) for (a, b), v in sims.items() if v >= t]  # (later, earlier)
        return set(greedy_keep(np.array(strong, np.int64).reshape(-1, 3))[0].tolist())

    true_removed = should_go(0.8)
    kept = set(range(n)) - set(removed)
    clear = {b for (a, b), v in sims.items() if v >= 0.85 and a in kept}  # b has an earlier, kept 0.85-copy
    ids, rep = connected_components(np.array([p for p, v in sims.items() if v >= 0.8], np.int64).reshape(-1, 2))
    near_kept = {i for (a, b), v in sims.items() if v >= 0.7 for i, o in ((a, b), (b, a)) if o in kept}
    wiped = all_gone = 0
    for r in np.unique(rep):
        members = ids[rep == r].tolist()
        if all(m in removed for m in members):
            all_gone += 1
            wiped += not any(m in near_kept for m in members)
    dup_j = [j(d, o) for d, o in removed.items()]
    return {"removed": len(removed), "precision": sum(d in has_partner for d in removed) / max(1, len(removed)),
            "min_j_to_duplicate_of": min(dup_j, default=1.0), "true_removed": len(true_removed),
            "recall": len(true_removed & set(removed)) / max(1, len(true_removed)),
            "recall_clear": len(clear & set(removed)) / max(1, len(clear)),
            "clusters": len(np.unique(rep)), "clusters_all_removed": all_gone, "clusters_wiped": wiped}


def _run(corpus, out: str, keyer: MinHashKeyer) -> tuple[dict, dict[str, float]]:
    docs, sims, paths, _ = corpus
    stats = run_dedup(paths, out, keyer, progress=False)
    removed = pq.read_table(f"{out}/removed")
    index = {d["id"]: i for i, d in enumerate(docs)}
    pairs = {index[a]: index[b] for a, b in zip(removed.column("id").to_pylist(),
                                                removed.column("duplicate_of").to_pylist(), strict=True)}
    kept_ids = set(pq.read_table(f"{out}/kept").column("id").to_pylist())
    assert set(index[i] for i in kept_ids).isdisjoint(pairs) and all(docs[o]["id"] in kept_ids for o in pairs.values())
    return stats, quality(len(docs), sims, pairs)


@pytest.mark.parametrize("verify", ["hybrid", "estimate", "exact"])
def test_verified_chain_free_dedup_quality(corpus, verify: str) -> None:
    """Defaults (18 x 7 bands, threshold 0.8, ``hybrid`` verification), and the other two modes.

    All: precision 1.0 measured (>= 0.99 asserted), no cluster wiped; no removal below
    J = 0.7 to its ``duplicate_of`` (``estimate``: 0.65, see below). Recall at J >= 0.8 with
    ``hybrid`` and ``exact``: 1.000 measured (>= 0.99 asserted), min J to ``duplicate_of``
    0.80. With ``estimate`` alone, a pair at exactly J = t passes
    ``estimate >= t`` with p ~ 0.5 (128 slots: sd ~0.035), so duplicates just above 0.8 are
    sometimes kept: 0.946 measured at 0.8 (>= 0.93 asserted), while those with a kept copy
    clearly above (J >= 0.85) are removed (0.992; >= 0.99 asserted). ``hybrid`` checks exactly
    only the pairs whose estimate lies within 3 standard errors of the threshold.
    """
    stats, q = _run(corpus, str(corpus[3] / f"out-{verify}"), MinHashKeyer(verify=verify))
    c = stats["clusters"]
    print(verify, q, {k: c[k] for k in ("candidates", "verified", "rejected", "capped", "pending", "exact_checked",
                                        "verify_s")})
    assert stats["balanced"] and q["true_removed"] > 300
    assert c["candidates"] == c["verified"] + c["rejected"] and c["rejected"] > 0
    assert c["pending"] == c["exact_checked"]
    assert q["precision"] >= 0.99
    assert q["clusters_wiped"] == 0
    # estimate alone accepts a pair whose estimate reached 0.8 however far below its exact value is (3 SE
    # = 0.1): 0.694-0.705 measured on corpus variants; hybrid and exact settle such pairs exactly
    assert q["min_j_to_duplicate_of"] >= (0.65 if verify == "estimate" else 0.7)
    if verify == "estimate":
        assert c["exact_checked"] == 0
        assert q["recall"] >= 0.93
        assert q["recall_clear"] >= 0.99
    else:
        assert q["recall"] >= 0.99
        # hybrid checks only the pairs within 3 SE of the threshold exactly: 1,985 of 3,399 candidates on this
        # corpus (made dense in 0.5-0.9 pairs on purpose; 27,896 of 121,870 on docs_sections), against every
        # candidate above 0.6 for exact
        assert 0 < c["exact_checked"] < (c["candidates"] if verify == "exact" else 0.6 * c["candidates"])


def test_unverified_components_fail_on_this_corpus(corpus) -> None:
    """The corpus does break the old rule (unverified LSH edges, connected components)."""
    from dataproc.dedup.lsh import candidate_edges
    from dataproc.dedup.minhash import MinHasher

    docs, sims, _, _ = corpus
    sigs = MinHasher().signatures([d["text"] for d in docs])
    ids, rep = connected_components(candidate_edges(sigs, np.arange(len(docs), dtype=np.int64), 14, 8))
    q = quality(len(docs), sims, {int(i): int(r) for i, r in zip(ids, rep, strict=True) if i != r})
    print("old rule", q)
    assert q["min_j_to_duplicate_of"] < 0.5 and q["clusters_wiped"] > 0 and q["precision"] < 0.99
