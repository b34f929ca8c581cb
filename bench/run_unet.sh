#!/usr/bin/env bash
# One U-Net step (batch 2): kandinsky.c vs diffusers UNet2DConditionModel on PyTorch CPU, same
# machine, same threads, one invocation. Builds the full-size 2.2 model with random weights once
# (5 GB F32 + 2.5 GB F16 under $KD_BENCH_DIR, default ~/.cache/kandinsky-bench).
#   bench/run_unet.sh [--threads N] [--latents 32,64] [--reps 3]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
ROOT=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}
threads=$(nproc)
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    *) args+=("$1" "$2"); shift 2 ;;
  esac
done
[ -f "$ROOT/unet22-f32/config.json" ] || "$PY" bench/bench_unet.py make "$ROOT/unet22-f32"
[ -f "$ROOT/unet22-f16/config.json" ] || "$PY" bench/bench_unet.py make "$ROOT/unet22-f16" --dtype f16
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target bench_unet >/dev/null
echo "# $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), threads $threads, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
out=$(mktemp)
./build/bench/bench_unet "$ROOT/unet22-f32" --threads "$threads" "${args[@]}" | tee -a "$out"
"$PY" bench/bench_unet.py run "$ROOT/unet22-f32" --threads "$threads" "${args[@]}" | tee -a "$out"
"$PY" bench/compare.py "$out"
echo "# F16 weights kept as F16 in memory (converted per layer as they are used):"
./build/bench/bench_unet "$ROOT/unet22-f16" --threads "$threads" "${args[@]}" | sed 's/"kandinsky.c"/"kandinsky.c-f16"/'
rm -f "$out"
