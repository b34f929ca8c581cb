"""The original Kandinsky 2.0 code (ai-forever/Kandinsky-2, a checkout outside this tree) made importable
and runnable on the CPU, for the gen_*20.py scripts:

  - the package is mounted as "k2" without running its __init__ (which needs an old huggingface_hub);
  - cv2 / omegaconf (imported, never used on these paths) and pytorch_lightning (a base class only)
    are stubbed;
  - the DDIM / PLMS samplers' hard-coded "cuda" goes to the CPU: Tensor.to("cuda") → "cpu", and
    torch.randn / torch.full(..., device="cuda") inside model/samplers.py drop the device. Every
    random draw then comes from torch's global CPU generator.
"""
import importlib
import os
import sys
import types

import torch


class _CpuTorch:
    """torch, with randn / full ignoring their device (for model/samplers.py's module global)."""

    def __getattr__(self, name):
        return getattr(torch, name)

    def randn(self, *args, device=None, **kw):
        return torch.randn(*args, **kw)

    def full(self, *args, device=None, **kw):
        return torch.full(*args, **kw)


def load(kandinsky2_checkout):
    """Returns a function that imports k2.<module> (e.g. "model.samplers")."""
    if "k2" not in sys.modules:
        pkg = types.ModuleType("k2")
        pkg.__path__ = [os.path.join(kandinsky2_checkout, "kandinsky2")]
        sys.modules["k2"] = pkg
        sys.modules.setdefault("cv2", types.ModuleType("cv2"))
        sys.modules.setdefault("omegaconf", types.SimpleNamespace(OmegaConf=None))
        sys.modules.setdefault("pytorch_lightning", types.SimpleNamespace(LightningModule=torch.nn.Module))
        orig_to = torch.Tensor.to

        def to_cpu(self, *args, **kw):
            args = tuple("cpu" if str(x).startswith("cuda") else x for x in args)
            if "device" in kw and str(kw["device"]).startswith("cuda"):
                kw["device"] = "cpu"
            return orig_to(self, *args, **kw)

        torch.Tensor.to = to_cpu
        importlib.import_module("k2.model.samplers").torch = _CpuTorch()
    return lambda name: importlib.import_module("k2." + name)
