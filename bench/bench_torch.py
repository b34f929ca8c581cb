#!/usr/bin/env python3
"""PyTorch CPU counterpart of bench_ops: the same specs, timing rule and output format.

    bench_torch.py [--threads N] [--quick] [--min-time S] [SPEC ...]

SPEC syntax and the output lines are described in bench_ops.c. What each op runs:
  conv     F.conv2d(x, w, b, padding=1)
  gemm     F.linear(x, w, b)
  gn       F.group_norm(x, G, gamma, beta, 1e-5)
  gn_silu  F.silu(F.group_norm(...))
  attn     q, k, v as [B, L, H*d] (diffusers' layout) viewed as [B, H, L, d]; pre tokens
           concatenated in front of k/v with torch.cat (as diffusers' added-KV attention does),
           F.scaled_dot_product_attention(..., is_causal=causal), output transposed back to
           [B, Lq, H*d]; the cat and the transpose are part of the timed call, as both are part of
           what kd_attention computes.
float32, torch.inference_mode, torch.set_num_threads(threads).
Python is a development tool only; this file exists to measure kandinsky.c against torch.
"""
import argparse
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# Keep in step with full_specs / quick_specs in bench_ops.c (run_ops.sh passes bench_ops' list
# explicitly, so a joint run always measures the same shapes).
FULL_SPECS = [
    "conv:2,384,384,64,64", "conv:2,768,768,32,32", "conv:2,1152,1152,16,16", "conv:2,1536,1536,8,8",
    "conv:2,1152,384,64,64", "conv:2,2688,1152,16,16", "conv:2,3072,1536,8,8",
    "gemm:2048,768,768", "gemm:512,1152,1152", "gemm:128,1536,1536", "gemm:1536,1536,4096",
    "gemm:768,3456,2048", "gemm:384,1024,3456", "gemm:162,2048,2048", "gemm:162,2048,8192",
    "gemm:162,8192,2048",
    "gn:2,384,64,64,32", "gn:2,1536,8,8,32", "gn_silu:2,384,64,64,32",
    "attn:2,12,64,1024,1024,32", "attn:2,18,64,256,256,32", "attn:2,24,64,64,64,32",
    "attn:2,32,64,81,81,0,causal", "attn:1,1,512,4096,4096,0",
]
QUICK_SPECS = [
    "conv:2,384,384,32,32", "conv:2,1536,1536,8,8", "gemm:512,1152,1152", "gemm:162,2048,2048",
    "gn:2,384,64,64,32", "attn:2,18,64,256,256,32", "attn:2,32,64,81,81,0,causal",
    "attn:1,1,512,1024,1024,0",
]
NARGS = {"conv": 5, "gemm": 3, "gn": 5, "gn_silu": 5, "attn": 6}


def parse_spec(text):
    op, sep, rest = text.partition(":")
    if not sep or op not in NARGS:
        raise ValueError(f"bad spec '{text}'")
    parts = rest.split(",")
    causal = False
    if op == "attn" and len(parts) == 7 and parts[6] == "causal":
        causal = True
        parts = parts[:6]
    if len(parts) != NARGS[op]:
        raise ValueError(f"bad spec '{text}'")
    v = [int(p) for p in parts]
    if any(x <= 0 for i, x in enumerate(v) if not (op == "attn" and i == 5)) or min(v) < 0:
        raise ValueError(f"bad spec '{text}'")
    return op, v, causal


def make_case(op, v, causal):
    """Returns (fn, work, unit); fn() runs the op once."""
    g = torch.Generator().manual_seed(0)

    def rnd(*shape, scale=1.0):
        return (torch.rand(*shape, generator=g) * 2 - 1) * scale

    if op == "conv":
        B, Cin, Cout, H, W = v
        x, w, b = rnd(B, Cin, H, W), rnd(Cout, Cin, 3, 3, scale=1 / math.sqrt(9 * Cin)), rnd(Cout, scale=0.1)
        return (lambda: F.conv2d(x, w, b, padding=1)), 2.0 * B * Cout * Cin * 9 * H * W, "GFLOP/s"
    if op == "gemm":
        M, K, N = v
        x, w, b = rnd(M, K), rnd(N, K, scale=1 / math.sqrt(K)), rnd(N, scale=0.1)
        return (lambda: F.linear(x, w, b)), 2.0 * M * K * N, "GFLOP/s"
    if op in ("gn", "gn_silu"):
        B, C, H, W, G = v
        x, gamma, beta = rnd(B, C, H, W), rnd(C), rnd(C, scale=0.1)
        if op == "gn":
            fn = lambda: F.group_norm(x, G, gamma, beta, 1e-5)  # noqa: E731
        else:
            fn = lambda: F.silu(F.group_norm(x, G, gamma, beta, 1e-5))  # noqa: E731
        return fn, 2.0 * 4 * B * C * H * W, "GB/s"
    if op == "attn":
        B, H, d, Lq, Lkv, Lpre = v
        C = H * d
        q, k, vv = rnd(B, Lq, C), rnd(B, Lkv, C), rnd(B, Lkv, C)
        kp, vp = (rnd(B, Lpre, C), rnd(B, Lpre, C)) if Lpre else (None, None)

        def heads(t):
            return t.view(B, -1, H, d).transpose(1, 2)

        def fn():
            kk, vx = (torch.cat([kp, k], dim=1), torch.cat([vp, vv], dim=1)) if Lpre else (k, vv)
            o = F.scaled_dot_product_attention(heads(q), heads(kk), heads(vx), is_causal=causal)
            return o.transpose(1, 2).reshape(B, Lq, C)

        return fn, 4.0 * B * H * Lq * (Lkv + Lpre) * d, "GFLOP/s"
    raise ValueError(op)


def machine_busy_s():
    """Busy CPU-seconds of the whole machine (user nice system irq softirq steal), as bench_ops."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return -1.0
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def own_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def bench_one(spec, min_time):
    op, v, causal = parse_spec(spec)
    fn, work, unit = make_case(op, v, causal)
    fn()  # warm-up
    times = []
    busy0, own0 = machine_busy_s(), own_cpu_s()
    t_start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - t_start < min_time and len(times) < 100000):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_start
    busy1, own1 = machine_busy_s(), own_cpu_s()
    other = -1.0 if busy0 < 0 or busy1 < 0 else max(0.0, ((busy1 - busy0) - (own1 - own0)) / wall)
    med = statistics.median(times)
    return op, med * 1e3, min(times) * 1e3, len(times), work / med * 1e-9, unit, other


# ---- shared with the bench_{unet,movq,prior,mclip}.py `run` subcommands ---------------------------

def add_run_args(ap):
    """--autocast: run the timed calls under torch.autocast("cpu", dtype=torch.bfloat16); the label
    becomes pytorch-bf16-autocast (weights stay float32; autocast casts them per call)."""
    ap.add_argument("--autocast", action="store_true",
                    help='run under torch.autocast("cpu", dtype=torch.bfloat16), label pytorch-bf16-autocast')


def impl_label(autocast):
    return "pytorch-bf16-autocast" if autocast else "pytorch"


def precision(autocast):
    """The context the timed calls run in (inside torch.inference_mode)."""
    import contextlib
    return torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()


def c_median(times):
    """The C programs' median: sorted, element n / 2 (the upper middle for an even count)."""
    return sorted(times)[len(times) // 2]


def default_threads():
    env = os.environ.get("KD_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--min-time", type=float, default=None)
    ap.add_argument("specs", nargs="*")
    a = ap.parse_args()
    threads = a.threads if a.threads > 0 else default_threads()
    min_time = a.min_time if a.min_time is not None else (0.25 if a.quick else 1.0)
    specs = a.specs or (QUICK_SPECS if a.quick else FULL_SPECS)
    for s in specs:
        parse_spec(s)

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    print("meta\timpl\ttorch")
    print(f"meta\tthreads\t{torch.get_num_threads()}")
    print(f"meta\tmin_time_s\t{min_time:g}")
    print(f"meta\ttorch_version\t{torch.__version__}")
    print(f"meta\tcpu_capability\t{torch.backends.cpu.get_cpu_capability()}")
    print(f"meta\tmkl_available\t{torch.backends.mkl.is_available()}")
    print(f"meta\tmkldnn_available\t{torch.backends.mkldnn.is_available()}")
    cfg = torch.__config__.show()
    for line in cfg.splitlines():
        line = line.strip()
        for key in ("BLAS_INFO=", "LAPACK_INFO="):
            for tok in line.replace(",", " ").split():
                if tok.startswith(key):
                    print(f"meta\t{key[:-1].lower()}\t{tok[len(key):]}")
    for i, line in enumerate(cfg.splitlines()[:8]):
        print(f"meta\tconfig_{i}\t{line.strip()}")
    sys.stdout.flush()

    results = []
    with torch.inference_mode():
        for s in specs:
            op, med, mn, reps, rate, unit, other = bench_one(s, min_time)
            results.append((op, s, med, mn, reps, rate, unit))
            print(f"result\ttorch\t{op}\t{s}\t{med:.4f}\t{mn:.4f}\t{reps}\t{rate:.2f}\t{unit}\t{other:.2f}",
                  flush=True)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rss = ru.ru_maxrss
    print(f"meta\tpeak_rss_kb\t{rss}")
    print(f"meta\tcpu_s\t{ru.ru_utime + ru.ru_stime:.3f}")

    print(f"\ntorch {torch.__version__} ops, {torch.get_num_threads()} threads")
    print(f"{'op':<8} {'shape':<30} {'median ms':>11} {'min ms':>11} {'reps':>5} {'rate':>10}")
    for op, s, med, mn, reps, rate, unit in results:
        print(f"{op:<8} {s.split(':', 1)[1]:<30} {med:11.3f} {mn:11.3f} {reps:5d} {rate:10.1f} {unit}")
    print(f"peak RSS: {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
