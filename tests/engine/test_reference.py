"""The engine's loss equals an independent plain-PyTorch Llama's at step 0 and after 3 AdamW steps."""

from __future__ import annotations

import pytest
import torch

from tests.engine.harness import TINY, data_overrides
from tests.engine.reference_model import ReferenceLlama


def test_loss_matches_plain_pytorch_reference(token_data, tmp_path):
    from engine.config import load_config
    from engine.model import unwrap
    from engine.stages.pretrain import build_run

    cfg = load_config(TINY, [*data_overrides(token_data), f"train.run_dir={tmp_path}", "train.steps=4",
                             "optim.schedule=constant", "optim.warmup_steps=0", "train.progress=false",
                             "train.eval_batches=1", "checkpoint.resume=false"], world_size=1)
    run = build_run(cfg)
    m = cfg.model
    state = {k: v.detach().clone() for k, v in unwrap(run.trainer.model[0]).state_dict().items()
             if isinstance(v, torch.Tensor)}
    ref = ReferenceLlama.from_megatron(state, m.num_layers, m.num_attention_heads, m.num_query_groups,
                                       m.norm_epsilon, m.rotary_base)
    batches = [run.trainer.task.batches.train_step(s) for s in range(4)]

    records = run.trainer.fit()

    o = cfg.optim
    decay = [p for p in ref.parameters() if p.ndim > 1]
    no_decay = [p for p in ref.parameters() if p.ndim == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    ref_losses, ref_norms = [], []
    for micro in batches:
        tokens = torch.cat([b["tokens"] for b in micro])
        labels = torch.cat([b["labels"] for b in micro])
        loss = ref.loss(tokens, labels)
        loss.backward()
        ref_norms.append(float(torch.nn.utils.clip_grad_norm_(ref.parameters(), o.clip_grad)))
        opt.step()
        opt.zero_grad()
        ref_losses.append(loss.item())

    losses = [r["loss"] for r in records]
    assert losses == pytest.approx(ref_losses, rel=2e-6), (losses, ref_losses)
    assert [r["grad_norm"] for r in records] == pytest.approx(ref_norms, rel=1e-4)
    assert losses[-1] < losses[0]
