#!/usr/bin/env python3
"""Writes the fixtures of tests/test_unet20.c to tests/data/unet20/: Kandinsky 2.0's U-Net, the original
code's Text2ImUNet (ai-forever/Kandinsky-2, kandinsky2/model/text2im_model.py + unet.py; fetched,
never copied here) in a tiny configuration, saved as the published Kandinsky-2-0.pt is (torch.save of
the state dict, original guided-diffusion names).

    unet.pt            model_channels 32, channel_mult 1,1,2, 1 res block, attention at ds 1 and 4
                       (levels 0 and 2: level 1 has none, so its upsampler sits at index .1 of its
                       output block), 16 channels per head, resblock_updown, scale-shift norm,
                       model_dim 32, text_encoder_in_dim1 48 (XLM-R width), in_dim2 24 (mCLIP pooled),
                       pooling_type "from_model"; the mT5 width is the original's fixed 512. Random
                       weights rounded to float16 and stored as float16 (the file stays small).
    cases.safetensors  x [2,4,8,8], timesteps [2], full_emb1 [2,12,48], pooled_emb1 [2,24],
                       full_emb2 [2,12,512] → out [2,8,8,8] (the model's forward, float32)

    ~/.venvs/kd-ref/bin/python tools/reference/gen_unet20.py --kandinsky2 /path/to/Kandinsky-2 [--out tests/data/unet20]
"""
import argparse
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kandinsky2", required=True, help="folder holding the kandinsky2/ package")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "data", "unet20"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, os.path.join(a.kandinsky2, "kandinsky2"))  # not the package: its __init__ needs the Hub
    from model.text2im_model import Text2ImUNet

    m = Text2ImUNet(model_dim=32, text_encoder_in_dim1=48, text_encoder_in_dim2=24, pooling_type="from_model",
                    in_channels=4, model_channels=32, out_channels=8, num_res_blocks=1, attention_resolutions=(1, 4),
                    dropout=0, channel_mult=(1, 1, 2), use_fp16=False, num_heads=1, num_head_channels=16,
                    num_heads_upsample=-1, use_scale_shift_norm=True, resblock_updown=True,
                    cache_text_emb=False).eval()
    g = torch.Generator().manual_seed(2002)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 1:
                base = 1.0 if ("norm" in name or "ln_model" in name or "in_layers.0" in name or "out_layers.0" in name
                               or name.startswith("out.0")) and name.endswith("weight") else 0.0
                v = base + 0.2 * torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5
            p.copy_(v.half().float())
    os.makedirs(a.out, exist_ok=True)
    torch.save({k: v.half() for k, v in m.state_dict().items()}, os.path.join(a.out, "unet.pt"))
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([999.0, 321.5])
    f1 = torch.randn(2, 12, 48, generator=g)
    p1 = torch.randn(2, 24, generator=g)
    f2 = torch.randn(2, 12, 512, generator=g)
    with torch.no_grad():
        out = m(x, t, full_emb1=f1, pooled_emb1=p1, full_emb2=f2, pooled_emb2=None)
    save_file({"x": x, "timesteps": t, "full_emb1": f1, "pooled_emb1": p1, "full_emb2": f2, "out": out.contiguous()},
              os.path.join(a.out, "cases.safetensors"))
    print(tuple(out.shape), float(out.abs().max()), sum(p.numel() for p in m.parameters()))


if __name__ == "__main__":
    main()
