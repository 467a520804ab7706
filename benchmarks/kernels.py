"""Kernel benchmarks: our Triton kernels beside torch eager, torch.compile, Liger-Kernel and flash-attn.

GPU (default): for each kernel a sweep of realistic bf16 shapes, forward and backward (fused linear+CE
and attention also forward+backward), timed with ``triton.testing.do_bench`` (median ms). Memory-bound
kernels report GB/s of their ideal traffic and % of the H200's 4.8 TB/s; attention and linear+CE report
TFLOP/s and % of 989 dense bf16; linear+CE also its peak memory. Peers missing on the machine are skipped.
Writes ``kernels.csv``, ``kernels_targets.json`` and one PNG per kernel to ``--out``
(default ``benchmarks/results``).

``--smoke`` (CPU): tiny shapes, the interpreted kernel and the eager reference once each, a CSV written
to a temporary folder (never to ``benchmarks/results``): it checks the harness, not the speed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _results import add_output_arg, output_dir, written  # noqa: E402

HBM_PEAK = 4.8e12  # H200 bytes/s
BF16_PEAK = 989e12  # H200 dense bf16 FLOP/s


def _peer(fn_name: str) -> Callable | None:
    """Liger-Kernel pieces when installed (GPU extras)."""
    try:
        if fn_name == "rms_norm":
            from liger_kernel.transformers import LigerRMSNorm

            return LigerRMSNorm
        if fn_name == "swiglu":
            from liger_kernel.ops.swiglu import LigerSiLUMulFunction

            return LigerSiLUMulFunction.apply
        if fn_name == "ce":
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            return LigerFusedLinearCrossEntropyLoss
        if fn_name == "flash_attn":
            from flash_attn import flash_attn_func

            return flash_attn_func
    except Exception:
        return None
    return None


def chunked_ce_reference(chunk: int = 1024, compiled: bool = True) -> Callable:
    """torch.compile's chunked linear+CE (the peer in TARGETS.md): per-chunk compiled logits → loss and
    grads in the forward, so only one chunk of logits is alive (``compiled=False``: the same, eager)."""
    import torch
    import torch.nn.functional as F

    def step(h, w, t, scale):
        logits = (h @ w.t()).float()
        loss = F.cross_entropy(logits, t, ignore_index=-100, reduction="sum")
        p = torch.softmax(logits, dim=-1)
        valid = (t != -100)
        p[torch.arange(t.shape[0], device=t.device), t.clamp(min=0)] -= 1.0
        d = (p * (valid.float() * scale)[:, None]).to(h.dtype)
        return loss, d @ w, d.t() @ h

    if compiled:
        step = torch.compile(step, dynamic=False)

    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, w, t):
            n_valid = (t != -100).sum()
            scale = 1.0 / n_valid.float()
            dh, dw = torch.empty_like(h), torch.zeros(w.shape, dtype=torch.float32, device=w.device)
            total = torch.zeros((), dtype=torch.float32, device=h.device)
            for s in range(0, h.shape[0], chunk):
                loss, dh[s:s + chunk], dwc = step(h[s:s + chunk], w, t[s:s + chunk], scale)
                total += loss
                dw += dwc
            ctx.save_for_backward(dh, dw.to(w.dtype))
            return total * scale

        @staticmethod
        def backward(ctx, g):
            dh, dw = ctx.saved_tensors
            return dh * g, dw * g, None

    return Fn.apply


def cases(smoke: bool, only: set[str]) -> list[dict]:
    """(kernel, shape) cases: realistic on GPU, tiny for the smoke run."""
    if smoke:
        out = [("rms_norm", (37, 200)), ("swiglu", (37, 200)), ("rope", (33, 2, 4, 32)),
               ("fused_linear_ce", (37, 48, 500)), ("flash_attention", (1, 4, 2, 64, 32))]
    else:
        out = [("rms_norm", s) for s in ((4096, 4096), (16384, 4096), (8192, 8192), (32768, 2048))]
        out += [("swiglu", s) for s in ((4096, 11008), (8192, 14336), (16384, 8192))]
        out += [("rope", s) for s in ((4096, 4, 32, 128), (8192, 2, 32, 128), (4096, 8, 8, 128))]
        out += [("fused_linear_ce", s) for s in ((4096, 4096, 32000), (8192, 4096, 128256), (16384, 2048, 128256))]
        out += [("flash_attention", s) for s in ((8, 32, 8, 1024, 128), (4, 32, 8, 2048, 128), (2, 32, 8, 4096, 128),
                                                 (1, 32, 8, 8192, 128), (4, 16, 16, 2048, 64))]
    out = [(k, s) for k, s in out if not only or k in only]
    # round-robin over kernels: a run cut short by --budget-s still covers every kernel's first shapes
    order = sorted(range(len(out)), key=lambda i: (sum(k == out[i][0] for k, _ in out[:i]), i))
    return [{"kernel": out[i][0], "shape": out[i][1]} for i in order]


def build(kernel: str, shape: tuple, device: str, dtype, smoke: bool) -> tuple[list, dict[str, Callable], dict]:
    """Inputs, providers (name → fn(*inputs)) and the work model (bytes or flops per mode) of one case."""
    import torch
    import torch.nn.functional as F

    import llmkernels
    from llmkernels.flash_attention import flash_attention_reference
    from llmkernels.fused_linear_ce import fused_linear_cross_entropy_reference
    from llmkernels.rms_norm import rms_norm_reference
    from llmkernels.rope import rope_reference
    from llmkernels.swiglu import swiglu_reference

    g = torch.Generator(device="cpu").manual_seed(0)

    def rand(*s, scale=1.0, grad=True):
        return (scale * torch.randn(*s, generator=g)).to(device, dtype).requires_grad_(grad)

    e = torch.tensor([], dtype=dtype).element_size()
    compile_ok = not smoke
    providers: dict[str, Callable] = {}
    if kernel == "rms_norm":
        m, n = shape
        inputs = [rand(m, n), rand(n, scale=0.1)]
        providers = {"ours": lambda x, w: llmkernels.rms_norm(x, w, 1e-5), "eager": lambda x, w: rms_norm_reference(x, w, 1e-5)}
        if compile_ok:
            providers["compile"] = torch.compile(lambda x, w: rms_norm_reference(x, w, 1e-5))
        if (liger := _peer("rms_norm")) and not smoke:
            mod = liger(n, eps=1e-5).to(device, dtype)
            providers["liger"] = lambda x, w: mod(x)
        work = {"fwd": ("bytes", 2 * m * n * e), "bwd": ("bytes", 3 * m * n * e)}
    elif kernel == "swiglu":
        m, n = shape
        inputs = [rand(m, n), rand(m, n)]
        providers = {"ours": llmkernels.swiglu, "eager": lambda a, b: F.silu(a) * b}
        if compile_ok:
            providers["compile"] = torch.compile(swiglu_reference)
        if (liger := _peer("swiglu")) and not smoke:
            providers["liger"] = liger
        work = {"fwd": ("bytes", 3 * m * n * e), "bwd": ("bytes", 5 * m * n * e)}
    elif kernel == "rope":
        s, b, h, d = shape
        inv = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
        f = torch.outer(torch.arange(s, dtype=torch.float32), inv)
        f = torch.cat((f, f), -1)[:, None, None, :].to(device)
        cos, sin = f.cos(), f.sin()
        inputs = [rand(s, b, h, d)]
        providers = {"ours": lambda x: llmkernels.rope(x, cos, sin), "eager": lambda x: rope_reference(x, cos, sin)}
        if compile_ok:
            providers["compile"] = torch.compile(lambda x: rope_reference(x, cos, sin))
        work = {"fwd": ("bytes", 2 * s * b * h * d * e), "bwd": ("bytes", 2 * s * b * h * d * e)}
    elif kernel == "fused_linear_ce":
        n, h, v = shape
        target = torch.randint(0, v, (n,), generator=g)
        target[::7] = -100
        target = target.to(device)
        inputs = [rand(n, h), rand(v, h, scale=0.02)]
        providers = {"ours": lambda x, w: llmkernels.fused_linear_cross_entropy(x, w, target),
                     "eager": lambda x, w: fused_linear_cross_entropy_reference(x, w, target)}
        chunked = chunked_ce_reference(chunk=16 if smoke else 1024, compiled=compile_ok)
        providers["compile_chunked"] = lambda x, w: chunked(x, w, target)
        if (liger := _peer("ce")) and not smoke:
            loss_mod = liger()
            providers["liger"] = lambda x, w: loss_mod(w, x, target)
        work = {"fwd+bwd": ("flops", 6 * n * h * v)}
    else:
        b, h, hkv, s, d = shape
        inputs = [rand(b, h, s, d), rand(b, hkv, s, d), rand(b, hkv, s, d)]
        providers = {"ours": lambda q, k, v: llmkernels.flash_attention(q, k, v, causal=True),
                     "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                                            enable_gqa=h != hkv)}
        if s <= 4096:
            providers["eager"] = lambda q, k, v: flash_attention_reference(q, k, v, causal=True)
        if (fa := _peer("flash_attn")) and not smoke:
            providers["flash_attn"] = lambda q, k, v: fa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                         causal=True).transpose(1, 2)
        fwd = 4 * b * h * s * s * d / 2  # causal: half the score matrix
        work = {"fwd": ("flops", fwd), "bwd": ("flops", 2.5 * fwd), "fwd+bwd": ("flops", 3.5 * fwd)}
    return inputs, providers, work


def measure(fn: Callable, inputs: list, mode: str, smoke: bool) -> tuple[float, float | None]:
    """Median ms of ``mode`` (fwd / bwd / fwd+bwd) and, on GPU, peak memory in MB above the inputs."""
    import torch

    def zero():
        for t in inputs:
            t.grad = None

    if mode == "fwd":
        def run():
            with torch.no_grad():
                fn(*inputs)
    elif mode == "bwd":
        out = fn(*inputs)
        dout = torch.randn_like(out)

        def run():
            zero()
            out.backward(dout, retain_graph=True)
    else:
        def run():
            zero()
            out = fn(*inputs)
            out.backward(torch.ones_like(out))
    if smoke:
        run()
        t0 = time.perf_counter()
        run()
        return 1e3 * (time.perf_counter() - t0), None
    import triton.testing

    run()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return float(triton.testing.do_bench(run, warmup=10, rep=50)), peak


def plot(rows: list[dict], out: Path) -> list[str]:
    """One PNG per kernel: throughput per shape, one bar group per provider and mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return []
    written = []
    for kernel in sorted({r["kernel"] for r in rows}):
        krows = [r for r in rows if r["kernel"] == kernel and r["throughput"] is not None]
        if not krows:
            continue
        keys = sorted({(r["mode"], r["provider"]) for r in krows})
        shapes = list(dict.fromkeys(r["shape"] for r in krows))
        fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(shapes) * max(1, len(keys) / 4)), 4))
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            vals = [next((r["throughput"] for r in krows if (r["mode"], r["provider"]) == key and r["shape"] == s), 0)
                    for s in shapes]
            ax.bar([j + i * width for j in range(len(shapes))], vals, width, label=f"{key[1]} {key[0]}")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))], shapes, fontsize=7)
        ax.set_ylabel(krows[0]["unit"])
        ax.set_title(f"{kernel} ({krows[0]['device']})")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        path = out / f"kernels_{kernel}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(str(path))
    return written


def targets(rows: list[dict]) -> dict:
    """The TARGETS.md checks over the measured rows (GPU runs)."""
    by = {(r["kernel"], r["shape"], r["mode"], r["provider"]): r for r in rows if r["ms"] is not None}
    checks = []
    for (k, s, m, p), r in by.items():
        if p != "ours":
            continue
        comp = by.get((k, s, m, "compile")) or by.get((k, s, m, "compile_chunked"))
        if r["unit"] == "GB/s":
            checks.append({"kernel": k, "shape": s, "mode": m, "pct_hbm_peak": r["pct_peak"],
                           "vs_compile": comp and round(comp["ms"] / r["ms"], 2),
                           "ok": (r["pct_peak"] or 0) >= 85 and bool(comp) and comp["ms"] / r["ms"] >= 1.5})
        elif k == "fused_linear_ce":
            checks.append({"kernel": k, "shape": s, "mode": m, "vs_compile_chunked": comp and round(comp["ms"] / r["ms"], 2),
                           "mem_mb": r["peak_mb"], "compile_mem_mb": comp and comp["peak_mb"],
                           "ok": bool(comp) and r["ms"] < comp["ms"] and (r["peak_mb"] or 0) <= (comp["peak_mb"] or 0)})
        elif k == "flash_attention" and m == "fwd+bwd":
            peer = by.get((k, s, m, "flash_attn")) or by.get((k, s, m, "sdpa"))
            checks.append({"kernel": k, "shape": s, "tflops": r["throughput"],
                           "peer": peer and peer["provider"], "peer_tflops": peer and peer["throughput"],
                           "ok": bool(peer) and r["throughput"] >= peer["throughput"]})
    return {"checks": checks, "all_ok": all(c["ok"] for c in checks) if checks else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="CPU harness check: tiny shapes, temp output")
    add_output_arg(ap, "--out")
    ap.add_argument("--kernels", default="", help="comma-separated subset of kernels")
    ap.add_argument("--budget-s", type=float, default=None, help="start no new case after this many seconds")
    args = ap.parse_args(argv)
    if args.smoke:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # read at launch by kernels.dispatch
    import torch
    import triton

    device = "cpu" if args.smoke else "cuda"
    if not args.smoke and not torch.cuda.is_available():
        print("no GPU: run with --smoke on CPU", file=sys.stderr)
        return 2
    torch._dynamo.config.cache_size_limit = 64
    out = output_dir(args.out, args.smoke, "kernels")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    dev_name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    rows: list[dict] = []
    only = {k for k in args.kernels.split(",") if k}
    path = out / ("kernels_smoke.csv" if args.smoke else "kernels.csv")
    fh = path.open("w", newline="")
    writer = None
    t_start = time.perf_counter()
    for case in cases(args.smoke, only):
        if args.budget_s is not None and time.perf_counter() - t_start > args.budget_s:
            print(f"time budget of {args.budget_s:.0f} s spent: remaining cases skipped", flush=True)
            break
        kernel, shape = case["kernel"], case["shape"]
        inputs, providers, work = build(kernel, shape, device, dtype, args.smoke)
        for mode, (kind, amount) in work.items():
            for name, fn in providers.items():
                try:
                    ms, peak = measure(fn, inputs, mode, args.smoke)
                    err = ""
                except Exception as e:  # a peer that fails on this shape is reported, not fatal
                    ms, peak, err = None, None, f"{type(e).__name__}: {str(e)[:200]}"
                    if device == "cuda":
                        torch.cuda.empty_cache()
                unit = "GB/s" if kind == "bytes" else "TFLOP/s"
                thr = None if ms is None else amount / (ms * 1e-3) / (1e9 if kind == "bytes" else 1e12)
                peak_hw = (HBM_PEAK / 1e9) if kind == "bytes" else (BF16_PEAK / 1e12)
                row = {"kernel": kernel, "shape": "x".join(map(str, shape)), "dtype": str(dtype).split(".")[-1],
                       "mode": mode, "provider": name, "ms": None if ms is None else round(ms, 4),
                       "throughput": None if thr is None else float(f"{thr:.4g}"), "unit": unit,
                       "pct_peak": None if thr is None or args.smoke else round(100 * thr / peak_hw, 1),
                       "peak_mb": None if peak is None else round(peak, 1), "device": dev_name, "error": err}
                rows.append(row)
                if writer is None:
                    writer = csv.DictWriter(fh, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
                fh.flush()  # rows survive a run killed by its time limit
                pct = "" if row["pct_peak"] is None else f" {row['pct_peak']:5.1f}% peak"
                timing = "-" if ms is None else f"{ms:9.3f} ms"
                rate = "" if thr is None else f"{thr:9.1f} {unit}"
                print(f"{kernel:16s} {row['shape']:22s} {mode:8s} {name:16s} {timing} {rate}{pct} {err}", flush=True)
        del inputs, providers
    fh.close()
    meta = {"device": dev_name, "torch": torch.__version__, "triton": triton.__version__,
            "python": platform.python_version(), "hbm_peak_Bps": HBM_PEAK, "bf16_peak_flops": BF16_PEAK,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    meta["targets"] = targets(rows)
    meta["plots"] = plot(rows, out)
    (out / ("kernels_smoke_targets.json" if args.smoke else "kernels_targets.json")).write_text(json.dumps(meta, indent=1))
    if not args.smoke:
        print(json.dumps(meta["targets"], indent=1))
    failed = [r for r in rows if r["provider"] == "ours" and r["ms"] is None]
    print(f"{'smoke run: ' if args.smoke else ''}CSV written to {path}")
    print(written(out, args.smoke, f"{path.name}, {path.stem}_targets.json and plots"))
    if failed:
        print(f"our kernel failed on {len(failed)} case(s)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
