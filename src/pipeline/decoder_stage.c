/* Decoder stage of Kandinsky 2.2: KandinskyV22Pipeline (text to image) and, through
 * kd_dec_inputs, its img2img, inpainting and ControlNet variants. Spec §4.1, §4.4.
 *
 *   embeds = [negative ; positive] when guidance_scale > 1 (classifier-free guidance batch)
 *   x = randn[n, 4, h, w]                       text2img, inpaint, ControlNet
 *     = add_noise(init_latents, randn, t_start)  img2img (loop starts at t_start)
 *   for t in DDPM timesteps:
 *       in  = [x ; x] (⊕ masked latents ⊕ mask for the 9-channel inpainting U-Net)
 *       out = unet(in, t, image_embeds [, hint])    [2n, 8, h, w]
 *       eps = eps_u + g·(eps_c − eps_u) on the first 4 channels; the variance channels come from
 *             the conditional half; both are kept only for learned / learned_range schedulers
 *       x = scheduler.step(eps, t, x)
 *       inpaint: x = m·add_noise(image_latents, x_T, t_next) + (1 − m)·x   (m = 1 keeps)
 *   inpaint: x = m·image_latents + (1 − m)·x
 *   pixels = movq.decode(x)                           [n, 3, f·h, f·w] in about [-1, 1] */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"

void kd_pipe_latent_size(const kd_pipeline *p, int height, int width, int *lat_h, int *lat_w) {
    int f = kd_movq_downscale(p->movq), f2 = f * f;
    *lat_h = (height / f2 + (height % f2 != 0)) * f;
    *lat_w = (width / f2 + (width % f2 != 0)) * f;
}

typedef struct dec_loop {
    int n, cfg, C, Cin, Cout, learned;
    int64_t hw;
    float guidance;
    float *x, *x_in, *out, *model_out, *ts, *embeds, *hint, *noise0, *tmp;
    float *text_embeds, *text_hidden; /* 2.1: [batch, E], [batch, 77, H] */
    const kd_dec_inputs *in;
} dec_loop;

/* A diverged run (NaN/inf latents) is reported instead of decoded into a black picture. */
static kd_status check_finite(kd_ctx *ctx, const dec_loop *d) {
    size_t n = (size_t)d->n * d->C * d->hw;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(d->x[i]))
            return kd_ctx_fail(ctx, KD_ERR_NUMERIC,
                               "decoder: the latents are not finite after the last step (the U-Net or its scheduler "
                               "diverged; with random or broken weights, or too few steps for a DDPM scheduler)");
    return KD_OK;
}

/* Guided model output for the scheduler: [n, C or 2C, hw]. */
static void guide(const dec_loop *d) {
    int64_t plane = d->hw, half = (int64_t)d->n * d->Cout * plane;
    int Cm = d->learned ? 2 * d->C : d->C;
    for (int b = 0; b < d->n; b++)
        for (int c = 0; c < Cm; c++) {
            float *dst = d->model_out + ((int64_t)b * Cm + c) * plane;
            const float *cond = d->out + (d->cfg ? half : 0) + ((int64_t)b * d->Cout + c) * plane;
            const float *unc = d->out + ((int64_t)b * d->Cout + c) * plane;
            if (!d->cfg || c >= d->C)
                memcpy(dst, cond, (size_t)plane * sizeof(float));
            else
                for (int64_t k = 0; k < plane; k++) dst[k] = unc[k] + d->guidance * (cond[k] - unc[k]);
        }
}

/* U-Net input for one step: [x ; x] (CFG), each sample followed by its masked latents and mask
 * channels for the inpainting U-Net. */
static void build_input(const dec_loop *d) {
    int batch = d->cfg ? 2 * d->n : d->n;
    size_t plane = (size_t)d->hw * sizeof(float);
    for (int b = 0; b < batch; b++) {
        int s = b % d->n;
        float *dst = d->x_in + (int64_t)b * d->Cin * d->hw;
        memcpy(dst, d->x + (int64_t)s * d->C * d->hw, d->C * plane);
        if (d->in && d->in->mask) {
            memcpy(dst + d->C * d->hw, d->in->masked_latents + (int64_t)s * d->C * d->hw, d->C * plane);
            memcpy(dst + 2 * d->C * d->hw, d->in->mask + (int64_t)s * d->hw, plane);
        }
    }
}

/* Inpainting: known region = the image latents, noised to the next timestep (not after the last
 * step); m = mask of the first image (1 keeps), as diffusers uses image[:1] and mask[:1]. */
static kd_status blend_known(kd_ctx *ctx, kd_pipeline *p, dec_loop *d, int64_t t_next) {
    const kd_dec_inputs *in = d->in;
    int64_t per = (int64_t)d->C * d->hw;
    for (int b = 0; b < d->n; b++) {
        const float *known = in->image_latents;
        if (t_next >= 0) {
            KD_TRY(kd_sched_add_noise(p->decoder_sched, in->image_latents, d->noise0 + b * per, (size_t)per, t_next,
                                      d->tmp, &ctx->err));
            known = d->tmp;
        }
        float *x = d->x + b * per;
        for (int c = 0; c < d->C; c++)
            for (int64_t k = 0; k < d->hw; k++) {
                float m = in->mask[k];
                x[c * d->hw + k] = m * known[c * d->hw + k] + (1.0f - m) * x[c * d->hw + k];
            }
    }
    return KD_OK;
}

static kd_status denoise(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, dec_loop *d, int lat_h,
                         int lat_w, int start) {
    kd_sched *s = p->decoder_sched;
    int n = kd_sched_num_timesteps(s), batch = d->cfg ? 2 * d->n : d->n;
    const int64_t *ts = kd_sched_timesteps(s);
    kd_sched_shape shape = {d->n, d->C, d->hw};
    /* 2.2 pastes the known region back after every step; the 2.1 pipeline (p->mclip) does not */
    int blend = d->in && d->in->mask && !p->mclip;
    kd_unet_cond cond = {.timesteps = d->ts, .image_embeds = d->embeds, .hint = d->hint,
                         .text_embeds = d->text_embeds, .encoder_hidden_states = d->text_hidden,
                         .text_len = d->text_hidden ? kd_pipe_text21_len() : 0};
    for (int i = start; i < n; i++) {
        build_input(d);
        for (int b = 0; b < batch; b++) d->ts[b] = (float)ts[i];
        KD_TRY(kd_unet_forward(ctx, p->unet, d->x_in, batch, lat_h, lat_w, &cond, d->out));
        guide(d);
        kd_status st = kd_sched_step(s, d->model_out, d->learned ? 2 * d->C : d->C, ts[i], d->x, &shape, rng, d->x,
                                     NULL, &ctx->err);
        if (st != KD_OK) return kd_err_prefix(&ctx->err, "decoder scheduler");
        if (blend) KD_TRY(blend_known(ctx, p, d, i + 1 < n ? ts[i + 1] : -1));
        kd_pipe_progress(g, "decoder", i + 1 - start, n - start);
    }
    if (blend) KD_TRY(blend_known(ctx, p, d, -1));
    return KD_OK;
}

/* Initial latents: noise, or the init image's latents noised to the first timestep (img2img). */
static kd_status init_latents(kd_ctx *ctx, kd_pipeline *p, kd_rng *rng, dec_loop *d, int *start) {
    size_t nx = (size_t)d->n * d->C * d->hw, per = (size_t)d->C * d->hw;
    *start = 0;
    if (d->in && d->in->init_latents) {
        int count;
        KD_TRY(kd_sched_img2img_start(p->decoder_sched, d->in->strength, start, &count, &ctx->err));
        if (count < 1)
            return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG,
                               "strength %g leaves no denoising step out of %d (strength × steps must be >= 1)",
                               d->in->strength, kd_sched_num_timesteps(p->decoder_sched));
        if (p->mclip) { /* 2.1: noise for the whole batch, its own linear 1e-4..0.02 schedule */
            int64_t t_used;
            kd_rng_randn(rng, d->x, nx);
            return kd_sched_add_noise_k21(d->in->init_latents, d->x, nx, d->in->strength,
                                          kd_sched_get_config(p->decoder_sched)->num_train_timesteps, d->x, &t_used,
                                          &ctx->err);
        }
        int64_t t0 = kd_sched_timesteps(p->decoder_sched)[*start];
        /* diffusers draws noise of the ONE encoded image's shape and broadcasts it over the batch
         * (add_noise with a timestep per sample): every image starts from the same noise. */
        kd_rng_randn(rng, d->x, per);
        for (int b = d->n - 1; b >= 0; b--)
            KD_TRY(kd_sched_add_noise(p->decoder_sched, d->in->init_latents + b * per, d->x, per, t0, d->x + b * per,
                                      &ctx->err));
        return KD_OK;
    }
    kd_rng_randn(rng, d->x, nx);
    float sigma = kd_sched_init_noise_sigma(p->decoder_sched);
    for (size_t k = 0; k < nx; k++) d->x[k] *= sigma;
    if (d->noise0) memcpy(d->noise0, d->x, nx * sizeof(float));
    return KD_OK;
}

static kd_status check_unet(kd_ctx *ctx, kd_pipeline *p, const dec_loop *d) {
    int hint = d->in && d->in->hint, mask = d->in && d->in->mask;
    int C = kd_movq_latent_channels(p->movq);
    if (d->Cin != (mask ? 2 * C + 1 : C))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG,
                           mask ? "inpainting needs an inpainting decoder (U-Net with %d input channels); this one has %d"
                                : "this decoder's U-Net takes %d input channels; only inpainting (a mask) uses them all",
                           mask ? 2 * C + 1 : d->Cin, mask ? d->Cin : 0);
    if (hint != kd_unet_has_hint(p->unet))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, hint ? "a hint image needs a ControlNet decoder (image_hint U-Net)"
                                                         : "this ControlNet decoder needs a hint image (--hint)");
    if (d->Cout < (d->learned ? 2 : 1) * d->C)
        return kd_ctx_fail(ctx, KD_ERR_SHAPE, "decoder: U-Net with %d output channels does not fit %d latent channels",
                           d->Cout, d->C);
    return KD_OK;
}

static void loop_free(dec_loop *d) {
    free(d->x);
    free(d->x_in);
    free(d->out);
    free(d->model_out);
    free(d->ts);
    free(d->embeds);
    free(d->hint);
    free(d->noise0);
    free(d->tmp);
    free(d->text_embeds);
    free(d->text_hidden);
}

/* Kandinsky 2.1: the decoder encodes [negative_prompt or "" ×n ; prompt ×n] (CFG) or [prompt ×n]
 * with MultilingualCLIP, as KandinskyPipeline._encode_prompt does. */
static kd_status encode_text(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, dec_loop *d) {
    int batch = d->cfg ? 2 * d->n : d->n, E = kd_mclip_embed_dim(p->mclip), H = kd_mclip_hidden_size(p->mclip);
    const char **texts = malloc((size_t)batch * sizeof *texts);
    d->text_embeds = malloc((size_t)batch * E * sizeof(float));
    d->text_hidden = malloc((size_t)batch * kd_pipe_text21_len() * H * sizeof(float));
    if (!texts || !d->text_embeds || !d->text_hidden) {
        free(texts);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "decoder: out of memory");
    }
    for (int b = 0; b < batch; b++) {
        int uncond = d->cfg && b < d->n;
        texts[b] = uncond ? (g->negative_prompt ? g->negative_prompt : "") : (g->prompt ? g->prompt : "");
    }
    kd_status s = kd_pipe_encode_text21(ctx, p, texts, batch, d->text_embeds, d->text_hidden);
    free(texts);
    return s;
}

/* Buffers, the CFG embedding batch and the CFG hint batch. */
static kd_status loop_alloc(kd_ctx *ctx, kd_pipeline *p, dec_loop *d, const float *image_embeds,
                            const float *negative_embeds, int lat_h, int lat_w) {
    int E = kd_unet_image_embed_dim(p->unet), batch = d->cfg ? 2 * d->n : d->n;
    size_t nx = (size_t)d->n * d->C * d->hw, hint_n = (size_t)3 * 64 * d->hw;
    d->x = malloc(nx * sizeof(float));
    d->x_in = malloc((size_t)batch * d->Cin * d->hw * sizeof(float));
    d->out = malloc((size_t)batch * d->Cout * d->hw * sizeof(float));
    d->model_out = malloc(2 * nx * sizeof(float));
    d->ts = malloc((size_t)batch * sizeof(float));
    d->embeds = malloc((size_t)batch * E * sizeof(float));
    if (d->in && d->in->hint) d->hint = malloc((size_t)batch * hint_n * sizeof(float));
    if (d->in && d->in->mask) {
        d->noise0 = malloc(nx * sizeof(float));
        d->tmp = malloc((size_t)d->C * d->hw * sizeof(float));
    }
    if (!d->x || !d->x_in || !d->out || !d->model_out || !d->ts || !d->embeds || (d->in && d->in->hint && !d->hint) ||
        (d->in && d->in->mask && (!d->noise0 || !d->tmp)))
        return kd_ctx_fail(ctx, KD_ERR_OOM, "decoder: out of memory for %d×%d latents", lat_w, lat_h);
    size_t eb = (size_t)d->n * E * sizeof(float);
    if (d->cfg) {
        memcpy(d->embeds, negative_embeds, eb);
        memcpy((char *)d->embeds + eb, image_embeds, eb);
    } else {
        memcpy(d->embeds, image_embeds, eb);
    }
    for (int b = 0; d->hint && b < batch; b++) /* the same hint for every sample and both CFG halves */
        memcpy(d->hint + b * hint_n, d->in->hint, hint_n * sizeof(float));
    return KD_OK;
}

kd_status kd_pipe_decode(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, const float *image_embeds,
                         const float *negative_embeds, int lat_h, int lat_w, const kd_dec_inputs *in, float *pixels) {
    KD_TRY(kd_pipe_load_decoder_stage(ctx, p));
    const kd_sched_config *sc = kd_sched_get_config(p->decoder_sched);
    dec_loop d = {.n = g->num_images, .cfg = g->guidance_scale > 1.0f, .C = kd_movq_latent_channels(p->movq),
                  .Cin = kd_unet_sample_channels(p->unet), .Cout = kd_unet_out_channels(p->unet),
                  .hw = (int64_t)lat_h * lat_w, .guidance = g->guidance_scale, .in = in,
                  .learned = sc->variance_type == KD_VAR_LEARNED || sc->variance_type == KD_VAR_LEARNED_RANGE};
    int start = 0;
    kd_status s = check_unet(ctx, p, &d);
    if (s == KD_OK) s = loop_alloc(ctx, p, &d, image_embeds, negative_embeds, lat_h, lat_w);
    if (s == KD_OK && p->mclip) s = encode_text(ctx, p, g, &d);
    if (s == KD_OK) {
        s = kd_sched_set_timesteps(p->decoder_sched, g->steps, &ctx->err);
        if (s != KD_OK) kd_err_prefix(&ctx->err, "decoder scheduler");
    }
    if (s == KD_OK) s = init_latents(ctx, p, rng, &d, &start);
    if (s == KD_OK) s = denoise(ctx, p, g, rng, &d, lat_h, lat_w, start);
    if (s == KD_OK) s = check_finite(ctx, &d);
    if (s == KD_OK && p->low_memory) { /* the U-Net (5 GB) goes before MoVQ activations arrive */
        kd_unet_free(p->unet);
        p->unet = NULL;
    }
    if (s == KD_OK) {
        s = kd_movq_decode(ctx, p->movq, d.x, d.n, lat_h, lat_w, pixels);
        kd_pipe_progress(g, "decode", 1, 1);
    }
    loop_free(&d);
    return s;
}
