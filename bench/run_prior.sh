#!/usr/bin/env bash
# Kandinsky 2.2 prior stage: CLIP ViT-bigG text encoder (batch 2 × 77 tokens), CLIP ViT-bigG vision
# encoder (one 224² image) and one PriorTransformer step (batch 2): kandinsky.c vs transformers /
# diffusers on PyTorch CPU (float32), same machine, same threads, one invocation. Each network runs
# in its own process on each side (ours first, then torch), so each peak RSS is that network's.
# Builds the full-size published-config models with random weights once (≈ 10.6 GB under
# $KD_BENCH_DIR/prior22, default ~/.cache/kandinsky-bench; the decoder22/ folder it also lays out
# links to unet22-f32/ and movq-published/, see run_unet.sh / run_movq.sh).
#   bench/run_prior.sh [--threads N] [--reps 3] [--ops clip_text,clip_vision,prior_step]
# Environment: KD_REF_PYTHON (default ~/.venvs/kd-ref/bin/python), KD_BUILD_DIR (default build),
# KD_BENCH_DIR. Peak memory: ≈ 3.5 GB (ours) / 8 GB (torch: the F16 vision weights become F32).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
ROOT=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}
BUILD=${KD_BUILD_DIR:-build}
threads=$(nproc)
reps=3
ops=clip_text,clip_vision,prior_step
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --ops) ops=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "run_prior.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
source bench/bench_env.sh
[ -f "$ROOT/prior22/.complete" ] || "$PY" bench/bench_prior.py make "$ROOT"
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_prior >/dev/null
kd_header "$threads" "$root"
"$PY" bench/bench_prior.py params "$ROOT" | sed 's/^/# /'
out=$(mktemp -d)
for op in ${ops//,/ }; do
  kd_run "kandinsky.c $op" "$out/$op.ours.err" "$BUILD/bench/bench_prior" "$ROOT/prior22" --threads "$threads" --reps "$reps" --ops "$op" \
    | tee -a "$out/$op.jsonl"
  kd_run "pytorch $op" "$out/$op.torch.err" "$PY" bench/bench_prior.py run "$ROOT/prior22" --threads "$threads" --reps "$reps" --ops "$op" \
    | tee -a "$out/$op.jsonl"
done
for op in ${ops//,/ }; do
  "$PY" bench/compare.py "$out/$op.jsonl" | grep -v '^ratio ='
done
echo "ratio = kandinsky.c time / pytorch time (< 1: kandinsky.c is faster); peak RSS = that network's process"
echo "# raw outputs and logs: $out"
