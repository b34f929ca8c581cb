/* Kandinsky 2.0's second text encoder: the mT5 tokenizer and encoder against transformers
 * (tools/reference/gen_mt5.py).
 *   - tokenizer: every prompt of the XLM-R corpus plus edge cases (specials and sentinels in the
 *     text, empty and blank prompts, truncation at 77) against T5Tokenizer (transformers 5), and with
 *     KD_XLMR_SENTENCEPIECE against sentencepiece itself; ids, mask and padding exactly;
 *     tokenizer_config.json's extra_ids; the wrong id layout refused.
 *   - relative position buckets for every distance −300..300 exactly;
 *   - MT5EncoderModel last_hidden_state for one prompt and for [prompt, ""], from the
 *     pytorch_model.bin as published: |got − ref| <= 1e-4·max|ref| + 1e-4·|ref|;
 *   - bad input refused. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "kandinsky.h"
#include "models/mt5.h"
#include "testutil.h"
#include "text/xlmr_tokenizer.h"

#define MAXLEN 77

/* "id id id" → ids (returns the count, -1 on a malformed line) */
static int parse_ids(const char *line, int32_t *ids, int cap) {
    int n = 0;
    const char *p = line;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || n == cap) return -1;
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
    }
    return n;
}

static char **read_raw_lines(const char *path, int *count) {
    char *text = kt_read_text(path);
    *count = 0;
    if (!text) return NULL;
    int cap = 0;
    char **out = NULL;
    for (char *p = text; *p;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = '\0';
        if (*count == cap) out = realloc(out, (size_t)(cap = cap ? cap * 2 : 256) * sizeof *out);
        out[(*count)++] = strdup(p);
        if (!nl) break;
        p = nl + 1;
    }
    free(text);
    return out;
}

/* One tokenizer against one reference file (fast: ids per line; slow: "=" for "as fast"). */
static void check_tokenizer(const char *what, const kd_xlmr_tokenizer *t, const kt_lines *prompts, char **ref,
                            char **fast, int nref) {
    int bad = 0;
    TEST_CHECK(nref == prompts->n, "%s: %d reference lines for %d prompts", what, nref, prompts->n);
    for (int i = 0; i < prompts->n && i < nref; i++) {
        int32_t want[MAXLEN], ids[MAXLEN], mask[MAXLEN];
        const char *line = strcmp(ref[i], "=") ? ref[i] : fast[i];
        int n = parse_ids(line, want, MAXLEN), real = -1;
        kd_err e = {0};
        kd_status s = kd_xlmr_tokenize(t, prompts->s[i], prompts->len[i], MAXLEN, ids, mask, &real, &e);
        int ok = s == KD_OK && n > 0 && real == n;
        for (int k = 0; ok && k < MAXLEN; k++)
            ok = k < n ? ids[k] == want[k] && mask[k] == 1 : ids[k] == 0 && mask[k] == 0;
        if (!ok && bad++ < 5)
            TEST_CHECK(0, "%s: prompt %d (%.40s): %s; %d tokens, want %d: %s", what, i, prompts->s[i],
                       s == KD_OK ? "ids differ" : e.msg, real, n, line);
    }
    TEST_CHECK(bad == 0, "%s: %d of %d prompts differ", what, bad, prompts->n);
    printf("%s: %d prompts checked\n", what, prompts->n);
}

static void test_tokenizer(void) {
    char dir[600], path[720];
    snprintf(dir, sizeof dir, "%s", kt_data_path("mt5"));
    kt_lines corpus, extra, prompts = {0};
    snprintf(path, sizeof path, "%s/corpus.txt", kt_data_path("xlmr_tokenizer"));
    TEST_CHECK(kt_read_json_lines(path, &corpus), "read %s", path);
    snprintf(path, sizeof path, "%s/extra.txt", dir);
    TEST_CHECK(kt_read_json_lines(path, &extra), "read %s", path);
    prompts.n = corpus.n + extra.n;
    prompts.s = malloc((size_t)prompts.n * sizeof *prompts.s);
    prompts.len = malloc((size_t)prompts.n * sizeof *prompts.len);
    for (int i = 0; i < prompts.n; i++) {
        prompts.s[i] = i < corpus.n ? corpus.s[i] : extra.s[i - corpus.n];
        prompts.len[i] = i < corpus.n ? corpus.len[i] : extra.len[i - corpus.n];
    }
    int nf = 0, ns = 0;
    snprintf(path, sizeof path, "%s/tokenizer_fast.txt", dir);
    char **fast = read_raw_lines(path, &nf);
    snprintf(path, sizeof path, "%s/tokenizer_slow.txt", dir);
    char **slow = read_raw_lines(path, &ns);

    char tokdir[640];
    snprintf(tokdir, sizeof tokdir, "%s/tokenizer", dir);
    kd_xlmr_tokenizer *t = NULL, *ts = NULL;
    kd_err e = {0};
    TEST_CHECK(kd_t5_tokenizer_load(tokdir, 0, &t, &e) == KD_OK, "load %s: %s", tokdir, e.msg);
    TEST_CHECK(kd_t5_tokenizer_load(tokdir, KD_XLMR_SENTENCEPIECE, &ts, &e) == KD_OK, "load (sentencepiece): %s",
               e.msg);
    if (t && fast) check_tokenizer("mt5 tokenizer (transformers 5)", t, &prompts, fast, fast, nf);
    if (ts && slow && fast) check_tokenizer("mt5 tokenizer (sentencepiece)", ts, &prompts, slow, fast, ns);
    if (t) {
        TEST_CHECK(kd_xlmr_tokenizer_vocab_size(t) == 2100, "vocab %d (2000 pieces + 100 sentinels)",
                   kd_xlmr_tokenizer_vocab_size(t));
        TEST_CHECK(kd_xlmr_tokenizer_pad_id(t) == 0 && kd_xlmr_tokenizer_eos_id(t) == 1 &&
                       kd_xlmr_tokenizer_unk_id(t) == 2 && kd_xlmr_tokenizer_bos_id(t) == -1 &&
                       kd_xlmr_tokenizer_mask_id(t) == -1,
                   "special ids pad %d eos %d unk %d bos %d mask %d", kd_xlmr_tokenizer_pad_id(t),
                   kd_xlmr_tokenizer_eos_id(t), kd_xlmr_tokenizer_unk_id(t), kd_xlmr_tokenizer_bos_id(t),
                   kd_xlmr_tokenizer_mask_id(t));
        const char *p0 = kd_xlmr_tokenizer_piece(t, 2099), *p99 = kd_xlmr_tokenizer_piece(t, 2000);
        TEST_CHECK(p0 && p99 && !strcmp(p0, "<extra_id_0>") && !strcmp(p99, "<extra_id_99>"), "sentinel ids");
    }
    /* tokenizer_config.json's extra_ids */
    const char *tmp = kt_tmp_dir("mt5_tok");
    size_t n;
    snprintf(path, sizeof path, "%s/spiece.model", tokdir);
    char *model = kt_read_file(path, &n);
    char p2[720];
    snprintf(p2, sizeof p2, "%s/spiece.model", tmp);
    FILE *f = fopen(p2, "wb");
    TEST_CHECK(model && f && fwrite(model, 1, n, f) == n, "copy spiece.model");
    if (f) fclose(f);
    snprintf(p2, sizeof p2, "%s/tokenizer_config.json", tmp);
    f = fopen(p2, "w");
    if (f) fputs("{\"tokenizer_class\": \"T5Tokenizer\", \"extra_ids\": 0}\n", f), fclose(f);
    kd_xlmr_tokenizer *t0 = NULL;
    TEST_CHECK(kd_t5_tokenizer_load(tmp, 0, &t0, &e) == KD_OK, "load with extra_ids 0: %s", e.msg);
    if (t0) {
        TEST_CHECK(kd_xlmr_tokenizer_vocab_size(t0) == 2000, "extra_ids 0: vocab %d", kd_xlmr_tokenizer_vocab_size(t0));
        int32_t ids[MAXLEN];
        int real;
        TEST_CHECK(kd_xlmr_tokenize(t0, "<extra_id_0>", 12, MAXLEN, ids, NULL, &real, &e) == KD_OK && real > 2,
                   "without sentinels <extra_id_0> is ordinary text (%d tokens)", real);
    }
    f = fopen(p2, "w");
    if (f) fputs("{\"extra_ids\": -5}\n", f), fclose(f);
    kd_xlmr_tokenizer *tb = NULL;
    TEST_CHECK(kd_t5_tokenizer_load(tmp, 0, &tb, &e) == KD_ERR_FORMAT && !tb, "extra_ids -5 refused: %s", e.msg);
    /* the id layouts are not interchangeable */
    snprintf(path, sizeof path, "%s/spiece.model", tokdir);
    TEST_CHECK(kd_xlmr_tokenizer_load(path, &tb, &e) == KD_ERR_UNSUPPORTED && !tb, "T5 model as XLM-R refused: %s",
               e.msg);
    snprintf(path, sizeof path, "%s/m2k/sentencepiece.bpe.model", kt_data_path("xlmr_tokenizer"));
    TEST_CHECK(kd_t5_tokenizer_load(path, 0, &tb, &e) == KD_ERR_UNSUPPORTED && !tb, "XLM-R model as T5 refused: %s",
               e.msg);
    TEST_CHECK(kd_t5_tokenizer_load(kt_data_path("mclip"), 0, &tb, &e) == KD_ERR_NOT_FOUND && !tb,
               "folder without spiece.model: %s", e.msg);
    free(model);
    kd_xlmr_tokenizer_free(t);
    kd_xlmr_tokenizer_free(ts);
    kd_xlmr_tokenizer_free(t0);
    for (int i = 0; i < nf; i++) free(fast[i]);
    for (int i = 0; i < ns; i++) free(slow[i]);
    free(fast), free(slow), free(prompts.s), free(prompts.len);
    kt_free_lines(&corpus);
    kt_free_lines(&extra);
}

/* an I64 tensor as int32 (malloc'd; NULL if absent) */
static int32_t *i32(const kd_st_file *f, const char *name, int64_t *shape) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t || t->t.dtype != KD_I64) return NULL;
    size_t n = (size_t)kd_tensor_numel(&t->t);
    int32_t *r = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->t.data + i * 8, 8);
        r[i] = (int32_t)v;
    }
    for (int i = 0; i < t->t.ndim; i++) shape[i] = t->t.shape[i];
    return r;
}

static void test_encoder(kd_ctx *ctx, const kd_st_file *f) {
    int64_t sh[2];
    int32_t *buckets = i32(f, "buckets", sh);
    TEST_CHECK(buckets && sh[0] == 601, "buckets tensor");
    int bad = 0;
    for (int r = -300; buckets && r <= 300; r++) {
        int got = kd_t5_relative_bucket(r, 1, 32, 128);
        if (got != buckets[r + 300] && bad++ < 5) TEST_CHECK(0, "bucket(%d) = %d, want %d", r, got, buckets[r + 300]);
    }
    TEST_CHECK(bad == 0, "relative position buckets: %d of 601 differ", bad);
    free(buckets);

    char model[700];
    snprintf(model, sizeof model, "%s/text_encoder2", kt_data_path("mt5"));
    kd_mt5 *m = NULL;
    TEST_CHECK(kd_mt5_load(ctx, model, &m) == KD_OK, "load %s: %s", model, kd_ctx_last_error(ctx));
    if (!m) return;
    TEST_CHECK(kd_mt5_hidden_size(m) == 32, "d_model %d", kd_mt5_hidden_size(m));
    for (int c = 0; c < 2; c++) {
        const char *tag = c ? "b2" : "b1";
        char n1[64], n2[64], n3[64];
        snprintf(n1, sizeof n1, "%s.input_ids", tag);
        snprintf(n2, sizeof n2, "%s.attention_mask", tag);
        snprintf(n3, sizeof n3, "%s.last_hidden_state", tag);
        int64_t s1[2], s2[2];
        int32_t *ids = i32(f, n1, s1), *mask = i32(f, n2, s2);
        const kd_st_tensor *hr = kd_st_find(f, n3);
        TEST_CHECK(ids && mask && hr, "%s tensors", tag);
        if (!ids || !mask || !hr) {
            free(ids), free(mask);
            continue;
        }
        size_t nh = (size_t)kd_tensor_numel(&hr->t);
        float *hid = malloc(nh * 4), *href = malloc(nh * 4);
        memcpy(href, hr->t.data, nh * 4);
        kd_status s = kd_mt5_forward(ctx, m, ids, mask, (int)s1[0], (int)s1[1], hid);
        TEST_CHECK(s == KD_OK, "%s forward: %s", tag, kd_ctx_last_error(ctx));
        char l[64];
        snprintf(l, sizeof l, "mt5 %s last_hidden_state", tag);
        if (s == KD_OK) kt_allclose(l, hid, href, nh, 1e-4 * kt_max_abs(href, nh), 1e-4);
        free(hid), free(href), free(ids), free(mask);
    }
    /* bad input */
    int32_t ids[MAXLEN] = {5, 6, 1}, mask[MAXLEN] = {0};
    float out[MAXLEN * 32];
    TEST_CHECK(kd_mt5_forward(ctx, m, ids, mask, 1, MAXLEN, out) == KD_ERR_INVALID_ARG, "all-padding mask: %s",
               kd_ctx_last_error(ctx));
    mask[0] = 1;
    ids[1] = 2100;
    TEST_CHECK(kd_mt5_forward(ctx, m, ids, mask, 1, MAXLEN, out) == KD_ERR_INVALID_ARG, "id 2100: %s",
               kd_ctx_last_error(ctx));
    TEST_CHECK(kd_mt5_forward(ctx, m, ids, mask, 0, MAXLEN, out) == KD_ERR_INVALID_ARG, "batch 0: %s",
               kd_ctx_last_error(ctx));
    kd_mt5_free(m);
    /* a config that is not mT5's */
    const char *tmp = kt_tmp_dir("mt5_cfg");
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", tmp);
    FILE *cf = fopen(p, "w");
    if (cf) fputs("{\"vocab_size\": 2100, \"d_model\": 32, \"d_kv\": 8, \"d_ff\": 37, \"num_layers\": 2, "
                  "\"num_heads\": 3, \"feed_forward_proj\": \"relu\"}\n", cf), fclose(cf);
    TEST_CHECK(kd_mt5_load(ctx, tmp, &m) != KD_OK && !m, "feed_forward_proj relu refused: %s", kd_ctx_last_error(ctx));
}

int main(void) {
    test_tokenizer();
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    char cases[700];
    snprintf(cases, sizeof cases, "%s/cases.safetensors", kt_data_path("mt5"));
    kd_st_file *f = NULL;
    kd_err e;
    TEST_CHECK(kd_st_open(cases, &f, &e) == KD_OK, "open %s: %s", cases, e.msg);
    if (f) test_encoder(ctx, f);
    kd_st_close(f);
    kd_ctx_free(ctx);
    return kt_finish("test_mt5");
}
