"""Engine test fixtures: real tokens from ``tiny_sections`` as a Megatron ``.bin/.idx`` prefix.

``build_token_prefix`` is the only place that makes data: the data pipeline's tokenizer training and
``dataproc tokenize``, so the engine is tested on exactly what the pipeline hands it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.engine import harness

os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    # megatron-core warns at import about missing Apex/Transformer Engine and deprecated arguments
    for category in ("UserWarning", "DeprecationWarning", "FutureWarning"):
        config.addinivalue_line("filterwarnings", f"ignore::{category}:megatron.*")


def build_token_prefix(parquet: Path, out_dir: Path, vocab_size: int = 1024) -> tuple[str, Path]:
    """The data pipeline's own path: ``dataproc train-tokenizer`` (byte-level BPE) then ``dataproc tokenize``.

    Writes ``out_dir/tokens.bin/.idx/.json`` (EOD-terminated documents) and ``out_dir/tokenizer.json``;
    returns the prefix and the tokenizer path.
    """
    from dataproc.tokenize_stage import run_tokenize
    from dataproc.tokenizer import TokenizerSpec
    from dataproc.train_tokenizer import train_tokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    tok_path = out_dir / "tokenizer.json"
    train_tokenizer(str(parquet), str(tok_path), vocab_size=vocab_size, progress=False)
    prefix = str(out_dir / "tokens")
    run_tokenize([str(parquet)], prefix, TokenizerSpec(str(tok_path)), progress=False)
    return prefix, tok_path


@pytest.fixture(scope="session")
def token_data(tiny_sections: Path, tmp_path_factory: pytest.TempPathFactory) -> harness.TokenData:
    out = tmp_path_factory.mktemp("tokens")
    prefix, tok_path = build_token_prefix(tiny_sections, out)
    return harness.TokenData(prefix=prefix, tokenizer=tok_path, work=out)
