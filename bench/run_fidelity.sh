#!/usr/bin/env bash
# What --precision bf16 and --weights q8 cost in fidelity on the full-size random-weight 2.2 models
# (built by the bench_*.py builders under $KD_BENCH_DIR), and what they save in time and memory:
#   1. bench_fidelity: relative L2 error vs fp32 (weights as stored) of one U-Net step (batch 2,
#      --latents L), one MoVQ decode, one prior step, the CLIP text and vision embeddings;
#   2. the whole 2.2 pipeline (bench_pipeline, low-memory mode, --size S, --steps N prior and
#      decoder, seed 42) in fp32, bf16, q8 and bf16-q8: time, peak RSS and the PSNR of each image
#      against the fp32 one (kt_imgcmp).
#
#   bench/run_fidelity.sh [options]
#   --threads N     threads (default: all cores, nproc)
#   --latents L     latent side of the U-Net step and MoVQ decode (default 64: a 512² image)
#   --size S        pipeline image side (default 256)
#   --steps N       pipeline prior and decoder steps (default 10)
#   --skip-nets     only the pipeline part
#   --skip-pipeline only the per-network part
#   --dry-run       print the commands, run nothing
#   -h, --help      this text
# Environment: KD_BENCH_DIR (models, default ~/.cache/kandinsky-bench: prior22/, decoder22/),
# KD_BUILD_DIR (unset: build/, built when stale; set: used as it is), KD_BENCH_OUT (outputs).
set -euo pipefail
# shellcheck source=bench/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
ROOT=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}
threads=$(nproc) latents=64 size=256 steps=10 nets=1 pipeline=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads | --latents | --size | --steps) kd_need_count "$@"; declare "${1#--}=$2"; shift 2 ;;
    --skip-nets) nets=0; shift ;;
    --skip-pipeline) pipeline=0; shift ;;
    --dry-run) KD_DRY_RUN=1; shift ;;
    -h | --help) kd_usage; exit 0 ;;
    *) kd_die "unknown option $1" ;;
  esac
done
cd "$KD_ROOT"
for d in prior22/prior decoder22/unet; do
  [ -f "$ROOT/$d/config.json" ] || [ "$KD_DRY_RUN" = 1 ] || kd_die "$ROOT/$d is missing: build the models with bench/run_pipeline.sh first"
done
kd_build bench_fidelity bench_pipeline
IMGCMP="$BUILD/tests/kt_imgcmp"
if [ ! -x "$IMGCMP" ] && [ "$KD_BUILD_DEFAULT" = 1 ] && [ "$KD_DRY_RUN" = 0 ]; then
  cmake --build "$BUILD" -j"$(nproc)" --target kt_imgcmp >/dev/null
fi
kd_header "$threads" "$KD_ROOT"
out=${KD_BENCH_OUT:-}
if [ "$KD_DRY_RUN" = 1 ]; then out=${out:-/tmp/kd-bench.XXXXXX}; else out=${out:-$(mktemp -d /tmp/kd-bench.XXXXXX)}; mkdir -p "$out"; fi
export KD_RUNS="$out/runs.tsv"
[ "$KD_DRY_RUN" = 1 ] || : >"$KD_RUNS"

if [ "$nets" = 1 ]; then
  echo "# per network: relative L2 vs fp32 with the weights as stored (U-Net and MoVQ at latents $latents)"
  kd_step "fidelity decoder" "$out/fid-decoder.jsonl" "$BUILD/bench/bench_fidelity" --decoder "$ROOT/decoder22" --threads "$threads" --latents "$latents"
  kd_step "fidelity prior" "$out/fid-prior.jsonl" "$BUILD/bench/bench_fidelity" --prior "$ROOT/prior22" --threads "$threads"
fi

if [ "$pipeline" = 1 ]; then
  echo "# pipeline ${size}², $steps + $steps steps, low-memory, seed 42: time, peak RSS, PSNR vs fp32"
  for m in fp32 bf16 q8 bf16-q8; do
    kd_mode_args "$m"
    kd_step "pipeline $m" "$out/pipe-$m.jsonl" "$BUILD/bench/bench_pipeline" "$ROOT/prior22" "$ROOT/decoder22" \
      --threads "$threads" --low-memory 1 --size "$size" --steps "$steps" --prior-steps "$steps" --seed 42 \
      --out "$out/pipe-$m.png" "${kd_margs[@]}"
  done
  if [ "$KD_DRY_RUN" = 0 ]; then
    for m in bf16 q8 bf16-q8; do
      [ -f "$out/pipe-$m.png" ] && [ -f "$out/pipe-fp32.png" ] || continue
      echo "# $m vs fp32: $("$IMGCMP" psnr "$out/pipe-fp32.png" "$out/pipe-$m.png" 0 || true)"
    done
  fi
fi
echo "# raw outputs: $out"
kd_failed
