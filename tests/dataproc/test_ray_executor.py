"""`dataproc run` on a real two-node Ray cluster writes byte-identical output to the local executor.

Two Ray nodes (a head and a second raylet, one CPU each) run on this machine in their own temp
dir; the CLI runs in a subprocess and joins them through ``RAY_ADDRESS``, so tasks run in Ray
worker processes, not in local mode. With one CPU per node and two workers, concurrent tasks
land on both nodes: each unit marker records the raylet it ran under, and the test checks that
units of the run ran on both.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import DATA as SHARED_DATA

pytest.importorskip("ray", reason="ray is not installed (pip install ray)")

DATA = SHARED_DATA / "docs_sections.parquet"
ROWS, FILES = 1500, 3
CONFIG = """\
read: {batch_size: 500}
execution: {executor: local, tasks: 3, workers: 1}
filters:
  gopher_quality: {min_doc_words: 20, max_non_alpha_words_ratio: 0.4}
  language: {languages: [en], min_score: 0.5}
exact_dedup: {enabled: true}
minhash: {enabled: true, num_perm: 128, ngram: 5, bands: 18, rows: 7, threshold: 0.8}
"""
# Fields that measure time, not data: they differ between any two runs, on any executor.
TIMINGS = {"time_s", "wall_s", "verify_s", "ran_on"}


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)  # the local run must not find a cluster
    return {**env, **extra}


def _pids_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text.encode() in (proc / "cmdline").read_bytes() or any(
                        text in os.readlink(fd) for fd in (proc / "fd").iterdir()):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def _with_descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them (Ray's agents rename themselves, e.g. ``ray::DashboardAgent``,
    so only their parentage ties them to our cluster)."""
    parent: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
    found, frontier = set(pids), set(pids)
    while frontier:
        frontier = {c for c, pp in parent.items() if pp in frontier and c not in found}
        found |= frontier
    return sorted(found)


def _stop(pids: list[int], grace_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL what is still there after ``grace_s`` (gcs_server ignores SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while sig == signal.SIGTERM and time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ray_bin = Path(sys.executable).with_name("ray")
    # Ray's socket paths must stay short (< 108 chars), so not under pytest's deep tmp dirs.
    temp_dir = Path(f"/tmp/ray-dp-{os.getpid()}")
    common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats"]
    # On 2 busy cores a worker can take more than Ray's default 60 s to register; Ray then kills it and
    # the run stalls. Give registration (and the GCS health checks) room, as a loaded CI machine needs.
    slow_ok = {"RAY_worker_register_timeout_seconds": "600", "RAY_health_check_timeout_ms": "60000",
               "RAY_health_check_failure_threshold": "20"}
    head = subprocess.run([str(ray_bin), "start", "--head", "--port=0", "--include-dashboard=false",
                           f"--temp-dir={temp_dir}", *common], capture_output=True, text=True,
                          env=_env(**slow_ok), timeout=120)
    if head.returncode != 0:
        pytest.fail(f"ray start --head failed:\n{head.stdout}\n{head.stderr}")
    match = re.search(r"ray start --address='([^']+)'", head.stdout + head.stderr)
    assert match, head.stdout + head.stderr
    address = match.group(1)
    try:
        # a second node: its own raylet (and object store) joining the head, as on another machine
        node = subprocess.run([str(ray_bin), "start", f"--address={address}", *common], capture_output=True,
                              text=True, env=_env(**slow_ok), timeout=120)
        if node.returncode != 0:
            pytest.fail(f"ray start --address failed:\n{node.stdout}\n{node.stderr}")
        yield address
    finally:
        # `ray stop` would stop every Ray cluster of this user: stop only ours, found by its temp dir.
        _stop(_with_descendants(_pids_mentioning(str(temp_dir))))
        shutil.rmtree(temp_dir, ignore_errors=True)


def _inputs(root: Path) -> Path:
    table = pq.read_table(DATA).slice(0, ROWS)
    folder = root / "in"
    folder.mkdir()
    per = ROWS // FILES
    for i in range(FILES):
        pq.write_table(table.slice(i * per, per), folder / f"part-{i}.parquet")
    return folder


def _run(config: Path, output: Path, *overrides: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "dataproc", "run", str(config), f"output={output}", *overrides, "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=480)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"


def _files(root: Path) -> dict[str, Path]:
    """Every output file but datatrove's logs (they hold timestamps and hostnames)."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and "logs" not in p.relative_to(root).parts}


def _without_timings(x: object) -> object:
    if isinstance(x, dict):
        return {k: _without_timings(v) for k, v in x.items() if k not in TIMINGS}
    if isinstance(x, list):
        return [_without_timings(v) for v in x]
    return x


@pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} not found")
def test_ray_cluster_matches_local_executor(tmp_path: Path, ray_address: str) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"input: {_inputs(tmp_path)}\n" + CONFIG)
    local, ray = tmp_path / "local", tmp_path / "ray"
    _run(config, local, env=_env())
    _run(config, ray, "execution.executor=ray", "execution.workers=2", env=_env(RAY_ADDRESS=ray_address))

    # The Ray run really went through datatrove's Ray executor (its completion markers).
    assert list((ray / "logs").glob("*-filter/tasks-3/completions/*")), "no Ray task completions"
    a, b = _files(local), _files(ray)
    assert a.keys() == b.keys()
    parquet = [n for n in a if n.endswith(".parquet")]
    assert any(n.startswith("minhash/kept/") for n in parquet)
    assert any("/removed/" in n for n in parquet)
    # Parquet outputs and intermediate work files (signatures, buckets): byte for byte.
    for name in a:
        if not name.endswith(".json"):
            assert a[name].read_bytes() == b[name].read_bytes(), name
    # stats.json and unit markers: equal but for timings; paths name the output directory.
    for name in (n for n in a if n.endswith(".json")):
        left = json.loads(a[name].read_text().replace(str(local), "OUT"))
        right = json.loads(b[name].read_text().replace(str(ray), "OUT"))
        assert _without_timings(left) == _without_timings(right), name
    stats = json.loads((ray / "stats.json").read_text())
    assert stats["balanced"] and stats["docs_in"] == ROWS
    # units ran under both raylets (nodes), and none in the driver
    raylets = {json.loads(p.read_text())["ran_on"].get("ray_raylet_pid") for p in ray.rglob(".units/*.json")
               if p.stem != "summary"}
    assert None not in raylets and len(raylets) == 2, raylets
