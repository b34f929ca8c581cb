#!/usr/bin/env python3
"""Writes tests/data/pipeline20/: a tiny Kandinsky 2.0 folder in the published layout and the images the
original code gives (ai-forever/Kandinsky-2: kandinsky2_model.Kandinsky2; fetched, never copied here),
run on the CPU: its DDIM / PLMS samplers' hard-coded "cuda" is redirected and every draw comes from
torch's global CPU generator after torch.manual_seed(seed).

    model/Kandinsky-2-0.pt, Kandinsky-2-0-inpainting.pt   tiny Text2ImUNet / InpaintText2ImUNet (float16)
    model/vae.ckpt                                          tiny AutoencoderKL (4 levels: factor 8) as a
                                                            Lightning checkpoint
    model/text_encoder1/   MultilingualCLIP (XLM-R hidden 32 → 24) + the m2k XLM-R tokenizer files
    model/text_encoder2/   MT5EncoderModel (d_model 512, the width the original U-Net fixes) + a
                           500-piece T5 spiece.model (Latin and Cyrillic prompts of the corpus)
    model/kandinsky2_config.json   the original config dict's model_config / image_enc_params for
                           these sizes (the published folder has none: the published CONFIG_2_0 applies)
                           (the "eta" recorded is what was passed: the original never applies it, see
                           kd_gen_params.eta)
    malformed/             small broken model files: a U-Net state dict that stops after time_embed.0, one
                           with a pickled class instead of a tensor, a vae.ckpt whose state dict stops
                           after encoder.conv_in, one with a wrong conv_in shape, one cut at 60 %
    cases.json + case*.png the images of text-to-image (ddim, p, plms samplers; batch 2; a size that
                           is not a multiple of 64), image-to-image and inpainting (ddim and p_sampler)

    ~/.venvs/kd-ref/bin/python tools/reference/gen_pipeline20.py --kandinsky2 /path/to/Kandinsky-2
"""
import argparse
import copy
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import sentencepiece as spm
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "tests", "data")

CASES = [  # name, task, prompt, sampler, steps, guidance, eta, w, h, batch, seed, strength
    ("t2i_ddim", "text2img", "a red cat on a mat", "ddim_sampler", 8, 7.0, 0.05, 64, 64, 2, 11, None),
    ("t2i_p", "text2img", "Красная кошка на ковре", "p_sampler", 6, 5.0, 0.0, 72, 48, 1, 12, None),
    ("t2i_plms", "text2img", "一只红色的猫", "plms_sampler", 5, 7.0, 0.0, 64, 64, 1, 13, None),
    ("i2i_ddim", "img2img", "a blue house", "ddim_sampler", 10, 7.0, 0.05, 512, 512, 1, 14, 0.7),
    ("i2i_p", "img2img", "a blue house", "p_sampler", 8, 7.0, 0.0, 512, 512, 1, 15, 0.5),
    ("inp_ddim", "inpainting", "a green hat", "ddim_sampler", 6, 7.0, 0.05, 512, 512, 1, 16, None),
    ("inp_p", "inpainting", "a green hat", "p_sampler", 5, 7.0, 0.0, 512, 512, 1, 17, None),
    ("t2i_ar", "text2img", "قطة حمراء على سجادة", "ddim_sampler", 6, 3.0, 0.0, 64, 64, 1, 18, None),
]


class Payload:
    """A class a hostile checkpoint could name (pickled as __main__.Payload)."""


def write_malformed(mdir, out):
    """Broken model files, kept small (each is refused at its first problem): what the loader must
    refuse, naming the file and tensor."""
    d = os.path.join(out, "malformed")
    os.makedirs(d)
    sd = torch.load(os.path.join(mdir, "Kandinsky-2-0.pt"))
    keep = {k: sd[k] for k in ("time_embed.0.weight", "time_embed.0.bias")}
    torch.save(keep, os.path.join(d, "unet_partial.pt"))  # time_embed.2.weight is missing
    torch.save({"time_embed.0.weight": sd["time_embed.0.weight"], "time_embed.0.bias": Payload()},
               os.path.join(d, "unet_global.pt"))
    ck = torch.load(os.path.join(mdir, "vae.ckpt"))
    vsd = ck["state_dict"]
    torch.save(dict(ck, state_dict={k: vsd[k] for k in ("encoder.conv_in.weight", "encoder.conv_in.bias")}),
               os.path.join(d, "vae_partial.ckpt"))  # the encoder's first ResNet is missing
    torch.save(dict(ck, state_dict={"encoder.conv_in.weight": torch.zeros(32, 5, 3, 3),
                                    "encoder.conv_in.bias": vsd["encoder.conv_in.bias"]}),
               os.path.join(d, "vae_wrong_shape.ckpt"))
    blob = open(os.path.join(d, "vae_partial.ckpt"), "rb").read()
    open(os.path.join(d, "vae_truncated.ckpt"), "wb").write(blob[: len(blob) * 6 // 10])


def randomize(m, g, fp16=False):
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 1:
                is_scale = name.endswith("weight") and any(
                    k in name for k in ("norm", "ln_model", "in_layers.0", "out_layers.0", "LayerNorm", "out.0"))
                v = (1.0 if is_scale else 0.0) + 0.2 * torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5
            p.copy_(v.half().float() if fp16 else v)


def train_t5_spm(folder):
    lines = [json.loads(l) for l in open(os.path.join(DATA, "xlmr_tokenizer", "corpus.txt"), encoding="utf-8")]
    lines = [l for l in lines if all(ord(c) < 0x500 for c in l)]  # Latin and Cyrillic: a small alphabet
    with tempfile.TemporaryDirectory() as tmp:
        txt = os.path.join(tmp, "c.txt")
        open(txt, "w", encoding="utf-8").write("\n".join(lines * 3))
        spm.SentencePieceTrainer.train(input=txt, model_prefix=os.path.join(tmp, "sp"), vocab_size=500,
                                       model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                       normalization_rule_name="nmt_nfkc", num_threads=1, minloglevel=2,
                                       input_sentence_size=0, shuffle_input_sentence=False, character_coverage=1.0)
        shutil.copy(os.path.join(tmp, "sp.model"), os.path.join(folder, "spiece.model"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kandinsky2", required=True, help="folder holding the kandinsky2/ package")
    ap.add_argument("--out", default=os.path.join(DATA, "pipeline20"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, HERE)
    import k2_cpu
    k2 = k2_cpu.load(a.kandinsky2)
    K, configs = k2("kandinsky2_model"), k2("configs")
    text_encoders, model_creation, autoencoder = k2("model.text_encoders"), k2("model.model_creation"), k2("vqgan.autoencoder")
    from transformers import MT5Config, MT5EncoderModel, XLMRobertaConfig

    out = a.out
    shutil.rmtree(out, ignore_errors=True)
    mdir = os.path.join(out, "model")
    t1, t2 = os.path.join(mdir, "text_encoder1"), os.path.join(mdir, "text_encoder2")
    os.makedirs(t1)
    os.makedirs(t2)
    g = torch.Generator().manual_seed(2020)
    # text_encoder1: MultilingualCLIP(XLM-R 32 → 24) with the m2k tokenizer
    m2k = os.path.join(DATA, "xlmr_tokenizer", "m2k")
    for f in ("sentencepiece.bpe.model", "tokenizer.json"):
        shutil.copy(os.path.join(m2k, f), t1)
    json.dump({"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512}, open(os.path.join(t1, "tokenizer_config.json"), "w"))
    xcfg = XLMRobertaConfig(vocab_size=2002, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=37, max_position_embeddings=80, type_vocab_size=1, pad_token_id=1,
                            bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)
    xcfg.save_pretrained(t1)
    mclip = text_encoders.MultilingualCLIP(t1, in_features=32, out_features=24).eval()
    randomize(mclip, g)
    torch.save(mclip.state_dict(), os.path.join(t1, "pytorch_model.bin"))
    # text_encoder2: mT5 encoder, d_model 512
    train_t5_spm(t2)
    json.dump({"tokenizer_class": "T5Tokenizer"}, open(os.path.join(t2, "tokenizer_config.json"), "w"))
    tcfg = MT5Config(vocab_size=600, d_model=512, d_kv=8, d_ff=16, num_layers=1, num_heads=2,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128,
                     feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0, pad_token_id=0,
                     eos_token_id=1, decoder_start_token_id=0)
    tcfg.architectures = ["MT5EncoderModel"]
    mt5 = MT5EncoderModel(tcfg).eval()
    randomize(mt5, g)
    tcfg.to_json_file(os.path.join(t2, "config.json"))
    torch.save(mt5.state_dict(), os.path.join(t2, "pytorch_model.bin"))
    # config: the original dict for these sizes
    config = copy.deepcopy(configs.CONFIG_2_0)
    config["model_config"].update(num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="32",
                                  num_head_channels=16, model_dim=32, text_encoder_in_dim1=32, text_encoder_in_dim2=24)
    config["image_enc_params"]["params"]["ddconfig"].update(ch=32, ch_mult=[1, 1, 1, 1], num_res_blocks=1,
                                                            attn_resolutions=[])
    json.dump({"model_config": config["model_config"], "image_enc_params": config["image_enc_params"]},
              open(os.path.join(mdir, "kandinsky2_config.json"), "w"), indent=2)
    # U-Nets
    for task, name in (("text2img", "Kandinsky-2-0.pt"), ("inpainting", "Kandinsky-2-0-inpainting.pt")):
        mc = dict(config["model_config"], up=False, inpainting=task == "inpainting", cache_text_emb=False)
        unet = model_creation.create_model(**mc).eval()
        randomize(unet, g, fp16=True)
        torch.save({k: v.half() for k, v in unet.state_dict().items()}, os.path.join(mdir, name))
    # vae.ckpt
    p = config["image_enc_params"]["params"]
    vae = autoencoder.AutoencoderKL(ddconfig=p["ddconfig"], embed_dim=p["embed_dim"], ckpt_path=None).eval()
    randomize(vae, g)
    torch.save({"epoch": 1, "global_step": 10, "state_dict": vae.state_dict(), "optimizer_states": []},
               os.path.join(mdir, "vae.ckpt"))

    config["text_enc_params1"] = {"model_path": t1, "model_name": "multiclip", "in_features": 32, "out_features": 24}
    config["text_enc_params2"] = {"model_path": t2, "model_name": "MT5EncoderModel"}
    config["tokenizer_name1"], config["tokenizer_name2"] = t1, t2
    config["image_enc_params"]["params"]["ckpt_path"] = os.path.join(mdir, "vae.ckpt")
    models = {}
    for task, name in (("text2img", "Kandinsky-2-0.pt"), ("inpainting", "Kandinsky-2-0-inpainting.pt")):
        models[task] = K.Kandinsky2(copy.deepcopy(config), os.path.join(mdir, name), "cpu", task_type=task)
    models["img2img"] = models["text2img"]
    yy, xx = np.mgrid[0:96, 0:80]  # a smooth colourful picture, not a square size (the resize matters)
    init = Image.fromarray(np.stack([(xx * 3) % 256, (yy * 2 + xx) % 256, 255 - yy * 2], -1).astype(np.uint8))
    init.save(os.path.join(out, "init.png"))
    mask = np.ones((512, 512), dtype=np.float32)
    mask[100:300, 150:400] = 0  # 0 = repaint (the original's convention)
    Image.fromarray(((1 - mask) * 255).astype(np.uint8)).save(os.path.join(out, "mask.png"))  # white = repaint
    listing = []
    for name, task, prompt, sampler, steps, gs, eta, w, h, batch, seed, strength in CASES:
        torch.manual_seed(seed)
        m = models[task]
        kw = dict(num_steps=steps, guidance_scale=gs, sampler=sampler, ddim_eta=eta, progress=False)
        if task == "text2img":
            imgs = m.generate_text2img(prompt, batch_size=batch, h=h, w=w, **kw)
        elif task == "img2img":
            imgs = m.generate_img2img(prompt, init, strength=strength, **kw)
        else:
            imgs = m.generate_inpainting(prompt, init, mask, **kw)
        files = []
        for i, im in enumerate(imgs):
            f = f"{name}_{i}.png"
            im.save(os.path.join(out, f))
            files.append(f)
        listing.append(dict(name=name, task=task, prompt=prompt, sampler=sampler, steps=steps, guidance=gs, eta=eta,
                            width=w, height=h, batch=batch, seed=seed, strength=strength, images=files))
        print(name, [im.size for im in imgs])
    json.dump(listing, open(os.path.join(out, "cases.json"), "w"), indent=1, ensure_ascii=True)
    write_malformed(mdir, out)


if __name__ == "__main__":
    main()
