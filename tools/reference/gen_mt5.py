#!/usr/bin/env python3
"""Writes the fixtures of tests/test_mt5.c to tests/data/mt5/: Kandinsky 2.0's second text encoder,
transformers' MT5EncoderModel, and its tokenizer, T5Tokenizer, as the original code
(ai-forever/Kandinsky-2, kandinsky2_model.py) calls them: max_length 77, padding "max_length",
truncation, attention mask.

    tokenizer/spiece.model        a 2000-piece SentencePiece unigram model with T5's settings (pad 0,
                                  eos 1, unk 2, no bos, nmt_nfkc, byte fallback off) trained on
                                  tests/data/xlmr_tokenizer/corpus.txt (the published mT5 model cannot
                                  be downloaded here); no tokenizer_config.json: 100 sentinels
    tokenizer_fast.txt            per prompt of the corpus (and the extra prompts below) the ids of the
                                  mask-1 positions that transformers 5's T5Tokenizer gives (… </s>)
    tokenizer_slow.txt            the same from sentencepiece itself (transformers 4's slow T5Tokenizer:
                                  encode between special tokens, sentinel i = pieces + 99 - i, </s>)
    extra.txt                     the extra prompts, one JSON string per line
    text_encoder2/                a tiny random MT5EncoderModel (d_model 32, 3 heads of 8: the inner
                                  width 24 differs from d_model as in mt5-small, d_ff 37, 2 layers,
                                  gated-gelu, 32 buckets / distance 128) saved as pytorch_model.bin,
                                  as the published text_encoder2/ is
    cases.safetensors             b1 / b2: input_ids, attention_mask, last_hidden_state for one prompt
                                  and for [prompt, ""] (the original's cond / uncond batch); buckets:
                                  the relative-position bucket of every distance -300..300

    ~/.venvs/kd-ref/bin/python tools/reference/gen_mt5.py [--out tests/data/mt5]
"""
import argparse
import json
import os
import shutil
import tempfile

import sentencepiece as spm
import torch
from safetensors.torch import save_file
from transformers import MT5Config, MT5EncoderModel, T5Tokenizer
from transformers.models.t5.modeling_t5 import T5Attention

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA = ["a red cat on a mat", "", "   ", "hi</s>x", "<pad>", "x <unk> y", "<extra_id_0> sentinel <extra_id_99>",
         "<extra_id_100>", "\u2581hi", "Ａ\u0301 ñ", "Красная кошка на ковре", "一只红色的猫", "tab\tand\nnewline",
         "word " * 100]


def train(corpus, folder):
    lines = [json.loads(l) for l in open(corpus, encoding="utf-8")]
    with tempfile.TemporaryDirectory() as tmp:
        txt = os.path.join(tmp, "c.txt")
        open(txt, "w", encoding="utf-8").write("\n".join(lines * 3))
        spm.SentencePieceTrainer.train(input=txt, model_prefix=os.path.join(tmp, "sp"), vocab_size=2000,
                                       model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                       normalization_rule_name="nmt_nfkc", num_threads=1, minloglevel=2,
                                       input_sentence_size=0, shuffle_input_sentence=False)
        os.makedirs(folder, exist_ok=True)
        shutil.copy(os.path.join(tmp, "sp.model"), os.path.join(folder, "spiece.model"))
    return lines


def slow_ids(sp, text, n_pieces, extra=100):
    """transformers 4's slow T5Tokenizer: split out the special / sentinel tokens, encode the rest."""
    specials = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    specials.update({f"<extra_id_{i}>": n_pieces + extra - 1 - i for i in range(extra)})
    out, i, start = [], 0, 0
    while i < len(text):
        hit = None
        for s in specials:
            if text.startswith(s, i) and (hit is None or len(s) > len(hit)):
                hit = s
        if hit:
            if start < i:
                out += sp.encode(text[start:i])
            out.append(specials[hit])
            i += len(hit)
            start = i
        else:
            i += 1
    if start < len(text):
        out += sp.encode(text[start:])
    return out[:76] + [1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "data", "mt5"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    tokdir = os.path.join(a.out, "tokenizer")
    lines = train(os.path.join(HERE, "..", "..", "tests", "data", "xlmr_tokenizer", "corpus.txt"), tokdir)
    tok = T5Tokenizer.from_pretrained(tokdir)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(tokdir, "spiece.model"))
    n_pieces = sp.get_piece_size()
    assert len(tok) == n_pieces + 100, len(tok)
    with open(os.path.join(a.out, "extra.txt"), "w", encoding="utf-8") as f:
        for s in EXTRA:
            f.write(json.dumps(s) + "\n")
    prompts = lines + EXTRA
    with open(os.path.join(a.out, "tokenizer_fast.txt"), "w") as ff, \
         open(os.path.join(a.out, "tokenizer_slow.txt"), "w") as fs:
        for s in prompts:
            r = tok(s, max_length=77, padding="max_length", truncation=True, return_attention_mask=True)
            ids, mask = r["input_ids"], r["attention_mask"]
            n = sum(mask)
            assert mask == [1] * n + [0] * (77 - n) and ids[n:] == [0] * (77 - n)
            ff.write(" ".join(map(str, ids[:n])) + "\n")
            slow = slow_ids(sp, s, n_pieces)
            fs.write(("=" if slow == ids[:n] else " ".join(map(str, slow))) + "\n")

    cfg = MT5Config(vocab_size=n_pieces + 100, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=3,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, tie_word_embeddings=False,
                    dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    m = MT5EncoderModel(cfg).eval()
    g = torch.Generator().manual_seed(2020)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.ndim == 1:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif "relative_attention_bias" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    enc = os.path.join(a.out, "text_encoder2")
    os.makedirs(enc, exist_ok=True)
    cfg.architectures = ["MT5EncoderModel"]
    cfg.to_json_file(os.path.join(enc, "config.json"))
    # what transformers 4's save_pretrained wrote for the published file: a torch.save'd state dict
    # (the tied encoder.embed_tokens.weight shares shared.weight's storage)
    torch.save(m.state_dict(), os.path.join(enc, "pytorch_model.bin"))
    t = {}
    for tag, texts in {"b1": [lines[3]], "b2": [lines[7], ""]}.items():
        r = tok(texts, max_length=77, padding="max_length", truncation=True, return_attention_mask=True,
                return_tensors="pt")
        with torch.no_grad():
            h = m(input_ids=r["input_ids"], attention_mask=r["attention_mask"])["last_hidden_state"]
        t[f"{tag}.input_ids"] = r["input_ids"]
        t[f"{tag}.attention_mask"] = r["attention_mask"]
        t[f"{tag}.last_hidden_state"] = h.contiguous()
    rel = torch.arange(-300, 301)
    t["buckets"] = T5Attention._relative_position_bucket(rel, bidirectional=True, num_buckets=32,
                                                         max_distance=128).to(torch.int64)
    save_file(t, os.path.join(a.out, "cases.safetensors"))
    print(sorted(os.listdir(enc)), n_pieces)


if __name__ == "__main__":
    main()
