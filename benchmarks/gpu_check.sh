#!/usr/bin/env bash
# One-shot kernel check on a lent GPU (H200; torch + triton preinstalled, no network), < 10 minutes:
#   1. the kernel tests on CUDA (compiled Triton; the sm_90 compile test included),
#   2. benchmarks/kernels.py: sweeps vs torch eager / torch.compile / Liger / flash-attn when present,
#   3. post-training on the GPU: the GRPO/PPO unit tests and the fast base → SFT → GRPO learning test
#      (batches on the model's device, CUDA sampling), log in posttrain_gpu.log.
# Results go to benchmarks/results/ (to commit) and, when $OUT is set, are copied there too.
# Usage (from anywhere): bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
RES=benchmarks/results
mkdir -p "$RES" .cache/triton .cache/inductor
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$PWD/.cache/triton}
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-$PWD/.cache/inductor}
unset TRITON_INTERPRET
status=0

{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: n/a"
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
} | tee "$RES/gpu_env.txt"

if $PY -c "import pytest" 2>/dev/null; then
  # -o addopts= drops the repo's pytest-timeout flags in case the plugin is absent there
  timeout 240 $PY -m pytest -q tests/kernels -o addopts="" -m "not slow" -p no:cacheprovider -rs 2>&1 \
    | tee "$RES/gpu_tests.log"
  test "${PIPESTATUS[0]}" -eq 0 || status=1
else
  echo "pytest not installed: GPU tests skipped" | tee "$RES/gpu_tests.log"
fi

timeout 270 $PY benchmarks/kernels.py --out "$RES" --budget-s 210 2>&1 | tee "$RES/kernels_bench.log"
test "${PIPESTATUS[0]}" -eq 0 || status=1

if $PY -c "import pytest" 2>/dev/null; then
  timeout 120 $PY -m pytest -q tests/engine/posttrain/test_grpo.py tests/engine/posttrain/test_learning_fast.py \
    -k "not rloo" -o addopts="" -p no:cacheprovider -rs 2>&1 | tee "$RES/posttrain_gpu.log"
  test "${PIPESTATUS[0]}" -eq 0 || status=1
fi

if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  cp "$RES"/gpu_env.txt "$RES"/gpu_tests.log "$RES"/kernels* "$RES"/posttrain_gpu.log "$OUT"/ 2>/dev/null || true
fi
echo "gpu_check: exit $status (results in $RES${OUT:+ and $OUT})"
exit $status
