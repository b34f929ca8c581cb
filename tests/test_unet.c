/* Decoder U-Net parity with diffusers UNet2DConditionModel (tools/reference/gen_unet.py) on tiny
 * configs of every Kandinsky variant: 2.2 (image, BF16 weights, 2 layers per block), 2.1
 * (text_image, F16), ControlNet (image_hint, F16), inpainting (9 input channels, F16); batch 1 and
 * 2, square and non-square latents, timesteps 1, 500, 999 and per-sample timesteps.
 * Tolerance: |got - ref| <= 1e-4 · max|ref| + 1e-4 · |ref| (rtol 1e-4 of the output range). */
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "io/safetensors.h"
#include "kandinsky.h"
#include "testutil.h"

static float *get(const kd_st_file *f, const char *tag, const char *what, int64_t *shape) {
    char name[160];
    snprintf(name, sizeof name, "%s.%s", tag, what);
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t) return NULL;
    size_t n = (size_t)kd_tensor_numel(&t->t);
    float *p = malloc(n * sizeof(float) + 4);
    memcpy(p, t->t.data, n * sizeof(float));
    if (shape)
        for (int i = 0; i < t->t.ndim; i++) shape[i] = t->t.shape[i];
    return p;
}

static void run_case(kd_ctx *ctx, kd_unet *u, const kd_st_file *f, const char *variant, const char *tag,
                     const char *out_name, const float *tvec, int n_t) {
    int64_t ssh[4] = {0}, esh[3] = {0}, osh[4] = {0};
    float *sample = get(f, tag, "sample", ssh);
    float *img = get(f, tag, "image_embeds", NULL);
    float *txt = get(f, tag, "text_embeds", NULL);
    float *ehs = get(f, tag, "encoder_hidden_states", esh);
    float *hint = get(f, tag, "hint", NULL);
    float *ref = get(f, tag, out_name, osh);
    TEST_CHECK(sample && img && ref, "%s %s: tensors present", variant, tag);
    if (sample && img && ref) {
        int B = (int)ssh[0], h = (int)ssh[2], w = (int)ssh[3];
        float ts[8];
        for (int i = 0; i < B && i < 8; i++) ts[i] = tvec[n_t == 1 ? 0 : i]; /* scalar t: broadcast */
        kd_unet_cond c = {.timesteps = ts, .image_embeds = img, .text_embeds = txt, .encoder_hidden_states = ehs,
                          .text_len = (int)esh[1], .hint = hint};
        size_t n = (size_t)(osh[0] * osh[1] * osh[2] * osh[3]);
        float *out = malloc(n * sizeof(float));
        TEST_CHECK(kd_unet_sample_channels(u) == ssh[1], "%s: sample channels %d", variant, kd_unet_sample_channels(u));
        kd_status s = kd_unet_forward(ctx, u, sample, B, h, w, &c, out);
        TEST_CHECK(s == KD_OK, "%s %s forward: %s", variant, tag, kd_ctx_last_error(ctx));
        char label[200];
        snprintf(label, sizeof label, "%s %s %s", variant, tag, out_name);
        if (s == KD_OK) kt_allclose(label, out, ref, n, 1e-4 * kt_max_abs(ref, n), 1e-4);
        free(out);
    }
    free(sample);
    free(img);
    free(txt);
    free(ehs);
    free(hint);
    free(ref);
}

static void run_variant(kd_ctx *ctx, const char *variant) {
    char model[600], cases[600];
    snprintf(model, sizeof model, "%s/%s", kt_data_path("unet"), variant);
    snprintf(cases, sizeof cases, "%s/%s_cases.safetensors", kt_data_path("unet"), variant);
    kd_unet *u = NULL;
    kd_status s = kd_unet_load(ctx, model, &u);
    TEST_CHECK(s == KD_OK, "load %s: %s", model, kd_ctx_last_error(ctx));
    if (s != KD_OK) return;
    TEST_CHECK(kd_unet_out_channels(u) == 8 && kd_unet_size_multiple(u) == 4, "%s: out channels / size multiple", variant);
    kd_st_file *f = NULL;
    kd_err e;
    s = kd_st_open(cases, &f, &e);
    TEST_CHECK(s == KD_OK, "open %s: %s", cases, e.msg);
    if (s == KD_OK) {
        float t999[] = {999}, t1[] = {1}, t500[] = {500};
        run_case(ctx, u, f, variant, "b1_8x8", "t999.out", t999, 1);
        run_case(ctx, u, f, variant, "b2_8x12", "t1.out", t1, 1);
        run_case(ctx, u, f, variant, "b2_8x12", "t500.out", t500, 1);
        const kd_st_tensor *tv = kd_st_find(f, "b2_tvec.timesteps");
        float tvec[2] = {0, 0};
        if (tv) memcpy(tvec, tv->t.data, sizeof tvec);
        run_case(ctx, u, f, variant, "b2_tvec", "out", tvec, 2);
        /* same shape again: same numbers, and no arena block allocated (activations and op
         * scratch reuse the blocks sized by the first pass) */
        size_t before = kd_arena_block_allocs();
        run_case(ctx, u, f, variant, "b1_8x8", "t999.out", t999, 1);
        run_case(ctx, u, f, variant, "b1_8x8", "t999.out", t999, 1);
        TEST_CHECK(kd_arena_block_allocs() == before, "%s: %zu arena blocks allocated in repeated steps", variant,
                   kd_arena_block_allocs() - before);
        kd_st_close(f);
    }
    /* bad calls */
    float buf[4096] = {0}, ts[2] = {1, 1};
    kd_unet_cond c = {.timesteps = ts, .image_embeds = buf, .text_embeds = buf, .encoder_hidden_states = buf,
                      .text_len = 4, .hint = buf};
    TEST_CHECK(kd_unet_forward(ctx, u, buf, 1, 6, 8, &c, buf) == KD_ERR_INVALID_ARG &&
                   strstr(kd_ctx_last_error(ctx), "multiples of 4"),
               "%s: latent side 6 rejected: %s", variant, kd_ctx_last_error(ctx));
    TEST_CHECK(kd_unet_forward(ctx, u, buf, 0, 8, 8, &c, buf) == KD_ERR_INVALID_ARG, "%s: batch 0 rejected", variant);
    c.image_embeds = NULL;
    TEST_CHECK(kd_unet_forward(ctx, u, buf, 1, 8, 8, &c, buf) == KD_ERR_INVALID_ARG, "%s: missing image_embeds", variant);
    kd_unet_free(u);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_config_errors(kd_ctx *ctx) {
    const char *dir = kt_tmp_dir("unet_bad");
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    kd_unet *u = NULL;
    write_text(p, "{\"block_out_channels\": [32, 64], \"layers_per_block\": 1, \"attention_head_dim\": 16,"
                  "\"cross_attention_dim\": 32, \"encoder_hid_dim\": 24, \"addition_embed_type\": \"image\","
                  "\"encoder_hid_dim_type\": \"image_proj\", \"resnet_time_scale_shift\": \"default\"}");
    TEST_CHECK(kd_unet_load(ctx, dir, &u) == KD_ERR_UNSUPPORTED && strstr(kd_ctx_last_error(ctx), "resnet_time_scale_shift"),
               "default time conditioning rejected: %s", kd_ctx_last_error(ctx));
    write_text(p, "{\"block_out_channels\": [32, 64], \"layers_per_block\": 1, \"attention_head_dim\": 16,"
                  "\"cross_attention_dim\": 32, \"encoder_hid_dim\": 24, \"addition_embed_type\": \"text\","
                  "\"encoder_hid_dim_type\": \"image_proj\"}");
    TEST_CHECK(kd_unet_load(ctx, dir, &u) == KD_ERR_UNSUPPORTED && strstr(kd_ctx_last_error(ctx), "addition_embed_type"),
               "text addition embedding rejected: %s", kd_ctx_last_error(ctx));
    write_text(p, "{\"block_out_channels\": [32, 64], \"layers_per_block\": 1, \"attention_head_dim\": [8, 8],"
                  "\"cross_attention_dim\": 32, \"encoder_hid_dim\": 24}");
    TEST_CHECK(kd_unet_load(ctx, dir, &u) == KD_ERR_FORMAT && strstr(kd_ctx_last_error(ctx), "attention_head_dim"),
               "list head dim rejected: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(u == NULL, "no model on failure");
}

int main(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    run_variant(ctx, "v22");
    run_variant(ctx, "v21");
    run_variant(ctx, "v22_hint");
    run_variant(ctx, "v22_inpaint");
    test_config_errors(ctx);
    kd_ctx_free(ctx);
    return kt_finish("test_unet");
}
