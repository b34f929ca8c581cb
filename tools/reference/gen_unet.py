"""Tiny random-weight Kandinsky decoder U-Nets (diffusers UNet2DConditionModel) and their outputs.

One folder per variant under tests/data/unet/<variant>/ (config.json + safetensors, exactly as
save_pretrained writes them) and tests/data/unet/<variant>_cases.safetensors with inputs and
outputs for batch 1 and 2, a square and a non-square latent, and several timesteps.

  v22        2.2 decoder: addition_embed_type "image", encoder_hid_dim_type "image_proj",
             layers_per_block 2, BF16 weights
  v21        2.1 decoder: "text_image" + "text_image_proj" (image tokens + projected text states),
             F16 weights
  v22_hint   2.2 ControlNet depth: "image_hint" (hint block output concatenated, in_channels 8), F16
  v22_inpaint 2.2 inpainting: in_channels 9, F16

Weights are rounded to their storage dtype first and the reference runs in f32 on the rounded
values, so parity stays exact (F32 weight files are covered by the MoVQ and op fixtures).
Usage: python tools/reference/gen_unet.py [--out tests/data]
"""
import argparse
import os

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

BASE = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[16, 32, 32], center_input_sample=False,
    cross_attention_dim=16, down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D",
                                               "SimpleCrossAttnDownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=1,
    mid_block_scale_factor=1, mid_block_type="UNetMidBlock2DSimpleCrossAttn", norm_eps=1e-5, norm_num_groups=8,
    only_cross_attention=False, out_channels=8, resnet_out_scale_factor=1.0, resnet_skip_time_act=False,
    resnet_time_scale_shift="scale_shift", sample_size=16, time_embedding_type="positional",
    up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
    upcast_attention=False, use_linear_projection=False, addition_embed_type_num_heads=64,
)
VARIANTS = {
    "v22": dict(addition_embed_type="image", encoder_hid_dim=24, encoder_hid_dim_type="image_proj",
                layers_per_block=2),
    "v21": dict(addition_embed_type="text_image", encoder_hid_dim=40, encoder_hid_dim_type="text_image_proj"),
    "v22_hint": dict(addition_embed_type="image_hint", encoder_hid_dim=24, encoder_hid_dim_type="image_proj",
                     in_channels=8),
    "v22_inpaint": dict(addition_embed_type="image", encoder_hid_dim=24, encoder_hid_dim_type="image_proj",
                        in_channels=9),
}
HALF = {"v22": torch.bfloat16, "v21": torch.float16, "v22_hint": torch.float16, "v22_inpaint": torch.float16}
TEXT_TOKENS = 12


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if ("norm" in name and name.endswith("weight")) else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)


def inputs(cfg, variant, b, h, w, g):
    sample_ch = 4 if variant == "v22_hint" else cfg["in_channels"]
    d = {"sample": torch.randn((b, sample_ch, h, w), generator=g)}
    if variant == "v21":
        d["image_embeds"] = torch.randn((b, cfg["cross_attention_dim"]), generator=g)
        d["text_embeds"] = torch.randn((b, cfg["cross_attention_dim"]), generator=g)
        d["encoder_hidden_states"] = torch.randn((b, TEXT_TOKENS, cfg["encoder_hid_dim"]), generator=g)
    else:
        d["image_embeds"] = torch.randn((b, cfg["encoder_hid_dim"]), generator=g)
    if variant == "v22_hint":
        d["hint"] = torch.rand((b, 3, h * 8, w * 8), generator=g)
    return d


def run(model, variant, d, t):
    added = {"image_embeds": d["image_embeds"]}
    if "text_embeds" in d:
        added["text_embeds"] = d["text_embeds"]
    if "hint" in d:
        added["hint"] = d["hint"]
    with torch.no_grad():
        return model(d["sample"], t, encoder_hidden_states=d.get("encoder_hidden_states"),
                     added_cond_kwargs=added).sample


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for vi, (variant, extra) in enumerate(VARIANTS.items()):
        cfg = dict(BASE, **extra)
        model = UNet2DConditionModel(**cfg).eval()
        randomize(model, 200 + vi)
        if HALF[variant]:
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.to(HALF[variant]).float())
        folder = os.path.join(args.out, "unet", variant)
        model.save_pretrained(folder, safe_serialization=True)
        if HALF[variant]:
            save_file({k: v.to(HALF[variant]).contiguous() for k, v in model.state_dict().items()},
                      os.path.join(folder, "diffusion_pytorch_model.safetensors"))
        g = torch.Generator().manual_seed(11 + vi)
        tensors = {}
        cases = {"b1_8x8": (1, 8, 8, [999.0]), "b2_8x12": (2, 8, 12, [1.0, 500.0])}
        for tag, (b, h, w, ts) in cases.items():
            d = inputs(cfg, variant, b, h, w, g)
            for k, v in d.items():
                tensors[f"{tag}.{k}"] = v.contiguous()
            for t in ts:
                tensors[f"{tag}.t{int(t)}.out"] = run(model, variant, d, torch.tensor(t)).contiguous()
        # per-sample timesteps in one batch
        d = inputs(cfg, variant, 2, 8, 8, g)
        tb = torch.tensor([17.0, 981.0])
        for k, v in d.items():
            tensors[f"b2_tvec.{k}"] = v.contiguous()
        tensors["b2_tvec.timesteps"] = tb
        tensors["b2_tvec.out"] = run(model, variant, d, tb).contiguous()
        save_file(tensors, os.path.join(args.out, "unet", f"{variant}_cases.safetensors"),
                  metadata={"generator": "tools/reference/gen_unet.py", "variant": variant})
        print(f"{variant}: {sum(p.numel() for p in model.parameters())} parameters")


if __name__ == "__main__":
    main()
