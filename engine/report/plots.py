"""The run report's charts (``engine/report/html.py``): matplotlib figures on the Agg canvas, saved as PNGs.

Each function writes one PNG into ``out`` and returns its file name (relative to ``out``), or ``None``
when there is nothing to draw. No pyplot: figures are plain ``Figure`` objects, so nothing global changes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

DPI = 110
# keys never drawn as curves: bookkeeping, not metrics
NOT_METRICS = {"step", "iteration", "consumed_samples", "peak_tflops", "skipped"}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def series(records: Sequence[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that hold a finite number under ``key``."""
    xs, ys = [], []
    for i, r in enumerate(records):
        v = r.get(key)
        if is_number(v):
            xs.append(r.get("step", i + 1))
            ys.append(float(v))
    return xs, ys


def _figure(rows: int, cols: int, width: float = 5.2, height: float = 3.2) -> tuple[Figure, list[Any]]:
    fig = Figure(figsize=(width * cols, height * rows), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]
    return fig, axes


def _save(fig: Figure, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=DPI)
    return name


def _plot(ax: Any, xs: list[float], ys: list[float], label: str, **kw: Any) -> None:
    ax.plot(xs, ys, label=label, marker="o" if len(xs) <= 12 else None, markersize=4, **kw)


def _grid(n: int, cols: int = 2) -> tuple[int, int]:
    cols = min(cols, max(n, 1))
    return math.ceil(n / cols), cols


def data_funnel(stages: list[dict], out: Path) -> str | None:
    """Documents (and bytes, where the stage files carry them) left after each pipeline stage."""
    if not stages:
        return None
    labels = ["input"] + [s["stage"] for s in stages]
    docs = [stages[0]["docs_in"]] + [s["kept"] for s in stages]
    with_bytes = all(is_number(s.get("bytes_in")) and is_number(s.get("kept_bytes")) for s in stages)
    fig, axes = _figure(1, 2 if with_bytes else 1)
    panels = [(axes[0], docs, "documents", "{:,.0f}")]
    if with_bytes:
        mb = [stages[0]["bytes_in"] / 1e6] + [s["kept_bytes"] / 1e6 for s in stages]
        panels.append((axes[1], mb, "text (MB)", "{:,.1f}"))
    for ax, values, unit, fmt in panels:
        bars = ax.bar(labels, values, color=["#888"] + ["#3b7dd8"] * len(stages))
        ax.bar_label(bars, [fmt.format(v) for v in values], fontsize=8)
        ax.set_ylabel(unit)
        ax.set_title(f"{unit} left after each stage")
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(y=0.12)
    return _save(fig, out, "data_funnel.png")


def drop_reasons(stages: list[dict], out: Path) -> str | None:
    """Removed documents per (stage, reason), one horizontal bar each."""
    rows = [(f"{s['stage']}: {reason}", n, i) for i, s in enumerate(stages)
            for reason, n in sorted((s.get("removed") or {}).items(), key=lambda kv: -kv[1])]
    if not rows:
        return None
    fig = Figure(figsize=(9, 0.8 + 0.28 * len(rows)), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = ["#d8703b", "#3b7dd8", "#4aa564", "#9b59b6", "#888888"]
    bars = ax.barh([r[0] for r in rows][::-1], [r[1] for r in rows][::-1],
                   color=[colors[r[2] % len(colors)] for r in rows][::-1])
    ax.bar_label(bars, [f"{r[1]:,}" for r in rows][::-1], fontsize=7, padding=2)
    ax.set_xlabel("documents removed")
    ax.set_title("drop reasons")
    ax.tick_params(axis="y", labelsize=7)
    ax.margins(x=0.12)
    return _save(fig, out, "data_drop_reasons.png")


def cluster_hist(hists: dict[str, dict[str, int]], out: Path) -> str | None:
    """Duplicate-cluster sizes (documents per cluster → clusters) for each dedup stage."""
    if not hists:
        return None
    rows, cols = _grid(len(hists))
    fig, axes = _figure(rows, cols)
    for ax, (stage, hist) in zip(axes, hists.items()):
        sizes = sorted(hist, key=lambda k: int(k))
        bars = ax.bar([str(s) for s in sizes], [hist[s] for s in sizes], color="#4aa564")
        ax.bar_label(bars, [f"{hist[s]:,}" for s in sizes], fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel("cluster size (documents)")
        ax.set_ylabel("clusters")
        ax.set_title(f"{stage}: duplicate-cluster sizes")
        ax.margins(y=0.15)
    for ax in axes[len(hists):]:
        ax.set_visible(False)
    return _save(fig, out, "data_clusters.png")


def tokens_by_source(counts: dict[str, int], out: Path) -> str | None:
    if not counts:
        return None
    items = sorted(counts.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(8, 1.2 + 0.35 * len(items)), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.barh([k for k, _ in items], [v for _, v in items], color="#9b59b6")
    ax.bar_label(bars, [f"{v:,}" for _, v in items], fontsize=8, padding=2)
    ax.set_xlabel("tokens")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_title("tokens per source")
    ax.margins(x=0.15)
    return _save(fig, out, "tokens_by_source.png")


def loss_curves(stages: list[tuple[str, list[dict]]], out: Path) -> str | None:
    """One panel per training stage: ``loss`` and ``eval_loss`` (PPO: policy and value loss)."""
    keys = ("loss", "eval_loss", "policy_loss", "value_loss")
    panels = [(name, recs) for name, recs in stages if any(series(recs, k)[0] for k in keys)]
    if not panels:
        return None
    rows, cols = _grid(len(panels))
    fig, axes = _figure(rows, cols)
    for ax, (name, recs) in zip(axes, panels):
        for key in keys:
            xs, ys = series(recs, key)
            if xs:
                _plot(ax, xs, ys, key.replace("_", " "), linestyle="--" if key == "eval_loss" else "-")
        ax.set_title(f"{name}: loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return _save(fig, out, "loss_curves.png")


def metric_panels(name: str, recs: list[dict], keys: list[str], out: Path, file: str,
                  hlines: dict[str, tuple[float, str]] | None = None, twin: dict[str, str] | None = None
                  ) -> str | None:
    """One panel per key (a horizontal reference line per ``hlines[key]``, a second y axis per ``twin[key]``)."""
    keys = [k for k in keys if series(recs, k)[0]]
    if not keys:
        return None
    hlines, twin = hlines or {}, twin or {}
    rows, cols = _grid(len(keys), 3 if len(keys) > 4 else 2)
    fig, axes = _figure(rows, cols, width=4.6)
    for ax, key in zip(axes, keys):
        xs, ys = series(recs, key)
        if len(xs) == 1:  # a final value (e.g. held-out RM accuracy): a labelled bar, not a lone dot
            bars = ax.bar([f"step {xs[0]:g}"], ys, width=0.4, color="#3b7dd8", label=key.replace("_", " "))
            ax.bar_label(bars, [f"{ys[0]:.4g}"], fontsize=9)
            ax.set_xlim(-1, 1)
        else:
            _plot(ax, xs, ys, key.replace("_", " "))
        if key in hlines:
            ax.axhline(hlines[key][0], color="#d8703b", linestyle="--", label=hlines[key][1])
        if "acc" in key.lower() and all(0 <= y <= 1 for y in ys):
            ax.set_ylim(0, 1.05)
        if key in twin and series(recs, twin[key])[0]:
            ax2 = ax.twinx()
            _plot(ax2, *series(recs, twin[key]), twin[key].replace("_", " "), color="#888", linestyle=":")
            ax2.set_ylabel(twin[key].replace("_", " "))
            ax2.legend(fontsize=7, loc="lower right")
        ax.set_title(f"{name}: {key.replace('_', ' ')}")
        ax.set_xlabel("step")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        if key in hlines:
            ax.legend(fontsize=7, loc="best")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    return _save(fig, out, file)


def throughput(stages: list[tuple[str, list[dict]]], out: Path) -> str | None:
    """Tokens/s per stage, and MFU where measured (else TFLOP/s per device, MFU marked n/a on CPU)."""
    tps = [(n, series(r, "tokens_per_s")) for n, r in stages if series(r, "tokens_per_s")[0]]
    mfu = [(n, series(r, "mfu")) for n, r in stages if series(r, "mfu")[0]]
    tfl = [(n, series(r, "tflops_per_device")) for n, r in stages if series(r, "tflops_per_device")[0]]
    if not tps and not mfu and not tfl:
        return None
    fig, axes = _figure(1, 2)
    for n, (xs, ys) in tps:
        _plot(axes[0], xs, ys, n)
    axes[0].set_title("throughput")
    axes[0].set_ylabel("tokens / s")
    right, key = (mfu, "MFU") if mfu else (tfl, "TFLOP/s per device")
    for n, (xs, ys) in right:
        _plot(axes[1], xs, [100 * y for y in ys] if mfu else ys, n)
    axes[1].set_title("MFU" if mfu else "TFLOP/s per device (MFU: n/a on CPU)")
    axes[1].set_ylabel("MFU (%)" if mfu else key)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return _save(fig, out, "throughput.png")
