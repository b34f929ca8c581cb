/* Decoder stage of Kandinsky 2.2 (KandinskyV22Pipeline.__call__). Spec §4.1, §4.4.
 *
 *   embeds = [negative ; positive] when guidance_scale > 1 (classifier-free guidance batch)
 *   x ~ randn[n, 4, h, w]
 *   for t in DDPM timesteps:
 *       out = unet([x ; x], t, image_embeds)          [2n, 8, h, w]
 *       eps = eps_u + g·(eps_c − eps_u) on the first 4 channels; the variance channels come from
 *             the conditional half; both are kept only for learned / learned_range schedulers
 *       x = scheduler.step(eps, t, x)
 *   pixels = movq.decode(x)                           [n, 3, f·h, f·w] in about [-1, 1] */
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"

void kd_pipe_latent_size(const kd_pipeline *p, int height, int width, int *lat_h, int *lat_w) {
    int f = kd_movq_downscale(p->movq), f2 = f * f;
    *lat_h = (height / f2 + (height % f2 != 0)) * f;
    *lat_w = (width / f2 + (width % f2 != 0)) * f;
}

typedef struct dec_loop {
    int n, cfg, C, Cout, learned;
    int64_t hw;
    float guidance;
    float *x, *x_in, *out, *model_out, *ts, *embeds;
} dec_loop;

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

static kd_status denoise(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, dec_loop *d, int lat_h,
                         int lat_w) {
    kd_sched *s = p->decoder_sched;
    int n = kd_sched_num_timesteps(s), batch = d->cfg ? 2 * d->n : d->n;
    const int64_t *ts = kd_sched_timesteps(s);
    size_t xbytes = (size_t)d->n * d->C * d->hw * sizeof(float);
    kd_sched_shape shape = {d->n, d->C, d->hw};
    kd_unet_cond cond = {.timesteps = d->ts, .image_embeds = d->embeds};
    for (int i = 0; i < n; i++) {
        memcpy(d->x_in, d->x, xbytes);
        if (d->cfg) memcpy((char *)d->x_in + xbytes, d->x, xbytes);
        for (int b = 0; b < batch; b++) d->ts[b] = (float)ts[i];
        KD_TRY(kd_unet_forward(ctx, p->unet, d->x_in, batch, lat_h, lat_w, &cond, d->out));
        guide(d);
        kd_status st = kd_sched_step(s, d->model_out, d->learned ? 2 * d->C : d->C, ts[i], d->x, &shape, rng, d->x,
                                     NULL, &ctx->err);
        if (st != KD_OK) return kd_err_prefix(&ctx->err, "decoder scheduler");
        kd_pipe_progress(g, "decoder", i + 1, n);
    }
    return KD_OK;
}

kd_status kd_pipe_decode(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, const float *image_embeds,
                         const float *negative_embeds, int lat_h, int lat_w, float *pixels) {
    KD_TRY(kd_pipe_load_decoder_stage(ctx, p));
    const kd_sched_config *sc = kd_sched_get_config(p->decoder_sched);
    dec_loop d = {.n = g->num_images, .cfg = g->guidance_scale > 1.0f, .C = kd_unet_sample_channels(p->unet),
                  .Cout = kd_unet_out_channels(p->unet), .hw = (int64_t)lat_h * lat_w, .guidance = g->guidance_scale,
                  .learned = sc->variance_type == KD_VAR_LEARNED || sc->variance_type == KD_VAR_LEARNED_RANGE};
    int E = kd_unet_image_embed_dim(p->unet), batch = d.cfg ? 2 * d.n : d.n;
    if (d.C != kd_movq_latent_channels(p->movq) || d.Cout < (d.learned ? 2 : 1) * d.C)
        return kd_ctx_fail(ctx, KD_ERR_SHAPE, "decoder: U-Net with %d input / %d output channels does not fit a MoVQ with %d latent channels",
                           d.C, d.Cout, kd_movq_latent_channels(p->movq));
    size_t nx = (size_t)d.n * d.C * d.hw;
    d.x = malloc(nx * sizeof(float));
    d.x_in = malloc(2 * nx * sizeof(float));
    d.out = malloc((size_t)batch * d.Cout * d.hw * sizeof(float));
    d.model_out = malloc(2 * nx * sizeof(float));
    d.ts = malloc((size_t)batch * sizeof(float));
    d.embeds = malloc((size_t)batch * E * sizeof(float));
    kd_status s = KD_OK;
    if (!d.x || !d.x_in || !d.out || !d.model_out || !d.ts || !d.embeds)
        s = kd_ctx_fail(ctx, KD_ERR_OOM, "decoder: out of memory for %d×%d latents", lat_w, lat_h);
    if (s == KD_OK) {
        size_t eb = (size_t)d.n * E * sizeof(float);
        if (d.cfg) {
            memcpy(d.embeds, negative_embeds, eb);
            memcpy((char *)d.embeds + eb, image_embeds, eb);
        } else {
            memcpy(d.embeds, image_embeds, eb);
        }
        s = kd_sched_set_timesteps(p->decoder_sched, g->steps, &ctx->err);
        if (s != KD_OK) kd_err_prefix(&ctx->err, "decoder scheduler");
    }
    if (s == KD_OK) {
        kd_rng_randn(rng, d.x, nx);
        float sigma = kd_sched_init_noise_sigma(p->decoder_sched);
        for (size_t k = 0; k < nx; k++) d.x[k] *= sigma;
        s = denoise(ctx, p, g, rng, &d, lat_h, lat_w);
    }
    if (s == KD_OK && p->low_memory) { /* the U-Net (5 GB) goes before MoVQ activations arrive */
        kd_unet_free(p->unet);
        p->unet = NULL;
    }
    if (s == KD_OK) {
        s = kd_movq_decode(ctx, p->movq, d.x, d.n, lat_h, lat_w, pixels);
        kd_pipe_progress(g, "decode", 1, 1);
    }
    free(d.x);
    free(d.x_in);
    free(d.out);
    free(d.model_out);
    free(d.ts);
    free(d.embeds);
    return s;
}
