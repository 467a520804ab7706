"""SwiGLU ``silu(gate) * up``: Triton forward/backward over 2-D tiles with strides, torch reference beside it.

The kernels take row strides for every operand, so :func:`swiglu_glu` works on megatron's concatenated
``[gate | up]`` fc1 output (two views of one tensor, no copy) and writes its gradient straight into one
``[dgate | dup]`` tensor. Math is in fp32; results are stored in the input dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from llmkernels.dispatch import CompileSpec, interpreting, kernel, next_pow2, triton_dtype, use_triton


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Pure-torch ``silu(gate) * up`` in fp32, cast back to ``gate.dtype``."""
    return (F.silu(gate.float()) * up.float()).to(gate.dtype)


@kernel
def _swiglu_fwd(G, U, Y, M, N, stride_g, stride_u, stride_y, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    g = tl.load(G + rows[:, None] * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + rows[:, None] * stride_u + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(Y + rows[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)


@kernel
def _swiglu_bwd(G, U, DY, DG, DU, M, N, stride_g, stride_u, stride_dy, stride_dg, stride_du,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = (tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = (rows < M)[:, None] & (cols < N)[None, :]
    g = tl.load(G + rows[:, None] * stride_g + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + rows[:, None] * stride_u + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + rows[:, None] * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    s = tl.sigmoid(g)
    silu = g * s
    dg = dy * u * s * (1.0 + g * (1.0 - s))
    tl.store(DG + rows[:, None] * stride_dg + cols[None, :], dg.to(DG.dtype.element_ty), mask=mask)
    tl.store(DU + rows[:, None] * stride_du + cols[None, :], (dy * silu).to(DU.dtype.element_ty), mask=mask)


def _config(m: int, n: int, interpret: bool) -> dict[str, int]:
    if interpret:
        block_n = min(next_pow2(n), 4096)
        return {"BLOCK_M": max(1, min(next_pow2(m), 16384 // block_n)), "BLOCK_N": block_n, "num_warps": 4}
    block_n = min(next_pow2(n), 1024)
    return {"BLOCK_M": max(1, 4096 // block_n), "BLOCK_N": block_n, "num_warps": 8}


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a 2-D ``[rows, last]`` view with unit inner stride (a copy only when unavoidable)."""
    t2 = t.reshape(-1, t.shape[-1])
    return t2 if t2.stride(-1) == 1 else t2.contiguous()


def _launch_fwd(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    m, n = g.shape
    y = torch.empty((m, n), dtype=g.dtype, device=g.device)
    cfg = _config(m, n, interpreting(g))
    grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(n, cfg["BLOCK_N"]))
    _swiglu_fwd.on(g)[grid](g, u, y, m, n, g.stride(0), u.stride(0), y.stride(0),
                            BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], num_warps=cfg["num_warps"])
    return y


def _launch_bwd(g: torch.Tensor, u: torch.Tensor, dy: torch.Tensor, dg: torch.Tensor, du: torch.Tensor) -> None:
    m, n = g.shape
    cfg = _config(m, n, interpreting(g))
    grid = (triton.cdiv(m, cfg["BLOCK_M"]), triton.cdiv(n, cfg["BLOCK_N"]))
    _swiglu_bwd.on(g)[grid](g, u, dy, dg, du, m, n, g.stride(0), u.stride(0), dy.stride(0), dg.stride(0),
                            du.stride(0), BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"],
                            num_warps=cfg["num_warps"])


class _SwiGLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        g, u = _rows(gate), _rows(up)
        ctx.save_for_backward(g, u)
        ctx.shape = gate.shape
        return _launch_fwd(g, u).view(gate.shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        g, u = ctx.saved_tensors
        dg, du = torch.empty_like(g), torch.empty_like(u)
        _launch_bwd(g, u, _rows(dy), dg, du)
        return dg.view(ctx.shape), du.view(ctx.shape)


class _SwiGLUConcatFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x2 = _rows(x)
        n = x2.shape[1] // 2
        ctx.save_for_backward(x2)
        ctx.shape = x.shape
        return _launch_fwd(x2[:, :n], x2[:, n:]).view(*x.shape[:-1], n)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (x2,) = ctx.saved_tensors
        n = x2.shape[1] // 2
        dx = torch.empty_like(x2)
        _launch_bwd(x2[:, :n], x2[:, n:], _rows(dy), dx[:, :n], dx[:, n:])
        return dx.view(ctx.shape)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` elementwise (same shapes, any leading dims)."""
    if gate.shape != up.shape:
        raise ValueError(f"gate {tuple(gate.shape)} and up {tuple(up.shape)} differ")
    if not use_triton(gate) or gate.numel() == 0:
        return swiglu_reference(gate, up)
    return _SwiGLUFn.apply(gate, up)


def swiglu_glu(x: torch.Tensor) -> torch.Tensor:
    """SwiGLU of megatron's fused fc1 output ``x = [gate | up]`` (last dim ``2n``) → ``[..., n]``."""
    if x.shape[-1] % 2:
        raise ValueError(f"last dimension {x.shape[-1]} is not even")
    if not use_triton(x) or x.numel() == 0:
        gate, up = torch.chunk(x, 2, dim=-1)
        return swiglu_reference(gate, up)
    return _SwiGLUConcatFn.apply(x)


def compile_specs() -> list[CompileSpec]:
    """The sm_90 launches for fp32 and bf16 (the config depends only on the width, ≥1024 here)."""
    specs = []
    for dtype in (torch.float32, torch.bfloat16):
        t = triton_dtype(dtype)
        cfg = _config(8192, 14336, interpret=False)
        const = {"BLOCK_M": cfg["BLOCK_M"], "BLOCK_N": cfg["BLOCK_N"]}
        specs.append(CompileSpec(
            f"swiglu_fwd_{t}", _swiglu_fwd,
            {"G": f"*{t}", "U": f"*{t}", "Y": f"*{t}", "M": "i32", "N": "i32", "stride_g": "i32",
             "stride_u": "i32", "stride_y": "i32", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"},
            const, num_warps=cfg["num_warps"]))
        specs.append(CompileSpec(
            f"swiglu_bwd_{t}", _swiglu_bwd,
            {"G": f"*{t}", "U": f"*{t}", "DY": f"*{t}", "DG": f"*{t}", "DU": f"*{t}", "M": "i32", "N": "i32",
             "stride_g": "i32", "stride_u": "i32", "stride_dy": "i32", "stride_dg": "i32", "stride_du": "i32",
             "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"},
            const, num_warps=cfg["num_warps"]))
    return specs
