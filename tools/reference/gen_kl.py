#!/usr/bin/env python3
"""Writes the fixtures of tests/test_autoencoder_kl.c to tests/data/autoencoder_kl/: Kandinsky 2.0's
autoencoder, ldm's AutoencoderKL as the original code defines it (ai-forever/Kandinsky-2,
kandinsky2/vqgan/autoencoder.py + vqgan_blocks.py; fetched, never copied here), in a tiny
configuration, saved the way the published vae.ckpt is: a Lightning checkpoint with the weights under
"state_dict" beside the training state (and the loss's tensors inside the state dict).

    vae.ckpt            ddconfig ch 32, ch_mult 1,2, 1 res block, resolution 16, attn_resolutions
                        [8] (attention in the lowest level only: the decoder's level order is
                        reversed in the original names), z 4, embed 4; random weights (norms too)
    cases.safetensors   image [2,3,20,24] in [-1,1] → moments [2,8,10,12] (encoder + quant_conv);
                        noise [2,4,10,12] → sample = posterior.sample() with that noise;
                        latents [1,4,7,9] → decoded [1,3,14,18] (post_quant_conv + decoder)

The original module imports pytorch_lightning for its base class only; it is stubbed with nn.Module.

    ~/.venvs/kd-ref/bin/python tools/reference/gen_kl.py --kandinsky2 /path/to/Kandinsky-2 [--out tests/data/autoencoder_kl]
(a checkout of ai-forever/Kandinsky-2, e.g. `git --git-dir=<fetched bare repo> archive HEAD kandinsky2 | tar -x -C DIR`)
"""
import argparse
import os
import sys
import types

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
DDCONFIG = dict(double_z=True, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2],
                num_res_blocks=1, attn_resolutions=[8], dropout=0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kandinsky2", required=True, help="folder holding the kandinsky2/ package")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "data", "autoencoder_kl"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.modules["pytorch_lightning"] = types.SimpleNamespace(LightningModule=torch.nn.Module)
    sys.path.insert(0, os.path.join(a.kandinsky2, "kandinsky2"))  # not the package: its __init__ needs the Hub
    from vqgan.autoencoder import AutoencoderKL
    from vqgan.vqgan_blocks import DiagonalGaussianDistribution

    m = AutoencoderKL(ddconfig=DDCONFIG, embed_dim=4).eval()
    g = torch.Generator().manual_seed(2000)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 1:
                base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    sd = dict(m.state_dict())
    sd["loss.logvar"] = torch.zeros(())  # what the training loss leaves in the published state dict
    sd["loss.discriminator.main.0.weight"] = torch.randn(8, 3, 4, 4, generator=g)
    os.makedirs(a.out, exist_ok=True)
    torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.4.2", "state_dict": sd,
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6, "params": [0]}]}],
                "lr_schedulers": [], "callbacks": {}}, os.path.join(a.out, "vae.ckpt"))

    image = torch.rand(2, 3, 20, 24, generator=g) * 2 - 1
    latents = torch.randn(1, 4, 7, 9, generator=g)
    with torch.no_grad():
        h = m.encoder(image)
        moments = m.quant_conv(h)
        post = DiagonalGaussianDistribution(moments)
        noise = torch.randn(post.mean.shape, generator=g)
        sample = post.mean + post.std * noise  # = post.sample() with this noise
        decoded = m.decode(latents)
    save_file({"image": image, "moments": moments.contiguous(), "noise": noise, "sample": sample.contiguous(),
               "latents": latents, "decoded": decoded.contiguous()}, os.path.join(a.out, "cases.safetensors"))
    print({k: tuple(v.shape) for k, v in {"moments": moments, "decoded": decoded}.items()})


if __name__ == "__main__":
    main()
