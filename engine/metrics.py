"""Training metrics: FLOPs and MFU, and where they go — ``RUN_DIR/metrics.jsonl``, TensorBoard, a tqdm bar.

FLOPs per token (forward + backward) follow the usual accounting (Megatron / PaLM appendix B):
``6·N + 12·L·d·S`` with ``N`` the matmul parameters (layers plus the output projection, not the input
embedding lookup), ``L`` layers, ``d`` the attention width (heads × head dim) and ``S`` the sequence
length. MFU divides achieved FLOP/s by a peak stated in the logs: ``logging.peak_tflops`` or, on a GPU in
bf16, 989 TFLOP/s (H100/H200 dense bf16); on CPU MFU is null unless a peak is configured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import torch

from engine.config import PretrainConfig, padded_vocab_size

H200_BF16_PEAK_TFLOPS = 989.0


def flops_per_token(cfg: PretrainConfig) -> float:
    m = cfg.model
    head_dim = m.hidden_size // m.num_attention_heads
    attn = m.hidden_size * head_dim * (2 * m.num_attention_heads + 2 * m.num_query_groups)
    mlp = 3 * m.hidden_size * m.ffn_hidden_size
    matmul_params = m.num_layers * (attn + mlp) + padded_vocab_size(cfg) * m.hidden_size
    return 6.0 * matmul_params + 12.0 * m.num_layers * m.num_attention_heads * head_dim * m.seq_length


def peak_tflops(cfg: PretrainConfig, precision: str) -> float | None:
    """Per-device peak used for MFU (None: MFU not reported)."""
    if cfg.logging.peak_tflops is not None:
        return cfg.logging.peak_tflops
    if torch.cuda.is_available() and precision == "bf16":
        return H200_BF16_PEAK_TFLOPS
    return None


def memory_gb() -> dict[str, float]:
    if torch.cuda.is_available():
        return {"mem_alloc_gb": torch.cuda.max_memory_allocated() / 2**30,
                "mem_reserved_gb": torch.cuda.max_memory_reserved() / 2**30}
    return {"mem_rss_gb": psutil.Process().memory_info().rss / 2**30}


def _keep_steps_up_to(path: Path, step: int) -> None:
    """On resume from ``step``: drop the records of later steps (their updates were lost with the
    process and will be redone) and any half-written last line, so the file reads as one run."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    tmp.replace(path)


# what the progress bar and the summary line show, whichever of these the stage logs (PPO has reward/kl,
# the reward model a final accuracy): record key -> (label, format)
SHOWN = {"loss": ("loss", ".4f"), "eval_loss": ("eval", ".4f"), "lr": ("lr", ".2e"),
         "tokens_per_s": ("tok/s", ".0f"), "reward": ("reward", ".3f"), "kl": ("kl", ".3f"),
         "rm_accuracy": ("acc", ".3f")}


def _shown(record: dict[str, Any]) -> dict[str, str]:
    return {name: format(record[key], fmt) for key, (name, fmt) in SHOWN.items()
            if isinstance(record.get(key), (int, float)) and not isinstance(record.get(key), bool)}


class MetricsLogger:
    """Rank 0 writes one JSON object per step to ``metrics.jsonl`` (and TensorBoard); others do nothing."""

    def __init__(self, run_dir: str | Path, enabled: bool, tensorboard: bool = True, total_steps: int = 0,
                 start_step: int = 0, progress: bool = True, header: dict[str, Any] | None = None,
                 desc: str = "train") -> None:
        self.enabled = enabled
        self._file = self._tb = self._bar = None
        self.desc, self.total_steps, self.run_dir = desc, total_steps, Path(run_dir)
        self.latest: dict[str, Any] = {}  # the last value logged under each key
        if not enabled:
            return
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        if header is not None:
            (run_dir / "run.json").write_text(json.dumps(header, indent=2, default=str))
        _keep_steps_up_to(run_dir / "metrics.jsonl", start_step)
        self._file = (run_dir / "metrics.jsonl").open("a")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                self._tb = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc=desc, dynamic_ncols=True)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.latest.update(record)
        step = record["step"]
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"train/{key}", value, step)
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix(_shown(record), refresh=True)

    def summary(self) -> str:
        """One line: the stage, the step reached and the last logged value of each ``SHOWN`` metric."""
        shown = " ".join(f"{name}={value}" for name, value in _shown(self.latest).items())
        return (f"{self.desc}: step {self.latest.get('step', 0)}/{self.total_steps} {shown} "
                f"(metrics: {self.run_dir / 'metrics.jsonl'})")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._bar is not None:
            self._bar.close()
