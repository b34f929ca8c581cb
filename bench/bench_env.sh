# shellcheck shell=bash
# Helpers shared by the bench/run_*.sh scripts and bench/ab.sh (sourced, not run).
#   kd_header THREADS ROOT   prints CPU, threads, commit, BLAS environment, load (with a 2 s sample of
#                            how many cores were busy before the start) and memory
#   kd_run NAME LOG CMD...   runs CMD (stdout to the caller, stderr to the file LOG), then prints on
#                            stderr its wall time, its own CPU time, its peak RSS and how many cores
#                            the rest of the machine kept busy meanwhile (machine busy CPU time from
#                            /proc/stat, steal included, minus CMD's own); above 0.15 cores the
#                            numbers were disturbed. With KD_RUNS set, also appends
#                            "name wall_s cpu_s other_cores rc peak_rss_mb" (tab-separated) to it.
#   kd_step NAME OUT CMD...  kd_run with stdout to OUT and stderr to OUT.err, then shows OUT; a failure
#                            is reported and remembered (kd_failed) instead of ending the script; with
#                            KD_DRY_RUN=1 it only prints the command line. KD_STEP_MODE=M kd_step ...: a run
#                            of ours in mode M (kd_fix_label OUT M first; KD_STEP_QUIET=1: no warning)
#   kd_relabel FILE FROM TO  renames impl FROM to TO in FILE's JSON lines (prints 1 if any line changed)
#   kd_need_value / kd_need_count / kd_check_list   option-parsing checks (exit 2 with a message)
#   kd_usage                 prints the script's leading comment block (--help)
#   kd_rounds R STEP...      calls the script's run_step ROUND STEP for each step, R rounds, the order
#                            reversed in every even round (A B C, C B A, A B C, ...)
#   kd_mode_args MODE / kd_fix_label FILE MODE   our programs' flags and labels per --modes entry
#   kd_failed                prints warnings and failed steps at the end; returns 1 if a step failed
#   kd_build TARGET...       builds the targets in the default build folder when missing or older
#                            than the sources; a KD_BUILD_DIR is used as it is (see below)
# Sourcing sets KD_ROOT (the checkout), BUILD and KD_BUILD_DEFAULT: BUILD is $KD_BUILD_DIR (a
# relative path is taken from the directory the script was started in) or, when KD_BUILD_DIR is
# unset or empty, $KD_ROOT/build (KD_BUILD_DEFAULT=1, the only case in which the scripts configure
# or build anything).

KD_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KD_SCRIPT="${0##*/}"
if [ -n "${KD_BUILD_DIR:-}" ]; then
    case "$KD_BUILD_DIR" in /*) BUILD="$KD_BUILD_DIR" ;; *) BUILD="$PWD/$KD_BUILD_DIR" ;; esac
    KD_BUILD_DEFAULT=0
else
    BUILD="$KD_ROOT/build"
    KD_BUILD_DEFAULT=1
fi
KD_DRY_RUN=${KD_DRY_RUN:-0}
KD_FAILED=()

kd_hz="$(getconf CLK_TCK)"
kd_busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }

kd_die() { # message: a usage error
    echo "$KD_SCRIPT: $*" >&2
    echo "$KD_SCRIPT: --help lists the options" >&2
    exit 2
}
kd_need_value() { # "$@" of the option loop: $1 is an option that needs a value in $2
    if [ $# -lt 2 ] || [ -z "$2" ] || [[ "$2" == --* ]]; then kd_die "option $1 needs a value"; fi
}
kd_need_count() { # "$@": like kd_need_value, and the value must be a positive integer
    kd_need_value "$@"
    [[ "$2" =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || kd_die "option $1 needs a positive integer, got '$2'"
}
kd_check_list() { # option list allowed... : every comma-separated item of list must be allowed
    local opt="$1" list="$2" item a ok
    shift 2
    for item in ${list//,/ }; do
        ok=0
        for a in "$@"; do [ "$item" = "$a" ] && ok=1; done
        [ "$ok" = 1 ] || kd_die "$opt: unknown value '$item' (allowed: $*)"
    done
    [ -n "${list//,/}" ] || kd_die "$opt: empty list"
}

kd_build() { # target...
    local t bin stale=()
    for t in "$@"; do
        bin="$BUILD/bench/$t"
        if [ ! -x "$bin" ]; then
            stale+=("$t")
        elif [ -n "$(find "$KD_ROOT/src" "$KD_ROOT/include" "$KD_ROOT/bench" "$KD_ROOT/CMakeLists.txt" -newer "$bin" \
                   \( -name '*.c' -o -name '*.h' -o -name CMakeLists.txt \) -print -quit 2>/dev/null)" ]; then
            stale+=("$t")
        fi
    done
    [ ${#stale[@]} -gt 0 ] || return 0
    if [ "$KD_BUILD_DEFAULT" = 1 ]; then
        if [ "$KD_DRY_RUN" = 1 ]; then
            echo "# [dry run] would build ${stale[*]} in $BUILD"
            return 0
        fi
        [ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$KD_ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
        cmake --build "$BUILD" -j"$(nproc)" --target "${stale[@]}" >/dev/null
        return 0
    fi
    for t in "${stale[@]}"; do
        if [ ! -x "$BUILD/bench/$t" ]; then
            [ "$KD_DRY_RUN" = 1 ] && { echo "# [dry run] $BUILD/bench/$t is not built"; continue; }
            echo "$KD_SCRIPT: $BUILD/bench/$t is not built (KD_BUILD_DIR=$KD_BUILD_DIR is used as it is;" \
                 "build it with: cmake --build $BUILD --target $t)" >&2
            exit 1
        fi
        echo "# note: $BUILD/bench/$t is older than some source files (KD_BUILD_DIR is used as it is, not rebuilt)" >&2
    done
}

kd_header() { # threads root
    local commit
    if commit="$(git -C "$2" rev-parse --short HEAD 2>/dev/null)"; then
        git -C "$2" diff --quiet HEAD -- src include || commit="$commit + uncommitted changes in src/ or include/"
    else
        commit="?"
    fi
    echo "# date $(date -u +%Y-%m-%dT%H:%M:%SZ), cpu $(lscpu | grep 'Model name' | sed 's/^Model name: *//'), $(nproc) cores"
    echo "# threads $1 (both sides), commit $commit, build $BUILD"
    echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE-(unset)} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE-(unset)} (as found; not changed)"
    local b0 b1
    if [ "$KD_DRY_RUN" = 1 ]; then
        echo "# load average $(cut -d' ' -f1-3 /proc/loadavg) (dry run: nothing measured)"
        return 0
    fi
    b0="$(kd_busy)"; sleep 2; b1="$(kd_busy)"
    echo "# load average $(cut -d' ' -f1-3 /proc/loadavg); cores busy before start (2 s sample): $(awk -v a="$b0" -v b="$b1" -v hz="$kd_hz" 'BEGIN{printf "%.2f", (b-a)/hz/2}')"
    echo "# memory: $(free -m | awk '/^Mem:/{print "total " $2 " MB, available " $7 " MB"}')"
}

kd_run() { # name log command...
    local name="$1" log="$2"; shift 2
    local b0 t0 b1 t1 rc=0 tf line
    tf="$(mktemp)"
    b0="$(kd_busy)"; t0="$(date +%s.%N)"
    /usr/bin/time -f "%U %S %M" -o "$tf" "$@" 2>"$log" || rc=$?
    b1="$(kd_busy)"; t1="$(date +%s.%N)"
    line="$(awk -v n="$name" -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v hz="$kd_hz" -v rc="$rc" '
        NF == 3 && $1 ~ /^[0-9.]+$/ { own = $1 + $2; rss = $3 / 1024 }
        END {
            wall = t1 - t0; other = ((b1 - b0) / hz - own) / wall; if (other < 0) other = 0
            printf "%s\t%.1f\t%.1f\t%.2f\t%d\t%.0f\n", n, wall, own, other, rc, rss }' "$tf")"
    rm -f "$tf"
    [ -z "${KD_RUNS:-}" ] || printf '%s\n' "$line" >>"$KD_RUNS"
    awk -F'\t' '{ printf "# %-32s %7.1f s wall, %7.1f s CPU, peak RSS %6.0f MB, other processes kept %.2f cores busy%s\n",
                      $1, $2, $3, $6, $4, ($4 > 0.15 ? "  <- machine not idle, numbers disturbed" : "") }' <<<"$line" >&2
    return $rc
}

kd_quote() { # args...: prints them shell-quoted where needed (for --dry-run)
    local a sep=""
    for a in "$@"; do
        if [[ "$a" =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then printf '%s%s' "$sep" "$a"; else printf '%s%q' "$sep" "$a"; fi
        sep=" "
    done
}

kd_step() { # name out command...
    local name="$1" out="$2"; shift 2
    if [ "$KD_DRY_RUN" = 1 ]; then
        echo "# [dry run] $name: $(kd_quote "$@") > $(kd_quote "$out")"
        return 0
    fi
    local rc=0
    kd_run "$name" "$out.err" "$@" >"$out" || rc=$?
    [ -z "${KD_STEP_MODE:-}" ] || kd_fix_label "$out" "$KD_STEP_MODE" "${KD_STEP_QUIET:-}"
    cat "$out"
    if [ "$rc" != 0 ]; then
        echo "# FAILED: $name (exit $rc); last lines of $out.err:" >&2
        tail -n 5 "$out.err" | sed 's/^/#   /' >&2
        KD_FAILED+=("$name (exit $rc, $out.err)")
    fi
    return 0
}

kd_relabel() { # file from to: prints 1 when a line was relabelled
    local f="$1" from="$2" to="$3" pat
    pat="\"impl\": *\"${from//./\\.}\""
    if grep -q "$pat" "$f" 2>/dev/null; then
        sed -i "s/$pat/\"impl\": \"$to\"/" "$f"
        echo 1
    fi
    return 0
}

kd_usage() { # prints the script's leading comment block (its usage), without the '#'
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
}

kd_rounds() { # rounds step...: calls run_step ROUND STEP for every step, in reverse order in even rounds
    # (names with kd_ prefixes: run_step sees this function's locals)
    local kd_nr="$1" kd_r kd_i
    shift
    local kd_steps=("$@")
    for ((kd_r = 1; kd_r <= kd_nr; kd_r++)); do
        if ((kd_r % 2)); then
            for ((kd_i = 0; kd_i < ${#kd_steps[@]}; kd_i++)); do run_step "$kd_r" "${kd_steps[kd_i]}"; done
        else
            for ((kd_i = ${#kd_steps[@]} - 1; kd_i >= 0; kd_i--)); do run_step "$kd_r" "${kd_steps[kd_i]}"; done
        fi
        [ "$KD_DRY_RUN" = 1 ] || echo "# round $kd_r/$kd_nr done"
    done
}

# Our programs' flags per mode (--modes): fp32 = as built, bf16 = --precision bf16, q8 = --weights q8,
# bf16-q8 = both.
# shellcheck disable=SC2034 # kd_margs is used by the scripts
kd_mode_args() { # mode: sets the array kd_margs
    case "$1" in
    bf16) kd_margs=(--precision bf16) ;;
    q8) kd_margs=(--weights q8) ;;
    bf16-q8) kd_margs=(--precision bf16 --weights q8) ;;
    *) kd_margs=() ;;
    esac
}
KD_WARNINGS=()
# After a run of ours in MODE: the C programs label their lines kandinsky.c-MODE (kandinsky.c-bf16,
# -q8, -bf16-q8) from what actually ran. Another label means the mode did not run as asked: the CPU
# has no BF16 products (the program then runs fp32, says so on stderr and labels it so), or the build
# predates the flags (its option loop skips them silently). Such lines are relabelled
# "<label>[asked-MODE]", so that they neither mix with the real fp32 rows nor pass for MODE, and
# warned about. With QUIET (run_unet.sh's f16 = the F16 checkpoint, which the program cannot know),
# a plain kandinsky.c just becomes kandinsky.c-MODE.
kd_fix_label() { # file mode [quiet]
    local f="$1" mode="$2" want="kandinsky.c-$2" got g why
    [ "$mode" != fp32 ] || return 0
    [ -f "$f" ] || return 0
    if [ -n "${3:-}" ]; then
        kd_relabel "$f" kandinsky.c "$want" >/dev/null
        return 0
    fi
    got="$(grep -o '"impl": *"kandinsky\.c[^"]*"' "$f" | sed 's/^"impl": *"//; s/"$//' | sort -u | grep -vxF "$want" || true)"
    for g in $got; do
        kd_relabel "$f" "$g" "${g}[asked-$mode]" >/dev/null
        if grep -q "no BF16 products" "$f.err" 2>/dev/null; then
            why="this CPU has no BF16 products, so the program ran without bf16"
        else
            why="does $BUILD have the flags? a build without them ignores them"
        fi
        echo "# WARNING: ${f##*/}: mode $mode printed the label $g ($why); relabelled ${g}[asked-$mode]" >&2
        KD_WARNINGS+=("mode $mode: our program printed the label $g, not $want ($why); its rows are ${g}[asked-$mode]")
    done
}

kd_failed() { # prints the warnings and the failed steps; returns 1 if a step failed
    [ ${#KD_WARNINGS[@]} -eq 0 ] || printf '# WARNING: %s\n' "${KD_WARNINGS[@]}" | sort -u
    [ ${#KD_FAILED[@]} -gt 0 ] || return 0
    echo "# FAILED runs (their numbers are missing above):"
    printf '#   %s\n' "${KD_FAILED[@]}"
    return 1
}
