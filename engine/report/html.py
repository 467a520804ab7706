"""One HTML page that summarises a run directory: data pipeline, tokens, training stages, kernel benchmarks.

    python -m engine.report RUN_DIR [--output PATH] [--bench-dir benchmarks/results]

Writes ``RUN_DIR/report/index.html`` (or ``--output``) and its PNG charts beside it, and prints the page's
path. What it reads, each part optional (a missing part is noted on the page):

* ``data/stats.json`` (the pipeline's book) and ``data/<stage>/stats.json`` (bytes, duplicate clusters);
* ``tokens/*.json`` (tokenized-dataset sidecars: tokens per source);
* every ``metrics.jsonl`` under RUN_DIR (pretraining, ``posttrain/{sft,reward,ppo,dpo}``, ...) with the
  ``run.json`` beside it; ``posttrain/summary.json`` (final scores);
* ``kernels_*.png`` and ``kernels_targets.json`` in ``--bench-dir`` (copied into the report).

The page has no external resources; an inline script sets ``<body data-images-ok="N/M">`` on load (images
that rendered / images), which a headless browser can read back with ``--dump-dom``.
"""

from __future__ import annotations

import argparse
import html
import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.report import plots

ROOT = Path(__file__).resolve().parents[2]
STAGE_ORDER = ("pretrain", "sft", "reward", "ppo", "dpo")
EXAMPLE = """example:
  python -m engine.report runs/demo
  python -m engine.report runs/demo --output /tmp/demo_report/index.html --bench-dir benchmarks/results
"""


class ReportError(Exception):
    """Nothing to report (or no such run directory)."""


@dataclass
class Stage:
    name: str  # path below the run directory, e.g. "pretrain" or "posttrain/ppo"
    kind: str  # pretrain | sft | reward | ppo | dpo | other
    records: list[dict]
    config: dict


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a half-written last line
        if isinstance(rec, dict):
            out.append(rec)
    return out


def load_data(run: Path) -> tuple[dict | None, dict[str, dict]]:
    """The pipeline's book and the per-stage stats files keyed by their ``stage`` name."""
    book = read_json(run / "data" / "stats.json")
    files = [read_json(f) for f in sorted((run / "data").glob("*/stats.json"))]
    return (book if isinstance(book, dict) else None), {s["stage"]: s for s in files
                                                        if isinstance(s, dict) and "stage" in s}


def load_tokens(run: Path) -> dict[str, dict]:
    """Tokenized-dataset sidecars ``tokens/*.json`` by file name."""
    files = {f.name: read_json(f) for f in sorted((run / "tokens").glob("*.json"))}
    return {k: s for k, s in files.items() if isinstance(s, dict) and s.get("format") == "megatron-indexed-dataset"}


def _kind(name: str, header: dict, records: list[dict]) -> str:
    if header.get("stage") in STAGE_ORDER:
        return header["stage"]
    last = name.rsplit("/", 1)[-1]
    if last in STAGE_ORDER:
        return last
    keys = set().union(*records) if records else set()
    return "ppo" if {"kl", "reward"} <= keys else "other"


def find_stages(run: Path, skip: Path) -> list[Stage]:
    """Every ``metrics.jsonl`` under the run (not under ``skip``), pretraining first, then post-training order."""
    stages = []
    for f in sorted(run.rglob("metrics.jsonl")):
        if skip in f.parents or any(p.startswith(".") for p in f.relative_to(run).parts):
            continue
        name = f.parent.relative_to(run).as_posix() if f.parent != run else run.name
        header = read_json(f.parent / "run.json")
        header = header if isinstance(header, dict) else {}
        records = read_jsonl(f)
        if records:
            stages.append(Stage(name, _kind(name, header, records), records, header.get("config") or {}))
    order = {k: i for i, k in enumerate(STAGE_ORDER)}
    return sorted(stages, key=lambda s: (order.get(s.kind, len(order)), s.name))


def load_summary(run: Path) -> dict | None:
    found = [s for s in map(read_json, (run / "posttrain" / "summary.json", run / "summary.json")) if isinstance(s, dict)]
    return found[0] if found else None


# -- formatting ---------------------------------------------------------------------------------
def esc(v: Any) -> str:
    return html.escape(str(v))


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, (bool, str)):
        return esc(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return esc(json.dumps(v))


def _numeric(c: Any) -> bool:
    return plots.is_number(c) or (isinstance(c, str) and c.endswith("%") and c[:-1].replace(".", "").isdigit())


def table(head: list[str], rows: list[list[Any]], cls: str = "") -> str:
    """A table; numeric cells are right-aligned (class ``n``)."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="n">{fmt(c)}</td>' if _numeric(c) else f"<td>{fmt(c)}</td>"
                                    for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def img(name: str | None, alt: str) -> str:
    return f'<figure><img src="{esc(name)}" alt="{esc(alt)}"></figure>' if name else ""


def note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _flatten(d: dict, prefix: str = "") -> list[list[Any]]:
    return [row for k, v in d.items()
            for row in (_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [[f"{prefix}{k}", v]])]


# -- sections -----------------------------------------------------------------------------------
def data_section(run: Path, out: Path) -> str:
    book, per_stage = load_data(run)
    if book is None:
        return note(f"No data-pipeline book: <code>{esc(run / 'data' / 'stats.json')}</code> is missing.")
    stages = [{**per_stage.get(s["stage"], {}), **s} for s in book.get("stages", [])]
    totals = [[k.replace("docs", "documents").replace("_s", " (s)").replace("_", " "), book.get(k)] for k in
              ("docs_in", "kept", "removed", "quarantined", "bytes_in", "kept_bytes", "balanced", "wall_s")]
    rows = [[s["stage"], s.get("docs_in"), s.get("kept"), s.get("removed_total"), s.get("bytes_in"),
             s.get("kept_bytes"), s.get("removed_bytes"), s.get("time_s")] for s in stages]
    reasons = [[s["stage"], r, n, f"{100 * n / s['docs_in']:.1f}%" if s.get("docs_in") else "–"]
               for s in stages for r, n in sorted((s.get("removed") or {}).items(), key=lambda kv: -kv[1])]
    hists = {name: s["clusters"]["cluster_size_histogram"] for name, s in per_stage.items()
             if isinstance(s.get("clusters"), dict) and s["clusters"].get("cluster_size_histogram")}
    parts = [table(["", "value"], totals, "kv"),
             "<h3>Documents and bytes through each stage</h3>",
             table(["stage", "docs in", "kept", "removed", "bytes in", "kept bytes", "removed bytes",
                    "time (s)"], rows),
             img(plots.data_funnel(stages, out), "documents and bytes left after each stage"),
             "<h3>Drop reasons</h3>",
             table(["stage", "reason", "documents", "% of stage input"], reasons) if reasons
             else note("No documents were removed."),
             img(plots.drop_reasons(stages, out), "documents removed per stage and reason"),
             "<h3>Duplicate clusters</h3>"]
    if hists:
        parts.append(table(["stage", "clusters", "documents removed"],
                           [[n, per_stage[n]["clusters"].get("clusters"), per_stage[n]["clusters"].get("removed")]
                            for n in hists]))
        parts.append(img(plots.cluster_hist(hists, out), "duplicate-cluster size histogram"))
    else:
        parts.append(note("No duplicate-cluster histogram (no <code>clusters</code> in the stage stats files)."))
    return "".join(parts)


def tokens_section(run: Path, out: Path) -> str:
    sidecars = load_tokens(run)
    if not sidecars:
        return note(f"No tokenized dataset: no <code>{esc(run / 'tokens')}/*.json</code> sidecar.")
    rows, by_source = [], {}
    for name, s in sidecars.items():
        tok = s.get("tokenizer") or {}
        rows.append([name, s.get("documents"), s.get("tokens"), s.get("dtype"), tok.get("kind"),
                     tok.get("vocab_size")])
        for src, n in (s.get("tokens_by_source") or {}).items():
            by_source[src] = by_source.get(src, 0) + n
    parts = [table(["dataset", "documents", "tokens", "dtype", "tokenizer", "vocab"], rows)]
    if by_source:
        parts += [table(["source", "tokens"], sorted(by_source.items(), key=lambda kv: -kv[1])),
                  img(plots.tokens_by_source(by_source, out), "tokens per source")]
    return "".join(parts)


def _median(recs: list[dict], key: str) -> float | None:
    vals = plots.series(recs, key)[1]
    return statistics.median(vals) if vals else None


def _last(recs: list[dict], key: str) -> float | None:
    vals = plots.series(recs, key)[1]
    return vals[-1] if vals else None


def stage_row(s: Stage) -> list[Any]:
    recs = s.records
    mfu = _median(recs, "mfu")
    has_tps = plots.series(recs, "tokens_per_s")[0]
    secs = sum(sum(plots.series(recs, k)[1]) for k in ("step_time_s", "gen_time_s", "score_time_s", "train_time_s"))
    finals = [f"{k}={fmt(_last(recs, k))}" for k in sorted(set().union(*recs))
              if ("acc" in k.lower() or k in ("reward", "kl")) and _last(recs, k) is not None]
    return [s.name, s.kind, len(recs), recs[-1].get("step"), _last(recs, "loss"), _last(recs, "eval_loss"),
            _median(recs, "tokens_per_s"), f"{100 * mfu:.1f}%" if mfu is not None else
            ("n/a on CPU" if has_tps else "–"), secs or None, ", ".join(finals) or "–"]


def training_section(stages: list[Stage], out: Path) -> str:
    if not stages:
        return note("No training stages: no <code>metrics.jsonl</code> under the run directory.")
    named = [(s.name, s.records) for s in stages]
    parts = [table(["stage", "kind", "records", "last step", "final loss", "final eval loss",
                    "median tokens/s", "MFU", "time (s)", "final metrics"], [stage_row(s) for s in stages]),
             "<h3>Loss curves</h3>", img(plots.loss_curves(named, out), "loss curves per stage")]
    drawn = {"loss", "eval_loss", "policy_loss", "value_loss", "tokens_per_s", "mfu", "tflops_per_device"}
    for s in stages:
        slug = s.name.replace("/", "_")
        keys = sorted(set().union(*s.records))
        acc = [k for k in keys if "acc" in k.lower()]
        if acc:
            parts += [f"<h3>{esc(s.name)}: accuracy</h3>",
                      img(plots.metric_panels(s.name, s.records, acc, out, f"{slug}_accuracy.png",
                                              hlines={k: (0.5, "chance") for k in acc}), f"{s.name} accuracy")]
        if s.kind == "ppo":
            target = (s.config.get("ppo") or {}).get("target_kl")
            hl = {"kl": (float(target), f"kl target {target:g}")} if plots.is_number(target) else {}
            parts += [f"<h3>{esc(s.name)}: reward and KL</h3>",
                      img(plots.metric_panels(s.name, s.records, ["reward", "kl"], out, f"{slug}_reward_kl.png",
                                              hlines=hl, twin={"kl": "kl_coef"}), f"{s.name} reward and KL")]
            if not hl:
                parts.append(note("No KL target in run.json (<code>config.ppo.target_kl</code>)."))
        rest = [k for k in keys if k not in drawn and k not in plots.NOT_METRICS and k not in acc
                and not (s.kind == "ppo" and k in ("reward", "kl", "kl_coef"))][:12]
        name = plots.metric_panels(s.name, s.records, rest, out, f"{slug}_metrics.png")
        if name:
            parts += [f"<h3>{esc(s.name)}: other metrics</h3>", img(name, f"{s.name} other metrics")]
    if not any(s.name.startswith("posttrain/") for s in stages):
        parts.append(note("No post-training stages (<code>posttrain/{sft,reward,ppo,dpo}/metrics.jsonl</code>)."))
    parts += ["<h3>Throughput and MFU</h3>", img(plots.throughput(named, out), "tokens/s and MFU")]
    if not any(plots.series(s.records, "mfu")[0] for s in stages):
        parts.append(note("MFU: n/a on CPU (null in the metrics: no peak FLOP/s known for this device)."))
    return "".join(parts)


def summary_section(run: Path) -> str:
    s = load_summary(run)
    if s is None:
        return note(f"No post-training summary (<code>{esc(run / 'posttrain' / 'summary.json')}</code>).")
    return table(["metric", "value"], _flatten(s), "kv")


def bench_section(bench: Path, out: Path) -> str:
    pngs = sorted(p for p in bench.glob("kernels_*.png") if "smoke" not in p.name) if bench.is_dir() else []
    if not pngs:
        return note(f"No kernel benchmark plots in <code>{esc(bench)}</code> (<code>make bench-kernels</code> "
                    "on a GPU writes <code>kernels_*.png</code>).")
    parts = []
    meta = read_json(bench / "kernels_targets.json")
    if isinstance(meta, dict):
        t = meta.get("targets") or {}
        parts.append(table(["", "value"], [["device", meta.get("device")], ["date", meta.get("date")],
                                           ["targets all met", t.get("all_ok")]], "kv"))
    for p in pngs:
        shutil.copyfile(p, out / p.name)
        parts.append(img(p.name, p.stem))
    return "".join(parts)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1180px;padding:1em 2em;
color:#222;background:#fff}
h1{border-bottom:3px solid #3b7dd8;padding-bottom:.3em}h2{margin-top:2em;border-bottom:1px solid #ccc}
nav a{margin-right:1em}code{background:#f3f3f3;padding:0 .2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ddd;padding:.25em .6em}
th{background:#f0f4fa;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.kv td:first-child{font-weight:600}figure{margin:.8em 0}img{max-width:100%;border:1px solid #eee}
.note{color:#7a5b00;background:#fff8e1;border-left:4px solid #f0c040;padding:.4em .8em}
.meta{color:#666;font-size:.9em}
"""
SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesOk = ok + "/" + imgs.length;
  document.getElementById("images-status").textContent = ok + " of " + imgs.length + " images rendered";
});
"""


def build_report(run_dir: str | Path, output: str | Path | None = None,
                 bench_dir: str | Path | None = None) -> Path:
    """Write the page (and its PNGs beside it); returns the page's path. Raises ``ReportError``."""
    run = Path(run_dir).resolve()
    if not run.is_dir():
        raise ReportError(f"run directory {run} does not exist")
    page = Path(output).resolve() if output else run / "report" / "index.html"
    out = page.parent
    stages = find_stages(run, out)
    if not ((run / "data" / "stats.json").is_file() or load_tokens(run) or stages or load_summary(run)):
        raise ReportError(f"nothing to report in {run}: expected data/stats.json, tokens/*.json, "
                          "a metrics.jsonl (e.g. pretrain/metrics.jsonl) or posttrain/summary.json")
    out.mkdir(parents=True, exist_ok=True)
    bench = Path(bench_dir) if bench_dir else ROOT / "benchmarks" / "results"
    sections = [("data", "Data pipeline", data_section(run, out)),
                ("tokens", "Tokens", tokens_section(run, out)),
                ("training", "Training stages", training_section(stages, out)),
                ("summary", "Post-training scores", summary_section(run)),
                ("kernels", "Kernel benchmarks", bench_section(bench.resolve(), out))]
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>' for sid, title, content in sections)
    page.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Run report: {esc(run.name)}</title>
<style>{CSS}</style></head>
<body><h1>Run report: {esc(run.name)}</h1>
<p class="meta">run directory <code>{esc(run)}</code> · generated {esc(time.strftime("%Y-%m-%d %H:%M:%S"))} ·
<span id="images-status">images not checked</span></p>
<nav>{nav}</nav>{body}
<script>{SCRIPT}</script></body></html>
""")
    return page


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.report", description=__doc__.split("\n\n")[0],
                                 epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (e.g. runs/demo)")
    ap.add_argument("--output", default=None, help="the page to write (default RUN_DIR/report/index.html)")
    ap.add_argument("--bench-dir", default=None,
                    help="kernel benchmark results (default benchmarks/results in the repository)")
    args = ap.parse_args(argv)
    try:
        page = build_report(args.run_dir, args.output, args.bench_dir)
    except ReportError as e:
        print(f"engine.report: error: {e}", file=sys.stderr)
        return 2
    print(page)
    return 0

