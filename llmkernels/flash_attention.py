"""Flash attention (forward and backward) with causal masking and grouped-query heads; torch reference beside it.

Inputs are laid out like ``F.scaled_dot_product_attention``: ``q`` ``[B, H, Sq, D]``, ``k``/``v``
``[B, Hkv, Sk, D]`` with ``H % Hkv == 0`` (query head ``h`` reads kv head ``h // (H // Hkv)``); the causal
mask is SDPA's (top-left aligned: query ``i`` sees keys ``j ≤ i``). Any head_dim works (padded to a
power of two ≥ 16 inside the kernels).

* forward: one program per (query block, batch·head) streams key/value blocks with an online softmax
  in base 2 and stores the output and the row log-sum-exp (base 2, fp32);
* backward: ``delta = rowsum(dO·O)`` in torch, then one kernel per (key block, batch·kv-head) that loops
  over every query head of its group and accumulates ``dK``/``dV`` in registers (no atomics, GQA for
  free), and one kernel per (query block, batch·head) for ``dQ``.

Under the interpreter, bf16 tiles are upcast to fp32 before ``tl.dot`` (bf16 ``tl.dot`` returns garbage
there, triton-lang/triton#11584); on the GPU the dots run in bf16 with fp32 accumulation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from llmkernels.dispatch import CompileSpec, interpreting, kernel, next_pow2, triton_dtype, use_triton

LOG2E = 1.4426950408889634


def flash_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                              scale: float | None = None) -> torch.Tensor:
    """Plain softmax attention in fp32 (GQA by repeating kv heads), cast back to ``q.dtype``."""
    group = q.shape[1] // k.shape[1]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    kf = k.float().repeat_interleave(group, dim=1)
    vf = v.float().repeat_interleave(group, dim=1)
    s = (q.float() @ kf.transpose(-1, -2)) * scale
    if causal:
        sq, sk = q.shape[-2], k.shape[-2]
        keep = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril()
        s = s.masked_fill(~keep, float("-inf"))
    return (torch.softmax(s, dim=-1) @ vf).to(q.dtype)


@kernel
def _attn_fwd(Q, K, V, OUT, LSE, qk_scale,
              stride_qb, stride_qh, stride_qs, stride_kb, stride_kh, stride_ks,
              stride_vb, stride_vh, stride_vs, stride_ob, stride_oh, stride_os,
              H, GROUP, SQ, SK, D,
              CAUSAL: tl.constexpr, UPCAST: tl.constexpr,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    kvh = h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :],
                mask=(offs_m < SQ)[:, None] & dmask[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    # Phase 1: key blocks inside Sk and, if causal, left of this query block's diagonal: no masking.
    hi = SK
    mid = (SK // BLOCK_N) * BLOCK_N
    if CAUSAL:
        hi = tl.minimum(SK, (start_m + 1) * BLOCK_M)
        mid = tl.minimum(mid, start_m * BLOCK_M)  # BLOCK_M is a multiple of BLOCK_N
    for start_n in range(0, mid, BLOCK_N):
        cols = start_n + offs_n
        kt = tl.load(k_base + cols[None, :] * stride_ks + offs_d[:, None], mask=dmask[:, None], other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :], mask=dmask[None, :], other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, kt) * qk_scale
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    # Phase 2: the diagonal and the ragged tail, masked.
    for start_n in range(mid, hi, BLOCK_N):
        cols = start_n + offs_n
        cmask = cols < SK
        kt = tl.load(k_base + cols[None, :] * stride_ks + offs_d[:, None], mask=cmask[None, :] & dmask[:, None],
                     other=0.0)
        v = tl.load(v_base + cols[:, None] * stride_vs + offs_d[None, :], mask=cmask[:, None] & dmask[None, :],
                    other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
            v = v.to(tl.float32)
        s = tl.dot(q, kt) * qk_scale
        keep = cmask[None, :]
        if CAUSAL:
            keep = keep & (cols[None, :] <= offs_m[:, None])
        s = tl.where(keep, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new
    acc = acc / l_i[:, None]
    rmask = offs_m < SQ
    tl.store(OUT + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_os + offs_d[None, :],
             acc.to(OUT.dtype.element_ty), mask=rmask[:, None] & dmask[None, :])
    tl.store(LSE + bh.to(tl.int64) * SQ + offs_m, m_i + tl.log2(l_i), mask=rmask)


@kernel
def _attn_bwd_dkdv(Q, K, V, DO, LSE, DELTA, DK, DV, qk_scale, sm_scale,
                   stride_qb, stride_qh, stride_qs, stride_kb, stride_kh, stride_ks,
                   stride_vb, stride_vh, stride_vs, stride_dob, stride_doh, stride_dos,
                   HKV, GROUP, SQ, SK, D,
                   CAUSAL: tl.constexpr, UPCAST: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    start_n = tl.program_id(0)
    bkv = tl.program_id(1)
    b = (bkv // HKV).to(tl.int64)
    kvh = (bkv % HKV).to(tl.int64)
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    nmask = offs_n < SK
    kv_mask = nmask[:, None] & dmask[None, :]
    k = tl.load(K + b * stride_kb + kvh * stride_kh + offs_n[:, None] * stride_ks + offs_d[None, :],
                mask=kv_mask, other=0.0)
    v = tl.load(V + b * stride_vb + kvh * stride_vh + offs_n[:, None] * stride_vs + offs_d[None, :],
                mask=kv_mask, other=0.0)
    if UPCAST:
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    lo = 0
    if CAUSAL:
        lo = (start_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for g in range(0, GROUP):
        h = kvh * GROUP + g
        q_base = Q + b * stride_qb + h * stride_qh
        do_base = DO + b * stride_dob + h * stride_doh
        row_base = (b * HKV * GROUP + h) * SQ
        for start_m in range(lo, SQ, BLOCK_M):
            offs_m = start_m + offs_m0
            mmask = offs_m < SQ
            qt = tl.load(q_base + offs_m[None, :] * stride_qs + offs_d[:, None],
                         mask=mmask[None, :] & dmask[:, None], other=0.0)
            do = tl.load(do_base + offs_m[:, None] * stride_dos + offs_d[None, :],
                         mask=mmask[:, None] & dmask[None, :], other=0.0)
            if UPCAST:
                qt = qt.to(tl.float32)
                do = do.to(tl.float32)
            lse = tl.load(LSE + row_base + offs_m, mask=mmask, other=0.0)
            delta = tl.load(DELTA + row_base + offs_m, mask=mmask, other=0.0)
            keep = mmask[None, :] & nmask[:, None]
            if CAUSAL:
                keep = keep & (offs_m[None, :] >= offs_n[:, None])
            pt = tl.where(keep, tl.exp2(tl.dot(k, qt) * qk_scale - lse[None, :]), 0.0)  # [N, M]
            dv += tl.dot(pt.to(do.dtype), do)
            dpt = tl.dot(v, tl.trans(do))
            dst = pt * (dpt - delta[None, :])
            dk += tl.dot(dst.to(qt.dtype), tl.trans(qt))
    dk = dk * sm_scale
    out = b * HKV * SK * D + kvh * SK * D + offs_n[:, None] * D + offs_d[None, :]
    tl.store(DK + out, dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=kv_mask)


@kernel
def _attn_bwd_dq(Q, K, V, DO, LSE, DELTA, DQ, qk_scale, sm_scale,
                 stride_qb, stride_qh, stride_qs, stride_kb, stride_kh, stride_ks,
                 stride_vb, stride_vh, stride_vs, stride_dob, stride_doh, stride_dos,
                 H, GROUP, SQ, SK, D,
                 CAUSAL: tl.constexpr, UPCAST: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    start_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    kvh = h // GROUP
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    dmask = offs_d < D
    mmask = offs_m < SQ
    q_mask = mmask[:, None] & dmask[None, :]
    q = tl.load(Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qs + offs_d[None, :],
                mask=q_mask, other=0.0)
    do = tl.load(DO + b * stride_dob + h * stride_doh + offs_m[:, None] * stride_dos + offs_d[None, :],
                 mask=q_mask, other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
        do = do.to(tl.float32)
    row = bh.to(tl.int64) * SQ + offs_m
    lse = tl.load(LSE + row, mask=mmask, other=0.0)
    delta = tl.load(DELTA + row, mask=mmask, other=0.0)
    k_base = K + b * stride_kb + kvh * stride_kh
    v_base = V + b * stride_vb + kvh * stride_vh
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    hi = SK
    if CAUSAL:
        hi = tl.minimum(SK, (start_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + offs_n0
        nmask = offs_n < SK
        kt = tl.load(k_base + offs_n[None, :] * stride_ks + offs_d[:, None], mask=nmask[None, :] & dmask[:, None],
                     other=0.0)
        vt = tl.load(v_base + offs_n[None, :] * stride_vs + offs_d[:, None], mask=nmask[None, :] & dmask[:, None],
                     other=0.0)
        if UPCAST:
            kt = kt.to(tl.float32)
            vt = vt.to(tl.float32)
        keep = mmask[:, None] & nmask[None, :]
        if CAUSAL:
            keep = keep & (offs_n[None, :] <= offs_m[:, None])
        p = tl.where(keep, tl.exp2(tl.dot(q, kt) * qk_scale - lse[:, None]), 0.0)
        ds = p * (tl.dot(do, vt) - delta[:, None])
        dq += tl.dot(ds.to(kt.dtype), tl.trans(kt))
    dq = dq * sm_scale
    tl.store(DQ + row[:, None] * D + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=q_mask)


def _config(kind: str, head_dim: int, dtype: torch.dtype, interpret: bool) -> dict[str, int]:
    """Launch configuration of one kernel (``fwd``, ``dkdv``, ``dq``): block sizes, warps, stages.

    Sized for sm_90's 232,448 B of shared memory (checked by ``llmkernels.compile_check``): fp32 tiles at
    head_dim 128 fit 2 pipeline stages, not 3.
    """
    block_d = max(16, next_pow2(head_dim))
    if interpret:  # forward: BLOCK_N < BLOCK_M so the tests cover both phases of the causal loop
        return {"BLOCK_M": 32, "BLOCK_N": 16 if kind == "fwd" else 32, "BLOCK_D": block_d, "num_warps": 4,
                "num_stages": 1}
    big = block_d > 64
    if kind == "fwd":
        stages = 2 if big and dtype == torch.float32 else 3
        return {"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_D": block_d, "num_warps": 8 if big else 4,
                "num_stages": stages}
    return {"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_D": block_d, "num_warps": 8 if big else 4, "num_stages": 2}


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(1), t.stride(2)


def _launch_opts(cfg: dict[str, int]) -> dict[str, int]:
    return {k: cfg[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_D", "num_warps", "num_stages")}


def _unit_inner(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


class _FlashAttentionFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float) -> torch.Tensor:
        q, k, v = _unit_inner(q), _unit_inner(k), _unit_inner(v)
        b, h, sq, d = q.shape
        hkv, sk = k.shape[1], k.shape[2]
        o = torch.empty((b, h, sq, d), dtype=q.dtype, device=q.device)
        lse = torch.empty((b, h, sq), dtype=torch.float32, device=q.device)
        interp = interpreting(q)
        cfg = _config("fwd", d, q.dtype, interp)
        assert cfg["BLOCK_M"] % cfg["BLOCK_N"] == 0, "the causal phase split needs BLOCK_N | BLOCK_M"
        grid = (triton.cdiv(sq, cfg["BLOCK_M"]), b * h)
        _attn_fwd.on(q)[grid](q, k, v, o, lse, scale * LOG2E, *_strides(q), *_strides(k), *_strides(v),
                              *_strides(o), h, h // hkv, sq, sk, d, CAUSAL=causal,
                              UPCAST=interp and q.dtype != torch.float32, **_launch_opts(cfg))
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal, ctx.scale = causal, scale
        return o

    @staticmethod
    def backward(ctx, do: torch.Tensor):
        q, k, v, o, lse = ctx.saved_tensors
        do = _unit_inner(do)
        b, h, sq, d = q.shape
        hkv, sk = k.shape[1], k.shape[2]
        delta = (o.float() * do.float()).sum(-1)  # [b, h, sq], contiguous like lse
        dq = torch.empty((b, h, sq, d), dtype=q.dtype, device=q.device)
        dk = torch.empty((b, hkv, sk, d), dtype=k.dtype, device=k.device)
        dv = torch.empty((b, hkv, sk, d), dtype=v.dtype, device=v.device)
        interp = interpreting(q)
        upcast = interp and q.dtype != torch.float32
        common = (ctx.scale * LOG2E, ctx.scale, *_strides(q), *_strides(k), *_strides(v), *_strides(do))
        cfg = _config("dkdv", d, q.dtype, interp)
        grid = (triton.cdiv(sk, cfg["BLOCK_N"]), b * hkv)
        _attn_bwd_dkdv.on(q)[grid](q, k, v, do, lse, delta, dk, dv, *common, hkv, h // hkv, sq, sk, d,
                                   CAUSAL=ctx.causal, UPCAST=upcast, **_launch_opts(cfg))
        cfg = _config("dq", d, q.dtype, interp)
        grid = (triton.cdiv(sq, cfg["BLOCK_M"]), b * h)
        _attn_bwd_dq.on(q)[grid](q, k, v, do, lse, delta, dq, *common, h, h // hkv, sq, sk, d,
                                 CAUSAL=ctx.causal, UPCAST=upcast, **_launch_opts(cfg))
        return dq, dk, dv, None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    scale: float | None = None) -> torch.Tensor:
    """Softmax attention of ``q`` ``[B, H, Sq, D]`` over ``k``/``v`` ``[B, Hkv, Sk, D]`` → ``[B, H, Sq, D]``.

    ``scale`` defaults to ``1/sqrt(D)``; ``causal`` masks key ``j > i`` for query ``i`` (SDPA's rule).
    """
    if q.dim() != 4 or k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[-1] != q.shape[-1]:
        raise ValueError(f"shapes: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads are not a multiple of {k.shape[1]} kv heads")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if not use_triton(q) or q.numel() == 0 or k.shape[2] == 0:
        if q.device.type == "cpu":  # SDPA's flash CPU path (the reference is for tests)
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale,
                                                  enable_gqa=q.shape[1] != k.shape[1])
        return flash_attention_reference(q, k, v, causal, scale)
    return _FlashAttentionFn.apply(q, k, v, causal, scale)


def compile_specs() -> list[CompileSpec]:
    """The sm_90 launches: fp32 and bf16, head_dim 64 and 128, causal and not, forward and both backwards."""
    specs = []
    strides = [f"stride_{t}{s}" for t in ("q", "k", "v", "o") for s in ("b", "h", "s")]
    bwd_strides = [f"stride_{t}{s}" for t in ("q", "k", "v", "do") for s in ("b", "h", "s")]
    const = ("CAUSAL", "UPCAST", "BLOCK_M", "BLOCK_N", "BLOCK_D")
    for dtype in (torch.float32, torch.bfloat16):
        t = triton_dtype(dtype)
        for d in (64, 128):
            for causal in (True, False):
                for kind, fn in (("fwd", _attn_fwd), ("dkdv", _attn_bwd_dkdv), ("dq", _attn_bwd_dq)):
                    cfg = _config(kind, d, dtype, interpret=False)
                    if kind == "fwd":
                        ptrs = {"Q": f"*{t}", "K": f"*{t}", "V": f"*{t}", "OUT": f"*{t}", "LSE": "*fp32",
                                "qk_scale": "fp32"}
                        ints = [*strides, "H", "GROUP", "SQ", "SK", "D"]
                    else:
                        ptrs = {"Q": f"*{t}", "K": f"*{t}", "V": f"*{t}", "DO": f"*{t}", "LSE": "*fp32",
                                "DELTA": "*fp32"}
                        ptrs.update({"DK": f"*{t}", "DV": f"*{t}"} if kind == "dkdv" else {"DQ": f"*{t}"})
                        ptrs.update({"qk_scale": "fp32", "sm_scale": "fp32"})
                        ints = [*bwd_strides, "HKV" if kind == "dkdv" else "H", "GROUP", "SQ", "SK", "D"]
                    sig = {**ptrs, **dict.fromkeys(ints, "i32"), **dict.fromkeys(const, "constexpr")}
                    specs.append(CompileSpec(
                        f"attn_{kind}_{t}_d{d}_{'causal' if causal else 'full'}", fn, sig,
                        {"CAUSAL": causal, "UPCAST": False, "BLOCK_M": cfg["BLOCK_M"], "BLOCK_N": cfg["BLOCK_N"],
                         "BLOCK_D": cfg["BLOCK_D"]},
                        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"]))
    return specs
