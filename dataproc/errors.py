"""Errors that point at the offending file, row and field."""

from __future__ import annotations

from llmstack.config import ConfigError as _ConfigError


class DataError(ValueError):
    """Bad input: names the file (and row/field where it applies) and what to do about it."""

    def __init__(self, path: str, message: str, row: int | None = None, field: str | None = None) -> None:
        where = path if row is None else f"{path}, row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.field, self.message = path, row, field, message

    def __reduce__(self):  # picklable, so a worker process can hand it back to the driver
        return type(self), (self.path, self.message, self.row, self.field)


# One ConfigError for dataproc and engine: a config key ("minhash.threshold: ...") or an option
# ("option '--tasks': ...").
ConfigError = _ConfigError
