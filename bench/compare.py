"""Joins the JSON lines of a kandinsky.c benchmark and its PyTorch twin (same ops, same sizes)
and prints the time ratio and peak memory of each. Usage: python bench/compare.py RESULTS.jsonl"""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
res = {(r["impl"], r["op"], r["size"]): r for r in rows if "op" in r}
rss = {r["impl"]: r["peak_rss_mb"] for r in rows if "peak_rss_mb" in r}
print(f"\n{'op':10} {'size':>5} {'kandinsky.c ms':>15} {'pytorch ms':>11} {'ratio':>6}")
for (impl, op, size), r in sorted(res.items()):
    other = res.get(("pytorch", op, size))
    if impl != "kandinsky.c" or other is None:
        continue
    print(f"{op:10} {size:>5} {r['median_ms']:>15.1f} {other['median_ms']:>11.1f} {r['median_ms'] / other['median_ms']:>6.2f}")
print(f"peak RSS MB: kandinsky.c {rss.get('kandinsky.c')}, pytorch {rss.get('pytorch')}")
print("ratio = kandinsky.c time / pytorch time (< 1: kandinsky.c is faster)")
