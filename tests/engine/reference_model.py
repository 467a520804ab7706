"""A plain-PyTorch Llama (RMSNorm, RoPE, SwiGLU, GQA) written independently of the engine, as its oracle.

``ReferenceLlama.from_megatron`` loads the engine's TP=1 state dict, undoing megatron's layouts: the fused
QKV weight is interleaved per query group (``[q_g0 … , k_g0, v_g0, q_g1 …]``) and ``linear_fc1`` holds
the gate and up projections stacked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate-half RoPE on ``[b, heads, s, d]``."""
    d, s = x.shape[-1], x.shape[-2]
    inv = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.outer(torch.arange(s, dtype=torch.float32), inv)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, groups: int, ffn: int, eps: float, base: float) -> None:
        super().__init__()
        self.heads, self.groups, self.head_dim, self.base = heads, groups, hidden // heads, base
        self.attn_norm = RMSNorm(hidden, eps)
        self.wq = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.wk = nn.Linear(hidden, groups * self.head_dim, bias=False)
        self.wv = nn.Linear(hidden, groups * self.head_dim, bias=False)
        self.wo = nn.Linear(heads * self.head_dim, hidden, bias=False)
        self.mlp_norm = RMSNorm(hidden, eps)
        self.gate = nn.Linear(hidden, ffn, bias=False)
        self.up = nn.Linear(hidden, ffn, bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        h = self.attn_norm(x)
        q = self.wq(h).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.wk(h).view(b, s, self.groups, self.head_dim).transpose(1, 2)
        v = self.wv(h).view(b, s, self.groups, self.head_dim).transpose(1, 2)
        q, k = rope(q, self.base), rope(k, self.base)
        rep = self.heads // self.groups
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.wo(att.transpose(1, 2).reshape(b, s, -1))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class ReferenceLlama(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, heads: int, groups: int, ffn: int,
                 eps: float = 1e-5, base: float = 10000.0, tied: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.blocks = nn.ModuleList(Block(hidden, heads, groups, ffn, eps, base) for _ in range(layers))
        self.norm = RMSNorm(hidden, eps)
        self.head = nn.Linear(hidden, vocab, bias=False)
        if tied:
            self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self(tokens)
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())

    @classmethod
    def from_megatron(cls, sd: dict[str, torch.Tensor], layers: int, heads: int, groups: int,
                      eps: float = 1e-5, base: float = 10000.0) -> ReferenceLlama:
        emb = sd["embedding.word_embeddings.weight"]
        vocab, hidden = emb.shape
        ffn = sd["decoder.layers.0.mlp.linear_fc2.weight"].shape[1]
        tied = "output_layer.weight" not in sd
        model = cls(vocab, hidden, layers, heads, groups, ffn, eps, base, tied)
        d, per = hidden // heads, heads // groups
        with torch.no_grad():
            model.embed.weight.copy_(emb)
            for i, block in enumerate(model.blocks):
                p = f"decoder.layers.{i}."
                qkv = sd[p + "self_attention.linear_qkv.weight"].view(groups, (per + 2) * d, hidden)
                block.wq.weight.copy_(qkv[:, : per * d].reshape(-1, hidden))
                block.wk.weight.copy_(qkv[:, per * d : (per + 1) * d].reshape(-1, hidden))
                block.wv.weight.copy_(qkv[:, (per + 1) * d :].reshape(-1, hidden))
                block.wo.weight.copy_(sd[p + "self_attention.linear_proj.weight"])
                block.attn_norm.weight.copy_(sd[p + "input_layernorm.weight"])
                block.mlp_norm.weight.copy_(sd[p + "pre_mlp_layernorm.weight"])
                gate, up = sd[p + "mlp.linear_fc1.weight"].chunk(2, dim=0)
                block.gate.weight.copy_(gate)
                block.up.weight.copy_(up)
                block.down.weight.copy_(sd[p + "mlp.linear_fc2.weight"])
            model.norm.weight.copy_(sd["decoder.final_layernorm.weight"])
            if not tied:
                model.head.weight.copy_(sd["output_layer.weight"])
        return model
