#!/usr/bin/env bash
# A/B speed comparison of two kandinsky.c builds on the bench programs' C side (no PyTorch).
#
#   bench/ab.sh [options] A_BUILD [B_BUILD]
#     A_BUILD   the baseline's build folder, e.g. of an older commit:
#                 mkdir /tmp/kd-base && git archive REV | tar -x -C /tmp/kd-base
#                 cmake -S /tmp/kd-base -B /tmp/kd-base/build -DCMAKE_BUILD_TYPE=Release
#                 cmake --build /tmp/kd-base/build -j --target bench_unet bench_movq bench_prior
#     B_BUILD   the candidate's, default build/ of this checkout
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

A=""
B="$(cd "$(dirname "$0")/.." && pwd)/build"
rounds=3 threads=2 reps=3 latents=32,64 msizes=256,512 pops=prior_step only=unet,movq,prior
out="" build=0 abba=0
pos=()
while [ $# -gt 0 ]; do
  case "$1" in
    -r|--rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --latents) latents=$2; shift 2 ;;
    --movq-sizes) msizes=$2; shift 2 ;;
    --prior-ops) pops=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --build) build=1; shift ;;
    --abba) abba=1; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) echo "ab.sh: unknown option $1" >&2; exit 2 ;;
    *) pos+=("$1"); shift ;;
  esac
done
[ ${#pos[@]} -ge 1 ] && A=${pos[0]}
[ ${#pos[@]} -ge 2 ] && B=${pos[1]}
[ -n "$A" ] || { echo "usage: bench/ab.sh [options] A_BUILD [B_BUILD] (--help)" >&2; exit 2; }
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
  [ -e "$f" ] || { echo "ab.sh: missing $f (run the bench/bench_*.py make steps)" >&2; exit 1; }
done
for d in "$A" "$B"; do
  if [ "$build" = 1 ]; then cmake --build "$d" -j"$(nproc)" --target bench_unet bench_movq bench_prior >/dev/null; fi
  for p in bench_unet bench_movq bench_prior; do
    [ -x "$d/bench/$p" ] || { echo "ab.sh: $d/bench/$p not built" >&2; exit 1; }
  done
done

[ -n "$out" ] || out=$(mktemp -d /tmp/kd-ab-run.XXXXXX)
mkdir -p "$out/raw"

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

hz=$(getconf CLK_TCK)
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

{
  echo "# date $(date -u +%Y-%m-%dT%H:%M:%SZ), cpu $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  echo "# A = $(describe "$A")"
  echo "# B = $(describe "$B")"
  echo "# threads $threads, rounds $rounds, reps $reps, models $ROOT, benchmarks $only (unet latents $latents, movq sizes $msizes, prior ops $pops)"
  echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)} $(env | grep '^KD_' | tr '\n' ' ')"
  b0=$(busy); sleep 2; b1=$(busy)
  echo "# load average $(cut -d' ' -f1-3 /proc/loadavg); cores busy before start (2 s sample): $(awk -v a="$b0" -v b="$b1" -v hz="$hz" 'BEGIN{printf "%.2f", (b-a)/hz/2}'); memory available $(free -m | awk '/^Mem:/{print $7}') MB"
  echo "# raw outputs: $out"
} | tee "$out/header.txt"

# --- the runs ---------------------------------------------------------------------------------
# Each benchmark: name and the command after the binary's directory (bench/<prog> ...).
jobs=()
has unet && jobs+=("unet|bench_unet|$ROOT/unet22-f32 --threads $threads --latents $latents --reps $reps")
has unet_f16 && jobs+=("unet_f16|bench_unet|$ROOT/unet22-f16 --threads $threads --latents $latents --reps $reps")
has movq && jobs+=("movq|bench_movq|$ROOT/movq-published --threads $threads --sizes $msizes --reps $reps")
if has prior; then
  for op in ${pops//,/ }; do jobs+=("$op|bench_prior|$ROOT/prior22 --threads $threads --reps $reps --ops $op"); done
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
        if job.startswith("unet"):
            key = f"{op} {'f16 ' if job == 'unet_f16' else ''}latent {d['size']}² b{d['batch']}"
        elif job == "movq":
            key = f"movq {op} {d['size']}² b{d['batch']}"
        else:
            key = f"{op} b{d['batch']}"
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
for f in failed:
    print("FAILED:", f)
sys.exit(1 if failed else 0)
EOF
