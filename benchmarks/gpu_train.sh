#!/usr/bin/env bash
# GPU pretraining throughput: the ~1B Llama preset, bf16, one GPU (the 1×H200 MFU target: >= 50%).
#
#   benchmarks/gpu_train.sh [DATA_PREFIX] [extra key=value overrides ...]
#
# Without DATA_PREFIX it writes 64 M random tokens (vocab 32k) as runs/h200/tokens.{bin,idx}: throughput
# does not depend on the text. Reports median tokens/s, TFLOP/s per GPU and MFU against the stated
# 989 TFLOP/s dense bf16 peak (logging.peak_tflops in configs/pretrain/llama_1b_h200.yaml), skipping the
# first 5 steps (warm-up, allocator growth), and writes benchmarks/results/gpu_train.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
PREFIX=${1:-runs/h200/tokens}
shift || true
RUN=runs/llama_1b_h200_bench
if [[ ! -f "$PREFIX.idx" ]]; then
  mkdir -p "$(dirname "$PREFIX")"
  "$PY" - "$PREFIX" <<'PYEOF'
import sys
import numpy as np
import torch
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
prefix = sys.argv[1]
rng = np.random.default_rng(0)
builder = IndexedDatasetBuilder(prefix + ".bin", dtype=np.uint16)
for _ in range(16_000):  # 16k documents of 4k tokens
    doc = rng.integers(1, 32000, size=4096, dtype=np.int64)
    builder.add_document(torch.from_numpy(doc), [doc.size])
builder.finalize(prefix + ".idx")
PYEOF
fi
rm -rf "$RUN"
OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} torchrun --nproc-per-node 1 -m engine.stages.pretrain \
  --config configs/pretrain/llama_1b_h200.yaml data.prefix="$PREFIX" train.run_dir="$RUN" \
  train.progress=false "$@"
"$PY" - "$RUN" <<'PYEOF'
import csv, json, statistics, sys
from pathlib import Path
run = Path(sys.argv[1])
rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()][5:]
tok = statistics.median(r["tokens_per_s"] for r in rows)
tfl = statistics.median(r["tflops_per_device"] for r in rows)
mfu = statistics.median(r["mfu"] for r in rows)
peak = rows[0]["peak_tflops"]
mem = max(r.get("mem_alloc_gb", 0) for r in rows)
print(f"llama_1b bf16 1 GPU: {tok:,.0f} tokens/s, {tfl:.1f} TFLOP/s, MFU {100 * mfu:.1f}% "
      f"of {peak} TFLOP/s peak, max allocated {mem:.1f} GiB (target MFU >= 50%)")
out = Path("benchmarks/results/gpu_train.csv")
out.parent.mkdir(parents=True, exist_ok=True)
with out.open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["model", "tokens_per_s", "tflops_per_gpu", "mfu", "peak_tflops", "max_alloc_gib"])
    w.writerow(["llama_1b_bf16", round(tok), round(tfl, 1), round(mfu, 4), peak, round(mem, 1)])
PYEOF
