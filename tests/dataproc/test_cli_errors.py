"""The CLI on bad input: one ``error:`` line naming the file, field or option, never a traceback
(unless ``--verbose``); datatrove's logging hidden unless ``--verbose``."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataproc.cli import main


@pytest.fixture
def shards(tmp_path):
    """Two small Parquet shards (with a duplicated document)."""
    d = tmp_path / "in"
    d.mkdir()
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]
    for part in range(2):
        texts = [" ".join(words[(i + part) % 12:] + words[: (i + part) % 12]) * 3 for i in range(40)]
        texts[0] = "the same document in both shards " * 5
        pq.write_table(pa.table({"id": [f"{part}-{i}" for i in range(40)], "text": texts}),
                       d / f"part-{part}.parquet")
    return d


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_text_column_names_file_field_and_columns(shards, tmp_path, capsys):
    rc = main(["dedup", "--input", str(shards), "--output", str(tmp_path / "o"), "--text-column", "body",
               "--no-progress"])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert line.startswith("dataproc dedup: error: ") and "part-0.parquet" in line
    assert "field 'body'" in line and "columns: id, text" in line


@pytest.mark.parametrize("args, option", [
    (["--bands", "50", "--rows", "7"], "--bands"),
    (["--threshold", "1.5"], "--threshold"),
    (["--num-perm", "0"], "--num-perm"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_bad_option_values_name_the_option(shards, tmp_path, capsys, args, option):
    rc = main(["dedup", "--input", str(shards), "--output", str(tmp_path / "o"), "--no-progress", *args])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2 and f"option {option!r}" in line
    assert not (tmp_path / "o").exists()  # checked before any work


def test_bad_yaml_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [a\noutput: b\n")
    assert main(["run", str(bad)]) == 2  # a config error (llmstack.config names the file)
    line = _one_error_line(capsys.readouterr().err)
    assert "dataproc run: error: " in line and "bad.yaml is not valid YAML" in line


def test_plain_value_error_has_no_traceback_unless_verbose(shards, tmp_path, capsys, monkeypatch):
    import dataproc.pipeline

    def boom(*args, **kwargs):
        raise ValueError("row 7 of something is bad")

    monkeypatch.setattr(dataproc.pipeline, "run_dedup", boom)
    argv = ["dedup", "--input", str(shards), "--output", str(tmp_path / "o"), "--no-progress"]
    assert main(argv) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line == "dataproc dedup: error: row 7 of something is bad (--verbose: traceback)"
    assert main(["--verbose", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("dataproc dedup: error: row 7 of something is bad")


def test_programming_errors_still_raise(monkeypatch, shards, tmp_path):
    import dataproc.pipeline

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug, not bad input")

    monkeypatch.setattr(dataproc.pipeline, "run_dedup", bug)
    with pytest.raises(ZeroDivisionError):
        main(["dedup", "--input", str(shards), "--output", str(tmp_path / "o"), "--no-progress"])


def test_datatrove_logging_only_with_verbose(shards, tmp_path):
    """A 2-task local run (datatrove's process pool): one summary line; banners only with --verbose."""
    def run(*flags: str) -> subprocess.CompletedProcess:
        out = tmp_path / f"o{len(flags)}"
        cmd = [sys.executable, "-m", "dataproc", *flags, "dedup", "--input", str(shards), "--output", str(out),
               "--method", "exact", "--tasks", "2", "--workers", "2", "--no-progress"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    quiet = run()
    assert quiet.stdout.splitlines() == [quiet.stdout.strip()] and quiet.stdout.startswith("exact-dedup: 80 docs in")
    assert "PIPELINE" not in quiet.stderr and "INFO" not in quiet.stderr, quiet.stderr[-2000:]
    assert (tmp_path / "o0" / "logs").is_dir()  # task log files are still written
    verbose = run("--verbose")
    assert "PIPELINE" in verbose.stderr and "INFO" in verbose.stderr
