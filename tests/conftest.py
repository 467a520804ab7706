"""Shared test set-up: project-local caches, and the real data in ``../shared`` (skipped if absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMSTACK_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
ASSETS = SHARED / "assets"

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("TRITON_CACHE_DIR", str(ROOT / ".cache" / "triton"))
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(ROOT / ".cache" / "inductor"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Triton builds its tl.* helpers when it is first imported, and the interpreter only works if
# TRITON_INTERPRET=1 was set by then; megatron-core (imported by many tests) imports triton. So the
# kernel tests' CPU mode is decided here, before any test module loads. With a GPU it stays unset.
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


def _shared_file(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared test data beside the repo; absent on this machine)")
    return path


@pytest.fixture(scope="session")
def docs_sections() -> Path:
    """62,744 real documentation sections (84 MB of text)."""
    return _shared_file(DATA / "docs_sections.parquet")


@pytest.fixture(scope="session")
def tiny_sections() -> Path:
    """The first 3,000 rows of ``docs_sections``."""
    return _shared_file(DATA / "tiny_sections.parquet")


@pytest.fixture(scope="session")
def lid_model() -> Path:
    """fastText language-ID model ``lid.176.ftz``."""
    return _shared_file(ASSETS / "lid.176.ftz")
