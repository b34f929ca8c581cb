/* CLIP BPE tokenizer against transformers' CLIPTokenizer (fixtures: tools/reference/gen_clip_tokenizer.py):
 * exact ids and attention mask for every corpus prompt with both pad tokens, loaded from the HF
 * folders and from OpenAI's .gz (when ../shared is there); special-token resolution on config
 * variants; every code point's regex class and normalisation; invalid UTF-8; a 10 MB prompt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/config.h"
#include "io/safetensors.h"
#include "testutil.h"
#include "text/clip_tokenizer.h"

#define MAX_LEN 77

typedef struct {
    int n;
    char **s;
    size_t *len;
} lines;

static int read_lines(const char *path, lines *L) {
    size_t n;
    char *text = kt_read_file(path, &n);
    memset(L, 0, sizeof *L);
    if (!text) return 0;
    int cap = 0;
    for (char *p = text; p < text + n;) {
        char *nl = memchr(p, '\n', (size_t)(text + n - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + n - p);
        if (L->n == cap) {
            cap = cap ? cap * 2 : 256;
            L->s = realloc(L->s, (size_t)cap * sizeof *L->s);
            L->len = realloc(L->len, (size_t)cap * sizeof *L->len);
        }
        if (!kt_json_string(p, ll, &L->s[L->n], &L->len[L->n])) {
            fprintf(stderr, "%s: line %d is not a JSON string\n", path, L->n + 1);
            free(text);
            return 0;
        }
        L->n++;
        p = nl ? nl + 1 : text + n;
    }
    free(text);
    return 1;
}

static void free_lines(lines *L) {
    for (int i = 0; i < L->n; i++) free(L->s[i]);
    free(L->s);
    free(L->len);
}

static void print_ids(const char *what, const int32_t *ids, int n) {
    fprintf(stderr, "    %s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

/* Tokenises every corpus prompt and compares with the reference; returns the number of exact matches. */
static int check_corpus(const char *label, const kd_clip_tokenizer *t, const lines *P, const kd_st_file *st,
                        const char *variant) {
    char name[64];
    snprintf(name, sizeof name, "ids_%s", variant);
    const kd_st_tensor *ti = kd_st_find(st, name);
    snprintf(name, sizeof name, "len_%s", variant);
    const kd_st_tensor *tl = kd_st_find(st, name);
    if (!ti || !tl || ti->t.shape[0] != P->n || ti->t.shape[1] != MAX_LEN || tl->t.shape[0] != P->n) {
        TEST_CHECK(0, "%s: corpus.safetensors lacks ids/len for %s with %d prompts", label, variant, P->n);
        return 0;
    }
    int ok_n = 0, shown = 0;
    for (int i = 0; i < P->n; i++) {
        int64_t ref64[MAX_LEN], len64;
        memcpy(ref64, (const int64_t *)ti->t.data + (size_t)i * MAX_LEN, sizeof ref64);
        memcpy(&len64, (const int64_t *)tl->t.data + i, sizeof len64);
        int32_t ids[MAX_LEN], mask[MAX_LEN], ref[MAX_LEN];
        int n_real = -1;
        kd_err e = {0};
        kd_status s = kd_clip_tokenize(t, P->s[i], P->len[i], MAX_LEN, ids, mask, &n_real, &e);
        int ok = s == KD_OK && n_real == (int)len64;
        for (int j = 0; j < MAX_LEN; j++) {
            ref[j] = (int32_t)ref64[j];
            if (s == KD_OK && (ids[j] != ref[j] || mask[j] != (j < len64))) ok = 0;
        }
        ok_n += ok;
        if (!ok && shown++ < 5) {
            fprintf(stderr, "  %s: prompt %d (%zu bytes) differs%s%s\n", label, i, P->len[i], s ? ": " : "",
                    s ? e.msg : "");
            if (s == KD_OK) {
                print_ids("got", ids, n_real < 20 ? n_real : 20);
                print_ids("ref", ref, len64 < 20 ? (int)len64 : 20);
            }
        }
    }
    printf("%s: %d / %d prompts exact (ids and mask)\n", label, ok_n, P->n);
    TEST_CHECK(ok_n == P->n, "%s: %d of %d prompts differ from transformers", label, P->n - ok_n, P->n);
    return ok_n;
}

static void test_config_variants(void) {
    lines probes;
    if (!read_lines(kt_data_path("clip_tokenizer/configs/probes.txt"), &probes)) {
        TEST_CHECK(0, "cannot read configs/probes.txt");
        return;
    }
    size_t n;
    char *text = kt_read_file(kt_data_path("clip_tokenizer/configs/expected.json"), &n);
    cJSON *root = NULL;
    kd_err e = {0};
    if (!text || kd_json_parse(text, n, "expected.json", &root, &e) != KD_OK) {
        TEST_CHECK(0, "cannot read configs/expected.json: %s", e.msg);
        free(text);
        free_lines(&probes);
        return;
    }
    int n_cfg = 0;
    for (const cJSON *v = root->child; v; v = v->next, n_cfg++) {
        char rel[256];
        snprintf(rel, sizeof rel, "clip_tokenizer/configs/%s", v->string);
        kd_clip_tokenizer *t = NULL;
        kd_status s = kd_clip_tokenizer_load_hf(kt_data_path(rel), &t, &e);
        TEST_CHECK(s == KD_OK, "config %s: load: %s", v->string, e.msg);
        if (s != KD_OK) continue;
        int64_t pad, bos, eos, mml;
        kd_json_int(cJSON_GetObjectItemCaseSensitive(v, "pad_id"), &pad);
        kd_json_int(cJSON_GetObjectItemCaseSensitive(v, "bos_id"), &bos);
        kd_json_int(cJSON_GetObjectItemCaseSensitive(v, "eos_id"), &eos);
        kd_json_int(cJSON_GetObjectItemCaseSensitive(v, "model_max_length"), &mml);
        TEST_CHECK(kd_clip_tokenizer_pad_id(t) == pad && kd_clip_tokenizer_bos_id(t) == bos &&
                       kd_clip_tokenizer_eos_id(t) == eos && kd_clip_tokenizer_model_max_length(t) == mml,
                   "config %s: pad/bos/eos/max %d/%d/%d/%d, expected %d/%d/%d/%d", v->string,
                   kd_clip_tokenizer_pad_id(t), kd_clip_tokenizer_bos_id(t), kd_clip_tokenizer_eos_id(t),
                   kd_clip_tokenizer_model_max_length(t), (int)pad, (int)bos, (int)eos, (int)mml);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(v, "ids");
        int i = 0;
        for (const cJSON *row = ids ? ids->child : NULL; row && i < probes.n; row = row->next, i++) {
            int32_t got[MAX_LEN];
            s = kd_clip_tokenize(t, probes.s[i], probes.len[i], MAX_LEN, got, NULL, NULL, &e);
            int ok = s == KD_OK, j = 0;
            for (const cJSON *x = row->child; x && j < MAX_LEN; x = x->next, j++) {
                int64_t r;
                kd_json_int(x, &r);
                if (ok && got[j] != r) ok = 0;
            }
            TEST_CHECK(ok && j == MAX_LEN, "config %s, probe %d: ids differ from transformers%s%s", v->string, i,
                       s ? ": " : "", s ? e.msg : "");
        }
        TEST_CHECK(i == probes.n, "config %s: %d probe rows, expected %d", v->string, i, probes.n);
        kd_clip_tokenizer_free(t);
    }
    printf("special-token resolution: %d config variants checked\n", n_cfg);
    TEST_CHECK(n_cfg >= 10, "only %d config variants", n_cfg);
    cJSON_Delete(root);
    free(text);
    free_lines(&probes);
}

/* Every code point: regex class and the normaliser's output against the reference table. */
static void test_unicode_table(void) {
    size_t n;
    char *text = kt_read_file(kt_data_path("clip_tokenizer/unicode.txt"), &n);
    if (!text) {
        TEST_CHECK(0, "cannot read clip_tokenizer/unicode.txt");
        return;
    }
    char *cls = malloc(0x110000);
    char **norm = calloc(0x110000, sizeof *norm);
    memset(cls, 0, 0x110000);
    unsigned run_start = 0;
    char run_cls = 0;
    for (char *p = text; p < text + n;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        unsigned cp;
        char k;
        char buf[256];
        if (p[0] == 'C' && sscanf(p, "C %X %c", &cp, &k) == 2) {
            for (unsigned c = run_start; run_cls && c < cp && c < 0x110000; c++) cls[c] = run_cls;
            run_start = cp;
            run_cls = k;
        } else if (p[0] == 'M' && sscanf(p, "M %X %255s", &cp, buf) == 2 && cp < 0x110000) {
            char *o = malloc(64);
            size_t k2 = 0;
            for (char *q = strtok(buf, ","); q; q = strtok(NULL, ",")) k2 += kt_put_utf8((uint32_t)strtoul(q, NULL, 16), o + k2);
            o[k2] = '\0';
            norm[cp] = o;
        }
        p = nl ? nl + 1 : text + n;
    }
    for (unsigned c = run_start; c < 0x110000; c++) cls[c] = run_cls;
    int bad_cls = 0, bad_norm = 0, checked = 0;
    for (unsigned c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        checked++;
        int got = kd_clip_char_class(c);
        if (got != cls[c] && bad_cls++ < 5) fprintf(stderr, "  U+%04X: class %c, reference %c\n", c, got, cls[c]);
        char in[4];
        size_t il = kt_put_utf8(c, in);
        char *out = NULL;
        size_t ol = 0;
        kd_err e = {0};
        kd_status s = kd_clip_normalize(in, il, &out, &ol, &e);
        const char *ref = norm[c] ? norm[c] : in;
        size_t rl = norm[c] ? strlen(norm[c]) : il;
        if (s != KD_OK || ol != rl || memcmp(out, ref, rl) != 0) {
            if (bad_norm++ < 5) fprintf(stderr, "  U+%04X: normalised differently (%s)\n", c, s ? e.msg : "bytes differ");
        }
        free(out);
    }
    printf("unicode: %d code points, %d class and %d normalisation differences\n", checked, bad_cls, bad_norm);
    TEST_CHECK(bad_cls == 0, "%d code points in the wrong regex class", bad_cls);
    TEST_CHECK(bad_norm == 0, "%d code points normalised differently", bad_norm);
    for (unsigned c = 0; c < 0x110000; c++) free(norm[c]);
    free(norm);
    free(cls);
    free(text);
}

static void test_invalid_utf8(const kd_clip_tokenizer *t) {
    static const struct { const char *s; size_t n, off; } cases[] = {
        {"\xff", 1, 0},
        {"abc\xc3", 4, 3},                 /* truncated */
        {"a cat \xc0\xaf", 8, 6},          /* overlong '/' */
        {"x\xed\xa0\x80y", 5, 1},          /* surrogate U+D800 */
        {"ok \xf4\x90\x80\x80", 7, 3},     /* U+110000 */
        {"caf\xc3\xa9 \x80", 7, 6},        /* stray continuation byte after valid text */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int32_t ids[MAX_LEN], mask[MAX_LEN];
        for (int j = 0; j < MAX_LEN; j++) ids[j] = mask[j] = -7;
        kd_err e = {0};
        int n_real = -7;
        kd_status s = kd_clip_tokenize(t, cases[i].s, cases[i].n, MAX_LEN, ids, mask, &n_real, &e);
        char want[64];
        snprintf(want, sizeof want, "byte offset %zu", cases[i].off);
        TEST_CHECK(s == KD_ERR_INVALID_ARG && strstr(e.msg, want) != NULL,
                   "invalid UTF-8 case %zu: status %s, message '%s' (want '%s')", i, kd_status_str(s), e.msg, want);
        TEST_CHECK(ids[0] == -7 && mask[0] == -7 && n_real == -7, "invalid UTF-8 case %zu: outputs were written", i);
        if (i == 0) printf("invalid UTF-8 message: %s\n", e.msg);
    }
}

static void test_edges(const kd_clip_tokenizer *eot, const kd_clip_tokenizer *excl) {
    int32_t ids[MAX_LEN], mask[MAX_LEN];
    int n_real = 0;
    kd_err e = {0};
    /* only spaces (and other white space) */
    const char *sp = "          \t \n \xe3\x80\x80 ";
    TEST_CHECK(kd_clip_tokenize(eot, sp, strlen(sp), MAX_LEN, ids, mask, &n_real, &e) == KD_OK, "spaces: %s", e.msg);
    int ok = n_real == 2 && ids[0] == 49406 && ids[1] == 49407 && mask[0] == 1 && mask[1] == 1;
    for (int j = 2; j < MAX_LEN; j++) ok &= ids[j] == 49407 && mask[j] == 0;
    TEST_CHECK(ok, "a prompt of only spaces: expected [BOS, EOS] + pad 49407");
    TEST_CHECK(kd_clip_tokenize(excl, sp, strlen(sp), MAX_LEN, ids, mask, &n_real, &e) == KD_OK && n_real == 2 &&
                   ids[2] == 0 && ids[MAX_LEN - 1] == 0,
               "a prompt of only spaces, pad '!': expected pad id 0");
    /* empty text, NULL allowed with len 0 */
    TEST_CHECK(kd_clip_tokenize(eot, NULL, 0, MAX_LEN, ids, mask, &n_real, &e) == KD_OK && n_real == 2,
               "empty prompt: %s", e.msg);
    /* max_len bounds */
    TEST_CHECK(kd_clip_tokenize(eot, "a cat", 5, 1, ids, mask, &n_real, &e) == KD_ERR_INVALID_ARG,
               "max_len 1 must be refused");
    TEST_CHECK(kd_clip_tokenize(eot, "a cat", 5, 2, ids, mask, &n_real, &e) == KD_OK && n_real == 2 &&
                   ids[0] == 49406 && ids[1] == 49407,
               "max_len 2: [BOS, EOS]");
    /* a shorter max_len truncates to the same prefix */
    const char *lp = "a highly detailed matte painting of an ancient castle on a cliff above a stormy sea";
    int32_t full[MAX_LEN], shortv[10];
    int nf = 0, ns = 0;
    kd_clip_tokenize(eot, lp, strlen(lp), MAX_LEN, full, NULL, &nf, &e);
    kd_clip_tokenize(eot, lp, strlen(lp), 10, shortv, NULL, &ns, &e);
    TEST_CHECK(ns == 10 && memcmp(shortv, full, 9 * sizeof(int32_t)) == 0 && shortv[9] == 49407,
               "max_len 10 must keep the first 8 tokens and end with EOS");
}

static void test_long_prompts(const kd_clip_tokenizer *eot, const kd_clip_tokenizer *excl) {
    const size_t big = 10u << 20;
    char *s = malloc(big);
    const char *unit = "a photo of a cat sitting on a windowsill, golden hour, 4k! ";
    size_t ul = strlen(unit);
    for (size_t i = 0; i < big; i++) s[i] = unit[i % ul];
    int32_t ids[MAX_LEN], mask[MAX_LEN], ref[MAX_LEN];
    int n_real = 0, n_ref = 0;
    kd_err e = {0};
    /* the same prompt cut to 2 KB gives the same 77 ids (both truncate) */
    kd_clip_tokenize(excl, s, 2048, MAX_LEN, ref, NULL, &n_ref, &e);
    double t0 = kt_now();
    kd_status st = kd_clip_tokenize(excl, s, big, MAX_LEN, ids, mask, &n_real, &e);
    double t1 = kt_now();
    TEST_CHECK(st == KD_OK && n_real == MAX_LEN && n_ref == MAX_LEN && memcmp(ids, ref, sizeof ids) == 0,
               "10 MB prompt: %s, %d real tokens", st ? e.msg : "ids differ from its 2 KB prefix", n_real);
    printf("10 MB prompt (words): %.1f ms\n", 1e3 * (t1 - t0));
    /* 10 MB of "!" : every one is the pad token's added-token match with pad "!" */
    memset(s, '!', big);
    t0 = kt_now();
    st = kd_clip_tokenize(excl, s, big, MAX_LEN, ids, mask, &n_real, &e);
    t1 = kt_now();
    TEST_CHECK(st == KD_OK && n_real == MAX_LEN && ids[1] == 0 && ids[75] == 0 && ids[76] == 49407,
               "10 MB of '!' with pad '!': %s", st ? e.msg : "wrong ids");
    printf("10 MB prompt ('!' x 10M, pad '!'): %.1f ms\n", 1e3 * (t1 - t0));
    /* 10 MB of white space with one word at the end: read to the end, one token */
    memset(s, ' ', big);
    memcpy(s + big - 4, "cat ", 4);
    t0 = kt_now();
    st = kd_clip_tokenize(eot, s, big, MAX_LEN, ids, mask, &n_real, &e);
    t1 = kt_now();
    TEST_CHECK(st == KD_OK && n_real == 3 && ids[1] == 2368, "10 MB of spaces then 'cat': %s",
               st ? e.msg : "wrong ids");
    printf("10 MB prompt (spaces, then 'cat'): %.1f ms\n", 1e3 * (t1 - t0));
    /* 1 MB without white space: one word, BPE'd whole (the reference does the same) */
    const size_t mid = 1u << 20;
    for (size_t i = 0; i < mid; i++) s[i] = "ab"[i & 1];
    t0 = kt_now();
    st = kd_clip_tokenize(eot, s, mid, MAX_LEN, ids, mask, &n_real, &e);
    t1 = kt_now();
    TEST_CHECK(st == KD_OK && n_real == MAX_LEN, "1 MB word: %s", st ? e.msg : "not truncated to 77");
    printf("1 MB prompt without white space: %.1f ms\n", 1e3 * (t1 - t0));
    free(s);
}

static void test_bad_folders(void) {
    kd_err e = {0};
    kd_clip_tokenizer *t = NULL;
    kd_status s = kd_clip_tokenizer_load_hf("/nonexistent/clip", &t, &e);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(e.msg, "/nonexistent/clip") && !t, "missing folder: %s (%s)",
               kd_status_str(s), e.msg);
    const char *dir = kt_tmp_dir("clip_tokenizer");
    char path[1024];
    size_t n;
    char *vocab = kt_read_file(kt_data_path("clip_tokenizer/bpe/vocab.json"), &n);
    if (!vocab) {
        TEST_CHECK(0, "cannot read bpe/vocab.json");
        return;
    }
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    FILE *f = fopen(path, "wb");
    fwrite(vocab, 1, n, f);
    fclose(f);
    free(vocab);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    f = fopen(path, "wb");
    fputs("#version: 0.2\nc a\nx y z\n", f);
    fclose(f);
    s = kd_clip_tokenizer_load_hf(dir, &t, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "merges.txt: line 3"), "bad merges line: %s (%s)",
               kd_status_str(s), e.msg);
    f = fopen(path, "wb");
    fputs("#version: 0.2\nc a\nzzzq\xc3\xa9 b\n", f);
    fclose(f);
    s = kd_clip_tokenizer_load_hf(dir, &t, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "not in the vocabulary"), "merge of unknown token: %s (%s)",
               kd_status_str(s), e.msg);
    /* a small but valid merges list works (byte-level fallback for everything else) */
    f = fopen(path, "wb");
    fputs("#version: 0.2\nc a\nca t</w>\n", f);
    fclose(f);
    s = kd_clip_tokenizer_load_hf(dir, &t, &e);
    TEST_CHECK(s == KD_OK, "two-merge tokenizer: %s", e.msg);
    if (s == KD_OK) {
        int32_t ids[8];
        int nr = 0;
        kd_clip_tokenize(t, "Cat cab", 7, 8, ids, NULL, &nr, &e);
        /* "cat</w>" = 2368; "cab" → "ca" + "b</w>" (no "ca b</w>" merge); ids from the real vocab */
        TEST_CHECK(nr == 5 && ids[1] == 2368 && ids[3] == 321, "two-merge tokenizer: ids %d %d %d", ids[1], ids[2],
                   ids[3]);
        kd_clip_tokenizer_free(t);
        t = NULL;
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    f = fopen(path, "wb");
    fputs("{}", f);
    fclose(f);
    s = kd_clip_tokenizer_load_hf(dir, &t, &e);
    TEST_CHECK(s == KD_ERR_UNSUPPORTED && strstr(e.msg, "tokenizer.json"), "folder with tokenizer.json: %s (%s)",
               kd_status_str(s), e.msg);
    remove(path);
    s = kd_clip_tokenizer_load_openai("/nonexistent/bpe.txt.gz", NULL, &t, &e);
    TEST_CHECK(s == KD_ERR_IO && strstr(e.msg, "/nonexistent/bpe.txt.gz"), "missing .gz: %s (%s)", kd_status_str(s),
               e.msg);
}

int main(void) {
    kd_err e = {0};
    kd_clip_tokenizer *excl = NULL, *eot = NULL;
    double t0 = kt_now();
    kd_status s1 = kd_clip_tokenizer_load_hf(kt_data_path("clip_tokenizer/pad_excl"), &excl, &e);
    TEST_CHECK(s1 == KD_OK, "load pad_excl: %s", e.msg);
    kd_status s2 = kd_clip_tokenizer_load_hf(kt_data_path("clip_tokenizer/pad_eot"), &eot, &e);
    TEST_CHECK(s2 == KD_OK, "load pad_eot: %s", e.msg);
    printf("loaded two HF tokenizer folders in %.0f ms\n", 1e3 * (kt_now() - t0));
    if (s1 != KD_OK || s2 != KD_OK) return kt_finish("test_clip_tokenizer");
    TEST_CHECK(kd_clip_tokenizer_pad_id(excl) == 0 && kd_clip_tokenizer_pad_id(eot) == 49407, "pad ids %d, %d",
               kd_clip_tokenizer_pad_id(excl), kd_clip_tokenizer_pad_id(eot));
    TEST_CHECK(kd_clip_tokenizer_bos_id(eot) == 49406 && kd_clip_tokenizer_eos_id(eot) == 49407 &&
                   kd_clip_tokenizer_vocab_size(eot) == 49408 && kd_clip_tokenizer_model_max_length(eot) == 77,
               "bos/eos/vocab/max");

    lines P;
    kd_st_file *st = NULL;
    if (!read_lines(kt_data_path("clip_tokenizer/corpus.txt"), &P)) {
        TEST_CHECK(0, "cannot read clip_tokenizer/corpus.txt");
    } else if (kd_st_open(kt_data_path("clip_tokenizer/corpus.safetensors"), &st, &e) != KD_OK) {
        TEST_CHECK(0, "corpus.safetensors: %s", e.msg);
    } else {
        TEST_CHECK(P.n >= 300, "corpus has %d prompts", P.n);
        check_corpus("HF pad '!'", excl, &P, st, "pad_excl");
        check_corpus("HF pad <|endoftext|>", eot, &P, st, "pad_eot");
        const char *gz = kt_shared_path("data/clip/bpe_simple_vocab_16e6.txt.gz");
        if (!gz) {
            kt_skip("OpenAI .gz parity (the shared folder is absent: set KD_SHARED to ../shared to run it)");
        } else {
            kd_clip_tokenizer *g1 = NULL, *g2 = NULL;
            t0 = kt_now();
            kd_status s = kd_clip_tokenizer_load_openai(gz, "!", &g1, &e);
            TEST_CHECK(s == KD_OK, "load %s: %s", gz, e.msg);
            if (s == KD_OK) s = kd_clip_tokenizer_load_openai(gz, NULL, &g2, &e);
            TEST_CHECK(s == KD_OK, "load %s: %s", gz, e.msg);
            printf("loaded the OpenAI .gz twice in %.0f ms\n", 1e3 * (kt_now() - t0));
            if (s == KD_OK) {
                TEST_CHECK(kd_clip_tokenizer_vocab_size(g1) == 49408 && kd_clip_tokenizer_pad_id(g1) == 0 &&
                               kd_clip_tokenizer_pad_id(g2) == 49407,
                           "OpenAI vocabulary: size %d, pads %d %d", kd_clip_tokenizer_vocab_size(g1),
                           kd_clip_tokenizer_pad_id(g1), kd_clip_tokenizer_pad_id(g2));
                check_corpus("OpenAI .gz pad '!'", g1, &P, st, "pad_excl");
                check_corpus("OpenAI .gz pad <|endoftext|>", g2, &P, st, "pad_eot");
            }
            kd_clip_tokenizer_free(g1);
            kd_clip_tokenizer_free(g2);
        }
    }
    kd_st_close(st);
    free_lines(&P);

    test_config_variants();
    test_unicode_table();
    test_invalid_utf8(eot);
    test_edges(eot, excl);
    test_long_prompts(eot, excl);
    test_bad_folders();
    kd_clip_tokenizer_free(excl);
    kd_clip_tokenizer_free(eot);
    return kt_finish("test_clip_tokenizer");
}
