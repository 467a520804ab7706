"""The engine reads what the data pipeline writes: a tokenized prefix's sidecar and a `dataproc blend` file."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.engine.harness import TINY


def _copy_prefix(src: str, dst) -> str:
    for ext in (".bin", ".idx", ".json"):
        shutil.copy(src + ext, f"{dst}{ext}")
    return str(dst)


def test_tokenizer_comes_from_the_prefix_sidecar(token_data, tmp_path):
    from engine.config import load_config

    meta = json.loads(Path(token_data.prefix + ".json").read_text())
    only_data = _copy_prefix(token_data.prefix, tmp_path / "copy")  # no tokenizer.json beside it
    cfg = load_config(TINY, [f"data.prefix={only_data}"], world_size=1)
    assert cfg.tokenizer.vocab_size == meta["tokenizer"]["vocab_size"] == 1024
    assert cfg.tokenizer.eod_id == meta["tokenizer"]["eod_id"]
    cfg = load_config(TINY, [f"data.prefix={only_data}", "tokenizer.vocab_size=2048"], world_size=1)
    assert cfg.tokenizer.vocab_size == 2048  # an explicit value wins


def test_blend_file_trains_through_megatron_blended_dataset(token_data, tmp_path):
    from megatron.core.datasets.blended_dataset import BlendedDataset

    from dataproc.blend import write_blend
    from engine.config import ConfigError, load_config
    from engine.stages.pretrain import build_run

    a = _copy_prefix(token_data.prefix, tmp_path / "a")
    b = _copy_prefix(token_data.prefix, tmp_path / "b")
    write_blend(str(tmp_path / "mix.json"), [(3.0, a), (1.0, b)])
    overrides = [f"data.prefix={tmp_path}/mix.json", f"train.run_dir={tmp_path}/run", "train.steps=3",
                 "train.global_batch_size=16", "optim.warmup_steps=1", "train.progress=false", "checkpoint.resume=false",
                 "checkpoint.save_at_end=false", "train.eval_batches=1", "logging.tensorboard=false"]
    cfg = load_config(TINY, overrides, world_size=1)
    assert cfg.data.prefix == [a, b] and cfg.data.weights == [0.75, 0.25]
    run = build_run(cfg)
    train = run.trainer.task.batches.train
    assert isinstance(train, BlendedDataset)
    share = np.bincount(train.dataset_index, minlength=2) / len(train)
    assert share[0] == pytest.approx(0.75, abs=0.02)
    records = run.trainer.fit()
    assert len(records) == 3 and all(math.isfinite(r["loss"]) for r in records)

    with pytest.raises(ConfigError, match=r"data\.weights"):
        load_config(TINY, [*overrides, "data.weights=[0.5,0.5]"], world_size=1)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a blend file"):
        load_config(TINY, [f"data.prefix={tmp_path}/bad.json"], world_size=1)
