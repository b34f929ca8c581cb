#!/usr/bin/env bash
# Kandinsky 2.0 at full size: one U-Net step (batch 2, latent 64 = 512²) and the two text encoders
# (mCLIP-XLMR large, mT5-small encoder; batch 2 × 77): kandinsky.c (bench_k20) vs the ORIGINAL
# PyTorch modules of ai-forever/Kandinsky-2 (bench_k20.py: Text2ImUNet with CONFIG_2_0,
# MultilingualCLIP, transformers' MT5EncoderModel), same machine, same threads, interleaved
# rounds (the order reversed every other round); bench/compare.py reports min, median and ratios.
# Builds the random-weight folder in the published layout once (7.7 GB: Kandinsky-2-0.pt,
# text_encoder1/, text_encoder2/ as torch.save files).
#
#   bench/run_k20.sh --kandinsky2 CHECKOUT [options]
#   --kandinsky2 DIR   a checkout of ai-forever/Kandinsky-2 (kept outside this tree), e.g.
#                      git --git-dir=<fetched bare repo> archive HEAD kandinsky2 | tar -x -C DIR
#   --threads N        threads on both sides (default: all cores, nproc)
#   --latents N        latent side of the U-Net step (default 64)
#   --reps N           timed calls per process after one warm-up (default 2)
#   --rounds R         rounds (default 2)
#   --modes LIST       our variants (default fp32): fp32, bf16, q8, bf16-q8 (see run_unet.sh)
#   --dry-run          print the commands that would run, run nothing
#   -h, --help         this text
# Environment: KD_REF_PYTHON, KD_BENCH_DIR (folder k20/ inside), KD_BUILD_DIR, KD_BENCH_OUT as the
# other scripts.
set -euo pipefail
# shellcheck source=bench/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
DIR=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}/k20
threads=$(nproc) latents=64 reps=2 rounds=2 modes=fp32 k2=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads | --latents | --reps | --rounds) kd_need_count "$@"; declare "${1#--}=$2"; shift 2 ;;
    --kandinsky2) kd_need_value "$@"; k2=$2; shift 2 ;;
    --modes) kd_need_value "$@"; kd_check_list --modes "$2" fp32 bf16 q8 bf16-q8; modes=$2; shift 2 ;;
    --dry-run) KD_DRY_RUN=1; shift ;;
    -h | --help) kd_usage; exit 0 ;;
    *) kd_die "unknown option $1" ;;
  esac
done
[ -n "$k2" ] || kd_die "--kandinsky2 CHECKOUT is needed (the original code is the PyTorch side)"
[ -d "$k2/kandinsky2" ] || kd_die "--kandinsky2 $k2: no kandinsky2/ package there"
cd "$KD_ROOT"
if [ ! -f "$DIR/Kandinsky-2-0.pt" ]; then
  if [ "$KD_DRY_RUN" = 1 ]; then echo "# [dry run] would make $DIR: $PY bench/bench_k20.py make $DIR --kandinsky2 $k2"
  else mkdir -p "$DIR"; "$PY" bench/bench_k20.py make "$DIR" --kandinsky2 "$k2"; fi
fi
kd_build bench_k20
kd_header "$threads" "$KD_ROOT"
out=${KD_BENCH_OUT:-}
if [ "$KD_DRY_RUN" = 1 ]; then out=${out:-/tmp/kd-bench.XXXXXX}; else out=${out:-$(mktemp -d /tmp/kd-bench.XXXXXX)}; mkdir -p "$out"; fi
export KD_RUNS="$out/runs.tsv"
[ "$KD_DRY_RUN" = 1 ] || : >"$KD_RUNS"
echo "# kandinsky 2.0: unet step latent $latents batch 2, mclip and mt5 b2 x 77; $rounds rounds x $reps reps per process; ours: $modes"
args=(--threads "$threads" --latents "$latents" --reps "$reps")
steps=()
for m in ${modes//,/ }; do steps+=("ours:$m"); done
steps+=(torch:fp32)
run_step() { # round step
  local r=$1 s=$2
  case "$s" in
    ours:*)
      local m=${s#ours:}
      kd_mode_args "$m"
      KD_STEP_MODE=$m kd_step "r$r kandinsky.c $m" "$out/r$r.ours-$m.jsonl" "$BUILD/bench/bench_k20" "$DIR" "${args[@]}" "${kd_margs[@]}" ;;
    torch:fp32)
      kd_step "r$r pytorch (original modules)" "$out/r$r.torch.jsonl" "$PY" bench/bench_k20.py run "$DIR" --kandinsky2 "$k2" "${args[@]}" ;;
  esac
}
kd_rounds "$rounds" "${steps[@]}"
[ "$KD_DRY_RUN" = 0 ] || exit 0
"$PY" bench/compare.py --runs "$KD_RUNS" "$out"/r*.jsonl || true
echo "# peak RSS: each process's after that op (and all before it: the text encoders are freed before the U-Net loads)"
echo "# raw outputs and logs: $out"
kd_failed
