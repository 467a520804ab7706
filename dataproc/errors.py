"""Errors that point at the offending file, row and field."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input: names the file (and row/field where it applies) and what to do about it."""

    def __init__(self, path: str, message: str, row: int | None = None, field: str | None = None) -> None:
        where = path if row is None else f"{path}, row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.field = path, row, field


class ConfigError(ValueError):
    """Bad configuration: names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key {key!r}: {message}")
        self.key = key
