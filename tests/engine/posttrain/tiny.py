"""The tiny policy the generation and log-prob tests share: world of one, large init (peaked logits)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.engine.harness import TINY


def tiny_model(char_tok: Path, seed: int = 0) -> tuple[Any, Any]:
    """(config, unwrapped GPTModel) of the tiny preset on ``char_tok``, seeded with ``seed``."""
    from engine.config import load_config
    from engine.model import build_model
    from engine.parallel import init_distributed, seed_everything, setup_model_parallel

    cfg = load_config(TINY, [f"tokenizer.path={char_tok}", "data.prefix=unused", "model.seq_length=32",
                             "model.init_std=0.2"], world_size=1, check_files=False)
    init_distributed()
    setup_model_parallel(cfg.parallel)
    seed_everything(seed)
    return cfg, build_model(cfg, wrap_ddp=False)[0]
