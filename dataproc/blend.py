"""Blend several tokenized datasets into one training mixture, described by a small JSON file.

``dataproc blend --output mix.json 0.7 data/web 0.3 data/code`` takes Megatron-style
``weight prefix`` pairs, checks that every prefix is a finished ``dataproc tokenize`` output
made with the same tokenizer, and writes::

    {"format": "megatron-blend", "prefixes": [...absolute...], "weights": [...normalised...],
     "tokens": [...], "documents": [...], "tokenizer": {...}, "share_of_tokens": [...]}

The engine turns ``prefixes``/``weights`` into megatron-core's ``blend`` argument of
``BlendedMegatronDatasetBuilder``; ``share_of_tokens`` against ``weights`` shows which sources
are up- or down-sampled.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from dataproc.errors import ConfigError, DataError
from dataproc.tokenize_stage import sidecar
from llmstack.formats import TOKENIZER_KEYS, blend_document


def parse_pairs(items: Sequence[str]) -> list[tuple[float, str]]:
    """``["0.7", "a", "0.3", "b"]`` → ``[(0.7, "a"), (0.3, "b")]``; a lone prefix gets weight 1."""
    if len(items) == 1:
        return [(1.0, items[0])]
    if len(items) % 2:
        raise ConfigError("blend", f"expected 'weight prefix' pairs, got {len(items)} items: {' '.join(items)}")
    pairs = []
    for w, p in zip(items[::2], items[1::2], strict=True):
        try:
            weight = float(w)
        except ValueError as exc:
            raise ConfigError("blend", f"{w!r} is not a weight (pairs are 'weight prefix')") from exc
        if not weight > 0:
            raise ConfigError("blend", f"weight of {p} must be > 0, got {w}")
        pairs.append((weight, p))
    return pairs


def make_blend(pairs: Sequence[tuple[float, str]]) -> dict[str, Any]:
    """The blend description of ``(weight, prefix)`` pairs (see the module docstring)."""
    if not pairs:
        raise ConfigError("blend", "no datasets given")
    metas = []
    for _, prefix in pairs:
        for suffix in (".bin", ".idx"):
            if not os.path.exists(prefix + suffix):
                raise DataError(prefix + suffix, "no such file: run `dataproc tokenize` for this prefix first")
        metas.append(sidecar(prefix))
    ref = {k: metas[0]["tokenizer"].get(k) for k in TOKENIZER_KEYS}
    for (_, prefix), meta in zip(pairs, metas, strict=True):
        got = {k: meta["tokenizer"].get(k) for k in TOKENIZER_KEYS}
        if got != ref:
            raise DataError(f"{prefix}.json", f"tokenized with {got}, but {pairs[0][1]} with {ref}: "
                            "every dataset of a blend needs the same tokenizer")
    total_t = sum(m["tokens"] for m in metas) or 1
    return blend_document([p for _, p in pairs], [w for w, _ in pairs],
                          tokens=[m["tokens"] for m in metas], documents=[m["documents"] for m in metas],
                          share_of_tokens=[m["tokens"] / total_t for m in metas], tokenizer=metas[0]["tokenizer"])


def write_blend(path: str, pairs: Sequence[tuple[float, str]]) -> dict[str, Any]:
    blend = make_blend(pairs)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(blend, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return {**blend, "output": path}
