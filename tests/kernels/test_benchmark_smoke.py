"""``benchmarks/kernels.py --smoke`` runs every kernel and peer once on CPU and writes its CSV elsewhere."""

from __future__ import annotations

import csv
import subprocess
import sys

from tests.conftest import ROOT

KERNELS = {"rms_norm", "swiglu", "rope", "fused_linear_ce", "flash_attention"}


def test_kernel_benchmark_smoke(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels.py"), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "smoke run: CSV written to" in out.stdout
    rows = list(csv.DictReader((tmp_path / "kernels_smoke.csv").open()))
    ours = [r for r in rows if r["provider"] == "ours"]
    assert {r["kernel"] for r in ours} == KERNELS
    assert all(r["ms"] and float(r["ms"]) > 0 and not r["error"] for r in ours)
    assert {r["mode"] for r in rows if r["kernel"] == "flash_attention"} == {"fwd", "bwd", "fwd+bwd"}
    assert any(r["provider"] == "compile_chunked" and r["ms"] for r in rows)
    assert (tmp_path / "kernels_smoke_targets.json").exists()
