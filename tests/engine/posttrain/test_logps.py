"""Log-probs of the trained policy = log-probs of the sampler: real vocabulary only (megatron pads the
output layer), labels shifted by one, the response mask on the answer and its EOS, KL ≥ 0 on-policy."""

from __future__ import annotations

import pytest
import torch

from tests.engine.posttrain.tiny import tiny_model

EOS = 4


def _model(char_tok, seed: int = 0):
    cfg, model = tiny_model(char_tok, seed)
    model.eval()
    return cfg, model


def _heavy_padding(model, vocab: int, seed: int) -> None:
    """Give the padded vocabulary rows of the output layer large logits (much of the padded softmax's mass)."""
    w = model.output_layer.weight
    assert w.shape[0] > vocab  # the tokenizer's 15 ids padded to 128
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w[vocab:] = torch.randn(w.shape[0] - vocab, w.shape[1], generator=g) * 0.5


def _batch(seed: int, rows: int = 4, seq: int = 12, vocab: int = 15) -> dict:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (rows, seq), generator=g)
    return {"tokens": tokens, "labels": torch.roll(tokens, -1, 1),
            "position_ids": torch.arange(seq).expand(rows, -1).contiguous()}


@torch.no_grad()
def test_logps_normalise_over_the_real_vocab_only(char_tok):
    from engine.posttrain.models import token_logps

    cfg, model = _model(char_tok)
    vocab = cfg.tokenizer.vocab_size
    _heavy_padding(model, vocab, 1)
    b = _batch(0)
    logits = model(b["tokens"], b["position_ids"], None)
    want = torch.log_softmax(logits[..., :vocab].float(), -1).gather(-1, b["labels"][..., None]).squeeze(-1)
    got = token_logps(model, b, vocab)
    assert torch.allclose(got, want, atol=1e-5)
    # megatron's own loss normalises over the padded ids: the mismatch this guards against
    padded = -model(b["tokens"], b["position_ids"], None, labels=b["labels"])
    assert float((padded - want).abs().mean()) > 0.1
    hot = torch.log_softmax(logits[..., :vocab].float() / 0.7, -1).gather(-1, b["labels"][..., None]).squeeze(-1)
    assert torch.allclose(token_logps(model, b, vocab, temperature=0.7), hot, atol=1e-5)


@torch.no_grad()
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampler_logps_equal_training_logps_at_the_response_positions(char_tok, temperature):
    from engine.generate import generate
    from engine.posttrain.batches import sequences_batch
    from engine.posttrain.models import token_logps

    cfg, model = _model(char_tok, seed=3)
    vocab = cfg.tokenizer.vocab_size
    _heavy_padding(model, vocab, 2)
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(5, vocab, (n,), generator=g).tolist() for n in (3, 7, 5, 1, 6, 4, 2, 8)]
    gen = generate(model, prompts, 10, EOS, vocab, temperature, 1.0, torch.Generator().manual_seed(7))
    assert any(r[-1] == EOS for r in gen.responses) and any(EOS not in r for r in gen.responses)
    batch = sequences_batch(list(zip(prompts, gen.responses, strict=True)), 24, len(prompts))
    logps = token_logps(model, batch, vocab, temperature)
    for row, (q, resp, lp) in enumerate(zip(prompts, gen.responses, gen.logps, strict=True)):
        mask = batch["loss_mask"][row]
        # the mask: exactly the response's tokens (EOS included), predicted from the position before each
        assert mask.sum() == len(resp) and mask[:len(q) - 1].sum() == 0 and mask[len(q) - 1 + len(resp):].sum() == 0
        assert batch["labels"][row][mask.bool()].tolist() == resp
        assert logps[row][mask.bool()].tolist() == pytest.approx(lp, abs=1e-4)


@torch.no_grad()
def test_on_policy_kl_is_zero_against_itself_and_nonnegative(char_tok):
    """A reference that differs only in padded rows is the same distribution: KL exactly 0. Against a
    really different reference, the k1 estimate on the policy's own samples is ≥ 0 and agrees with k3."""
    from engine.generate import generate
    from engine.posttrain.batches import sequences_batch
    from engine.posttrain.losses import kl_estimate
    from engine.posttrain.models import token_logps

    cfg, actor = _model(char_tok, seed=4)
    vocab = cfg.tokenizer.vocab_size
    _, ref = _model(char_tok, seed=4)
    _heavy_padding(actor, vocab, 3)
    _heavy_padding(ref, vocab, 4)  # other padded rows, the same real ones
    g = torch.Generator().manual_seed(6)
    prompts = [torch.randint(5, vocab, (4,), generator=g).tolist() for _ in range(256)]
    gen = generate(actor, prompts, 6, EOS, vocab, 1.0, 1.0, torch.Generator().manual_seed(8))
    batch = sequences_batch(list(zip(prompts, gen.responses, strict=True)), 12, len(prompts))
    mask = batch["loss_mask"]
    lp = token_logps(actor, batch, vocab)
    assert float((kl_estimate(lp, token_logps(ref, batch, vocab)) * mask).abs().max()) < 1e-5
    with torch.no_grad():
        for p in ref.decoder.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    ref_lp = token_logps(ref, batch, vocab)
    k1 = float((kl_estimate(lp, ref_lp, "k1") * mask).sum() / mask.sum())
    k3 = float((kl_estimate(lp, ref_lp, "k3") * mask).sum() / mask.sum())
    assert k1 > 0.005 and k3 > 0.005
    assert k1 == pytest.approx(k3, rel=0.3)


def test_reward_on_the_last_response_token():
    from engine.posttrain.batches import sequences_batch
    from engine.posttrain.losses import kl_penalised_rewards

    b = sequences_batch([([1, 2, 3], [7, 8, 4]), ([1, 2], [9]), None], 8, 3)
    kl = torch.full((3, 8), 0.5)
    r = kl_penalised_rewards(torch.tensor([2.0, -1.0, 5.0]), kl, b["loss_mask"], coef=0.1)
    # row 0: prompt of 3 → response targets at positions 2, 3, 4 (the EOS 4 is predicted at 4)
    assert r[0].tolist() == pytest.approx([0, 0, -0.05, -0.05, 2.0 - 0.05, 0, 0, 0])
    assert r[1].tolist() == pytest.approx([0, -1.0 - 0.05, 0, 0, 0, 0, 0, 0])
    assert r[2].abs().sum() == 0  # a padding row gets nothing
    assert int(b["last"][0]) - 1 == 4  # the reward model reads the EOS token itself
