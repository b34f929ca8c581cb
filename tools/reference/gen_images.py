#!/usr/bin/env python3
"""Writes the image test corpus of tests/test_image.c to tests/data/images/.

What it writes (all deterministic: fixed seeds, our own PNG writer, Pillow's JPEG writer):

  *.png / *.jpg           decode corpus: PNG of every colour type and bit depth (gray 1/2/4/8/16,
                          gray+alpha 8/16, palette 1/2/4/8 with and without tRNS, RGB 8/16, RGBA
                          8/16), Adam7-interlaced variants, every PNG filter type, ancillary chunks,
                          EXIF/XMP orientation (PNG eXIf, "Raw profile type exif", XMP), JPEG
                          baseline 4:4:4/4:2:2/4:2:0, progressive, grayscale, CMYK, RGB (Adobe
                          transform 0), restart markers, EXIF orientation, 2000 progressive scans.
  decode_cases.txt        "<file> <channels>" per decode case
  ref/<file>.safetensors  Pillow's decode: rgb = exif_transpose(open(f)).convert("RGB") [H,W,3],
                          native = the same converted to the mode our decoder returns when that is
                          L or RGBA [H,W,C], gray = rgb.convert("L") [H,W] (not for the src_*
                          resize sources), and for files with an
                          orientation raw_rgb = open(f).convert("RGB") (not transposed).
                          Pixel values are stored as F16 (exact for 0..255; the C safetensors
                          reader has no U8).
  resize_cases.txt        "<case> <source> <w> <h> <filter> <reducing_gap or 0 for None>"
  resize/<case>.safetensors  out = Image.open(source).resize((w, h), filter, reducing_gap=...)
  resize/sweep.safetensors   120 small random cases (noise, 1/3/4 channels, every filter and
                          reducing_gap None/1/1.5/2/3): in_<i>, out_<i>, metadata case_<i>
  vae/pre.safetensors     pixel_values = VaeImageProcessor(resample="bicubic", reducing_gap=1)
                          .preprocess(img, height, width) (the Kandinsky img2img processor), and
                          ramp = 2 * (arange(256) / 255) - 1 with numpy/torch float32 semantics
  vae/post.safetensors    x [3,H,W] float32 (includes exact .5 ties after *255) and u8 = the
                          diffusers Kandinsky post-processing: clamp(x*0.5+0.5, 0, 1), then
                          numpy_to_pil ((v*255).round().astype(uint8))
  bad/*                   malformed files; bad/cases.txt: "<file> <KD_STATUS> <message substring>"

    ~/.venvs/kd-ref/bin/python tools/reference/gen_images.py [--out tests/data/images]
"""
import argparse
import io
import os
import shutil
import struct
import zlib

import numpy as np
import PIL
import torch
from PIL import Image, ImageOps
import json

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ------------------------------------------------------------------------------------------------
# a small PNG writer of our own (Pillow cannot write most bit depths / colour types)

def _chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_row(ftype, row, prev, bpp):
    out = bytearray(len(row))
    for i in range(len(row)):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i] if prev is not None else 0
        c = prev[i - bpp] if (prev is not None and i >= bpp) else 0
        if ftype == 0:
            p = 0
        elif ftype == 1:
            p = a
        elif ftype == 2:
            p = b
        elif ftype == 3:
            p = (a + b) // 2
        else:
            p = _paeth(a, b, c)
        out[i] = (row[i] - p) & 0xFF
    return bytes([ftype]) + bytes(out)


def _pack_rows(samples, bitdepth):
    """samples: uint array [h, w*spp] -> list of packed row bytes."""
    rows = []
    for r in samples:
        if bitdepth == 16:
            rows.append(b"".join(struct.pack(">H", int(v)) for v in r))
        elif bitdepth == 8:
            rows.append(bytes(int(v) for v in r))
        else:
            per = 8 // bitdepth
            out = bytearray((len(r) + per - 1) // per)
            for i, v in enumerate(r):
                out[i // per] |= (int(v) & ((1 << bitdepth) - 1)) << (8 - bitdepth * (i % per + 1))
            rows.append(bytes(out))
    return rows


CT_SPP = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(pix, bitdepth, ctype, plte=None, trns=None, interlace=False, pre_chunks=(), post_chunks=(),
              filt_seed=0):
    """pix: uint array [h, w, spp] of sample values."""
    h, w, spp = pix.shape
    assert spp == CT_SPP[ctype]
    bpp = max(1, bitdepth * spp // 8)
    raw = bytearray()
    k = filt_seed
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for (x0, y0, dx, dy) in passes:
        sub = pix[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        rows = _pack_rows(sub.reshape(sub.shape[0], -1), bitdepth)
        prev = None
        for r in rows:
            raw += _filter_row(k % 5, r, prev, bpp)
            k += 1
            prev = r
    ihdr = struct.pack(">IIBBBBB", w, h, bitdepth, ctype, 0, 0, 1 if interlace else 0)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    for c in pre_chunks:
        out += c
    if plte is not None:
        out += _chunk(b"PLTE", bytes(np.asarray(plte, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += _chunk(b"tRNS", trns)
    data = zlib.compress(bytes(raw), 9)
    # split IDAT in two to exercise multi-IDAT streams
    cut = len(data) // 2
    out += _chunk(b"IDAT", data[:cut]) + _chunk(b"IDAT", data[cut:])
    for c in post_chunks:
        out += c
    return out + _chunk(b"IEND", b"")


# ------------------------------------------------------------------------------------------------
# content

def smooth(h, w, c, seed, lo=0, hi=255, noise=12.0):
    """Gradients + a disc + some noise: varied content that still compresses."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for i in range(c):
        a = rng.uniform(0, 2 * np.pi)
        g = (np.cos(a) * x / max(w, 1) + np.sin(a) * y / max(h, 1)) * 0.5 + 0.5
        g += 0.35 * np.sin((x * (i + 1) * 0.21) + y * 0.13 * (i + 2))
        disc = ((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2) < (min(h, w) * 0.25) ** 2
        g = np.where(disc, 1.0 - g, g)
        chans.append(g)
    v = np.stack(chans, -1)
    v = (v - v.min()) / (v.max() - v.min() + 1e-9)
    v = lo + v * (hi - lo) + rng.normal(0, noise * (hi - lo) / 255.0, v.shape)
    # hard edges: a black and a white bar
    v[:, w // 5: w // 5 + max(1, w // 16)] = lo
    v[h // 3: h // 3 + max(1, h // 12), :] = hi
    return np.clip(np.rint(v), lo, hi).astype(np.int64)


def save_file(tensors, path, metadata=None):
    """safetensors writer with a sorted header, so two runs give byte-identical files
    (safetensors' own writer orders __metadata__ by a hash map)."""
    names = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[k] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in sorted(metadata.items())}
    h = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def f16(a):
    return np.ascontiguousarray(np.asarray(a, dtype=np.float16))


# ------------------------------------------------------------------------------------------------

class Corpus:
    def __init__(self, out):
        self.out = out
        self.cases = []   # (file, channels)
        self.resize = []  # (case, src, w, h, filter, gap)
        self.bad = []     # (file, status, substring)

    def path(self, rel):
        p = os.path.join(self.out, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def write(self, rel, data):
        with open(self.path(rel), "wb") as f:
            f.write(data)

    def add(self, name, data, channels):
        self.write(name, data)
        self.cases.append((name, channels))

    def add_png(self, name, pix, bitdepth, ctype, channels, **kw):
        self.add(name, png_bytes(pix, bitdepth, ctype, **kw), channels)

    def add_pil(self, name, im, channels, **save_kw):
        buf = io.BytesIO()
        im.save(buf, format="JPEG" if name.endswith(".jpg") else "PNG", **save_kw)
        self.add(name, buf.getvalue(), channels)

    def refs(self):
        for name, ch in self.cases:
            im = Image.open(self.path(name))
            im.load()
            orient = im.getexif().get(0x0112, 1)
            t = ImageOps.exif_transpose(im)
            rgb = t.convert("RGB")
            native = t.convert({1: "L", 3: "RGB", 4: "RGBA"}[ch])
            tensors = {"rgb": f16(np.array(rgb))}
            if native.mode != "RGB":  # for RGB results native == rgb: not stored twice
                tensors["native"] = f16(np.array(native).reshape(rgb.size[1], rgb.size[0], ch))
            if not name.startswith("src_"):  # keep the corpus small: the big resize sources skip it
                tensors["gray"] = f16(np.array(rgb.convert("L")))
            if orient != 1:
                tensors["raw_rgb"] = f16(np.array(im.convert("RGB")))
            save_file(tensors, self.path("ref/" + name + ".safetensors"),
                      metadata={"pil_mode": im.mode, "orientation": str(orient)})
        with open(self.path("decode_cases.txt"), "w") as f:
            for name, ch in self.cases:
                f.write(f"{name} {ch}\n")


FILTERS = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
           "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def gen_png(c):
    rng = np.random.default_rng(1)
    H, W = 23, 37
    # gray
    for bd in (1, 2, 4, 8):
        pix = smooth(H, W, 1, 10 + bd, 0, (1 << bd) - 1, noise=0.6 * ((1 << bd) - 1))
        c.add_png(f"g{bd}.png", pix, bd, 0, 1)
        c.add_png(f"g{bd}_i.png", pix, bd, 0, 1, interlace=True, filt_seed=3)
    g16 = smooth(H, W, 1, 16, 0, 65535).reshape(H, W, 1)
    low = rng.integers(0, 400, (H, W, 1))
    g16 = np.where(rng.random((H, W, 1)) < 0.5, low, g16)  # Pillow clips I;16 -> L: keep values near 255
    c.add_png("g16.png", g16, 16, 0, 1)
    c.add_png("g16_i.png", g16, 16, 0, 1, interlace=True)
    c.add_png("g8_trns.png", smooth(H, W, 1, 21), 8, 0, 1, trns=struct.pack(">H", 17))
    c.add_png("g16_trns.png", g16, 16, 0, 1, trns=struct.pack(">H", 300))
    # gray + alpha
    ga8 = np.concatenate([smooth(H, W, 1, 22), smooth(H, W, 1, 23)], -1)
    c.add_png("ga8.png", ga8, 8, 4, 4)
    c.add_png("ga8_i.png", ga8, 8, 4, 4, interlace=True)
    ga16 = np.concatenate([smooth(H, W, 1, 24, 0, 65535), smooth(H, W, 1, 25, 0, 65535)], -1)
    c.add_png("ga16.png", ga16, 16, 4, 4)
    # palette
    for bd in (1, 2, 4, 8):
        n = 1 << bd
        plte = rng.integers(0, 256, (n, 3))
        idx = smooth(H, W, 1, 30 + bd, 0, n - 1, noise=0.5 * (n - 1))
        c.add_png(f"p{bd}.png", idx, bd, 3, 3, plte=plte)
        trns = bytes(rng.integers(0, 256, max(1, n // 2 + 1 if n > 2 else 1)).astype(np.uint8))
        c.add_png(f"p{bd}_trns.png", idx, bd, 3, 4, plte=plte, trns=trns)
        if bd in (2, 8):
            c.add_png(f"p{bd}_i.png", idx, bd, 3, 3, plte=plte, interlace=True)
    # indices beyond a short palette: Pillow gives black
    c.add_png("p8_short.png", smooth(H, W, 1, 40, 0, 9), 8, 3, 3, plte=rng.integers(0, 256, (5, 3)))
    # rgb / rgba
    rgb8 = smooth(H, W, 3, 50)
    c.add_png("rgb8.png", rgb8, 8, 2, 3)
    c.add_png("rgb8_i.png", rgb8, 8, 2, 3, interlace=True)
    c.add_png("rgb8_trns.png", rgb8, 8, 2, 3, trns=struct.pack(">HHH", 1, 2, 3))
    rgb16 = smooth(H, W, 3, 51, 0, 65535)
    c.add_png("rgb16.png", rgb16, 16, 2, 3)
    c.add_png("rgb16_i.png", rgb16, 16, 2, 3, interlace=True)
    rgba8 = np.concatenate([smooth(H, W, 3, 52), smooth(H, W, 1, 53)], -1)
    c.add_png("rgba8.png", rgba8, 8, 6, 4)
    rgba16 = np.concatenate([smooth(H, W, 3, 54, 0, 65535), smooth(H, W, 1, 55, 0, 65535)], -1)
    c.add_png("rgba16.png", rgba16, 16, 6, 4)
    c.add_png("rgba16_i.png", rgba16, 16, 6, 4, interlace=True)
    # tiny sizes (Adam7 passes that are empty)
    c.add_png("rgb8_1x1.png", smooth(1, 1, 3, 56), 8, 2, 3)
    c.add_png("rgb8_1x1_i.png", smooth(1, 1, 3, 57), 8, 2, 3, interlace=True)
    c.add_png("rgba8_3x2_i.png", np.concatenate([smooth(2, 3, 3, 58), smooth(2, 3, 1, 59)], -1), 8, 6, 4,
              interlace=True)
    c.add_png("g1_1x9.png", smooth(9, 1, 1, 60, 0, 1, noise=0.7), 1, 0, 1)
    # ancillary chunks that must not change the pixels (Pillow ignores gamma/ICC/sBIT when decoding)
    anc = [_chunk(b"gAMA", struct.pack(">I", 45455)),
           _chunk(b"cHRM", struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)),
           _chunk(b"sBIT", bytes([5, 6, 5])),
           _chunk(b"iCCP", b"junk profile\x00\x00" + zlib.compress(b"not an ICC profile at all")),
           _chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1)),
           _chunk(b"tEXt", b"Comment\x00hello"),
           _chunk(b"zTXt", b"Title\x00\x00" + zlib.compress(b"compressed text")),
           _chunk(b"prVt", b"unknown ancillary chunk")]
    c.add_png("rgb8_anc.png", rgb8, 8, 2, 3, pre_chunks=anc,
              post_chunks=[_chunk(b"tIME", struct.pack(">HBBBBB", 2026, 1, 2, 3, 4, 5))])
    # Pillow's own encoder
    c.add_pil("pil_rgb.png", Image.fromarray(smooth(H, W, 3, 61).astype(np.uint8)), 3)

    # resize sources
    c.add_png("src_97x61.png", smooth(61, 97, 3, 70), 8, 2, 3)
    c.add_png("src_97x61_gray.png", smooth(61, 97, 1, 71), 8, 0, 1)
    c.add_png("src_64x48.png", smooth(48, 64, 3, 72), 8, 2, 3)
    a = smooth(48, 64, 1, 74)
    a[:, :8] = 0
    a[:, 8:16] = 255
    c.add_png("src_64x48_rgba.png", np.concatenate([smooth(48, 64, 3, 73), a], -1), 8, 6, 4)
    c.add_png("src_300x200.png", smooth(200, 300, 3, 75, noise=6.0), 8, 2, 3)
    c.add_png("src_7x1.png", smooth(1, 7, 3, 76), 8, 2, 3)


def exif_bytes(orientation):
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


def gen_orientation(c):
    base = smooth(5, 7, 3, 80).astype(np.uint8)
    for o in range(1, 9):
        c.add_pil(f"orient{o}.png", Image.fromarray(base), 3, exif=exif_bytes(o))
    # XMP in iTXt "XML:com.adobe.xmp" (Pillow reads tiff:Orientation from it)
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="3"/></x:xmpmeta>'
    itxt = _chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)
    c.add_png("orient_xmp3.png", base.astype(np.int64), 8, 2, 3, pre_chunks=[itxt])
    # ImageMagick-style "Raw profile type exif" zTXt
    ex = exif_bytes(6)
    txt = f"\nexif\n{len(ex):8}\n{ex.hex()}\n".encode()
    ztxt = _chunk(b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(txt))
    c.add_png("orient_raw6.png", base.astype(np.int64), 8, 2, 3, pre_chunks=[ztxt])
    # eXIf after IDAT
    c.add_png("orient_late8.png", base.astype(np.int64), 8, 2, 3,
              post_chunks=[_chunk(b"eXIf", exif_bytes(8)[6:] if exif_bytes(8).startswith(b"Exif") else exif_bytes(8))])


def many_scans_jpeg(pairs):
    """8x8 grayscale progressive JPEG: 'pairs' × (DC first scan + AC first scan), Ah = Al = 0,
    so every repetition is a legal progression (libjpeg only checks Ah against the last Al)."""
    def seg(m, d):
        return bytes([0xFF, m]) + struct.pack(">H", len(d) + 2) + d
    out = b"\xff\xd8"
    out += seg(0xDB, b"\x00" + bytes([1] * 64))
    out += seg(0xC2, bytes([8]) + struct.pack(">HH", 8, 8) + bytes([1, 1, 0x11, 0]))
    one_code = bytes([1] + [0] * 15)
    out += seg(0xC4, b"\x00" + one_code + b"\x00")  # DC table 0: symbol 0 (category 0) = "0"
    out += seg(0xC4, b"\x10" + one_code + b"\x00")  # AC table 0: symbol 0x00 (EOB) = "0"
    for _ in range(pairs):
        out += seg(0xDA, bytes([1, 1, 0x00, 0, 0, 0x00])) + b"\x7f"
        out += seg(0xDA, bytes([1, 1, 0x00, 1, 63, 0x00])) + b"\x7f"
    return out + b"\xff\xd9"


def gen_jpeg(c):
    H, W = 23, 37
    rgb = Image.fromarray(smooth(H, W, 3, 90).astype(np.uint8))
    for sub, nm in ((0, "444"), (1, "422"), (2, "420")):
        c.add_pil(f"j_{nm}.jpg", rgb, 3, quality=90, subsampling=sub)
    big = Image.fromarray(smooth(48, 64, 3, 91).astype(np.uint8))
    c.add_pil("j_420_64x48.jpg", big, 3, quality=85)
    c.add_pil("j_prog.jpg", big, 3, quality=85, progressive=True)
    c.add_pil("j_prog_444.jpg", rgb, 3, quality=95, progressive=True, subsampling=0)
    c.add_pil("j_opt.jpg", rgb, 3, quality=75, optimize=True)
    c.add_pil("j_restart.jpg", big, 3, quality=80, restart_marker_blocks=3)
    c.add_pil("j_rgb_adobe.jpg", rgb, 3, quality=90, keep_rgb=True, subsampling=0)
    gray = Image.fromarray(smooth(H, W, 1, 92)[..., 0].astype(np.uint8), "L")
    c.add_pil("j_gray.jpg", gray, 1, quality=90)
    c.add_pil("j_gray_prog.jpg", gray, 1, quality=90, progressive=True)
    cmyk = Image.fromarray(smooth(H, W, 4, 93).astype(np.uint8), "CMYK")
    c.add_pil("j_cmyk.jpg", cmyk, 3, quality=90)
    tall = Image.fromarray(smooth(24, 40, 3, 94).astype(np.uint8))
    c.add_pil("j_exif6.jpg", tall, 3, quality=90, exif=exif_bytes(6))
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><tiff:Orientation>8</tiff:Orientation></x:xmpmeta>'
    c.add_pil("j_xmp8.jpg", tall, 3, quality=90, xmp=xmp)
    c.add("j_scans2000_ok.jpg", many_scans_jpeg(10), 1)
    # metadata bomb: 40 zTXt "Raw profile type exif" chunks, each inflating to 2.5 MB (over the
    # 2 MB chunk cap and the 32-chunk cache). Pillow refuses it (text over 1 MB); we decode the
    # 1x1 pixel and drop the text, so it is not a Pillow-parity case (no reference).
    zt = _chunk(b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(bytes(2_500_000), 9))
    c.write("meta_bomb.png", png_bytes(np.full((1, 1, 1), 77, np.int64), 8, 0, pre_chunks=[zt] * 40))  # the same construction, few scans: decodes
    c.write("j_scans2000.jpg", many_scans_jpeg(1000))    # 2000 scans: refused by the default limit


def gen_resize(c):
    R = []
    def add(src, w, h, filt, gap):
        name = f"{os.path.splitext(src)[0]}_{w}x{h}_{filt}_{gap if gap else 'none'}"
        R.append((name, src, w, h, filt, gap))
    for filt in ("bicubic", "lanczos"):
        for gap in (1, 0):
            add("src_97x61.png", 64, 64, filt, gap)
            add("src_300x200.png", 80, 56, filt, gap)
        add("src_64x48.png", 200, 150, filt, 1)      # upscale: reducing_gap changes nothing
    add("src_300x200.png", 150, 100, "bicubic", 1)   # exact 2x: reduce only, no filter
    add("src_300x200.png", 150, 100, "bicubic", 0)
    add("src_300x200.png", 100, 67, "bicubic", 1)    # 3x wide, not exact in height
    add("src_300x200.png", 37, 200, "bicubic", 1)    # width only
    add("src_300x200.png", 300, 47, "lanczos", 1)    # height only
    add("src_300x200.png", 13, 9, "bicubic", 1)      # large factor
    add("src_300x200.png", 13, 9, "lanczos", 2.0)
    add("src_300x200.png", 104, 72, "bicubic", 1)    # the VaeImageProcessor case
    add("src_300x200.png", 161, 109, "bicubic", 1)   # mild downscale, odd size
    add("src_64x48.png", 97, 75, "bicubic", 0)       # non-integer upscale
    add("src_97x61.png", 50, 31, "bilinear", 0)
    add("src_97x61.png", 50, 31, "hamming", 0)
    add("src_97x61.png", 50, 31, "box", 0)
    add("src_97x61.png", 50, 31, "box", 1)
    add("src_97x61.png", 50, 31, "nearest", 0)
    add("src_97x61.png", 150, 90, "nearest", 1)
    add("src_97x61.png", 33, 20, "bilinear", 1.5)
    add("src_97x61_gray.png", 48, 30, "lanczos", 1)  # the inpainting mask path
    add("src_97x61_gray.png", 64, 64, "lanczos", 0)
    add("src_97x61_gray.png", 200, 7, "bicubic", 1)
    add("src_64x48_rgba.png", 40, 30, "bicubic", 1)  # premultiplied alpha
    add("src_64x48_rgba.png", 100, 75, "lanczos", 0)
    add("src_64x48_rgba.png", 32, 24, "bicubic", 1)
    add("src_64x48_rgba.png", 40, 30, "nearest", 0)
    add("src_7x1.png", 3, 1, "bicubic", 1)
    add("src_7x1.png", 20, 5, "lanczos", 0)
    add("rgb8_1x1.png", 5, 3, "bicubic", 0)
    add("rgb8_1x1.png", 5, 3, "nearest", 0)
    c.resize = R
    for name, src, w, h, filt, gap in R:
        im = Image.open(c.path(src))
        out = im.resize((w, h), FILTERS[filt], reducing_gap=(gap if gap else None))
        a = np.array(out).reshape(h, w, len(out.getbands()))
        save_file({"out": f16(a)}, c.path(f"resize/{name}.safetensors"),
                  metadata={"src": src, "filter": filt, "gap": str(gap)})
    with open(c.path("resize_cases.txt"), "w") as f:
        for name, src, w, h, filt, gap in R:
            f.write(f"{name} {src} {w} {h} {filt} {gap}\n")

    # A sweep of small random cases (noise images, every filter, reducing_gap None/1/1.5/2/3,
    # 1/3/4 channels) in one file: in_<i> [H,W,C], out_<i> [h,w,C]; metadata case_<i> =
    # "<w> <h> <filter> <gap>". It pins the pass order, the reduce edge blocks and the box rounding.
    rng = np.random.default_rng(11)
    tensors, meta = {}, {}
    names = list(FILTERS)
    n = 120
    for i in range(n):
        C = int(rng.choice([1, 3, 4]))
        W, H = int(rng.integers(1, 21)), int(rng.integers(1, 21))
        w, h = int(rng.integers(1, 25)), int(rng.integers(1, 25))
        filt = names[i % len(names)]
        gap = [0, 1, 1.5, 2, 3][int(rng.integers(0, 5))]
        a = rng.integers(0, 256, (H, W, C)).astype(np.uint8)
        if C == 4:
            a[..., 3] = rng.choice([0, 255, 1, 128, 77], (H, W))
        im = Image.fromarray(a[..., 0] if C == 1 else a, {1: "L", 3: "RGB", 4: "RGBA"}[C])
        out = np.array(im.resize((w, h), FILTERS[filt], reducing_gap=(gap if gap else None))).reshape(h, w, C)
        tensors[f"in_{i}"] = f16(a)
        tensors[f"out_{i}"] = f16(out)
        meta[f"case_{i}"] = f"{w} {h} {filt} {gap}"
    meta["n"] = str(n)
    save_file(tensors, c.path("resize/sweep.safetensors"), metadata=meta)


def gen_vae(c):
    from diffusers.image_processor import VaeImageProcessor
    img = Image.open(c.path("src_300x200.png")).convert("RGB")
    proc = VaeImageProcessor(vae_scale_factor=8, resample="bicubic", reducing_gap=1)
    # height 77 is floored to a multiple of 8 (72); width 104 stays
    pv = proc.preprocess(img, height=77, width=104)
    ramp = np.arange(256).astype(np.float32) / 255.0
    ramp = (2.0 * torch.from_numpy(ramp) - 1.0).numpy()
    save_file({"pixel_values": np.ascontiguousarray(pv.numpy().astype(np.float32)), "ramp": ramp},
              c.path("vae/pre.safetensors"),
              metadata={"src": "src_300x200.png", "height": "77", "width": "104", "resample": "bicubic",
                        "reducing_gap": "1"})

    # post-processing with exact ties: values x whose float32 (x*0.5+0.5)*255 is k + 0.5
    ties = []
    for k in range(255):
        x0 = np.float32(2.0) * np.float32((k + 0.5) / 255.0) - np.float32(1.0)
        cands = [x0]
        up = down = x0
        for _ in range(64):
            up = np.nextafter(up, np.float32(np.inf), dtype=np.float32)
            down = np.nextafter(down, np.float32(-np.inf), dtype=np.float32)
            cands += [up, down]
        for x in cands:
            v = (torch.tensor([x], dtype=torch.float32) * 0.5 + 0.5).clamp(0, 1).numpy()
            if (v * np.float32(255))[0] == np.float32(k + 0.5):
                ties.append(np.float32(x))
                break
    rng = np.random.default_rng(5)
    n = 3 * 16 * 16
    vals = list(ties) + [-1.0, 1.0, 0.0, -1.5, 1.5, -0.0, 1e-8, -1e-8]
    vals += list(rng.uniform(-1.2, 1.2, n - len(vals)))
    x = np.array(vals[:n], dtype=np.float32).reshape(3, 16, 16)
    img = (torch.from_numpy(x)[None] * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
    u8 = np.array(VaeImageProcessor.numpy_to_pil(img)[0])
    save_file({"x": x, "u8": f16(u8)}, c.path("vae/post.safetensors"), metadata={"ties": str(len(ties))})
    return len(ties)


def gen_bad(c):
    B = c.bad
    def bad(name, data, status, sub):
        c.write("bad/" + name, data)
        B.append((name, status, sub))
    png = open(c.path("src_64x48.png"), "rb").read()
    jpg = open(c.path("j_420_64x48.jpg"), "rb").read()
    prog = open(c.path("j_prog.jpg"), "rb").read()
    bad("empty.png", b"", "KD_ERR_FORMAT", "empty file")
    rnd = bytearray(np.random.default_rng(7).integers(0, 256, 3000).astype(np.uint8).tobytes())
    rnd[0] = 0
    bad("random.bin", bytes(rnd), "KD_ERR_FORMAT", "not a PNG or JPEG")
    bad("trunc_png_5.png", png[:5], "KD_ERR_FORMAT", "not a PNG or JPEG")
    bad("trunc_png_20.png", png[:20], "KD_ERR_FORMAT", "truncated PNG")
    for cut in (40, 200, len(png) // 2, len(png) - 13, len(png) - 1):
        bad(f"trunc_png_{cut}.png", png[:cut], "KD_ERR_FORMAT", "truncated")
    b = bytearray(png)
    b[29] ^= 0xFF  # IHDR CRC
    bad("crc_ihdr.png", bytes(b), "KD_ERR_FORMAT", "CRC")
    b = bytearray(png)
    i = png.index(b"IDAT")
    ln = struct.unpack(">I", png[i - 4:i])[0]
    b[i + 4 + ln] ^= 0x55  # IDAT CRC
    bad("crc_idat.png", bytes(b), "KD_ERR_FORMAT", "CRC")
    b = bytearray(png)
    for k in range(i + 10, i + 4 + ln - 2):
        b[k] = (b[k] * 7 + 13) & 0xFF
    b[i + 4 + ln:i + 8 + ln] = struct.pack(">I", zlib.crc32(bytes(b[i:i + 4 + ln])) & 0xFFFFFFFF)
    bad("bad_zlib.png", bytes(b), "KD_ERR_FORMAT", "corrupt PNG")
    c.write("bad/limit_bad_zlib.png", bytes(b))  # for the limits-before-rows test
    huge = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 65535, 65535, 8, 2, 0, 0, 0)) + \
        _chunk(b"IEND", b"")
    bad("huge_dims.png", huge, "KD_ERR_OOM", "over the limit")
    # a text chunk declaring 2 GB in a tiny file (libpng would allocate the declared size first;
    # found by fuzzing): refused by our chunk walk before libpng runs
    bad("chunk_len_2g.png", png[:33] + struct.pack(">I", 0x7B000000) + b"zTXtRaw profile type exif\x00\x00" +
        zlib.compress(bytes(1000)), "KD_ERR_FORMAT", "declares 2063597568 bytes")
    # a valid 20000 x 20000 1-bit PNG of zeros: 50 MB of pixels in ~50 KB
    rowlen = 20000 // 8 + 1
    z = zlib.compressobj(9)
    comp = bytearray()
    row = bytes(rowlen)
    for _ in range(20000):
        comp += z.compress(row)
    comp += z.flush()
    bomb = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 1, 0, 0, 0, 0)) + \
        _chunk(b"IDAT", bytes(comp)) + _chunk(b"IEND", b"")
    bad("bomb.png", bomb, "KD_ERR_OOM", "over the limit")
    zw = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 10, 8, 0, 0, 0, 0)) + \
        _chunk(b"IEND", b"")
    bad("zero_width.png", zw, "KD_ERR_FORMAT", "empty size")
    bad("no_plte.png", png_bytes(np.zeros((4, 4, 1), np.int64), 8, 3), "KD_ERR_FORMAT", "PLTE")
    bad("bad_ctype.png", b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 5, 0, 0, 0)) +
        _chunk(b"IEND", b""), "KD_ERR_FORMAT", "corrupt PNG")
    bad("trunc_jpg_3.jpg", jpg[:3], "KD_ERR_FORMAT", "Premature end")
    for cut in (100, 400, len(jpg) // 2, len(jpg) - 2, len(jpg) - 1):
        bad(f"trunc_jpg_{cut}.jpg", jpg[:cut], "KD_ERR_FORMAT", "Premature end")
    for cut in (len(prog) // 3, len(prog) * 2 // 3):
        bad(f"trunc_prog_{cut}.jpg", prog[:cut], "KD_ERR_FORMAT", "Premature end")
    # a marker in the middle of the entropy-coded data
    sos = jpg.index(b"\xff\xda")
    mid = sos + (len(jpg) - sos) // 2
    bad("jpg_marker_in_data.jpg", jpg[:mid] + b"\xff\xd5" + jpg[mid:], "KD_ERR_FORMAT", "corrupt JPEG")
    # SOF with zero height / huge size
    sof = jpg.index(b"\xff\xc0")
    b = bytearray(jpg)
    b[sof + 5:sof + 7] = b"\x00\x00"
    bad("jpg_zero_height.jpg", bytes(b), "KD_ERR_FORMAT", "JPEG")
    b = bytearray(jpg)
    b[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    bad("jpg_huge.jpg", bytes(b), "KD_ERR_OOM", "over the limit")
    bad("jpg_scans.jpg", many_scans_jpeg(1000), "KD_ERR_OOM", "scans")
    b = bytearray(jpg)
    b[sof + 9] = 2  # 2 components: drop the third component of SOF (its scan then names an unknown id)
    b[sof + 2:sof + 4] = struct.pack(">H", struct.unpack(">H", jpg[sof + 2:sof + 4])[0] - 3)
    bad("jpg_2comp.jpg", bytes(b[:sof + 10 + 6]) + bytes(b[sof + 10 + 9:]), "KD_ERR_FORMAT", "JPEG")
    small = Image.fromarray(smooth(8, 8, 3, 99).astype(np.uint8))
    for fmt, st, sub in (("GIF", "KD_ERR_UNSUPPORTED", "GIF"), ("BMP", "KD_ERR_UNSUPPORTED", "BMP"),
                         ("WEBP", "KD_ERR_UNSUPPORTED", "WebP"), ("TIFF", "KD_ERR_UNSUPPORTED", "TIFF")):
        buf = io.BytesIO()
        small.save(buf, format=fmt)
        bad("small." + fmt.lower(), buf.getvalue(), st, sub)
    with open(c.path("bad/cases.txt"), "w") as f:
        for name, st, sub in B:
            f.write(f"{name} {st} {sub}\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "images"))
    args = ap.parse_args()
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    c = Corpus(args.out)
    gen_png(c)
    gen_orientation(c)
    gen_jpeg(c)
    c.refs()
    gen_resize(c)
    ties = gen_vae(c)
    gen_bad(c)
    total = 0
    for dp, _, fs in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(dp, f)) for f in fs)
    print(f"Pillow {PIL.__version__}: {len(c.cases)} decode cases, {len(c.resize)} resize cases, "
          f"{len(c.bad)} malformed files, {ties} exact .5 ties; {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
