#!/usr/bin/env bash
# MoVQ encode/decode: kandinsky.c vs diffusers VQModel on PyTorch CPU, same machine, same threads,
# one invocation. Builds the full-size published-config model with random weights once.
#   bench/run_movq.sh [--threads N] [--sizes 256,512] [--batch 1] [--reps 3]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${KD_REF_PYTHON:-$HOME/.venvs/kd-ref/bin/python}
DIR=${KD_BENCH_DIR:-$HOME/.cache/kandinsky-bench}/movq-published
threads=$(nproc)
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    *) args+=("$1" "$2"); shift 2 ;;
  esac
done
[ -f "$DIR/config.json" ] || "$PY" bench/bench_movq.py make "$DIR"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" --target bench_movq >/dev/null
echo "# $(lscpu | grep 'Model name' | sed 's/ \+/ /g'), threads $threads, commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
echo "# OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}"
out=$(mktemp)
./build/bench/bench_movq "$DIR" --threads "$threads" "${args[@]}" | tee -a "$out"
"$PY" bench/bench_movq.py run "$DIR" --threads "$threads" "${args[@]}" | tee -a "$out"
"$PY" - "$out" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
res = {(r["impl"], r["op"], r["size"]): r["median_ms"] for r in rows if "op" in r}
rss = {r["impl"]: r["peak_rss_mb"] for r in rows if "peak_rss_mb" in r}
print(f"\n{'op':8} {'size':>5} {'kandinsky.c ms':>15} {'pytorch ms':>11} {'ratio':>6}")
for (impl, op, size), ms in sorted(res.items()):
    if impl != "kandinsky.c" or ("pytorch", op, size) not in res:
        continue
    pt = res[("pytorch", op, size)]
    print(f"{op:8} {size:>5} {ms:>15.1f} {pt:>11.1f} {ms / pt:>6.2f}")
print(f"peak RSS MB: kandinsky.c {rss.get('kandinsky.c')}, pytorch {rss.get('pytorch')}")
print("ratio = ours / pytorch time (< 1: we are faster)")
PYEOF
rm -f "$out"
