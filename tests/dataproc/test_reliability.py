"""``kill -9`` in the middle of ``dataproc run``, then rerun: byte-identical output, nothing lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

CONFIG = """
input: {input}
output: {output}
read: {{batch_size: 500}}
max_shard_bytes: 400000
execution: {{tasks: 1, workers: 1}}
filters:
  gopher_quality: {{}}
  language: {{model_path: {lid}, languages: [en], min_score: 0.5}}
exact_dedup: {{enabled: true}}
minhash: {{enabled: true, num_perm: 64, bands: 8, rows: 8}}
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, docs_sections):
    t = pq.read_table(docs_sections)
    idx = np.sort(np.random.default_rng(1).choice(t.num_rows, 8000, replace=False))
    t = t.take(idx)
    d = tmp_path_factory.mktemp("corpus")
    for i in range(8):
        pq.write_table(t.slice(i * 1000, 1000), d / f"shard-{i:02d}.parquet")
    return d, t


def _config(tmp: Path, corpus_dir: Path, out: Path, lid: Path) -> Path:
    cfg = tmp / f"{out.name}.yaml"
    cfg.write_text(CONFIG.format(input=corpus_dir, output=out, lid=lid))
    return cfg


def _run(cfg: Path, kill_when: tuple | None = None) -> int:
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "dataproc", "run", str(cfg), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_when is None:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-2000:]
        return 0
    units_dir, count = Path(kill_when[0]), kill_when[1]
    pattern = kill_when[2] if len(kill_when) > 2 else "*.json"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if units_dir.exists() and len(list(units_dir.glob(pattern))) >= count:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return -9
        time.sleep(0.01)
    raise AssertionError(f"the run ended before {count} units of {units_dir} were done")


def _outputs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))
            if "/work/" not in str(p) and not p.name.startswith(".")}


def test_kill_9_then_rerun_is_byte_identical(tmp_path, corpus, lid_model):
    corpus_dir, table = corpus
    ref = tmp_path / "ref"
    _run(_config(tmp_path, corpus_dir, ref, lid_model))
    out = tmp_path / "killed"
    cfg = _config(tmp_path, corpus_dir, out, lid_model)
    # Kill in the filter stage, then inside the MinHash stage's keys, then between its components
    # rounds, then let it finish.
    assert _run(cfg, (str(out / "filter/.units"), 3)) == -9
    assert _run(cfg, (str(out / "minhash/.units"), 2)) == -9
    assert _run(cfg, (str(out / "minhash/.units"), 1, "cc-r01-*.json")) == -9
    _run(cfg)
    want, got = _outputs(ref), _outputs(out)
    assert sorted(got) == sorted(want) and len(want) > 10
    assert all(got[k] == want[k] for k in want), [k for k in want if got[k] != want[k]]
    # Nothing lost or duplicated: every input id is in exactly one final place.
    final = [pq.read_table(out / "minhash/kept")]
    for stage in ("filter", "exact", "minhash"):
        for sub in ("removed", "quarantine"):
            if (out / stage / sub).exists() and any((out / stage / sub).glob("*.parquet")):
                final.append(pq.read_table(out / stage / sub, columns=["id"]))
    ids = pa.concat_tables([t.select(["id"]) for t in final]).column("id").to_pylist()
    assert len(ids) == table.num_rows
    assert sorted(ids) == sorted(table.column("id").to_pylist())
    assert not list(out.rglob("*.tmp"))


def test_local_executor_with_three_tasks_equals_one_task(tmp_path, corpus, lid_model):
    """The real pipeline (filters, exact, MinHash) on datatrove's LocalPipelineExecutor with 3
    tasks on 2 workers writes exactly the files of the single-task run."""
    corpus_dir, _ = corpus
    one = tmp_path / "one"
    _run(_config(tmp_path, corpus_dir, one, lid_model))
    many = tmp_path / "many"
    cfg = _config(tmp_path, corpus_dir, many, lid_model)
    cfg.write_text(cfg.read_text().replace("tasks: 1, workers: 1", "tasks: 3, workers: 2"))
    _run(cfg)
    want, got = _outputs(one), _outputs(many)
    assert len(want) > 10 and sorted(got) == sorted(want)
    assert all(got[k] == want[k] for k in want)
    assert (many / "logs/00-filter/tasks-3/completions").is_dir()
