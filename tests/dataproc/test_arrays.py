"""Ranged reads of work arrays (``dataproc.io.arrays``), locally and on an fsspec filesystem,
against plain numpy indexing of the same arrays."""

from __future__ import annotations

import numpy as np
import pytest

from dataproc.io.arrays import (
    NpyFile,
    read_blob,
    read_partition,
    read_ranges,
    save_blob,
    save_partitioned,
)
from dataproc.io.storage import Folder


@pytest.fixture(params=["local", "memory"])
def folder(request, tmp_path):
    if request.param == "local":
        yield Folder(str(tmp_path / "arrays"))
        return
    import fsspec

    url = f"memory://arrays-test-{tmp_path.name}"
    yield Folder(url)
    fsspec.filesystem("memory").rm(url.split("://")[1], recursive=True)


def test_rows_and_slices_equal_numpy_indexing(folder) -> None:
    rng = np.random.default_rng(0)
    arrays = {"a.npy": rng.integers(0, 2**32, (5000, 128), dtype=np.uint32),
              "b.npy": rng.integers(-(2**62), 2**62, 7000, dtype=np.int64),
              "c.npy": rng.integers(0, 9, (3000, 3), dtype=np.int64)}
    for name, arr in arrays.items():
        folder.save_npy(name, arr)
        f = NpyFile(folder, name)
        assert f.shape == arr.shape and f.dtype == arr.dtype
        idx = rng.integers(0, len(arr), 400)  # unsorted, with repeats
        assert np.array_equal(f.rows(idx), arr[idx])
        assert np.array_equal(f.slice(123, 2345), arr[123:2345])
        assert np.array_equal(f.slice(10, 10), arr[10:10]) and f.rows([]).shape == (0, *arr.shape[1:])
        with pytest.raises(IndexError):
            f.rows([len(arr)])


def test_partitioned_arrays_read_back_by_partition(folder) -> None:
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 100, (10_000, 2))
    parts = rng.integers(0, 13, len(rows))
    save_partitioned(folder, "p.npy", rows, parts, 16)  # partitions 13..15 stay empty
    for p in range(16):
        assert np.array_equal(read_partition(folder, "p.npy", p), rows[parts == p])  # stable: input order kept


def test_blobs_and_merged_ranges(folder) -> None:
    rng = np.random.default_rng(2)
    strings = [bytes(rng.integers(0, 256, rng.integers(0, 40), dtype=np.uint8)) for _ in range(3000)]
    save_blob(folder, "ids/x", strings)
    idx = rng.integers(0, len(strings), 500)
    assert read_blob(folder, "ids/x", idx) == [strings[i] for i in idx]
    data = b"".join(strings)
    folder.write_bytes("raw.bin", data)
    starts = np.sort(rng.integers(0, len(data) - 50, 300))
    ends = starts + rng.integers(0, 50, 300)
    got = read_ranges(folder, folder.path("raw.bin"), starts, ends)
    assert got == [data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
