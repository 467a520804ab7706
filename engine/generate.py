"""Batched sampling with a KV cache over the megatron GPT model's own modules (TP-aware, pp=1).

Prompts are left-padded to one length; pad keys are masked out, and RoPE only sees relative offsets,
so a padded row computes what it would alone. The prompt is run once (prefill), then one token per step
against cached keys/values. Greedy when ``temperature == 0``, else temperature + nucleus (top-p)
sampling from a ``torch.Generator`` (seed it identically on the TP ranks of a data-parallel rank).
A row stops after its EOS; decoding ends when every row has stopped or ``max_new_tokens`` is reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from megatron.core import tensor_parallel
from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb

from engine.model import unwrap


@dataclass
class Generation:
    responses: list[list[int]]  # generated ids per prompt, EOS included when reached
    logps: list[list[float]]  # log-prob of each generated id under the sampling distribution (before top-p)
    entropy: float  # mean entropy (nats) of the sampling distribution over generated tokens
    tokens: int  # generated tokens (all rows)


def _forward(m: torch.nn.Module, ids: torch.Tensor, start: int, freqs: torch.Tensor,
             cache: list[tuple[torch.Tensor, torch.Tensor] | None], key_valid: torch.Tensor,
             vocab_size: int) -> torch.Tensor:
    """Logits ``[b, vocab]`` after the last of ``ids`` (``[b, n]`` at positions start..start+n-1)."""
    b, n = ids.shape
    positions = torch.arange(start, start + n, device=ids.device)
    h = m.embedding(input_ids=ids, position_ids=positions.expand(b, -1))  # [n, b, hidden]
    f = freqs[start:start + n]
    total = start + n
    k_pos = torch.arange(total, device=ids.device)
    allowed = (k_pos[None, :] <= positions[:, None])[None] & key_valid[:, None, :total]
    allowed = (allowed | (k_pos[None, :] == positions[:, None])[None])[:, None]  # [b, 1, n, total]
    for i, layer in enumerate(m.decoder.layers):
        attn = layer.self_attention
        x = layer.input_layernorm(h)
        q, k, v = attn.get_query_key_value_tensors(x)[:3]
        q = apply_rotary_pos_emb(q, f, config=m.config)
        k = apply_rotary_pos_emb(k, f, config=m.config)
        past = cache[i]
        if past is not None:
            k, v = torch.cat([past[0], k]), torch.cat([past[1], v])
        cache[i] = (k, v)
        scale = getattr(attn.core_attention, "softmax_scale", None) or 1.0 / math.sqrt(q.shape[-1])
        out = F.scaled_dot_product_attention(q.permute(1, 2, 0, 3), k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3),
                                             attn_mask=allowed, scale=scale, enable_gqa=q.shape[2] != k.shape[2])
        out, _ = attn.linear_proj(out.permute(2, 0, 1, 3).reshape(n, b, -1))
        h = h + out
        out, _ = layer.mlp(layer.pre_mlp_layernorm(h))
        h = h + out
    h = m.decoder.final_layernorm(h[-1:])
    weight = m.shared_embedding_or_output_weight() if m.share_embeddings_and_output_weights else None
    logits, _ = m.output_layer(h, weight=weight)
    logits = tensor_parallel.gather_from_tensor_model_parallel_region(logits)[0].float()
    logits[:, vocab_size:] = float("-inf")  # megatron pads the vocab
    return logits


def _pick(logits: torch.Tensor, temperature: float, top_p: float,
          generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The next token, the entropy of its distribution and its log-prob (temperature applied)."""
    if temperature == 0:
        logp = torch.log_softmax(logits, -1)
        nxt = logits.argmax(-1)
        entropy = -(logp.exp() * logp.clamp_min(-1e30)).nan_to_num().sum(-1)
        return nxt, entropy, logp.gather(-1, nxt[:, None]).squeeze(-1)
    logp = torch.log_softmax(logits / temperature, -1)
    entropy = -(logp.exp() * logp.clamp_min(-1e30)).nan_to_num().sum(-1)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p  # keep the smallest set whose mass reaches top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    if generator is not None and generator.device != probs.device:
        # a CPU generator (the stages seed one) cannot drive CUDA sampling: draw on the CPU
        nxt = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(probs.device)
    else:
        nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return nxt, entropy, logp.gather(-1, nxt[:, None]).squeeze(-1)


@torch.no_grad()
def generate(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int, eos_id: int,
             vocab_size: int, temperature: float = 0.0, top_p: float = 1.0,
             generator: torch.Generator | None = None, pad_id: int = 0) -> Generation:
    """Continue each prompt (token ids) by up to ``max_new_tokens`` tokens with a KV cache."""
    m = unwrap(model)
    if not (m.pre_process and m.post_process):
        raise ValueError("generate needs the whole model on this rank (parallel.pp=1)")
    if m.config.sequence_parallel:
        raise ValueError("generate does not support sequence parallelism")
    was_training = m.training
    m.eval()
    device = next(m.parameters()).device
    b, plen = len(prompts), max(len(p) for p in prompts)
    total = plen + max_new_tokens
    ids = torch.full((b, plen), pad_id, dtype=torch.long, device=device)
    key_valid = torch.zeros(b, total, dtype=torch.bool, device=device)
    for r, p in enumerate(prompts):
        ids[r, plen - len(p):] = torch.tensor(p, device=device)
        key_valid[r, plen - len(p):] = True
    key_valid[:, plen:] = True  # generated tokens (a finished row's pads are never read)
    freqs = m.rotary_pos_emb(total)
    cache: list = [None] * len(m.decoder.layers)
    logits = _forward(m, ids, 0, freqs, cache, key_valid, vocab_size)
    out = torch.full((b, max_new_tokens), pad_id, dtype=torch.long, device=device)
    out_logp = torch.zeros(b, max_new_tokens, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    lengths = torch.zeros(b, dtype=torch.long, device=device)
    entropy_sum, count = 0.0, 0
    for t in range(max_new_tokens):
        nxt, ent, lp = _pick(logits, temperature, top_p, generator)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        live = ~done
        entropy_sum += float(ent[live].sum())
        count += int(live.sum())
        out[:, t] = nxt
        out_logp[:, t] = lp
        lengths += live.long()
        done = done | (nxt == eos_id)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        logits = _forward(m, nxt[:, None], plen + t, freqs, cache, key_valid, vocab_size)
    if was_training:
        m.train()
    responses = [out[r, :int(lengths[r])].tolist() for r in range(b)]
    logps = [out_logp[r, :int(lengths[r])].tolist() for r in range(b)]
    return Generation(responses, logps, entropy_sum / max(count, 1), count)
