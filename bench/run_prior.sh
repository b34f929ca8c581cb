#!/usr/bin/env bash
# Kandinsky 2.2 prior stage: CLIP ViT-bigG text encoder (batch 2 × 77 tokens), CLIP ViT-bigG vision
# encoder (one 224² image) and one PriorTransformer step (batch 2): kandinsky.c (bench_prior) vs
# transformers / diffusers on PyTorch CPU (bench_prior.py, float32), same machine, same threads,
# interleaved: each round runs every network and variant once, each in its own process (so each
# peak RSS is that network's; per network ours per mode, then PyTorch; the order of the whole round
# is reversed every other round), and bench/compare.py reports per label the min and the median over
# all rounds and the ratios to PyTorch. Builds the full-size published-config models with random
# weights once (≈ 10.6 GB under $KD_BENCH_DIR/prior22; the decoder22/ folder it also lays out links
# to unet22-f32/ and movq-published/, see run_unet.sh / run_movq.sh).
#
#   bench/run_prior.sh [options]
#   --threads N        threads on both sides (default: all cores, nproc)
#   --ops LIST         networks (default clip_text,clip_vision,prior_step)
#   --reps N           timed calls per process after one warm-up (default 2)
#   --rounds R         rounds (default 3)
#   --modes LIST       our variants, comma-separated (default fp32): fp32 (as built), bf16
#                      (--precision bf16, label kandinsky.c-bf16), q8 (--weights q8, kandinsky.c-q8),
#                      bf16-q8 (both, kandinsky.c-bf16-q8); a run that did not get the mode (no BF16
#                      products on this CPU, or a build without the flags) is labelled
#                      <its label>[asked-MODE] and warned about
#   --torch-autocast   also run PyTorch under torch.autocast("cpu", dtype=torch.bfloat16)
#                      (label pytorch-bf16-autocast)
#   --dry-run          print the commands that would run, run nothing
#   -h, --help         this text
# Environment: KD_REF_PYTHON (default ~/.venvs/kd-ref/bin/python), KD_BENCH_DIR (models, default
# ~/.cache/kandinsky-bench), KD_BUILD_DIR (unset: build/, built when the binary is missing or older
# than the sources; set: used as it is, never configured or built), KD_BENCH_OUT (raw outputs,
# default a new /tmp/kd-bench.XXXXXX). Peak memory: ≈ 3.5 GB (ours) / 11 GB (torch: the F16
# vision weights become F32). OPENBLAS_* are reported, never changed.
set -euo pipefail
# shellcheck source=bench/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
ROOT=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}
threads=$(nproc) reps=2 rounds=3 modes=fp32 autocast=0
ops=clip_text,clip_vision,prior_step
while [ $# -gt 0 ]; do
  case "$1" in
    --threads | --reps | --rounds) kd_need_count "$@"; declare "${1#--}=$2"; shift 2 ;;
    --ops) kd_need_value "$@"; kd_check_list --ops "$2" clip_text clip_vision prior_step; ops=$2; shift 2 ;;
    --modes) kd_need_value "$@"; kd_check_list --modes "$2" fp32 bf16 q8 bf16-q8; modes=$2; shift 2 ;;
    --torch-autocast) autocast=1; shift ;;
    --dry-run) KD_DRY_RUN=1; shift ;;
    -h | --help) kd_usage; exit 0 ;;
    *) kd_die "unknown option $1" ;;
  esac
done
cd "$KD_ROOT"
if [ ! -f "$ROOT/prior22/.complete" ]; then
  if [ "$KD_DRY_RUN" = 1 ]; then echo "# [dry run] would make $ROOT/prior22: $PY bench/bench_prior.py make $ROOT"
  else "$PY" bench/bench_prior.py make "$ROOT"; fi
fi
kd_build bench_prior
kd_header "$threads" "$KD_ROOT"
[ "$KD_DRY_RUN" = 1 ] || "$PY" bench/bench_prior.py params "$ROOT" | sed 's/^/# /'
out=${KD_BENCH_OUT:-}
if [ "$KD_DRY_RUN" = 1 ]; then out=${out:-/tmp/kd-bench.XXXXXX}; else out=${out:-$(mktemp -d /tmp/kd-bench.XXXXXX)}; mkdir -p "$out"; fi
export KD_RUNS="$out/runs.tsv"
[ "$KD_DRY_RUN" = 1 ] || : >"$KD_RUNS"
echo "# prior ops $ops; $rounds rounds x $reps reps per process; ours: $modes; torch: fp32$([ "$autocast" = 1 ] && echo ', bf16 autocast')"
args=(--threads "$threads" --reps "$reps")

steps=()
for op in ${ops//,/ }; do
  for m in ${modes//,/ }; do steps+=("$op:ours:$m"); done
  steps+=("$op:torch:fp32")
  [ "$autocast" = 0 ] || steps+=("$op:torch:autocast")
done
run_step() { # round op:side:variant
  local r=$1 op=${2%%:*} s=${2#*:}
  case "$s" in
    ours:*)
      local m=${s#ours:} f="$out/r$r.$op.ours-${s#ours:}.jsonl"
      kd_mode_args "$m"
      KD_STEP_MODE=$m kd_step "r$r kandinsky.c $m $op" "$f" "$BUILD/bench/bench_prior" "$ROOT/prior22" "${args[@]}" --ops "$op" "${kd_margs[@]}" ;;
    torch:fp32)
      kd_step "r$r pytorch $op" "$out/r$r.$op.torch.jsonl" "$PY" bench/bench_prior.py run "$ROOT/prior22" "${args[@]}" --ops "$op" ;;
    torch:autocast)
      kd_step "r$r pytorch-bf16-autocast $op" "$out/r$r.$op.torch-autocast.jsonl" "$PY" bench/bench_prior.py run "$ROOT/prior22" \
        "${args[@]}" --ops "$op" --autocast ;;
  esac
}
kd_rounds "$rounds" "${steps[@]}"
[ "$KD_DRY_RUN" = 0 ] || exit 0
"$PY" bench/compare.py --runs "$KD_RUNS" "$out"/r*.jsonl || true
echo "# peak RSS = that network's process (max over rounds)"
echo "# raw outputs and logs: $out"
kd_failed
