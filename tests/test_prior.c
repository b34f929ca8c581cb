/* Prior stage parity with transformers / diffusers (tools/reference/gen_prior.py): CLIP text
 * (quick_gelu with argmax pooling, gelu with first-EOS pooling), CLIP vision (incl. the all-zero
 * "negative" image), PriorTransformer (padding + causal mask, timesteps 0 / 42 / 999) and its
 * post-processing; batch 1 and 2. Tolerance |got - ref| <= 1e-4·max|ref| + 1e-4·|ref|. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "kandinsky.h"
#include "testutil.h"

static float *getf(const kd_st_file *f, const char *tag, const char *what, int64_t *shape) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", tag, what);
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t) return NULL;
    size_t n = (size_t)kd_tensor_numel(&t->t);
    float *p = malloc(n * sizeof(float) + 4);
    if (t->t.dtype == KD_I64) {
        int64_t v;
        for (size_t i = 0; i < n; i++) {
            memcpy(&v, (const char *)t->t.data + i * 8, 8);
            p[i] = (float)v;
        }
    } else {
        memcpy(p, t->t.data, n * sizeof(float));
    }
    if (shape)
        for (int i = 0; i < t->t.ndim; i++) shape[i] = t->t.shape[i];
    return p;
}

static int32_t *to_i32(const float *v, size_t n) {
    int32_t *r = malloc(n * sizeof(int32_t) + 4);
    for (size_t i = 0; i < n; i++) r[i] = (int32_t)v[i];
    return r;
}

static void check(const char *label, const float *got, const float *ref, size_t n) {
    kt_allclose(label, got, ref, n, 1e-4 * kt_max_abs(ref, n), 1e-4);
}

static kd_st_file *open_cases(const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s_cases.safetensors", kt_data_path("prior"), name);
    kd_st_file *f = NULL;
    kd_err e;
    TEST_CHECK(kd_st_open(p, &f, &e) == KD_OK, "open %s: %s", p, e.msg);
    return f;
}

static void test_text(kd_ctx *ctx, const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", kt_data_path("prior"), name);
    kd_clip_text *m = NULL;
    TEST_CHECK(kd_clip_text_load(ctx, p, &m) == KD_OK, "load %s: %s", p, kd_ctx_last_error(ctx));
    kd_st_file *f = open_cases(name);
    if (!m || !f) goto done;
    for (int c = 0; c < 2; c++) {
        const char *tag = c ? "b2" : "b1";
        int64_t ish[2], hsh[3], esh[2];
        float *idf = getf(f, tag, "input_ids", ish), *eref = getf(f, tag, "text_embeds", esh);
        float *href = getf(f, tag, "last_hidden_state", hsh);
        int32_t *ids = to_i32(idf, (size_t)(ish[0] * ish[1]));
        size_t ne = (size_t)(esh[0] * esh[1]), nh = (size_t)(hsh[0] * hsh[1] * hsh[2]);
        float *emb = malloc(ne * sizeof(float)), *hid = malloc(nh * sizeof(float));
        kd_status s = kd_clip_text_forward(ctx, m, ids, (int)ish[0], (int)ish[1], emb, hid);
        TEST_CHECK(s == KD_OK, "%s %s: %s", name, tag, kd_ctx_last_error(ctx));
        char l[200];
        snprintf(l, sizeof l, "%s %s text_embeds", name, tag);
        if (s == KD_OK) check(l, emb, eref, ne);
        snprintf(l, sizeof l, "%s %s last_hidden_state", name, tag);
        if (s == KD_OK) check(l, hid, href, nh);
        if (s == KD_OK) { /* the first n positions alone (n = up to the last row's EOS): the same states */
            int64_t Lf = ish[1], n = 1, W = hsh[2];
            for (int64_t b = 0; b < ish[0]; b++) {
                int64_t eos = 0;
                for (int64_t i = 0; i < Lf; i++)
                    if (ids[b * Lf + i] > ids[b * Lf + eos]) eos = i;
                if (eos + 1 > n) n = eos + 1;
            }
            int32_t *ids_n = malloc((size_t)(ish[0] * n) * sizeof(int32_t));
            float *hid_n = malloc((size_t)(ish[0] * n * W) * sizeof(float)), *href_n = malloc((size_t)(ish[0] * n * W) * sizeof(float));
            for (int64_t b = 0; b < ish[0]; b++) {
                memcpy(ids_n + b * n, ids + b * Lf, (size_t)n * sizeof(int32_t));
                memcpy(href_n + b * n * W, href + b * Lf * W, (size_t)(n * W) * sizeof(float));
            }
            s = kd_clip_text_forward(ctx, m, ids_n, (int)ish[0], (int)n, emb, hid_n);
            TEST_CHECK(s == KD_OK, "%s %s, first %lld positions: %s", name, tag, (long long)n, kd_ctx_last_error(ctx));
            snprintf(l, sizeof l, "%s %s first %lld positions: text_embeds", name, tag, (long long)n);
            if (s == KD_OK) check(l, emb, eref, ne);
            snprintf(l, sizeof l, "%s %s first %lld positions: last_hidden_state", name, tag, (long long)n);
            if (s == KD_OK) check(l, hid_n, href_n, (size_t)(ish[0] * n * W));
            free(ids_n), free(hid_n), free(href_n);
        }
        ids[3] = 5000; /* outside the tiny vocabulary */
        TEST_CHECK(kd_clip_text_forward(ctx, m, ids, 1, (int)ish[1], emb, NULL) == KD_ERR_INVALID_ARG &&
                       strstr(kd_ctx_last_error(ctx), "vocabulary"),
                   "out-of-vocabulary id rejected: %s", kd_ctx_last_error(ctx));
        free(idf), free(eref), free(href), free(ids), free(emb), free(hid);
    }
    TEST_CHECK(kd_clip_text_embed_dim(m) == 24 && kd_clip_text_hidden_size(m) == 32 && kd_clip_text_max_len(m) == 77,
               "%s sizes", name);
done:
    kd_st_close(f);
    kd_clip_text_free(m);
}

static void test_vision(kd_ctx *ctx) {
    char p[600];
    snprintf(p, sizeof p, "%s/clip_vision", kt_data_path("prior"));
    kd_clip_vision *m = NULL;
    TEST_CHECK(kd_clip_vision_load(ctx, p, &m) == KD_OK, "load %s: %s", p, kd_ctx_last_error(ctx));
    kd_st_file *f = open_cases("clip_vision");
    if (!m || !f) goto done;
    TEST_CHECK(kd_clip_vision_image_size(m) == 56, "image size");
    for (int c = 0; c < 2; c++) {
        const char *tag = c ? "b2" : "b1";
        int64_t psh[4], esh[2];
        float *px = getf(f, tag, "pixel_values", psh), *ref = getf(f, tag, "image_embeds", esh);
        size_t ne = (size_t)(esh[0] * esh[1]);
        float *emb = malloc(ne * sizeof(float));
        kd_status s = kd_clip_vision_forward(ctx, m, px, (int)psh[0], emb);
        TEST_CHECK(s == KD_OK, "vision %s: %s", tag, kd_ctx_last_error(ctx));
        char l[100];
        snprintf(l, sizeof l, "clip_vision %s image_embeds", tag);
        if (s == KD_OK) check(l, emb, ref, ne);
        free(px), free(ref), free(emb);
    }
    float *zeros = calloc(3 * 56 * 56, sizeof(float)), emb[24];
    float *zref = getf(f, "zero", "image_embeds", NULL);
    if (kd_clip_vision_forward(ctx, m, zeros, 1, emb) == KD_OK && zref) check("clip_vision zero image", emb, zref, 24);
    free(zeros), free(zref);
done:
    kd_st_close(f);
    kd_clip_vision_free(m);
}

/* kd_prior_forward_text with only the first n text positions (n = the longest row's real tokens,
 * as the pipelines call it) must match the reference too; and the trimming must be exact only
 * because the dropped positions are padding: unmasking one of them changes the full result. */
static void check_trimmed(kd_ctx *ctx, kd_prior *m, const char *tag, const float *x, const float *ts, const float *pe,
                          const float *ehs, const int32_t *mask, int B, const float *ref) {
    const int E = 24, L = 77;
    int n = 1;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L; i++)
            if (mask[b * L + i] && i + 1 > n) n = i + 1;
    float *ehs_n = malloc((size_t)B * n * E * sizeof(float)), *out = malloc((size_t)B * E * sizeof(float));
    int32_t *mask_n = malloc((size_t)B * n * sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        memcpy(ehs_n + (size_t)b * n * E, ehs + (size_t)b * L * E, (size_t)n * E * sizeof(float));
        memcpy(mask_n + (size_t)b * n, mask + (size_t)b * L, (size_t)n * sizeof(int32_t));
    }
    kd_status s = kd_prior_forward_text(ctx, m, x, ts, pe, ehs_n, mask_n, n, B, out);
    TEST_CHECK(s == KD_OK, "prior %s, %d text positions: %s", tag, n, kd_ctx_last_error(ctx));
    char l[100];
    snprintf(l, sizeof l, "prior %s, first %d text positions", tag, n);
    if (s == KD_OK) check(l, out, ref, (size_t)B * E);
    TEST_CHECK(kd_prior_forward_text(ctx, m, x, ts, pe, ehs_n, mask_n, 78, B, out) == KD_ERR_INVALID_ARG,
               "78 text positions rejected");
    if (n < L) { /* the same full call with position n unmasked differs */
        int32_t *mask2 = malloc((size_t)B * L * sizeof(int32_t));
        memcpy(mask2, mask, (size_t)B * L * sizeof(int32_t));
        mask2[n] = 1;
        s = kd_prior_forward(ctx, m, x, ts, pe, ehs, mask2, B, out);
        double d = 0;
        for (int i = 0; s == KD_OK && i < E; i++) d = fmax(d, fabs(out[i] - ref[i]));
        TEST_CHECK(s == KD_OK && d > 1e-4, "prior %s: unmasking padded position %d changes the output (by %.3g)", tag, n,
                   d);
        free(mask2);
    }
    free(ehs_n), free(out), free(mask_n);
}

static void test_prior(kd_ctx *ctx) {
    char p[600];
    snprintf(p, sizeof p, "%s/prior", kt_data_path("prior"));
    kd_prior *m = NULL;
    TEST_CHECK(kd_prior_load(ctx, p, &m) == KD_OK, "load %s: %s", p, kd_ctx_last_error(ctx));
    kd_st_file *f = open_cases("prior");
    if (!m || !f) goto done;
    const char *tags[] = {"b1", "b2", "b2_t0"};
    for (int c = 0; c < 3; c++) {
        int64_t xsh[2];
        float *x = getf(f, tags[c], "x", xsh), *pe = getf(f, tags[c], "proj_embedding", NULL);
        float *ehs = getf(f, tags[c], "encoder_hidden_states", NULL), *mf = getf(f, tags[c], "attention_mask", NULL);
        float *t = getf(f, tags[c], "timestep", NULL), *ref = getf(f, tags[c], "out", NULL);
        float *post = getf(f, tags[c], "post", NULL);
        int B = (int)xsh[0];
        int32_t *mask = to_i32(mf, (size_t)B * 77);
        float ts[2] = {t[0], t[0]}, *out = malloc((size_t)B * 24 * sizeof(float));
        kd_status s = kd_prior_forward(ctx, m, x, ts, pe, ehs, mask, B, out);
        TEST_CHECK(s == KD_OK, "prior %s: %s", tags[c], kd_ctx_last_error(ctx));
        char l[100];
        snprintf(l, sizeof l, "prior %s", tags[c]);
        if (s == KD_OK) check(l, out, ref, (size_t)B * 24);
        check_trimmed(ctx, m, tags[c], x, ts, pe, ehs, mask, B, ref);
        kd_prior_post_process(m, out, B);
        snprintf(l, sizeof l, "prior %s post_process", tags[c]);
        if (s == KD_OK) check(l, out, post, (size_t)B * 24);
        free(x), free(pe), free(ehs), free(mf), free(t), free(ref), free(post), free(mask), free(out);
    }
done:
    kd_st_close(f);
    kd_prior_free(m);
}

int main(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    test_text(ctx, "clip_text_quick");
    test_text(ctx, "clip_text_gelu");
    test_vision(ctx);
    test_prior(ctx);
    kd_ctx_free(ctx);
    return kt_finish("test_prior");
}
