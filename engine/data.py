"""Pretraining data: ``.bin/.idx`` prefixes (and blends) through megatron-core's ``GPTDataset`` builders.

The sample order is a pure function of the data seed and the sample index, so the data position is one
number — samples consumed — and resuming is exact. Global batch ``s`` is samples ``[s·G, (s+1)·G)``;
data-parallel rank ``r`` takes the ``r``-th contiguous slice of it and splits it into micro-batches, so
the tokens of a step are the same under every TP/PP/DP layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

from engine.config import PretrainConfig, data_prefixes
from engine.parallel import Layout

Batch = dict[str, torch.Tensor]


@dataclass
class _TokenizerInfo:
    """All megatron's GPT dataset asks of a tokenizer."""

    vocab_size: int
    eod: int

    @property
    def unique_identifiers(self) -> dict[str, int]:  # part of megatron's dataset cache key
        return {"vocab_size": self.vocab_size, "eod": self.eod}


def build_datasets(cfg: PretrainConfig, train_samples: int, valid_samples: int) -> tuple[Any, Any]:
    """Train and validation ``GPTDataset`` (or ``BlendedDataset``) with at least the given sample counts."""
    prefixes = data_prefixes(cfg)
    cache = cfg.data.cache_dir or str(Path(cfg.train.run_dir) / "data_cache")
    blend = (prefixes, cfg.data.weights) if len(prefixes) > 1 or cfg.data.weights else (prefixes, None)
    config = GPTDatasetConfig(
        random_seed=cfg.data.seed,
        sequence_length=cfg.model.seq_length,
        blend=blend,
        split=cfg.data.split,
        path_to_cache=cache,
        tokenizer=_TokenizerInfo(cfg.tokenizer.vocab_size, cfg.tokenizer.eod_id),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
        mmap_bin_files=True,
    )
    train, valid, _ = BlendedMegatronDatasetBuilder(
        GPTDataset, [train_samples, valid_samples, 0], lambda: True, config
    ).build()
    if train is None:
        raise ValueError(f"data.split={cfg.data.split!r} leaves no training documents")
    return train, valid


class PretrainBatches:
    """The batch builder of pretraining: this rank's micro-batches of global step ``step``."""

    def __init__(self, cfg: PretrainConfig, layout: Layout) -> None:
        t = cfg.train
        self.global_batch = t.global_batch_size
        self.micro_batch = t.micro_batch_size
        self.layout = layout
        self.eval_batches = t.eval_batches
        self.train, self.valid = build_datasets(cfg, t.steps * t.global_batch_size,
                                                t.eval_batches * t.global_batch_size)

    @property
    def num_microbatches(self) -> int:
        return self.global_batch // (self.micro_batch * self.layout.dp)

    def _microbatches(self, dataset: Any, start: int) -> list[Batch]:
        per_rank = self.global_batch // self.layout.dp
        first = start + self.layout.dp_rank * per_rank
        out = []
        for m in range(self.num_microbatches):
            idx = range(first + m * self.micro_batch, first + (m + 1) * self.micro_batch)
            samples = [dataset[i % len(dataset)] for i in idx]
            # a BlendedDataset adds a numpy "dataset_id" to each sample: keep the tensors only
            out.append({k: torch.stack([s[k] for s in samples]) for k, v in samples[0].items()
                        if isinstance(v, torch.Tensor)})
        return out

    def train_step(self, step: int) -> list[Batch]:
        """Micro-batches of optimizer step ``step`` (0-based): samples ``[step·G, (step+1)·G)``."""
        return self._microbatches(self.train, step * self.global_batch)

    def eval_rounds(self) -> list[list[Batch]]:
        """The fixed validation batches, one list of micro-batches per global batch."""
        if self.valid is None:
            return []
        return [self._microbatches(self.valid, k * self.global_batch) for k in range(self.eval_batches)]
