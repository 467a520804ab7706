"""Batch filters (keep/drop per document over whole Arrow batches); see ``base.BatchFilter``.

:data:`FILTERS` is the one registry of filters: the name used in YAML configs and on the
command line (``--filters``) → ``"module:Class"``. :func:`filter_class` and
:func:`build_filters` resolve names through it; the classes are also importable from this
package by class name (``from dataproc.filters import GopherQuality``).

The filter classes are imported on first use, so importing the package (or ``base``) stays
cheap for commands that need no filter (the dedup stages, ``--help``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dataproc.errors import ConfigError

# name in YAML / --filters → "module:Class" (imported lazily so the CLI starts fast)
FILTERS: dict[str, str] = {
    "gopher_repetition": "dataproc.filters.gopher_repetition:GopherRepetition",
    "gopher_quality": "dataproc.filters.gopher_quality:GopherQuality",
    "c4_quality": "dataproc.filters.c4:C4Quality",
    "fineweb_quality": "dataproc.filters.fineweb:FineWebQuality",
    "language": "dataproc.filters.langid:LanguageID",
    "harmful": "dataproc.filters.harmful:HarmfulContentFilter",
}
# what `dataproc filter` runs without --filters or a config's `filters:` section
DEFAULT_FILTERS = ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality", "language")
# class name → module, derived from the registry
_WHERE = {spec.split(":")[1]: spec.split(":")[0] for spec in FILTERS.values()}
__all__ = ["DEFAULT_FILTERS", "FILTERS", "C4Quality", "FineWebQuality", "GopherQuality", "GopherRepetition", "HarmfulContentFilter",
           "LanguageID", "build_filters", "check_filter_name", "filter_class"]

if TYPE_CHECKING:
    from dataproc.filters.c4 import C4Quality
    from dataproc.filters.fineweb import FineWebQuality
    from dataproc.filters.gopher_quality import GopherQuality
    from dataproc.filters.gopher_repetition import GopherRepetition
    from dataproc.filters.harmful import HarmfulContentFilter
    from dataproc.filters.langid import LanguageID


def check_filter_name(name: str, key: str | None = None) -> None:
    """Raise :class:`ConfigError` (naming ``key``, default ``filters.<name>``) for an unknown name."""
    if name not in FILTERS:
        raise ConfigError(key or f"filters.{name}", f"unknown filter (known: {', '.join(FILTERS)})")


def filter_class(name: str) -> type:
    """The class registered under ``name`` (imported now)."""
    check_filter_name(name)
    module, cls = FILTERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_filters(specs: Mapping[str, Mapping[str, Any] | None]) -> list[Any]:
    """Instantiate ``{name: options}`` in order, checking every option name against the class."""
    out = []
    for name, options in specs.items():
        options = options or {}
        cls = filter_class(name)
        params = inspect.signature(cls).parameters
        for key in options:
            if key not in params:
                known = ", ".join(p for p in params if p not in ("self", "exclusion_writer"))
                raise ConfigError(f"filters.{name}.{key}", f"unknown option (known: {known})")
        try:
            out.append(cls(**options))
        except (TypeError, ValueError, OSError) as exc:  # e.g. a model file that does not exist
            raise ConfigError(f"filters.{name}", str(exc)) from exc
    return out


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'dataproc.filters' has no attribute {name!r}")
