"""Zero-copy access to the UTF-8 bytes of an Arrow string column, for compiled kernels.

Compiled (numba) kernels work on two numpy arrays per column: ``data`` (uint8, the
concatenated UTF-8 bytes) and ``offsets`` (int64, ``n + 1`` entries; document ``i`` is
``data[offsets[i]:offsets[i + 1]]``). No per-document Python object is created.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def text_buffers(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, offsets)`` for a string or binary Arrow column (bytes are not validated).

    Nulls read as empty strings (the pipeline quarantines nulls before any kernel runs).
    Sliced arrays are handled; offsets are rebased so that ``offsets[0] == 0``.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_string(column.type) or pa.types.is_binary(column.type):
        off_dtype = np.int32
    elif pa.types.is_large_string(column.type) or pa.types.is_large_binary(column.type):
        off_dtype = np.int64
    elif pa.types.is_string_view(column.type) or pa.types.is_binary_view(column.type):
        column = column.cast(pa.large_binary() if pa.types.is_binary_view(column.type) else pa.large_string())
        off_dtype = np.int64
    else:
        raise TypeError(f"expected a string or binary column, got {column.type}")
    n = len(column)
    _validity, off_buf, data_buf = column.buffers()
    offsets = np.frombuffer(off_buf, dtype=off_dtype, count=column.offset + n + 1)[column.offset :]
    offsets = offsets.astype(np.int64)
    if data_buf is None:
        return np.zeros(0, dtype=np.uint8), np.zeros(n + 1, dtype=np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, dtype=np.uint8)[start:end]
    if start:
        offsets = offsets - start
    if column.null_count:
        lengths = np.diff(offsets)
        valid = np.asarray(column.is_valid())
        if np.any(lengths[~valid]):
            # Arrow allows non-empty slots under nulls; rebuild so nulls are empty.
            return text_buffers(column.fill_null(pa.scalar(b"" if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type) else "", type=column.type)))
    return data, offsets
