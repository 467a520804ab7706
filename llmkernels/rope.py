"""Rotary position embedding in megatron-core's layout: Triton forward/backward, torch reference beside it.

Layout (``megatron.core.models.common.embeddings.rope_utils._apply_rotary_pos_emb_bshd``, non-interleaved):
``x`` is ``[seq, ..., head_dim]`` (megatron: ``[s, b, heads, d]``), ``cos``/``sin`` hold one row per
position, ``[seq, rot_dim]`` or broadcastable ``[seq, 1, 1, rot_dim]`` (megatron: ``cos(freqs)`` with
``freqs = cat(f, f)``). ``y = x·cos + rotate_half(x)·sin`` on the first ``rot_dim`` features, with
``rotate_half([x1, x2]) = [-x2, x1]``; features past ``rot_dim`` pass through. The result is a new
tensor (``x`` is never written), so q/k views of one fused qkv buffer are safe. The backward applies the
transposed rotation to ``dy``; no gradient flows to ``cos``/``sin``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llmkernels.dispatch import CompileSpec, interpreting, kernel, next_pow2, triton_dtype, use_triton


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = torch.chunk(x, 2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def _table(t: torch.Tensor, seq: int) -> torch.Tensor:
    """``cos``/``sin`` as ``[seq, rot_dim]``."""
    if t.shape[0] != seq or t[0].numel() != t.shape[-1]:
        raise ValueError(f"cos/sin shaped {tuple(t.shape)}: expected [{seq}, rot_dim] or [{seq}, 1, 1, rot_dim]")
    return t.reshape(seq, t.shape[-1])


def rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Pure-torch RoPE in fp32 (megatron's non-interleaved formula), cast back to ``x.dtype``."""
    seq, rot = x.shape[0], cos.shape[-1]
    shape = (seq,) + (1,) * (x.dim() - 2) + (rot,)
    c, s = _table(cos, seq).float().view(shape), _table(sin, seq).float().view(shape)
    xr, xp = x[..., :rot].float(), x[..., rot:]
    y = xr * c + _rotate_half(xr) * s
    return torch.cat((y.to(x.dtype), xp), dim=-1)


@kernel
def _rope_kernel(X, COS, SIN, Y, M, HALF, stride_xs, stride_xm, stride_ys, stride_ym, stride_cs,
                 BACKWARD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr):
    pos = tl.program_id(0).to(tl.int64)
    ms = (tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    hs = tl.arange(0, BLOCK_H)
    hmask = hs < HALF
    mask = (ms < M)[:, None] & hmask[None, :]
    c1 = tl.load(COS + pos * stride_cs + hs, mask=hmask, other=0.0).to(tl.float32)[None, :]
    c2 = tl.load(COS + pos * stride_cs + HALF + hs, mask=hmask, other=0.0).to(tl.float32)[None, :]
    s1 = tl.load(SIN + pos * stride_cs + hs, mask=hmask, other=0.0).to(tl.float32)[None, :]
    s2 = tl.load(SIN + pos * stride_cs + HALF + hs, mask=hmask, other=0.0).to(tl.float32)[None, :]
    xp = X + pos * stride_xs + ms[:, None] * stride_xm + hs[None, :]
    x1 = tl.load(xp, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(xp + HALF, mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:  # transpose of the rotation: [z1, z2] -> [z2, -z1] after scaling by sin
        y1 = x1 * c1 + x2 * s2
        y2 = x2 * c2 - x1 * s1
    else:
        y1 = x1 * c1 - x2 * s1
        y2 = x2 * c2 + x1 * s2
    yp = Y + pos * stride_ys + ms[:, None] * stride_ym + hs[None, :]
    tl.store(yp, y1.to(Y.dtype.element_ty), mask=mask)
    tl.store(yp + HALF, y2.to(Y.dtype.element_ty), mask=mask)


def _config(m: int, half: int, interpret: bool) -> dict[str, int]:
    block_h = next_pow2(half)
    budget = 16384 if interpret else 2048  # elements of x1 per program
    return {"BLOCK_M": max(1, min(next_pow2(m), budget // block_h)), "BLOCK_H": block_h, "num_warps": 4}


def _apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, backward: bool) -> torch.Tensor:
    seq, d = x.shape[0], x.shape[-1]
    rot = cos.shape[-1]
    x3 = x.reshape(seq, -1, d)
    if x3.stride(-1) != 1:
        x3 = x3.contiguous()
    m = x3.shape[1]
    y = torch.empty((seq, m, d), dtype=x.dtype, device=x.device)
    if rot < d:
        y[..., rot:] = x3[..., rot:]
    c, s = _table(cos, seq), _table(sin, seq)
    if c.stride(-1) != 1 or s.stride() != c.stride():
        c, s = c.contiguous(), s.contiguous()
    cfg = _config(m, rot // 2, interpreting(x))
    grid = (seq, triton.cdiv(m, cfg["BLOCK_M"]))
    _rope_kernel.on(x)[grid](x3, c, s, y, m, rot // 2, x3.stride(0), x3.stride(1), y.stride(0), y.stride(1),
                             c.stride(0), BACKWARD=backward, BLOCK_M=cfg["BLOCK_M"], BLOCK_H=cfg["BLOCK_H"],
                             num_warps=cfg["num_warps"])
    return y.view(x.shape)


class _RoPEFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(cos, sin)
        return _apply(x, cos, sin, backward=False)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        cos, sin = ctx.saved_tensors
        return _apply(dy, cos, sin, backward=True), None, None


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` ``[seq, ..., head_dim]`` with per-position ``cos``/``sin`` (see module doc)."""
    rot = cos.shape[-1]
    if rot % 2 or rot > x.shape[-1] or sin.shape != cos.shape:
        raise ValueError(f"rot_dim {rot} must be even, ≤ head_dim {x.shape[-1]}, and sin/cos shapes equal")
    if not use_triton(x) or x.numel() == 0:
        return rope_reference(x, cos, sin)
    return _RoPEFn.apply(x, cos, sin)


def compile_specs() -> list[CompileSpec]:
    """The sm_90 launches for head_dim 64 and 128, fp32 and bf16, forward and backward."""
    specs = []
    for dtype in (torch.float32, torch.bfloat16):
        t = triton_dtype(dtype)
        for d in (64, 128):
            cfg = _config(8 * 32, d // 2, interpret=False)
            for backward in (False, True):
                specs.append(CompileSpec(
                    f"rope_{'bwd' if backward else 'fwd'}_{t}_d{d}", _rope_kernel,
                    {"X": f"*{t}", "COS": "*fp32", "SIN": "*fp32", "Y": f"*{t}", "M": "i32", "HALF": "i32",
                     "stride_xs": "i32", "stride_xm": "i32", "stride_ys": "i32", "stride_ym": "i32",
                     "stride_cs": "i32", "BACKWARD": "constexpr", "BLOCK_M": "constexpr", "BLOCK_H": "constexpr"},
                    {"BACKWARD": backward, "BLOCK_M": cfg["BLOCK_M"], "BLOCK_H": cfg["BLOCK_H"]},
                    num_warps=cfg["num_warps"]))
    return specs
