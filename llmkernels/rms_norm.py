"""RMSNorm over the last dimension: Triton forward/backward (fp32 accumulation), torch reference beside it.

``y = x / sqrt(mean(x², -1) + eps) * weight``, computed in fp32 and stored in ``x``'s dtype. The forward
keeps the per-row ``1/rms`` (fp32) for the backward; the backward writes ``dx`` and per-program partial
sums of ``dweight`` (fp32) that torch adds up, so no atomics are needed.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from llmkernels.dispatch import CompileSpec, interpreting, kernel, next_pow2, triton_dtype, use_triton

MAX_BLOCK_N = 65_536  # widest row one program holds; wider rows use the reference


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Pure-torch RMSNorm in fp32, cast back to ``x.dtype``."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return y.to(x.dtype)


@kernel
def _rms_fwd(X, W, Y, RSTD, M, N, stride_x, stride_y, eps,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    rmask = rows < M
    cmask = cols < N
    mask = rmask[:, None] & cmask[None, :]
    rows64 = rows.to(tl.int64)
    x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / N + eps)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    y = x * rstd[:, None] * w[None, :]
    tl.store(Y + rows64[:, None] * stride_y + cols[None, :], y.to(Y.dtype.element_ty), mask=mask)
    tl.store(RSTD + rows, rstd, mask=rmask)


@kernel
def _rms_bwd(X, W, DY, RSTD, DX, DW, M, N, stride_x, stride_dy, stride_dx, rows_per_program,
             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_N)
    cmask = cols < N
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_N], dtype=tl.float32)
    start = pid * rows_per_program
    end = tl.minimum(start + rows_per_program, M)
    for r in range(start, end, BLOCK_M):
        rows = r + tl.arange(0, BLOCK_M)
        rmask = rows < end
        mask = rmask[:, None] & cmask[None, :]
        rows64 = rows.to(tl.int64)
        x = tl.load(X + rows64[:, None] * stride_x + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + rows64[:, None] * stride_dy + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + rows, mask=rmask, other=0.0)
        xhat = x * rstd[:, None]
        wdy = dy * w[None, :]
        c = tl.sum(xhat * wdy, axis=1) / N
        dx = (wdy - xhat * c[:, None]) * rstd[:, None]
        tl.store(DX + rows64[:, None] * stride_dx + cols[None, :], dx.to(DX.dtype.element_ty), mask=mask)
        dw += tl.sum(dy * xhat, axis=0)
    tl.store(DW + pid * N + cols, dw, mask=cmask)


def _fwd_config(n: int, interpret: bool) -> dict[str, int]:
    block_n = next_pow2(n)
    if interpret:  # the interpreter pays per program, not per element: few fat programs
        return {"BLOCK_M": max(1, min(64, 16384 // block_n)), "BLOCK_N": block_n, "num_warps": 4}
    # ~4K elements per program: one row for LLM hidden sizes, several for narrow rows.
    block_m = max(1, min(16, 4096 // block_n))
    num_warps = 4 if block_n * block_m <= 4096 else (8 if block_n <= 8192 else 16)
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "num_warps": num_warps}


def _bwd_config(m: int, n: int, interpret: bool, sms: int) -> dict[str, int]:
    block_n = next_pow2(n)
    if interpret:
        block_m = max(1, min(64, 16384 // block_n))
        return {"BLOCK_M": block_m, "BLOCK_N": block_n, "programs": max(1, min(4, triton.cdiv(m, block_m))),
                "num_warps": 4}
    block_m = max(1, min(16, 4096 // block_n))
    num_warps = 4 if block_n * block_m <= 4096 else (8 if block_n <= 8192 else 16)
    return {"BLOCK_M": block_m, "BLOCK_N": block_n, "programs": max(1, min(2 * sms, m)), "num_warps": num_warps}


def _sm_count(t: torch.Tensor) -> int:
    if t.device.type == "cuda":
        return torch.cuda.get_device_properties(t.device).multi_processor_count
    return 4


class _RMSNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if x2.stride(-1) != 1:
            x2 = x2.contiguous()
        weight = weight.contiguous()
        m, n = x2.shape
        y = torch.empty((m, n), dtype=x.dtype, device=x.device)
        rstd = torch.empty(m, dtype=torch.float32, device=x.device)
        cfg = _fwd_config(n, interpreting(x))
        grid = (triton.cdiv(m, cfg["BLOCK_M"]),)
        _rms_fwd.on(x)[grid](x2, weight, y, rstd, m, n, x2.stride(0), y.stride(0), eps,
                             BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], num_warps=cfg["num_warps"])
        ctx.save_for_backward(x2, weight, rstd)
        ctx.shape = shape
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        x2, weight, rstd = ctx.saved_tensors
        m, n = x2.shape
        dy2 = dy.reshape(-1, n)
        if dy2.stride(-1) != 1:
            dy2 = dy2.contiguous()
        dx = torch.empty_like(x2)
        cfg = _bwd_config(m, n, interpreting(x2), _sm_count(x2))
        programs = cfg["programs"]
        dw_partial = torch.empty((programs, n), dtype=torch.float32, device=x2.device)
        rows_per_program = triton.cdiv(m, programs)
        _rms_bwd.on(x2)[(programs,)](
            x2, weight, dy2, rstd, dx, dw_partial, m, n, x2.stride(0), dy2.stride(0), dx.stride(0),
            rows_per_program, BLOCK_M=cfg["BLOCK_M"], BLOCK_N=cfg["BLOCK_N"], num_warps=cfg["num_warps"])
        dw = dw_partial.sum(0).to(weight.dtype)
        return dx.view(ctx.shape), dw, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """RMSNorm of ``x`` (any leading shape) over its last dimension, scaled by ``weight``."""
    if not use_triton(x) or next_pow2(x.shape[-1]) > MAX_BLOCK_N or x.numel() == 0:
        return rms_norm_reference(x, weight, eps)
    return _RMSNormFn.apply(x, weight, eps)


def compile_specs() -> list[CompileSpec]:
    """The sm_90 launches of the dispatcher for hidden sizes 1024…16384 in fp32 and bf16."""
    specs = []
    for dtype in (torch.float32, torch.bfloat16):
        t = triton_dtype(dtype)
        for n in (1024, 4096, 8192, 16384):
            f = _fwd_config(n, interpret=False)
            specs.append(CompileSpec(
                f"rms_fwd_{t}_{n}", _rms_fwd,
                {"X": f"*{t}", "W": f"*{t}", "Y": f"*{t}", "RSTD": "*fp32", "M": "i32", "N": "i32",
                 "stride_x": "i32", "stride_y": "i32", "eps": "fp32", "BLOCK_M": "constexpr",
                 "BLOCK_N": "constexpr"},
                {"BLOCK_M": f["BLOCK_M"], "BLOCK_N": f["BLOCK_N"]}, num_warps=f["num_warps"]))
            b = _bwd_config(8192, n, interpret=False, sms=132)
            specs.append(CompileSpec(
                f"rms_bwd_{t}_{n}", _rms_bwd,
                {"X": f"*{t}", "W": f"*{t}", "DY": f"*{t}", "RSTD": "*fp32", "DX": f"*{t}", "DW": "*fp32",
                 "M": "i32", "N": "i32", "stride_x": "i32", "stride_dy": "i32", "stride_dx": "i32",
                 "rows_per_program": "i32", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"},
                {"BLOCK_M": b["BLOCK_M"], "BLOCK_N": b["BLOCK_N"]}, num_warps=b["num_warps"]))
    return specs
