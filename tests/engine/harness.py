"""Helpers shared by the engine tests: the token data handle, configs for it, and torchrun launches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny_cpu.yaml"


@dataclass
class TokenData:
    prefix: str
    tokenizer: Path
    work: Path


def data_overrides(data: TokenData) -> list[str]:
    return [f"data.prefix={data.prefix}", f"tokenizer.path={data.tokenizer}",
            "tokenizer.vocab_size=null", "tokenizer.eod_id=null"]


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    e.pop("WORLD_SIZE", None)
    return e


def torchrun(nproc: int, script: str | Path, args: list[str], timeout: int = 600,
             check: bool = True) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node nproc SCRIPT args`` from the repo root; ``script`` is a file path, or a
    module name (``engine.stages.pretrain``) run as ``torchrun -m``."""
    target = ["-m", script] if isinstance(script, str) and not script.endswith(".py") and "/" not in script \
        else [str(script)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-port", str(_free_port()), *target, *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-8000:]}")
    return proc


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
