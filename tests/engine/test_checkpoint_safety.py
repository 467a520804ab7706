"""Checkpoint files are read without running code from them: RNG states as tensors, ``.metadata`` restricted.

References: torch's own ``FileSystemReader.read_metadata`` on a checkpoint written by
``torch.distributed.checkpoint.save``, and the RNG streams of ``random``/``numpy``/``torch`` themselves.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemReader

from engine.checkpoint_safety import (
    UnsafeCheckpointError,
    check_checkpoint,
    load_rng,
    read_metadata,
    rng_from_tensors,
    rng_to_tensors,
)


class Payload:
    """Unpickling this creates the folder ``target``: the code execution a loader must refuse."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return os.mkdir, (self.target,)


def _real_checkpoint(folder: Path) -> Path:
    state = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.zeros(5, dtype=torch.bfloat16),
             "step": torch.tensor(7)}
    dcp.save(state, checkpoint_id=str(folder), no_dist=True)
    return folder


def test_metadata_of_a_real_checkpoint_reads_like_torch(tmp_path: Path) -> None:
    ckpt = _real_checkpoint(tmp_path / "ckpt")
    mine, torchs = read_metadata(ckpt), FileSystemReader(str(ckpt)).read_metadata()
    assert mine.state_dict_metadata == torchs.state_dict_metadata
    assert mine.storage_data == torchs.storage_data
    assert mine.planner_data == torchs.planner_data
    assert mine.storage_meta.checkpoint_id == torchs.storage_meta.checkpoint_id  # torch's reader adds a load_id
    check_checkpoint(ckpt)


@pytest.mark.parametrize("entry", ["check", "checkpoint.load", "load_backbone", "convert"])
def test_metadata_with_a_callable_is_refused_before_it_runs(tmp_path: Path, entry: str) -> None:
    ckpt = _real_checkpoint(tmp_path / "ckpt")
    target = tmp_path / "ran"
    real = pickle.loads((ckpt / ".metadata").read_bytes())
    real.planner_data = {"x": Payload(target)}
    (ckpt / ".metadata").write_bytes(pickle.dumps(real))
    with pytest.raises(UnsafeCheckpointError, match=r"\.metadata: refers to (posix|os)\.mkdir"):
        if entry == "check":
            check_checkpoint(ckpt)
        elif entry == "checkpoint.load":
            from engine import checkpoint

            checkpoint.load(ckpt, [])
        elif entry == "load_backbone":
            from engine.posttrain.models import load_backbone

            load_backbone(ckpt, [])
        else:
            from engine.convert import read_checkpoint

            read_checkpoint(ckpt, None)
    assert not target.exists()


def test_metadata_that_is_no_pickle_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / ".metadata").write_bytes(b"not a pickle")
    with pytest.raises(UnsafeCheckpointError, match="not a readable checkpoint metadata file"):
        check_checkpoint(tmp_path)


def test_rng_states_round_trip_through_a_weights_only_file(tmp_path: Path) -> None:
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    random.random(), np.random.normal(), torch.rand(2)  # a cached Gaussian in NumPy's state
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
             "tracker": {"model-parallel-rng": torch.get_rng_state()}}
    expected = (random.random(), np.random.random(4), np.random.normal(), torch.rand(3))
    torch.save(rng_to_tensors(state), tmp_path / "rank_0.pt")
    restored = load_rng(tmp_path / "rank_0.pt")
    random.setstate(restored["python"])
    np.random.set_state(restored["numpy"])
    torch.set_rng_state(restored["torch"])
    got = (random.random(), np.random.random(4), np.random.normal(), torch.rand(3))
    assert got[0] == expected[0] and got[2] == expected[2]
    np.testing.assert_array_equal(got[1], expected[1])
    assert torch.equal(got[3], expected[3])
    assert torch.equal(restored["tracker"]["model-parallel-rng"], state["tracker"]["model-parallel-rng"])
    assert rng_from_tensors(rng_to_tensors(state))["python"] == state["python"]


def test_rng_file_with_a_callable_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "ran"
    torch.save({"python": Payload(target), "numpy": None, "torch": torch.zeros(1)}, tmp_path / "rank_0.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"rank_0\.pt: holds more than tensors and numbers"):
        load_rng(tmp_path / "rank_0.pt")
    assert not target.exists()
    # an older checkpoint's RNG file (the state tuples, NumPy's array included) still loads, weights-only
    random.seed(8)
    np.random.seed(9)
    torch.save({"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
               tmp_path / "old.pt")
    expected = (random.random(), np.random.random())
    restored = load_rng(tmp_path / "old.pt")
    random.setstate(restored["python"])
    np.random.set_state(restored["numpy"])
    assert (random.random(), np.random.random()) == expected
