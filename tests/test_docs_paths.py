"""Every repo path that the docs, the Makefile, the configs and the code's docstrings name exists.

A path is a repo-relative name under one of the project's top-level folders (``configs/...yaml``,
``benchmarks/...py``, ``engine/...``, ``examples/...``, ``dataproc/...``, ``.ci/...``), a ``docs/X.md``
(the repo has no ``docs/``: the platform notes live in ``../shared/docs/``), a ``../shared/...``
path (checked when the shared folder is present), or a module named as ``python -m pkg.mod`` or
``pkg.mod:function``. ``{a,b}`` alternatives are expanded; f-string placeholders (``{name}``),
globs and run-time outputs (``runs/...``, ``$(RUN)/...``: never under a repo folder) are skipped.
A line that names a path on purpose (an error message's example) can end with
``docs-paths: ignore``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, SHARED

TOP = ("configs", "benchmarks", "engine", "dataproc", "llmkernels", "examples", "tests", "llmstack")
PATH_RE = re.compile(r"(?<![\w./$-])(?:\./)?(?:\.\./shared/|\.ci/|docs/|(?:" + "|".join(TOP) + r")/)[\w/.{},*-]*[\w/}]")
# a path ends at its file extension (``engine/x.py-style`` names engine/x.py)
EXT_RE = re.compile(r"^(.*?\.(?:py|ya?ml|sh|json|jsonl|md|csv|png|html|parquet|tiktoken|ftz|toml|txt))(?!\w)")
MODULE_RE = re.compile(r"(?:-m |(?<![\w.]))((?:engine|dataproc|llmkernels|examples|llmstack)(?:\.\w+)+)(?=:\w)|"
                       r"-m ((?:engine|dataproc|llmkernels|examples|llmstack|benchmarks)(?:\.\w+)+)")
IGNORE = "docs-paths: ignore"
# written when the benchmark runs (on a GPU machine), not committed before then
OUTPUTS = {"benchmarks/results/gpu_train.csv"}

DOCS = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml", *sorted((ROOT / ".ci").glob("*")),
        *sorted((ROOT / "configs").rglob("*.y*ml"))]
SCRIPTS = [*sorted((ROOT / "benchmarks").glob("*.py")), *sorted((ROOT / "benchmarks").glob("*.sh"))]


def _sources() -> list[Path]:
    return [p for top in TOP if top not in ("configs", "benchmarks") for p in sorted((ROOT / top).rglob("*.py"))
            if p != Path(__file__).resolve()]


def _expand(path: str) -> list[str]:
    """``a/{x,y}.yaml`` -> ``a/x.yaml``, ``a/y.yaml`` (shell-style alternatives)."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in _expand(path[: m.start()] + alt + path[m.end():])]


def _module_exists(module: str) -> bool:
    base = ROOT / module.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def named_paths(text: str) -> list[tuple[int, str]]:
    """(line number, path) of every repo path and module the text names, as described above."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if IGNORE in line:
            continue
        for m in PATH_RE.finditer(line):
            raw = m.group(0).removeprefix("./")
            ext = EXT_RE.match(raw)
            raw = ext.group(1) if ext else raw
            if raw.startswith("docs/") and not ext:  # "docs/s" is a unit, not a folder
                continue
            for path in _expand(raw):
                if "{" in path or "}" in path or "*" in path:
                    continue
                found.append((lineno, path))
        for m in MODULE_RE.finditer(line):
            found.append((lineno, "module " + (m.group(1) or m.group(2))))
    return found


def missing_paths(files: list[Path]) -> list[str]:
    """``file:line: path`` for every named path or module that does not exist."""
    missing = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):  # moved meanwhile, or not text
            continue
        for lineno, path in named_paths(text):
            if path.startswith("module "):
                ok = _module_exists(path.removeprefix("module "))
            elif path.startswith("../shared/"):
                ok = not SHARED.exists() or (ROOT / path).exists()
            else:
                ok = path in OUTPUTS or (ROOT / path).exists()
            if not ok:
                missing.append(f"{file.relative_to(ROOT)}:{lineno}: {path}")
    return missing


def test_named_paths_parse():
    text = ("see configs/model/{tiny,llama_1b}.yaml and engine/x.py-style code, 120 docs/s, "
            "../shared/docs/PLATFORM.md, runs/x/configs/a.yaml, f'configs/{name}.yaml', python -m engine.report,\n"
            "reward.fn=engine.posttrain.sorting_task:exact  # docs-paths: ignore\n docs/PLATFORM.md. ./.ci/run")
    assert named_paths(text) == [(1, "configs/model/tiny.yaml"), (1, "configs/model/llama_1b.yaml"),
                                 (1, "engine/x.py"), (1, "../shared/docs/PLATFORM.md"), (1, "module engine.report"),
                                 (3, "docs/PLATFORM.md"), (3, ".ci/run")]  # fmt: skip


def test_readme_and_makefile_are_scanned():
    """The scan finds the configs the README and the Makefile run (so an empty scan cannot pass)."""
    for doc in ("README.md", "Makefile"):
        named = {p for _, p in named_paths((ROOT / doc).read_text(encoding="utf-8"))}
        assert {"configs/dataproc/demo.yaml", "configs/pretrain/tiny_cpu.yaml"} <= named, doc


@pytest.mark.parametrize("group", ["docs", "benchmark scripts", "code"])
def test_named_paths_exist(group):
    files = {"docs": DOCS, "benchmark scripts": SCRIPTS, "code": _sources()}[group]
    missing = missing_paths(files)
    assert not missing, f"{len(missing)} path(s) named in the {group} do not exist:\n" + "\n".join(missing)
