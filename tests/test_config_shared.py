"""One config system for dataproc and engine (``llmstack.config``): one ConfigError, typed keys, overrides,
unknown keys and keys a stage does not read, every shipped config loading."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmstack.config import ConfigError, build, field_default, load_tree, reject_unread

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Inner:
    rate: float = 0.1
    names: list[str] = field(default_factory=list)


@dataclass
class Outer:
    steps: int = 3
    inner: Inner = field(default_factory=Inner)


def test_one_config_error_for_both_packages():
    import dataproc.config
    import dataproc.errors
    import engine.config
    import engine.posttrain.config

    assert dataproc.config.ConfigError is engine.config.ConfigError is ConfigError
    assert dataproc.errors.ConfigError is engine.posttrain.config.ConfigError is ConfigError
    assert str(ConfigError("a.b", "bad")) == "a.b: bad" and str(ConfigError("--tasks", "bad")) == "option '--tasks': bad"


def test_types_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 5\ninner:\n  rate: 1e-3\n")
    cfg = build(Outer, load_tree(path, ["inner.names=[a, b]", "steps=7"]))
    assert cfg == Outer(steps=7, inner=Inner(rate=1e-3, names=["a", "b"]))  # YAML 1.1 '1e-3' is a float here
    with pytest.raises(ConfigError, match=r"^inner\.rate: expected float, got str 'fast'"):
        build(Outer, load_tree(path, ["inner.rate=fast"]))
    with pytest.raises(ConfigError, match=r"inner\.names\[1\]: expected str"):
        build(Outer, load_tree(None, ["inner.names=[a, 3]"]))
    with pytest.raises(ConfigError, match=r"^inner\.speed: unknown key \(known: names, rate\)"):
        build(Outer, load_tree(None, ["inner.speed=1"]))
    with pytest.raises(ConfigError, match="overrides look like"):
        load_tree(None, ["steps"])
    assert field_default(Outer, "steps") == 3 and field_default(Inner, "names") == []


def test_keys_a_stage_does_not_read_are_rejected():
    reject_unread({"checkpoint": {"resume": False}}, "ppo", {"checkpoint.resume": False})  # what it does anyway
    with pytest.raises(ConfigError, match=r"checkpoint\.resume: not read by the ppo stage"):
        reject_unread({"checkpoint": {"resume": True}}, "ppo", {"checkpoint.resume": False})


def test_posttrain_stages_reject_what_they_ignore(tmp_path):
    from engine.posttrain.config import load_posttrain_config
    from examples.sorting.task import char_tokenizer

    char_tok = char_tokenizer(tmp_path / "tokenizer.json")
    rows = tmp_path / "p.jsonl"
    rows.write_text('{"prompt": "31"}\n')
    base = [f"tokenizer.path={char_tok}", f"dataset.train={rows}", "checkpoint.load=x", "ppo.reward_model=x"]
    cfg_dir = ROOT / "configs/posttrain"
    with pytest.raises(ConfigError, match=r"checkpoint\.resume: not read by the ppo stage"):
        load_posttrain_config("ppo", cfg_dir / "ppo_sort.yaml", [*base, "checkpoint.resume=true"], world_size=1)
    with pytest.raises(ConfigError, match=r"train\.eval_every: not read by the grpo stage"):
        load_posttrain_config("grpo", cfg_dir / "grpo_sort.yaml", [*base, "train.eval_every=10"], world_size=1)
    with pytest.raises(ConfigError, match=r"data\.prefix: not read by the sft stage"):
        load_posttrain_config("sft", cfg_dir / "sft_sort.yaml", [*base, "data.prefix=tokens/x"], world_size=1)
    with pytest.raises(ConfigError, match=r"ppo\.log_every: unknown key"):  # was accepted and never read
        load_posttrain_config("ppo", cfg_dir / "ppo_sort.yaml", [*base, "ppo.log_every=5"], world_size=1)


def test_every_shipped_config_parses():
    import engine.config
    import engine.posttrain.config as pc
    from dataproc.config import PipelineConfig

    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        part = path.relative_to(ROOT / "configs").parts[0]
        tree = engine.config.config_tree(path, None) if part in ("pretrain", "posttrain") else load_tree(path)
        if part == "dataproc":
            build(PipelineConfig, tree)
        elif part == "pretrain":
            build(engine.config.PretrainConfig, tree)
        elif part == "posttrain" and path.stem.split("_")[0] in pc.UNREAD:  # principles files are not stages
            stage = path.stem.split("_")[0]
            reject_unread(tree, stage, pc.UNREAD.get(stage, {}))
            build(pc.PosttrainConfig, tree)
