"""Linear layer + cross-entropy without materialising the logits: Triton kernel, torch reference beside it.

The tokens are processed in chunks: for each chunk, ``logits = hidden_chunk @ weight.T`` (``[chunk, V]``,
the only logits ever alive), then one Triton program per row computes an online logsumexp over the
vocabulary in blocks, the loss ``lse - logit[target]``, and overwrites the logits in place with
``(softmax - onehot) * scale``; two matmuls turn that into the chunk's ``d hidden`` and its share of
``d weight``. Rows whose target is ``ignore_index`` get zero loss and zero gradient.

* ``reduction="mean"``/``"sum"``: gradients are produced during the forward (the scale is known), the
  backward only multiplies them by the incoming scalar: 3 matmuls in all, like Liger-Kernel.
* ``reduction="none"`` (per-token losses, what megatron's ``compute_language_model_loss`` returns): the
  incoming gradient differs per token, so the backward recomputes each logits chunk and scales its rows
  by it: 4 matmuls, still never more than one chunk of logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from llmkernels.dispatch import CompileSpec, interpreting, kernel, next_pow2, triton_dtype, use_triton

REDUCTIONS = ("mean", "sum", "none")


def fused_linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                                         ignore_index: int = -100, reduction: str = "mean") -> torch.Tensor:
    """Pure torch: full logits in the input dtype, cross-entropy in fp32 (``reduction="none"`` keeps
    ``target``'s shape)."""
    logits = F.linear(hidden.reshape(-1, hidden.shape[-1]), weight).float()
    loss = F.cross_entropy(logits, target.reshape(-1), ignore_index=ignore_index, reduction=reduction)
    return loss.view(target.shape) if reduction == "none" else loss


@kernel
def _ce_kernel(LOGITS, TARGET, LOSS, SCALE, V, stride_l, scale_stride, ignore_index,
               COMPUTE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride_l
    tgt = tl.load(TARGET + row).to(tl.int64)
    ignored = tgt == ignore_index
    offs = tl.arange(0, BLOCK_V)
    m = tl.full((), float("-inf"), tl.float32)
    s = tl.zeros((), tl.float32)
    for v0 in range(0, V, BLOCK_V):  # online logsumexp: every block has a valid column, so m stays finite
        cols = v0 + offs
        x = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)
        m = m_new
    lse = m + tl.log(s)
    safe_tgt = tl.where(ignored, 0, tgt)
    x_t = tl.load(base + safe_tgt).to(tl.float32)
    tl.store(LOSS + row, tl.where(ignored, 0.0, lse - x_t))
    if COMPUTE_GRAD:
        scale = tl.where(ignored, 0.0, tl.load(SCALE + row * scale_stride).to(tl.float32))
        for v0 in range(0, V, BLOCK_V):
            cols = v0 + offs
            mask = cols < V
            x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            g = (tl.exp(x - lse) - tl.where(cols == safe_tgt, 1.0, 0.0)) * scale
            tl.store(base + cols, g.to(LOGITS.dtype.element_ty), mask=mask)


def _block_v(v: int, interpret: bool) -> int:
    return min(next_pow2(v), 256 if interpret else 4096)


def _num_warps(block_v: int) -> int:
    return 8 if block_v >= 4096 else 4


def _chunk_tokens(n: int, h: int, v: int, interpret: bool) -> int:
    if interpret:
        return 16  # several chunks even for tiny test inputs
    # Logits chunk ≈ the size of ``hidden`` (Liger's rule): [chunk, V] with chunk·V ≈ N·H.
    return max(1, min(next_pow2(n), next_pow2(triton.cdiv(n, triton.cdiv(v, h)))))


def _ce_rows(logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor, scale: torch.Tensor | None,
             scale_stride: int, ignore_index: int) -> None:
    n, v = logits.shape
    block_v = _block_v(v, interpreting(logits))
    compute_grad = scale is not None
    _ce_kernel.on(logits)[(n,)](logits, target, loss, scale if compute_grad else loss, v, logits.stride(0),
                                scale_stride, ignore_index, COMPUTE_GRAD=compute_grad, BLOCK_V=block_v,
                                num_warps=_num_warps(block_v))


def _chunks(n: int, h: int, v: int, t: torch.Tensor, chunk_size: int | None) -> range:
    step = chunk_size or _chunk_tokens(n, h, v, interpreting(t))
    return range(0, n, step), step


class _FusedLinearCEFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, ignore_index: int,
                reduction: str, need_grad: bool, chunk_size: int | None) -> torch.Tensor:
        h2 = hidden.reshape(-1, hidden.shape[-1]).contiguous()
        t1 = target.reshape(-1).contiguous()
        weight = weight.contiguous()
        n, h = h2.shape
        v = weight.shape[0]
        loss = torch.empty(n, dtype=torch.float32, device=h2.device)
        ctx.reduction, ctx.ignore_index, ctx.chunk_size = reduction, ignore_index, chunk_size
        ctx.target_shape = target.shape
        starts, step = _chunks(n, h, v, h2, chunk_size)
        eager = need_grad and reduction != "none"
        n_valid = (t1 != ignore_index).sum()
        if eager:
            scale = (1.0 / n_valid.float() if reduction == "mean" else torch.ones((), device=h2.device)).reshape(1)
            grad_hidden = torch.empty_like(h2)
            acc = torch.float32 if weight.dtype == torch.float32 else weight.dtype
            grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        for s0 in starts:
            hc = h2[s0:s0 + step]
            logits = hc @ weight.t()
            _ce_rows(logits, t1[s0:s0 + step], loss[s0:s0 + step], scale if eager else None, 0, ignore_index)
            if eager:
                torch.mm(logits, weight, out=grad_hidden[s0:s0 + step])
                grad_weight.addmm_(logits.t().to(acc), hc.to(acc))
        if eager:
            ctx.save_for_backward(grad_hidden, grad_weight)
        elif need_grad:
            ctx.save_for_backward(h2, weight, t1)
        ctx.hidden_shape, ctx.weight_dtype = hidden.shape, weight.dtype
        if reduction == "none":
            return loss.view(target.shape)
        total = loss.sum()
        return total / n_valid if reduction == "mean" else total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if ctx.reduction != "none":
            grad_hidden, grad_weight = ctx.saved_tensors
            g = grad_out.float()
            dh = (grad_hidden * g).to(grad_hidden.dtype).view(ctx.hidden_shape)
            dw = (grad_weight * g).to(ctx.weight_dtype)
            return dh, dw, None, None, None, None, None
        h2, weight, t1 = ctx.saved_tensors
        n, h = h2.shape
        v = weight.shape[0]
        g1 = grad_out.reshape(-1).float().contiguous()
        grad_hidden = torch.empty_like(h2)
        acc = torch.float32 if weight.dtype == torch.float32 else weight.dtype
        grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        scratch = torch.empty(n, dtype=torch.float32, device=h2.device)
        starts, step = _chunks(n, h, v, h2, ctx.chunk_size)
        for s0 in starts:
            hc = h2[s0:s0 + step]
            logits = hc @ weight.t()
            _ce_rows(logits, t1[s0:s0 + step], scratch[s0:s0 + step], g1[s0:s0 + step], 1, ctx.ignore_index)
            torch.mm(logits, weight, out=grad_hidden[s0:s0 + step])
            grad_weight.addmm_(logits.t().to(acc), hc.to(acc))
        return (grad_hidden.view(ctx.hidden_shape), grad_weight.to(weight.dtype), None, None, None, None, None)


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                               ignore_index: int = -100, reduction: str = "mean",
                               chunk_size: int | None = None) -> torch.Tensor:
    """Cross-entropy of ``hidden @ weight.T`` against ``target`` without the full logits.

    ``hidden`` is ``[..., H]``, ``weight`` ``[V, H]`` (the output layer / tied embedding), ``target`` the
    leading shape of ``hidden``. Returns an fp32 scalar (``mean``/``sum``; ``mean`` over non-ignored
    tokens, NaN if none) or fp32 per-token losses shaped like ``target`` (``none``, 0 where ignored).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if hidden.shape[:-1] != target.shape or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"shapes: hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}, "
                         f"target {tuple(target.shape)}")
    if not use_triton(hidden) or target.numel() == 0:
        return fused_linear_cross_entropy_reference(hidden, weight, target, ignore_index, reduction)
    need_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    return _FusedLinearCEFn.apply(hidden, weight, target, ignore_index, reduction, need_grad, chunk_size)


def compile_specs() -> list[CompileSpec]:
    """The sm_90 launches: bf16/fp32 logits, V = 32k and 128k, with and without the gradient pass."""
    specs = []
    for dtype in (torch.float32, torch.bfloat16):
        t = triton_dtype(dtype)
        for v in (32_000, 128_256):
            block_v = _block_v(v, interpret=False)
            for grad in (False, True):
                specs.append(CompileSpec(
                    f"ce_{t}_v{v}_{'grad' if grad else 'loss'}", _ce_kernel,
                    {"LOGITS": f"*{t}", "TARGET": "*i64", "LOSS": "*fp32", "SCALE": "*fp32", "V": "i32",
                     "stride_l": "i32", "scale_stride": "i32", "ignore_index": "i32",
                     "COMPUTE_GRAD": "constexpr", "BLOCK_V": "constexpr"},
                    {"COMPUTE_GRAD": grad, "BLOCK_V": block_v}, num_warps=_num_warps(block_v)))
    return specs
