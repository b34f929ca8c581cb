"""Prior-stage benchmark, PyTorch side, and builder of the full-size random-weight 2.2 prior
pipeline (CLIP ViT-bigG-14 text + vision encoders, PriorTransformer) and a 2.2 decoder folder.

  python bench/bench_prior.py make ROOT      # ROOT/prior22 (kandinsky-2-2-prior layout) and
                                             # ROOT/decoder22 (symlinks to ROOT/unet22-f32, ROOT/movq-published)
  python bench/bench_prior.py params ROOT    # parameter counts from the safetensors headers vs targets.md
  python bench/bench_prior.py run PRIOR_DIR [--threads N] [--ops clip_text,clip_vision,prior_step] [--reps 3]
                                           [--autocast]

`run` prints the same JSON lines as bench_prior (C): transformers' CLIPTextModelWithProjection on
batch 2 × 77 tokens, CLIPVisionModelWithProjection on one 224² image, and one diffusers
PriorTransformer step at batch 2 (the classifier-free-guidance batch), all float32 on the CPU.
The inputs are the same as the C side's (same token ids, same attention mask, same
pseudo-random numbers), so the outputs could be compared, although only time is reported.
--autocast runs the timed calls under torch.autocast("cpu", dtype=torch.bfloat16) (label
pytorch-bf16-autocast). Median as the C side takes it (upper middle for an even --reps).
"""
import argparse
import json
import os
import resource
import shutil
import struct
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# Published kandinsky-community/kandinsky-2-2-prior configs (spec §2.3-2.4, §2.6)
TEXT_CONFIG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                   num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5,
                   projection_dim=1280, pad_token_id=1, bos_token_id=0, eos_token_id=2)
VISION_CONFIG = dict(image_size=224, patch_size=14, hidden_size=1664, num_hidden_layers=48, num_attention_heads=16,
                     intermediate_size=8192, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=1280,
                     num_channels=3)
PRIOR_CONFIG = dict(num_attention_heads=32, attention_head_dim=64, num_layers=20, embedding_dim=1280,
                    num_embeddings=77, additional_embeddings=4, dropout=0.0)
UNCLIP_SCHEDULER = {"_class_name": "UnCLIPScheduler", "_diffusers_version": "0.42.1",
                    "beta_schedule": "squaredcos_cap_v2", "clip_sample": True, "clip_sample_range": 10.0,
                    "num_train_timesteps": 1000, "prediction_type": "sample", "variance_type": "fixed_small_log"}
DDPM_SCHEDULER = {"_class_name": "DDPMScheduler", "_diffusers_version": "0.42.1", "beta_end": 0.012,
                  "beta_schedule": "linear", "beta_start": 0.00085, "clip_sample": True, "clip_sample_range": 1.0,
                  "dynamic_thresholding_ratio": 0.995, "num_train_timesteps": 1000, "prediction_type": "epsilon",
                  "rescale_betas_zero_snr": False, "sample_max_value": 1.0, "steps_offset": 1,
                  "thresholding": False, "timestep_spacing": "leading", "trained_betas": None,
                  "variance_type": "fixed_small"}
IMAGE_PROCESSOR = {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
                   "do_normalize": True, "do_rescale": True, "do_resize": True,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor",
                   "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
                   "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 224}}
PRIOR_INDEX = {"_class_name": "KandinskyV22PriorPipeline", "_diffusers_version": "0.42.1",
               "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
               "image_processor": ["transformers", "CLIPImageProcessor"], "prior": ["diffusers", "PriorTransformer"],
               "scheduler": ["diffusers", "UnCLIPScheduler"],
               "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
               "tokenizer": ["transformers", "CLIPTokenizer"]}
DECODER_INDEX = {"_class_name": "KandinskyV22Pipeline", "_diffusers_version": "0.42.1",
                 "movq": ["diffusers", "VQModel"], "scheduler": ["diffusers", "DDPMScheduler"],
                 "unet": ["diffusers", "UNet2DConditionModel"]}
# shared/reference/targets.md
TARGETS = {"text_encoder": 694.7e6, "image_encoder": 1844.9e6, "prior": 1026225920, "unet": 1253057288,
           "movq": 67832495}


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def randomize(m):
    """Random weights of a sane scale: matrices N(0, 1/fan_in), norms 1, biases 0, embeddings N(0, 0.02)."""
    import torch
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("clip_std"):
                p.fill_(1.0)
            elif name.endswith("clip_mean"):
                p.zero_()
            elif "embedding" in name and not name.startswith(("proj_in", "embedding_proj", "time_embedding")) \
                    and "patch_embedding" not in name:
                p.normal_(0, 0.02)  # token / position / class / prd embeddings
            elif p.ndim > 1:
                fan = p.shape[-1] if p.ndim == 2 else p[0].numel()
                p.normal_(0, 1.0 / fan ** 0.5)
            else:
                p.fill_(1.0 if ("norm" in name or "layrnorm" in name) and name.endswith("weight") else 0.0)


def build(cls, *args, dtype=None, **kw):
    import torch
    with torch.device("meta"):
        m = cls(*args, **kw)
    if dtype is not None:
        m = m.to(dtype)
    m = m.to_empty(device="cpu")
    randomize(m)
    return m.eval()


def make(root):
    import torch
    from diffusers import PriorTransformer
    from transformers import (CLIPTextConfig, CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection)
    torch.manual_seed(0)
    prior_dir, dec_dir = os.path.join(root, "prior22"), os.path.join(root, "decoder22")
    done = os.path.join(prior_dir, ".complete")
    if not os.path.exists(done):
        m = build(CLIPTextModelWithProjection, CLIPTextConfig(**TEXT_CONFIG))
        m.save_pretrained(os.path.join(prior_dir, "text_encoder"), safe_serialization=True, max_shard_size="20GB")
        print(f"text_encoder: {sum(p.numel() for p in m.parameters())} parameters (f32)", flush=True)
        del m
        m = build(CLIPVisionModelWithProjection, CLIPVisionConfig(**VISION_CONFIG), dtype=torch.float16)
        m.save_pretrained(os.path.join(prior_dir, "image_encoder"), safe_serialization=True, max_shard_size="20GB")
        print(f"image_encoder: {sum(p.numel() for p in m.parameters())} parameters (f16)", flush=True)
        del m
        m = build(PriorTransformer, **PRIOR_CONFIG)
        m.save_pretrained(os.path.join(prior_dir, "prior"), safe_serialization=True, max_shard_size="20GB")
        print(f"prior: {sum(p.numel() for p in m.parameters())} parameters (f32)", flush=True)
        del m
        tok_src = os.path.join(REPO, "tests", "data", "clip_tokenizer", "pad_eot")
        os.makedirs(os.path.join(prior_dir, "tokenizer"), exist_ok=True)
        for f in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copyfile(os.path.realpath(os.path.join(tok_src, f)), os.path.join(prior_dir, "tokenizer", f))
        write_json(os.path.join(prior_dir, "image_processor", "preprocessor_config.json"), IMAGE_PROCESSOR)
        write_json(os.path.join(prior_dir, "scheduler", "scheduler_config.json"), UNCLIP_SCHEDULER)
        write_json(os.path.join(prior_dir, "model_index.json"), PRIOR_INDEX)
        open(done, "w").close()
    # decoder: the bench U-Net (bench_unet.py make) + MoVQ (bench_movq.py make), linked, not copied
    for sub, src in (("unet", "unet22-f32"), ("movq", "movq-published")):
        os.makedirs(os.path.join(dec_dir, sub), exist_ok=True)
        for f in ("config.json", "diffusion_pytorch_model.safetensors"):
            dst = os.path.join(dec_dir, sub, f)
            if not os.path.lexists(dst):
                os.symlink(os.path.join(os.path.abspath(root), src, f), dst)
    write_json(os.path.join(dec_dir, "scheduler", "scheduler_config.json"), DDPM_SCHEDULER)
    write_json(os.path.join(dec_dir, "model_index.json"), DECODER_INDEX)
    params(root)


def st_params(folder):
    """(parameter count, dtypes) from the safetensors headers of a component folder."""
    n, dtypes = 0, set()
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".safetensors"):
            continue
        with open(os.path.join(folder, f), "rb") as fh:
            hl = struct.unpack("<Q", fh.read(8))[0]
            hdr = json.loads(fh.read(hl))
        for k, v in hdr.items():
            if k == "__metadata__":
                continue
            c = 1
            for s in v["shape"]:
                c *= s
            n += c
            dtypes.add(v["dtype"])
    return n, sorted(dtypes)


def params(root):
    print(f"{'component':14} {'parameters':>15} {'targets.md':>15} {'diff':>10}  dtype")
    for d, comp in (("prior22", "text_encoder"), ("prior22", "image_encoder"), ("prior22", "prior"),
                    ("decoder22", "unet"), ("decoder22", "movq")):
        n, dt = st_params(os.path.join(root, d, comp))
        t = TARGETS[comp]
        print(f"{comp:14} {n:>15,} {t:>15,.0f} {n - t:>+10,.0f}  {','.join(dt)}")


# ---- inputs shared with bench_prior.c -----------------------------------------------------------

def lcg_floats(n, seed, scale):
    """The C side's random_floats: seed = seed·1664525 + 1013904223 (mod 2^32), value from bits 8..23."""
    import numpy as np
    out = np.empty(n, dtype=np.float32)
    s = seed
    # vectorised in blocks via the LCG's affine jump would be faster; n <= 200k here
    for i in range(n):
        s = (s * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = scale * (((s >> 8) & 0xFFFF) / 32768.0 - 1.0)
    return out


def token_ids(batch=2, seq=77):
    """Row b: <start>, n_b word ids, <end>, then <end> padding (pad_eot), n = 12, 30, ...; mask 1 on
    <start>..<end>."""
    ids, mask = [], []
    for b in range(batch):
        n = 12 + 18 * b
        row = [49406] + [(t * 7919 + b * 104729) % 49000 + 100 for t in range(1, n + 1)] + [49407]
        row = row[:seq]
        mask.append([1] * len(row) + [0] * (seq - len(row)))
        ids.append(row + [49407] * (seq - len(row)))
    return ids, mask


def run(a):
    import torch
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_torch import c_median, impl_label, precision
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}, "
          f"autocast bf16 {a.autocast}", file=sys.stderr)
    ops = a.ops.split(",")

    def timeit(name, size, batch, fn):
        times = []
        with torch.inference_mode(), precision(a.autocast):
            for r in range(a.reps + 1):  # r = 0: warm-up
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                if r:
                    times.append(dt)
                print(f"  {name} rep {r - 1}: {dt:.3f} s", file=sys.stderr)
        print(json.dumps({"impl": impl_label(a.autocast), "op": name, "size": size, "batch": batch, "threads": a.threads,
                          "median_ms": round(c_median(times) * 1e3, 1), "min_ms": round(min(times) * 1e3, 1),
                          "load_s": round(load_s, 2),
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}),
              flush=True)

    if "clip_text" in ops:
        from transformers import CLIPTextModelWithProjection
        t0 = time.perf_counter()
        m = CLIPTextModelWithProjection.from_pretrained(os.path.join(a.dir, "text_encoder"),
                                                        dtype=torch.float32).eval()
        load_s = time.perf_counter() - t0
        ids, _ = token_ids(2, m.config.max_position_embeddings)
        ids = torch.tensor(ids)
        timeit("clip_text", ids.shape[1], 2, lambda: m(input_ids=ids))
        del m
    if "clip_vision" in ops:
        from transformers import CLIPVisionModelWithProjection
        t0 = time.perf_counter()
        m = CLIPVisionModelWithProjection.from_pretrained(os.path.join(a.dir, "image_encoder"),
                                                          dtype=torch.float32).eval()
        load_s = time.perf_counter() - t0
        S = m.config.image_size
        px = torch.from_numpy(lcg_floats(3 * S * S, 11, 1.0)).reshape(1, 3, S, S)
        timeit("clip_vision", S, 1, lambda: m(pixel_values=px))
        del m
    if "prior_step" in ops:
        from diffusers import PriorTransformer
        t0 = time.perf_counter()
        m = PriorTransformer.from_pretrained(os.path.join(a.dir, "prior"), dtype=torch.float32).eval()
        load_s = time.perf_counter() - t0
        E, L, B = m.config.embedding_dim, m.config.num_embeddings, 2
        x = torch.from_numpy(lcg_floats(B * E, 1, 1.0)).reshape(B, E)
        proj = torch.from_numpy(lcg_floats(B * E, 3, 1.0)).reshape(B, E)
        hid = torch.from_numpy(lcg_floats(B * L * E, 5, 1.0)).reshape(B, L, E)
        _, mask = token_ids(B, L)
        mask = torch.tensor(mask, dtype=torch.bool)  # the pipeline passes text_mask.bool()
        t = torch.tensor(500)
        timeit("prior_step", L + m.config.additional_embeddings, B,
               lambda: m(x, timestep=t, proj_embedding=proj, encoder_hidden_states=hid, attention_mask=mask))
        del m


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "params", "run"])
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", default="clip_text,clip_vision,prior_step")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--autocast", action="store_true",
                    help='run under torch.autocast("cpu", dtype=torch.bfloat16), label pytorch-bf16-autocast')
    a = ap.parse_args()
    {"make": lambda: make(a.dir), "params": lambda: params(a.dir), "run": lambda: run(a)}[a.cmd]()
