"""Joins the JSON lines of the kandinsky.c benchmarks and their PyTorch twins (same ops, same sizes),
over any number of rounds, and prints per (op, size) and label the min and the median over the
rounds and the time ratios to PyTorch.

  python bench/compare.py [--runs RUNS.tsv] RESULTS.jsonl ...

Input: the stdout of bench_{unet,movq,prior,mclip,pipeline} (C) and bench_*.py (PyTorch), one or
more files, each line a JSON object; lines not starting with '{' are ignored. A result line has
"impl" (the label: kandinsky.c, kandinsky.c-bf16, kandinsky.c-q8, kandinsky.c-f16,
kandinsky.c-lowmem, pytorch, pytorch-bf16-autocast, ...), "op", "size", optionally "batch",
"median_ms" (the median of that process's timed calls), "min_ms" and "peak_rss_mb"; a line with
"peak_rss_mb" but no "op" gives the process's peak RSS. Every process of every round contributes one
result line per (op, size, batch) and label; per row:
  rounds     how many such lines there were
  min ms     the fastest single call of all rounds (min of min_ms; where a program reports no
             min_ms, the lowest per-process median_ms, marked ~)
  median ms  the median of the per-process medians over the rounds (for an even number of rounds,
             the mean of the two middle ones)
  / pytorch  label time / pytorch time, for the min and for the median (< 1: faster than PyTorch
             float32); "/ autocast" the same against pytorch-bf16-autocast where that was run
  RSS MB     peak RSS (ru_maxrss) of the process, max over rounds (from the result line when it
             has one, else from the process's summary line)
--runs: the KD_RUNS file the run_*.sh scripts write (bench_env.sh kd_run); the runs measured while
other processes kept more than 0.15 cores busy are listed.
"""
import argparse
import json
import statistics
import sys

TORCH = "pytorch"
AUTOCAST = "pytorch-bf16-autocast"
DISTURBED = 0.15


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    print(f"compare.py: {p}: not JSON: {line[:80]}", file=sys.stderr)
    return rows


def median(v):
    """Over rounds: the usual median (the mean of the two middle values for an even count)."""
    return statistics.median(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", help="KD_RUNS file (name, wall, cpu, other cores, rc, peak RSS per process)")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    rows = load(a.files)

    res = {}        # (op, size, batch) -> label -> {"med": [...], "min": [...], "rss": [...], "nomin": bool}
    keys, labels = [], []
    proc_rss = {}   # label -> max peak RSS of summary lines
    for r in rows:
        impl = r.get("impl")
        if impl is None:
            continue
        if impl not in labels:
            labels.append(impl)
        if "op" not in r or "median_ms" not in r:
            if "peak_rss_mb" in r:
                proc_rss[impl] = max(proc_rss.get(impl, 0), r["peak_rss_mb"])
            continue
        key = (r["op"], r.get("size", ""), r.get("batch", ""))
        if key not in res:
            res[key] = {}
            keys.append(key)
        d = res[key].setdefault(impl, {"med": [], "min": [], "rss": [], "nomin": False})
        d["med"].append(r["median_ms"])
        if "min_ms" in r:
            d["min"].append(r["min_ms"])
        else:
            d["min"].append(r["median_ms"])
            d["nomin"] = True
        if "peak_rss_mb" in r:
            d["rss"].append(r["peak_rss_mb"])

    # ours first (kandinsky.c, then the others by name), then the PyTorch labels (pytorch first)
    order = sorted(labels, key=lambda l: (l.startswith(TORCH), l not in ("kandinsky.c", TORCH), l))
    have_ac = any(AUTOCAST in v for v in res.values())
    hdr = ["op", "size", "batch", "impl", "rounds", "min ms", "median ms", "min / pytorch", "med / pytorch"]
    if have_ac:
        hdr += ["min / autocast", "med / autocast"]
    hdr += ["RSS MB"]
    table = [hdr]
    nomin = set()
    for key in keys:
        op, size, batch = key
        ref, ac = res[key].get(TORCH), res[key].get(AUTOCAST)
        for label in order:
            d = res[key].get(label)
            if d is None:
                continue
            mn, md = min(d["min"]), median(d["med"])
            mark = "~" if d["nomin"] else ""
            if d["nomin"]:
                nomin.add(label)
            row = [str(op), str(size), str(batch), label, str(len(d["med"])), f"{mark}{mn:.1f}", f"{md:.1f}"]
            if ref is not None and label != TORCH:
                row += [f"{mn / min(ref['min']):.2f}", f"{md / median(ref['med']):.2f}"]
            else:
                row += ["", ""]
            if have_ac:
                if ac is not None and not label.startswith(TORCH):
                    row += [f"{mn / min(ac['min']):.2f}", f"{md / median(ac['med']):.2f}"]
                else:
                    row += ["", ""]
            rss = max(d["rss"]) if d["rss"] else proc_rss.get(label)
            row.append(f"{rss:.0f}" if rss is not None else "?")
            table.append(row)
    if len(table) == 1:
        print("compare.py: no result lines in " + ", ".join(a.files))
        return 1
    if all(r[2] == "" for r in table[1:]):  # no batch anywhere: drop the column
        table = [r[:2] + r[3:] for r in table]
    w = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    print()
    prev = None
    for i, r in enumerate(table):
        if i > 1 and r[:2] != prev:
            print()
        prev = r[:2]
        print("  ".join(c.ljust(w[j]) if j < len(w) and table[0][j] in ("op", "impl") else c.rjust(w[j])
                        for j, c in enumerate(r)).rstrip())
        if i == 0:
            print("  ".join("-" * x for x in w))
    print("\nmin ms = fastest call over all rounds, median ms = median of the per-process medians over the rounds;")
    print("ratio = that label's time / pytorch (float32) time" + (" or / pytorch-bf16-autocast time" if have_ac else "")
          + " (< 1: kandinsky.c is faster)")
    for label in sorted(nomin):
        print(f"~ {label} reports no min_ms: its min is the lowest per-process value of median_ms")
    if a.runs:
        try:
            runs = [l.rstrip("\n").split("\t") for l in open(a.runs) if l.strip()]
        except OSError:
            runs = []
        bad = [r for r in runs if len(r) >= 4 and float(r[3]) > DISTURBED]
        failed = [r for r in runs if len(r) >= 5 and r[4] != "0"]
        print(f"{len(runs)} processes; {len(bad)} measured while other processes kept > {DISTURBED} cores busy"
              + (" (disturbed: rerun on a quiet machine):" if bad else ""))
        for r in bad:
            print(f"  {r[0]}: {float(r[3]):.2f} cores")
        for r in failed:
            print(f"  FAILED: {r[0]} (exit {r[4]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
