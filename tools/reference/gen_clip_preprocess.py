#!/usr/bin/env python3
"""Fixtures for tests/test_clip_preprocess.c: the CLIP image preprocessing of the Kandinsky prior
pipelines, as the pinned stack runs it, plus one end-to-end CLIP image embedding.

What KandinskyV22PriorPipeline.interpolate does with a PIL image item:
    pixel_values = self.image_processor(image, return_tensors="pt").pixel_values[0].unsqueeze(0)
    image_embeds = self.image_encoder(pixel_values)["image_embeds"]
where image_processor is loaded by diffusers as transformers' `CLIPImageProcessor`. In
transformers 5.24 that name needs torchvision; the pinned requirements have none, so it falls back
to `CLIPImageProcessorPil` (PIL resize). This script asserts that it got that class.

Writes tests/data/clip_preprocess/:
  images/*.png          the inputs (made here, deterministic; PNG colour types RGB, L, RGBA, LA,
                        palette with tRNS)
  configs/*.json        preprocessor_config.json variants: kandinsky22.json = the published 2.2
                        prior's (shortest edge 224, crop 224), s32.json (shortest edge 32, crop 32)
                        and a few that exercise other keys (int / list / dict sizes, padding crop,
                        no crop, no normalisation, other filters)
  cases.json            [{name, image, config, loader, mode, shape or error}], loader "open" = PIL.Image.open(png)
                        passed as is (gray stays L, alpha is composited onto white by the
                        processor), "load_image" = diffusers.utils.load_image(png) (convert("RGB"):
                        alpha dropped); embed cases add "model"; "error" (instead of "shape") =
                        the reference raised ValueError (e.g. a resize to 0 pixels)
  cases.safetensors     the processor output pixel_values [3, h, w] (batch dim dropped), stored
                        losslessly as <name>.values F32 [3, K] (each channel's distinct values,
                        sorted) + <name>.index F16 [3, h, w] (pixel_values[c] = values[c][index[c]]),
                        which halves the 224-px cases (see pack()); for embed cases also
                        <name>.image_embeds F32 [embed_dim]

    ~/.venvs/kd-ref/bin/python tools/reference/gen_clip_preprocess.py [--out tests/data/clip_preprocess]
"""
import argparse
import json
import os
import shutil

import numpy as np
import PIL
import torch
import transformers
from diffusers.utils import load_image
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def published(size, crop, **kw):
    """The key set of the published kandinsky-2-x-prior image_processor/preprocessor_config.json."""
    c = {"crop_size": {"height": crop, "width": crop}, "do_center_crop": True, "do_convert_rgb": True,
         "do_normalize": True, "do_rescale": True, "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
         "image_mean": MEAN, "image_processor_type": "CLIPImageProcessor", "image_std": STD, "resample": 3,
         "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": size}}
    c.update(kw)
    return c


CONFIGS = {
    "kandinsky22": published(224, 224),
    "s32": published(32, 32),
    "clip56": published(56, 56),  # the tiny tests/data/prior/clip_vision model takes 56 px
    # old-style int sizes (size int = shortest edge, crop int = square), Lanczos, no normalisation
    "int_lanczos_nonorm": {"size": 20, "crop_size": 16, "resample": 1, "do_normalize": False,
                           "image_processor_type": "CLIPImageProcessor"},
    # fixed {height, width} resize smaller than the crop: zero padding with odd margins; bilinear;
    # a scalar mean and std
    "hw_pad_bilinear": {"size": {"height": 9, "width": 12}, "crop_size": {"height": 16, "width": 15},
                        "resample": 2, "image_mean": 0.5, "image_std": 0.25},
    # no crop: the output has the resized size; shortest + longest edge; raw bytes (no rescale/normalise)
    "short_long_nocrop_raw": {"size": {"shortest_edge": 12, "longest_edge": 16}, "do_center_crop": False,
                              "do_rescale": False, "do_normalize": False},
    # max_height / max_width, crop larger than the image on one side only, box filter, custom factor
    "maxhw_box": {"size": {"max_height": 14, "max_width": 10}, "crop_size": [12, 8], "resample": 4,
                  "rescale_factor": 0.005, "do_normalize": True},
    # no resize at all: crop straight from the input (and pad where it is smaller)
    "noresize": {"do_resize": False, "crop_size": {"height": 16, "width": 16}},
    # nothing but the RGB conversion: exposes the alpha compositing for every (value, alpha) pair
    "identity_raw": {"do_resize": False, "do_center_crop": False, "do_rescale": False, "do_normalize": False},
    # [h, w] list size with default_to_square, nearest filter
    "list_nearest": {"size": [10, 14], "crop_size": 8, "resample": 0},
}


def pattern(w, h, seed, noise_box=None):
    """Ramps with wrap-around edges (tiny as PNG), a checkerboard band and an optional noise block."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 7, size=(3, 2))
    img = np.stack([(x * a[c, 0] + y * a[c, 1] + 40 * c) & 255 for c in range(3)], -1).astype(np.uint8)
    band = (y >= h // 3) & (y < h // 3 + max(1, h // 8))
    img[band & (((x // 3) + (y // 2)) % 2 == 0)] = (250, 20, 120)
    if noise_box:
        x0, y0, bw, bh = noise_box
        img[y0:y0 + bh, x0:x0 + bw] = rng.integers(0, 256, size=(bh, bw, 3), dtype=np.uint8)
    return img


def make_images(d):
    os.makedirs(d, exist_ok=True)
    imgs = {}
    imgs["rgb_7x5.png"] = Image.fromarray(np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8))
    imgs["rgb_224x224.png"] = Image.fromarray(pattern(224, 224, 2, (90, 100, 24, 20)))
    imgs["rgb_300x200.png"] = Image.fromarray(pattern(300, 200, 3, (140, 90, 16, 16)))
    imgs["rgb_200x300.png"] = Image.fromarray(pattern(200, 300, 4, (90, 140, 16, 16)))
    imgs["rgb_641x480.png"] = Image.fromarray(pattern(641, 480, 5, (300, 220, 12, 12)))
    imgs["rgb_1000x17.png"] = Image.fromarray(pattern(1000, 17, 6, (500, 0, 40, 17)))
    g = pattern(45, 59, 7, (10, 20, 20, 20))[..., 1]
    imgs["gray_45x59.png"] = Image.fromarray(g, "L")
    rgba = np.concatenate([pattern(50, 40, 8, (10, 10, 20, 16)),
                           np.random.default_rng(9).integers(0, 256, (40, 50, 1), dtype=np.uint8)], -1)
    rgba[:4, :, 3] = 0      # fully transparent rows
    rgba[-4:, :, 3] = 255   # opaque rows
    imgs["rgba_50x40.png"] = Image.fromarray(rgba, "RGBA")
    la = np.stack([pattern(33, 20, 10, None)[..., 0],
                   np.random.default_rng(11).integers(0, 256, (20, 33), dtype=np.uint8)], -1)
    v = np.arange(256, dtype=np.uint8)
    xs, ys = np.meshgrid(v, v)  # x = value, y = alpha
    imgs["rgba_alpha_256x256.png"] = Image.fromarray(
        np.stack([xs, 255 - xs, (xs.astype(np.int64) * 7 & 255).astype(np.uint8), ys], -1), "RGBA")
    imgs["la_33x20.png"] = Image.fromarray(la, "LA")
    p = Image.fromarray(np.random.default_rng(12).integers(0, 8, (30, 20), dtype=np.uint8), "P")
    p.putpalette([v for i in range(8) for v in (i * 30, 255 - i * 20, (i * 77) & 255)])
    p.info["transparency"] = bytes([0, 128, 255, 60, 255, 10, 200, 255])
    imgs["p_trns_20x30.png"] = p
    for name, im in imgs.items():
        if name.startswith("p_"):
            im.save(os.path.join(d, name), transparency=im.info["transparency"], optimize=True)
        else:
            im.save(os.path.join(d, name), optimize=True)
    return list(imgs)


# (case name, image, config, loader)
CASES = [
    # the real 224 configuration: identity resize, downscale with an odd crop margin, upscale
    ("k224_rgb_224x224", "rgb_224x224.png", "kandinsky22", "open"),
    ("k224_rgb_641x480", "rgb_641x480.png", "kandinsky22", "open"),
    ("k224_rgb_7x5", "rgb_7x5.png", "kandinsky22", "open"),
]
for _img in ("rgb_7x5.png", "rgb_224x224.png", "rgb_300x200.png", "rgb_200x300.png", "rgb_641x480.png",
             "rgb_1000x17.png", "gray_45x59.png", "rgba_50x40.png"):
    CASES.append(("s32_" + _img[:-4], _img, "s32", "open"))
CASES += [
    ("s32_rgba_50x40_load_image", "rgba_50x40.png", "s32", "load_image"),
    ("int_lanczos_nonorm_la_33x20", "la_33x20.png", "int_lanczos_nonorm", "open"),
    ("int_lanczos_nonorm_p_trns_20x30", "p_trns_20x30.png", "int_lanczos_nonorm", "open"),
    ("hw_pad_bilinear_rgb_300x200", "rgb_300x200.png", "hw_pad_bilinear", "open"),
    ("hw_pad_bilinear_gray_45x59", "gray_45x59.png", "hw_pad_bilinear", "open"),
    ("short_long_nocrop_raw_rgb_1000x17", "rgb_1000x17.png", "short_long_nocrop_raw", "open"),
    ("short_long_nocrop_raw_rgb_200x300", "rgb_200x300.png", "short_long_nocrop_raw", "open"),
    ("short_long_nocrop_raw_rgb_7x5", "rgb_7x5.png", "short_long_nocrop_raw", "open"),
    ("maxhw_box_rgb_641x480", "rgb_641x480.png", "maxhw_box", "open"),
    ("maxhw_box_rgba_50x40", "rgba_50x40.png", "maxhw_box", "open"),
    ("noresize_rgb_7x5", "rgb_7x5.png", "noresize", "open"),
    ("noresize_la_33x20", "la_33x20.png", "noresize", "open"),
    ("list_nearest_rgb_300x200", "rgb_300x200.png", "list_nearest", "open"),
    ("identity_raw_rgba_alpha_256x256", "rgba_alpha_256x256.png", "identity_raw", "open"),
]
# end to end through the tiny CLIP vision model of tests/data/prior/clip_vision (56 px)
EMBED_CASES = [
    ("embed_rgb_641x480", "rgb_641x480.png", "clip56", "open"),
    ("embed_rgba_50x40", "rgba_50x40.png", "clip56", "open"),
]


def pack(pv):
    """Lossless compact form of pixel_values [3, h, w] F32 (each channel holds at most 256 distinct
    values: one per byte, plus the padding zero): values [3, K] F32 = each channel's distinct values
    sorted (padded by repeating the last), index [3, h, w] F16 (integers < 2048 are exact in F16).
    Checked here to rebuild pixel_values bit for bit."""
    a = pv.numpy()
    uniq = [np.unique(a[c]) for c in range(3)]
    k = max(len(u) for u in uniq)
    assert k <= 2048, k
    values = np.stack([np.concatenate([u, np.full(k - len(u), u[-1], np.float32)]) for u in uniq]).astype(np.float32)
    index = np.stack([np.searchsorted(uniq[c], a[c]) for c in range(3)])
    rebuilt = np.stack([values[c][index[c]] for c in range(3)])
    assert np.array_equal(rebuilt.view(np.int32), a.view(np.int32))
    return torch.from_numpy(values), torch.from_numpy(index.astype(np.float16))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "clip_preprocess"))
    args = ap.parse_args()
    out = args.out
    if os.path.isdir(out):
        shutil.rmtree(out)
    img_dir, cfg_dir = os.path.join(out, "images"), os.path.join(out, "configs")
    make_images(img_dir)
    os.makedirs(cfg_dir)
    for name, c in CONFIGS.items():
        with open(os.path.join(cfg_dir, name + ".json"), "w") as f:
            json.dump(c, f, indent=2)
            f.write("\n")

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection.from_pretrained(os.path.join(ROOT, "tests", "data", "prior", "clip_vision"))
    model.eval()
    tensors, meta = {}, []
    for name, image, config, loader in CASES + EMBED_CASES:
        proc = CLIPImageProcessor.from_pretrained(os.path.join(cfg_dir, config + ".json"))
        assert type(proc).__name__ == "CLIPImageProcessorPil", type(proc)  # no torchvision: the PIL backend
        path = os.path.join(img_dir, image)
        pil = Image.open(path) if loader == "open" else load_image(path)
        entry = {"name": name, "image": image, "config": config, "loader": loader, "mode": pil.mode}
        try:
            pv = proc(pil, return_tensors="pt").pixel_values[0]
        except ValueError as ex:  # the reference refuses this input: the C code must fail too
            entry["error"] = str(ex)
            meta.append(entry)
            continue
        pv = pv.to(torch.float32).contiguous()  # raw-byte configs give uint8
        tensors[name + ".values"], tensors[name + ".index"] = pack(pv)
        entry["shape"] = list(pv.shape)
        if (name, image, config, loader) in EMBED_CASES:
            with torch.no_grad():
                emb = model(pv.unsqueeze(0).to(model.dtype))["image_embeds"][0]
            tensors[name + ".image_embeds"] = emb.float().contiguous()
            entry["model"] = "prior/clip_vision"
        meta.append(entry)
    save_file(tensors, os.path.join(out, "cases.safetensors"))
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                                "Pillow": PIL.__version__, "processor_class": "CLIPImageProcessorPil"},
                   "cases": meta}, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(out) for fn in fns)
    print(f"{len(meta)} cases, {total} bytes in {out}")


if __name__ == "__main__":
    main()
