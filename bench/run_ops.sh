#!/usr/bin/env bash
# Runs bench_ops (kandinsky.c) and bench_torch.py (PyTorch CPU) on the same machine, same thread
# count, same shapes, one after the other, and prints one table joined by shape.
#
#   bench/run_ops.sh [--threads N] [--quick] [--min-time S] [--rounds R] [--retries K] [--dry-run] [SPEC ...]
#   --threads N     threads on both sides (default KD_THREADS, else all cores)
#   --quick         the short shape list, 0.25 s per shape, 1 round (passed to both programs)
#   --min-time S    seconds of timed calls per shape (default 1; passed to both programs)
#   --rounds R      rounds (default 2; --quick 1)
#   --retries K     extra passes for disturbed shapes (default 3)
#   --dry-run       print the commands of the rounds, run nothing
#   -h, --help      this text
#   SPEC ...        shapes (conv:..., gemm:..., gn:..., gn_silu:..., attn:...; see bench/README.md),
#                   passed to both programs; default bench_ops' built-in list
#
# Each round runs both programs over all shapes, ours first in odd rounds and torch first in even
# ones (default 2 rounds; --quick 1).
# Both programs measure, per shape, how many cores other processes kept busy during the timed
# calls; a measurement with more than 0.15 such cores is "disturbed". Per shape and side the
# lowest undisturbed median is kept. Shapes left without an undisturbed measurement on a side are
# rerun on that side, up to K more passes (default 3); what is still disturbed then is marked so.
# Shapes whose undisturbed medians differ by more than 15% are marked "noisy".
#
# Every process is run through bench_env.sh's kd_run, which prints how many cores other processes
# kept busy during the whole process (the header samples the same before the start).
#
# Environment: KD_REF_PYTHON (default ~/.venvs/kd-ref/bin/python), KD_BUILD_DIR (unset: build/,
# built when bench_ops is missing or older than the sources; set: used as it is, never configured
# or built), KD_THREADS (default thread count), KD_BENCH_OUT (folder for the raw outputs; default a
# new temporary folder). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are reported, never changed.
set -euo pipefail
# shellcheck source=bench/bench_env.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_env.sh"

root="$KD_ROOT"
build="$BUILD"
py="${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}"
threads="${KD_THREADS:-}"
rounds=""
retries=3
pass=()
while [ $# -gt 0 ]; do
    case "$1" in
    --threads) kd_need_count "$@"; threads="$2"; shift 2 ;;
    --quick) pass+=(--quick); [ -n "$rounds" ] || rounds=1; shift ;;
    --rounds) kd_need_count "$@"; rounds="$2"; shift 2 ;;
    --retries) kd_need_value "$@"; [[ "$2" =~ ^[0-9]+$ ]] || kd_die "--retries needs a number, got '$2'"; retries="$2"; shift 2 ;;
    --min-time) kd_need_value "$@"; [[ "$2" =~ ^[0-9]*\.?[0-9]+$ ]] || kd_die "--min-time needs seconds, got '$2'"
                pass+=(--min-time "$2"); shift 2 ;;
    --dry-run) KD_DRY_RUN=1; shift ;;
    -h|--help) kd_usage; exit 0 ;;
    -*) kd_die "unknown option $1" ;;
    *:*) pass+=("$1"); shift ;;
    *) kd_die "not an option or a shape spec (op:dims): $1" ;;
    esac
done
if [ -z "$threads" ]; then threads="$(nproc)"; fi
if [ -z "$rounds" ]; then rounds=2; fi
limit=0.15 # cores used by other processes above which a measurement counts as disturbed

# Build (only the default build/, only our target: other targets may be mid-work).
kd_build bench_ops
bench="$build/bench/bench_ops"

if [ "$KD_DRY_RUN" = 1 ]; then
    out="${KD_BENCH_OUT:-/tmp/kd-bench.XXXXXX}"
else
    out="${KD_BENCH_OUT:-$(mktemp -d /tmp/kd-bench.XXXXXX)}"
    mkdir -p "$out"
fi

# The spec list comes from bench_ops, so both sides always measure the same shapes.
if [ -x "$bench" ]; then
    mapfile -t specs < <("$bench" --list "${pass[@]}")
else
    specs=("<bench_ops --list>")
fi
opts=()
for a in "${pass[@]}"; do case "$a" in *:*) ;; *) opts+=("$a") ;; esac; done
# --min-time's value has no colon either, so opts keeps it next to its flag.

echo "== kandinsky.c vs PyTorch CPU, op benchmark =="
kd_header "$threads" "$root"
echo "# KD_CONV_ALGO=${KD_CONV_ALGO-(unset)}"
echo "# rounds $rounds (ours first in odd rounds, torch first in even ones) + up to $retries retry passes for disturbed shapes; ${#specs[@]} shapes"

have_torch=1
if ! { [ -x "$py" ] || command -v "$py" >/dev/null 2>&1; }; then
    echo "run_ops.sh: no Python at $py (set KD_REF_PYTHON); torch side skipped" >&2
    have_torch=0
fi

files=()
run_side() { # side tag spec...
    local side="$1" tag="$2"; shift 2
    local f="$out/$side.$tag.tsv" cmd rc=0
    if [ "$side" = ours ]; then
        cmd=("$bench" --threads "$threads" "${opts[@]}" "$@")
    else
        cmd=("$py" "$root/bench/bench_torch.py" --threads "$threads" "${opts[@]}" "$@")
    fi
    if [ "$KD_DRY_RUN" = 1 ]; then
        echo "# [dry run] $side $tag: $(kd_quote "${cmd[@]}") > $(kd_quote "$f")"
        return 0
    fi
    kd_run "$side $tag" "$f.err" "${cmd[@]}" >"$f" || rc=$?
    if [ "$rc" != 0 ]; then
        echo "run_ops.sh: $side $tag failed (exit $rc); last lines of $f.err:" >&2
        tail -n 5 "$f.err" >&2
        exit 1
    fi
    files+=("$f")
    awk -F'\t' -v side="$side" -v tag="$tag" -v lim="$limit" '
        $1 == "result" { n++; o = $10 + 0; sum += o; if (o > lim) d++ }
        END { printf "%-5s %-7s %2d shapes, other processes used %.2f cores on average, %d shape(s) disturbed\n",
                  side, tag, n, n ? sum / n : 0, d }' "$f"
}
# Specs of one side that have no undisturbed measurement yet.
missing() { # side
    [ ${#files[@]} -gt 0 ] || return 0
    awk -F'\t' -v want="$1" -v lim="$limit" '
        FNR == 1 { side = (FILENAME ~ /\/torch\.[^\/]*\.tsv$/) ? "torch" : "ours" }
        side == want && $1 == "result" { seen[$4] = 1; if ($10 + 0 <= lim && $10 != "") clean[$4] = 1 }
        END { for (s in seen) if (!(s in clean)) print s }' "${files[@]}"
}

for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ] || [ "$have_torch" = 0 ]; then
        run_side ours "r$r" "${specs[@]}"
        if [ "$have_torch" = 1 ]; then run_side torch "r$r" "${specs[@]}"; fi
    else
        run_side torch "r$r" "${specs[@]}"
        run_side ours "r$r" "${specs[@]}"
    fi
done
[ "$KD_DRY_RUN" = 0 ] || exit 0
for k in $(seq 1 "$retries"); do
    left=0
    for side in ours torch; do
        [ "$side" = torch ] && [ "$have_torch" = 0 ] && continue
        mapfile -t redo < <(missing "$side")
        [ ${#redo[@]} -gt 0 ] || continue
        left=1
        sleep 5 # let a burst of other work pass
        run_side "$side" "retry$k" "${redo[@]}"
    done
    [ "$left" = 1 ] || break
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

awk -F'\t' -v have_torch="$have_torch" -v rounds="$rounds" -v lim="$limit" '
FNR == 1 { side = (FILENAME ~ /\/torch\.[^\/]*\.tsv$/) ? 2 : 1 }
$1 == "meta" {
    if ($2 == "peak_rss_kb" && (side, $2) in meta && meta[side, $2] + 0 >= $3 + 0) next
    meta[side, $2] = $3; next
}
$1 == "result" {
    s = $4; t = $5 + 0; clean = ($10 == "" || $10 + 0 <= lim)
    if (side == 1 && !(s in op)) { order[++n] = s; op[s] = $3; unit[s] = $9 }
    # best undisturbed median; a disturbed one only while there is none
    if (!((side, s) in ms) || (clean && !ok[side, s]) || (clean == ok[side, s] && t < ms[side, s])) {
        ms[side, s] = t; rate[side, s] = $8; ok[side, s] = clean
    }
    if (clean && (!((side, s) in hi) || t > hi[side, s])) hi[side, s] = t
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
        flag = ""
        if (!ok[1, s] || ((2, s) in ms && !ok[2, s])) flag = flag "  disturbed"
        if (((1, s) in hi && hi[1, s] > 1.15 * ms[1, s]) || ((2, s) in hi && hi[2, s] > 1.15 * ms[2, s]))
            flag = flag "  noisy"
        if ((2, s) in ms && ms[2, s] > 0) {
            r = ms[1, s] / ms[2, s]
            printf "%-8s %-30s %10.3f %10.1f %10.3f %10.1f %7.2f  %-8s%s\n", op[s], shape, ms[1, s],
                rate[1, s], ms[2, s], rate[2, s], r, unit[s], flag
            logsum += log(r); cnt++
            if (r > worst) { worst = r; worst_s = s }
            if (r > 1) slower = slower sprintf("  %s %s: %.2fx torch time\n", op[s], shape, r)
        } else {
            printf "%-8s %-30s %10.3f %10.1f %10s %10s %7s  %-8s%s\n", op[s], shape, ms[1, s], rate[1, s],
                "-", "-", "-", unit[s], flag
        }
    }
    print ""
    printf "ratio = ours time / torch time (< 1: kandinsky.c faster); times: lowest undisturbed median of %d round(s) + retries\n", rounds
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
