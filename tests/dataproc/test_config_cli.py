"""Config validation names the bad key; every CLI command has --help; the CLI runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dataproc.cli import build_parser, main
from dataproc.config import load_config
from dataproc.errors import ConfigError

BASE = {"input": "x.parquet", "output": "out"}


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["minhash.bandz=3"], "minhash.bandz"),
        (["execution.tasks=0"], "execution.tasks"),
        (["execution.executor=kubernetes"], "execution.executor"),
        (["minhash.bands=20"], "minhash.bands"),
        (["minhash.bands=null"], "minhash.bands"),
        (["read.batch_size=many"], "read.batch_size"),
        (["filters={nope: {}}"], "filters.nope"),
        (["colour=blue"], "colour"),
    ],
)
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides, base=BASE)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")  # the one ConfigError format of llmstack.config


def test_missing_input_and_output_are_named():
    with pytest.raises(ConfigError, match=r"^input: "):
        load_config(None, [], base={"output": "o"})
    with pytest.raises(ConfigError, match=r"^output: "):
        load_config(None, [], base={"input": "i"})


def test_default_config_loads_and_overrides_apply():
    cfg = load_config("configs/dataproc/default.yaml", ["input=a.parquet", "output=o", "minhash.threshold=0.8",
                                                        "minhash.bands=null", "minhash.rows=null"])
    assert cfg.minhash.threshold == 0.8 and cfg.minhash.bands is None
    assert list(cfg.filters) == ["gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality",
                                 "language", "harmful"]


@pytest.mark.parametrize("path", ["configs/dataproc/default.yaml", "configs/dataproc/demo.yaml"])
def test_shipped_configs_keep_the_documented_dedup_defaults(path):
    """The configs users start from (and `make demo`) get the default verification, not a weaker one,
    and default.yaml documents every verify mode."""
    from dataproc.config import MinHashConfig
    from llmstack.config import field_default

    cfg = load_config(path, ["input=a.parquet", "output=o"])
    assert cfg.minhash.verify == field_default(MinHashConfig, "verify") == "hybrid"
    assert cfg.minhash.warn_component_size == cfg.exact_dedup.warn_component_size == 1000
    if path.endswith("default.yaml"):
        text = Path(path).read_text()
        assert all(f"# {mode}:" in text for mode in ("hybrid", "estimate", "exact"))


def test_dedup_help_names_the_default_bands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dedup", "--help"])
    text = capsys.readouterr().out
    assert "18x7 bands" in text and "14x8" not in text and "--warn-component-size" in text


def test_unknown_filter_option_is_named():
    from dataproc.filters import build_filters

    cfg = load_config(None, ["filters={gopher_quality: {min_doc_wordz: 3}}"], base=BASE)
    with pytest.raises(ConfigError) as info:
        build_filters(cfg.filters)
    assert info.value.key == "filters.gopher_quality.min_doc_wordz"


@pytest.mark.parametrize("command", ["filter", "dedup", "run", "sample-corpus"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: dataproc " + command in out


def test_console_script_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "dataproc", "--help"], capture_output=True, text=True, check=True)
    assert "filter" in out.stdout and "dedup" in out.stdout and "run" in out.stdout


def test_cli_error_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"nope")
    assert main(["dedup", "--input", str(bad), "--output", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bad.parquet" in err and "not a readable Parquet file" in err


def test_cli_dedup_writes_kept_and_removed_with_duplicate_of(tmp_path, tiny_sections):
    out = tmp_path / "o"
    assert main(["dedup", "--input", str(tiny_sections), "--output", str(out), "--no-progress"]) == 0
    kept = pq.read_table(out / "kept")
    removed = pq.read_table(out / "removed")
    assert kept.num_rows + removed.num_rows == 3000
    assert "duplicate_of" in removed.column_names and removed.num_rows > 0
    assert set(removed.column("duplicate_of").to_pylist()) <= set(kept.column("id").to_pylist())
