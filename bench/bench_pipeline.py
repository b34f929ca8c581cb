"""Full Kandinsky 2.2 text-to-image run, PyTorch side: diffusers KandinskyV22PriorPipeline +
KandinskyV22Pipeline (float32, CPU) with ONE torch.Generator("cpu").manual_seed(seed), as
KandinskyV22CombinedPipeline runs them, timed by stage like bench_pipeline (C).

  python bench/bench_pipeline.py PRIOR_DIR DECODER_DIR [--threads N] [--mode split|both] [--size 256]
         [--steps 10] [--prior-steps 10] [--guidance 4] [--prior-guidance 4] [--seed 42] [--prompt TEXT]
         [--out image.png] [--sampler NAME]

--mode split (default): load the prior pipeline, run it, delete it + gc, then load and run the
decoder pipeline (peak memory ≈ the larger pipeline; compare with bench_pipeline --low-memory 1).
--mode both: load both pipelines first, then run (≈ 20 GB in float32 at full size).
Stages (same boundaries as the C side; step ends come from callback_on_step_end):
  load      from_pretrained of both pipelines (summed; in split mode the decoder's happens between)
  prior     prior pipeline call start → last prior step (tokenize, CLIP text, prior steps)
  decoder   last prior step → last decoder step, minus the decoder load in split mode (zero-image
            CLIP embedding, post-processing, latent init, the U-Net steps)
  decode    last decoder step → decoder pipeline returns (MoVQ decode, conversion to PIL)
  generate  prior + decoder + decode; total = load + generate (+ del/gc in split mode)
"""
import argparse
import gc
import json
import resource
import statistics
import sys
import time

import torch


def rss_mb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("prior_dir")
    ap.add_argument("decoder_dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", default="split", choices=["split", "both"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--prior-steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--prior-guidance", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prompt", default="a red cat sitting on a chair, oil painting")
    ap.add_argument("--out")
    ap.add_argument("--sampler", help="decoder sampler as kandinsky.c names it (default: the decoder's DDPM)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    from diffusers import KandinskyV22Pipeline, KandinskyV22PriorPipeline
    from diffusers.utils import logging as dlog
    dlog.disable_progress_bar()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, mode {a.mode}", file=sys.stderr)

    stamps = {"prior": [], "decoder": []}

    def cb(name):
        def f(pipe, i, t, kw):
            stamps[name].append(time.perf_counter())
            print(f"  {stamps[name][-1] - g0:8.2f} s  {name} {i + 1}  RSS peak {rss_mb()} MB", file=sys.stderr)
            return kw
        return f

    def load_prior():
        return KandinskyV22PriorPipeline.from_pretrained(a.prior_dir, dtype=torch.float32)

    def load_decoder():
        pipe = KandinskyV22Pipeline.from_pretrained(a.decoder_dir, dtype=torch.float32)
        if a.sampler:  # Class.from_config(pipe.scheduler.config, **overrides), as tests/data/samplers
            from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                                   EulerDiscreteScheduler, HeunDiscreteScheduler, UniPCMultistepScheduler)
            table = {"ddim": (DDIMScheduler, {}),
                     "dpm++2m": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2)),
                     "dpm++2m-karras": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2,
                                                                          use_karras_sigmas=True)),
                     "dpm++3m": (DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=3)),
                     "unipc": (UniPCMultistepScheduler, {}), "euler": (EulerDiscreteScheduler, {}),
                     "euler-a": (EulerAncestralDiscreteScheduler, {}), "heun": (HeunDiscreteScheduler, {})}
            cls, over = table[a.sampler]
            pipe.scheduler = cls.from_config(pipe.scheduler.config, **over)
        return pipe

    t0 = time.perf_counter()
    prior = load_prior()
    load_s = time.perf_counter() - t0
    dec = None
    if a.mode == "both":
        t0 = time.perf_counter()
        dec = load_decoder()
        load_s += time.perf_counter() - t0
    print(f"loaded in {load_s:.2f} s, RSS peak {rss_mb()} MB", file=sys.stderr)
    for p in (prior, dec):
        if p is not None:
            p.set_progress_bar_config(disable=True)

    def trace(pipe):  # stderr only: when each network's calls start and end (first calls pay page faults)
        for name in ("text_encoder", "image_encoder", "prior", "unet"):
            m = getattr(pipe, name, None)
            if m is None:
                continue
            m.register_forward_pre_hook(lambda mod, args, n=name: print(
                f"  {time.perf_counter() - g0:8.2f} s  {n} call", file=sys.stderr))
            m.register_forward_hook(lambda mod, args, out, n=name: print(
                f"  {time.perf_counter() - g0:8.2f} s  {n} done", file=sys.stderr))

    g0 = time.perf_counter()
    for p in (prior, dec):
        if p is not None:
            trace(p)
    g = torch.Generator("cpu").manual_seed(a.seed)
    with torch.inference_mode():
        g0 = time.perf_counter()
        emb, neg = prior(a.prompt, num_inference_steps=a.prior_steps, guidance_scale=a.prior_guidance, generator=g,
                         callback_on_step_end=cb("prior"), return_dict=False)
        p_end = time.perf_counter()
        switch_s, dec_load_s = 0.0, 0.0
        if a.mode == "split":
            t0 = time.perf_counter()
            del prior
            gc.collect()
            switch_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            dec = load_decoder()
            dec.set_progress_bar_config(disable=True)
            trace(dec)
            dec_load_s = time.perf_counter() - t0
            print(f"  {p_end - g0:8.2f} s  prior pipeline returned; deleted in {switch_s:.2f} s, decoder loaded in "
                  f"{dec_load_s:.2f} s, RSS peak {rss_mb()} MB", file=sys.stderr)
        d0 = time.perf_counter()
        img = dec(image_embeds=emb, negative_image_embeds=neg, width=a.size, height=a.size,
                  num_inference_steps=a.steps, guidance_scale=a.guidance, generator=g,
                  callback_on_step_end=cb("decoder"), output_type="pil").images[0]
        d1 = time.perf_counter()
    last_prior, last_dec = stamps["prior"][-1], stamps["decoder"][-1]
    prior_s = last_prior - g0
    decoder_s = (p_end - last_prior) + (last_dec - d0)
    decode_s = d1 - last_dec
    med = lambda t: statistics.median([b - a_ for a_, b in zip(t, t[1:])]) if len(t) > 1 else 0.0
    rows = [("load", load_s + dec_load_s), ("prior", prior_s), ("decoder", decoder_s), ("decode", decode_s),
            ("generate", prior_s + decoder_s + decode_s), ("prior_step", med(stamps["prior"])),
            ("decoder_step", med(stamps["decoder"])), ("total", load_s + (d1 - g0))]
    for op, s in rows:
        print(json.dumps({"impl": "pytorch", "op": op, "size": a.size, "median_ms": round(s * 1e3, 1)}))
    print(json.dumps({"impl": "pytorch", "mode": a.mode, "threads": a.threads, "width": img.width,
                      "height": img.height, "steps": a.steps, "prior_steps": a.prior_steps, "seed": a.seed,
                      "peak_rss_mb": rss_mb()}), flush=True)
    if a.out:
        img.save(a.out)


if __name__ == "__main__":
    main()
