/* Kandinsky 2.0's U-Net from its original checkpoint layout, against the original code
 * (tools/reference/gen_unet20.py: ai-forever/Kandinsky-2's Text2ImUNet, tiny configuration with
 * attention at levels 0 and 2 only, float16 weights as torch.save'd): the guided-diffusion names
 * mapped onto the diffusers modules (qkv / encoder_kv de-interleaved per head), the two-encoder
 * conditioning (proj, AttentionPooling proj2, to_model_dim / to_model_dim2, ln_model1..3), batch 2
 * with two timesteps. |got − ref| <= 1e-4·max|ref| + 1e-4·|ref|. Also the errors of a checkpoint
 * that does not fit the configuration and of missing conditioning. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "kandinsky.h"
#include "models/unet.h"
#include "testutil.h"

static const kd_unet20_config tiny = {.model_channels = 32, .n_levels = 3, .channel_mult = {1, 1, 2},
                                      .num_res_blocks = 1, .n_attn = 2, .attention_ds = {1, 4}, .head_channels = 16,
                                      .model_dim = 32, .in_dim1 = 48, .in_dim2 = 24, .mt5_dim = 512, .pool_heads = 8,
                                      .in_channels = 4, .out_channels = 8};

static const float *get(const kd_st_file *f, const char *name, size_t *n) {
    const float *p = kt_f32_tensor(f, name, n);
    TEST_CHECK(p != NULL, "cases: %s", name);
    return p;
}

int main(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    char pt[600], cases[600];
    snprintf(pt, sizeof pt, "%s/unet.pt", kt_data_path("unet20"));
    snprintf(cases, sizeof cases, "%s/cases.safetensors", kt_data_path("unet20"));
    kd_unet *u = NULL;
    TEST_CHECK(kd_unet_load_2_0_cfg(ctx, pt, &tiny, &u) == KD_OK, "load %s: %s", pt, kd_ctx_last_error(ctx));
    kd_st_file *f = NULL;
    kd_err e;
    TEST_CHECK(kd_st_open(cases, &f, &e) == KD_OK, "open %s: %s", cases, e.msg);
    size_t nx = 0, nt = 0, n1 = 0, np = 0, n2 = 0, no = 0;
    const float *x = f ? get(f, "x", &nx) : NULL, *t = f ? get(f, "timesteps", &nt) : NULL;
    const float *f1 = f ? get(f, "full_emb1", &n1) : NULL, *p1 = f ? get(f, "pooled_emb1", &np) : NULL;
    const float *f2 = f ? get(f, "full_emb2", &n2) : NULL, *ref = f ? get(f, "out", &no) : NULL;
    if (u && x && t && f1 && p1 && f2 && ref) {
        TEST_CHECK(kd_unet_sample_channels(u) == 4 && kd_unet_out_channels(u) == 8 && kd_unet_size_multiple(u) == 4 &&
                       kd_unet_text_embed_dim(u) == 24 && kd_unet_text_hidden_dim(u) == 48 &&
                       kd_unet_text_hidden_dim2(u) == 512 && kd_unet_image_embed_dim(u) == 0,
                   "2.0 U-Net sizes");
        kd_unet_cond c = {.timesteps = t, .text_embeds = p1, .encoder_hidden_states = f1, .text_len = 12,
                          .encoder_hidden_states2 = f2, .text_len2 = 12};
        float *out = malloc(no * sizeof(float));
        kd_status s = kd_unet_forward(ctx, u, x, 2, 8, 8, &c, out);
        TEST_CHECK(s == KD_OK, "forward: %s", kd_ctx_last_error(ctx));
        if (s == KD_OK) kt_allclose("unet 2.0 (original checkpoint) out", out, ref, no, 1e-4 * kt_max_abs(ref, no), 1e-4);
        kd_unet_cond bad = c;
        bad.encoder_hidden_states2 = NULL;
        TEST_CHECK(kd_unet_forward(ctx, u, x, 2, 8, 8, &bad, out) == KD_ERR_INVALID_ARG &&
                       strstr(kd_ctx_last_error(ctx), "mT5"),
                   "missing mT5 states: %s", kd_ctx_last_error(ctx));
        free(out);
    }
    kd_unet_free(u);
    /* the published configuration on the tiny file: refused naming the tensor */
    u = NULL;
    TEST_CHECK(kd_unet_load_2_0(ctx, pt, 4, &u) == KD_ERR_SHAPE && !u && strstr(kd_ctx_last_error(ctx), "input_blocks."),
               "published config on the tiny file: %s", kd_ctx_last_error(ctx));
    kd_unet20_config inpaint = tiny;
    inpaint.in_channels = 9;
    TEST_CHECK(kd_unet_load_2_0_cfg(ctx, pt, &inpaint, &u) == KD_ERR_SHAPE && !u &&
                   strstr(kd_ctx_last_error(ctx), "conv_in"),
               "a text-to-image file as the inpainting model: %s", kd_ctx_last_error(ctx));
    kd_st_close(f);
    kd_ctx_free(ctx);
    return kt_finish("test_unet20");
}
