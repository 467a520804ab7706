"""Where a benchmark writes: ``benchmarks/results/``, or a new temporary folder for ``--smoke``.

A ``--smoke`` run checks the harness, not the speed, so its CSV/JSON/PNG and scratch files go to
a fresh temporary folder (printed at the end) and never over the committed results. Every
benchmark script resolves its output folder through :func:`output_dir`, and puts its scratch
files under :func:`scratch_dir` of that folder, so a smoke run leaves ``benchmarks/results/``
byte-identical (``tests/benchmarks/test_smoke.py`` checks it).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def add_output_arg(parser: argparse.ArgumentParser, flag: str = "--output-dir") -> None:
    """The output-folder option; its default (None) means :func:`output_dir` decides."""
    parser.add_argument(flag, type=Path, default=None,
                        help="where results go (default benchmarks/results; with --smoke a new temporary "
                             "folder, never benchmarks/results)")  # fmt: skip


def output_dir(requested: Path | None, smoke: bool, name: str) -> Path:
    """``requested`` if given, else a new temporary folder when ``smoke``, else ``benchmarks/results``.

    The folder exists on return; ``name`` prefixes the temporary folder (``bench_<name>_...``).
    """
    if requested is not None:
        out = requested
    elif smoke:
        out = Path(tempfile.mkdtemp(prefix=f"bench_{name}_"))
    else:
        out = RESULTS
    out.mkdir(parents=True, exist_ok=True)
    return out


def scratch_dir(out: Path, name: str) -> Path:
    """``out/tmp/name``: intermediate files of a run (the results folder's ``tmp/`` is git-ignored)."""
    return out / "tmp" / name


def written(out: Path, smoke: bool, what: str) -> str:
    """The closing line: what was written where, and for a smoke run that it was not results/."""
    note = " (smoke run: a temporary folder, benchmarks/results untouched)" if smoke and out != RESULTS else ""
    return f"wrote {what} to {out}{note}"


def write_csv(out: Path, name: str, rows: list[dict]) -> Path:
    """``rows`` (dicts with the same keys, in order) as ``out/name``; returns the path."""
    path = out / name
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
