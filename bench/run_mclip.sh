#!/usr/bin/env bash
# 2.1 text encoder (MultilingualCLIP: XLM-R large + 1024→768) on batch 2 × 77: kandinsky.c vs
# diffusers' MultilingualCLIP on PyTorch CPU, same machine, same threads, one invocation.
# Builds the full-size published-config model with random weights once (2.2 GB).
#   bench/run_mclip.sh [--threads N] [--reps 3]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
DIR=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}/mclip-large
BUILD=${KD_BUILD_DIR:-build}
threads=$(nproc)
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    *) args+=("$1" "$2"); shift 2 ;;
  esac
done
[ -f "$DIR/config.json" ] || "$PY" bench/bench_mclip.py make "$DIR"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_mclip >/dev/null
echo "# $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), threads $threads, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
out=$(mktemp)
"./$BUILD/bench/bench_mclip" "$DIR" --threads "$threads" "${args[@]}" | tee -a "$out"
"$PY" bench/bench_mclip.py run "$DIR" --threads "$threads" "${args[@]}" | tee -a "$out"
"$PY" bench/compare.py "$out"
rm -f "$out"
