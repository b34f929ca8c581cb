/* Kandinsky 2.0's autoencoder: ldm's AutoencoderKL from a Lightning checkpoint in the original
 * names, against the original code (tools/reference/gen_kl.py: ai-forever/Kandinsky-2's
 * vqgan/autoencoder.py on a tiny ddconfig with attention in the lowest level only, so the
 * decoder's reversed level numbering is exercised, and a channel change, so nin_shortcut is).
 *   moments (encoder + quant_conv), the mean through the autoencoder interface, the posterior's
 *   sample for given noise, and decode (post_quant_conv + decoder), 20×24 batch 2 / 7×9 latents;
 *   |got − ref| <= 1e-4·max|ref| + 1e-4·|ref|. The 2.0 ddconfig on this checkpoint is refused
 *   naming the first tensor whose shape disagrees. */
#include <stdlib.h>
#include <string.h>

#include "api/ctx.h"
#include "io/safetensors.h"
#include "kandinsky.h"
#include "models/autoencoder.h"
#include "models/movq.h"
#include "testutil.h"

/* as gen_kl.py's DDCONFIG */
static const kd_ldm_kl_config tiny = {.ch = 32, .n_levels = 2, .ch_mult = {1, 2}, .num_res_blocks = 1,
                                      .resolution = 16, .n_attn = 1, .attn_resolutions = {8}, .in_channels = 3,
                                      .out_ch = 3, .z_channels = 4, .embed_dim = 4};

static const float *tensor(const kd_st_file *f, const char *name, size_t *n) {
    const float *p = kt_f32_tensor(f, name, n);
    TEST_CHECK(p != NULL, "cases: %s", name);
    return p;
}

int main(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    char ckpt[600], cases[600];
    snprintf(ckpt, sizeof ckpt, "%s/vae.ckpt", kt_data_path("autoencoder_kl"));
    snprintf(cases, sizeof cases, "%s/cases.safetensors", kt_data_path("autoencoder_kl"));
    kd_movq *m = NULL;
    TEST_CHECK(kd_vae_kl_load_ldm(ctx, ckpt, &tiny, &m) == KD_OK, "load %s: %s", ckpt, kd_ctx_last_error(ctx));
    kd_st_file *f = NULL;
    kd_err e;
    TEST_CHECK(kd_st_open(cases, &f, &e) == KD_OK, "open %s: %s", cases, e.msg);
    size_t ni = 0, nm = 0, nn = 0, ns = 0, nl = 0, nd = 0;
    const float *img = f ? tensor(f, "image", &ni) : NULL, *mom_ref = f ? tensor(f, "moments", &nm) : NULL;
    const float *noise = f ? tensor(f, "noise", &nn) : NULL, *smp_ref = f ? tensor(f, "sample", &ns) : NULL;
    const float *lat = f ? tensor(f, "latents", &nl) : NULL, *dec_ref = f ? tensor(f, "decoded", &nd) : NULL;
    if (m && img && mom_ref && noise && smp_ref && lat && dec_ref) {
        TEST_CHECK(kd_movq_is_kl(m) && kd_movq_latent_channels(m) == 4 && kd_movq_downscale(m) == 2, "KL sizes");
        int lh, lw;
        kd_movq_latent_size(m, 20, 24, &lh, &lw);
        TEST_CHECK(lh == 10 && lw == 12 && nm == (size_t)2 * 8 * 10 * 12, "latent size %dx%d", lh, lw);
        float *mom = malloc(nm * sizeof(float)), *z = malloc(ns * sizeof(float)), *mean = malloc(ns * sizeof(float));
        float *meanref = malloc(ns * sizeof(float)), *dec = malloc(nd * sizeof(float));
        kd_status s = kd_vae_kl_moments_be(m, &ctx->be, img, 2, 20, 24, mom, &ctx->err);
        TEST_CHECK(s == KD_OK, "moments: %s", kd_ctx_last_error(ctx));
        if (s == KD_OK) {
            kt_allclose("autoencoder_kl moments", mom, mom_ref, nm, 1e-4 * kt_max_abs(mom_ref, nm), 1e-4);
            kd_vae_kl_sample(mom, 2, 4, 10 * 12, noise, z);
            kt_allclose("autoencoder_kl sample (given noise)", z, smp_ref, ns, 1e-4 * kt_max_abs(smp_ref, ns), 1e-4);
        }
        /* the interface's encode is the mode: the mean half of the reference moments */
        kd_vae_kl_sample(mom_ref, 2, 4, 10 * 12, NULL, meanref);
        s = kd_movq_encode(ctx, m, img, 2, 20, 24, mean);
        TEST_CHECK(s == KD_OK, "encode: %s", kd_ctx_last_error(ctx));
        if (s == KD_OK) kt_allclose("autoencoder_kl encode = mean", mean, meanref, ns, 1e-4 * kt_max_abs(meanref, ns), 1e-4);
        s = kd_movq_decode(ctx, m, lat, 1, 7, 9, dec);
        TEST_CHECK(s == KD_OK, "decode: %s", kd_ctx_last_error(ctx));
        if (s == KD_OK) kt_allclose("autoencoder_kl decode", dec, dec_ref, nd, 1e-4 * kt_max_abs(dec_ref, nd), 1e-4);
        free(mom), free(z), free(mean), free(meanref), free(dec);
    }
    kd_movq_free(m);
    /* the published configuration on the tiny checkpoint: refused by tensor name */
    m = NULL;
    TEST_CHECK(kd_vae_kl_load_ldm(ctx, ckpt, &kd_ldm_kl_config_2_0, &m) == KD_ERR_SHAPE && !m &&
                   strstr(kd_ctx_last_error(ctx), "encoder.conv_in.weight"),
               "2.0 ddconfig on the tiny file: %s", kd_ctx_last_error(ctx));
    kd_ldm_kl_config bad = tiny;
    bad.ch_mult[0] = 2;
    TEST_CHECK(kd_vae_kl_load_ldm(ctx, ckpt, &bad, &m) == KD_ERR_UNSUPPORTED && !m, "ch_mult[0] 2: %s",
               kd_ctx_last_error(ctx));
    bad = tiny;
    bad.n_levels = 0;
    TEST_CHECK(kd_vae_kl_load_ldm(ctx, ckpt, &bad, &m) == KD_ERR_INVALID_ARG && !m, "no levels: %s",
               kd_ctx_last_error(ctx));
    /* a MoVQ has no moments */
    char movq[600];
    snprintf(movq, sizeof movq, "%s/two_level", kt_data_path("movq"));
    TEST_CHECK(kd_movq_load(ctx, movq, &m) == KD_OK, "load %s: %s", movq, kd_ctx_last_error(ctx));
    if (m) {
        float dummy[16];
        TEST_CHECK(kd_vae_kl_moments_be(m, &ctx->be, dummy, 1, 64, 64, dummy, &ctx->err) == KD_ERR_INVALID_ARG,
                   "MoVQ moments refused: %s", kd_ctx_last_error(ctx));
        kd_movq_free(m);
    }
    kd_st_close(f);
    kd_ctx_free(ctx);
    return kt_finish("test_autoencoder_kl");
}
