"""``engine.report`` on a run directory made by the real producers, checked as text and in headless Chromium.

The run directory: ``dataproc run`` (configs/dataproc/demo.yaml) on ``tiny_sections``, ``dataproc tokenize``
(GPT-2 BPE from the shared assets) on what it kept, stage metrics written through ``MetricsLogger`` in the
shapes engine/loop.py and engine/stages/ppo.py log, and kernel plots from ``benchmarks/kernels.py``'s ``plot``.
The browser part needs Debian's ``chromium`` (skipped without it unless ``REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from engine import report
from engine.metrics import MetricsLogger
from tests.conftest import ASSETS

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _log(run_dir: Path, records: list[dict], config: dict | None = None, stage: str | None = None) -> None:
    header = {"stage": stage, "config": config or {}, "world_size": 1}
    logger = MetricsLogger(run_dir, enabled=True, tensorboard=False, progress=False, header=header)
    for r in records:
        logger.log(r)
    logger.close()


def _loop_records(steps: int, start_loss: float, eval_every: int) -> list[dict]:
    """Records shaped like engine/loop.py's Trainer.fit (pretraining, SFT, reward, DPO)."""
    out = []
    for s in range(1, steps + 1):
        rec = {"step": s, "loss": start_loss * (0.6 + 0.4 * math.exp(-s / 6)), "lr": 1e-3, "grad_norm": 0.5,
               "tokens_per_s": 3000.0 + 10 * s, "step_time_s": 0.25, "tflops_per_device": 0.008, "mfu": None,
               "peak_tflops": None, "skipped": False, "consumed_samples": 8 * s, "mem_rss_gb": 0.5}
        if s % eval_every == 0:
            rec["eval_loss"] = rec["loss"] * 1.05
        out.append(rec)
    return out


def _ppo_records(iterations: int) -> list[dict]:
    """Records shaped like engine/stages/ppo.py's PPO.iterate."""
    return [{"step": 2 * i, "iteration": i, "reward": -1 + 0.2 * i, "kl": 0.1 * i, "kl_coef": 0.05 + 0.001 * i,
             "entropy": 2.0 - 0.1 * i, "response_tokens": 6.0, "logp_gap": 1e-6, "gen_time_s": 0.4,
             "score_time_s": 0.1, "policy_loss": 0.1 / i, "value_loss": 1.0 / i, "clip_frac": 0.05,
             "train_time_s": 0.3} for i in range(1, iterations + 1)]


def _kernel_plots(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_kernels", ROOT / "benchmarks" / "kernels.py")
    kernels = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports its sibling benchmarks/_results.py
        spec.loader.exec_module(kernels)
    rows = [{"kernel": "rms_norm", "shape": shape, "mode": mode, "provider": prov, "throughput": peak * f,
             "unit": "GB/s", "device": "test"}
            for shape, peak in (("4096x4096", 3000.0), ("8192x4096", 3500.0))
            for mode in ("fwd", "bwd") for prov, f in (("ours", 1.0), ("eager", 0.4))]
    assert kernels.plot(rows, out)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_sections: Path) -> Path:
    from dataproc.tokenize_stage import run_tokenize
    from dataproc.tokenizer import TokenizerSpec

    run = tmp_path_factory.mktemp("run")
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "dataproc", "run", str(ROOT / "configs/dataproc/demo.yaml"),
                           f"input={tiny_sections}", f"output={run / 'data'}", "execution.tasks=1",
                           "execution.workers=1", "--no-progress"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = sorted(str(p) for p in (run / "data" / "minhash" / "kept").glob("*.parquet"))
    gpt2 = ASSETS / "gpt2.tiktoken"
    if not gpt2.exists():
        pytest.skip(f"needs {gpt2} (the shared test assets beside the repo)")
    run_tokenize(kept, str(run / "tokens" / "docs"), TokenizerSpec(str(gpt2)), progress=False)

    _log(run / "pretrain", _loop_records(30, 9.0, 10), stage=None)
    post = run / "posttrain"
    _log(post / "sft", _loop_records(12, 3.0, 4), stage="sft")
    _log(post / "reward", [*_loop_records(10, 0.7, 100), {"step": 10, "rm_accuracy": 0.8125}], stage="reward")
    _log(post / "ppo", _ppo_records(6), config={"ppo": {"target_kl": 0.5}}, stage="ppo")
    _log(post / "dpo", _loop_records(8, 0.69, 100), stage="dpo")
    (post / "summary.json").write_text(json.dumps({"checker_score": {"base": 0.05, "sft": 0.41, "ppo": 0.52,
                                                                     "dpo": 0.47}, "rm_acc": 0.8125, "kl": 0.42}))
    (run / "bench").mkdir()
    _kernel_plots(run / "bench")
    return run


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def page(run_dir: Path) -> Path:
    assert report.main([str(run_dir), "--bench-dir", str(run_dir / "bench")]) == 0
    return run_dir / "report" / "index.html"


def _images(page: Path) -> list[str]:
    parser = _Images()
    parser.feed(page.read_text())
    return parser.srcs


def test_page_content(run_dir: Path, page: Path) -> None:
    text = page.read_text()
    book = json.loads((run_dir / "data" / "stats.json").read_text())
    for n in (book["docs_in"], book["kept"], book["removed"]):
        assert f">{n:,}</td>" in text
    for stage in book["stages"]:
        assert f"<td>{stage['stage']}</td>" in text and f">{stage['kept']:,}<" in text
        for reason, n in stage["removed"].items():
            assert f">{reason}<" in text and f">{n:,}<" in text
    minhash = json.loads((run_dir / "data" / "minhash" / "stats.json").read_text())
    assert f">{minhash['kept_bytes']:,}<" in text
    tokens = json.loads((run_dir / "tokens" / "docs.json").read_text())
    assert f">{tokens['tokens']:,}<" in text
    for name in ("pretrain", "posttrain/sft", "posttrain/reward", "posttrain/ppo", "posttrain/dpo"):
        assert f">{name}<" in text
    assert "rm_accuracy=0.8125" in text and "n/a on CPU" in text and "checker_score.ppo" in text
    assert "http://" not in text and "https://" not in text  # nothing external
    srcs = _images(page)
    for expected in ("data_funnel.png", "data_drop_reasons.png", "data_clusters.png", "tokens_by_source.png",
                     "loss_curves.png", "posttrain_reward_accuracy.png", "posttrain_ppo_reward_kl.png",
                     "throughput.png", "kernels_rms_norm.png"):
        assert expected in srcs
    for src in srcs:
        assert not Path(src).is_absolute()
        path = page.parent / src
        assert path.read_bytes()[:8] == PNG_MAGIC, src
        with Image.open(path) as im:
            im.verify()


def test_cli_errors_and_missing_parts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        report.main(["--help"])
    assert "example" in capsys.readouterr().out
    missing = tmp_path / "nope"
    assert report.main([str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "nothing to report" in capsys.readouterr().err
    only = tmp_path / "only_pretrain"
    _log(only / "pretrain", _loop_records(5, 9.0, 5))
    assert report.main([str(only), "--bench-dir", str(tmp_path / "no_bench")]) == 0
    text = (only / "report" / "index.html").read_text()
    assert "No data-pipeline book" in text and "No tokenized dataset" in text
    assert "No post-training summary" in text and "No kernel benchmark plots" in text
    assert capsys.readouterr().out.strip() == str(only / "report" / "index.html")


@pytest.fixture(scope="module")
def chromium() -> str:
    """The headless browser (requested before ``page``, so a missing browser skips before any work)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but no chromium on PATH")
        pytest.skip("needs a headless browser: install it: apt-get install chromium")
    return exe


def _browser(exe: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           f"--user-data-dir={tmp / 'profile'}", "--virtual-time-budget=5000", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_page_renders_in_chromium(chromium: str, page: Path, tmp_path: Path) -> None:
    exe = chromium
    n = len(_images(page))
    dom = _browser(exe, tmp_path, "--dump-dom", page.as_uri()).stdout
    assert "Run report" in dom
    assert f'data-images-ok="{n}/{n}"' in dom, dom[:500]
    shot = tmp_path / "shot.png"
    _browser(exe, tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", page.as_uri())
    with Image.open(shot) as im:
        assert im.size == (1280, 2400)
        gray = im.convert("L")
        lo, hi = gray.getextrema()
        dark = sum(gray.histogram()[:200])
    assert hi - lo > 100 and dark > 0.01 * 1280 * 2400  # text and charts, not a blank page
