"""Tiny random-weight prior-stage models (transformers CLIP text/vision with projection,
diffusers PriorTransformer) and their outputs, in the real folder layouts.

  tests/data/prior/clip_text_quick/   CLIPTextModelWithProjection, quick_gelu, eos_token_id 2
                                      (pooled at argmax(ids), like the published configs)
  tests/data/prior/clip_text_gelu/    gelu, eos_token_id 999 (pooled at the first EOS)
  tests/data/prior/clip_vision/       CLIPVisionModelWithProjection, 56 px, patch 14
  tests/data/prior/prior/             PriorTransformer (2 layers, 2 heads × 16, E = 24)
and <name>_cases.safetensors beside each with inputs and reference outputs, batch 1 and 2.
Usage: python tools/reference/gen_prior.py [--out tests/data]
"""
import argparse
import os

import torch
from diffusers import PriorTransformer
from safetensors.torch import save_file
from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                          CLIPVisionModelWithProjection)


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


def text_ids(b, eos, g, lengths):
    ids = torch.randint(3, 990, (b, 77), generator=g)
    for i, n in enumerate(lengths):
        ids[i, 0] = 0
        ids[i, n - 1] = eos
        ids[i, n:] = 1 if eos == 2 else eos  # padding: "!"-style id 1, or EOS-style
    return ids


def clip_text(out, name, act, eos, seed):
    cfg = CLIPTextConfig(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, hidden_act=act, projection_dim=24,
                         layer_norm_eps=1e-5, bos_token_id=0, pad_token_id=1, eos_token_id=eos)
    m = CLIPTextModelWithProjection(cfg).eval()
    randomize(m, seed)
    m.save_pretrained(os.path.join(out, name), safe_serialization=True)
    g = torch.Generator().manual_seed(seed)
    t = {}
    for tag, lens in {"b1": [9], "b2": [77, 5]}.items():
        ids = text_ids(len(lens), 999 if eos != 2 else 999, g, lens)
        if eos == 2:  # argmax pooling: the EOS must carry the largest id
            for i, n in enumerate(lens):
                ids[i, n - 1] = 999
                ids[i, n:] = 1
        with torch.no_grad():
            o = m(input_ids=ids)
        t[f"{tag}.input_ids"] = ids
        t[f"{tag}.text_embeds"] = o.text_embeds.contiguous()
        t[f"{tag}.last_hidden_state"] = o.last_hidden_state.contiguous()
    save_file(t, os.path.join(out, f"{name}_cases.safetensors"))


def clip_vision(out, seed):
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=56, patch_size=14, projection_dim=24, hidden_act="gelu", layer_norm_eps=1e-5)
    m = CLIPVisionModelWithProjection(cfg).eval()
    randomize(m, seed)
    m.save_pretrained(os.path.join(out, "clip_vision"), safe_serialization=True)
    g = torch.Generator().manual_seed(seed)
    t = {}
    for tag, b in {"b1": 1, "b2": 2}.items():
        px = torch.randn((b, 3, 56, 56), generator=g)
        with torch.no_grad():
            o = m(pixel_values=px)
        t[f"{tag}.pixel_values"] = px
        t[f"{tag}.image_embeds"] = o.image_embeds.contiguous()
    z = torch.zeros(1, 3, 56, 56)
    with torch.no_grad():
        t["zero.image_embeds"] = m(pixel_values=z).image_embeds.contiguous()
    save_file(t, os.path.join(out, "clip_vision_cases.safetensors"))


def prior(out, seed):
    m = PriorTransformer(num_attention_heads=2, attention_head_dim=16, num_layers=2, embedding_dim=24,
                         num_embeddings=77, additional_embeddings=4, dropout=0.0).eval()
    randomize(m, seed)
    m.save_pretrained(os.path.join(out, "prior"), safe_serialization=True)
    g = torch.Generator().manual_seed(seed)
    t = {}
    for tag, (lens, ts) in {"b1": ([9], 999), "b2": ([77, 5], 42), "b2_t0": ([3, 12], 0)}.items():
        b = len(lens)
        x = torch.randn((b, 24), generator=g)
        pe = torch.randn((b, 24), generator=g)
        ehs = torch.randn((b, 77, 24), generator=g)
        mask = torch.zeros((b, 77), dtype=torch.bool)
        for i, n in enumerate(lens):
            mask[i, :n] = True
        with torch.no_grad():
            o = m(x, timestep=ts, proj_embedding=pe, encoder_hidden_states=ehs, attention_mask=mask)
        t[f"{tag}.x"] = x
        t[f"{tag}.proj_embedding"] = pe
        t[f"{tag}.encoder_hidden_states"] = ehs
        t[f"{tag}.attention_mask"] = mask.long()
        t[f"{tag}.timestep"] = torch.tensor([float(ts)])
        t[f"{tag}.out"] = o.predicted_image_embedding.contiguous()
        t[f"{tag}.post"] = m.post_process_latents(o.predicted_image_embedding).contiguous()
    save_file(t, os.path.join(out, "prior_cases.safetensors"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    a = ap.parse_args()
    out = os.path.join(a.out, "prior")
    torch.set_num_threads(1)
    clip_text(out, "clip_text_quick", "quick_gelu", 2, 300)
    clip_text(out, "clip_text_gelu", "gelu", 999, 301)
    clip_vision(out, 302)
    prior(out, 303)


if __name__ == "__main__":
    main()
