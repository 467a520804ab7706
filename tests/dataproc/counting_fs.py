"""An in-memory fsspec filesystem (``countmem://``) that counts the bytes read from it.

Not local to the code under test (its protocol is not ``file://``), so the pipeline takes its
remote paths: ranged reads through ``cat_file``/``cat_ranges`` and file objects. ``BYTES_READ``
counts every byte returned, whichever way it was read.
"""

from __future__ import annotations

from typing import Any, ClassVar

import fsspec
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

BYTES_READ = {"n": 0}


class _CountingFile(MemoryFile):
    def read(self, *args: Any) -> bytes:
        out = super().read(*args)
        BYTES_READ["n"] += len(out)
        return out

    def readinto(self, buffer: Any) -> int:
        n = super().readinto(buffer)
        BYTES_READ["n"] += n
        return n


class CountingMemoryFileSystem(MemoryFileSystem):
    protocol = "countmem"
    store: ClassVar[dict[str, Any]] = {}  # its own store, not memory://'s
    pseudo_dirs: ClassVar[list[str]] = [""]

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if path.startswith("countmem://"):
            path = path[len("countmem://"):]
        return MemoryFileSystem._strip_protocol(path)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        out = super().cat_file(path, start=start, end=end, **kwargs)
        BYTES_READ["n"] += len(out)
        return out

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        f = super()._open(path, mode=mode, **kwargs)
        if "r" in mode and isinstance(f, MemoryFile):
            counted = _CountingFile(self, f.path, f.getvalue())
            return counted
        return f


def register() -> None:
    fsspec.register_implementation("countmem", CountingMemoryFileSystem, clobber=True)


def clear() -> None:
    CountingMemoryFileSystem.store.clear()
    CountingMemoryFileSystem.pseudo_dirs[:] = [""]
