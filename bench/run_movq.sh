#!/usr/bin/env bash
# MoVQ encode/decode: kandinsky.c vs diffusers VQModel on PyTorch CPU, same machine, same threads,
# one invocation. Builds the full-size published-config model with random weights once.
#   bench/run_movq.sh [--threads N] [--sizes 256,512] [--batch 1] [--reps 3]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
DIR=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}/movq-published
threads=$(nproc)
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    *) args+=("$1" "$2"); shift 2 ;;
  esac
done
[ -f "$DIR/config.json" ] || "$PY" bench/bench_movq.py make "$DIR"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target bench_movq >/dev/null
echo "# $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), threads $threads, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
out=$(mktemp)
./build/bench/bench_movq "$DIR" --threads "$threads" "${args[@]}" | tee -a "$out"
"$PY" bench/bench_movq.py run "$DIR" --threads "$threads" "${args[@]}" | tee -a "$out"
"$PY" bench/compare.py "$out"
rm -f "$out"
