# Helpers shared by run_prior.sh and run_pipeline.sh (sourced, not run).
#   kd_header            prints CPU, threads, commit, BLAS environment, load and memory
#   kd_run NAME LOG CMD...  runs CMD (stdout to the caller, stderr to the file LOG), then prints on
#                        stderr its wall time, its own CPU time, and how many cores the rest of the
#                        machine kept busy meanwhile (machine busy CPU time from /proc/stat, steal
#                        included, minus CMD's own); above 0.15 cores the numbers were disturbed.

kd_hz="$(getconf CLK_TCK)"
kd_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

kd_header() { # threads root
    local commit
    if commit="$(git -C "$2" rev-parse --short HEAD 2>/dev/null)"; then
        git -C "$2" diff --quiet HEAD -- src include || commit="$commit + uncommitted changes in src/ or include/"
    else
        commit="?"
    fi
    echo "# date $(date -u +%Y-%m-%dT%H:%M:%SZ), cpu $(lscpu | grep 'Model name' | sed 's/^Model name: *//'), $(nproc) cores"
    echo "# threads $1 (both sides), commit $commit"
    echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)} (as found; not changed)"
    local b0 b1
    b0="$(kd_busy)"; sleep 2; b1="$(kd_busy)"
    echo "# load average $(cut -d' ' -f1-3 /proc/loadavg); cores busy before start (2 s sample): $(awk -v a="$b0" -v b="$b1" -v hz="$kd_hz" 'BEGIN{printf "%.2f", (b-a)/hz/2}')"
    echo "# memory: $(free -m | awk '/^Mem:/{print "total " $2 " MB, available " $7 " MB"}')"
}

kd_run() { # name log command...
    local name="$1" log="$2"; shift 2
    local b0 t0 b1 t1 own rc=0 tf
    tf="$(mktemp)"
    b0="$(kd_busy)"; t0="$(date +%s.%N)"
    /usr/bin/time -f "%U %S" -o "$tf" "$@" 2>"$log" || rc=$?
    b1="$(kd_busy)"; t1="$(date +%s.%N)"
    own="$(awk 'NF == 2 && $1 ~ /^[0-9.]+$/ { s = $1 + $2 } END { print s + 0 }' "$tf")"; rm -f "$tf"
    awk -v n="$name" -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v own="$own" -v hz="$kd_hz" 'BEGIN {
        wall = t1 - t0; other = ((b1 - b0) / hz - own) / wall; if (other < 0) other = 0
        printf "# %-24s %7.1f s wall, %7.1f s CPU, other processes kept %.2f cores busy%s\n", n, wall, own, other,
               (other > 0.15 ? "  <- machine not idle, numbers disturbed" : "") }' >&2
    return $rc
}
