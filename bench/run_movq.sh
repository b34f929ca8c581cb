#!/usr/bin/env bash
# MoVQ encode/decode: kandinsky.c (bench_movq) vs diffusers VQModel on PyTorch CPU (bench_movq.py),
# same machine, same threads, interleaved: each round runs every variant once, one process each
# (ours per mode, then PyTorch; the order is reversed every other round), and bench/compare.py
# reports per label the min and the median over all rounds and the ratios to PyTorch.
# Builds the full-size published-config model with random weights once (movq-published/).
#
#   bench/run_movq.sh [options]
#   --threads N        threads on both sides (default: all cores, nproc)
#   --sizes LIST       image sizes in pixels, multiples of 8 (default 256,512)
#   --batch N          images per call (default 1)
#   --only OP          encode or decode (default both)
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
# default a new /tmp/kd-bench.XXXXXX). OPENBLAS_* are reported, never changed.
set -euo pipefail
# shellcheck source=bench/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
DIR=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}/movq-published
threads=$(nproc) sizes=256,512 batch=1 only="" reps=2 rounds=3 modes=fp32 autocast=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads | --batch | --reps | --rounds) kd_need_count "$@"; declare "${1#--}=$2"; shift 2 ;;
    --sizes) kd_need_value "$@"; [[ "$2" =~ ^[0-9]+(,[0-9]+)*$ ]] || kd_die "--sizes: a list like 256,512, got '$2'"
             sizes=$2; shift 2 ;;
    --only) kd_need_value "$@"; kd_check_list --only "$2" encode decode; only=$2; shift 2 ;;
    --modes) kd_need_value "$@"; kd_check_list --modes "$2" fp32 bf16 q8 bf16-q8; modes=$2; shift 2 ;;
    --torch-autocast) autocast=1; shift ;;
    --dry-run) KD_DRY_RUN=1; shift ;;
    -h | --help) kd_usage; exit 0 ;;
    *) kd_die "unknown option $1" ;;
  esac
done
cd "$KD_ROOT"
if [ ! -f "$DIR/config.json" ]; then
  if [ "$KD_DRY_RUN" = 1 ]; then echo "# [dry run] would make $DIR: $PY bench/bench_movq.py make $DIR"
  else "$PY" bench/bench_movq.py make "$DIR"; fi
fi
kd_build bench_movq
kd_header "$threads" "$KD_ROOT"
out=${KD_BENCH_OUT:-}
if [ "$KD_DRY_RUN" = 1 ]; then out=${out:-/tmp/kd-bench.XXXXXX}; else out=${out:-$(mktemp -d /tmp/kd-bench.XXXXXX)}; mkdir -p "$out"; fi
export KD_RUNS="$out/runs.tsv"
[ "$KD_DRY_RUN" = 1 ] || : >"$KD_RUNS"
echo "# movq sizes $sizes, batch $batch, ${only:-encode + decode}; $rounds rounds x $reps reps per process; ours: $modes; torch: fp32$([ "$autocast" = 1 ] && echo ', bf16 autocast')"
args=(--threads "$threads" --sizes "$sizes" --batch "$batch" --reps "$reps")
[ -z "$only" ] || args+=(--only "$only")

steps=()
for m in ${modes//,/ }; do steps+=("ours:$m"); done
steps+=(torch:fp32)
[ "$autocast" = 0 ] || steps+=(torch:autocast)
run_step() { # round step
  local r=$1 s=$2
  case "$s" in
    ours:*)
      local m=${s#ours:}
      kd_mode_args "$m"
      KD_STEP_MODE=$m kd_step "r$r kandinsky.c $m" "$out/r$r.ours-$m.jsonl" "$BUILD/bench/bench_movq" "$DIR" "${args[@]}" "${kd_margs[@]}" ;;
    torch:fp32)
      kd_step "r$r pytorch" "$out/r$r.torch.jsonl" "$PY" bench/bench_movq.py run "$DIR" "${args[@]}" ;;
    torch:autocast)
      kd_step "r$r pytorch-bf16-autocast" "$out/r$r.torch-autocast.jsonl" "$PY" bench/bench_movq.py run "$DIR" "${args[@]}" --autocast ;;
  esac
}
kd_rounds "$rounds" "${steps[@]}"
[ "$KD_DRY_RUN" = 0 ] || exit 0
"$PY" bench/compare.py --runs "$KD_RUNS" "$out"/r*.jsonl || true
echo "# raw outputs and logs: $out"
kd_failed
