#!/usr/bin/env bash
# Runs bench_ops (kandinsky.c) and bench_torch.py (PyTorch CPU) on the same machine, same thread
# count, same shapes, one after the other, and prints one table joined by shape.
#
#   bench/run_ops.sh [--threads N] [--quick] [--min-time S] [--rounds R] [SPEC ...]
#
# Each round runs both programs (ours, then torch) over all shapes; per shape and side the lowest
# median over the rounds is kept (default 2 rounds; --quick 1), so a burst of other work on the
# machine during one round does not decide the ratio. Shapes whose medians differ by more than 15%
# between rounds on either side are marked "noisy".
#
# Environment: KD_REF_PYTHON (default ~/.venvs/kd-ref/bin/python), KD_BUILD_DIR (default
# <repo>/build), KD_THREADS (default thread count), KD_BENCH_OUT (folder for the raw outputs;
# default a new temporary folder). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are reported, never changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KD_BUILD_DIR:-$root/build}"
py="${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}"
threads="${KD_THREADS:-}"
rounds=""
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --quick) pass+=(--quick); [ -n "$rounds" ] || rounds=1; shift ;;
    --rounds) rounds="$2"; shift 2 ;;
    --min-time) pass+=(--min-time "$2"); shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "run_ops.sh: unknown option $1" >&2; exit 2 ;;
    *) pass+=("$1"); shift ;;
    esac
done
if [ -z "$threads" ]; then threads="$(nproc)"; fi
if [ -z "$rounds" ]; then rounds=2; fi

# Build (cheap when up to date). Only our target: other targets may be mid-work.
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" --target bench_ops -j"$(nproc)" >/dev/null
bench="$build/bench/bench_ops"

out="${KD_BENCH_OUT:-$(mktemp -d /tmp/kd-bench.XXXXXX)}"
mkdir -p "$out"

# The spec list comes from bench_ops, so both sides always measure the same shapes.
mapfile -t specs < <("$bench" --list "${pass[@]}")
opts=()
for a in "${pass[@]}"; do case "$a" in *:*) ;; *) opts+=("$a") ;; esac; done
# --min-time's value has no colon either, so opts keeps it next to its flag.

echo "== kandinsky.c vs PyTorch CPU, op benchmark =="
echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu:       $(lscpu | grep 'Model name' | sed 's/^Model name: *//')"
echo "threads:   $threads (both sides)"
if commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null)"; then
    git -C "$root" diff --quiet HEAD -- src include || commit="$commit + uncommitted changes in src/ or include/"
else
    commit="(not a git checkout: $root)"
fi
echo "commit:    $commit"
echo "KD_CONV_ALGO=${KD_CONV_ALGO-(unset)}"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)} (as found; not changed)"
echo "rounds:    $rounds"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

have_torch=1
if ! { [ -x "$py" ] || command -v "$py" >/dev/null 2>&1; }; then
    echo "run_ops.sh: no Python at $py (set KD_REF_PYTHON); torch side skipped" >&2
    have_torch=0
fi
# CPU time of the whole machine (jiffies: user nice system irq softirq steal) and wall clock.
hz="$(getconf CLK_TCK)"
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
now() { date +%s.%N; }
# What else ran: the machine's busy CPU-seconds during a program minus that program's own.
other_load() { # busy0 busy1 t0 t1 file
    awk -v b0="$1" -v b1="$2" -v t0="$3" -v t1="$4" -v hz="$hz" -F'\t' '
        $1 == "meta" && $2 == "cpu_s" { own = $3 }
        END { o = (b1 - b0) / hz - own; if (o < 0) o = 0; printf "%.2f", o / (t1 - t0) }' "$5"
}
b0="$(busy)"; t0="$(now)"; sleep 2; b1="$(busy)"; t1="$(now)"
idle_before="$(awk -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v hz="$hz" 'BEGIN{printf "%.2f", (b1-b0)/hz/(t1-t0)}')"
echo "cores busy before start (2 s sample): $idle_before"
files=()
run_side() { # name outfile command...
    local name="$1" f="$2"; shift 2
    local b0 t0 b1 t1
    b0="$(busy)"; t0="$(now)"
    "$@" >"$f"
    b1="$(busy)"; t1="$(now)"
    files+=("$f")
    local o; o="$(other_load "$b0" "$b1" "$t0" "$t1" "$f")"
    printf "round %s %-5s: %5.1f s, other processes used %s cores on average%s\n" "$r" "$name" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$o" \
        "$(awk -v o="$o" 'BEGIN{ if (o > 0.15) print "  <- machine not idle, numbers disturbed" }')"
}
for r in $(seq 1 "$rounds"); do
    run_side ours "$out/ours.$r.tsv" "$bench" --threads "$threads" "${opts[@]}" "${specs[@]}"
    if [ "$have_torch" = 1 ]; then
        run_side torch "$out/torch.$r.tsv" "$py" "$root/bench/bench_torch.py" --threads "$threads" "${opts[@]}" "${specs[@]}"
    fi
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

awk -F'\t' -v have_torch="$have_torch" -v rounds="$rounds" '
FNR == 1 { side = (FILENAME ~ /\/torch\.[0-9]+\.tsv$/) ? 2 : 1 }
$1 == "meta" {
    if ($2 == "peak_rss_kb" && (side, $2) in meta && meta[side, $2] + 0 >= $3 + 0) next
    meta[side, $2] = $3; next
}
$1 == "result" {
    s = $4
    if (side == 1 && !(s in op)) { order[++n] = s; op[s] = $3; unit[s] = $9 }
    if (!((side, s) in ms) || $5 + 0 < ms[side, s]) { ms[side, s] = $5 + 0; rate[side, s] = $8 }
    if (!((side, s) in hi) || $5 + 0 > hi[side, s]) hi[side, s] = $5 + 0
}
function m(s, k) { return ((s, k) in meta) ? meta[s, k] : "?" }
END {
    printf "ours:  BLAS %s (core %s), threads %s\n", m(1, "blas"), m(1, "blas_core"), m(1, "threads")
    if (have_torch)
        printf "torch: %s, BLAS %s, CPU capability %s, MKL %s, mkldnn %s, threads %s\n",
            m(2, "torch_version"), m(2, "blas_info"), m(2, "cpu_capability"),
            m(2, "mkl_available"), m(2, "mkldnn_available"), m(2, "threads")
    print ""
    printf "%-8s %-30s %10s %10s %10s %10s %7s  %-8s\n", "op", "shape", "ours ms", "ours rate",
        "torch ms", "torch rate", "ratio", "unit"
    worst = 0; logsum = 0; cnt = 0
    for (i = 1; i <= n; i++) {
        s = order[i]; shape = substr(s, index(s, ":") + 1)
        if ((2, s) in ms && ms[2, s] > 0) {
            r = ms[1, s] / ms[2, s]
            noisy = (hi[1, s] > 1.15 * ms[1, s] || hi[2, s] > 1.15 * ms[2, s]) ? "  noisy" : ""
            printf "%-8s %-30s %10.3f %10.1f %10.3f %10.1f %7.2f  %-8s%s\n", op[s], shape, ms[1, s],
                rate[1, s], ms[2, s], rate[2, s], r, unit[s], noisy
            logsum += log(r); cnt++
            if (r > worst) { worst = r; worst_s = s }
            if (r > 1) slower = slower sprintf("  %s %s: %.2fx torch time\n", op[s], shape, r)
        } else {
            printf "%-8s %-30s %10.3f %10.1f %10s %10s %7s  %s\n", op[s], shape, ms[1, s], rate[1, s],
                "-", "-", "-", unit[s]
        }
    }
    print ""
    printf "ratio = ours time / torch time (< 1: kandinsky.c faster); times are the lowest median of %d round(s)\n", rounds
    if (cnt) {
        printf "geometric mean ratio: %.2f over %d shapes; worst: %.2f (%s)\n", exp(logsum / cnt), cnt, worst, worst_s
        if (slower != "") printf "slower than torch:\n%s", slower
        else print "slower than torch: none"
    }
    printf "peak RSS: ours %.1f MiB", m(1, "peak_rss_kb") / 1024
    if (have_torch) printf ", torch %.1f MiB (includes the torch runtime)", m(2, "peak_rss_kb") / 1024
    print ""
}' "${files[@]}"
echo "raw outputs: $out/"
