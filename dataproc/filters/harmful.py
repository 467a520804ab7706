"""Harmful-content filter: URL blocklists, a whole-word text blocklist and an optional classifier.

:class:`HarmfulContentFilter` decides a whole Arrow batch at once with polars string kernels
(no per-document Python): URL hosts are matched against blocked domains and every parent
domain, URL tokens against blocked words (datatrove's ``URLFilter`` rules), the text against
a word blocklist compiled into one case-insensitive regex alternation with word boundaries,
and, optionally, a user's fastText supervised classifier scores every document.

Lists come from constructor arguments (an iterable of entries, or a path to a file with one
entry per line and ``#`` comment lines) on top of small default lists shipped in
``dataproc/assets/`` (``use_default_lists=False`` leaves them out).
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import re
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from dataproc.errors import ConfigError
from dataproc.filters.base import FilterOutput, decisions
from dataproc.filters.langid import fasttext_lines, load_fasttext, predict_label_score

logger = logging.getLogger(__name__)

ListSource = Iterable[str] | str | os.PathLike[str] | None

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
# Scheme + "//" (optional, as tldextract is lenient), then the netloc up to the path.
_NETLOC = r"^(?:(?:[a-z][a-z0-9+.\-]*:)?//)?([^/?#]*)"


def read_list(path: str | os.PathLike[str]) -> list[str]:
    """Entries of a list file: one per line, blank lines and ``#`` comment lines skipped."""
    with open(path, encoding="utf-8") as f:
        stripped = (line.strip() for line in f)
        return [line for line in stripped if line and not line.startswith("#")]


def default_list(name: str) -> list[str]:
    """A list shipped in ``dataproc/assets/`` (``harmful_domains``, ``harmful_url_words``, ``harmful_words``)."""
    with importlib.resources.as_file(importlib.resources.files("dataproc") / "assets" / f"{name}.txt") as p:
        return read_list(p)


def _entries(source: ListSource) -> list[str]:
    if source is None:
        return []
    if isinstance(source, str | os.PathLike):
        return read_list(source)
    return [s.strip() for s in source if s.strip() and not s.strip().startswith("#")]


def _normalize_word(word: str) -> str:
    # datatrove's URL-word normalisation: keep ASCII letters and digits only, lower-cased.
    return _NOT_ALNUM.sub("", word.lower())


def _normalize_domain(domain: str) -> str:
    return domain.strip().lower().removeprefix("*.").strip(".")


def _escape(text: str) -> str:
    # Backslash only ASCII punctuation: valid escapes for both Rust's regex crate and Python's re.
    return "".join("\\" + c if c in string.punctuation else c for c in text)


def _is_word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def word_pattern(words: Iterable[str], ascii_boundaries: bool = False) -> str:
    """One case-insensitive regex matching any of ``words`` as a whole word or phrase.

    A side of an entry gets a word boundary only if that side is a word character (so
    ``"c++"`` still matches before a space); whitespace inside an entry matches any
    whitespace run. Longer entries come first so that an alternation prefers ``"porno"``
    over ``"porn"`` (leftmost-first semantics, as in Python's ``re``). ``ascii_boundaries``
    uses ASCII ``\\b``, which the regex engine can run on its fast DFA.
    """
    b = r"(?-u:\b)" if ascii_boundaries else r"\b"
    parts = []
    for w in sorted(set(words), key=lambda w: (-len(w), w)):
        body = r"\s+".join(_escape(piece) for piece in w.split())
        parts.append(f"{b if _is_word_char(w[0]) else ''}{body}{b if _is_word_char(w[-1]) else ''}")
    return "(?i)(?:" + "|".join(parts) + ")"


class HarmfulContentFilter:
    """Drop documents from blocked sites or with blocklisted words (``BatchFilter``, name ``"harmful"``).

    Drop reasons, first that applies:

    - ``blocked_domain``: the URL's host, or any parent domain of it, is a blocked domain
      (``a.b.example.com`` is checked as itself, ``b.example.com``, ``example.com`` and ``com``);
    - ``blocked_url``: the whole URL is in ``urls``;
    - ``blocked_url_word``: a token of the lower-cased URL (its runs of ``[a-z0-9]``) is in
      ``url_words``; or at least ``soft_url_word_threshold`` distinct ``soft_url_words`` are
      tokens of it; or an ``url_subwords`` entry is a substring of the URL with everything
      but letters and digits removed (datatrove ``URLFilter``'s hard/soft/sub-word rules);
    - ``blocked_word``: the text holds ``words`` entries, as whole words case-insensitively,
      at least ``max_blocked_words`` times (non-overlapping occurrences; None disables);
    - ``classifier``: the fastText classifier gives ``classifier_label`` a probability of at
      least ``classifier_threshold``. Its score is written to ``score_column`` (float32; 0 for
      blank text) for every document.

    URL checks are skipped, with a warning, when the batch has no ``url_column``.
    """

    name = "harmful"
    reasons: tuple[str, ...] = (
        "blocked_domain",
        "blocked_url",
        "blocked_url_word",
        "blocked_word",
        "classifier",
    )

    def __init__(
        self,
        domains: ListSource = None,
        url_words: ListSource = None,
        words: ListSource = None,
        max_blocked_words: int | None = 1,
        urls: ListSource = None,
        url_subwords: ListSource = None,
        soft_url_words: ListSource = None,
        soft_url_word_threshold: int = 2,
        use_default_lists: bool = True,
        classifier_path: str | os.PathLike[str] | None = None,
        classifier_label: str = "__label__harmful",
        classifier_threshold: float = 0.5,
        url_column: str = "url",
        score_column: str = "harmful_score",
    ) -> None:
        def merged(source: ListSource, default: str | None) -> list[str]:
            return _entries(source) + (default_list(default) if use_default_lists and default else [])

        self.domains = frozenset(filter(None, map(_normalize_domain, merged(domains, "harmful_domains"))))
        self.urls = frozenset(_entries(urls))
        self.url_words = frozenset(filter(None, map(_normalize_word, merged(url_words, "harmful_url_words"))))
        self.url_subwords = frozenset(filter(None, map(_normalize_word, _entries(url_subwords))))
        self.soft_url_words = frozenset(filter(None, map(_normalize_word, _entries(soft_url_words))))
        self.soft_url_word_threshold = int(soft_url_word_threshold)
        self.words = frozenset(w.lower() for w in merged(words, "harmful_words"))
        if max_blocked_words is not None and max_blocked_words < 1:
            raise ValueError("max_blocked_words must be >= 1 (or None to disable the word check)")
        self.max_blocked_words = max_blocked_words
        ascii_only = all(w.isascii() for w in self.words)
        self._word_regex = word_pattern(self.words) if self.words else None
        # An all-ASCII list can run with ASCII boundaries first (see _count_words).
        self._fast_word_regex = (
            word_pattern(self.words, ascii_boundaries=True) if self.words and ascii_only else None
        )
        if classifier_path is not None and not Path(classifier_path).is_file():
            raise FileNotFoundError(f"classifier model {classifier_path} does not exist")
        self.classifier_path = str(classifier_path) if classifier_path is not None else None
        self.classifier_label = classifier_label
        self.classifier_threshold = float(classifier_threshold)
        self.url_column = url_column
        self.score_column = score_column
        self._classifier: Any = None
        self._label: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_classifier"] = None  # the pybind model does not pickle; workers load their own
        return state

    # -- URL rules ------------------------------------------------------------------------

    def _blocked_domain(self, lower: pl.Series) -> np.ndarray:
        netloc = lower.str.extract(_NETLOC, 1).fill_null("")
        # Drop userinfo (up to the last "@"), the port and the root label's trailing dot.
        host = netloc.str.replace(r"^.*@", "").str.replace(r":.*$", "").str.strip_chars_end(".")
        domains = pl.Series(sorted(self.domains), dtype=pl.String).implode()
        hit = np.zeros(len(lower), dtype=bool)
        rows = np.arange(len(lower))
        # Each round tests the hosts at their current level, then strips their first label and
        # keeps only those that still have a parent: total work is the number of labels.
        while len(rows):
            hit[rows[host.is_in(domains).to_numpy()]] = True
            has_parent = host.str.contains(".", literal=True)
            rows = rows[has_parent.to_numpy()]
            host = host.filter(has_parent).str.replace(r"^[^.]*\.", "")
        return hit

    def _url_word_hits(self, lower: pl.Series) -> np.ndarray:
        hit = np.zeros(len(lower), dtype=bool)
        if self.url_words or self.soft_url_words:
            tokens = lower.str.replace_all(r"[^a-z0-9]+", " ").str.strip_chars(" ").str.split(" ")
            if self.url_words:
                hard = pl.Series(sorted(self.url_words), dtype=pl.String).implode()
                hit |= tokens.list.eval(pl.element().is_in(hard)).list.any().fill_null(False).to_numpy()
            if self.soft_url_words:
                soft = pl.Series(sorted(self.soft_url_words), dtype=pl.String).implode()
                n_soft = tokens.list.unique().list.eval(pl.element().is_in(soft)).list.sum().fill_null(0)
                hit |= n_soft.to_numpy() >= self.soft_url_word_threshold
        if self.url_subwords:
            squeezed = lower.str.replace_all(r"[^a-z0-9]+", "")
            hit |= squeezed.str.contains_any(sorted(self.url_subwords)).fill_null(False).to_numpy()
        return hit

    # -- text rules -----------------------------------------------------------------------

    def _count_words(self, text: pl.Series) -> np.ndarray:
        """Blocklisted word occurrences per document (Unicode word boundaries)."""
        if self._fast_word_regex is None:
            return text.str.count_matches(self._word_regex).fill_null(0).to_numpy().astype(np.int64)
        # ASCII \b runs on the regex engine's DFA (~7x faster than Unicode \b here). For ASCII
        # entries its matches are a superset of the Unicode ones (it also sees a boundary next
        # to a non-ASCII letter), so only documents that matched and hold non-ASCII text are
        # recounted with Unicode boundaries.
        counts = text.str.count_matches(self._fast_word_regex).fill_null(0).to_numpy().astype(np.int64)
        candidates = np.flatnonzero(counts)
        if len(candidates):
            sub = text.gather(candidates)
            non_ascii = (sub.str.len_bytes() != sub.str.len_chars()).to_numpy()
            if non_ascii.any():
                recount = sub.filter(pl.Series(non_ascii)).str.count_matches(self._word_regex)
                counts[candidates[non_ascii]] = recount.to_numpy()
        return counts

    def _classifier_model(self) -> Any:
        if self._classifier is None:
            model = load_fasttext(self.classifier_path)
            labels = set(model.get_labels())
            for label in (self.classifier_label, "__label__" + self.classifier_label):
                if label in labels:
                    self._label = label
                    break
            else:
                raise ConfigError(
                    "filters.harmful.classifier_label",
                    f"{self.classifier_label!r} is not one of the model's labels {sorted(labels)}",
                )
            self._classifier = model
        return self._classifier

    def classifier_scores(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Classifier probability of ``classifier_label`` per document (float32; 0 for blank text)."""
        model = self._classifier_model()
        lines, blank = fasttext_lines(column)
        scores = predict_label_score(model, lines, self._label)
        scores[blank] = 0.0
        return scores

    def __call__(self, batch: pa.RecordBatch) -> FilterOutput:
        """Decide every row of ``batch`` (``text``, and ``url`` when present)."""
        n = batch.num_rows
        masks = {}
        if self.url_column in batch.schema.names:
            url_col = batch.column(self.url_column)
            urls = pl.Series(pl.from_arrow(url_col)).cast(pl.String).fill_null("")
            lower = urls.str.to_lowercase()
            if self.domains:
                masks["blocked_domain"] = self._blocked_domain(lower)
            if self.urls:
                exact = pl.Series(sorted(self.urls), dtype=pl.String).implode()
                masks["blocked_url"] = urls.is_in(exact).to_numpy()
            masks["blocked_url_word"] = self._url_word_hits(lower)
        elif self.domains or self.urls or self.url_words or self.url_subwords or self.soft_url_words:
            logger.warning("batch has no %r column: URL checks skipped", self.url_column)
        text_col = batch.column("text")
        if self._word_regex is not None and self.max_blocked_words is not None:
            text = pl.Series(pl.from_arrow(text_col)).cast(pl.String)
            masks["blocked_word"] = self._count_words(text) >= self.max_blocked_words
        scores = None
        if self.classifier_path is not None:
            scores = self.classifier_scores(text_col)
            masks["classifier"] = scores.astype(np.float64) >= self.classifier_threshold
        reason = np.full(n, -1, dtype=np.int16)
        # Walk the reasons last to first so that the first reason that applies wins.
        for code in range(len(self.reasons) - 1, -1, -1):
            mask = masks.get(self.reasons[code])
            if mask is not None:
                reason[mask] = code
        out = decisions(reason < 0, reason, self.reasons)
        if scores is not None:
            out.columns[self.score_column] = pa.array(scores, type=pa.float32())
        return out
