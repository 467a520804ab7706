"""MinHash near-dedup against its peers, on the same documents in the same run.

1. Signatures (text -> 128 uint32 per doc), docs/s on one core: ``MinHasher`` (numba, one
   thread, compiled before timing) vs datasketch 2.0 doing its whole path too: the same
   word 5-gram shingling in Python (regex), then ``MinHash.generator`` (a shared template
   copied per doc + ``update_batch``, datasketch's bulk path) with its default
   ``affine32`` permutations over ``sha1_hash32`` and over ``xxhash.xxh32_intdigest``.
   Best of ``--repeats`` for every row alike. A ``threads=2`` row is informational.
2. End-to-end MinHash dedup: datatrove 0.10.1's four stages (MinhashConfig defaults: word
   5-grams, 14 buckets x 8 hashes; LocalPipelineExecutor, 1 worker; tasks=1 except the
   bucket stage, which needs one task per bucket) vs ``dataproc dedup --tasks 1`` (the CLI,
   wall time launch to exit). Removed counts and their overlap (by document ``id``).
   Also the in-process core alone (signatures -> band keys -> verified pairs -> chain-free
   clustering). The CLI row notes candidate pairs, verified/rejected counts and the seconds
   spent verifying (from ``stats.json``).
3. Quality on a sample of whole Django page groups (all 7 releases + the Debian HTML copies
   + unrelated docs, as in tests/dataproc/test_lsh_clusters.py): both tools run end to end
   on the sample; their removals are scored against exact Jaccard of the documented
   shingle sets (see ``quality_metrics``).

    python benchmarks/minhash.py                 # full docs_sections (datatrove takes minutes)
    python benchmarks/minhash.py --smoke         # a few hundred docs: harness check
    python benchmarks/minhash.py --skip-e2e      # signatures only

Writes ``minhash_signatures.csv``, ``minhash_e2e.csv``, ``minhash_quality.csv``,
``minhash_env.json`` and ``minhash.png`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _results import add_output_arg, output_dir, scratch_dir, written
from _timing import best_of

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "docs_sections.parquet"
CLI = ROOT / ".venv" / "bin" / "dataproc"
CLI_BANDS = (18, 7)  # `dataproc dedup` / minhash config default (MinHashKeyer)

# The documented shingling (dataproc/dedup/minhash.py) as a Python regex, for the peer:
# a word is a run of characters that are neither separators nor CJK "single" characters,
# and each single character is a word by itself. ``str.lower`` stands in for the
# documented case folding (identical on every script these docs use).
_SEP = (r"\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\xbf\xd7\xf7\u2000-\u2bff\u2e00-\u2e7f\u3000-\u303f"
        r"\ufe10-\ufe6f\ufeff\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65")
_SINGLE = r"\u2e80-\u2fdf\u3040-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003ffff"
_WORDS = re.compile(f"[^{_SEP}{_SINGLE}]+|[{_SINGLE}]")


def py_shingles(text: str, ngram: int = 5) -> list[bytes]:
    words = _WORDS.findall(text.lower())
    if not words:
        return []
    k = min(ngram, len(words))
    return list({" ".join(words[i : i + k]).encode() for i in range(len(words) - k + 1)})




def bench_signatures(texts: pa.Array, repeats: int) -> list[dict]:
    import xxhash
    from datasketch import MinHash

    from dataproc.dedup.minhash import MinHasher

    n = len(texts)
    py_texts = texts.to_pylist()
    rows = []
    for threads in (1, 2):
        hasher = MinHasher(num_perm=128, ngram=5, seed=1, threads=threads)
        hasher.signatures(texts.slice(0, min(n, 200)))  # compile / load the numba cache
        rows.append({"impl": "dataproc", "variant": f"numba threads={threads}", "threads": threads,
                     "seconds": best_of(lambda h=hasher: h.signatures(texts), repeats)})
    for variant, kwargs in [("affine32+sha1 (default)", {}), ("affine32+xxh32", {"hashfunc": xxhash.xxh32_intdigest})]:
        def run(kw=kwargs) -> None:
            for _ in MinHash.generator((py_shingles(t) for t in py_texts), num_perm=128, seed=1, **kw):
                pass
        rows.append({"impl": "datasketch", "variant": variant, "threads": 1, "seconds": best_of(run, repeats)})
    ours = rows[0]["seconds"]
    for r in rows:
        r.update(docs=n, docs_per_s=round(n / r["seconds"]), seconds=round(r["seconds"], 3),
                 ours_x_faster=round(r["seconds"] / ours, 1))
    return rows


def _shim_datatrove_xxhash() -> None:
    """datatrove's default MinHash hash (``xxhash64`` of a str) raises under xxhash 4, which
    no longer encodes str itself; encode as UTF-8 like xxhash 3 did (same hash values)."""
    import xxhash
    from datatrove.utils.hashes import xxhash as dt_xxhash

    def xxhash64(data: str | bytes) -> int:
        return xxhash.xxh64_intdigest(data.encode() if isinstance(data, str) else data)

    def xxhash32(data: str | bytes) -> int:
        return xxhash.xxh32_intdigest(data.encode() if isinstance(data, str) else data)

    dt_xxhash.xxhash64, dt_xxhash.xxhash32 = xxhash64, xxhash32


def datatrove_pipeline(input_file: Path, work: Path) -> None:
    """The four datatrove stages; run in a child process (``--datatrove-child``)."""
    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    _shim_datatrove_xxhash()
    cfg = MinhashConfig()
    src = str(input_file.parent)
    glob = input_file.name

    def executor(pipeline: list, tasks: int, name: str) -> LocalPipelineExecutor:
        return LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / "logs" / name))

    stages = [
        executor([ParquetReader(src, glob_pattern=glob), MinhashDedupSignature(str(work / "sigs"), config=cfg)], 1, "s1"),
        executor([MinhashDedupBuckets(str(work / "sigs"), str(work / "buckets"), config=cfg)], cfg.num_buckets, "s2"),
        executor([MinhashDedupCluster(str(work / "buckets"), str(work / "remove_ids"), config=cfg)], 1, "s3"),
        executor([ParquetReader(src, glob_pattern=glob),
                  MinhashDedupFilter(str(work / "remove_ids"), exclusion_writer=ParquetWriter(str(work / "removed"))),
                  ParquetWriter(str(work / "kept"))], 1, "s4"),
    ]
    for stage in stages:
        stage.run()


def run_datatrove(input_file: Path, work: Path) -> tuple[float, set[str]]:
    """Wall time of a fresh process, launch to exit (like the CLI), and the removed ids."""
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with (work / "datatrove.log").open("w") as log:
        proc = subprocess.run([sys.executable, __file__, "--datatrove-child", str(input_file), str(work)],
                              stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError("datatrove failed:\n" + (work / "datatrove.log").read_text()[-3000:])
    removed = set()
    for f in sorted((work / "removed").glob("*.parquet")):
        removed.update(pq.read_table(f, columns=["id"])["id"].to_pylist())
    return wall, removed


def run_cli(input_file: Path, out: Path, *extra: str) -> tuple[float | None, set[str], str]:
    """Wall time, removed ids and a note with the candidate verification counts and cost."""
    if not CLI.exists() or subprocess.run([str(CLI), "dedup", "--help"], capture_output=True).returncode != 0:
        return None, set(), "dataproc dedup CLI missing"
    t0 = time.perf_counter()
    proc = subprocess.run([str(CLI), "dedup", "--input", str(input_file), "--output", str(out), "--tasks", "1",
                           "--no-progress", *extra], capture_output=True, text=True,
                          env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return None, set(), "CLI failed: " + proc.stderr[-500:].replace("\n", " ")
    removed = set()
    for f in sorted((out / "removed").glob("*.parquet")):
        removed.update(pq.read_table(f, columns=["id"])["id"].to_pylist())
    c = json.loads((out / "stats.json").read_text()).get("clusters", {})
    note = (f"verify {c.get('verify')}: candidates {c.get('candidates')}, verified {c.get('verified')}, "
            f"rejected {c.get('rejected')}, exact Jaccard checks {c.get('exact_checked', 0)}, "
            f"verification {c.get('verify_s')} s")
    return wall, removed, note


def run_core(texts: pa.Array) -> tuple[float, int]:
    """The array-level core alone, in process: what the CLI adds on top is I/O and orchestration.

    Signatures -> band keys -> per band, verified candidate pairs -> chain-free clustering.
    """
    from dataproc.dedup.lsh import band_keys
    from dataproc.dedup.minhash import MinHasher
    from dataproc.dedup.verify import bucket_order, greedy_keep, verify_buckets

    hasher = MinHasher(num_perm=128, ngram=5, seed=1)
    hasher.signatures(texts.slice(0, min(len(texts), 200)))
    t0 = time.perf_counter()
    sigs = hasher.signatures(texts)
    ok = ~hasher.empty_mask(sigs)
    bands, rows = CLI_BANDS  # what `dataproc dedup` uses by default
    keys, ids, sigs = band_keys(sigs[ok], bands, rows), np.flatnonzero(ok), sigs[ok]
    edges = []
    for b in range(bands):
        k, d, pos = bucket_order(keys[:, b], ids)
        edges.append(verify_buckets(k, d, pos, sigs, b, rows, 0.8)[0])
    removed = len(greedy_keep(np.concatenate(edges))[0])
    return time.perf_counter() - t0, removed


def bench_e2e(input_file: Path, texts: pa.Array, ids: list[str], tmp: Path, skip_datatrove: bool) -> list[dict]:
    n = len(texts)
    rows = []
    dt_removed: set[str] = set()
    if not skip_datatrove:
        wall, dt_removed = run_datatrove(input_file, tmp / "datatrove")
        rows.append({"impl": "datatrove", "variant": "4 stages, 1 worker", "wall_s": round(wall, 2),
                     "docs_per_s": round(n / wall), "removed": len(dt_removed),
                     "note": "default MinhashConfig; xxhash-4 str shim"})
    ours: set[str] = set()
    # The default (hybrid: exact Jaccard for borderline estimates) and the estimate alone.
    for variant, extra in (("CLI dedup --tasks 1", ()), ("CLI dedup --tasks 1 --verify estimate",
                                                          ("--verify", "estimate"))):
        wall, removed, note = run_cli(input_file, tmp / f"dataproc{len(rows)}", *extra)
        ours = ours or removed
        if wall is None:
            rows.append({"impl": "dataproc", "variant": variant, "wall_s": "", "docs_per_s": "",
                         "removed": "", "note": note})
        else:
            rows.append({"impl": "dataproc", "variant": variant, "wall_s": round(wall, 2),
                         "docs_per_s": round(n / wall), "removed": len(removed), "note": "launch to exit; " + note})
    core_s, core_removed = run_core(texts)
    rows.append({"impl": "dataproc", "variant": "core in-process (no I/O)", "wall_s": round(core_s, 2),
                 "docs_per_s": round(n / core_s), "removed": core_removed, "note": "sigs+bands+verified pairs+greedy"})
    dt_wall = rows[0]["wall_s"] if not skip_datatrove else None
    for r in rows:
        r["docs"] = n
        r["speedup_vs_datatrove"] = round(dt_wall / r["wall_s"], 1) if dt_wall and r["wall_s"] else ""
        if r["variant"] == "CLI dedup --tasks 1" and ours and dt_removed:
            both = ours & dt_removed
            r["note"] += (f"; overlap with datatrove {len(both)} (ours only {len(ours - both)}, "
                          f"datatrove only {len(dt_removed - both)})")
    assert len(set(ids)) == len(ids), "document ids must be unique to compare removed sets"
    return rows


def sample_page_groups(path: Path, min_docs: int = 2000, others: int = 400) -> pa.Table:
    """Whole Django pages across all releases + their Debian HTML copies, plus ``others``."""
    import polars as pl

    df = pl.read_parquet(path, columns=["id", "text", "source", "path"]).with_row_index("row")
    django = df.filter(pl.col("source").str.starts_with("django")).with_columns(
        page=pl.col("path").str.replace(r"\.(txt|html)$", ""))
    sizes = django.group_by("page").agg(n=pl.len(), sources=pl.col("source").n_unique())
    pages = sizes.filter((pl.col("sources") == 2) & (pl.col("n") <= 200)).sort("page").sample(fraction=1.0, seed=0)
    n_cum = pages["n"].cum_sum().to_list()
    chosen = pages["page"].to_list()[: next((i + 1 for i, c in enumerate(n_cum) if c >= min_docs), len(n_cum))]
    picked = django.filter(pl.col("page").is_in(chosen)).select("row", "id", "text")
    rest = df.filter(~pl.col("source").str.starts_with("django")).sample(others, seed=0).select("row", "id", "text")
    return pl.concat([picked, rest]).sort("row").drop("row").to_arrow()


def exact_similar_pairs(texts: pa.Array, threshold: float) -> dict[tuple[int, int], float]:
    """All pairs with exact Jaccard >= threshold over the documented shingle sets.

    Shingle sets come from ``MinHasher.shingle_hashes`` (64-bit hashes of the shingles; the
    tests check them against the pure-Python reference). Candidates by prefix filtering:
    with shingles ordered rarest first, a pair with J >= t shares one of each document's
    first ``|A| - ceil(t|A|) + 1`` shingles, so no qualifying pair is missed.
    """
    import math
    from collections import Counter, defaultdict

    from dataproc.dedup.minhash import MinHasher

    values, offsets = MinHasher().shingle_hashes(texts)
    sets = [set(values[offsets[i] : offsets[i + 1]].tolist()) for i in range(len(offsets) - 1)]
    df = Counter(g for s in sets for g in s)
    index: dict[int, list[int]] = defaultdict(list)
    candidates = set()
    for i, s in enumerate(sets):
        toks = sorted(s, key=lambda g: (df[g], g))
        for g in toks[: len(toks) - math.ceil(threshold * len(toks)) + 1]:
            candidates.update((j, i) for j in index[g])
            index[g].append(i)
    pairs = {}
    for a, b in candidates:
        j = len(sets[a] & sets[b]) / len(sets[a] | sets[b])
        if j >= threshold:
            pairs[(a, b)] = j
    return pairs


def _labels(n: int, pairs) -> np.ndarray:
    from dataproc.dedup.clusters import connected_components

    rep = np.arange(n)
    ids, reps = connected_components(np.array(list(pairs), dtype=np.int64).reshape(-1, 2))
    rep[ids] = reps
    return rep


def quality_metrics(removed: np.ndarray, strict: np.ndarray, lenient: np.ndarray) -> dict:
    """Scores of a removal mask that do not depend on which member of a cluster is kept.

    ``strict``/``lenient``: component labels of the exact-Jaccard graphs at J >= 0.75 and
    J >= 0.5. A strict component of m documents should lose m - 1 of them:
    recall = sum over components of min(removed in it, m - 1) / sum of (m - 1).
    A removed document is justified if its lenient component still has a kept document
    (it was folded into something it is a near-duplicate of, through J >= 0.5 pairs):
    precision = justified / removed. Banding is a soft threshold near 0.7-0.8, so
    pairs between 0.5 and 0.75 are fair game; unrelated documents have J ~ 0.
    """
    n = removed.size
    sizes = np.bincount(strict, minlength=n)
    lost = np.bincount(strict[removed], minlength=n)
    recall = np.minimum(lost, np.maximum(sizes - 1, 0)).sum() / max(1, (sizes - 1).clip(0).sum())
    kept_in = np.bincount(lenient[~removed], minlength=n)
    justified = kept_in[lenient[removed]] > 0
    return {"removed": int(removed.sum()), "should_remove": int((sizes - 1).clip(0).sum()),
            "recall": round(float(recall), 4), "precision": round(float(justified.mean()) if removed.any() else 1.0, 4)}


def bench_quality(input_path: Path, tmp: Path, skip_datatrove: bool, smoke: bool) -> list[dict]:
    sample = sample_page_groups(input_path, *((300, 50) if smoke else (2000, 400)))
    sample_file = tmp / "quality" / "input" / "sample.parquet"
    sample_file.parent.mkdir(parents=True)
    pq.write_table(sample, sample_file)
    texts = sample["text"].combine_chunks()
    ids = sample["id"].to_pylist()
    n = len(ids)
    pairs = exact_similar_pairs(texts, 0.5)
    strict = _labels(n, [p for p, j in pairs.items() if j >= 0.75])
    lenient = _labels(n, list(pairs))
    runs = []
    if not skip_datatrove:
        runs.append(("datatrove", "default MinhashConfig", run_datatrove(sample_file, tmp / "quality" / "dt")[1]))
    wall, ours, _ = run_cli(sample_file, tmp / "quality" / "ours")
    if wall is not None:
        runs.append(("dataproc", f"CLI dedup, {CLI_BANDS[0]} x {CLI_BANDS[1]}", ours))
    rows = []
    for impl, variant, removed_ids in runs:
        mask = np.array([i in removed_ids for i in ids])
        rows.append({"impl": impl, "variant": variant, "docs": n, **quality_metrics(mask, strict, lenient)})
    return rows


def environment() -> dict:
    versions = {}
    for pkg in ["numpy", "numba", "pyarrow", "polars", "xxhash", "datasketch", "datatrove", "spacy"]:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return {"platform": platform.platform(), "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "versions": versions,
            "git_commit": commit.stdout.strip(), "load_avg": os.getloadavg(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def print_table(title: str, rows: list[dict], cols: list[str]) -> None:
    print(f"\n{title}")
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(cols, widths)))


def plot(path: Path, sig_rows: list[dict], e2e_rows: list[dict], env: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, rows, title in [(axes[0], sig_rows, "MinHash signatures (docs/s, log)"),
                            (axes[1], [r for r in e2e_rows if r["docs_per_s"] != ""], "End-to-end dedup (docs/s, log)")]:
        labels = [f"{r['impl']}\n{r['variant']}" for r in rows]
        vals = [float(r["docs_per_s"]) for r in rows]
        bars = ax.barh(labels, vals, color=["tab:blue" if r["impl"] == "dataproc" else "tab:gray" for r in rows])
        ax.set_xscale("log")
        ax.bar_label(bars, labels=[f"{v:,.0f}" for v in vals], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(f"{sig_rows[0]['docs']:,} docs; {env['cpu_count']} CPUs; {env['platform']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="Parquet file with id and text columns")
    p.add_argument("--limit", type=int, default=None, help="use only the first N documents")
    p.add_argument("--smoke", action="store_true", help="300 documents, 1 repeat: harness check")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats per signature row (best is kept)")
    p.add_argument("--skip-e2e", action="store_true", help="signatures only")
    p.add_argument("--skip-datatrove", action="store_true", help="end-to-end without the (slow) datatrove run")
    add_output_arg(p)
    p.add_argument("--datatrove-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.datatrove_child:
        datatrove_pipeline(*a.datatrove_child)
        return
    limit = 300 if a.smoke else a.limit
    repeats = 1 if a.smoke else a.repeats
    out = output_dir(a.output_dir, a.smoke, "minhash")  # a smoke run never overwrites the committed results
    tmp = scratch_dir(out, f"minhash-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        table = pq.read_table(a.input, columns=["id", "text"])
        if limit:
            table = table.slice(0, limit)
        input_file = tmp / "input" / "docs.parquet"
        input_file.parent.mkdir(parents=True)
        pq.write_table(table, input_file)
        texts = table["text"].combine_chunks()
        env = environment()
        env.update(input=str(a.input), docs=len(texts), repeats=repeats)

        sig_rows = bench_signatures(texts, repeats)
        print_table(f"MinHash signatures, {len(texts):,} docs, 128 perms, word 5-grams (best of {repeats})",
                    sig_rows, ["impl", "variant", "seconds", "docs_per_s", "ours_x_faster"])
        write_csv(out / "minhash_signatures.csv", sig_rows)
        e2e_rows = []
        if not a.skip_e2e:
            e2e_rows = bench_e2e(input_file, texts, table["id"].to_pylist(), tmp, a.skip_datatrove)
            print_table(f"End-to-end MinHash dedup (ours {CLI_BANDS[0]} x {CLI_BANDS[1]} bands, verified at 0.8)",
                        e2e_rows,
                        ["impl", "variant", "wall_s", "docs_per_s", "removed", "speedup_vs_datatrove", "note"])
            write_csv(out / "minhash_e2e.csv", e2e_rows)
            quality_rows = bench_quality(a.input, tmp, a.skip_datatrove, a.smoke)
            print_table("Quality vs exact Jaccard (recall at J >= 0.75, precision: J >= 0.5 path to a kept doc)",
                        quality_rows, ["impl", "variant", "docs", "should_remove", "removed", "recall", "precision"])
            write_csv(out / "minhash_quality.csv", quality_rows)
        (out / "minhash_env.json").write_text(json.dumps(env, indent=2))
        plot(out / "minhash.png", sig_rows, e2e_rows, env)
        print("\n" + written(out, a.smoke, "minhash_*.csv, minhash_env.json, minhash.png"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
