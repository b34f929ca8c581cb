"""MultilingualCLIP (XLM-R large + 1024→768) benchmark, PyTorch side, and builder of the full-size
random-weight model (the published kandinsky-2-1 text_encoder config).
  python bench/bench_mclip.py make DIR
  python bench/bench_mclip.py run DIR [--threads 2] [--reps 3] [--autocast]
Prints JSON lines like bench_mclip (C): op "mclip", size 77, median over reps after a warm-up (as the
C side takes it: upper middle for an even count), plus min_ms. --autocast runs the calls under
torch.autocast("cpu", dtype=torch.bfloat16) (label pytorch-bf16-autocast)."""
import argparse, json, os, resource, sys, time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import add_run_args, c_median, impl_label, precision  # noqa: E402


def make(path):
    from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP
    cfg = MCLIPConfig(transformerDimSize=1024, imageDimSize=768, vocab_size=250002, hidden_size=1024,
                      num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, hidden_act="gelu",
                      max_position_embeddings=514, type_vocab_size=1, pad_token_id=1, layer_norm_eps=1e-5)
    with torch.device("meta"):
        m = MultilingualCLIP(cfg)
    m = m.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.normal_(0, 0.02) if p.ndim > 1 else p.fill_(1.0 if "LayerNorm.weight" in name else 0.0)
    m.save_pretrained(path, safe_serialization=True, max_shard_size="20GB")
    print(f"wrote {path}: {sum(p.numel() for p in m.parameters())} parameters")


def run(a):
    from diffusers.pipelines.kandinsky.text_encoder import MultilingualCLIP
    torch.set_num_threads(a.threads)
    m = MultilingualCLIP.from_pretrained(a.dir).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 250000, (2, 77), generator=g)
    mask = torch.ones(2, 77, dtype=torch.long)
    ids[1, 20:] = 1
    mask[1, 20:] = 0
    times = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, autocast bf16 {a.autocast}", file=sys.stderr)
    with torch.inference_mode(), precision(a.autocast):
        for r in range(a.reps + 1):
            t0 = time.perf_counter()
            m(ids, mask)
            if r:
                times.append(time.perf_counter() - t0)
    print(json.dumps({"impl": impl_label(a.autocast), "op": "mclip", "size": 77, "median_ms": round(c_median(times) * 1e3, 1),
                      "min_ms": round(min(times) * 1e3, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}), flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "run"])
    ap.add_argument("dir")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    add_run_args(ap)
    a = ap.parse_args()
    make(a.dir) if a.cmd == "make" else run(a)
