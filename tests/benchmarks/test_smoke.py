"""The benchmark harnesses run end to end in their ``--smoke`` mode (tiny inputs), and a smoke run
writes only to a temporary folder: ``benchmarks/results/`` stays byte-identical (same paths, sizes,
modification times and hashes, ``tmp/`` included)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def _load_results_module():
    """``benchmarks/_results.py`` (the scripts import it as a sibling; benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("bench_results", ROOT / "benchmarks" / "_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime_ns, sha256) of every file and (-1, mtime_ns, "") of every folder under ``folder``."""
    if not folder.exists():
        return {}
    out: dict[str, tuple[int, int, str]] = {".": (-1, folder.stat().st_mtime_ns, "")}
    for path in sorted(folder.rglob("*")):
        st = path.stat()
        digest = "" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(folder))] = (-1 if path.is_dir() else st.st_size, st.st_mtime_ns, digest)
    return out


def test_output_dir_smoke_is_a_new_temporary_folder(tmp_path):
    output_dir = _load_results_module().output_dir
    a, b = output_dir(None, True, "x"), output_dir(None, True, "x")
    assert a != b and a.is_dir() and b.is_dir() and RESULTS not in (a, *a.parents)
    assert output_dir(tmp_path / "mine", True, "x") == tmp_path / "mine"  # an explicit folder wins
    assert output_dir(None, False, "x") == RESULTS
    a.rmdir()
    b.rmdir()


@pytest.mark.parametrize("script", ["tokenization.py", "langid.py"])
def test_benchmark_smoke_leaves_results_untouched(script, docs_sections, lid_model):
    before = snapshot(RESULTS)
    extra = ["--model", str(lid_model)] if script == "langid.py" else []
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--input", str(docs_sections),
                          *extra], capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "vs peer" in out.stdout
    m = re.search(r"wrote (.+) to (\S+) \(smoke run: a temporary folder, benchmarks/results untouched\)", out.stdout)
    assert m, out.stdout[-2000:]
    folder = Path(m.group(2))
    assert folder.is_dir() and RESULTS not in (folder, *folder.parents)
    assert any(folder.glob("*_smoke.csv"))
    shutil.rmtree(folder)
    assert snapshot(RESULTS) == before, "a --smoke run changed benchmarks/results/"
