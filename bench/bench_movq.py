"""MoVQ benchmark, PyTorch side, and builder of the full-size random-weight model.

  python bench/bench_movq.py make DIR           # published Kandinsky MoVQ config, random weights
  python bench/bench_movq.py run DIR [--threads N] [--sizes 256,512] [--batch 1] [--reps 3] [--only encode|decode]
                                     [--autocast]

`run` prints the same JSON lines as bench_movq (C) for diffusers' VQModel on the CPU in float32;
--autocast runs the calls under torch.autocast("cpu", dtype=torch.bfloat16) (label
pytorch-bf16-autocast). Median as the C side takes it (upper middle for an even --reps).
"""
import argparse
import json
import resource
import time

import torch

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import add_run_args, c_median, impl_label, precision  # noqa: E402

# movq/config.json of kandinsky-community/kandinsky-2-2-decoder (and 2-1), spec §2.2
PUBLISHED = dict(
    act_fn="silu", block_out_channels=[128, 256, 256, 512],
    down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
    in_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, norm_type="spatial",
    num_vq_embeddings=16384, out_channels=3, sample_size=32, scaling_factor=0.18215,
    up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
    vq_embed_dim=4,
)


def make(path):
    from diffusers import VQModel
    torch.manual_seed(0)
    m = VQModel(**PUBLISHED)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim > 1:
                p.normal_(0, 1.0 / p[0].numel() ** 0.5)
    m.save_pretrained(path, safe_serialization=True)
    print(f"wrote {path}: {sum(p.numel() for p in m.parameters())} parameters")


def run(args):
    from diffusers import VQModel
    torch.set_num_threads(args.threads)
    m = VQModel.from_pretrained(args.dir).eval()
    f = 2 ** (len(m.config.block_out_channels) - 1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}, "
          f"autocast bf16 {args.autocast}", file=sys.stderr)
    for px in [int(s) for s in args.sizes.split(",")]:
        img = torch.rand(args.batch, 3, px, px) * 2 - 1
        z = torch.randn(args.batch, m.config.latent_channels, px // f, px // f)
        for op in ("encode", "decode"):
            if args.only and args.only != op:
                continue
            times = []
            with torch.inference_mode(), precision(args.autocast):
                for r in range(args.reps + 1):
                    t0 = time.perf_counter()
                    if op == "encode":
                        m.encode(img)
                    else:
                        m.decode(z, force_not_quantize=True)
                    if r:
                        times.append(time.perf_counter() - t0)
            print(json.dumps({"impl": impl_label(args.autocast), "op": op, "size": px, "batch": args.batch, "threads": args.threads,
                              "median_ms": round(c_median(times) * 1e3, 1), "min_ms": round(min(times) * 1e3, 1)}),
                  flush=True)
    print(json.dumps({"impl": impl_label(args.autocast), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "run"])
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="")
    add_run_args(ap)
    a = ap.parse_args()
    make(a.dir) if a.cmd == "make" else run(a)
