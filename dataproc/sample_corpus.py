"""Build a real sample corpus from PyPI: Django's documentation across several releases.

``pip download --no-binary :all: django==X`` fetches the source distributions (PyPI is the only
network the project uses); their ``docs/**/*.txt`` reStructuredText files are split into
sections at headings. The same pages recur, edited, across releases and release notes repeat
verbatim, so the corpus has real exact and near duplicates for the dedup stages to find.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+<>:._])\1{2,}\s*$")
MIN_SECTION_CHARS = 200


def split_sections(text: str) -> list[str]:
    """Split reStructuredText at headings (a title line followed by an underline)."""
    lines = text.splitlines()
    starts = [0]
    for i in range(1, len(lines)):
        title = lines[i - 1].strip()
        if title and _UNDERLINE.match(lines[i]) and len(lines[i].rstrip()) >= len(title) and i - 1 > starts[-1]:
            # An overline above the title belongs to the same heading.
            start = i - 2 if i >= 2 and _UNDERLINE.match(lines[i - 2]) else i - 1
            if start > starts[-1]:
                starts.append(start)
    starts.append(len(lines))
    sections = ["\n".join(lines[a:b]).strip() for a, b in itertools.pairwise(starts)]
    return [s for s in sections if len(s) >= MIN_SECTION_CHARS]


def _download(version: str, cache: Path) -> Path:
    found = sorted(cache.glob(f"[Dd]jango-{version}.tar.gz"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
           "-d", str(cache), f"django=={version}"]
    subprocess.run(cmd, check=True)
    found = sorted(cache.glob(f"[Dd]jango-{version}.tar.gz"))
    if not found:
        raise FileNotFoundError(f"pip did not produce Django-{version}.tar.gz in {cache}")
    return found[0]


def _sections_of(sdist: Path, version: str) -> list[dict[str, Any]]:
    rows = []
    short = ".".join(version.split(".")[:2])
    with tarfile.open(sdist) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and "/docs/" in m.name
                          and m.name.endswith(".txt")), key=lambda m: m.name)
        for m in members:
            rel = m.name.split("/docs/", 1)[1]
            text = tar.extractfile(m).read().decode("utf-8", errors="replace")
            for k, section in enumerate(split_sections(text)):
                key = f"django-rst|{version}|{rel}|{k}"
                rows.append({"id": xxhash.xxh64_hexdigest(key.encode()) + f"-{k}", "text": section,
                             "url": f"https://docs.djangoproject.com/en/{short}/{rel[:-4]}/#s{k}",
                             "source": "django-rst", "version": version, "path": rel})
    return rows


def build_sample_corpus(output: str, versions: list[str], cache_dir: str = ".cache/sdists") -> dict[str, Any]:
    """Download (cached) and split; write one Parquet file; return a summary."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(versions)) as pool:
        sdists = list(pool.map(lambda v: _download(v, cache), versions))
    rows: list[dict[str, Any]] = []
    for sdist, version in zip(sdists, versions, strict=True):
        rows.extend(_sections_of(sdist, version))
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out, compression="zstd")
    return {"output": str(out), "docs": len(rows), "versions": versions,
            "bytes": sum(len(r["text"].encode()) for r in rows)}
