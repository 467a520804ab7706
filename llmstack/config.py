"""The one config system of every stage: YAML → typed dataclasses, dotted ``key=value`` overrides, one
``ConfigError`` that names the key.

``load_tree`` reads a YAML file and applies overrides (values parsed as YAML); ``build`` turns the tree
into a dataclass, checking every value against its type hint and rejecting keys the dataclass lacks;
``reject_unread`` rejects keys a stage inherits but never reads (set in YAML or an override to anything
but what the stage does anyway); ``field_default`` gives a dataclass field's default, for command-line
defaults that must not repeat literals.
"""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """Bad configuration: the message starts with the key (or the command-line option, ``-…``)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"option {key!r}: {message}" if key.startswith("-") else f"{key}: {message}")
        self.key, self.message = key, message

    def __reduce__(self):  # picklable: a worker process can hand it back to the driver
        return type(self), (self.key, self.message)


def check_type(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked (and where lossless, converted) against the type hint; ConfigError names ``key``."""
    origin = get_origin(hint)
    if value is None and hint is not Any and type(None) not in get_args(hint) and hint is not type(None):
        raise ConfigError(key, "required: got null")
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if origin in (Union, types.UnionType):
        for arg in get_args(hint):
            try:
                return check_type(key, value, arg)
            except ConfigError:
                continue
        raise ConfigError(key, f"{value!r} is not a valid {hint}")
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(key, f"expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list, got {value!r}")
        (item,) = get_args(hint) or (Any,)
        return [check_type(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(key, f"expected {hint.__name__}, got {value!r}")
    if isinstance(hint, type) and not isinstance(value, hint):
        raise ConfigError(key, f"expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def build(cls: type, data: Any, prefix: str = "") -> Any:
    """The dataclass ``cls`` from a mapping; nested dataclass fields from nested mappings.

    An unknown key is an error naming it (with the known ones); so is a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or "<root>", f"expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(full, f"unknown key (known: {', '.join(sorted(names))})")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build(hint, value or {}, f"{full}.")
        else:
            kwargs[key] = check_type(full, value, hint)
    return cls(**kwargs)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """``tree["a"]["b"] = value`` for ``dotted = "a.b"``, creating the mappings on the way."""
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, f"{p!r} is not a mapping")
    node[parts[-1]] = value


def read_yaml(path: str | Path, key: str = "<config file>") -> dict[str, Any]:
    """A YAML file holding a mapping (empty file: ``{}``); errors name ``key`` and the file."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(key, f"file {path} not found") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(key, f"{path} is not valid YAML{where}: {what}") from exc
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(key, f"{path} must hold a mapping")
    return loaded or {}


def apply_overrides(tree: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """``section.key=value`` items set into ``tree`` (values parsed as YAML: ``true``, ``3``, ``[1, 2]``)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(item, "overrides look like section.key=value")
        key, raw = item.split("=", 1)
        set_dotted(tree, key.strip(), yaml.safe_load(raw))
    return tree


def load_tree(path: str | Path | None, overrides: list[str] | None = None,
              base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base``, then the YAML file's keys (optional), then the overrides: the raw config of a stage."""
    tree: dict[str, Any] = dict(base or {})
    if path is not None:
        tree.update(read_yaml(path))
    return apply_overrides(tree, overrides)


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass field ``name`` (for command-line defaults that follow the config)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


_ABSENT = object()


def dotted_get(tree: Any, dotted: str) -> Any:
    """``tree["a"]["b"]`` (mappings) or ``tree.a.b`` (dataclasses) for ``"a.b"``; a sentinel when absent."""
    node = tree
    for part in dotted.split("."):
        if isinstance(node, dict):
            node = node.get(part, _ABSENT)
        else:
            node = getattr(node, part, _ABSENT)
        if node is _ABSENT:
            return _ABSENT
    return node


def reject_unread(tree: dict[str, Any], stage: str, unread: dict[str, Any]) -> None:
    """A key the ``stage`` never reads, given in the raw ``tree`` with a value other than ``unread[key]``
    (what the stage does anyway), is a ConfigError: silently ignoring it would mislead."""
    for dotted, allowed in unread.items():
        got = dotted_get(tree, dotted)
        if got is not _ABSENT and got != allowed:
            raise ConfigError(dotted, f"not read by the {stage} stage (it does as if {dotted}={allowed!r}); "
                              "remove it")
