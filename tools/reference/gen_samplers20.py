#!/usr/bin/env python3
"""Writes the fixtures of tests/test_samplers20.c to tests/data/samplers20/: Kandinsky 2.0's original
samplers (ai-forever/Kandinsky-2: model/gaussian_diffusion.py + respace.py p_sample_loop, and
model/samplers.py DDIMSampler / PLMSSampler; fetched, never copied here) driven by an analytic model
that tests/test_samplers20.c computes too:

    eps(x, t) = 0.5·tanh(x) + t / 2000        var(x) = 0.9·sin(x)      (element-wise, float32)

called the way kandinsky2_model.py's model_fn calls the U-Net (only the first half of the batch
is the model's input; both halves get the same guided eps; p_sampler also gets the variance
channels). Run on the CPU: the samplers' hard-coded "cuda" is redirected, and the noise comes from
the global CPU generator after torch.manual_seed(seed).

    cases.safetensors   per case k: case{k}.out [B,4,5,6] (the first half of the final batch) and
                        case{k}.params [seed, kind (0 p, 1 ddim, 2 plms), steps, eta·1000, init_step
                        (-1: none), B]; thr.in / thr.out: the dynamic threshold of process_xstart on
                        a [2,4,5,6] batch (99.5th percentile of sample 0)

    ~/.venvs/kd-ref/bin/python tools/reference/gen_samplers20.py --kandinsky2 /path/to/Kandinsky-2
"""
import argparse
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = [  # seed, kind, steps, eta, init_step, B
    (1, 0, 10, 0.0, None, 1), (2, 0, 7, 0.0, None, 2), (3, 0, 10, 0.0, 6, 1), (4, 0, 2, 0.0, None, 1),
    (5, 1, 10, 0.05, None, 1), (6, 1, 30, 0.8, None, 2), (7, 1, 20, 0.0, 600, 1), (8, 1, 7, 1.0, None, 1),
    (9, 2, 10, 0.0, None, 1), (10, 2, 12, 0.0, 700, 2), (11, 2, 2, 0.0, None, 1),
]


def analytic_eps(x, t):
    return 0.5 * torch.tanh(x) + t.float().view(-1, 1, 1, 1) / 2000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kandinsky2", required=True, help="folder holding the kandinsky2/ package")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "data", "samplers20"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, HERE)
    import k2_cpu
    k2 = k2_cpu.load(a.kandinsky2)
    samplers, create_gaussian_diffusion = k2("model.samplers"), k2("model.model_creation").create_gaussian_diffusion
    diff_cfg = dict(learn_sigma=True, sigma_small=False, steps=1000, noise_schedule="linear", use_kl=False,
                    predict_xstart=False, rescale_timesteps=True, rescale_learned_sigmas=True,
                    linear_start=0.0001, linear_end=0.02)
    t = {}
    for k, (seed, kind, steps, eta, init_step, B) in enumerate(CASES):
        def model_fn(x_t, ts, **kw):
            half = x_t[: len(x_t) // 2]
            eps = analytic_eps(half, ts[: len(half)])
            eps = torch.cat([eps, eps])
            if kind == 0:
                var = 0.9 * torch.sin(half)
                return torch.cat([eps, torch.cat([var, var])], dim=1)
            return eps

        torch.manual_seed(seed)
        if kind == 0:
            d = create_gaussian_diffusion(**diff_cfg, timestep_respacing=str(steps))
            out = d.p_sample_loop(model_fn, (2 * B, 4, 5, 6), device="cpu", init_step=init_step, progress=False)
        else:
            d = create_gaussian_diffusion(**diff_cfg, timestep_respacing="")
            cls = samplers.DDIMSampler if kind == 1 else samplers.PLMSSampler
            s = cls(model=model_fn, old_diffusion=d, schedule="linear")
            kw = dict(eta=eta) if kind == 1 else {}
            out, _ = s.sample(steps, 2 * B, (4, 5, 6), conditioning={}, init_step=init_step, verbose=False, **kw)
        t[f"case{k}.out"] = out[:B].contiguous().float()
        t[f"case{k}.params"] = torch.tensor([seed, kind, steps, round(eta * 1000), -1 if init_step is None else init_step, B],
                                            dtype=torch.float32)
    # process_xstart's dynamic threshold, as written in gaussian_diffusion.p_mean_variance
    g = torch.Generator().manual_seed(99)
    x = torch.randn(2, 4, 5, 6, generator=g) * 1.7
    x2 = torch.clone(x).cpu().detach().numpy()
    s_ = np.percentile(np.abs(x2), 99.5, axis=tuple(range(1, x2.ndim)))[0]
    s_ = max(s_, 1.0)
    t["thr.in"] = x
    t["thr.out"] = (torch.clip(x, -s_, s_) / s_).contiguous()
    os.makedirs(a.out, exist_ok=True)
    save_file(t, os.path.join(a.out, "cases.safetensors"))
    print(len(CASES), "cases; threshold s =", s_)


if __name__ == "__main__":
    main()
