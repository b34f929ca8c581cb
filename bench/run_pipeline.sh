#!/usr/bin/env bash
# Full Kandinsky 2.2 text-to-image (default 256², 10 prior + 10 decoder steps, guidance 4 / 4, seed
# 42): kandinsky.c kd_generate vs diffusers KandinskyV22PriorPipeline + KandinskyV22Pipeline on
# PyTorch CPU (float32, one torch.Generator as KandinskyV22CombinedPipeline), same machine, same
# threads, one process at a time:
#   1. ours, kd_pipeline_load(low_memory = 0): everything loaded up front
#   2. ours, low_memory = 1: each stage loaded when it runs and freed after
#   3. diffusers, --torch-mode split (default): prior pipeline loaded, run, deleted + gc, then the
#      decoder pipeline (like 2.); --torch-mode both loads both first (like 1.; ≈ 20 GB + runtime)
# Prints per-stage times (bench_pipeline.c explains the stages) joined by bench/compare.py, once
# against ours with low_memory 0 and once against low_memory 1, the peak RSS of each process, and
# how far the two images differ (the same seed should give the same image).
#   bench/run_pipeline.sh [--threads N] [--size 256] [--steps 10] [--prior-steps 10] [--seed 42]
#                         [--torch-mode split|both] [--sides full,low,torch]
# Models: $KD_BENCH_DIR (default ~/.cache/kandinsky-bench)/prior22 and decoder22, built by
# bench_prior.py make (which needs unet22-f32 from bench_unet.py and movq-published from
# bench_movq.py; made here when missing). Environment: KD_REF_PYTHON, KD_BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
ROOT=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}
BUILD=${KD_BUILD_DIR:-build}
threads=$(nproc)
size=256 steps=10 psteps=10 seed=42 tmode=split sides=full,low,torch
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --prior-steps) psteps=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --torch-mode) tmode=$2; shift 2 ;;
    --sides) sides=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run_pipeline.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
source bench/bench_env.sh
[ -f "$ROOT/unet22-f32/config.json" ] || "$PY" bench/bench_unet.py make "$ROOT/unet22-f32"
[ -f "$ROOT/movq-published/config.json" ] || "$PY" bench/bench_movq.py make "$ROOT/movq-published"
[ -f "$ROOT/prior22/.complete" ] && [ -f "$ROOT/decoder22/model_index.json" ] || "$PY" bench/bench_prior.py make "$ROOT"
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_pipeline >/dev/null
kd_header "$threads" "$root"
echo "# ${size}x${size}, $psteps prior + $steps decoder steps, guidance 4 / 4, seed $seed, diffusers mode $tmode"
out=$(mktemp -d)
args=(--threads "$threads" --size "$size" --steps "$steps" --prior-steps "$psteps" --seed "$seed")
P="$ROOT/prior22" D="$ROOT/decoder22"
case ",$sides," in *,full,*)
  kd_run "kandinsky.c low_memory=0" "$out/full.err" "$BUILD/bench/bench_pipeline" "$P" "$D" "${args[@]}" \
    --low-memory 0 --out "$out/ours_full.png" | tee "$out/full.jsonl" ;; esac
case ",$sides," in *,low,*)
  kd_run "kandinsky.c low_memory=1" "$out/low.err" "$BUILD/bench/bench_pipeline" "$P" "$D" "${args[@]}" \
    --low-memory 1 --impl kandinsky.c-lowmem --out "$out/ours_low.png" | tee "$out/low.jsonl" ;; esac
case ",$sides," in *,torch,*)
  kd_run "diffusers ($tmode)" "$out/torch.err" "$PY" bench/bench_pipeline.py "$P" "$D" "${args[@]}" \
    --mode "$tmode" --out "$out/torch.png" | tee "$out/torch.jsonl" ;; esac
touch "$out/full.jsonl" "$out/low.jsonl" "$out/torch.jsonl"
echo
echo "## kandinsky.c low_memory=0 vs diffusers ($tmode)"
cat "$out/full.jsonl" "$out/torch.jsonl" > "$out/a.jsonl"
"$PY" bench/compare.py "$out/a.jsonl" | grep -v '^ratio ='
echo
echo "## kandinsky.c low_memory=1 vs diffusers ($tmode)"
sed 's/"kandinsky.c-lowmem"/"kandinsky.c"/' "$out/low.jsonl" | cat - "$out/torch.jsonl" > "$out/b.jsonl"
"$PY" bench/compare.py "$out/b.jsonl" | grep -v '^ratio ='
echo "ratio = kandinsky.c time / pytorch time (< 1: kandinsky.c is faster)"
"$PY" - "$out" <<'PY'
import os, sys
import numpy as np
from PIL import Image
d = sys.argv[1]
ims = {k: np.asarray(Image.open(os.path.join(d, f)).convert("RGB")).astype(np.int16)
       for k, f in (("ours low_memory=0", "ours_full.png"), ("ours low_memory=1", "ours_low.png"),
                    ("diffusers", "torch.png")) if os.path.exists(os.path.join(d, f))}
ref = ims.get("diffusers")
for k, v in ims.items():
    if ref is not None and k != "diffusers":
        diff = np.abs(v - ref)
        print(f"image {k} vs diffusers: max |diff| {diff.max()}, mean {diff.mean():.3f} (8-bit levels)")
PY
echo "# raw outputs, logs and images: $out"
