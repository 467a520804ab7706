"""The benchmark harnesses run end to end in their ``--smoke`` mode (tiny inputs, nothing written)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("script", ["tokenization.py"])
def test_benchmark_smoke(script, docs_sections):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--input", str(docs_sections)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "vs best peer" in out.stdout and "smoke run: results not written" in out.stdout
