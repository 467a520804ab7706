"""``dataproc tokenize`` / ``train-tokenizer`` / ``blend`` against megatron-core's own readers.

The independent references: megatron-core's ``IndexedDataset`` (and its blended GPT dataset
builder) reads what we write; HF ``tokenizers`` / ``tiktoken`` encode each document themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from dataproc.blend import make_blend, parse_pairs, write_blend
from dataproc.errors import ConfigError, DataError
from dataproc.tokenize_stage import run_tokenize
from dataproc.tokenizer import TokenizerSpec, load_tokenizer
from dataproc.train_tokenizer import train_tokenizer
from tests.conftest import ASSETS


@pytest.fixture(scope="module")
def bpe(tmp_path_factory, tiny_sections) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_tokenizer(str(tiny_sections), str(out), vocab_size=1024, progress=False)
    return out


@pytest.fixture(scope="module")
def texts(tiny_sections) -> list[str]:
    return pq.read_table(tiny_sections, columns=["text"]).column("text").to_pylist()


def _tokenize(inputs, prefix: Path, tok: Path | str, **kw):
    return run_tokenize([str(p) for p in inputs], str(prefix), TokenizerSpec(str(tok)), progress=False, **kw)


def _same_files(a: Path, b: Path) -> None:
    for suffix in (".bin", ".idx"):
        assert Path(f"{a}{suffix}").read_bytes() == Path(f"{b}{suffix}").read_bytes(), suffix


def test_bpe_round_trip_through_megatron_reader(tmp_path, tiny_sections, bpe, texts):
    from tokenizers import Tokenizer

    meta = _tokenize([tiny_sections], tmp_path / "tiny", bpe)
    ref = Tokenizer.from_file(str(bpe))
    eod = ref.token_to_id("<|endoftext|>")
    ds = IndexedDataset(str(tmp_path / "tiny"))
    assert ds.index.dtype == np.uint16 and len(ds) == len(texts) == meta["documents"]
    assert list(ds.document_indices) == list(range(len(texts) + 1))
    total = 0
    for i, text in enumerate(texts):
        got = ds[i].tolist()
        assert got == [*ref.encode(text, add_special_tokens=False).ids, eod], i
        assert ref.decode(got[:-1], skip_special_tokens=False) == text, i
        total += len(got)
    assert meta["tokens"] == total
    assert meta["tokens_by_source"] == {"django-rst": total}
    assert meta["tokenizer"]["vocab_size"] == 1024 and meta["tokenizer"]["eod_id"] == eod


def test_tiktoken_gpt2_ranks(tmp_path, texts):
    ranks = ASSETS / "gpt2.tiktoken"
    if not ranks.exists():
        pytest.skip(f"needs {ranks}")
    import tiktoken

    from dataproc.tokenizer import TIKTOKEN_PATTERNS, read_tiktoken_ranks

    docs = [*texts[:400], "literal <|endoftext|> stays text", "ünïcödé 漢字 😀\r\n\ttabs  "]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": docs}), src)
    meta = _tokenize([src], tmp_path / "g", ranks)
    ref = tiktoken.Encoding("gpt2-ref", pat_str=TIKTOKEN_PATTERNS["gpt2"], mergeable_ranks=read_tiktoken_ranks(
        str(ranks)), special_tokens={"<|endoftext|>": 50256})
    ds = IndexedDataset(str(tmp_path / "g"))
    assert meta["tokenizer"]["vocab_size"] == 50257 and meta["dtype"] == "uint16"
    for i, text in enumerate(docs):
        got = ds[i].tolist()
        assert got == [*ref.encode_ordinary(text), 50256], i
        assert ref.decode(got[:-1]) == text
    # A known GPT-2 encoding, independent of our pattern table.
    assert ref.encode_ordinary("Hello world") == [15496, 995]


def test_int32_when_vocab_does_not_fit_uint16(tmp_path, bpe, texts):
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(bpe))
    tok.add_tokens([AddedToken(f"<x{i}>", special=False) for i in range(66_000)])
    big = tmp_path / "big-vocab.json"
    tok.save(str(big))
    docs = [*texts[:50], "a <x65999> b"]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": docs}), src)
    with pytest.raises(DataError, match="not a `dataproc tokenize` sidecar"):
        _tokenize([src], tmp_path / "big-vocab", big)  # PREFIX.json would overwrite the tokenizer
    meta = _tokenize([src], tmp_path / "big", big)
    ds = IndexedDataset(str(tmp_path / "big"))
    assert meta["dtype"] == "int32" and ds.index.dtype == np.int32
    assert ds[50].tolist() == [*tok.encode(docs[50], add_special_tokens=False).ids, 0]
    assert max(ds[50].tolist()) > 65_535


@pytest.fixture(scope="module")
def split_corpus(tmp_path_factory, docs_sections) -> Path:
    """6,000 real docs in 6 files with 250-row row groups (24 units of 250 rows)."""
    t = pq.read_table(docs_sections, columns=["id", "text", "source"]).slice(0, 6_000)
    d = tmp_path_factory.mktemp("split")
    for i in range(6):
        pq.write_table(t.slice(i * 1000, 1000), d / f"part-{i}.parquet", row_group_size=250)
    return d


def test_worker_count_does_not_change_output(tmp_path, split_corpus, bpe):
    files = sorted(split_corpus.glob("*.parquet"))
    one = _tokenize(files, tmp_path / "w1", bpe, workers=1, min_unit_rows=250)
    three = _tokenize(files, tmp_path / "w3", bpe, workers=3, min_unit_rows=250)
    _same_files(tmp_path / "w1", tmp_path / "w3")
    assert one["tokens"] == three["tokens"] and one["documents"] == three["documents"] == 6_000
    assert set(one["tokens_by_source"]) == {"django-rst"}
    # Nothing of the work area is left but markers, stats and logs.
    assert not (tmp_path / "w3.tokenize" / "parts").exists()


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    return subprocess.Popen([sys.executable, "-m", "dataproc", *args, "--no-progress"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_kill_and_rerun_gives_identical_files(tmp_path, split_corpus, bpe):
    files = [str(p) for p in sorted(split_corpus.glob("*.parquet"))]
    args = ["tokenize", "--input", *files, "--tokenizer", str(bpe), "--unit-rows", "250"]
    clean = _cli([*args, "--output-prefix", str(tmp_path / "clean")])
    out, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err.decode()[-2000:]

    proc = _cli([*args, "--output-prefix", str(tmp_path / "killed")])
    units = tmp_path / "killed.tokenize" / ".units"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if units.exists() and len(list(units.glob("*.json"))) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed.idx").exists()
    done = len(list(units.glob("*.json")))
    assert 3 <= done < 24

    rerun = _cli([*args, "--output-prefix", str(tmp_path / "killed")])
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err.decode()[-2000:]
    assert "6000 docs" in out.decode()
    _same_files(tmp_path / "clean", tmp_path / "killed")


def test_bad_row_is_named_or_quarantined(tmp_path, bpe, texts):
    src = tmp_path / "bad.parquet"
    docs: list[str | None] = list(texts[:20])
    docs[7] = None
    docs[12] = ""
    pq.write_table(pa.table({"text": docs}), src)
    with pytest.raises(DataError, match=r"bad\.parquet, row 7, field 'text'"):
        _tokenize([src], tmp_path / "x", bpe)
    meta = _tokenize([src], tmp_path / "q", bpe, on_bad_row="quarantine", overwrite=True)
    assert meta["documents"] == 18 and meta["quarantined"] == 2
    q = pq.read_table(tmp_path / "q.tokenize" / "quarantine")
    assert sorted(q.column("source_row").to_pylist()) == [7, 12]
    ds = IndexedDataset(str(tmp_path / "q"))
    ref = load_tokenizer(str(bpe))
    assert ds[7].tolist()[:-1] == ref.encode_batch([texts[8]])[0]  # row 8 is document 7


def test_bad_row_in_a_worker_process_reaches_the_driver(tmp_path, bpe, texts):
    docs: list[str | None] = list(texts[:40])
    docs[33] = None
    pq.write_table(pa.table({"text": docs[:20]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": docs[20:]}), tmp_path / "b.parquet")
    # The error crosses a process boundary (pickled): it must arrive whole, not hang the pool.
    with pytest.raises(DataError, match=r"b\.parquet, row 13, field 'text': cannot tokenize this row \(null"):
        _tokenize([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "x", bpe, workers=2)


def test_bad_files_and_options(tmp_path, bpe, texts):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"body": texts[:5]}), src)
    with pytest.raises(DataError, match=r"in\.parquet.*no 'text' column"):
        _tokenize([src], tmp_path / "a", bpe)
    with pytest.raises(ConfigError, match="--tokenizer"):
        _tokenize([src], tmp_path / "a", tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="--eod"):
        run_tokenize([str(src)], str(tmp_path / "a"), TokenizerSpec(str(bpe), "<nope>"), progress=False)
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": texts[:5]}), good)
    _tokenize([good], tmp_path / "b", bpe)
    _tokenize([good], tmp_path / "b", bpe)  # same job again: a no-op
    with pytest.raises(DataError, match="other inputs or options"):
        _tokenize([good, src], tmp_path / "b", bpe)


def test_train_tokenizer_is_byte_level_and_exact_size(tmp_path, tiny_sections):
    info = train_tokenizer(str(tiny_sections), str(tmp_path / "t"), vocab_size=777, max_docs=800,
                           special_tokens=["<|endoftext|>", "<|pad|>", "<|im_start|>"], progress=False)
    assert info["docs"] == 800
    tok = load_tokenizer(str(tmp_path / "t"))
    assert tok.vocab_size == 777 and tok.eod_id == 0 and tok.byte_level
    for s in ["ünïcödé 漢字 😀", "\x00\x01 control", "  leading and trailing  ", "<|endoftext|> as text"]:
        assert tok.decode(tok.encode_batch([s])[0]) == s
    with pytest.raises(ConfigError, match="--vocab-size"):
        train_tokenizer(str(tiny_sections), str(tmp_path / "u"), vocab_size=100, progress=False)


def test_blend_reads_with_megatron_builder(tmp_path, tiny_sections, bpe):
    from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

    t = pq.read_table(tiny_sections, columns=["text"])
    pq.write_table(t.slice(0, 1500), tmp_path / "a.parquet")
    pq.write_table(t.slice(1500), tmp_path / "b.parquet")
    _tokenize([tmp_path / "a.parquet"], tmp_path / "a", bpe)
    _tokenize([tmp_path / "b.parquet"], tmp_path / "b", bpe)
    blend = write_blend(str(tmp_path / "mix.json"), parse_pairs(["3", str(tmp_path / "a"), "1", str(tmp_path / "b")]))
    assert blend["weights"] == [0.75, 0.25] and len(blend["tokens"]) == 2

    class _Tok:  # megatron reads only these ids from the tokenizer
        eod, pad, vocab_size = 0, 1, 1024
        unique_identifiers = {"class": "test-bpe-1024"}  # noqa: RUF012

    cfg = GPTDatasetConfig(random_seed=1, sequence_length=64, blend=(blend["prefixes"], blend["weights"]),
                           split="1,0,0", tokenizer=_Tok(), reset_position_ids=False, reset_attention_mask=False,
                           eod_mask_loss=False)
    train, _, _ = BlendedMegatronDatasetBuilder(GPTDataset, [2000, 0, 0], lambda: True, cfg).build()
    assert len(train) == 2000
    share = np.bincount(train.dataset_index, minlength=2) / len(train)
    assert abs(share[0] - 0.75) < 0.01, share
    a = IndexedDataset(str(tmp_path / "a"))
    sample = train[0]["tokens"].tolist()
    assert len(sample) == 64 and max(sample) < 1024
    assert len(a) == 1500

    other = tmp_path / "other.json"
    train_tokenizer(str(tmp_path / "b.parquet"), str(other), vocab_size=600, progress=False)
    _tokenize([tmp_path / "b.parquet"], tmp_path / "c", other)
    with pytest.raises(DataError, match="same tokenizer"):
        make_blend([(1.0, str(tmp_path / "a")), (1.0, str(tmp_path / "c"))])
    with pytest.raises(ConfigError, match="weight prefix"):
        parse_pairs(["0.5", "a", "b"])


def test_cli_help_and_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dataproc", "tokenize", "--help"], capture_output=True, text=True)
    assert "--output-prefix" in out.stdout and "examples:" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "dataproc", "tokenize", "--input", str(tmp_path / "nope.parquet"),
                          "--output-prefix", str(tmp_path / "x"), "--tokenizer", "tok.json"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "nope.parquet" in bad.stderr
