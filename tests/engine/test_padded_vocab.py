"""The pretraining loss is a softmax over the tokenizer's vocabulary, not over megatron's padded rows.

Reference: torch's ``cross_entropy`` over the first ``vocab_size`` logits of the same model, with the
padded output rows set large so that counting them would move the loss (the test can fail).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.engine.harness import TINY


@pytest.fixture(scope="module")
def char_tok(tmp_path_factory):
    from examples.sorting.task import char_tokenizer

    return char_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.json")


@pytest.mark.parametrize("fused", [False, True])
def test_loss_leaves_out_padded_vocabulary_rows(char_tok, fused: bool) -> None:
    from engine.config import load_config, padded_vocab_size
    from engine.model import build_model
    from engine.parallel import init_distributed, seed_everything, setup_model_parallel

    cfg = load_config(TINY, [f"tokenizer.path={char_tok}", "data.prefix=unused", "model.seq_length=32",
                             f"kernels.fused_linear_cross_entropy={str(fused).lower()}", "train.precision=fp32"],
                      world_size=1, check_files=False)
    init_distributed()
    setup_model_parallel(cfg.parallel)
    seed_everything(0)
    (model,) = build_model(cfg, wrap_ddp=False)
    vocab, padded = cfg.tokenizer.vocab_size, padded_vocab_size(cfg)
    assert padded > vocab
    weight = model.shared_embedding_or_output_weight() if model.share_embeddings_and_output_weights \
        else model.output_layer.weight
    with torch.no_grad():
        weight[vocab:] = 0.5  # padded rows that would take a real share of the softmax if counted
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (2, 32), generator=gen)
    labels = torch.randint(0, vocab, (2, 32), generator=gen)
    positions = torch.arange(32).expand(2, 32)
    loss = model(tokens, positions, None, labels=labels)
    logits = model(tokens, positions, None).float()  # [b, s, padded]
    assert logits.shape[-1] == padded
    ref = F.cross_entropy(logits[..., :vocab].reshape(-1, vocab), labels.reshape(-1), reduction="none").view(2, 32)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)
    over_padded = F.cross_entropy(logits.reshape(-1, padded), labels.reshape(-1), reduction="none").view(2, 32)
    assert (over_padded - ref).mean() > 0.05  # what the loss was before: the padding is not negligible here
    loss.sum().backward()
    grad = weight.main_grad if getattr(weight, "main_grad", None) is not None else weight.grad
    assert grad is not None and torch.count_nonzero(grad[:vocab]) > 0
    assert torch.count_nonzero(grad[vocab:]) == 0  # no probability mass, so no gradient, on padded ids
