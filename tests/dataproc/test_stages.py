"""Stage machinery: accounting, outputs, determinism across task counts, resume after a crash.

Uses small filters/keyers defined here so that these tests check the orchestration alone;
the real filters and dedup cores have their own tests.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dataproc.dedup.stages import DedupKeys
from dataproc.filters.base import FilterOutput, decisions
from dataproc.io.storage import Folder
from dataproc.pipeline import run_dedup, run_filter
from dataproc.shards import resolve_inputs


class ShortDocs:
    """Drops documents under ``min_chars`` characters; adds a ``n_chars`` column."""

    name = "short"

    def __init__(self, min_chars: int = 400) -> None:
        self.min_chars = min_chars

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        n = pc.utf8_length(batch.column("text")).to_numpy()
        out = decisions(n >= self.min_chars, np.zeros(len(n)), ("too_short",))
        out.columns["n_chars"] = pa.array(n, pa.int64())
        return out


class LinuxDocs:
    """Drops documents whose path mentions a translation; shows filters run in order."""

    name = "translation"

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        path = batch.column("path")
        hit = pc.match_substring_regex(path, "translations").to_numpy(zero_copy_only=False)
        return decisions(~hit, np.zeros(len(hit)), ("translated",))


class TextKeyer:
    """Exact duplicates by a Python hash of the raw text (an independent keyer for the machinery)."""

    bands = 1
    name = "exact"

    def keys(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        keys = [int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little")
                for t in batch.column("text").to_pylist()]
        return np.array(keys, dtype=np.uint64).reshape(-1, 1), np.ones(len(keys), bool)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, docs_sections):
    """6 input shards of a 9,000-doc slice of docs_sections spanning every source."""
    t = pq.read_table(docs_sections)
    idx = np.sort(np.random.default_rng(0).choice(t.num_rows, 9000, replace=False))
    t = t.take(idx)
    d = tmp_path_factory.mktemp("shards")
    for i in range(6):
        pq.write_table(t.slice(i * 1500, 1500), d / f"part-{i}.parquet")
    return resolve_inputs(str(d)), t


def _read_dir(path) -> pa.Table | None:
    files = Folder(str(path)).list(suffix=".parquet")
    return pa.concat_tables([pq.read_table(f"{path}/{f}") for f in files]) if files else None


def _file_bytes(root) -> dict[str, bytes]:
    out = {}
    for sub in ("kept", "removed", "quarantine"):
        for name in Folder(f"{root}/{sub}").list(suffix=".parquet"):
            out[f"{sub}/{name}"] = Path(f"{root}/{sub}/{name}").read_bytes()
    return out


def test_filter_stage_accounts_for_every_document(shards, tmp_path):
    inputs, table = shards
    stats = run_filter(inputs, str(tmp_path / "f"), [ShortDocs(), LinuxDocs()], batch_size=700,
                       max_shard_bytes=1 << 20)
    kept, removed = _read_dir(tmp_path / "f/kept"), _read_dir(tmp_path / "f/removed")
    assert stats["balanced"] and stats["docs_in"] == table.num_rows == kept.num_rows + removed.num_rows
    # Same decisions as computing them directly on the table.
    n = pc.utf8_length(table.column("text")).to_numpy()
    translated = pc.match_substring(table.column("path"), "translations").to_numpy(zero_copy_only=False)
    assert stats["removed"] == {"short:too_short": int((n < 400).sum()),
                                "translation:translated": int(((n >= 400) & translated).sum())}
    assert sorted(kept.column("id").to_pylist()) == sorted(table.column("id").filter((n >= 400) & ~translated)
                                                           .to_pylist())
    # Order within the output follows the input order; added column present; reasons recorded.
    want = table.filter(pa.array((n >= 400) & ~translated)).column("id").to_pylist()
    assert kept.column("id").to_pylist() == want
    assert kept.column("n_chars").to_pylist() == [len(t) for t in kept.column("text").to_pylist()]
    assert set(removed.column("reason").to_pylist()) == {"short:too_short", "translation:translated"}
    # Size-bounded shards: more than one shard per input, each bounded.
    assert len(Folder(str(tmp_path / "f/kept")).list(suffix=".parquet")) > len(inputs)
    assert stats["bytes_in"] == sum(len(t.encode()) for t in table.column("text").to_pylist())


def test_exact_dedup_stage_keeps_first_of_each_group(shards, tmp_path):
    inputs, table = shards
    stats = run_dedup(inputs, str(tmp_path / "d"), TextKeyer(), batch_size=1000)
    kept, removed = _read_dir(tmp_path / "d/kept"), _read_dir(tmp_path / "d/removed")
    texts = table.column("text").to_pylist()
    ids = table.column("id").to_pylist()
    first: dict[str, str] = {}
    want_removed = {}
    for i, t in zip(ids, texts, strict=True):
        if t in first:
            want_removed[i] = first[t]
        else:
            first[t] = i
    assert stats["balanced"] and stats["removed_total"] == len(want_removed) > 100
    assert dict(zip(removed.column("id").to_pylist(), removed.column("duplicate_of").to_pylist(),
                    strict=True)) == want_removed
    assert set(kept.column("id").to_pylist()) == set(first.values())
    # No cluster loses all its members: every duplicate_of is kept.
    assert set(removed.column("duplicate_of").to_pylist()) <= set(kept.column("id").to_pylist())


def test_multi_task_local_executor_equals_single_task(shards, tmp_path):
    inputs, _ = shards
    one = run_dedup(inputs, str(tmp_path / "one"), TextKeyer(), batch_size=1000)
    many = run_dedup(inputs, str(tmp_path / "many"), TextKeyer(), tasks=3, workers=2, batch_size=1000)
    assert one["kept"] == many["kept"] and one["removed"] == many["removed"]
    assert _file_bytes(tmp_path / "one") == _file_bytes(tmp_path / "many")
    # datatrove's executor ran the 3 tasks and marked them complete.
    done = Folder(str(tmp_path / "many/logs/00-dedup-keys/tasks-3/completions")).list()
    assert done == ["00000", "00001", "00002"]


def test_rerun_after_crash_redoes_only_unfinished_units(shards, tmp_path, monkeypatch):
    inputs, _ = shards
    ref = run_dedup(inputs, str(tmp_path / "ref"), TextKeyer(), batch_size=1000)
    calls = {"n": 0}
    real = DedupKeys.process

    def crashing(self, i, unit):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("simulated crash")
        return real(self, i, unit)

    monkeypatch.setattr(DedupKeys, "process", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_dedup(inputs, str(tmp_path / "crash"), TextKeyer(), batch_size=1000)
    assert len(Folder(str(tmp_path / "crash/.units")).list()) == 3
    calls["n"] = -100
    again = run_dedup(inputs, str(tmp_path / "crash"), TextKeyer(), batch_size=1000)
    assert calls["n"] == -100 + 3  # the 3 finished key units were not redone
    assert again["kept"] == ref["kept"]
    assert _file_bytes(tmp_path / "crash") == _file_bytes(tmp_path / "ref")


def test_fsspec_urls_in_and_out(shards, tmp_path):
    """Inputs as file:// URLs, outputs on fsspec's in-memory filesystem: same result as local paths."""
    import fsspec

    inputs, _ = shards
    local = run_filter(inputs[:2], str(tmp_path / "local"), [ShortDocs()], batch_size=700)
    remote = run_filter([f"file://{p}" for p in inputs[:2]], "memory://dataproc-test/out", [ShortDocs()],
                        batch_size=700)
    assert remote["kept"] == local["kept"] and remote["removed"] == local["removed"]
    fs = fsspec.filesystem("memory")
    names = sorted(p.rsplit("/", 1)[1] for p in fs.ls("/dataproc-test/out/kept", detail=False))
    assert names == Folder(str(tmp_path / "local/kept")).list(suffix=".parquet")
    with fs.open(f"/dataproc-test/out/kept/{names[0]}", "rb") as f:
        assert f.read() == (tmp_path / "local/kept" / names[0]).read_bytes()
    fs.rm("/dataproc-test", recursive=True)


def test_slurm_plan_chains_every_step_and_resolves_inputs_late(tmp_path, tiny_sections):
    """The whole pipeline submitted at once: each job depends on the one before, later stages
    read the previous stage's kept/ only when they run, and the chain pickles as datatrove
    ships it to Slurm (dill)."""
    import dill

    from dataproc.config import load_config
    from dataproc.dedup.stages import MAX_CC_ROUNDS
    from dataproc.execution import Execution, Step, Summary, slurm_chain
    from dataproc.pipeline import plan_pipeline

    out = tmp_path / "plan"
    cfg = load_config(None, ["filters={gopher_quality: {}}", "execution.tasks=8"],
                      base={"input": str(tiny_sections), "output": str(out)})
    steps, stages = plan_pipeline(cfg)
    chain = slurm_chain([*steps, Step(Summary(str(out), stages, True), 1)], Folder(str(out)).sub("logs"),
                        Execution("slurm", 8, 4, {"partition": "cpu", "time": "01:00:00"}))
    names = [c.job_name.split("-", 2)[2] for c in chain]
    rounds = [f"dedup-components-r{k:02d}" for k in range(1, MAX_CC_ROUNDS + 1)]
    dedup = ["dedup-keys", "dedup-buckets", *rounds, "dedup-keep", "dedup-filter"]
    assert names == ["filter", *dedup * 2, "summary"]
    assert all(c.depends is p for p, c in itertools.pairwise(chain)) and chain[0].depends is None
    # no dedup step is a single task any more: every step but the summary gets the 8 tasks (a task
    # with no unit, or a components round after convergence, ends at once)
    assert [c.tasks for c in chain] == [8] * (len(chain) - 1) + [1]
    exact_keys = steps[1].step
    assert exact_keys._inputs is None and exact_keys._inputs_spec.endswith("filter/kept")
    assert not out.exists()  # planning wrote nothing
    dill.loads(dill.dumps(chain[-1]))
