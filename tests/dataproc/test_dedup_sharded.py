"""Sharded near-dedup: the same removals whatever the layout, and equal to an independent reference.

The reference (:func:`reference_removals`) recomputes MinHash dedup in plain Python from the
signatures: LSH buckets per band, each pair decided once (in the first band where it collides,
the bucket's first ``max_checks`` earlier members only), accepted by its estimate or, near the
threshold, by the exact Jaccard of its shingle-key sets (``shingle_ref``), then the chain-free
greedy rule over all verified edges at once. The pipeline must give exactly its removals and
``duplicate_of`` for every number of tasks, workers, partitions and runs: nothing of the
sharding (bucket units, components rounds, keep partitions) may show in the output.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataproc.dedup.minhash import MinHasher
from dataproc.dedup.stages import MinHashKeyer
from dataproc.dedup.verify import verify_bounds
from dataproc.pipeline import run_dedup
from tests.dataproc import near_dup_corpus
from tests.dataproc import shingle_ref as ref

FILES = 6
EMPTY = 0xFFFFFFFF


@pytest.fixture(scope="module")
def corpus(docs_sections, tmp_path_factory):
    docs = near_dup_corpus.build(str(docs_sections))
    root = tmp_path_factory.mktemp("sharded")
    paths = []
    for f, part in enumerate(np.array_split(np.arange(len(docs)), FILES)):
        p = root / f"part{f}.parquet"
        pq.write_table(pa.table({"id": [docs[i]["id"] for i in part], "text": [docs[i]["text"] for i in part]}), p)
        paths.append(str(p))
    return [d["id"] for d in docs], [d["text"] for d in docs], paths, root


def key_set(text: str) -> set[int]:
    """The 32-bit shingle keys the permutations see (``shingle_hash >> 32``)."""
    return {ref.shingle_hash(s) >> 32 for s in ref.shingle_set(text)}


def greedy(n: int, edges: dict[tuple[int, int], int]) -> dict[int, int]:
    """The chain-free rule, in plain Python: ``{removed: duplicate_of}`` over ``{(later, earlier): equal}``."""
    earlier: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for (s, d), eq in edges.items():
        earlier[s].append((-eq, d))
    removed: dict[int, int] = {}
    for s in range(n):
        kept = sorted(c for c in earlier.get(s, []) if c[1] not in removed)
        if kept:
            removed[s] = kept[0][1]
    return removed


def reference_removals(texts: list[str], keyer: MinHashKeyer) -> tuple[dict[int, int], dict[tuple[int, int], int]]:
    """``({removed doc: duplicate_of doc}, verified edges)`` of MinHash dedup, recomputed in plain Python."""
    sigs = MinHasher(keyer.num_perm, keyer.ngram, keyer.seed).signatures(texts)
    usable = [i for i in range(len(texts)) if not np.all(sigs[i] == EMPTY)]
    accept, pending = verify_bounds(keyer.threshold, keyer.num_perm, keyer.verify)
    r = keyer.rows
    edges: dict[tuple[int, int], int] = {}
    sets: dict[int, set[int]] = {}
    for band in range(keyer.bands):
        buckets: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i in usable:
            buckets[tuple(sigs[i, band * r:(band + 1) * r].tolist())].append(i)
        for members in buckets.values():
            for pos, p in enumerate(members):
                for q in members[:min(pos, keyer.max_checks)]:
                    if any(np.array_equal(sigs[p, b * r:(b + 1) * r], sigs[q, b * r:(b + 1) * r])
                           for b in range(band)):
                        continue  # decided in an earlier band
                    equal = int(np.sum(sigs[p] == sigs[q]))
                    if equal >= accept:
                        edges[(p, q)] = equal
                    elif equal >= pending:
                        a, b = (sets.setdefault(x, key_set(texts[x])) for x in (p, q))
                        jac = len(a & b) / len(a | b)
                        if jac >= keyer.threshold:
                            edges[(p, q)] = round(jac * keyer.num_perm)
    return greedy(len(texts), edges), edges


@pytest.fixture(scope="module")
def reference(corpus):
    _, texts, _, _ = corpus
    return reference_removals(texts, MinHashKeyer())


def _outputs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for sub in ("kept", "removed") for p in sorted((root / sub).glob("*.parquet"))}


def test_pipeline_equals_reference_and_is_layout_independent(corpus, reference, tmp_path) -> None:
    ids, _, paths, _ = corpus
    want, edges = reference
    assert len(want) > 300 and len(edges) > 500
    runs = {}
    # (tasks, workers, files per partition): 1 file per partition gives 8 key ranges and 8 component
    # partitions here (6 files), the default 8 gives one of each
    for tasks, workers, fpp in [(1, 1, 8), (1, 1, 1), (3, 1, 1), (8, 2, 1), (3, 2, 8)]:
        out = tmp_path / f"t{tasks}-w{workers}-p{fpp}"
        stats = run_dedup(paths, str(out), MinHashKeyer(), tasks=tasks, workers=workers, files_per_partition=fpp,
                          progress=False)
        assert stats["balanced"] and stats["removed_total"] == len(want)
        runs[out.name] = _outputs(out)
    again = tmp_path / "again"
    run_dedup(paths, str(again), MinHashKeyer(), tasks=8, workers=2, files_per_partition=1, progress=False)
    runs["again"] = _outputs(again)
    first = runs.pop("t1-w1-p8")
    assert all(r == first for r in runs.values()), [k for k, r in runs.items() if r != first]
    removed = pq.read_table(tmp_path / "t8-w2-p1" / "removed")
    got = dict(zip(removed.column("id").to_pylist(), removed.column("duplicate_of").to_pylist(), strict=True))
    assert got == {ids[s]: ids[d] for s, d in want.items()}
    kept = pq.read_table(tmp_path / "t8-w2-p1" / "kept", columns=["id"]).column("id").to_pylist()
    assert sorted(kept + list(got)) == sorted(ids)
    # no chains, nothing wiped: every duplicate_of is a kept document
    assert set(got.values()) <= set(kept)
    # the sharded layout really ran: 8 key ranges per band, 8 component partitions, several rounds
    units = {p.stem for p in (tmp_path / "t8-w2-p1" / ".units").glob("*.json")}
    assert {f"band-000-r{r:04d}" for r in range(8)} <= units and "keep-p0007" in units
    assert "cc-r02-p0007" in units


def test_stats_list_largest_components_and_similarities(corpus, reference, tmp_path) -> None:
    """stats.json: the largest components of the verified edges (checked against scipy's connected
    components of the reference edges) and the distribution of verified similarities; the CLI warns
    about a component over ``--warn-component-size``, naming its earliest member."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    ids, _, paths, _ = corpus
    _, edges = reference
    pairs = np.array(list(edges), np.int64)
    n = len(ids)
    _, label = connected_components(coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)),
                                    directed=False)
    in_edge = np.zeros(n, bool)
    in_edge[pairs.ravel()] = True
    members: dict[int, list[int]] = defaultdict(list)
    for i in np.flatnonzero(in_edge).tolist():
        members[int(label[i])].append(i)
    comps = sorted((sorted(m) for m in members.values()), key=lambda m: (-len(m), m[0]))
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "dataproc", "dedup", "--input", *paths, "--output", str(out), "--tasks", "3",
           "--warn-component-size", str(len(comps[0]) - 1), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    c = json.loads((out / "stats.json").read_text())["clusters"]
    assert c["components"] == len(comps)
    assert [x["size"] for x in c["largest_components"]] == [len(m) for m in comps[:10]]
    assert [x["earliest_id"] for x in c["largest_components"]] == [ids[m[0]] for m in comps[:10]]
    assert all(x["other_id"] in {ids[i] for i in m} for x, m in zip(c["largest_components"], comps, strict=False))
    sizes, counts = np.unique([len(m) for m in comps], return_counts=True)
    assert c["component_size_histogram"] == dict(zip(map(str, sizes.tolist()), counts.tolist(), strict=True))
    sim = c["similarity"]
    assert sim["pairs"] == c["verified"] == len(edges)
    assert sum(sim["histogram"].values()) == len(edges)
    eq = np.array(list(edges.values())) / 128
    assert sim["min"] == pytest.approx(eq.min(), abs=1e-4)
    assert sim["p50"] == pytest.approx(np.sort(eq)[math.ceil(0.5 * len(eq)) - 1], abs=1e-4)
    # the warning names the largest component (the only one over the limit) by its earliest id
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line]
    big = [m for m in comps if len(m) > len(comps[0]) - 1]
    assert len(warnings) == len(big) and repr(ids[comps[0][0]]) in warnings[0], proc.stderr
    assert f"{len(comps[0]):,} documents linked as duplicates" in warnings[0]


WARM_CHECK = """
import json, sys
import numba
from dataproc.dedup.stages import MinHashKeyer
from dataproc.dedup.warm import warm_up
from dataproc.pipeline import run_dedup

def overloads():
    found = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("dataproc"):
            for attr, obj in vars(mod).items():
                if isinstance(obj, numba.core.registry.CPUDispatcher):
                    found[f"{obj.py_func.__module__}.{obj.py_func.__qualname__}"] = len(obj.overloads)
    return found

keyer = MinHashKeyer()
warm_up(keyer)
before = overloads()
run_dedup(sys.argv[2:], sys.argv[1], keyer, tasks=3, workers=1, files_per_partition=1, progress=False)
after = overloads()
print(json.dumps({k: [before.get(k, 0), n] for k, n in after.items() if n != before.get(k, 0)}))
"""


def test_warm_up_loads_every_kernel_the_steps_run(corpus, tmp_path) -> None:
    """Local workers are forked after ``warm_up``: a kernel (or a type signature) it leaves out is loaded,
    or compiled, again in every worker of every step. Run in a fresh process, where nothing else ran."""
    _, _, paths, _ = corpus
    proc = subprocess.run([sys.executable, "-c", WARM_CHECK, str(tmp_path / "out"), *paths],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    missed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert missed == {}, f"kernels first run after warm_up ({{name: [overloads before, after]}}): {missed}"
