"""U-Net step benchmark, PyTorch side, and builder of the full-size random-weight 2.2 U-Net.

  python bench/bench_unet.py make DIR [--dtype f32|f16]   # published 2.2 decoder config, random weights
  python bench/bench_unet.py run DIR [--threads N] [--latents 32,64] [--batch 2] [--reps 3] [--autocast]

`run` prints the same JSON lines as bench_unet (C) for diffusers' UNet2DConditionModel, float32 on the
CPU; --autocast runs the calls under torch.autocast("cpu", dtype=torch.bfloat16) (label
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

# unet/config.json of kandinsky-community/kandinsky-2-2-decoder (spec §2.1)
PUBLISHED_22 = dict(
    act_fn="silu", addition_embed_type="image", addition_embed_type_num_heads=64, attention_head_dim=64,
    block_out_channels=[384, 768, 1152, 1536], center_input_sample=False, class_embed_type=None,
    class_embeddings_concat=False, conv_in_kernel=3, conv_out_kernel=3, cross_attention_dim=768,
    cross_attention_norm=None,
    down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D",
                      "SimpleCrossAttnDownBlock2D"],
    downsample_padding=1, dual_cross_attention=False, encoder_hid_dim=1280, encoder_hid_dim_type="image_proj",
    flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=3, mid_block_only_cross_attention=None,
    mid_block_scale_factor=1, mid_block_type="UNetMidBlock2DSimpleCrossAttn", norm_eps=1e-05, norm_num_groups=32,
    num_class_embeds=None, only_cross_attention=False, out_channels=8, projection_class_embeddings_input_dim=None,
    resnet_out_scale_factor=1.0, resnet_skip_time_act=False, resnet_time_scale_shift="scale_shift", sample_size=64,
    time_cond_proj_dim=None, time_embedding_act_fn=None, time_embedding_dim=None, time_embedding_type="positional",
    timestep_post_act=None, transformer_layers_per_block=1,
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D",
                    "ResnetUpsampleBlock2D"],
    upcast_attention=False, use_linear_projection=False,
)


def make(path, dtype):
    from diffusers import UNet2DConditionModel
    torch.manual_seed(0)
    with torch.device("meta"):
        m = UNet2DConditionModel(**PUBLISHED_22)
    m = m.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim > 1:
                p.normal_(0, 1.0 / p[0].numel() ** 0.5)
            else:
                # every norm's weight 1 (conv_norm_out included: a 0 there makes the output exactly 0,
                # which times the same but leaves nothing to compare in bench_fidelity)
                p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
    if dtype == "f16":
        m = m.half()
    m.save_pretrained(path, safe_serialization=True, max_shard_size="20GB")
    print(f"wrote {path}: {sum(p.numel() for p in m.parameters())} parameters ({dtype})")


def run(a):
    from diffusers import UNet2DConditionModel
    torch.set_num_threads(a.threads)
    m = UNet2DConditionModel.from_pretrained(a.dir, torch_dtype=torch.float32).eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}, "
          f"autocast bf16 {a.autocast}", file=sys.stderr)
    for lat in [int(s) for s in a.latents.split(",")]:
        x = torch.randn(a.batch, 4, lat, lat)
        img = torch.randn(a.batch, m.config.encoder_hid_dim)
        t = torch.tensor(500.0)
        times = []
        with torch.inference_mode(), precision(a.autocast):
            for r in range(a.reps + 1):
                t0 = time.perf_counter()
                m(x, t, encoder_hidden_states=None, added_cond_kwargs={"image_embeds": img})
                if r:
                    times.append(time.perf_counter() - t0)
                print(f"  latent {lat} rep {r - 1}: {time.perf_counter() - t0:.2f} s", file=sys.stderr)
        print(json.dumps({"impl": impl_label(a.autocast), "op": "unet_step", "size": lat, "batch": a.batch, "threads": a.threads,
                          "median_ms": round(c_median(times) * 1e3, 1), "min_ms": round(min(times) * 1e3, 1),
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}),
              flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "run"])
    ap.add_argument("dir")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latents", default="32,64")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    add_run_args(ap)
    a = ap.parse_args()
    make(a.dir, a.dtype) if a.cmd == "make" else run(a)
