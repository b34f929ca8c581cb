"""Tiny random-weight MultilingualCLIP (diffusers.pipelines.kandinsky.MultilingualCLIP: XLM-RoBERTa
encoder + mean pooling over real tokens + LinearTransformation), the Kandinsky 2.1 decoder's text
encoder, in the save_pretrained layout, with inputs and outputs for batch 1 and 2.
Usage: python tools/reference/gen_mclip.py [--out tests/data]
"""
import argparse
import os

import torch
from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP
from safetensors.torch import save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = MCLIPConfig(transformerDimSize=32, imageDimSize=24, vocab_size=1000, hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, intermediate_size=37, hidden_act="gelu", max_position_embeddings=80,
                      type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    m = MultilingualCLIP(cfg).eval()
    g = torch.Generator().manual_seed(600)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 1:
                base = 1.0 if "LayerNorm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    folder = os.path.join(a.out, "mclip", "text_encoder")
    m.save_pretrained(folder, safe_serialization=True)
    t = {}
    for tag, lens in {"b1": [9], "b2": [77, 4]}.items():
        ids = torch.full((len(lens), 77), 1, dtype=torch.long)
        mask = torch.zeros((len(lens), 77), dtype=torch.long)
        for i, n in enumerate(lens):
            ids[i, 0] = 0
            ids[i, 1:n - 1] = torch.randint(4, 1000, (n - 2,), generator=g)
            ids[i, n - 1] = 2
            mask[i, :n] = 1
        with torch.no_grad():
            emb, hidden = m(ids, mask)
        t[f"{tag}.input_ids"] = ids
        t[f"{tag}.attention_mask"] = mask
        t[f"{tag}.text_embeds"] = emb.contiguous()
        t[f"{tag}.last_hidden_state"] = hidden.contiguous()
    save_file(t, os.path.join(a.out, "mclip", "cases.safetensors"))
    print(open(os.path.join(folder, "config.json")).read())


if __name__ == "__main__":
    main()
