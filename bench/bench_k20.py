"""Kandinsky 2.0 benchmark, PyTorch side: the ORIGINAL modules (ai-forever/Kandinsky-2, a checkout outside
the tree, mounted by tools/reference/k2_cpu.py) — Text2ImUNet with configs.CONFIG_2_0's model_config,
MultilingualCLIP (XLM-R large + 1024→640) and transformers' MT5EncoderModel (mt5-small) — and the
builder of the full-size random-weight folder in the published layout.
  python bench/bench_k20.py make DIR --kandinsky2 CHECKOUT
  python bench/bench_k20.py run DIR --kandinsky2 CHECKOUT [--threads 2] [--reps 2] [--latents 64]
Prints JSON lines like bench_k20 (C): ops k20_mclip, k20_mt5 (batch 2 × 77) and k20_unet_step."""
import argparse, json, os, resource, sys, time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tools", "reference"))
from bench_torch import add_run_args, c_median, impl_label, precision  # noqa: E402

MT5_SMALL = dict(vocab_size=250112, d_model=512, d_kv=64, d_ff=1024, num_layers=8, num_heads=6,
                 relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
                 layer_norm_epsilon=1e-6, dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def original(checkout):
    import k2_cpu
    return k2_cpu.load(checkout)


def fill(m):
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.normal_(0, 0.02) if p.ndim > 1 else p.fill_(1.0 if name.endswith("weight") else 0.0)


def make(a):
    from transformers import MT5Config, MT5EncoderModel, XLMRobertaConfig
    k2 = original(a.kandinsky2)
    t1, t2 = os.path.join(a.dir, "text_encoder1"), os.path.join(a.dir, "text_encoder2")
    os.makedirs(t1, exist_ok=True)
    os.makedirs(t2, exist_ok=True)
    XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                     bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5).save_pretrained(t1)
    m = k2("model.text_encoders").MultilingualCLIP(t1).eval()  # in 1024, out 640: the original's defaults
    fill(m)
    torch.save(m.state_dict(), os.path.join(t1, "pytorch_model.bin"))
    del m
    cfg = MT5Config(**MT5_SMALL)
    cfg.architectures = ["MT5EncoderModel"]
    m = MT5EncoderModel(cfg).eval()
    fill(m)
    cfg.to_json_file(os.path.join(t2, "config.json"))
    torch.save(m.state_dict(), os.path.join(t2, "pytorch_model.bin"))
    del m
    mc = dict(k2("configs").CONFIG_2_0["model_config"], up=False, inpainting=False, cache_text_emb=False)
    m = k2("model.model_creation").create_model(**mc).eval()
    fill(m)
    torch.save(m.state_dict(), os.path.join(a.dir, "Kandinsky-2-0.pt"))
    print(f"wrote {a.dir}: U-Net {sum(p.numel() for p in m.parameters())} parameters")


def lcg_ids():
    seed, ids, mask = 1, [], []
    for i in range(2 * 77):
        seed = (seed * 1664525 + 1013904223) & 0xFFFFFFFF
        pad = i >= 77 + 20
        ids.append(1 if pad else 4 + (seed >> 8) % 249996)
        mask.append(0 if pad else 1)
    return torch.tensor(ids).view(2, 77), torch.tensor(mask).view(2, 77)


def timed(op, size, reps, fn, a):
    times = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        fn()
        if r:
            times.append(time.perf_counter() - t0)
        print(f"  {op} rep {r - 1}: {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    print(json.dumps({"impl": impl_label(a.autocast), "op": op, "size": size, "batch": 2, "threads": a.threads,
                      "median_ms": round(c_median(times) * 1e3, 1), "min_ms": round(min(times) * 1e3, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}), flush=True)


def run(a):
    from transformers import MT5EncoderModel
    k2 = original(a.kandinsky2)
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, autocast bf16 {a.autocast}", file=sys.stderr)
    ids, mask = lcg_ids()
    t1, t2 = os.path.join(a.dir, "text_encoder1"), os.path.join(a.dir, "text_encoder2")
    with torch.inference_mode(), precision(a.autocast):
        m = k2("model.text_encoders").MultilingualCLIP(t1).eval()
        m.load_state_dict(torch.load(os.path.join(t1, "pytorch_model.bin")))
        out = {}
        timed("k20_mclip", 77, a.reps, lambda: out.update(r=m(ids, mask)), a)
        pooled, full1 = out["r"]
        del m
        m = MT5EncoderModel.from_pretrained(t2, torch_dtype=torch.float32).eval()
        ids2 = torch.where(mask.bool(), ids % 250100, torch.zeros_like(ids))
        timed("k20_mt5", 77, a.reps, lambda: out.update(h=m(input_ids=ids2, attention_mask=mask)["last_hidden_state"]), a)
        full2 = out["h"]
        del m
        mc = dict(k2("configs").CONFIG_2_0["model_config"], up=False, inpainting=False, cache_text_emb=False)
        u = k2("model.model_creation").create_model(**mc).eval()
        u.load_state_dict(torch.load(os.path.join(a.dir, "Kandinsky-2-0.pt")))
        lat = a.latents
        x = torch.randn(2, 4, lat, lat)
        t = torch.tensor([500.0, 500.0])
        timed("k20_unet_step", lat, a.reps,
              lambda: u(x, t, full_emb1=full1.float(), pooled_emb1=pooled.float(), full_emb2=full2.float()), a)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["make", "run"])
    ap.add_argument("dir")
    ap.add_argument("--kandinsky2", required=True, help="a checkout of ai-forever/Kandinsky-2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--latents", type=int, default=64)
    add_run_args(ap)
    a = ap.parse_args()
    make(a) if a.cmd == "make" else run(a)
