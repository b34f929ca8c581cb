"""Reference data for the "unipc" sampler (src/sched/unipc.c): diffusers' UniPCMultistepScheduler.

Writes tests/data/samplers/unipc/<config>.safetensors, one per scheduler config:
  __metadata__: "config"   the scheduler_config.json text given to UniPCMultistepScheduler.from_config
                           (a Kandinsky file of another class, unknown keys included, or one with the
                           UniPC keys under test)
                "shape"    the sample shape, "B,C,inner" (the C side's [batch, channels, inner])
                "steps"    the n of set_timesteps(n) recorded below, comma-separated
                "loops"    k:n:start:count:seed:strength per loop (start = the first step index,
                           count = the steps run, strength = the img2img strength or none)
                "add_noise" n:i pairs of the add_noise cases
                "torch", "diffusers", "cpu_capability"  where the data came from
  N<n>.timesteps     int64   scheduler.timesteps after set_timesteps(n)
  N<n>.sigmas        float32 scheduler.sigmas (one longer: the final sigma)
  N<n>.alpha, N<n>.sigma_t  float32 [len]: add_noise(1, 0, timesteps[i]) and add_noise(0, 1, ...) for
                     every i: α and σ_t at the sigma diffusers picks for timesteps[i]
  loop.base          float32 the fixed "model" 0.9·x + 0.1·base (x0, ε or v, as prediction_type says)
  loop<k>.x_init     float32 the latents the loop starts from: randn_tensor(shape, Generator().
                     manual_seed(seed)), or for img2img loops (start > 0) add_noise(base, that randn,
                     timesteps[start]) as the Kandinsky 2.2 img2img pipeline prepares them
  loop<k>.x<i>       float32 the sample after step i (every step)
  add_noise.original, add_noise.noise, add_noise.n<n>.i<i>   add_noise(original, noise, timesteps[i])

Usage (from the repo root): ~/.venvs/kd-ref/bin/python tools/reference/gen_sampler_unipc.py [--out tests/data]
"""
import argparse
import json
import os

import diffusers
import torch
from diffusers import UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from safetensors import safe_open

ST_DTYPES = {torch.float32: "F32", torch.int64: "I64"}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def write_safetensors(path, tensors, meta):
    """Deterministic writer (as gen_sched.py): tensors in insertion order, metadata keys sorted,
    header padded to 8; read back with the reference reader."""
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
    with safe_open(path, "pt") as f:
        assert f.metadata() == meta
        for name, t in tensors.items():
            got = f.get_tensor(name)
            assert got.shape == t.shape and got.reshape(-1).view(torch.uint8).equal(t.reshape(-1).view(torch.uint8)), name


def load_text(rel):
    with open(os.path.join(ROOT, "tests", "data", rel)) as f:
        return f.read()


K22 = load_text("pipeline22/decoder/scheduler/scheduler_config.json")  # DDPMScheduler, leading, offset 1
K21 = load_text("pipeline21/decoder/scheduler/scheduler_config.json")  # DDIMScheduler
PRIOR = load_text("pipeline22/prior/scheduler/scheduler_config.json")  # UnCLIPScheduler: sample, cosine


def variant(text, **over):
    cfg = json.loads(text)
    cfg.update(over)
    return json.dumps(cfg, indent=2)


LAT = (2, 4, 8)
EMB = (2, 32)
STEPS = [1, 2, 10, 25, 50]
# (config text, shape, extra step counts)
CONFIGS = {
    # the Kandinsky files as they are (UniPC reads the keys it knows, with its own defaults)
    "k22_decoder": (K22, LAT, []),
    "k21_ddim": (K21, LAT, []),
    "prior_unclip": (PRIOR, EMB, []),
    # spacings (trailing: n = 61 gives 62 timesteps ending in -1, np.interp's left end)
    "k22_linspace": (variant(K22, timestep_spacing="linspace"), LAT, []),
    "k22_trailing": (variant(K22, timestep_spacing="trailing"), LAT, [61]),
    "k22_v": (variant(K22, prediction_type="v_prediction"), LAT, []),
    # lower_order_final false: with the final sigma 0 the last order-2 step divides by r_k = -0
    # (diffusers returns inf / NaN there: recorded as it is)
    "k22_lof_false": (variant(K22, lower_order_final=False), LAT, []),
    "k22_lof_false_smin": (variant(K22, lower_order_final=False, final_sigmas_type="sigma_min"), LAT, []),
    # bh1: with the final sigma 0, B(h) = -inf and the last step is NaN in diffusers
    "k22_bh1": (variant(K22, solver_type="bh1"), LAT, []),
    "k22_bh1_smin_dc": (variant(K22, solver_type="bh1", final_sigmas_type="sigma_min", disable_corrector=[0, 3]),
                        LAT, []),
    # the noise prediction (predict_x0 false): NaN at a final sigma 0 as well
    "k22_noise": (variant(K22, predict_x0=False), LAT, []),
    "k22_noise_v_smin": (variant(K22, predict_x0=False, prediction_type="v_prediction",
                                 final_sigmas_type="sigma_min"), LAT, []),
    # (leading spacing: from t = 999 of the cosine schedule, where α = 5e-5, the noise-prediction
    # update cancels terms of size α_t / α_s0 ≈ 600 and so magnifies the ulps of torch.log, which
    # the C side does not reproduce (src/sched/unipc.c), by as much)
    "prior_noise_smin": (variant(PRIOR, predict_x0=False, final_sigmas_type="sigma_min", timestep_spacing="leading",
                                 steps_offset=1), EMB, []),
    # dynamic thresholding of x0 (on a 3-d shape: diffusers' _threshold_sample fails on [B, E])
    "prior_thresh": (variant(PRIOR, thresholding=True, dynamic_thresholding_ratio=0.9, sample_max_value=1.5), LAT, []),
    "k22_karras": (variant(K22, use_karras_sigmas=True), LAT, []),
    "k22_karras_smin": (variant(K22, use_karras_sigmas=True, final_sigmas_type="sigma_min", sigma_max=10.0), LAT, []),
    "k22_order1": (variant(K22, solver_order=1), LAT, []),
    "k22_order3": (variant(K22, solver_order=3, solver_type="midpoint"), LAT, []),
}
IMG2IMG = [(10, 0.3), (25, 0.75)]  # (n, strength)
ADD_NOISE = [(25, 0), (25, 12), (25, 24), (50, 48), (50, 49)]


def kandinsky_start(n, strength):
    """get_timesteps of the Kandinsky img2img pipelines"""
    init = min(int(n * strength), n)
    return max(n - init, 0)


def model(x, base):
    return x * 0.9 + base * 0.1


def gen_config(out, name, spec):
    text, shape, extra = spec
    cfg = json.loads(text)
    s = UniPCMultistepScheduler.from_config(cfg)
    steps = STEPS + extra
    tensors, loops = {}, []
    one = torch.ones((1,) + shape[1:])
    zero = torch.zeros((1,) + shape[1:])
    for n in steps:
        s.set_timesteps(n)
        tensors[f"N{n}.timesteps"] = s.timesteps.clone().to(torch.int64)
        tensors[f"N{n}.sigmas"] = s.sigmas.clone().to(torch.float32)
        al, sg = [], []
        for i in range(len(s.timesteps)):
            t = s.timesteps[i:i + 1]
            al.append(s.add_noise(one, zero, t).reshape(-1)[0])
            sg.append(s.add_noise(zero, one, t).reshape(-1)[0])
        tensors[f"N{n}.alpha"] = torch.stack(al)
        tensors[f"N{n}.sigma_t"] = torch.stack(sg)
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    base = torch.randn(shape, generator=g)
    tensors["loop.base"] = base
    specs = [(n, None) for n in steps] + IMG2IMG
    for k, (n, strength) in enumerate(specs):
        s.set_timesteps(n)
        seed = 100 + k
        gen = torch.Generator().manual_seed(seed)
        lat = randn_tensor(shape, generator=gen, dtype=torch.float32)
        start = 0 if strength is None else kandinsky_start(n, strength)
        ts = s.timesteps[start:]
        x = lat if start == 0 else s.add_noise(base, lat, ts[:1].repeat(shape[0]))
        tensors[f"loop{k}.x_init"] = x.clone()
        for j, t in enumerate(ts):
            x = s.step(model(x, base), t, x, return_dict=False)[0]
            tensors[f"loop{k}.x{start + j}"] = x.clone()
        loops.append(f"{k}:{n}:{start}:{len(ts)}:{seed}:{'none' if strength is None else repr(strength)}")
    orig = torch.randn(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    tensors["add_noise.original"] = orig
    tensors["add_noise.noise"] = noise
    for n, i in ADD_NOISE:
        s.set_timesteps(n)
        tensors[f"add_noise.n{n}.i{i}"] = s.add_noise(orig, noise, s.timesteps[i:i + 1].repeat(shape[0]))
    meta = {
        "config": text,
        "shape": ",".join(str(v) for v in (shape if len(shape) == 3 else shape + (1,))),
        "steps": ",".join(map(str, steps)),
        "loops": ",".join(loops),
        "add_noise": ",".join(f"{n}:{i}" for n, i in ADD_NOISE),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    write_safetensors(os.path.join(out, f"{name}.safetensors"), tensors, meta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.join(args.out, "samplers", "unipc")
    os.makedirs(out, exist_ok=True)
    for name, spec in CONFIGS.items():
        gen_config(out, name, spec)
        print("wrote", name)


if __name__ == "__main__":
    main()
