"""Tiny random-weight MoVQ (diffusers VQModel, norm_type "spatial") models and their outputs.

Writes tests/data/movq/<config>/ (config.json + diffusion_pytorch_model.safetensors, exactly as
save_pretrained lays them out) and tests/data/movq/<config>_cases.safetensors with inputs and
reference outputs of encode() and decode(force_not_quantize=True).

  config "kandinsky_small": the published structure (4 levels, 2 layers per block, attention in
      the last encoder / first decoder block, mid attention) at 1/4 of the width, weights rounded
      to and saved as F16 (the model runs in f32 on the rounded values, so parity stays exact).
  config "two_level": 2 levels, 1 layer per block, 16 encoder groups, 3 latent channels, no mid
      attention, saved as F32.

Usage: python tools/reference/gen_movq.py [--out tests/data]
"""
import argparse
import os

import torch
from diffusers import VQModel
from safetensors.torch import save_file

CONFIGS = {
    "kandinsky_small": dict(
        in_channels=3, out_channels=3, latent_channels=4, vq_embed_dim=4, num_vq_embeddings=64,
        block_out_channels=[32, 32, 64, 64], layers_per_block=2, norm_num_groups=32,
        down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        norm_type="spatial", act_fn="silu", mid_block_add_attention=True, sample_size=32,
        scaling_factor=0.18215,
    ),
    "two_level": dict(
        in_channels=3, out_channels=3, latent_channels=3, vq_embed_dim=3, num_vq_embeddings=32,
        block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=16,
        down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"],
        norm_type="spatial", act_fn="silu", mid_block_add_attention=False, sample_size=32,
    ),
}
HALF = {"kandinsky_small": True, "two_level": False}


def randomize(model, seed):
    """Random weights with a spread that keeps activations O(1) (default init would make norms
    trivial: GroupNorm gamma=1, beta=0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if ("norm" in name and name.endswith("weight")) else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for ci, (name, cfg) in enumerate(CONFIGS.items()):
        model = VQModel(**cfg).eval()
        randomize(model, 100 + ci)
        if HALF[name]:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.half().float())
        folder = os.path.join(args.out, "movq", name)
        model.save_pretrained(folder, safe_serialization=True)
        if HALF[name]:  # re-save the weights file as F16 (same names, same layout)
            path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
            save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, path)
        f = 2 ** (len(cfg["block_out_channels"]) - 1)
        g = torch.Generator().manual_seed(7 + ci)
        tensors = {}
        for tag, (b, h, w) in {"b1_64x64": (1, 64, 64), "b2_48x80": (2, 48, 80)}.items():
            img = torch.rand((b, 3, h, w), generator=g) * 2 - 1
            lat = torch.randn((b, cfg["latent_channels"], h // f, w // f), generator=g)
            with torch.no_grad():
                enc = model.encode(img).latents
                dec = model.decode(lat, force_not_quantize=True).sample
            tensors[f"{tag}.image"] = img.contiguous()
            tensors[f"{tag}.encoded"] = enc.contiguous()
            tensors[f"{tag}.latents"] = lat.contiguous()
            tensors[f"{tag}.decoded"] = dec.contiguous()
        save_file(tensors, os.path.join(args.out, "movq", f"{name}_cases.safetensors"),
                  metadata={"generator": "tools/reference/gen_movq.py", "config": name})
        n = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n} parameters, downscale {f}")


if __name__ == "__main__":
    main()
