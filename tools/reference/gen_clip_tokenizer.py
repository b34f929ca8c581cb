#!/usr/bin/env python3
"""Writes the CLIP tokenizer fixtures of tests/test_clip_tokenizer.c to tests/data/clip_tokenizer/.

The reference is transformers' CLIPTokenizer (5.24, backed by `tokenizers`), loaded with
`CLIPTokenizer.from_pretrained(folder)` exactly as the Kandinsky prior pipelines load theirs.

    bpe/vocab.json, bpe/merges.txt   the real OpenAI CLIP vocabulary (49408 tokens, 48894 merges),
                                     converted from ../shared/data/clip/bpe_simple_vocab_16e6.txt.gz
                                     the way simple_tokenizer.py builds it (stored once; every
                                     folder below links to them)
    pad_excl/                        tokenizer folder like the 2.1 prior: pad_token "!" (id 0)
    pad_eot/                         tokenizer folder like the 2.2 prior: pad_token "<|endoftext|>"
                                     (both in the transformers-4 format the Kandinsky folders have:
                                     bos/eos/unk as AddedToken objects with normalized = true)
    corpus.txt                       the prompts, one JSON string per line
    corpus.safetensors               I64 [N, 77] ids_pad_excl, ids_pad_eot (padding="max_length",
                                     max_length=77, truncation=True) and I64 [N] len_pad_excl,
                                     len_pad_eot: the attention mask, which is checked here to be
                                     len ones then zeros, stored as len (safetensors has no small
                                     integer type in our reader, and [N, 77] I64 masks would double
                                     the file)
    configs/<name>/                  tokenizer_config.json / special_tokens_map.json variants that
                                     exercise how transformers resolves special tokens and flags
    configs/expected.json            {name: {"pad_id", "bos_id", "eos_id", "model_max_length",
                                     "ids": [[...] per probe]}} (probes: configs/probes.txt)
    unicode.txt                      per code point: the pre-tokeniser class (\\p{L}, \\p{N}, \\s or
                                     other) as runs, and the normaliser's output where it is not
                                     the code point itself

    ~/.venvs/kd-ref/bin/python tools/reference/gen_clip_tokenizer.py [--shared ../shared] [--out tests/data/clip_tokenizer]

No file depends on dict order or time, so two runs give identical files.
"""
import argparse
import gzip
import json
import os
import random
import struct
import sys

import numpy as np
from tokenizers import Regex, pre_tokenizers
from transformers import CLIPTokenizer

MAX_LEN = 77


# ------------------------------------------------------------------------------------------------
# vocabulary

def byte_symbols():
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    syms, n = {}, 0
    for b in range(256):
        if b in printable:
            syms[b] = chr(b)
        else:
            syms[b] = chr(256 + n)
            n += 1
    # simple_tokenizer.py lists the printable bytes first, then the others
    order = printable + [b for b in range(256) if b not in printable]
    return [syms[b] for b in order]


def convert_openai(gz_path, out_dir):
    lines = gzip.open(gz_path).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    vocab = byte_symbols()
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({v: i for i, v in enumerate(vocab)}, f, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(a + " " + b + "\n")
    return len(vocab), len(merges)


def added_token(content, normalized=True):
    # what transformers 4 wrote into the Kandinsky prior folders
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": normalized,
            "rstrip": False, "single_word": False}


def stm_token(content, normalized=True):
    return {"content": content, "lstrip": False, "normalized": normalized, "rstrip": False, "single_word": False}


def write_folder(folder, bpe_dir, config, stm=None):
    os.makedirs(folder, exist_ok=True)
    for name in ("vocab.json", "merges.txt"):
        link = os.path.join(folder, name)
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.relpath(os.path.join(bpe_dir, name), folder), link)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            os.remove(p)
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    if stm is not None:
        with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as f:
            json.dump(stm, f, indent=2, ensure_ascii=False)
            f.write("\n")


def kandinsky_config(pad):
    cfg = {
        "add_prefix_space": False,
        "bos_token": added_token("<|startoftext|>"),
        "do_lower_case": True,
        "eos_token": added_token("<|endoftext|>"),
        "errors": "replace",
        "model_max_length": MAX_LEN,
        "pad_token": pad,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": added_token("<|endoftext|>"),
    }
    stm = {
        "bos_token": stm_token("<|startoftext|>"),
        "eos_token": stm_token("<|endoftext|>"),
        "pad_token": pad,
        "unk_token": stm_token("<|endoftext|>"),
    }
    return cfg, stm


# Variants of tokenizer_config.json / special_tokens_map.json. Which flag wins for a token named
# twice, whether special_tokens_map.json or tokenizer_config.json wins, what added_tokens_decoder
# changes: each answer changes the ids of the probes.
def config_variants():
    AT, ST = added_token, stm_token
    dec = lambda c, norm, special=True: {"content": c, "lstrip": False, "normalized": norm, "rstrip": False,
                                         "single_word": False, "special": special}
    base = {"bos_token": AT("<|startoftext|>"), "eos_token": AT("<|endoftext|>"),
            "unk_token": AT("<|endoftext|>"), "model_max_length": MAX_LEN}
    return {
        "no_config": None,
        "legacy_pad_excl": (dict(base, pad_token="!"), None),
        "legacy_pad_eot_str": (dict(base, pad_token="<|endoftext|>"), None),
        "legacy_pad_eot_obj": (dict(base, pad_token=AT("<|endoftext|>", False)), None),
        "all_strings": ({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                         "pad_token": "<|endoftext|>", "model_max_length": MAX_LEN}, None),
        "pad_excl_normalized": (dict(base, pad_token=AT("!", True)), None),
        "stm_only": ({"model_max_length": MAX_LEN},
                     {"pad_token": "!", "bos_token": ST("<|startoftext|>"), "eos_token": ST("<|endoftext|>")}),
        "stm_overrides_config": ({"model_max_length": MAX_LEN, "pad_token": "!"}, {"pad_token": "<|endoftext|>"}),
        "unk_last": ({"eos_token": AT("<|endoftext|>", True), "unk_token": AT("<|endoftext|>", False),
                      "pad_token": AT("<|endoftext|>", True), "model_max_length": MAX_LEN}, None),
        "unk_last_2": ({"eos_token": AT("<|endoftext|>", False), "unk_token": AT("<|endoftext|>", True),
                        "pad_token": AT("<|endoftext|>", False), "model_max_length": MAX_LEN}, None),
        "str_then_obj": ({"eos_token": "<|endoftext|>", "unk_token": AT("<|endoftext|>"), "pad_token": "!",
                          "model_max_length": 1e30}, None),
        "decoder": ({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
                     "pad_token": "!", "model_max_length": MAX_LEN,
                     "added_tokens_decoder": {"0": dec("!", False), "49406": dec("<|startoftext|>", True),
                                              "49407": dec("<|endoftext|>", False)}},
                    {"pad_token": "<|endoftext|>"}),  # ignored: added_tokens_decoder is present
        "decoder_beats_objects": ({"bos_token": AT("<|startoftext|>", False), "eos_token": AT("<|endoftext|>"),
                                   "unk_token": AT("<|endoftext|>"), "pad_token": AT("<|endoftext|>"),
                                   "added_tokens_decoder": {"49406": dec("<|startoftext|>", True),
                                                            "49407": dec("<|endoftext|>", False)}}, None),
        "decoder_default_normalized": ({"pad_token": "<|endoftext|>",
                                        "added_tokens_decoder": {"49407": {"content": "<|endoftext|>"}}}, None),
        "pad_token_word": ({"pad_token": "cat</w>", "model_max_length": MAX_LEN}, None),
        # "normalized" left out: it means "not special", decided after transformers has marked the
        # tokens that name a special token as special
        "objects_without_normalized": ({"bos_token": {"__type": "AddedToken", "content": "<|startoftext|>"},
                                        "eos_token": {"__type": "AddedToken", "content": "<|endoftext|>"},
                                        "pad_token": "!"}, None),
        "stm_objects_without_normalized": ({}, {"eos_token": {"content": "<|endoftext|>"},
                                                "unk_token": {"content": "<|endoftext|>", "normalized": True}}),
        "decoder_plain_word": ({"pad_token": "<|endoftext|>",
                                "added_tokens_decoder": {"320": {"content": "a</w>"},
                                                         "49407": dec("<|endoftext|>", True)}}, None),
    }


PROBES = [
    "a photo of a cat!",
    "hi!!! world",
    "<|ENDOFTEXT|> and <|Startoftext|>",
    "x<|endoftext|>y <|startoftext|>z",
    "CAT cat cat</w> Cat",
    "",
    "  lots   of\tspace\n",
    "<|endoftext|>" * 3 + "!",
    "A</w> xa</w>y a</w>",
]


# ------------------------------------------------------------------------------------------------
# corpus

def corpus():
    P = []
    add = P.append
    # English
    for s in [
        "a photo of a cat", "A Photo Of A Cat", "A PHOTO OF A CAT", "red cat, 4k photo",
        "A alien cheeseburger creature eating itself, claymation, cinematic, moody lighting",
        "portrait of a young woman, oil on canvas, by Rembrandt, highly detailed, trending on artstation",
        "low quality, bad quality", "a beautiful landscape at sunset, golden hour, 8k, hdr, unreal engine",
        "an astronaut riding a horse on mars", "the quick brown fox jumps over the lazy dog",
        "Hello, World!", "hello world!!!", "What?! No way!!", "wow!", "!", "!!", "!!!!!!!!!!", "! ! !",
        "a!b!c", "end.", "...", "--", "a--b", "(((masterpiece))), [[best quality]], {{detailed}}",
        "a cat:1.2, (dog:0.8)", "#hashtag @user https://example.com/path?q=1&r=2",
        "email me at someone@example.org", "C:\\Users\\name\\file.txt", "/usr/local/bin", "snake_case_words",
        "camelCaseWords", "kebab-case-words", "x=y+z*2/3", "100% real", "$5.99 or €4,50 or £3 or ¥100",
        "e=mc^2", "1+1=2", "3.14159", "2024-01-31", "12:30pm", "1st 2nd 3rd 4th", "0123456789",
        "9999999999999999", "v1.2.3-beta", "A4 paper, 210x297mm", "R2-D2 and C-3PO",
    ]:
        add(s)
    # contractions and apostrophes
    for s in [
        "don't", "DON'T", "Don't", "it's", "IT'S", "It'S", "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d",
        "'RE", "'Ve", "'LL", "'D", "'M", "we're they've I'm you'll he'd", "WE'RE THEY'VE I'M YOU'LL HE'D",
        "rock'n'roll", "y'all", "ma'am", "o'clock", "'tis", "''s", "'''", "'", "' s", "'st", "'ss", "'res",
        "'lls", "'x", "'", "the cat's toy", "the cats' toys", "can't won't shouldn't've",
        "it’s (curly apostrophe)", "don\u2019t", "l'amour", "aujourd'hui", "'hello'", "\"quoted\" 'single'",
        "'s's's", "x's", "5's", "!'s", "''", "a'", "'a",
    ]:
        add(s)
    # HTML entities (transformers 5 does not unescape them)
    for s in [
        "&amp;", "&#39;", "&lt;cat&gt;", "Tom &amp; Jerry", "rock &#39;n&#39; roll", "&quot;hi&quot;",
        "&nbsp;space", "&amp;amp;", "&#x27;", "&copy; 2024", "<b>bold</b>", "a &lt; b &gt; c",
    ]:
        add(s)
    # special-token strings inside prompts
    for s in [
        "<|endoftext|>", "<|startoftext|>", "a <|endoftext|> b", "<|ENDOFTEXT|>", "<|EndOfText|>",
        "<|startoftext|>a cat<|endoftext|>", "<|endoftext|><|endoftext|>", "<|endoftext", "endoftext|>",
        "<| endoftext |>", "<<|endoftext|>>", "!<|endoftext|>!", "<|startoftext|>!", "<|endoftext|>" * 40,
        "x" + "<|endoftext|>" * 80,
    ]:
        add(s)
    # white space
    for s in [
        "", " ", "   ", "\t", "\n", "\r\n", " \t\n\r\x0b\x0c", "  leading", "trailing  ", "  both  ",
        "multiple    spaces   here", "tabs\tbetween\twords", "new\nlines\nhere", "mixed \t\n whitespace",
        "nbsp\u00a0between", "ideographic\u3000space", "en\u2002em\u2003thin\u2009hair\u200a",
        "line\u2028sep\u2029para", "nel\u0085char", "ogham\u1680space", "narrow\u202fnbsp",
        "math\u205fspace", "mongolian\u180evowel", "zero\u200bwidth", "bom\ufeffinside", "\ufeffbom first",
        "soft\u00adhyphen", "zwj\u200dzwnj\u200c", "rtl\u200fmark\u200eltr", "word\u2060joiner",
        " " * 200 + "after many spaces",
    ]:
        add(s)
    # control characters
    for s in ["nul\x00byte", "\x00", "bell\x07", "esc\x1b[31mred\x1b[0m", "del\x7f", "c1\x80\x9f",
              "\x01\x02\x03", "a\x0bb\x0cc", "back\bspace"]:
        add(s)
    # accented Latin, combining marks, NFC
    for s in [
        "café crème brûlée", "CAFÉ CRÈME", "naïve façade", "Ångström", "Straße STRASSE ẞ", "Ærøskøbing",
        "Łódź", "Žluťoučký kůň", "İstanbul", "ISTANBUL ıi", "ǅemal ǈ ǋ", "ĳ Ĳ", "ﬁne ﬂow ﬀ",
        "cafe\u0301", "CAFE\u0301", "e\u0301\u0301", "a\u0323\u0301", "a\u0301\u0323", "\u0301 leading mark",
        "o\u0308\u0304", "\u212b angstrom sign", "\u2126 ohm sign", "\u212a kelvin sign", "\u00c5 vs A\u030a",
        "\u1e9b\u0323", "q\u0307\u0323", "ñ vs n\u0303", "Ǖ ǖ", "Việt Nam", "Tiếng Việt có dấu",
        "zalgo t\u0336\u0337e\u0338\u0335x\u0334t", "x" + "\u0301" * 30,
    ]:
        add(s)
    # scripts
    for s in [
        "Москва — столица России", "ПРИВЕТ мир", "Ёлка и ёжик", "кот, собака; мышь!",
        "Ελληνικά: ΟΔΟΣ, οδός, ΣΟΦΟΣ", "Σ σ ς", "ΆΈΉ ά έ ή", "αβγ ΑΒΓ",
        "一只可爱的猫", "東京タワー", "ひらがな カタカナ", "한국어 텍스트", "한 한", "中文，标点。",
        "「括弧」『二重』", "全角ＡＢＣ　１２３！", "ｈｅｌｌｏ　ｗｏｒｌｄ", "半角ｶﾀｶﾅ",
        "مرحبا بالعالم", "العربية ١٢٣ ٤٥٦", "שלום עולם", "עִבְרִית",
        "नमस्ते दुनिया", "हिन्दी ४२", "বাংলা ভাষা", "தமிழ்", "ไทย ภาษา", "ລາວ", "ქართული", "Հայերեն",
        "አማርኛ", "ᚠᚢᚦ runes", "𐌰𐌱𐌲 gothic", "𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 𝔉𝔯𝔞𝔨", "ⅰⅱⅲ Ⅻ ↉", "½ ¾ ⅓ ²³¹ ₁₂",
        "⁰¹²³⁴⁵⁶⁷⁸⁹", "١٢٣٤٥", "۱۲۳", "߀߁", "०१२", "১২৩", "๑๒๓", "〇一二三", "𝟎𝟏𝟐", "①②③ ⑴⑵",
        "ǅ ǈ ǋ ǲ titlecase", "ǰ ΐ ΰ", "Ꭰ Ꭱ cherokee ꭰ", "Ⴀ Ⴁ", "Ა Ბ mtavruli", "ᲀ ᲁ", "Ɐ ⱥ ⱦ",
        "𐐀𐐁 deseret 𐐨", "𐒰 osage", "𞤀 adlam 𞤢", "𖹀 medefaidrin", "𑢠 warang",
        "𐗀𐗁𐗂 todhri", "𐵐𐵑𐵒 garay 𐵰", "𖺠𖺡 beria", "Ᲊ Ა", "Ꟍ ꟍ Ꟛ ꟛ Ƛ ƛ", "𞓐𞓑 ol onal 𞓱𞓲",
        "𖵀𖵁 kirat 𖵰𖵱", "𑛐𑛑 myanmar ext", "𜳰𜳱 outlined digits", "𮯰𮯱 cjk ext i", "𓑠𓑡 hieroglyphs ext",
        "\U000e0001\U000e0041 tags", "\U0010fffd private", "\ue000 pua", "\uffff\ufffe nonchars",
        "\U0001fbf0\U0001fbf9 segmented digits", "\u0378 unassigned", "\U0003fffd plane 3",
    ]:
        add(s)
    # emoji
    for s in [
        "😀", "😀😃😄", "a cat 🐱 and a dog 🐶", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦 family", "👩🏽‍💻 coder",
        "🏳️‍🌈 flag", "🇺🇸🇯🇵🇩🇪 flags", "1️⃣ 2️⃣ #️⃣", "❤️ ❤ ♥️", "☃️☃", "🧑‍🤝‍🧑", "🫠🫨🪿",
        "✨🔥💯", "emoji🙂inside🙂words", "🙂!", "!🙂", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 scotland",
    ]:
        add(s)
    # punctuation runs and symbols
    for s in [
        "?!?!?!", "......", "…", "———", "--->", "<-->", "***bold***", "___", "~~~", "^^^", "|||", "\\\\",
        "@@@###$$$", "%%%", "(){}[]<>", "«guillemets» „low“ ‚single‘", "¡Hola! ¿Qué?", "・・・", "※★☆♪",
        "→←↑↓", "∑∫∂√∞≠≤≥", "©®™", "°C °F", "±×÷", "§¶†‡", "·•‣", "℃ ℉ №", "a—b–c", "x/y\\z",
    ]:
        add(s)
    # mixed scripts
    for s in [
        "cat кот 猫 قط", "Tokyo東京Tokyo", "abcабв123", "mixedКириллицаLatin", "日本語とEnglish混在",
        "café кафе καφές 咖啡 カフェ", "ДЖОН'S", "naïve-δοκιμή-テスト", "α1β2γ3", "x²+y²=z²",
        "ﾊﾝｶｸ and ＺＥＮＫＡＫＵ", "Ο Ν Ο Μ Α" + "ΣΣ", "İİİ", "ﬃ ﬄ ﬅ",
    ]:
        add(s)
    # long prompts (> 77 tokens) and exact boundaries
    words = ("a highly detailed matte painting of an ancient castle on a cliff above a stormy sea "
             "with lightning bolts and crows flying around the towers at midnight").split()
    for n in (30, 70, 73, 74, 75, 76, 77, 78, 100, 300):
        add(" ".join((words * 20)[:n]))
    add("cat " * 74 + "dog")
    add("cat " * 75 + "dog")
    add("cat " * 76 + "dog")
    add("!" * 76)
    add("! " * 76)
    add("hello! " * 40)
    add("Москва " * 60)
    add("猫" * 100)
    add("😀" * 100)
    add("1234567890" * 20)
    add("supercalifragilisticexpialidocious" * 10)
    add("ab" * 2000)
    # long texts that cross the C side's 4096-byte normalisation chunks within 75 tokens
    add(" " * 5000 + "cat " * 3 + "dog")
    add("x" * 5000 + " dog")
    add("a" + "\u0301" * 3000 + " b c")
    add("\u3000" * 3000 + "猫 dog")
    add(("é" * 2000 + " ") * 3)
    add(" " * 4095 + "e\u0301 cat")
    add(" " * 4096 + "e\u0301 cat")
    add("word " * 1000)
    add(" " * 5000 + "<|endoftext|>" + " " * 5000 + "tail")
    add("!" * 5000)
    add("\t\n" * 3000 + "end")
    add("ab" * 10000)
    # random strings from mixed pools (fixed seed)
    rng = random.Random(20261126)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789", " \t\n\u00a0\u3000", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "'sStTrReEvVmMlLdD",
        "éÉàÀüÜßẞøØçÇıİ\u0301\u0308\u0323", "абвгдеёжзийАБВГДЕЁЖЗИЙ", "αβγδεζσςΣΩΆ", "猫犬鳥日本語中文한국어",
        "ابتثجحخ١٢٣", "हिन्दी४२", "😀🐱👍🏽\u200d❤️🇺🇸", "½²Ⅻ①", "<|>", "\x00\x01\x1f\x7f\u200b\ufeff",
        "ﬁＡ１！ｶ", "𐗀𐵐𐵰𖺠Ꟍ",
    ]
    for i in range(170):
        n = rng.randint(1, 40)
        k = rng.sample(range(len(pools)), rng.randint(1, 4))
        s = "".join(rng.choice(pools[rng.choice(k)]) for _ in range(n))
        if i % 17 == 0:
            s = s + "<|endoftext|>" + s
        add(s)
    return P


# ------------------------------------------------------------------------------------------------
# writers

def write_safetensors(path, tensors):
    """Deterministic writer (sorted names, fixed header, 8-byte padding): I64 arrays only."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<i8")
        b = a.tobytes()
        header[name] = {"dtype": "I64", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def unicode_table(path, tok):
    cps = [c for c in range(0x110000) if not (0xD800 <= c <= 0xDFFF)]
    s = "".join(chr(c) for c in cps)

    def matched(rx):
        sp = pre_tokenizers.Split(Regex(rx), behavior="removed", invert=True)
        out = set()
        for piece, _ in sp.pre_tokenize_str(s):
            out.update(ord(ch) for ch in piece)
        return out

    L, N, S = matched(r"[\p{L}]"), matched(r"[\p{N}]"), matched(r"\s")
    norm = tok.backend_tokenizer.normalizer
    with open(path, "w", encoding="ascii") as f:
        f.write("# Per code point (surrogates excluded): C <start> <class> starts a run of one class of the\n"
                "# CLIP pre-tokeniser regex (L = \\p{L}, N = \\p{N}, S = \\s, O = other) that lasts to the next\n"
                "# C line; M <cp> <cps> gives the normaliser's output (NFC, \\s+ -> ' ', lowercase) where it\n"
                "# is not the code point itself. Hex. From gen_clip_tokenizer.py.\n")
        prev = None
        for c in cps:
            k = "L" if c in L else "N" if c in N else "S" if c in S else "O"
            if k != prev:
                f.write("C %X %s\n" % (c, k))
                prev = k
        for c in cps:
            o = norm.normalize_str(chr(c))
            if o != chr(c):
                f.write("M %X %s\n" % (c, ",".join("%X" % ord(x) for x in o)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="tests/data/clip_tokenizer")
    args = ap.parse_args()
    out = args.out
    bpe_dir = os.path.join(out, "bpe")
    nv, nm = convert_openai(os.path.join(args.shared, "data/clip/bpe_simple_vocab_16e6.txt.gz"), bpe_dir)
    print("vocab %d, merges %d" % (nv, nm))

    variants = {}
    for name, pad in (("pad_excl", "!"), ("pad_eot", "<|endoftext|>")):
        cfg, stm = kandinsky_config(pad)
        write_folder(os.path.join(out, name), bpe_dir, cfg, stm)
        variants[name] = CLIPTokenizer.from_pretrained(os.path.join(out, name))
        t = variants[name]
        print(name, "pad", repr(t.pad_token), t.pad_token_id, "max", t.model_max_length,
              {k: (v.content, v.normalized) for k, v in t.added_tokens_decoder.items()})

    prompts = corpus()
    with open(os.path.join(out, "corpus.txt"), "w", encoding="utf-8") as f:
        for p in prompts:
            f.write(json.dumps(p, ensure_ascii=True) + "\n")
    tensors = {}
    for name, t in variants.items():
        enc = t(prompts, padding="max_length", max_length=MAX_LEN, truncation=True)
        ids = np.array(enc["input_ids"], dtype=np.int64)
        mask = np.array(enc["attention_mask"], dtype=np.int64)
        assert ids.shape == mask.shape == (len(prompts), MAX_LEN)
        n = mask.sum(axis=1)
        assert (mask == (np.arange(MAX_LEN)[None, :] < n[:, None])).all(), "mask is not a prefix of ones"
        tensors["ids_" + name] = ids
        tensors["len_" + name] = n.astype(np.int64)
    write_safetensors(os.path.join(out, "corpus.safetensors"), tensors)
    diff = int((tensors["ids_pad_excl"] != tensors["ids_pad_eot"]).any(axis=1).sum())
    print("corpus: %d prompts, %d tokenise differently with the two pad tokens" % (len(prompts), diff))

    cdir = os.path.join(out, "configs")
    os.makedirs(cdir, exist_ok=True)
    with open(os.path.join(cdir, "probes.txt"), "w", encoding="utf-8") as f:
        for p in PROBES:
            f.write(json.dumps(p, ensure_ascii=True) + "\n")
    expected = {}
    for name, v in config_variants().items():
        folder = os.path.join(cdir, name)
        if v is None:
            write_folder(folder, bpe_dir, {})
            os.remove(os.path.join(folder, "tokenizer_config.json"))
        else:
            write_folder(folder, bpe_dir, v[0], v[1])
        t = CLIPTokenizer.from_pretrained(folder)
        mml = t.model_max_length if t.model_max_length < 2**31 else -1
        expected[name] = {
            "pad_id": t.pad_token_id, "bos_id": t.bos_token_id, "eos_id": t.eos_token_id, "model_max_length": mml,
            "ids": [t(p, padding="max_length", max_length=MAX_LEN, truncation=True)["input_ids"] for p in PROBES],
        }
    with open(os.path.join(cdir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")

    unicode_table(os.path.join(out, "unicode.txt"), variants["pad_eot"])
    print("wrote", out)


if __name__ == "__main__":
    sys.exit(main())
