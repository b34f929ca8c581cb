#!/usr/bin/env bash
# Full Kandinsky 2.2 text-to-image (default 256², 10 prior + 10 decoder steps, guidance 4 / 4, seed
# 42): kandinsky.c kd_generate (bench_pipeline) vs diffusers KandinskyV22PriorPipeline +
# KandinskyV22Pipeline on PyTorch CPU (bench_pipeline.py: float32, one torch.Generator as
# KandinskyV22CombinedPipeline), same machine, same threads, one process at a time. Sides:
#   full   ours, kd_pipeline_load(low_memory = 0): everything loaded up front (label kandinsky.c)
#   low    ours, low_memory = 1: each stage loaded when it runs and freed after (kandinsky.c-lowmem)
#   torch  diffusers, --torch-mode split (default): prior pipeline loaded, run, deleted + gc, then the
#          decoder pipeline (like low); --torch-mode both loads both first (like full; ≈ 20 GB + runtime)
# Interleaved: each round runs every side once (the order is reversed every other round), and
# bench/compare.py reports per stage (bench_pipeline.c explains the stages) and label the min and
# the median over the rounds and the ratios to diffusers, with the peak RSS of each process; then
# how far each of our images differs from diffusers' of the same round (same seed, same image).
#
#   bench/run_pipeline.sh [options]
#   --threads N            threads on both sides (default: all cores, nproc)
#   --size PX              image size (default 256)
#   --steps N              decoder steps (default 10)
#   --prior-steps N        prior steps (default 10)
#   --seed N               seed (default 42)
#   --sampler NAME         decoder sampler, kandinsky.c's names, on both sides (default: DDPM)
#   --torch-mode MODE      split or both (default split)
#   --sides LIST           subset of full,low,torch (default all three)
#   --rounds R             rounds (default 3; one round takes ≈ 2.5 min at the defaults on 2 cores)
#   --dry-run              print the commands that would run, run nothing
#   -h, --help             this text
# Models: $KD_BENCH_DIR (default ~/.cache/kandinsky-bench)/prior22 and decoder22, built by
# bench_prior.py make (which needs unet22-f32 from bench_unet.py and movq-published from
# bench_movq.py; made here when missing). Environment: KD_REF_PYTHON (default
# ~/.venvs/kd-ref/bin/python), KD_BUILD_DIR (unset: build/, built when the binary is missing or
# older than the sources; set: used as it is, never configured or built), KD_BENCH_OUT (raw
# outputs, images and logs, default a new /tmp/kd-bench.XXXXXX). OPENBLAS_* are reported, never
# changed.
set -euo pipefail
# shellcheck source=bench/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
ROOT=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}
threads=$(nproc)
size=256 steps=10 psteps=10 seed=42 tmode=split sides=full,low,torch rounds=3 sampler=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads | --size | --steps | --rounds) kd_need_count "$@"; declare "${1#--}=$2"; shift 2 ;;
    --prior-steps) kd_need_count "$@"; psteps=$2; shift 2 ;;
    --seed) kd_need_value "$@"; [[ "$2" =~ ^[0-9]+$ ]] || kd_die "--seed needs a number, got '$2'"; seed=$2; shift 2 ;;
    --sampler) kd_need_value "$@"; sampler=$2; shift 2 ;;
    --torch-mode) kd_need_value "$@"; kd_check_list --torch-mode "$2" split both; tmode=$2; shift 2 ;;
    --sides) kd_need_value "$@"; kd_check_list --sides "$2" full low torch; sides=$2; shift 2 ;;
    --dry-run) KD_DRY_RUN=1; shift ;;
    -h | --help) kd_usage; exit 0 ;;
    *) kd_die "unknown option $1" ;;
  esac
done
cd "$KD_ROOT"
maybe() { # description command...: runs the command (a model maker), or prints it in a dry run
  local what=$1; shift
  if [ "$KD_DRY_RUN" = 1 ]; then echo "# [dry run] would make $what: $*"; else "$@"; fi
}
[ -f "$ROOT/unet22-f32/config.json" ] || maybe unet22-f32 "$PY" bench/bench_unet.py make "$ROOT/unet22-f32"
[ -f "$ROOT/movq-published/config.json" ] || maybe movq-published "$PY" bench/bench_movq.py make "$ROOT/movq-published"
[ -f "$ROOT/prior22/.complete" ] && [ -f "$ROOT/decoder22/model_index.json" ] || maybe "prior22 + decoder22" "$PY" bench/bench_prior.py make "$ROOT"
kd_build bench_pipeline
kd_header "$threads" "$KD_ROOT"
echo "# ${size}x${size}, $psteps prior + $steps decoder steps, guidance 4 / 4, seed $seed, sampler ${sampler:-default (DDPM)}, diffusers mode $tmode; sides $sides, $rounds rounds"
out=${KD_BENCH_OUT:-}
if [ "$KD_DRY_RUN" = 1 ]; then out=${out:-/tmp/kd-bench.XXXXXX}; else out=${out:-$(mktemp -d /tmp/kd-bench.XXXXXX)}; mkdir -p "$out"; fi
export KD_RUNS="$out/runs.tsv"
[ "$KD_DRY_RUN" = 1 ] || : >"$KD_RUNS"
args=(--threads "$threads" --size "$size" --steps "$steps" --prior-steps "$psteps" --seed "$seed")
[ -z "$sampler" ] || args+=(--sampler "$sampler")
P="$ROOT/prior22" D="$ROOT/decoder22"

rsteps=()
for s in full low torch; do [[ ",$sides," != *",$s,"* ]] || rsteps+=("$s"); done
run_step() { # round side
  local r=$1
  case "$2" in
    full) kd_step "r$r kandinsky.c low_memory=0" "$out/r$r.full.jsonl" "$BUILD/bench/bench_pipeline" "$P" "$D" "${args[@]}" \
            --low-memory 0 --out "$out/r$r.ours_full.png" ;;
    low) kd_step "r$r kandinsky.c low_memory=1" "$out/r$r.low.jsonl" "$BUILD/bench/bench_pipeline" "$P" "$D" "${args[@]}" \
            --low-memory 1 --impl kandinsky.c-lowmem --out "$out/r$r.ours_low.png" ;;
    torch) kd_step "r$r diffusers ($tmode)" "$out/r$r.torch.jsonl" "$PY" bench/bench_pipeline.py "$P" "$D" "${args[@]}" \
             --mode "$tmode" --out "$out/r$r.torch.png" ;;
  esac
}
kd_rounds "$rounds" "${rsteps[@]}"
[ "$KD_DRY_RUN" = 0 ] || exit 0
echo
echo "## kandinsky.c (low_memory=0), kandinsky.c-lowmem (low_memory=1) vs diffusers ($tmode) = pytorch"
"$PY" bench/compare.py --runs "$KD_RUNS" "$out"/r*.jsonl || true
"$PY" - "$out" "$rounds" <<'PY'
import os, sys
import numpy as np
from PIL import Image
d, rounds = sys.argv[1], int(sys.argv[2])
def load(f):
    p = os.path.join(d, f)
    return np.asarray(Image.open(p).convert("RGB")).astype(np.int16) if os.path.exists(p) else None
for r in range(1, rounds + 1):
    ref = load(f"r{r}.torch.png")
    if ref is None:
        ref = load("r1.torch.png")
    for name, f in (("ours low_memory=0", f"r{r}.ours_full.png"), ("ours low_memory=1", f"r{r}.ours_low.png")):
        v = load(f)
        if v is not None and ref is not None:
            diff = np.abs(v - ref)
            print(f"image round {r} {name} vs diffusers: max |diff| {diff.max()}, mean {diff.mean():.3f} (8-bit levels)")
PY
echo "# raw outputs, logs and images: $out"
kd_failed
