"""Tiny random-weight Kandinsky 2.2 prior + decoder pipelines in the published folder layout,
and end-to-end outputs of diffusers' KandinskyV22PriorPipeline + KandinskyV22Pipeline run with
ONE torch.Generator (as KandinskyV22CombinedPipeline does), for several seeds, sizes, negative
prompts and guidance scales.

  tests/data/pipeline22/prior/     model_index.json, prior/, text_encoder/, tokenizer/ (vocab and
                                   merges are symlinks into tests/data/clip_tokenizer/bpe),
                                   image_encoder/, image_processor/, scheduler/
  tests/data/pipeline22/decoder/   model_index.json, unet/, movq/, scheduler/
  tests/data/pipeline22/cases.safetensors + cases.json (the parameters of each case)

Usage: python tools/reference/gen_pipeline.py [--out tests/data]
"""
import argparse
import json
import os

import numpy as np
import torch
from diffusers import (DDPMScheduler, KandinskyV22Pipeline, KandinskyV22PriorPipeline, PriorTransformer,
                       UnCLIPScheduler, UNet2DConditionModel, VQModel)
from safetensors.torch import save_file
from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer,
                          CLIPVisionConfig, CLIPVisionModelWithProjection)

import conditioning

E = 16  # CLIP embedding width = prior embedding_dim = U-Net encoder_hid_dim


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 or name.endswith("class_embedding"):
                base = 1.0 if ("norm" in name and name.endswith("weight")) or name.endswith("clip_std") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan = p.shape[-1] if p.ndim == 2 else p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan ** 0.5)


def build(root, bpe_dir):
    tok = CLIPTokenizer(os.path.join(bpe_dir, "vocab.json"), os.path.join(bpe_dir, "merges.txt"),
                        pad_token="<|endoftext|>", model_max_length=77)
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=E, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=E, bos_token_id=0, pad_token_id=1,
        eos_token_id=2)).eval()
    vision = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=E, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2, image_size=28,
        patch_size=14, projection_dim=E, hidden_act="gelu")).eval()
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=E,
                             num_embeddings=77, additional_embeddings=4, dropout=0.0).eval()
    processor = CLIPImageProcessor(crop_size=28, size={"shortest_edge": 28})
    prior_sched = UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample",
                                  num_train_timesteps=1000, clip_sample=True, clip_sample_range=10.0)
    for i, m in enumerate((text, vision, prior)):
        randomize(m, 400 + i)
    with torch.no_grad():  # the token table in F16 keeps the fixture small: round it first
        w = text.text_model.embeddings.token_embedding.weight
        w.copy_(w.half().float())
    prior_pipe = KandinskyV22PriorPipeline(prior=prior, image_encoder=vision, text_encoder=text, tokenizer=tok,
                                           scheduler=prior_sched, image_processor=processor)

    unet = UNet2DConditionModel(
        act_fn="silu", addition_embed_type="image", attention_head_dim=8, block_out_channels=[16, 32],
        cross_attention_dim=16, down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
        encoder_hid_dim=E, encoder_hid_dim_type="image_proj", in_channels=4, layers_per_block=1,
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", norm_num_groups=8, out_channels=8,
        resnet_time_scale_shift="scale_shift", up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        sample_size=16).eval()
    movq = VQModel(block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D", "AttnDownEncoderBlock2D"],
                   up_block_types=["AttnUpDecoderBlock2D", "UpDecoderBlock2D"], in_channels=3, out_channels=3,
                   latent_channels=4, vq_embed_dim=4, num_vq_embeddings=32, layers_per_block=1, norm_num_groups=32,
                   norm_type="spatial", sample_size=32).eval()
    # the published 2.2 decoder scheduler (spec §2.6): DDPM, linear 0.00085..0.012, clip_sample true
    dec_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                              clip_sample=True, clip_sample_range=1.0, steps_offset=1, prediction_type="epsilon",
                              variance_type="fixed_small", timestep_spacing="leading")
    randomize(unet, 410)
    randomize(movq, 411)
    with torch.no_grad():
        for p in list(unet.parameters()) + list(movq.parameters()):
            p.copy_(p.half().float())
    dec_pipe = KandinskyV22Pipeline(unet=unet, scheduler=dec_sched, movq=movq)

    prior_dir, dec_dir = os.path.join(root, "prior"), os.path.join(root, "decoder")
    prior_pipe.save_pretrained(prior_dir, safe_serialization=True)
    dec_pipe.save_pretrained(dec_dir, safe_serialization=True)
    # F16 token table; F16 U-Net and MoVQ (weights were rounded before the reference ran)
    from safetensors.torch import load_file
    path = os.path.join(prior_dir, "text_encoder", "model.safetensors")
    sd = load_file(path)
    sd["text_model.embeddings.token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"].half()
    save_file(sd, path, metadata={"format": "pt"})
    for sub in ("unet", "movq"):
        path = os.path.join(dec_dir, sub, "diffusion_pytorch_model.safetensors")
        save_file({k: v.half() for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
    # The published tokenizer/ folder holds vocab.json + merges.txt + tokenizer_config.json +
    # special_tokens_map.json (transformers 5 would write tokenizer.json instead): lay it out like
    # the Hub, sharing the BPE files and configs with the tokenizer fixtures (pad = <|endoftext|>).
    tdir = os.path.join(prior_dir, "tokenizer")
    for f in os.listdir(tdir):
        os.remove(os.path.join(tdir, f))
    for f in ("vocab.json", "merges.txt"):
        os.symlink(os.path.join("..", "..", "..", "clip_tokenizer", "bpe", f), os.path.join(tdir, f))
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        with open(os.path.join(bpe_dir, "..", "pad_eot", f)) as src, open(os.path.join(tdir, f), "w") as dst:
            dst.write(src.read())
    return prior_pipe, dec_pipe


CASES = [
    dict(seed=0, prompt="a red cat sitting on a chair", negative=None, w=32, h=32, g=4.0, pg=4.0, steps=5, psteps=6),
    dict(seed=42, prompt="Ein Haus am See, Öl auf Leinwand", negative="blurry, low quality", w=48, h=32, g=4.0,
         pg=4.0, steps=5, psteps=6),
    dict(seed=1234, prompt="portrait of an astronaut", negative=None, w=32, h=48, g=1.0, pg=1.0, steps=4,
         psteps=4),
    dict(seed=7, prompt="", negative="ugly", w=40, h=40, g=1.0, pg=4.0, steps=4, psteps=5),
    dict(seed=2**32 + 3, prompt="a bowl of ramen, studio light", negative=None, w=36, h=30, g=3.0, pg=2.0, steps=5,
         psteps=3, n=2),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = os.path.join(a.out, "pipeline22")
    prior_pipe, dec_pipe = build(root, os.path.join(a.out, "clip_tokenizer", "bpe"))
    tensors = {}
    for i, c in enumerate(CASES):
        g = torch.Generator("cpu").manual_seed(c["seed"])
        n = c.get("n", 1)
        emb, neg = prior_pipe(c["prompt"], negative_prompt=c["negative"], num_images_per_prompt=n,
                              num_inference_steps=c["psteps"], guidance_scale=c["pg"], generator=g,
                              return_dict=False)
        def decode(gen):
            return dec_pipe(image_embeds=emb, negative_image_embeds=neg, width=c["w"], height=c["h"],
                            num_inference_steps=c["steps"], guidance_scale=c["g"], generator=gen,
                            output_type="np").images
        state = g.get_state()
        u8 = conditioning.to_u8(decode(g))
        conditioning.check(f"case {i}", conditioning.image_spread(decode, dec_pipe.unet, state, u8))
        tensors[f"case{i}.image_embeds"] = emb.contiguous()
        tensors[f"case{i}.negative_image_embeds"] = neg.contiguous()
        tensors[f"case{i}.image"] = torch.from_numpy(u8.astype(np.float32)).contiguous()  # [n, H, W, 3]
        print(f"case {i}: image {u8.shape}")
    save_file(tensors, os.path.join(root, "cases.safetensors"))
    with open(os.path.join(root, "cases.json"), "w") as f:
        json.dump([dict(c, n=c.get("n", 1)) for c in CASES], f, indent=1)


if __name__ == "__main__":
    main()
