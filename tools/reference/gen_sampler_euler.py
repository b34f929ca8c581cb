"""Reference data for the sigma samplers euler / euler-a / heun (src/sched/euler.c, heun.c):
diffusers' EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and HeunDiscreteScheduler built
with Class.from_config(scheduler_config.json) from the Kandinsky configs (2.2 decoder DDPM, 2.1
DDIM, the prior's UnCLIP) and variations of them.

Writes tests/data/samplers/euler/<config>.safetensors, one per config:
  __metadata__  "config"   the scheduler_config.json text
                "refused"  samplers diffusers refuses for this config (construction, set_timesteps
                           or step raises), comma-separated; the C side must refuse them too
                "<s>.loops" per loop k "k:n:seed:strength:B:C:inner:count" (strength "none" =
                           txt2img), ";"-separated
                "<s>.add_noise" the step indices diffusers resolves for add_noise after
                           set_timesteps(10) (index_for_timestep of timesteps[j]), comma-separated
                "<s>.refused" why diffusers refuses (for refused samplers)
  with <s> in euler, euler_a, heun:
  <s>.N<n>.timesteps         F32 scheduler.timesteps after set_timesteps(n)
  <s>.N<n>.sigmas            F32 scheduler.sigmas
  <s>.N<n>.init_noise_sigma  F32 [1]
  <s>.loop<k>.base           F32 the "model"'s constant term
  <s>.loop<k>.x_init         F32 img2img loops only: add_noise(base, noise, timesteps[t_start·order])
  <s>.loop<k>.recorded       I64 the step indices (0-based, within the loop) whose output is stored
  <s>.loop<k>.x<j>           F32 x after the loop's step j
      A loop: set_timesteps(n); one torch.Generator(seed) draws the initial latents
      (randn_tensor · init_noise_sigma; img2img: the noise of add_noise at timesteps[t_start·order]
      with set_begin_index(t_start·order), as diffusers' SD img2img pipelines do — its Kandinsky
      pipelines forget the order, which turns a Heun run into NaN — t_start from Kandinsky's
      get_timesteps) and is passed to every step (euler, euler-a); the
      "model" is 0.9 · scale_model_input(x, t) + 0.1 · base.
  add_noise.original, add_noise.noise   F32 [2, 4, 8]
  <s>.add_noise.<r>          F32 add_noise(original, noise, timesteps[j].repeat(2)), r the resolved index
  ieee.<s>.N<n>, ieee.<s>.loop<k>  I64 [1] FNV-1a 64 hashes of the same quantities computed by diffusers
                             with a correctly rounded float32 ** 0.5 (see ieee_sqrt: torch's sqrt is
                             MKL's, faithfully but not correctly rounded): the C side, whose sqrtf is
                             exact, must hash to these bit for bit; --ieee-out writes that reference
                             in full for debugging a mismatch

Usage: ~/.venvs/kd-ref/bin/python tools/reference/gen_sampler_euler.py [--out tests/data]
"""
import argparse
import contextlib
import json
import os

import numpy as np

import torch
from safetensors import safe_open
from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler
from diffusers.utils import logging as diffusers_logging
from diffusers.utils.torch_utils import randn_tensor

from gen_sched import ST_DTYPES


def write_safetensors(path, tensors, meta):
    """gen_sched.write_safetensors (deterministic: tensors in insertion order, metadata keys sorted,
    header padded to 8), read back with NaN == NaN (for a state that is NaN in diffusers)."""
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
            u = f.get_tensor(name)
            assert u.dtype == t.dtype and u.shape == t.shape, name
            assert torch.equal(u, t) or torch.allclose(u, t, rtol=0, atol=0, equal_nan=True), name

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SAMPLERS = {"euler": EulerDiscreteScheduler, "euler_a": EulerAncestralDiscreteScheduler, "heun": HeunDiscreteScheduler}
K22_BETAS = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012)


def file_text(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


# name: (config JSON text, extra step counts)
CONFIGS = {
    "k22_decoder": (file_text("tests/data/pipeline22/decoder/scheduler/scheduler_config.json"), []),
    "k21_ddim": (file_text("tests/data/pipeline21/decoder/scheduler/scheduler_config.json"), []),
    "prior_unclip": (file_text("tests/data/pipeline22/prior/scheduler/scheduler_config.json"), []),
    "linspace_v": (json.dumps(dict(_class_name="DDPMScheduler", **K22_BETAS, prediction_type="v_prediction",
                                   timestep_spacing="linspace", clip_sample=False, variance_type="learned_range"),
                              indent=2), []),
    # n = 61 gives np.arange 62 entries ending in timestep -1 (interpolated as sigma_train[0])
    "trailing_scaled": (json.dumps(dict(_class_name="DDIMScheduler", num_train_timesteps=1000,
                                        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                        timestep_spacing="trailing", steps_offset=1, some_future_key=[1, 2]),
                                   indent=2), [61]),
    "karras": (json.dumps(dict(_class_name="EulerDiscreteScheduler", **K22_BETAS, steps_offset=1,
                               timestep_spacing="leading", use_karras_sigmas=True), indent=2), []),
    "karras_bounds_v": (json.dumps(dict(_class_name="EulerDiscreteScheduler", num_train_timesteps=1000,
                                        beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                                        timestep_spacing="trailing", use_karras_sigmas=True, sigma_min=0.05,
                                        sigma_max=60.0, final_sigmas_type="sigma_min"), indent=2), []),
    # Heun only: exp betas (Euler raises NotImplementedError), sample prediction, clipping
    "heun_exp_clip": (json.dumps(dict(_class_name="HeunDiscreteScheduler", num_train_timesteps=1000,
                                      beta_schedule="exp", prediction_type="sample", clip_sample=True,
                                      clip_sample_range=2.0, timestep_spacing="leading", steps_offset=1), indent=2),
                      []),
    # every key missing: each class's own defaults (Heun's betas differ)
    "defaults": (json.dumps(dict(_class_name="DDPMScheduler"), indent=2), []),
}
STEP_COUNTS = [1, 2, 10, 25, 50]
SHAPE = (2, 4, 8)
TINY = (1, 3, 5)  # 15 values: torch.randn's scalar (< 16) path, its cached normal carried across steps


def make(cls, cfg):
    return cls.from_config(dict(cfg))


def refuses(cls, cfg):
    try:
        s = make(cls, cfg)
        s.set_timesteps(2)
        x = torch.zeros(SHAPE)
        t = s.timesteps[0]
        s.step(s.scale_model_input(x, t), t, x, return_dict=False)
    except (NotImplementedError, ValueError) as ex:
        return repr(ex)
    return None


def record_set(count, n):
    if n < 50:
        return list(range(count))
    return [j for j in range(count) if j % 7 == 0 or j == count - 1]


def run_loop(name, cls, cfg, k, n, strength, shape, seed, tensors):
    s = make(cls, cfg)
    s.set_timesteps(n)
    base = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1))
    g = torch.Generator().manual_seed(seed)
    if strength is None:
        ts = s.timesteps
        x = randn_tensor(shape, generator=g, dtype=torch.float32) * s.init_noise_sigma
    else:  # Kandinsky's get_timesteps for t_start, then the SD img2img start: timesteps[t_start·order:]
        # with set_begin_index (the Kandinsky pipelines slice timesteps[t_start:], which enters Heun's
        # doubled list mid-pair, runs one sigma late and ends in NaN), then add_noise there
        init_t = min(int(n * strength), n)
        t_start = max(n - init_t, 0)
        ts = s.timesteps[t_start * s.order:]
        s.set_begin_index(t_start * s.order)
        noise0 = randn_tensor(shape, generator=g, dtype=torch.float32)
        x = s.add_noise(base, noise0, ts[:1].repeat(shape[0]))
        tensors[f"{name}.loop{k}.x_init"] = x.clone()
    rec = record_set(len(ts), n)
    tensors[f"{name}.loop{k}.base"] = base
    tensors[f"{name}.loop{k}.recorded"] = torch.tensor(rec, dtype=torch.int64)
    for j, t in enumerate(ts):
        mo = s.scale_model_input(x, t) * 0.9 + base * 0.1
        if cls is HeunDiscreteScheduler:
            x = s.step(mo, t, x, return_dict=False)[0]
        else:
            x = s.step(mo, t, x, generator=g, return_dict=False)[0]
        if j in rec:
            tensors[f"{name}.loop{k}.x{j}"] = x.clone()
    return f"{k}:{n}:{seed}:{'none' if strength is None else repr(strength)}:{shape[0]}:{shape[1]}:{shape[2]}:{len(ts)}"


@contextlib.contextmanager
def ieee_sqrt():
    """float32 tensor ** 0.5 correctly rounded. torch's CPU sqrt (this build: MKL VML, high-accuracy
    mode) is only faithfully rounded: 17% of float32 inputs come out 1 ulp off (at most 0.75 ulp),
    where the C side's sqrtf is exact; with this patch diffusers' arithmetic is otherwise bit-equal
    to the C side, which the ieee.* hashes check."""
    orig = torch.Tensor.__pow__

    def pw(self, e):
        if isinstance(e, float) and e == 0.5 and self.dtype == torch.float32:
            return orig(self.double(), 0.5).float()
        return orig(self, e)

    torch.Tensor.__pow__ = pw
    try:
        yield
    finally:
        torch.Tensor.__pow__ = orig


def fnv1a64(chunks):
    """FNV-1a 64 over the bytes of float32 tensors, NaNs canonicalised to 0x7fc00000."""
    h = 0xcbf29ce484222325
    for t in chunks:
        a = t.detach().reshape(-1).to(torch.float32).numpy().copy()
        a[np.isnan(a)] = np.nan
        u = a.view(np.uint32)
        u[np.isnan(a)] = 0x7FC00000
        for b in u.tobytes():
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= (1 << 63) else h


def build(cname, text, extra_n):
    cfg = json.loads(text)
    tensors, meta = {}, {"config": text}
    g = torch.Generator().manual_seed(sum(map(ord, cname)))
    orig = torch.randn(SHAPE, generator=g)
    noise = torch.randn(SHAPE, generator=g)
    tensors["add_noise.original"] = orig
    tensors["add_noise.noise"] = noise
    refused = []
    for si, (name, cls) in enumerate(SAMPLERS.items()):
        why = refuses(cls, cfg)
        if why:
            refused.append(name)
            meta[f"{name}.refused"] = why[:200]
            continue
        s = make(cls, cfg)
        for n in STEP_COUNTS + extra_n:
            s.set_timesteps(n)
            tensors[f"{name}.N{n}.timesteps"] = s.timesteps.clone().to(torch.float32)
            tensors[f"{name}.N{n}.sigmas"] = s.sigmas.clone().to(torch.float32)
            tensors[f"{name}.N{n}.init_noise_sigma"] = torch.as_tensor(s.init_noise_sigma,
                                                                      dtype=torch.float32).reshape(1).clone()
        # add_noise after set_timesteps(10)
        s.set_timesteps(10)
        m = len(s.timesteps)
        resolved = []
        for j in (0, 3, m - 1):
            t = s.timesteps[j]
            r = s.index_for_timestep(t)
            if r in resolved:
                continue
            resolved.append(r)
            tensors[f"{name}.add_noise.{r}"] = s.add_noise(orig, noise, t.repeat(SHAPE[0]))
        meta[f"{name}.add_noise"] = ",".join(map(str, resolved))
        specs = [(n, None, SHAPE) for n in STEP_COUNTS + extra_n] + [(10, 0.5, SHAPE), (25, 0.3, SHAPE)]
        if name == "euler_a":
            specs.append((10, None, TINY))
        loops = []
        for k, (n, strength, shape) in enumerate(specs):
            seed = 1000 * (si + 1) + 17 * k + len(cname)
            loops.append(run_loop(name, cls, cfg, k, n, strength, shape, seed, tensors))
        meta[f"{name}.loops"] = ";".join(loops)
    meta["refused"] = ",".join(refused)
    return tensors, meta


def ieee_hashes(tensors, meta):
    """ieee.<s>.N<n>: hash of timesteps, sigmas[:len(timesteps)] (what add_noise exposes) and
    init_noise_sigma; ieee.<s>.loop<k>: hash of x_init (img2img) and the recorded states in order."""
    out = {}
    for name in SAMPLERS:
        if f"{name}.loops" not in meta:
            continue
        for key in [k for k in tensors if k.startswith(f"{name}.N") and k.endswith(".timesteps")]:
            pre = key[: -len(".timesteps")]
            ts = tensors[key]
            out[f"ieee.{pre}"] = torch.tensor(
                [fnv1a64([ts, tensors[f"{pre}.sigmas"][: len(ts)], tensors[f"{pre}.init_noise_sigma"]])],
                dtype=torch.int64)
        for spec in meta[f"{name}.loops"].split(";"):
            k = int(spec.split(":")[0])
            pre = f"{name}.loop{k}"
            chunks = [tensors[f"{pre}.x_init"]] if f"{pre}.x_init" in tensors else []
            chunks += [tensors[f"{pre}.x{j}"] for j in tensors[f"{pre}.recorded"].tolist()]
            out[f"ieee.{pre}"] = torch.tensor([fnv1a64(chunks)], dtype=torch.int64)
    return out


def gen_config(out, cname, text, extra_n, ieee_out):
    with ieee_sqrt():
        t_ieee, m_ieee = build(cname, text, extra_n)
    tensors, meta = build(cname, text, extra_n)
    assert meta.keys() == m_ieee.keys() and all(meta[k] == m_ieee[k] for k in meta)
    tensors.update(ieee_hashes(t_ieee, m_ieee))
    for name in SAMPLERS:
        if f"{name}.refused" in meta:
            print(f"  {cname} {name}: refused ({meta[name + '.refused'][:80]})")
    path = os.path.join(out, "samplers", "euler", f"{cname}.safetensors")
    write_safetensors(path, tensors, meta)
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")
    if ieee_out:  # the full IEEE-sqrt reference, to debug a hash mismatch (KD_TEST_DATA=<dir>)
        os.makedirs(os.path.join(ieee_out, "samplers", "euler"), exist_ok=True)
        t_ieee.update(ieee_hashes(t_ieee, m_ieee))
        write_safetensors(os.path.join(ieee_out, "samplers", "euler", f"{cname}.safetensors"), t_ieee, m_ieee)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data"))
    ap.add_argument("--ieee-out", help="also write the IEEE-sqrt reference in full under this folder")
    args = ap.parse_args()
    torch.set_num_threads(1)
    diffusers_logging.set_verbosity_error()  # the 'unexpected config key' notices are the point
    os.makedirs(os.path.join(args.out, "samplers", "euler"), exist_ok=True)
    for cname, (text, extra_n) in CONFIGS.items():
        gen_config(args.out, cname, text, extra_n, args.ieee_out)


if __name__ == "__main__":
    main()
