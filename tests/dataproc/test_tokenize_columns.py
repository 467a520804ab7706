"""``dataproc tokenize`` on crawl/news-style Parquet: extra columns of any type, with the GPT-2 ranks file.

A news dump is not a clean two-column table: ids are integers, ``url`` rides along, ``source`` may be
a struct or a list, the text may be a categorical (dictionary) column written by pandas/polars, and
the file may hold one big row group. The reference for the tokens is ``tiktoken`` itself; for the
file, megatron-core's ``IndexedDataset``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from tests.conftest import ASSETS

RANKS = ASSETS / "gpt2.tiktoken"


def _gpt2():
    import tiktoken

    from dataproc.tokenizer import TIKTOKEN_PATTERNS, read_tiktoken_ranks

    return tiktoken.Encoding("gpt2-ref", pat_str=TIKTOKEN_PATTERNS["gpt2"], special_tokens={"<|endoftext|>": 50256},
                             mergeable_ranks=read_tiktoken_ranks(str(RANKS)))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dataproc", "tokenize", *args, "--no-progress"], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _news_table(texts: list[str]) -> pa.Table:
    n = len(texts)
    outlets = ["cnn", "bbc", "reuters"]
    return pa.table({
        "id": pa.array(range(1000, 1000 + n), pa.int64()),
        "text": pa.array(texts).dictionary_encode() if n % 2 else pa.array(texts, pa.large_string()),
        "url": [f"https://news.example/{i}" for i in range(n)],
        "source": pa.array([{"name": outlets[i % 3], "country": "uk" if i % 3 == 1 else "us"} for i in range(n)]),
        "tags": pa.array([["politics", "world"][: 1 + i % 2] for i in range(n)]),
        "published": pa.array([1_700_000_000_000 + i for i in range(n)], pa.timestamp("ms")),
    })


@pytest.mark.parametrize("odd", [False, True], ids=["large_string", "dictionary"])
def test_news_parquet_with_extra_columns(tmp_path, tiny_sections, odd):
    if not RANKS.exists():
        pytest.skip(f"needs {RANKS}")
    texts = pq.read_table(tiny_sections, columns=["text"]).column("text").to_pylist()[: 301 if odd else 300]
    texts[7] = "Breaking: markets fell <|endoftext|> sharply — “quotes”, ünïcödé, 漢字 😀\r\n"
    src = tmp_path / "news.parquet"
    pq.write_table(_news_table(texts), src, row_group_size=1 << 20)  # one big row group, as pandas writes it
    proc = _cli("--input", str(src), "--output-prefix", str(tmp_path / "out" / "news"), "--tokenizer", str(RANKS),
                "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ref = _gpt2()
    ds = IndexedDataset(str(tmp_path / "out" / "news"))
    assert len(ds) == len(texts)
    want = [[*ref.encode_ordinary(t), 50256] for t in texts]
    assert [ds[i].tolist() for i in range(len(ds))] == want
    # tokens by source: the struct column is counted under its (key-sorted) JSON rendering
    meta = json.loads((tmp_path / "out" / "news.json").read_text())
    expect: dict[str, int] = {}
    for i, toks in enumerate(want):
        key = json.dumps({"country": "uk" if i % 3 == 1 else "us", "name": ["cnn", "bbc", "reuters"][i % 3]},
                         separators=(",", ":"))
        expect[key] = expect.get(key, 0) + len(toks)  # EOD included, as in "tokens"
    assert meta["tokens_by_source"] == expect
    assert "by source:" in proc.stdout + proc.stderr


def test_quarantined_rows_keep_their_own_ids(tmp_path):
    if not RANKS.exists():
        pytest.skip(f"needs {RANKS}")
    table = pa.table({"id": pa.array([11, 12, 13], pa.int64()), "text": ["good text", None, "more text"],
                      "source": ["a", "b", "a"]})
    src = tmp_path / "n.parquet"
    pq.write_table(table, src)
    proc = _cli("--input", str(src), "--output-prefix", str(tmp_path / "o" / "x"), "--tokenizer", str(RANKS),
                "--on-bad-row", "quarantine", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    quarantined = pq.read_table(next((tmp_path / "o").rglob("quarantine*/*.parquet")))
    assert quarantined.column("id").to_pylist() == ["12"]
    assert quarantined.column("source_row").to_pylist() == [1]
    assert len(IndexedDataset(str(tmp_path / "o" / "x"))) == 2
