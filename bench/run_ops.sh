#!/usr/bin/env bash
# Runs bench_ops (kandinsky.c) and bench_torch.py (PyTorch CPU) on the same machine, same thread
# count, same shapes, one after the other, and prints one table joined by shape.
#
#   bench/run_ops.sh [--threads N] [--quick] [--min-time S] [SPEC ...]
#
# Environment: KD_REF_PYTHON (default ~/.venvs/kd-ref/bin/python), KD_BUILD_DIR (default
# <repo>/build), KD_THREADS (default thread count), KD_BENCH_OUT (folder for the raw outputs;
# default a new temporary folder). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are reported, never changed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${KD_BUILD_DIR:-$root/build}"
py="${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}"
threads="${KD_THREADS:-}"
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --quick) pass+=(--quick); shift ;;
    --min-time) pass+=(--min-time "$2"); shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "run_ops.sh: unknown option $1" >&2; exit 2 ;;
    *) pass+=("$1"); shift ;;
    esac
done
if [ -z "$threads" ]; then threads="$(nproc)"; fi

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
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

"$bench" --threads "$threads" "${opts[@]}" "${specs[@]}" >"$out/ours.tsv"
have_torch=1
if [ -x "$py" ] || command -v "$py" >/dev/null 2>&1; then
    "$py" "$root/bench/bench_torch.py" --threads "$threads" "${opts[@]}" "${specs[@]}" >"$out/torch.tsv"
else
    echo "run_ops.sh: no Python at $py (set KD_REF_PYTHON); torch side skipped" >&2
    have_torch=0
    : >"$out/torch.tsv"
fi
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"

awk -F'\t' -v have_torch="$have_torch" '
FNR == 1 { side++ }
$1 == "meta" { meta[side, $2] = $3; next }
$1 == "result" {
    if (side == 1) { order[++n] = $4; op[$4] = $3; unit[$4] = $9 }
    ms[side, $4] = $5; rate[side, $4] = $8
}
function m(s, k) { return ((s, k) in meta) ? meta[s, k] : "?" }
END {
    printf "ours:  BLAS %s (core %s), threads %s\n", m(1, "blas"), m(1, "blas_core"), m(1, "threads")
    if (have_torch)
        printf "torch: %s, BLAS %s, CPU capability %s, MKL %s, mkldnn %s, threads %s\n",
            m(2, "torch_version"), m(2, "blas_info"), m(2, "cpu_capability"),
            m(2, "mkl_available"), m(2, "mkldnn_available"), m(2, "threads")
    print ""
    printf "%-8s %-30s %10s %10s %10s %10s %7s  %s\n", "op", "shape", "ours ms", "ours rate",
        "torch ms", "torch rate", "ratio", "unit"
    worst = 0; logsum = 0; cnt = 0
    for (i = 1; i <= n; i++) {
        s = order[i]; shape = substr(s, index(s, ":") + 1)
        if ((2, s) in ms && ms[2, s] > 0) {
            r = ms[1, s] / ms[2, s]
            printf "%-8s %-30s %10.3f %10.1f %10.3f %10.1f %7.2f  %s\n", op[s], shape, ms[1, s],
                rate[1, s], ms[2, s], rate[2, s], r, unit[s]
            logsum += log(r); cnt++
            if (r > worst) { worst = r; worst_s = s }
            if (r > 1) slower = slower sprintf("  %s %s: %.2fx torch time\n", op[s], shape, r)
        } else {
            printf "%-8s %-30s %10.3f %10.1f %10s %10s %7s  %s\n", op[s], shape, ms[1, s], rate[1, s],
                "-", "-", "-", unit[s]
        }
    }
    print ""
    printf "ratio = ours time / torch time (< 1: kandinsky.c faster)\n"
    if (cnt) {
        printf "geometric mean ratio: %.2f over %d shapes; worst: %.2f (%s)\n", exp(logsum / cnt), cnt, worst, worst_s
        if (slower != "") printf "slower than torch:\n%s", slower
        else print "slower than torch: none"
    }
    printf "peak RSS: ours %.1f MiB", m(1, "peak_rss_kb") / 1024
    if (have_torch) printf ", torch %.1f MiB (includes the torch runtime)", m(2, "peak_rss_kb") / 1024
    print ""
}' "$out/ours.tsv" "$out/torch.tsv"
echo "raw outputs: $out/ours.tsv $out/torch.tsv"
