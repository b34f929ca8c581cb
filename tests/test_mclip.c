/* MultilingualCLIP parity with diffusers' kandinsky.MultilingualCLIP (tools/reference/gen_mclip.py):
 * RoBERTa position ids from the padding id, post-LN XLM-R layers with the key padding mask, mean
 * pooling over real tokens; batch 1 and 2 (a full-length and a 4-token sequence).
 * Tolerance |got - ref| <= 1e-4·max|ref| + 1e-4·|ref|. */
#define _DEFAULT_SOURCE /* realpath, symlink */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "kandinsky.h"
#include "testutil.h"

static int32_t *ints(const kd_st_file *f, const char *name, int64_t *shape) {
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

/* Kandinsky 2.0's text_encoder1: a plain XLM-R config.json (no numDims / transformerDimensions);
 * the projection's width comes from LinearTransformation.weight. */
static void check_plain_xlmr_config(kd_ctx *ctx, const char *model) {
    const char *tmp = kt_tmp_dir("mclip_plain");
    char src[PATH_MAX], dst[700], cfg[700];
    char rel[700];
    snprintf(rel, sizeof rel, "%s/model.safetensors", model);
    TEST_CHECK(realpath(rel, src) != NULL, "realpath %s", rel);
    snprintf(dst, sizeof dst, "%s/model.safetensors", tmp);
    snprintf(cfg, sizeof cfg, "%s/config.json", tmp);
    unlink(dst);
    TEST_CHECK(symlink(src, dst) == 0, "symlink %s", dst);
    FILE *f = fopen(cfg, "w");
    if (f) {
        fputs("{\"model_type\": \"xlm-roberta\", \"vocab_size\": 1000, \"hidden_size\": 32, "
              "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 37, "
              "\"hidden_act\": \"gelu\", \"max_position_embeddings\": 80, \"type_vocab_size\": 1, "
              "\"pad_token_id\": 1, \"layer_norm_eps\": 1e-05}\n", f);
        fclose(f);
    }
    kd_mclip *m = NULL;
    TEST_CHECK(kd_mclip_load(ctx, tmp, &m) == KD_OK, "plain XLM-R config: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(m && kd_mclip_embed_dim(m) == 24, "width from LinearTransformation.weight: %d",
               m ? kd_mclip_embed_dim(m) : -1);
    kd_mclip_free(m);
}

int main(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    char model[600], cases[600];
    snprintf(model, sizeof model, "%s/text_encoder", kt_data_path("mclip"));
    snprintf(cases, sizeof cases, "%s/cases.safetensors", kt_data_path("mclip"));
    kd_mclip *m = NULL;
    TEST_CHECK(kd_mclip_load(ctx, model, &m) == KD_OK, "load %s: %s", model, kd_ctx_last_error(ctx));
    kd_st_file *f = NULL;
    kd_err e;
    TEST_CHECK(kd_st_open(cases, &f, &e) == KD_OK, "open %s: %s", cases, e.msg);
    for (int c = 0; m && f && c < 2; c++) {
        const char *tag = c ? "b2" : "b1";
        char n1[64], n2[64], n3[64], n4[64];
        snprintf(n1, sizeof n1, "%s.input_ids", tag);
        snprintf(n2, sizeof n2, "%s.attention_mask", tag);
        snprintf(n3, sizeof n3, "%s.text_embeds", tag);
        snprintf(n4, sizeof n4, "%s.last_hidden_state", tag);
        int64_t sh[2], sh2[2];
        int32_t *ids = ints(f, n1, sh), *mask = ints(f, n2, sh2);
        const kd_st_tensor *er = kd_st_find(f, n3), *hr = kd_st_find(f, n4);
        TEST_CHECK(ids && mask && er && hr, "%s tensors", tag);
        if (!ids || !mask || !er || !hr) continue;
        size_t ne = (size_t)kd_tensor_numel(&er->t), nh = (size_t)kd_tensor_numel(&hr->t);
        float *emb = malloc(ne * 4), *hid = malloc(nh * 4), *eref = malloc(ne * 4), *href = malloc(nh * 4);
        memcpy(eref, er->t.data, ne * 4);
        memcpy(href, hr->t.data, nh * 4);
        kd_status s = kd_mclip_forward(ctx, m, ids, mask, (int)sh[0], (int)sh[1], emb, hid);
        TEST_CHECK(s == KD_OK, "%s forward: %s", tag, kd_ctx_last_error(ctx));
        char l[64];
        snprintf(l, sizeof l, "mclip %s text_embeds", tag);
        if (s == KD_OK) kt_allclose(l, emb, eref, ne, 1e-4 * kt_max_abs(eref, ne), 1e-4);
        snprintf(l, sizeof l, "mclip %s last_hidden_state", tag);
        if (s == KD_OK) kt_allclose(l, hid, href, nh, 1e-4 * kt_max_abs(href, nh), 1e-4);
        memset(mask, 0, (size_t)sh[1] * sizeof(int32_t));
        TEST_CHECK(kd_mclip_forward(ctx, m, ids, mask, 1, (int)sh[1], emb, NULL) == KD_ERR_INVALID_ARG,
                   "all-padding mask rejected: %s", kd_ctx_last_error(ctx));
        ids[0] = 5000;
        mask[0] = 1;
        TEST_CHECK(kd_mclip_forward(ctx, m, ids, mask, 1, (int)sh[1], emb, NULL) == KD_ERR_INVALID_ARG,
                   "out-of-vocabulary id rejected: %s", kd_ctx_last_error(ctx));
        TEST_CHECK(kd_mclip_forward(ctx, m, ids, mask, 1, 200, emb, NULL) == KD_ERR_INVALID_ARG,
                   "too many tokens rejected: %s", kd_ctx_last_error(ctx));
        free(ids), free(mask), free(emb), free(hid), free(eref), free(href);
    }
    TEST_CHECK(m && kd_mclip_embed_dim(m) == 24 && kd_mclip_hidden_size(m) == 32, "sizes");
    check_plain_xlmr_config(ctx, model);
    kd_st_close(f);
    kd_mclip_free(m);
    kd_ctx_free(ctx);
    return kt_finish("test_mclip");
}
