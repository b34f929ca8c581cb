/* Kandinsky 2.1: the U-Net is conditioned on the CLIP image embedding and on the prompt, encoded
 * by the decoder folder's XLM-R tokenizer + MultilingualCLIP (KandinskyPipeline._encode_prompt):
 * ids/mask padded to 77, text_embeds [rows, 768] and last_hidden_state [rows, 77, 1024] for the
 * U-Net's text_image conditioning. Its pipelines differ from 2.2's in two more places, kept here:
 * img2img noises with a schedule of its own, and inpainting never pastes the known region back. */
#include <stdlib.h>
#include <string.h>

#include "models/unet.h"
#include "pipeline/pipeline.h"
#include "text/xlmr_tokenizer.h"

#define TEXT21_LEN 77

kd_status kd_cond_image_embeds(kd_ctx *ctx, const kd_cond_args *a, int E, kd_dec_cond *out);

int kd_k21_text_len(void) { return TEXT21_LEN; }

kd_status kd_k21_encode_text(kd_ctx *ctx, const kd_decoder_stage *d, const char *const *texts, int rows, float *embeds,
                             float *hidden) {
    int32_t *ids = malloc((size_t)rows * TEXT21_LEN * sizeof(int32_t));
    int32_t *mask = malloc((size_t)rows * TEXT21_LEN * sizeof(int32_t));
    kd_status s = ids && mask ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    for (int r = 0; s == KD_OK && r < rows; r++) {
        int n;
        s = kd_xlmr_tokenize(d->xlmr, texts[r], strlen(texts[r]), TEXT21_LEN, ids + (size_t)r * TEXT21_LEN,
                             mask + (size_t)r * TEXT21_LEN, &n, &ctx->err);
        if (s != KD_OK) kd_err_prefix(&ctx->err, "prompt");
    }
    if (s == KD_OK) s = kd_mclip_forward(ctx, d->mclip, ids, mask, rows, TEXT21_LEN, embeds, hidden);
    free(ids);
    free(mask);
    return s;
}

/* image embeds as 2.2, plus MCLIP of [negative_prompt or "" ×n ; prompt ×n] (CFG) or [prompt ×n]. */
static kd_status condition21(kd_ctx *ctx, const kd_decoder_stage *d, const kd_cond_args *a, kd_dec_cond *out) {
    KD_TRY(kd_cond_image_embeds(ctx, a, kd_unet_image_embed_dim(d->unet), out));
    int batch = out->batch;
    out->text_dim = kd_mclip_embed_dim(d->mclip);
    out->hidden_dim = kd_mclip_hidden_size(d->mclip);
    out->text_len = TEXT21_LEN;
    if (out->text_dim != kd_unet_text_embed_dim(d->unet) || out->hidden_dim != kd_unet_text_hidden_dim(d->unet))
        return kd_ctx_fail(ctx, KD_ERR_SHAPE, "decoder: the text encoder gives %d / %d values, the U-Net expects %d / %d",
                           out->text_dim, out->hidden_dim, kd_unet_text_embed_dim(d->unet),
                           kd_unet_text_hidden_dim(d->unet));
    const char **texts = malloc((size_t)batch * sizeof *texts);
    out->text_embeds = malloc((size_t)batch * out->text_dim * sizeof(float));
    out->text_hidden = malloc((size_t)batch * TEXT21_LEN * out->hidden_dim * sizeof(float));
    if (!texts || !out->text_embeds || !out->text_hidden) {
        free(texts);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "decoder: out of memory");
    }
    for (int b = 0; b < batch; b++) {
        int uncond = a->cfg && b < a->n;
        texts[b] = uncond ? (a->negative_prompt ? a->negative_prompt : "") : (a->prompt ? a->prompt : "");
    }
    kd_status s = kd_k21_encode_text(ctx, d, texts, batch, out->text_embeds, out->text_hidden);
    free(texts);
    return s;
}

/* The linear 1e-4..0.02 schedule of KandinskyImg2ImgPipeline.add_noise, as a DDPM scheduler. */
kd_status kd_k21_img2img_noise(const float *original, const float *noise, size_t n, double strength,
                               int num_train_timesteps, float *out, int64_t *t_used, kd_err *e) {
    if (n && (!original || !noise || !out)) return kd_errf(e, KD_ERR_INVALID_ARG, "add_noise_k21: NULL argument");
    if (!(strength >= 0.0 && strength <= 1.0))
        return kd_errf(e, KD_ERR_INVALID_ARG, "img2img strength must be in [0, 1], got %g", strength);
    int64_t t = (int64_t)((double)num_train_timesteps * strength) - 2;
    if (t < 0 || t >= 1000)
        return kd_errf(e, KD_ERR_INVALID_ARG,
                       "Kandinsky 2.1 img2img: strength %g gives noise timestep %lld outside [0, 1000) "
                       "(int(%d * strength) - 2)",
                       strength, (long long)t, num_train_timesteps);
    kd_sched_config cfg;
    kd_sched_config_default(KD_SCHED_DDPM, &cfg); /* linear betas 0.0001 .. 0.02 over 1000 steps */
    cfg.beta_start = 0.0001;
    cfg.beta_end = 0.02;
    cfg.beta_schedule = KD_BETA_LINEAR;
    cfg.num_train_timesteps = 1000;
    kd_sched *s;
    KD_TRY(kd_sched_create(&cfg, NULL, &s, e));
    kd_status st = kd_sched_add_noise(s, original, noise, n, t, out, e);
    kd_sched_free(s);
    if (st == KD_OK && t_used) *t_used = t;
    return st;
}

/* KandinskyImg2ImgPipeline: noise for the whole batch, its own schedule. */
static kd_status img2img21(kd_ctx *ctx, const kd_decoder_stage *d, kd_rng *rng, const kd_dec_inputs *in, int n,
                           size_t per, int start, float *x) {
    size_t nx = (size_t)n * per;
    int64_t t_used;
    kd_rng_randn(rng, x, nx);
    return kd_k21_img2img_noise(in->init_latents, x, nx, in->strength, d->sampler->num_train_timesteps,
                                x, &t_used, &ctx->err);
}

const kd_version_desc kd_version_21 = {
    .id = KD_MODEL_VERSION_2_1,
    .name = "2.1",
    .has_prior = 1,
    .decoder_text_encoder = 1,
    .inpaint_blend = 0,
    .img2img_exact_size = 1,
    .condition = condition21,
    .img2img_latents = img2img21,
};
