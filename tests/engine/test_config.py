"""Bad configs fail before any work, with a message naming the key; presets load; overrides apply."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from engine.config import ConfigError, load_config, padded_vocab_size
from tests.engine.harness import ROOT, TINY, env

OK = ["data.prefix=/nonexistent/tokens", "tokenizer.vocab_size=1024", "tokenizer.eod_id=0"]


def _load(*overrides: str, world_size: int = 1):
    return load_config(TINY, [*OK, *overrides], world_size=world_size, check_files=False)


def test_tiny_preset_and_overrides():
    cfg = _load("parallel.tp=2", "train.steps=7", "train.run_dir=/tmp/x", "optim.lr=1e-3", world_size=2)
    assert (cfg.model.num_layers, cfg.model.hidden_size, cfg.model.num_query_groups) == (4, 64, 2)
    assert (cfg.parallel.tp, cfg.train.steps, cfg.train.run_dir, cfg.optim.lr) == (2, 7, "/tmp/x", 1e-3)
    assert padded_vocab_size(cfg) % (cfg.model.make_vocab_size_divisible_by * 2) == 0


def test_h200_preset_is_about_1b():
    from engine.model import num_parameters

    cfg = load_config(ROOT / "configs/pretrain/llama_1b_h200.yaml", world_size=1, check_files=False)
    assert 1.0e9 < num_parameters(cfg) < 1.5e9
    assert cfg.train.precision == "bf16" and cfg.logging.peak_tflops == 989.0


@pytest.mark.parametrize(("overrides", "world", "key", "text"), [
    (["parallel.tpp=2"], 1, "parallel.tpp", "unknown key"),
    (["modle.num_layers=2"], 1, "modle", "unknown key"),
    (["parallel.tp=3"], 3, "parallel.tp", "parallel.tp=3 does not divide model.num_attention_heads=4"),
    (["parallel.tp=4"], 4, "parallel.tp", "does not divide model.num_query_groups=2"),
    (["train.global_batch_size=6"], 4, "train.global_batch_size", "not divisible"),
    (["data.prefix="], 1, "data.prefix", "required"),
    (["parallel.pp=3"], 3, "parallel.pp", "num_layers=4"),
    (["parallel.sp=true"], 1, "parallel.sp", "tp > 1"),
    (["train.steps=abc"], 1, "train.steps", "expected int"),
    (["optim.schedule=exp"], 1, "optim.schedule", "cosine"),
    (["parallel.tp=2"], 3, "parallel.tp", "world size 3"),
])
def test_bad_config_names_the_key(overrides, world, key, text):
    with pytest.raises(ConfigError) as err:
        _load(*overrides, world_size=world)
    assert err.value.key == key
    assert text in str(err.value)


def test_missing_data_files_name_the_prefix(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.prefix") as err:
        load_config(TINY, [f"data.prefix={tmp_path}/none"], world_size=1)
    assert "none.bin does not exist" in str(err.value)


def test_cli_fails_fast_before_any_work(tmp_path):
    """The entry point rejects a bad config in well under the time it takes to import megatron."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "engine/pretrain.py", "--config", str(TINY), "parallel.tp=3",
                           f"train.run_dir={tmp_path}/run"], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 2
    assert "ConfigError: parallel.tp: parallel.tp=3 does not divide model.num_attention_heads=4" in proc.stderr
    assert not (tmp_path / "run").exists()
    assert "megatron" not in proc.stderr
    assert elapsed < 10


def test_tokenizer_beside_data_and_vocab_check(token_data, tmp_path):
    import shutil

    cfg = load_config(TINY, [f"data.prefix={token_data.prefix}"], world_size=1)
    assert cfg.tokenizer.path == str(token_data.tokenizer) and cfg.tokenizer.vocab_size == 1024
    for ext in (".bin", ".idx"):
        shutil.copy(token_data.prefix + ext, tmp_path / f"tokens{ext}")
    with pytest.raises(ConfigError, match="holds token id") as err:
        load_config(TINY, [f"data.prefix={tmp_path}/tokens", "tokenizer.vocab_size=500", "tokenizer.eod_id=0"],
                    world_size=1)
    assert err.value.key == "tokenizer.vocab_size"
