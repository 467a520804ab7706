"""Batch filters (keep/drop per document over whole Arrow batches); see ``base.BatchFilter``.

The filter classes are imported on first use, so importing the package (or ``base``) stays
cheap for commands that need no filter (the dedup stages, ``--help``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "C4Quality": "c4",
    "FineWebQuality": "fineweb",
    "GopherQuality": "gopher",
    "GopherRepetition": "gopher",
    "HarmfulContentFilter": "harmful",
    "LanguageID": "langid",
}
__all__ = ["C4Quality", "FineWebQuality", "GopherQuality", "GopherRepetition", "HarmfulContentFilter", "LanguageID"]

if TYPE_CHECKING:
    from dataproc.filters.c4 import C4Quality
    from dataproc.filters.fineweb import FineWebQuality
    from dataproc.filters.gopher import GopherQuality, GopherRepetition
    from dataproc.filters.harmful import HarmfulContentFilter
    from dataproc.filters.langid import LanguageID


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"dataproc.filters.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'dataproc.filters' has no attribute {name!r}")
