"""Batch builders of the post-training stages: SFT rows (packed, per-document masks) and preference pairs.

``ListBatches`` is the post-training counterpart of ``PretrainBatches``: global batch ``s`` is items
``[s·G, (s+1)·G)`` of a seeded per-epoch permutation, data-parallel rank ``r`` takes the ``r``-th slice,
so a step sees the same sequences under every TP/PP/DP layout. Every micro-batch is padded to
``model.seq_length`` and ``train.micro_batch_size`` sequences (the pipeline's fixed tensor shapes),
and moved to the model's device (``to_device``), as pretraining's forward does with its batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from engine.parallel import Layout
from engine.posttrain.records import Pair, SFTExample

Batch = dict[str, torch.Tensor]


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """The batch's tensors on ``device`` (the model's: CUDA on a GPU run); a no-op for those already there."""
    device = torch.device(device)
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def model_device(model: Sequence[torch.nn.Module] | torch.nn.Module) -> torch.device:
    """The device of the model's (first chunk's) parameters."""
    chunk = model[0] if isinstance(model, Sequence) else model
    return next(chunk.parameters()).device


def pack(examples: Sequence[SFTExample], seq_length: int) -> list[list[SFTExample]]:
    """First-fit packing in order: each row holds whole examples whose lengths sum to ≤ seq_length."""
    rows: list[list[SFTExample]] = []
    room: list[int] = []
    for ex in examples:
        for r, free in enumerate(room):
            if len(ex.ids) <= free:
                rows[r].append(ex)
                room[r] -= len(ex.ids)
                break
        else:
            rows.append([ex])
            room.append(seq_length - len(ex.ids))
    return rows


def block_causal_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """``[b, s]`` document ids → megatron's ``[b, 1, s, s]`` bool mask (True = may NOT attend)."""
    s = doc_ids.shape[1]
    causal = torch.tril(torch.ones(s, s, dtype=torch.bool))
    same = doc_ids[:, :, None] == doc_ids[:, None, :]
    return ~(same & causal)[:, None]


def collate_sft(rows: Sequence[list[SFTExample] | None], seq_length: int, micro_batch: int,
                with_mask: bool) -> Batch:
    """Rows of packed examples → tokens, labels, loss_mask, position_ids (reset per document), mask."""
    tokens = torch.zeros(micro_batch, seq_length, dtype=torch.long)
    labels = torch.zeros_like(tokens)
    loss_mask = torch.zeros(micro_batch, seq_length)
    position_ids = torch.zeros_like(tokens)
    doc_ids = torch.full_like(tokens, -1)
    for b, row in enumerate(rows):
        at = 0
        for d, ex in enumerate(row or []):
            n = len(ex.ids)
            tokens[b, at:at + n] = torch.tensor(ex.ids)
            # position i predicts token i+1 of the same document
            labels[b, at:at + n - 1] = torch.tensor(ex.ids[1:])
            loss_mask[b, at:at + n - 1] = torch.tensor(ex.mask[1:], dtype=torch.float)
            position_ids[b, at:at + n] = torch.arange(n)
            doc_ids[b, at:at + n] = d
            at += n
    batch = {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "position_ids": position_ids}
    if with_mask:
        batch["attention_mask"] = block_causal_mask(doc_ids)
    return batch


def sequences_batch(seqs: Sequence[tuple[list[int], list[int]] | None], seq_length: int, rows: int) -> Batch:
    """(prompt, answer) id lists → right-padded tokens/labels, ``loss_mask`` on the answer's targets,
    ``last`` (index of each row's final token; the reward model reads its score there)."""
    tokens = torch.zeros(rows, seq_length, dtype=torch.long)
    labels = torch.zeros_like(tokens)
    loss_mask = torch.zeros(rows, seq_length)
    last = torch.zeros(rows, dtype=torch.long)
    for b, item in enumerate(seqs):
        if item is None:
            continue
        prompt, answer = item
        ids = prompt + answer
        tokens[b, :len(ids)] = torch.tensor(ids)
        labels[b, :len(ids) - 1] = torch.tensor(ids[1:])
        loss_mask[b, len(prompt) - 1:len(ids) - 1] = 1.0
        last[b] = len(ids) - 1
    position_ids = torch.arange(seq_length).expand(rows, -1).contiguous()
    return {"tokens": tokens, "labels": labels, "loss_mask": loss_mask, "last": last,
            "position_ids": position_ids}


def collate_pairs(pairs: Sequence[Pair | None], seq_length: int, micro_batch: int) -> Batch:
    """n pairs → ``2n`` rows: the n chosen answers, then the n rejected ones; ``pair_weight`` 0 on padding."""
    n = micro_batch // 2
    seqs: list[Any] = [None] * micro_batch
    weight = torch.zeros(n)
    for i, p in enumerate(pairs):
        if p is not None:
            seqs[i], seqs[n + i] = (p.prompt, p.chosen), (p.prompt, p.rejected)
            weight[i] = 1.0
    return {**sequences_batch(seqs, seq_length, micro_batch), "pair_weight": weight}


class ListBatches:
    """Micro-batches of a fixed list of items (SFT rows or pairs), the same tokens per step in any layout."""

    def __init__(self, items: Sequence[Any], valid: Sequence[Any], collate: Callable[[Sequence[Any]], Batch],
                 seqs_per_item: int, global_batch: int, micro_batch: int, layout: Layout, seed: int,
                 prepare: Callable[[list[Batch]], list[Batch]] | None = None,
                 device: torch.device | str | None = None) -> None:
        self.items, self.valid, self.collate = list(items), list(valid), collate
        self.k = seqs_per_item
        self.global_items = global_batch // seqs_per_item
        self.micro_items = micro_batch // seqs_per_item
        self.layout, self.seed = layout, seed
        self.prepare = prepare  # e.g. DPO: attach the reference model's log-probs
        self._perms: dict[int, np.ndarray] = {}
        if device is None:
            from engine.parallel import device as default_device

            device = default_device()
        self.device = torch.device(device)

    @property
    def num_microbatches(self) -> int:
        return self.global_items // (self.micro_items * self.layout.dp)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms[epoch] = np.random.RandomState(self.seed + epoch).permutation(len(self.items))
        return self._perms[epoch]

    def _split(self, chosen: list[Any]) -> list[Batch]:
        per_rank = self.global_items // self.layout.dp
        mine = chosen[self.layout.dp_rank * per_rank:(self.layout.dp_rank + 1) * per_rank]
        out = [to_device(self.collate(mine[m * self.micro_items:(m + 1) * self.micro_items]), self.device)
               for m in range(self.num_microbatches)]
        return self.prepare(out) if self.prepare is not None else out

    def train_step(self, step: int) -> list[Batch]:
        n = len(self.items)
        idx = range(step * self.global_items, (step + 1) * self.global_items)
        return self._split([self.items[self._perm(i // n)[i % n]] for i in idx])

    def eval_rounds(self) -> list[list[Batch]]:
        """All held-out items in order, the last global batch padded with empty (zero-weight) items."""
        rounds = []
        for start in range(0, len(self.valid), self.global_items):
            chunk = self.valid[start:start + self.global_items]
            rounds.append(self._split(chunk + [None] * (self.global_items - len(chunk))))
        return rounds
