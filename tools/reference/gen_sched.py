"""Reference data for the schedulers (src/sched) and the torch-compatible generator (src/core/rng.c).

Writes
  tests/data/rng.safetensors          torch.Generator("cpu").manual_seed(s) followed by sequences of
                                      torch.randn / torch.rand draws (float32), per seed
  tests/data/sched/<config>.safetensors
      __metadata__: "config" = the scheduler_config.json text (as a Hub file would hold it, unknown
                    keys included), "eta"/"use_clipped" for DDIM, "cases"/"loops" (descriptions)
      betas, alphas_cumprod            float32 [T]
      N<n>.timesteps                   int64, scheduler.timesteps after set_timesteps(n), n <= 100
      N<n>.hash                        int64 [2] for longer lists: (2·len + valid, hash) as below
                                       (neither is present when diffusers refuses n)
      model_output, sample             the step inputs shared by all cases
      case<k>.prev_sample, case<k>.pred_original   step(model_output, t, sample, generator=
                                       Generator().manual_seed(seed)) for "cases" k:n:i:t:seed
                                       (t = timesteps[i] after set_timesteps(n))
      add_noise.original, add_noise.noise, add_noise.t<t>   add_noise at several t
      loop<k>.*                        a whole denoising loop with one generator: initial latents by
                                       randn_tensor, a fixed linear "model" (0.9 x + 0.1 base), the
                                       output after step i as loop<k>.x<i> (every step of loop0 on
                                       latents, else the last); img2img loops start from add_noise
                                       (x_init) at timesteps[t_start]
  tests/data/sched/timesteps_hash.safetensors
      <spacing>.T<T>  int64 [T, 2]: for every n in 1..T: (2·len + valid, hash) of diffusers'
                      set_timesteps(n) list (0, 0 when diffusers raises), valid = all entries in
                      [0, T)
  tests/data/sched/k21_img2img.safetensors    KandinskyImg2ImgPipeline.add_noise and get_timesteps

Usage: python tools/reference/gen_sched.py [--out tests/data]
"""
import argparse
import json
import os

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UnCLIPScheduler
from diffusers.pipelines.kandinsky.pipeline_kandinsky_img2img import KandinskyImg2ImgPipeline
from diffusers.utils.torch_utils import randn_tensor
from safetensors import safe_open

ST_DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def write_safetensors(path, tensors, meta):
    """Deterministic writer (safetensors.torch.save_file orders __metadata__ from a hash map):
    tensors in insertion order, data contiguous, metadata keys sorted, header padded to 8."""
    header = {"__metadata__": dict(sorted(meta.items()))}
    blobs, off = [], 0
    for name, t in tensors.items():
        t = t.contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
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
    with safe_open(path, "pt") as f:  # read back with the reference reader
        assert f.metadata() == meta
        for name, t in tensors.items():
            assert torch.equal(f.get_tensor(name), t), name


def u64_as_i64(v):
    return v - (1 << 64) if v >= (1 << 63) else v


# ------------------------------------------------------------------------------------------------
# RNG

RNG_SEEDS = [0, 1, 42, 12345, 2**32 + 5, 2**63 - 1, 2**64 - 1]
# (kind, numel): kind 0 = randn, 1 = rand. Covers the scalar path (< 16, with its cached second
# Box-Muller value carried across calls), the vectorised path with and without a tail, and the
# engine's 624-word regeneration inside a call.
RNG_OPS = [(0, 1), (0, 2), (0, 15), (0, 16), (0, 17), (0, 1), (0, 31), (0, 32), (1, 7), (0, 3), (0, 100),
           (0, 1280), (0, 5), (1, 1), (0, 2)]
RNG_BIG = [(0, 2 * 4 * 64 * 64)]  # one latent-sized draw [2,4,64,64], for the first seed only
HASH_DRAWS = [(3, (1 << 20) + 3), (9, 1 << 18)]  # (seed, n): FNV-1a 64 of the bytes of one randn


def fnv1a64(b):
    h = 0xcbf29ce484222325
    arr = np.frombuffer(b, dtype=np.uint8)
    for x in arr.tolist():
        h ^= x
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def gen_rng(out):
    tensors, meta = {}, {}
    for k, seed in enumerate(RNG_SEEDS):
        ops = RNG_OPS + (RNG_BIG if k == 0 else [])
        g = torch.Generator("cpu").manual_seed(seed)
        vals = []
        for kind, n in ops:
            f = torch.randn if kind == 0 else torch.rand
            vals.append(f(n, generator=g, dtype=torch.float32))
        tensors[f"s{k}.seed"] = torch.tensor([u64_as_i64(seed)], dtype=torch.int64)
        tensors[f"s{k}.ops"] = torch.tensor(ops, dtype=torch.int64)
        tensors[f"s{k}.values"] = torch.cat(vals)
    # shape does not matter, only numel: [2,4,64,64] in one call equals the flat draw
    g1 = torch.Generator("cpu").manual_seed(RNG_SEEDS[0])
    g2 = torch.Generator("cpu").manual_seed(RNG_SEEDS[0])
    assert torch.equal(torch.randn((2, 4, 64, 64), generator=g1).reshape(-1), torch.randn(32768, generator=g2))
    hashes = []
    for seed, n in HASH_DRAWS:
        g = torch.Generator("cpu").manual_seed(seed)
        x = torch.randn(n, generator=g, dtype=torch.float32)
        hashes.append([seed, n, u64_as_i64(fnv1a64(x.numpy().tobytes()))])
    tensors["hash"] = torch.tensor(hashes, dtype=torch.int64)
    meta["n_seeds"] = str(len(RNG_SEEDS))
    meta["torch"] = torch.__version__
    meta["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    write_safetensors(os.path.join(out, "rng.safetensors"), tensors, meta)


# ------------------------------------------------------------------------------------------------
# schedulers

K21_BETAS = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012)

# name: (class, config dict as a Hub file would hold it, step kwargs, latent shape, cases)
# cases: (n, step index i) — the seed is derived from the case index
LAT = (2, 4, 8, 8)
PRIOR = (2, 1280)
CONFIGS = {
    # kandinsky-2-1 scheduler/ (spec 2.6)
    "k21_ddim": (DDIMScheduler, dict(_class_name="DDIMScheduler", _diffusers_version="0.16.0.dev0", **K21_BETAS,
                                     clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                                     prediction_type="epsilon", thresholding=False, trained_betas=None),
                 {}, LAT),
    # the same with eta 0.5 (stochastic DDIM)
    "k21_ddim_eta05": (DDIMScheduler, dict(_class_name="DDIMScheduler", **K21_BETAS, clip_sample=False,
                                           set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon"),
                       dict(eta=0.5), LAT),
    # kandinsky-2-1 ddpm_scheduler/: learned_range + dynamic thresholding
    "k21_ddpm": (DDPMScheduler, dict(_class_name="DDPMScheduler", _diffusers_version="0.16.0.dev0", **K21_BETAS,
                                     clip_sample=False, clip_sample_range=2.0, thresholding=True,
                                     dynamic_thresholding_ratio=0.995, sample_max_value=2.0,
                                     variance_type="learned_range", prediction_type="epsilon", steps_offset=1,
                                     trained_betas=None),
                 {}, LAT),
    # kandinsky-2-2-decoder scheduler/, with clip_sample true (main) and false (first upload);
    # both carry DDIM's set_alpha_to_one, which DDPMScheduler does not have (trap 5)
    "k22_ddpm_clip": (DDPMScheduler, dict(_class_name="DDPMScheduler", _diffusers_version="0.18.0.dev0", **K21_BETAS,
                                          clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=False,
                                          steps_offset=1, prediction_type="epsilon", thresholding=False,
                                          variance_type="fixed_small", timestep_spacing="leading",
                                          trained_betas=None),
                      {}, LAT),
    "k22_ddpm_noclip": (DDPMScheduler, dict(_class_name="DDPMScheduler", **K21_BETAS, clip_sample=False,
                                            set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
                                            thresholding=False, trained_betas=None),
                        {}, LAT),
    # kandinsky-2-1-prior / 2-2-prior scheduler/
    "prior_unclip": (UnCLIPScheduler, dict(_class_name="UnCLIPScheduler", _diffusers_version="0.17.0.dev0",
                                           clip_sample=True, clip_sample_range=10.0, num_train_timesteps=1000,
                                           prediction_type="sample", variance_type="fixed_small_log"),
                     {}, PRIOR),
    # other spacings, prediction types and variance types
    "ddim_trailing_v": (DDIMScheduler, dict(_class_name="DDIMScheduler", num_train_timesteps=1000,
                                            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                            clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing",
                                            prediction_type="v_prediction", some_future_key=[1, 2]),
                        {}, LAT),
    "ddim_linspace_thresh": (DDIMScheduler, dict(_class_name="DDIMScheduler", num_train_timesteps=1000,
                                                 beta_schedule="squaredcos_cap_v2", timestep_spacing="linspace",
                                                 prediction_type="sample", thresholding=True,
                                                 dynamic_thresholding_ratio=0.9, sample_max_value=1.5),
                             dict(eta=0.8, use_clipped_model_output=True), LAT),
    "ddpm_linspace_sample": (DDPMScheduler, dict(_class_name="DDPMScheduler", num_train_timesteps=1000,
                                                 beta_schedule="squaredcos_cap_v2", timestep_spacing="linspace",
                                                 prediction_type="sample", variance_type="fixed_small_log",
                                                 clip_sample=True, clip_sample_range=1.5),
                             {}, LAT),
    "ddpm_trailing_learned_v": (DDPMScheduler, dict(_class_name="DDPMScheduler", num_train_timesteps=1000,
                                                    beta_schedule="scaled_linear", beta_start=0.00085,
                                                    beta_end=0.012, timestep_spacing="trailing",
                                                    prediction_type="v_prediction", variance_type="learned",
                                                    clip_sample=False),
                                {}, LAT),
    "ddpm_fixed_large_t500": (DDPMScheduler, dict(_class_name="DDPMScheduler", num_train_timesteps=500,
                                                  beta_start=0.0002, beta_end=0.03, variance_type="fixed_large",
                                                  clip_sample=False, steps_offset=0),
                              {}, LAT),
    "unclip_learned_eps": (UnCLIPScheduler, dict(_class_name="UnCLIPScheduler", num_train_timesteps=1000,
                                                 clip_sample=False, prediction_type="epsilon",
                                                 variance_type="learned_range"),
                           {}, (2, 96)),
}
STEP_COUNTS = [1, 2, 7, 25, 50, 100, 1000]
CASES = [(1, 0), (2, 1), (7, 3), (25, 0), (25, 24), (1000, 999)]
UNCLIP_CASES = CASES[:5] + [(1000, 998), (1000, 999)]  # prev == t - 1 takes the precomputed beta
PRIOR_CASES = [(2, 1), (25, 0), (25, 24), (1000, 998)]
ADD_NOISE_T = [0, 499]


def make_scheduler(cls, cfg):
    s = cls.from_config(dict(cfg))  # from_config tolerates unknown keys as loading a file does
    return s


def learned(cls, cfg):
    return cfg.get("variance_type") in (("learned", "learned_range") if cls is DDPMScheduler else ("learned_range",))


def model_output_for(cls, cfg, pred, var_base):
    """The 'model': prediction channels, plus the variance channels when the scheduler splits them."""
    if not learned(cls, cfg):
        return pred
    return torch.cat([pred, var_base], dim=1)


def make_inputs(cls, cfg, shape, g):
    sample = torch.randn(shape, generator=g)
    pred = torch.randn(shape, generator=g) * 1.5
    var = None
    if learned(cls, cfg):
        if cfg.get("variance_type") == "learned":  # a variance itself: must be positive
            var = torch.rand(shape, generator=g) * 0.02 + 1e-4
        else:  # learned_range: the model's v in [-1, 1]
            var = torch.rand(shape, generator=g) * 2 - 1
    return sample, pred, var


def do_step(s, cls, mo, t, x, gen, step_kw, prev=None):
    if cls is UnCLIPScheduler:
        return s.step(mo, t, x, prev_timestep=prev, generator=gen, return_dict=False)
    return s.step(mo, t, x, generator=gen, return_dict=False, **step_kw)


def unclip_prev(ts, i):
    return ts[i + 1] if i + 1 < len(ts) else None  # as the prior pipeline passes it


def gen_config(out, name, spec):
    cls, cfg, step_kw, shape = spec
    s = make_scheduler(cls, cfg)
    T = s.config.num_train_timesteps
    tensors = {"betas": s.betas.clone(), "alphas_cumprod": s.alphas_cumprod.clone()}
    meta = {"config": json.dumps(cfg, indent=2)}
    if step_kw:
        meta["eta"] = repr(float(step_kw.get("eta", 0.0)))
        meta["use_clipped"] = "1" if step_kw.get("use_clipped_model_output") else "0"
    valid_n = []
    for n in STEP_COUNTS:
        try:
            s.set_timesteps(n)
        except (ValueError, ZeroDivisionError):
            continue  # the C side must refuse it as well
        ts = s.timesteps.clone().to(torch.int64)
        if n <= 100:
            tensors[f"N{n}.timesteps"] = ts
        else:  # long lists as (2·len + valid, hash), see timesteps_hash below
            ok = int(int(ts.min()) >= 0 and int(ts.max()) < T)
            tensors[f"N{n}.hash"] = torch.tensor([2 * len(ts) + ok, ts_hash(ts.tolist())], dtype=torch.int64)
        if int(ts.min()) >= 0 and int(ts.max()) < T:
            valid_n.append(n)
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    sample, pred, var = make_inputs(cls, cfg, shape, g)
    mo = model_output_for(cls, cfg, pred, var)
    tensors["sample"] = sample
    tensors["model_output"] = mo
    cases = []
    big = len(shape) == 2 and shape[1] > 256
    case_list = PRIOR_CASES if big else UNCLIP_CASES if cls is UnCLIPScheduler else CASES
    for k, (n, i) in enumerate(case_list):
        if n not in valid_n:
            continue
        s.set_timesteps(n)
        ts = s.timesteps.tolist()
        if i >= len(ts):
            continue
        seed = 1000 + k
        gen = torch.Generator().manual_seed(seed)
        prev, x0 = do_step(s, cls, mo, ts[i], sample, gen, step_kw,
                           prev=unclip_prev(ts, i) if cls is UnCLIPScheduler else None)
        tensors[f"case{k}.prev_sample"] = prev
        tensors[f"case{k}.pred_original"] = x0
        cases.append(f"{k}:{n}:{i}:{int(ts[i])}:{seed}")
    meta["cases"] = ",".join(cases)
    # add_noise
    orig = torch.randn(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    tensors["add_noise.original"] = orig
    tensors["add_noise.noise"] = noise
    for t in ADD_NOISE_T + [T - 1]:
        tensors[f"add_noise.t{t}"] = s.add_noise(orig, noise, torch.tensor([t] * shape[0]))
    # whole loops with one generator
    loops = []
    base = torch.randn(shape, generator=g)
    tensors["loop.base"] = base
    loop_specs = [(7, None), (25, None)] if big else [(7, None), (25, 0.3)]
    for k, (n, strength) in enumerate(loop_specs):
        if n not in valid_n:
            continue
        s.set_timesteps(n)
        seed = 77 + k
        gen = torch.Generator().manual_seed(seed)
        if strength is None:
            ts = s.timesteps
            x = randn_tensor(shape, generator=gen, dtype=torch.float32)  # initial latents
        else:  # the 2.2 img2img start: noise the base at timesteps[t_start]
            init_t = min(int(n * strength), n)
            t_start = max(n - init_t, 0)
            ts = s.timesteps[t_start:]
            noise0 = randn_tensor(shape, generator=gen, dtype=torch.float32)
            x = s.add_noise(base, noise0, ts[:1].repeat(shape[0]))
        if strength is not None:
            tensors[f"loop{k}.x_init"] = x.clone()
        tsl = ts.tolist()
        for i, t in enumerate(ts):
            p = x * 0.9 + base * 0.1
            mo_i = model_output_for(cls, cfg, p, var)
            x = do_step(s, cls, mo_i, t, x, gen, step_kw,
                        prev=unclip_prev(tsl, i) if cls is UnCLIPScheduler else None)[0]
            if (k == 0 and not big) or i == len(tsl) - 1:  # every step of the first loop, else the last
                tensors[f"loop{k}.x{i}"] = x.clone()
        loops.append(f"{k}:{n}:{seed}:{'none' if strength is None else repr(strength)}:{len(tsl)}")
    meta["loops"] = ",".join(loops)
    write_safetensors(os.path.join(out, "sched", f"{name}.safetensors"), tensors, meta)


def ts_hash(ts):
    h = len(ts)
    for x in ts:
        h = (h * 1000003 + int(x) + 1) & 0xFFFFFFFFFFFFFFFF
    return u64_as_i64(h)


def gen_timestep_hashes(out):
    """Every n in 1..T for each spacing rule, compared through a hash (all lists would be MBs)."""
    tensors = {}
    for T in (1000, 100):
        variants = {
            "leading_off1": (DDPMScheduler, dict(num_train_timesteps=T, steps_offset=1)),
            "leading_off0": (DDIMScheduler, dict(num_train_timesteps=T, steps_offset=0)),
            "trailing": (DDPMScheduler, dict(num_train_timesteps=T, timestep_spacing="trailing")),
            "linspace": (DDIMScheduler, dict(num_train_timesteps=T, timestep_spacing="linspace")),
            "unclip": (UnCLIPScheduler, dict(num_train_timesteps=T)),
        }
        for vname, (cls, cfg) in variants.items():
            s = cls.from_config(cfg)
            rows = []
            for n in range(1, T + 1):
                try:
                    s.set_timesteps(n)
                except (ValueError, ZeroDivisionError):
                    rows.append([0, 0])
                    continue
                ts = s.timesteps.tolist()
                ok = int(all(0 <= x < T for x in ts))
                rows.append([2 * len(ts) + ok, ts_hash(ts)])
            tensors[f"{vname}.T{T}"] = torch.tensor(rows, dtype=torch.int64)
    write_safetensors(os.path.join(out, "sched", "timesteps_hash.safetensors"), tensors, {})


def gen_k21_img2img(out):
    """KandinskyImg2ImgPipeline.add_noise (its own linear 0.0001..0.02 schedule at
    t = int(1000 * strength) - 2) and get_timesteps (shared by all Kandinsky img2img pipelines)."""
    g = torch.Generator().manual_seed(5)
    orig = torch.randn(LAT, generator=g)
    noise = torch.randn(LAT, generator=g)
    tensors = {"original": orig, "noise": noise}
    strengths = [0.3, 0.5, 0.999, 1.0, 0.002, 0.05]
    meta = {"strengths": ",".join(repr(x) for x in strengths)}
    for k, st in enumerate(strengths):
        t = int(1000 * st) - 2
        if t < 0:
            continue
        tensors[f"s{k}.t"] = torch.tensor([t], dtype=torch.int64)
        tensors[f"s{k}.noised"] = KandinskyImg2ImgPipeline.add_noise(None, orig, noise, torch.tensor([t] * LAT[0]))

    class Fake:  # get_timesteps only reads self.scheduler.timesteps
        pass

    rows = []
    s = DDPMScheduler.from_config(dict(K21_BETAS, steps_offset=1))
    for n in (1, 7, 25, 50, 100):
        s.set_timesteps(n)
        fake = Fake()
        fake.scheduler = s
        for k, st in enumerate(strengths):
            ts, count = KandinskyImg2ImgPipeline.get_timesteps(fake, n, st, "cpu")
            rows.append([n, k, len(s.timesteps) - len(ts), count])
    tensors["get_timesteps"] = torch.tensor(rows, dtype=torch.int64)
    write_safetensors(os.path.join(out, "sched", "k21_img2img.safetensors"), tensors, meta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(os.path.join(args.out, "sched"), exist_ok=True)
    gen_rng(args.out)
    for name, spec in CONFIGS.items():
        gen_config(args.out, name, spec)
    gen_timestep_hashes(args.out)
    gen_k21_img2img(args.out)


if __name__ == "__main__":
    main()
