#!/usr/bin/env bash
# A/B speed comparison of two kandinsky.c builds on the bench programs' C side (no PyTorch).
#
#   bench/ab.sh [options] A_BUILD [B_BUILD]
#     A_BUILD   the baseline's build folder, e.g. of an older commit:
#                 mkdir /tmp/kd-base && git archive REV | tar -x -C /tmp/kd-base
#                 cmake -S /tmp/kd-base -B /tmp/kd-base/build -DCMAKE_BUILD_TYPE=Release
#                 cmake --build /tmp/kd-base/build -j --target bench_unet bench_movq bench_prior
#     B_BUILD   the candidate's, default $KD_BUILD_DIR, else build/ of this checkout (never built
#               here unless --build)
#   -r, --rounds R      rounds (default 3); each round runs every benchmark A then B
#   --threads N         threads for both sides (default 2)
#   --reps N            timed calls per process after one warm-up (default 3, as the run_*.sh)
#   --latents L         bench_unet latent sizes (default 32,64 = run_unet.sh's default; 64 = 512²)
#   --movq-sizes S      bench_movq image sizes (default 256,512 = run_movq.sh's default)
#   --prior-ops OPS     bench_prior ops, one process each as run_prior.sh does
#                       (default prior_step; run_prior.sh's full list: clip_text,clip_vision,prior_step)
#   --only LIST         subset of unet,unet_f16,movq,prior (default unet,movq,prior;
#                       unet_f16 = bench_unet on unet22-f16, as the end of run_unet.sh)
#   --out DIR           raw outputs (default a fresh /tmp/kd-ab-run.XXXXXX)
#   --build             first run `cmake --build DIR --target bench_unet bench_movq bench_prior` in both
#   --abba              alternate the order per round (A,B then B,A ...) instead of always A,B
#   --modes LIST        our variants, comma-separated (default fp32): fp32 (as built), bf16 (adds
#                       --precision bf16), q8 (adds --weights q8), bf16-q8 (both), each a benchmark
#                       of its own (name suffix +bf16 / +q8 / +bf16-q8; unet_f16 only runs fp32); a
#                       run whose label lacks the mode (a build without the flags ignores them, a CPU
#                       without BF16 products runs fp32) is warned about under the table
#   --dry-run           print the commands of the first round, run nothing
#   -h, --help          this text
# Environment: KD_BENCH_DIR (default ~/.cache/kandinsky-bench) holding unet22-f32/, unet22-f16/,
# movq-published/, prior22/ (made by bench/bench_{unet,movq,prior}.py make). OPENBLAS_* and KD_*
# variables are passed through unchanged and printed.
#
# Output: per run a log line (wall time, cores other processes kept busy meanwhile; > 0.15 means
# disturbed, like bench/bench_env.sh), then one table: per benchmark the median over rounds of each
# process's median_ms, the ratio B/A (< 1: B is faster), min..max over rounds, peak RSS (ru_maxrss
# of the process, max over rounds) and, per side, the most "other cores" seen on that benchmark's runs
# (a ratio marked * was measured disturbed).
set -euo pipefail
# shellcheck source=bench/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"

A=""
B="$BUILD"
rounds=3 threads=2 reps=3 latents=32,64 msizes=256,512 pops=prior_step only=unet,movq,prior modes=fp32
out="" build=0 abba=0
pos=()
while [ $# -gt 0 ]; do
  case "$1" in
    -r|--rounds) kd_need_count "$@"; rounds=$2; shift 2 ;;
    --threads) kd_need_count "$@"; threads=$2; shift 2 ;;
    --reps) kd_need_count "$@"; reps=$2; shift 2 ;;
    --latents) kd_need_value "$@"; latents=$2; shift 2 ;;
    --movq-sizes) kd_need_value "$@"; msizes=$2; shift 2 ;;
    --prior-ops) kd_need_value "$@"; kd_check_list --prior-ops "$2" clip_text clip_vision prior_step; pops=$2; shift 2 ;;
    --only) kd_need_value "$@"; kd_check_list --only "$2" unet unet_f16 movq prior; only=$2; shift 2 ;;
    --modes) kd_need_value "$@"; kd_check_list --modes "$2" fp32 bf16 q8 bf16-q8; modes=$2; shift 2 ;;
    --out) kd_need_value "$@"; out=$2; shift 2 ;;
    --build) build=1; shift ;;
    --abba) abba=1; shift ;;
    --dry-run) KD_DRY_RUN=1; shift ;;
    -h|--help) kd_usage; exit 0 ;;
    -*) kd_die "unknown option $1" ;;
    *) pos+=("$1"); shift ;;
  esac
done
[ ${#pos[@]} -ge 1 ] && A=${pos[0]}
[ ${#pos[@]} -ge 2 ] && B=${pos[1]}
[ ${#pos[@]} -le 2 ] || kd_die "at most two build folders, got: ${pos[*]}"
[ -n "$A" ] || kd_die "usage: bench/ab.sh [options] A_BUILD [B_BUILD]"
[ -d "$A" ] || { echo "ab.sh: no build folder $A" >&2; exit 1; }
[ -d "$B" ] || { echo "ab.sh: no build folder $B" >&2; exit 1; }
A=$(cd "$A" && pwd) B=$(cd "$B" && pwd)
ROOT=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}

has() { [[ ",$only," == *",$1,"* ]]; }

# --- checks ---------------------------------------------------------------------------------
need=()
has unet && need+=("$ROOT/unet22-f32/config.json")
has unet_f16 && need+=("$ROOT/unet22-f16/config.json")
has movq && need+=("$ROOT/movq-published/config.json")
has prior && need+=("$ROOT/prior22/.complete")
for f in "${need[@]}"; do
  [ -e "$f" ] || [ "$KD_DRY_RUN" = 1 ] || { echo "ab.sh: missing $f (run the bench/bench_*.py make steps)" >&2; exit 1; }
done
for d in "$A" "$B"; do
  if [ "$build" = 1 ]; then cmake --build "$d" -j"$(nproc)" --target bench_unet bench_movq bench_prior >/dev/null; fi
  for p in bench_unet bench_movq bench_prior; do
    [ -x "$d/bench/$p" ] || [ "$KD_DRY_RUN" = 1 ] || { echo "ab.sh: $d/bench/$p not built" >&2; exit 1; }
  done
done

if [ "$KD_DRY_RUN" = 1 ]; then out=${out:-/tmp/kd-ab-run.XXXXXX}
else [ -n "$out" ] || out=$(mktemp -d /tmp/kd-ab-run.XXXXXX); mkdir -p "$out/raw"; fi

# Which source tree and commit a build dir was configured from.
describe() {
  local d=$1 src commit
  src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$d/CMakeCache.txt" 2>/dev/null || true)
  if [ -n "$src" ] && commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null); then
    git -C "$src" diff --quiet HEAD -- src include 2>/dev/null || commit="$commit + uncommitted changes in src/ or include/"
  elif [ -f "$src/.commit" ]; then
    commit="$(cut -c1-7 "$src/.commit") (git archive)"
  else
    commit="?"
  fi
  local bt; bt=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$d/CMakeCache.txt" 2>/dev/null || true)
  echo "$d (source ${src:-?}, commit $commit, ${bt:-?}, bench_unet built $(date -r "$d/bench/bench_unet" '+%F %T'))"
}

hz=$kd_hz
busy() { kd_busy; }

{
  echo "# date $(date -u +%Y-%m-%dT%H:%M:%SZ), cpu $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  echo "# A = $(describe "$A")"
  echo "# B = $(describe "$B")"
  echo "# modes $modes"
  echo "# threads $threads, rounds $rounds, reps $reps, models $ROOT, benchmarks $only (unet latents $latents, movq sizes $msizes, prior ops $pops)"
  echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)} $(env | grep '^KD_' | tr '\n' ' ')"
  b0=$(busy); [ "$KD_DRY_RUN" = 1 ] || sleep 2; b1=$(busy)
  echo "# load average $(cut -d' ' -f1-3 /proc/loadavg); cores busy before start (2 s sample): $(awk -v a="$b0" -v b="$b1" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz/2}'); memory available $(free -m | awk '/^Mem:/{print $7}') MB"
  echo "# raw outputs: $out"
} | if [ "$KD_DRY_RUN" = 1 ]; then cat; else tee "$out/header.txt"; fi

# --- the runs ---------------------------------------------------------------------------------
# Each benchmark: name and the command after the binary's directory (bench/<prog> ...).
# Modes other than fp32 add their flags (bench_env.sh kd_mode_args) and "+MODE" to the name.
jobs=()
for m in ${modes//,/ }; do
  kd_mode_args "$m"
  sfx="" extra=""
  [ "$m" = fp32 ] || { sfx="+$m"; extra=" ${kd_margs[*]}"; }
  has unet && jobs+=("unet$sfx|bench_unet|$ROOT/unet22-f32 --threads $threads --latents $latents --reps $reps$extra")
  has unet_f16 && [ "$m" = fp32 ] && jobs+=("unet_f16|bench_unet|$ROOT/unet22-f16 --threads $threads --latents $latents --reps $reps")
  has movq && jobs+=("movq$sfx|bench_movq|$ROOT/movq-published --threads $threads --sizes $msizes --reps $reps$extra")
  if has prior; then
    for op in ${pops//,/ }; do jobs+=("$op$sfx|bench_prior|$ROOT/prior22 --threads $threads --reps $reps --ops $op$extra"); done
  fi
done
if [ "$KD_DRY_RUN" = 1 ]; then
  for j in "${jobs[@]}"; do
    IFS='|' read -r name prog args <<<"$j"
    for side in A B; do
      [ "$side" = A ] && d=$A || d=$B
      echo "# [dry run] round 1 $side $name: $d/bench/$prog $args > $out/raw/r1.$side.$name.out"
    done
  done
  echo "# [dry run] x $rounds rounds$([ "$abba" = 1 ] && echo ', B first in even rounds')"
  exit 0
fi

runs="$out/runs.tsv"   # round side job wall other rc file
: >"$runs"
t_start=$(date +%s)
for ((r = 1; r <= rounds; r++)); do
  order="A B"
  [ "$abba" = 1 ] && [ $((r % 2)) = 0 ] && order="B A"
  for j in "${jobs[@]}"; do
    IFS='|' read -r name prog args <<<"$j"
    for side in $order; do
      [ "$side" = A ] && d=$A || d=$B
      f="$out/raw/r$r.$side.$name"
      tf=$(mktemp)
      b0=$(busy); t0=$(date +%s.%N); rc=0
      # shellcheck disable=SC2086
      /usr/bin/time -f "%U %S %M" -o "$tf" "$d/bench/$prog" $args >"$f.out" 2>"$f.err" || rc=$?
      b1=$(busy); t1=$(date +%s.%N)
      read -r line < <(awk -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v hz="$hz" '
        NF >= 2 && $1 ~ /^[0-9.]+$/ { own = $1 + $2 }
        END { wall = t1 - t0; o = ((b1 - b0) / hz - own) / wall; if (o < 0) o = 0; printf "%.1f %.1f %.2f\n", wall, own, o }' "$tf")
      rm -f "$tf"
      read -r wall own other <<<"$line"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$side" "$name" "$wall" "$other" "$rc" "$f.out" >>"$runs"
      printf '# round %d/%d %s %-18s %6.1f s wall, %6.1f s CPU, other processes %.2f cores%s%s\n' "$r" "$rounds" "$side" "$name" \
        "$wall" "$own" "$other" "$(awk -v o="$other" 'BEGIN{if (o > 0.15) printf "  <- disturbed"}')" \
        "$([ "$rc" = 0 ] || echo "  <- FAILED rc=$rc, see $f.err")" | tee -a "$out/log.txt"
    done
  done
  echo "# round $r done, $(($(date +%s) - t_start)) s elapsed" | tee -a "$out/log.txt"
done

# --- the table --------------------------------------------------------------------------------
python3 - "$runs" <<'EOF' | tee "$out/table.txt"
import json, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
res = {}    # key -> side -> [median_ms ...]
rss = {}    # job -> side -> max peak_rss_mb
oth = {}    # job -> side -> max other cores
order, failed = [], []
unlabelled = set()  # a mode's run whose label lacks -MODE: that build ignored the flag
for r, side, job, wall, other, rc, path in rows:
    oth.setdefault(job, {})[side] = max(oth.get(job, {}).get(side, 0.0), float(other))
    if rc != "0":
        failed.append(f"round {r} {side} {job} rc={rc} ({path[:-4]}.err)")
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if "peak_rss_mb" in d:
            rss.setdefault(job, {})[side] = max(rss.get(job, {}).get(side, 0), d["peak_rss_mb"])
        if "median_ms" not in d:
            continue
        op = d["op"]
        base, _, mode = job.partition("+")
        tag = f" [{mode}]" if mode else ""
        if mode and not str(d.get("impl", "")).endswith("-" + mode):
            unlabelled.add(f"{job} on side {side} printed impl '{d.get('impl')}'")
        if base.startswith("unet"):
            key = f"{op} {'f16 ' if base == 'unet_f16' else ''}latent {d['size']}² b{d['batch']}{tag}"
        elif base == "movq":
            key = f"movq {op} {d['size']}² b{d['batch']}{tag}"
        else:
            key = f"{op} b{d['batch']}{tag}"
        if key not in res:
            res[key] = {}
            order.append((key, job))
        res[key].setdefault(side, []).append(d["median_ms"])

def med(v): return statistics.median(v) if v else float("nan")
def rng(v): return f"{min(v):.0f}..{max(v):.0f}" if len(v) > 1 else "-"
def mb(x): return f"{x / 1024:.2f}" if x else "?"
hdr = ("benchmark", "A ms", "B ms", "B/A", "A min..max", "B min..max", "RSS A GB", "RSS B GB", "other A", "other B")
lines = [hdr]
for key, job in order:
    a, b = res[key].get("A", []), res[key].get("B", [])
    ma, mb_ = med(a), med(b)
    ratio = f"{mb_ / ma:.3f}" if a and b and ma > 0 else "?"
    if max(oth.get(job, {}).values(), default=0) > 0.15:
        ratio += "*"
    lines.append((key, f"{ma:.1f}", f"{mb_:.1f}", ratio, rng(a), rng(b),
                  mb(rss.get(job, {}).get("A", 0)), mb(rss.get(job, {}).get("B", 0)),
                  f"{oth.get(job, {}).get('A', 0):.2f}", f"{oth.get(job, {}).get('B', 0):.2f}"))
w = [max(len(l[i]) for l in lines) for i in range(len(hdr))]
print()
for i, l in enumerate(lines):
    print("  ".join(c.ljust(w[j]) if j == 0 else c.rjust(w[j]) for j, c in enumerate(l)))
    if i == 0:
        print("  ".join("-" * x for x in w))
ratios = []
for key, _ in order:
    a, b = res[key].get("A", []), res[key].get("B", [])
    if a and b and med(a) > 0:
        ratios.append(med(b) / med(a))
if ratios:
    import math
    print(f"\ngeometric mean B/A {math.exp(sum(map(math.log, ratios)) / len(ratios)):.3f} over {len(ratios)} benchmarks "
          "(< 1: B is faster)")
if any(v > 0.15 for d in oth.values() for v in d.values()):
    print("* = measured while other processes kept > 0.15 cores busy: disturbed, rerun on a quiet machine")
print("A ms / B ms: median over rounds of each process's median_ms; RSS: ru_maxrss of that benchmark's process, "
      "max over rounds; other A / B: most cores other processes kept busy during that side's runs of it (> 0.15: disturbed)")
for u in sorted(unlabelled):
    print(f"WARNING: {u}: that run did not get its mode (a build without the flags ignores them; "
          "a CPU without BF16 products runs fp32)")
for f in failed:
    print("FAILED:", f)
sys.exit(1 if failed else 0)
EOF
