"""End-to-end references for the Kandinsky 2.2 image-editing pipelines on the tiny models of
tests/data/pipeline22 (run gen_pipeline.py first): img2img, inpainting, ControlNet depth and image
mixing, each after the prior with ONE torch.Generator (as the diffusers combined pipelines do).

Writes
  tests/data/pipeline22/decoder_inpaint/unet     9-channel U-Net (movq, scheduler: symlinks to decoder/)
  tests/data/pipeline22/decoder_controlnet/unet  image_hint U-Net (idem)
  tests/data/pipeline22/inputs/*.png             init image, masks, depth hint
  tests/data/pipeline22/variants.safetensors + variants.json

img2img: diffusers resizes the init image with preprocess(image, width, height) against the
signature preprocess(image, height, width), i.e. transposed; the references for non-square sizes
call diffusers with width and height swapped so that the init image is resized to the size our
API is asked for (W × H). Square cases are unaffected.
Usage: python tools/reference/gen_pipeline_variants.py [--out tests/data]
"""
import argparse
import json
import os

import numpy as np
import torch
from diffusers import (KandinskyV22ControlnetImg2ImgPipeline, KandinskyV22ControlnetPipeline,
                       KandinskyV22Img2ImgPipeline, KandinskyV22InpaintPipeline,
                       KandinskyV22PriorPipeline, UNet2DConditionModel, VQModel, DDPMScheduler)
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

import conditioning


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                base = 1.0 if ("norm" in name and name.endswith("weight")) else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            p.copy_(p.half().float())


def variant_decoder(root, name, **unet_kw):
    base = os.path.join(root, "decoder")
    cfg = json.load(open(os.path.join(base, "unet", "config.json")))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg.update(unet_kw)
    unet = UNet2DConditionModel(**cfg).eval()
    randomize(unet, 500 + len(name))
    d = os.path.join(root, name)
    unet.save_pretrained(os.path.join(d, "unet"), safe_serialization=True)
    path = os.path.join(d, "unet", "diffusion_pytorch_model.safetensors")
    save_file({k: v.half() for k, v in load_file(path).items()}, path, metadata={"format": "pt"})
    for sub in ("movq", "scheduler"):
        link = os.path.join(d, sub)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..", "decoder", sub), link)
    movq = VQModel.from_pretrained(os.path.join(base, "movq"))
    sched = DDPMScheduler.from_pretrained(os.path.join(base, "scheduler"))
    return unet, movq, sched


def make_inputs(d):
    os.makedirs(d, exist_ok=True)
    rng = np.random.RandomState(3)
    yy, xx = np.mgrid[0:61, 0:97]
    img = np.stack([(xx * 2.6) % 256, (yy * 4.1) % 256, ((xx + yy) * 1.7 + rng.randint(0, 40, xx.shape)) % 256], -1)
    Image.fromarray(img.astype(np.uint8)).save(os.path.join(d, "init_97x61.png"))
    m = Image.new("L", (50, 40), 0)
    ImageDraw.Draw(m).rectangle([12, 8, 35, 27], fill=255)
    m.save(os.path.join(d, "mask_50x40.png"))
    m2 = Image.new("RGB", (48, 32), (0, 0, 0))
    ImageDraw.Draw(m2).ellipse([5, 3, 40, 28], fill=(255, 255, 255))
    m2.save(os.path.join(d, "mask_48x32_rgb.png"))
    depth = ((np.mgrid[0:128, 0:192][1] * 1.3 + np.mgrid[0:128, 0:192][0]) % 256).astype(np.uint8)
    Image.fromarray(depth, "L").save(os.path.join(d, "depth_192x128.png"))
    Image.fromarray(depth[:128, :128], "L").save(os.path.join(d, "depth_128x128.png"))
    small = np.stack([(xx[:28, :40] * 6) % 256, (yy[:28, :40] * 9) % 256, np.full((28, 40), 128)], -1)
    Image.fromarray(small.astype(np.uint8)).save(os.path.join(d, "mix_40x28.png"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = os.path.join(a.out, "pipeline22")
    inputs = os.path.join(root, "inputs")
    make_inputs(inputs)
    prior = KandinskyV22PriorPipeline.from_pretrained(os.path.join(root, "prior"))
    from diffusers import KandinskyV22PriorEmb2EmbPipeline
    emb2emb = KandinskyV22PriorEmb2EmbPipeline.from_pretrained(os.path.join(root, "prior"))
    base = os.path.join(root, "decoder")
    img2img = KandinskyV22Img2ImgPipeline.from_pretrained(base)
    unet_i, movq, sched = variant_decoder(root, "decoder_inpaint", in_channels=9)
    inpaint = KandinskyV22InpaintPipeline(unet=unet_i, scheduler=sched, movq=movq)
    unet_c, movq_c, sched_c = variant_decoder(root, "decoder_controlnet", in_channels=8,
                                              addition_embed_type="image_hint")
    control = KandinskyV22ControlnetPipeline(unet=unet_c, scheduler=sched_c, movq=movq_c)
    control_i2i = KandinskyV22ControlnetImg2ImgPipeline(unet=unet_c, scheduler=sched_c, movq=movq_c)

    init = Image.open(os.path.join(inputs, "init_97x61.png")).convert("RGB")
    cases = [
        dict(kind="img2img", seed=3, prompt="a house by a lake", w=32, h=32, strength=0.6, steps=8, psteps=4),
        dict(kind="img2img", seed=99, prompt="sunset", negative="dark", w=48, h=32, strength=0.3, steps=10,
             psteps=4, g=3.0),
        dict(kind="img2img", seed=5, prompt="same", w=32, h=32, strength=1.0, steps=4, psteps=3, n=2),
        dict(kind="inpaint", seed=11, prompt="a red ball", w=32, h=32, mask="mask_50x40.png", steps=5, psteps=4),
        dict(kind="inpaint", seed=12, prompt="a blue ball", negative="ugly", w=48, h=32,
             mask="mask_48x32_rgb.png", steps=5, psteps=3, g=1.0),
        dict(kind="controlnet", seed=21, prompt="a robot", w=32, h=32, hint="depth_128x128.png", steps=5, psteps=3),
        dict(kind="controlnet", seed=22, prompt="a tree", w=48, h=32, hint="depth_192x128.png", steps=4, psteps=3,
             g=2.0),
        dict(kind="mix", seed=31, mix=[["text", "a cat", 0.3], ["image", "mix_40x28.png", 0.5],
                                       ["text", "a dog", -0.2]], w=32, h=32, steps=4, psteps=3),
        dict(kind="mix", seed=32, mix=[["text", "snow", 1.0], ["image", "init_97x61.png", 0.0]],
             negative="rain", w=48, h=32, steps=4, psteps=3),
        dict(kind="emb2emb", seed=41, prompt="a castle", prior_image="mix_40x28.png", prior_strength=0.5, w=32,
             h=32, steps=4, psteps=6),
        dict(kind="emb2emb", seed=42, prompt="a boat", negative="fog", prior_image="init_97x61.png",
             prior_strength=0.8, w=48, h=32, steps=4, psteps=5, n=2),
        # ControlNet + img2img (KandinskyV22ControlnetImg2ImgPipeline), width/height swapped as img2img
        dict(kind="controlnet_img2img", seed=51, prompt="a robot in a garden", w=32, h=32, strength=0.6,
             hint="depth_128x128.png", steps=5, psteps=3),
        dict(kind="controlnet_img2img", seed=52, prompt="a red car", negative="rain", w=32, h=32, strength=0.9,
             hint="depth_128x128.png", steps=4, psteps=3, g=2.0, n=2),
    ]
    tensors = {}
    for i, c in enumerate(cases):
        c.setdefault("g", 4.0)
        c.setdefault("pg", 4.0)
        c.setdefault("n", 1)
        c.setdefault("negative", None)
        gen = torch.Generator("cpu").manual_seed(c["seed"])
        if c["kind"] == "emb2emb":
            pimg = Image.open(os.path.join(inputs, c["prior_image"])).convert("RGB")
            emb, neg = emb2emb(c["prompt"], image=pimg, strength=c["prior_strength"], negative_prompt=c["negative"],
                               num_images_per_prompt=c["n"], num_inference_steps=c["psteps"],
                               guidance_scale=c["pg"], generator=gen, return_dict=False)
        elif c["kind"] == "mix":
            items = [x[1] if x[0] == "text" else Image.open(os.path.join(inputs, x[1])).convert("RGB")
                     for x in c["mix"]]
            out = prior.interpolate(items, [x[2] for x in c["mix"]], num_images_per_prompt=c["n"],
                                    num_inference_steps=c["psteps"], generator=gen,
                                    negative_prior_prompt=c["negative"], guidance_scale=c["pg"])
            emb, neg = out.image_embeds, out.negative_image_embeds
        else:
            emb, neg = prior(c["prompt"], negative_prompt=c["negative"], num_images_per_prompt=c["n"],
                             num_inference_steps=c["psteps"], guidance_scale=c["pg"], generator=gen,
                             return_dict=False)
        def decode(g):
            common = dict(image_embeds=emb, negative_image_embeds=neg, num_inference_steps=c["steps"],
                          guidance_scale=c["g"], generator=g, output_type="np")
            if c["kind"] == "img2img":  # swapped on purpose, see the module doc
                return img2img(image=init, strength=c["strength"], width=c["h"], height=c["w"], **common).images
            if c["kind"] == "inpaint":
                mask = Image.open(os.path.join(inputs, c["mask"]))
                return inpaint(image=init, mask_image=mask, width=c["w"], height=c["h"], **common).images
            if c["kind"] in ("controlnet", "controlnet_img2img"):
                hint = Image.open(os.path.join(inputs, c["hint"])).convert("RGB")
                ht = torch.from_numpy(np.array(hint)).float().permute(2, 0, 1)[None] / 255.0
                ht = ht.repeat(c["n"], 1, 1, 1)  # diffusers wants one hint per image embedding
                if c["kind"] == "controlnet_img2img":  # swapped on purpose, as img2img
                    return control_i2i(image=init, strength=c["strength"], hint=ht, width=c["h"], height=c["w"],
                                       **common).images
                return control(hint=ht, width=c["w"], height=c["h"], **common).images
            from diffusers import KandinskyV22Pipeline
            dec = KandinskyV22Pipeline(unet=img2img.unet, scheduler=img2img.scheduler, movq=img2img.movq)
            return dec(width=c["w"], height=c["h"], **common).images
        unet = {"inpaint": inpaint.unet, "controlnet": control.unet, "controlnet_img2img": control.unet}.get(
            c["kind"], img2img.unet)
        state = gen.get_state()
        u8 = conditioning.to_u8(decode(gen))
        conditioning.check(f"case {i} {c['kind']}", conditioning.image_spread(decode, unet, state, u8))
        tensors[f"case{i}.image_embeds"] = emb.reshape(c["n"], -1).contiguous()
        tensors[f"case{i}.negative_image_embeds"] = neg.reshape(c["n"], -1).contiguous()
        tensors[f"case{i}.image"] = torch.from_numpy(u8.astype(np.float32)).contiguous()
        print(f"case {i} {c['kind']}: {u8.shape}")
    save_file(tensors, os.path.join(root, "variants.safetensors"))
    json.dump(cases, open(os.path.join(root, "variants.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
