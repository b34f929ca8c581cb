#!/usr/bin/env python3
"""Writes the per-op parity cases of tests/test_ops.c to tests/data/ops/<case>.safetensors.

Every file holds the op's inputs (plain names: x, y, w, b, c, gamma, beta, q, k, v, k_pre, v_pre,
mask, t), its parameters as strings in __metadata__ ("op" names the C runner, the rest are the
op's arguments) and torch's result as "out". torch runs on the CPU in float32, one thread,
deterministic algorithms, with a seed derived from the case name, so two runs give identical files.
tests/data/ops/cases.txt lists the cases; the C test fails if a listed file is missing or a file in
the folder is not listed.

Shapes are those the Kandinsky 2.x models use, scaled down (odd sizes and batch 2 on purpose).

    ~/.venvs/kd-ref/bin/python tools/reference/gen_ops.py [--out tests/data/ops]
"""
import argparse
import json
import math
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from safetensors import safe_open

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

CASES = []  # (name, fn)


def case(name):
    def reg(fn):
        CASES.append((name, fn))
        return fn
    return reg


def seed_for(name):
    torch.manual_seed(zlib.crc32(name.encode()))


def meta_str(v):
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def randn(*shape, scale=1.0):
    return torch.randn(*shape, dtype=torch.float32) * scale


# ------------------------------------------------------------------------------------------------
# matrix products


def gemm_case(name, M, N, K, trans_a, trans_b, alpha, beta, nan_c=False):
    @case(name)
    def _():
        a = randn(K, M) if trans_a else randn(M, K)
        bm = randn(N, K) if trans_b else randn(K, N)
        c = randn(M, N)
        if nan_c:
            c[::3, ::2] = float("nan")  # beta = 0: C must not be read (BLAS convention)
        opa = a.t() if trans_a else a
        opb = bm.t() if trans_b else bm
        out = torch.addmm(c, opa, opb, beta=beta, alpha=alpha)
        return {"x": a, "w": bm, "c": c, "out": out}, dict(
            op="gemm", trans_a=int(trans_a), trans_b=int(trans_b), alpha=alpha, beta=beta)


gemm_case("gemm_nn", 13, 17, 29, False, False, 1.0, 0.0)
gemm_case("gemm_nt_beta", 13, 17, 29, False, True, 0.5, 1.5)
gemm_case("gemm_tn", 7, 33, 20, True, False, 2.0, 1.0)
gemm_case("gemm_tt_nanc", 9, 5, 64, True, True, 1.0, 0.0, nan_c=True)


def linear_case(name, B, T, K, N, wdtype, bias):
    @case(name)
    def _():
        x = randn(B, T, K)
        w = randn(N, K, scale=1.0 / math.sqrt(K)).to(wdtype)
        b = randn(N, scale=0.5) if bias else None
        out = F.linear(x, w.float(), b)  # f32 compute from the upcast weight
        t = {"x": x, "w": w, "out": out}
        if bias:
            t["b"] = b
        return t, dict(op="linear")


linear_case("linear_f32_k77_n96_bias", 2, 5, 77, 96, torch.float32, True)
linear_case("linear_f32_k64_n33_nobias", 1, 7, 64, 33, torch.float32, False)
linear_case("linear_f32_gemv_k384_n200", 1, 1, 384, 200, torch.float32, True)
linear_case("linear_f16_k320_n1280_bias", 2, 5, 320, 1280, torch.float16, True)
linear_case("linear_bf16_k320_n1280_nobias", 2, 5, 320, 1280, torch.bfloat16, False)
linear_case("linear_f16_k77_n96_nobias", 2, 3, 77, 96, torch.float16, False)
linear_case("linear_bf16_gemv_k77_n31_bias", 1, 1, 77, 31, torch.bfloat16, True)

# ------------------------------------------------------------------------------------------------
# convolution


def conv_case(name, B, Cin, Cout, H, W, k, stride, pads, bias=True, wdtype=torch.float32):
    pt, pb, pl, pr = pads

    @case(name)
    def _():
        x = randn(B, Cin, H, W)
        w = randn(Cout, Cin, k, k, scale=1.0 / math.sqrt(Cin * k * k)).to(wdtype)
        b = randn(Cout, scale=0.5) if bias else None
        xp = F.pad(x, (pl, pr, pt, pb))  # explicit zero padding, then an unpadded conv
        out = F.conv2d(xp, w.float(), b, stride=stride)
        t = {"x": x, "w": w, "out": out}
        if bias:
            t["b"] = b
        return t, dict(op="conv2d", stride=stride, pad_top=pt, pad_bottom=pb, pad_left=pl, pad_right=pr)


conv_case("conv2d_1x1_32to64_b2_12x20", 2, 32, 64, 12, 20, 1, 1, (0, 0, 0, 0))
conv_case("conv2d_1x1_4to32_nobias_9x13", 1, 4, 32, 9, 13, 1, 1, (0, 0, 0, 0), bias=False)
conv_case("conv2d_3x3_4to32_b2_9x13", 2, 4, 32, 9, 13, 3, 1, (1, 1, 1, 1))   # UNet/MoVQ conv_in
conv_case("conv2d_3x3_64to64_12x20", 1, 64, 64, 12, 20, 3, 1, (1, 1, 1, 1))
conv_case("conv2d_3x3_32to64_f16_12x20", 1, 32, 64, 12, 20, 3, 1, (1, 1, 1, 1), wdtype=torch.float16)
conv_case("conv2d_3x3_32to32_bf16_b2_5x7", 2, 32, 32, 5, 7, 3, 1, (1, 1, 1, 1), wdtype=torch.bfloat16)
# MoVQ encoder downsampler: F.pad(x, (0, 1, 0, 1)) then 3x3 stride 2, no padding
conv_case("conv2d_3x3_s2_asym_32_b2_12x20", 2, 32, 32, 12, 20, 3, 2, (0, 1, 0, 1))
conv_case("conv2d_3x3_s2_asym_32_9x13", 1, 32, 32, 9, 13, 3, 2, (0, 1, 0, 1))
# ControlNet hint block: 3x3 stride 2 pad 1
conv_case("conv2d_3x3_s2_pad1_16to32_b2_9x13", 2, 16, 32, 9, 13, 3, 2, (1, 1, 1, 1))
conv_case("conv2d_3x3_s2_pad1_32to64_12x20", 1, 32, 64, 12, 20, 3, 2, (1, 1, 1, 1))
# CLIP vision patch embedding: 14x14 stride 14, no bias (56x56 -> 4x4, 42x70 -> 3x5)
conv_case("conv2d_patch14_3to64_56x56", 1, 3, 64, 56, 56, 14, 14, (0, 0, 0, 0), bias=False)
conv_case("conv2d_patch14_3to48_b2_42x70", 2, 3, 48, 42, 70, 14, 14, (0, 0, 0, 0), bias=False)

# ------------------------------------------------------------------------------------------------
# normalisation


def group_norm_case(name, B, C, H, W, groups, eps, silu=False, x_scale=1.0, x_shift=0.0, affine=True):
    @case(name)
    def _():
        x = randn(B, C, H, W) * x_scale + x_shift
        gamma = 1.0 + randn(C, scale=0.5) if affine else None
        beta = randn(C, scale=0.5) if affine else None
        out = F.group_norm(x, groups, gamma, beta, eps)
        if silu:
            out = F.silu(out)
        t = {"x": x, "out": out}
        if affine:
            t["gamma"] = gamma
            t["beta"] = beta
        return t, dict(op="group_norm_silu" if silu else "group_norm", groups=groups, eps=eps)


group_norm_case("group_norm_c64_b2_8x8_eps1e-5", 2, 64, 8, 8, 32, 1e-5)
group_norm_case("group_norm_c96_b2_5x7_eps1e-6_offset", 2, 96, 5, 7, 32, 1e-6, x_scale=3.0, x_shift=5.0)
group_norm_case("group_norm_c64_12x20_eps1e-6_mean100", 1, 64, 12, 20, 32, 1e-6, x_scale=0.5, x_shift=100.0)
group_norm_case("group_norm_c32_g8_5x7_noaffine", 1, 32, 5, 7, 8, 1e-5, affine=False)
group_norm_case("group_norm_silu_c64_b2_5x7_eps1e-6", 2, 64, 5, 7, 32, 1e-6, silu=True)
group_norm_case("group_norm_silu_c96_8x8_eps1e-5_offset", 1, 96, 8, 8, 32, 1e-5, silu=True, x_scale=3.0, x_shift=5.0)


def layer_norm_case(name, shape, eps, x_scale=1.0, x_shift=0.0, affine=True):
    @case(name)
    def _():
        D = shape[-1]
        x = randn(*shape) * x_scale + x_shift
        gamma = 1.0 + randn(D, scale=0.5) if affine else None
        beta = randn(D, scale=0.5) if affine else None
        out = F.layer_norm(x, (D,), gamma, beta, eps)
        t = {"x": x, "out": out}
        if affine:
            t["gamma"] = gamma
            t["beta"] = beta
        return t, dict(op="layer_norm", eps=eps)


layer_norm_case("layer_norm_b2_77x64_mean100", (2, 77, 64), 1e-5, x_shift=100.0)
layer_norm_case("layer_norm_3x1280_mean100", (3, 1280), 1e-5, x_scale=2.0, x_shift=100.0)
layer_norm_case("layer_norm_5x33", (5, 33), 1e-5, x_scale=3.0, x_shift=-1.0)
layer_norm_case("layer_norm_4x96_noaffine", (4, 96), 1e-5, affine=False)

# ------------------------------------------------------------------------------------------------
# softmax


@case("softmax_7x77")
def _():
    x = randn(7, 77, scale=3.0)
    return {"x": x, "out": torch.softmax(x, -1)}, dict(op="softmax")


@case("softmax_6x37_inf_large")
def _():
    x = randn(6, 37, scale=4.0)
    x[0, 5:] = float("-inf")                  # causal-like row: keys after 5 excluded
    x[1, ::2] = float("-inf")                 # every other key excluded
    x[2, :36] = float("-inf")                 # one finite entry left -> exactly one-hot
    x[3] = x[3] + 10000.0                     # large values: must subtract the row max
    x[4, 7] = 88.0
    x[4, 8] = 100.0                           # exp(100) overflows f32 without the max
    x[5] = 50.0                               # constant row -> uniform 1/37
    x[5, 3] = float("-inf")
    return {"x": x, "out": torch.softmax(x, -1)}, dict(op="softmax")


@case("softmax_3x257")
def _():
    x = randn(3, 257, scale=8.0)
    x[1, 100:] = -10000.0                     # additive-mask style large negatives
    return {"x": x, "out": torch.softmax(x, -1)}, dict(op="softmax")

# ------------------------------------------------------------------------------------------------
# attention


def attn_ref(q, k, v, heads, scale, mask=None, causal=False, k_pre=None, v_pre=None):
    """diffusers' path: keys = cat(k_pre, k); scores + additive mask; softmax; @ v (SDPA)."""
    B, Lq, HD = q.shape
    d = HD // heads
    if k_pre is not None:
        k = torch.cat([k_pre, k], 1)
        v = torch.cat([v_pre, v], 1)
    Lk = k.shape[1]

    def split(t):
        return t.view(B, -1, heads, d).transpose(1, 2)

    m = None
    if mask is not None:
        m = mask.expand(B, Lq, Lk)[:, None]  # broadcast over heads
    if causal:
        cm = torch.zeros(Lq, Lk).masked_fill(torch.ones(Lq, Lk, dtype=torch.bool).triu(1), float("-inf"))
        m = cm if m is None else m + cm
    o = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=m, scale=scale)
    out = o.transpose(1, 2).reshape(B, Lq, HD)
    # cross-check with an explicit float64 computation (softmax(q kᵀ·scale + mask) v)
    s = split(q).double() @ split(k).double().transpose(-1, -2) * scale
    if m is not None:
        s = s + m.double()
    e = torch.softmax(s, -1) @ split(v).double()
    e = e.transpose(1, 2).reshape(B, Lq, HD)
    err = (e - out.double()).abs().max().item()
    assert err < 1e-5, err
    return out


def attn_case(name, B, H, d, Lq, Lkv, causal=False, mask_kind=None, pre_len=0, mask_value=-10000.0):
    @case(name)
    def _():
        HD = H * d
        q = randn(B, Lq, HD)
        k = randn(B, Lkv, HD)
        v = randn(B, Lkv, HD)
        t = {"q": q, "k": k, "v": v}
        kp = vp = None
        if pre_len:
            kp = randn(B, pre_len, HD)
            vp = randn(B, pre_len, HD)
            t["k_pre"] = kp
            t["v_pre"] = vp
        Lk = pre_len + Lkv
        mask = None
        mb = mq = 0
        if mask_kind == "prior":
            # PriorTransformer: causal (-10000 above the diagonal) + text key padding (-10000);
            # the text tokens come first, the 4 extra tokens are never padding.
            assert Lq == Lk
            text = Lk - 4
            lens = [12 - 7 * i for i in range(B)]  # short prompts: most text keys are padding
            mask = torch.zeros(B, Lq, Lk)
            for bi, n in enumerate(lens):
                mask[bi, :, n:text] = mask_value
            mask = mask + torch.full((Lq, Lk), -10000.0).triu(1)
            mb, mq = Lq * Lk, Lk
        elif mask_kind == "keypad":
            # key padding broadcast over queries: stored [B, 1, Lk], mask_qstride 0
            mask = torch.zeros(B, 1, Lk)
            for bi in range(B):
                mask[bi, 0, Lk - 2 - 3 * bi:] = mask_value
            mb, mq = Lk, 0
        elif mask_kind == "batch_bcast":
            # one [Lq, Lk] mask for every batch entry: stored [1, Lq, Lk], mask_bstride 0
            mask = randn(1, Lq, Lk)
            mask[0, :, ::5] = mask_value
            mb, mq = 0, Lk
        if mask is not None:
            t["mask"] = mask
        scale = 1.0 / math.sqrt(d)
        t["out"] = attn_ref(q, k, v, H, scale, mask, causal, kp, vp)
        return t, dict(op="attention", heads=H, head_dim=d, causal=int(causal), scale=scale,
                       mask_bstride=mb, mask_qstride=mq, pre_len=pre_len)


attn_case("attn_self_b2_h4_d16_l37", 2, 4, 16, 37, 37)
attn_case("attn_causal_b2_h4_d16_l37", 2, 4, 16, 37, 37, causal=True)            # CLIP text
attn_case("attn_prior_mask_b2_h4_d16_l81", 2, 4, 16, 81, 81, mask_kind="prior")  # prior
attn_case("attn_keypad_b2_h4_d16_lq24_lk13", 2, 4, 16, 24, 13, mask_kind="keypad",
          mask_value=float(torch.finfo(torch.float32).min))                     # MCLIP/XLM-R style
attn_case("attn_added_kv_b2_h4_d16_lq30_pre13", 2, 4, 16, 30, 30, pre_len=13)    # UNet added-KV
attn_case("attn_added_kv_keypad_b2_h2_d32_lq20_pre9", 2, 2, 32, 20, 20, pre_len=9, mask_kind="keypad",
          mask_value=float("-inf"))
attn_case("attn_movq_h1_d64_l81", 1, 1, 64, 81, 81)                              # MoVQ 9x9
attn_case("attn_cross_b2_h3_d8_lq5_lk77", 2, 3, 8, 5, 77)                        # Lq < Lkv, odd d
attn_case("attn_batch_mask_b2_h2_d16_l19", 2, 2, 16, 19, 19, mask_kind="batch_bcast")

# ------------------------------------------------------------------------------------------------
# element-wise


def act_input():
    specials = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 30.0, -30.0, 50.0, -50.0, 88.0, -88.0, 89.0, -89.0,
                             100.0, -100.0, 1e4, -1e4])
    return torch.cat([torch.linspace(-12, 12, 1001), randn(999, scale=4.0), specials])


@case("silu")
def _():
    x = act_input()
    return {"x": x, "out": F.silu(x)}, dict(op="silu")


@case("gelu")
def _():
    x = act_input()
    return {"x": x, "out": F.gelu(x)}, dict(op="gelu")


@case("quick_gelu")
def _():
    x = act_input()
    return {"x": x, "out": x * torch.sigmoid(1.702 * x)}, dict(op="quick_gelu")  # transformers QuickGELU


@case("add")
def _():
    x, y = randn(2, 3, 5, 7), randn(2, 3, 5, 7, scale=10.0)
    return {"x": x, "y": y, "out": x + y}, dict(op="add")


@case("mul")
def _():
    x, y = randn(3, 1001), randn(3, 1001, scale=10.0)
    return {"x": x, "y": y, "out": x * y}, dict(op="mul")


@case("scale_shift")
def _():
    x = randn(2, 4, 9, 13)
    s, sh = 0.18215, -1.5
    return {"x": x, "out": x * s + sh}, dict(op="scale_shift", scale=s, shift=sh)


@case("add_row_vector")
def _():
    x, b = randn(2, 7, 33), randn(33)
    return {"x": x, "b": b, "out": x + b}, dict(op="add_row_vector")


@case("add_channel_vector")
def _():
    x, b = randn(2, 5, 3, 7), randn(2, 5)
    return {"x": x, "b": b, "out": x + b[:, :, None, None]}, dict(op="add_channel_vector")

# ------------------------------------------------------------------------------------------------
# layout


@case("concat_channels_b2")
def _():
    x, y = randn(2, 3, 5, 7), randn(2, 5, 5, 7)
    return {"x": x, "y": y, "out": torch.cat([x, y], 1)}, dict(op="concat_dim1")


@case("concat_tokens_b2")
def _():
    x, y = randn(2, 10, 24), randn(2, 77, 24)  # 2.1 UNet context: 10 image tokens + 77 text tokens
    return {"x": x, "y": y, "out": torch.cat([x, y], 1)}, dict(op="concat_dim1")


@case("transpose_nchw_to_tokens_b2")
def _():
    x = randn(2, 64, 35)  # [B, C, HW] -> [B, HW, C]
    return {"x": x, "out": x.transpose(1, 2).contiguous()}, dict(op="transpose_last2")


@case("transpose_tokens_to_nchw_odd")
def _():
    x = randn(3, 13, 7)
    return {"x": x, "out": x.transpose(1, 2).contiguous()}, dict(op="transpose_last2")

# ------------------------------------------------------------------------------------------------
# resampling


@case("upsample_nearest2x_b2_5x7")
def _():
    x = randn(2, 3, 5, 7)
    return {"x": x, "out": F.interpolate(x, scale_factor=2.0, mode="nearest")}, dict(op="upsample_nearest2x")


@case("upsample_nearest2x_1x1")
def _():
    x = randn(1, 4, 1, 1)
    return {"x": x, "out": F.interpolate(x, scale_factor=2.0, mode="nearest")}, dict(op="upsample_nearest2x")


def resize_case(name, B, C, H, W, Ho, Wo):
    @case(name)
    def _():
        x = randn(B, C, H, W)
        out = F.interpolate(x, size=(Ho, Wo), mode="nearest")
        return {"x": x, "out": out}, dict(op="resize_nearest")


resize_case("resize_nearest_5x7_to_12x20", 2, 3, 5, 7, 12, 20)
resize_case("resize_nearest_16x16_to_6x10", 1, 2, 16, 16, 6, 10)
# torch picks src = min(floor(dst · (float)(in/out)), in-1) in f32; for 26 -> 22 (dst 11) and
# 39 -> 33 (dst 11, 22) that is one row/column lower than exact integer math floor(dst·in/out).
resize_case("resize_nearest_26x39_to_22x33", 1, 2, 26, 39, 22, 33)
resize_case("resize_nearest_64x48_to_8x6", 1, 1, 64, 48, 8, 6)       # inpaint mask -> latent size
resize_case("resize_nearest_4x3_to_16x12", 1, 4, 4, 3, 16, 12)       # SpatialNorm: zq -> feature size
resize_case("resize_nearest_7x5_to_3x11", 2, 1, 7, 5, 3, 11)


@case("avg_pool2x2_b2_8x10")
def _():
    x = randn(2, 3, 8, 10)
    return {"x": x, "out": F.avg_pool2d(x, 2, 2)}, dict(op="avg_pool2x2")


@case("avg_pool2x2_odd_9x13")
def _():
    x = randn(1, 4, 9, 13)
    return {"x": x, "out": F.avg_pool2d(x, 2, 2)}, dict(op="avg_pool2x2")

# ------------------------------------------------------------------------------------------------
# timestep embedding

TS = torch.tensor([0.0, 1.0, 999.0, 500.5, 42.0])


def temb_case(name, dim, flip, shift, max_period=10000):
    @case(name)
    def _():
        out = get_timestep_embedding(TS, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift,
                                     max_period=max_period)
        return {"t": TS.clone(), "out": out}, dict(op="timestep_embedding", dim=dim, flip_sin_to_cos=int(flip),
                                                   downscale_freq_shift=float(shift),
                                                   max_period=float(max_period))


temb_case("timestep_embedding_384", 384, True, 0)     # decoder UNet
temb_case("timestep_embedding_2048", 2048, True, 0)   # prior
temb_case("timestep_embedding_33", 33, True, 0)       # odd dim: zero last column
temb_case("timestep_embedding_64_noflip_shift1", 64, False, 1)

# ------------------------------------------------------------------------------------------------
# f16 / bf16 conversion


def f32_from_bits(bits):
    return torch.from_numpy(np.asarray(bits, dtype=np.uint32).view(np.float32).copy())


def conversion_input(kind):
    """Values that exercise rounding: exact values, midpoints (ties) and midpoints ± 1 f32 ulp
    of a sample of representable values, plus subnormals, overflow, signed zeros, inf and NaN."""
    g = np.random.default_rng(zlib.crc32(kind.encode()))
    if kind == "f16":
        h = np.concatenate([np.arange(0, 0x400, 7), g.integers(0, 0x7bff, 2500), [0x3c00, 0x7bfe, 0x3ff, 0x400]])
        v = torch.from_numpy(h.astype(np.uint16).view(np.float16).astype(np.float64))
        nxt = torch.from_numpy((h + 1).astype(np.uint16).view(np.float16).astype(np.float64))
        extra = [65504.0, 65505.0, 65519.0, 65519.99609375, 65520.0, 65536.0, 1e5, 3.0e38,
                 2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 3 * 2.0 ** -25, 2.0 ** -26, 2.0 ** -14,
                 1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1e-45, 1.2e-38]
    else:
        h = np.concatenate([np.arange(0, 0x80, 3), g.integers(0, 0x7f7f, 2500), [0x3f80, 0x7f7e, 0x7f, 0x80]])
        v = torch.from_numpy((h.astype(np.uint32) << 16).view(np.float32).astype(np.float64))
        nxt = torch.from_numpy(((h + 1).astype(np.uint32) << 16).view(np.float32).astype(np.float64))
        extra = [3.38953139e38, 3.3961e38, 3.4028234e38, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 1e-45, 1.2e-38,
                 65504.0, 1e5]
    mid = ((v + nxt) / 2).float()  # exact in f32: a midpoint needs one bit more than the format
    lo = torch.nextafter(mid, torch.tensor(-math.inf))
    hi = torch.nextafter(mid, torch.tensor(math.inf))
    sub = f32_from_bits(g.integers(1, 0x800000, 200))  # f32 subnormals
    rnd = f32_from_bits(g.integers(0, 0x7f800000, 1000))
    sp = torch.tensor(extra + [0.0, -0.0, math.inf, -math.inf, math.nan], dtype=torch.float32)
    x = torch.cat([v.float(), mid, lo, hi, sub, rnd])
    sign = torch.from_numpy(g.integers(0, 2, x.numel()).astype(np.float32)) * 2 - 1
    return torch.cat([x * sign, sp, -sp[:-1]])  # random signs; the specials with both signs


@case("convert_f32_to_f16")
def _():
    x = conversion_input("f16")
    return {"x": x, "out": x.half()}, dict(op="f32_to_f16")


@case("convert_f32_to_bf16")
def _():
    x = conversion_input("bf16")
    return {"x": x, "out": x.bfloat16()}, dict(op="f32_to_bf16")


@case("convert_f16_to_f32_all")
def _():
    x = torch.from_numpy(np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).copy())
    return {"x": x, "out": x.float()}, dict(op="f16_to_f32")


@case("convert_bf16_to_f32")
def _():
    bits = np.concatenate([np.arange(0, 0x200), np.arange(0x7e00, 0x8200), np.arange(0xfe00, 0x10000),
                           np.random.default_rng(7).integers(0, 0x10000, 2000)]).astype(np.uint16)
    x = torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16)
    return {"x": x, "out": x.float()}, dict(op="bf16_to_f32")


# ------------------------------------------------------------------------------------------------

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors, meta):
    """safetensors.torch.save_file serialises __metadata__ from a hash map, so its key order (and
    the file's bytes) change from run to run. This writer is byte-for-byte deterministic: tensors
    in the given order, data contiguous, metadata keys sorted, header padded to 8 bytes."""
    header = {"__metadata__": dict(sorted(meta.items()))}
    blobs, off = [], 0
    for name, t in tensors.items():
        raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for raw in blobs:
            f.write(raw)
    # read it back with the reference reader
    with safe_open(path, "pt") as f:
        assert f.metadata() == meta
        for name, t in tensors.items():
            u = f.get_tensor(name)
            assert u.dtype == t.dtype and u.shape == t.shape
            assert torch.equal(u.reshape(-1).view(torch.uint8), t.contiguous().reshape(-1).view(torch.uint8)), name


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/data/ops")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = [n for n, _ in CASES]
    assert len(names) == len(set(names)), "duplicate case name"
    for f in os.listdir(args.out):  # stale cases would otherwise fail the C test's listing check
        if f.endswith(".safetensors") and f[:-12] not in names:
            os.remove(os.path.join(args.out, f))
    total = 0
    print(f"{'case':<44} {'op':<20} {'bytes':>9}  tensors")
    for name, fn in CASES:
        seed_for(name)
        tensors, meta = fn()
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        md = {k: meta_str(v) for k, v in meta.items()}
        path = os.path.join(args.out, name + ".safetensors")
        write_safetensors(path, tensors, md)
        size = os.path.getsize(path)
        total += size
        desc = " ".join(f"{k}{list(v.shape)}{'' if v.dtype == torch.float32 else ':' + str(v.dtype)[6:]}"
                        for k, v in tensors.items())
        print(f"{name:<44} {md['op']:<20} {size:>9}  {desc}")
    with open(os.path.join(args.out, "cases.txt"), "w") as f:
        f.write("# Written by tools/reference/gen_ops.py; one case file per line. tests/test_ops.c runs each.\n")
        for n in names:
            f.write(n + ".safetensors\n")
    print(f"{len(CASES)} cases, {total} bytes ({total / 1e6:.2f} MB) in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
