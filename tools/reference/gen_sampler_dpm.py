"""Reference data for the DPM-Solver++ samplers (src/sched/dpmsolver.c): diffusers'
DPMSolverMultistepScheduler.from_config(cfg, algorithm_type=..., solver_order=..., use_karras_sigmas=...)
for the four sampler names, over Kandinsky's own scheduler configs and variations.

Writes tests/data/samplers/dpm/<config>.safetensors
  __metadata__: "config"   the scheduler_config.json text (any _class_name, unknown keys included)
                "samplers" the sampler names, in the order of the s<a> prefixes
                "steps"    the n of set_timesteps(n) covered
                "shape"    B,C,inner of the latents; "model_channels" (2·C with a learned variance)
                "records"  n:k,k,... the steps whose output a loop of n steps records
                "img2img"  n:t_start of the img2img loop, "add_noise" n:i,i,... its indices
  s<a>.N<n>.timesteps   int64, scheduler.timesteps after set_timesteps(n)
  s<a>.N<n>.sigmas      float32, scheduler.sigmas (num_timesteps + 1)
  base                  the fixed part of the "model": model_output = 0.9·x + 0.1·base
                        (+ the channels of var when the config has a learned variance: dropped)
  var                   the variance half (learned configs only)
  s<a>.L<n>.x_init      initial latents: randn_tensor(shape, generator=manual_seed(seed))
  s<a>.L<n>.x<k>        x after step k of the loop over all timesteps, the generator passed to step()
                        (seed = 100·a + n), with set_begin_index(0)
  s<a>.I.x_init         img2img: add_noise(base, randn (generator seed 900 + a), timesteps[t_start])
  s<a>.I.x<k>           then steps t_start.. with that generator (set_begin_index(t_start))
  add.original, add.noise, s<a>.A.i<i>   add_noise at timesteps[i] after set_timesteps(25) (the
                        Kandinsky pipelines' call: index_for_timestep, begin_index unset)

Usage: python tools/reference/gen_sampler_dpm.py [--out tests/data]
"""
import argparse
import json
import os

import torch
from diffusers import DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

from gen_sched import write_safetensors

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

SAMPLERS = [
    ("dpm++2m", dict(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=False)),
    ("dpm++2m-karras", dict(algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True)),
    ("dpm++3m", dict(algorithm_type="dpmsolver++", solver_order=3, use_karras_sigmas=False)),
    ("dpm++sde", dict(algorithm_type="sde-dpmsolver++", solver_order=2, use_karras_sigmas=False)),
]
STEPS = [1, 2, 10, 25, 50]
LAT = (2, 4, 8)


def load(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return json.load(f)


def configs():
    k22 = load("tests/data/pipeline22/decoder/scheduler/scheduler_config.json")
    k21 = load("tests/data/pipeline21/decoder/scheduler/scheduler_config.json")
    prior = load("tests/data/pipeline22/prior/scheduler/scheduler_config.json")

    def v(**kw):
        return dict(k22, **kw)

    return {
        # the Kandinsky configs as they are (DDPM / DDIM leading + steps_offset 1; UnCLIP sample + cosine)
        "k22": (k22, LAT, STEPS),
        "k21": (k21, LAT, STEPS),
        "prior": (prior, (2, 16, 1), STEPS),
        # DPMSolverMultistepScheduler's own defaults (linspace spacing) on the SD schedule
        "sl_default": (dict(_class_name="DPMSolverMultistepScheduler", beta_schedule="scaled_linear",
                            beta_start=0.00085, beta_end=0.012), LAT, STEPS),
        # n = 61: numpy's arange yields 62 entries ending in -1 (kept by diffusers)
        "trailing": (v(timestep_spacing="trailing"), LAT, STEPS + [61]),
        "linspace": (v(timestep_spacing="linspace"), LAT, STEPS),
        "sigma_min": (v(final_sigmas_type="sigma_min"), LAT, STEPS),
        "no_lof": (v(lower_order_final=False), LAT, STEPS),
        "euler_final": (v(euler_at_final=True, final_sigmas_type="sigma_min"), LAT, STEPS),
        "heun": (v(solver_type="heun"), LAT, STEPS),
        "thresh": (v(thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5), LAT, STEPS),
        "vpred": (v(prediction_type="v_prediction", timestep_spacing="trailing"), LAT, STEPS),
        # learned_range: diffusers keeps model_output[:, :3], i.e. the prediction half only when C = 3
        "learned": (v(variance_type="learned_range"), (2, 3, 8), STEPS),
        # cosine schedule with lambda clipping (what the DPM docs recommend for it)
        "cos_clip": (dict(beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1, solver_type="heun"),
                     LAT, STEPS),
        "cos_clip_trailing": (dict(beta_schedule="squaredcos_cap_v2", lambda_min_clipped=-5.1,
                                   timestep_spacing="trailing", prediction_type="sample"), LAT, STEPS),
    }


def records(n):
    if n <= 10:
        return list(range(n))
    return sorted({0, 1, 2, 3, n // 2, n - 3, n - 2, n - 1})


def learned(cfg):
    return cfg.get("variance_type") in ("learned", "learned_range")


def model(x, base, var):
    p = x * 0.9 + base * 0.1
    return p if var is None else torch.cat([p, var], dim=1)


def gen_config(out, name, spec):
    cfg, shape, steps = spec
    tensors, meta = {}, {}
    meta["config"] = json.dumps(cfg, indent=2)
    meta["samplers"] = ",".join(s for s, _ in SAMPLERS)
    meta["steps"] = ",".join(map(str, steps))
    meta["shape"] = ",".join(map(str, shape))
    meta["model_channels"] = str(shape[1] * (2 if learned(cfg) else 1))
    meta["records"] = ";".join(f"{n}:" + ",".join(map(str, records(n))) for n in steps)
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    base = torch.randn(shape, generator=g)
    var = torch.rand(shape, generator=g) * 2 - 1 if learned(cfg) else None
    tensors["base"] = base
    if var is not None:
        tensors["var"] = var
    orig = torch.randn(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    tensors["add.original"] = orig
    tensors["add.noise"] = noise
    img_n, strength = 25, 0.3
    t_start = img_n - min(int(img_n * strength), img_n)
    meta["img2img"] = f"{img_n}:{t_start}"
    add_idx = {}
    for a, (sname, kw) in enumerate(SAMPLERS):
        s = DPMSolverMultistepScheduler.from_config(dict(cfg), **kw)
        for n in steps:
            s.set_timesteps(n)
            tensors[f"s{a}.N{n}.timesteps"] = s.timesteps.clone()
            tensors[f"s{a}.N{n}.sigmas"] = s.sigmas.clone()
        # whole loops
        for n in steps:
            s.set_timesteps(n)
            # step index = loop index. Without it diffusers starts at index_for_timestep(timesteps[0]),
            # which is 1 when timesteps[0] repeats (Karras on the cosine prior schedule: 998, 998, ...)
            # and then fails with IndexError on the last step.
            s.set_begin_index(0)
            gen = torch.Generator().manual_seed(100 * a + n)
            x = randn_tensor(shape, generator=gen, dtype=torch.float32)
            tensors[f"s{a}.L{n}.x_init"] = x.clone()
            rec = records(n)
            for k, t in enumerate(s.timesteps):
                x = s.step(model(x, base, var), t, x, generator=gen, return_dict=False)[0]
                if k in rec:
                    tensors[f"s{a}.L{n}.x{k}"] = x.clone()
            assert s.step_index == len(s.timesteps)
        # img2img: the 2.2 pipeline's start (add_noise at timesteps[t_start], then the loop from there)
        s.set_timesteps(img_n)
        gen = torch.Generator().manual_seed(900 + a)
        ts = s.timesteps[t_start:]
        noise0 = randn_tensor(shape, generator=gen, dtype=torch.float32)
        x = s.add_noise(base, noise0, ts[:1].repeat(shape[0]))
        tensors[f"s{a}.I.x_init"] = x.clone()
        s.set_begin_index(t_start)  # step index = the loop index (see src/sched/dpmsolver.c)
        for k, t in enumerate(ts):
            x = s.step(model(x, base, var), t, x, generator=gen, return_dict=False)[0]
            tensors[f"s{a}.I.x{t_start + k}"] = x.clone()
        # add_noise at a few indices, and at a repeated timestep's first occurrence when there is one
        s.set_timesteps(img_n)
        tl = s.timesteps.tolist()
        idx = [0, img_n // 2, img_n - 1]
        rep = [i for i in range(len(tl)) if tl.count(tl[i]) > 1]
        if rep:
            idx.append(rep[0])
        add_idx[a] = idx
        for i in idx:
            tensors[f"s{a}.A.i{i}"] = s.add_noise(orig, noise, s.timesteps[i:i + 1].repeat(shape[0]))
    meta["add_noise"] = ";".join(f"{a}:" + ",".join(map(str, v)) for a, v in add_idx.items())
    write_safetensors(os.path.join(out, "samplers", "dpm", f"{name}.safetensors"), tensors, meta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(os.path.join(args.out, "samplers", "dpm"), exist_ok=True)
    for name, spec in configs().items():
        gen_config(args.out, name, spec)


if __name__ == "__main__":
    main()
