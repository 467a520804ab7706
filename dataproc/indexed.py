"""Moved to :mod:`dataproc.io.indexed` (Megatron ``.bin/.idx`` reader/writer); kept importable."""

from dataproc.io.indexed import *  # noqa: F403
from dataproc.io.indexed import CODE_DTYPES, DTYPE_CODES, INDEX_HEADER, INDEX_VERSION, UINT16_LIMIT  # noqa: F401
