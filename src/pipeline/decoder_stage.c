/* The denoising loop of the decoders (KandinskyV22Pipeline and its img2img, inpainting and
 * ControlNet variants; KandinskyPipeline for 2.1). Spec §4.1, §4.4.
 *
 *   x = randn[n, C, h, w]                        text2img, inpaint, ControlNet
 *     = version->img2img_latents(init latents)    img2img (loop starts at t_start)
 *   for t in the scheduler's timesteps:
 *       in  = [x ; x] (⊕ masked latents ⊕ mask for the 9-channel inpainting U-Net)
 *       out = unet(in, t, cond)                       [2n, 8, h, w]
 *       eps = eps_u + g·(eps_c − eps_u) on the first C channels; the variance channels come from
 *             the conditional half; both are kept only for learned / learned_range schedulers
 *       x = scheduler.step(eps, t, x)
 *       inpaint (2.2): x = m·add_noise(image_latents, x_T, t_next) + (1 − m)·x   (m = 1 keeps)
 *   inpaint (2.2): x = m·image_latents + (1 − m)·x
 *
 * The U-Net runs on backend memory: the conditioning and the hint go up once, and per step the
 * U-Net input goes up and its output comes down (the scheduler works on host arrays; where backend
 * memory is host memory both are the same buffers, kd_be_mirror). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "io/image.h"
#include "models/unet.h"
#include "pipeline/pipeline.h"

void kd_latent_size(int f, int height, int width, int *lat_h, int *lat_w) {
    int f2 = f * f;
    *lat_h = (height / f2 + (height % f2 != 0)) * f;
    *lat_w = (width / f2 + (width % f2 != 0)) * f;
}

typedef struct dec_loop {
    int n, cfg, batch, C, Cin, Cout, learned;
    int64_t hw;
    float guidance;
    /* host */
    float *x, *x_in, *out, *model_out, *ts, *hint, *noise0, *tmp;
    /* backend */
    float *d_x_in, *d_out;
    kd_unet_cond cond; /* backend pointers (timesteps: host) */
    void *d_bufs[4];   /* what cond points into */
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

/* U-Net input for one step: [x ; x] (CFG) scaled as the sampler's scale_model_input says (identity
 * but for the sigma samplers), each sample followed by its masked latents and mask channels for
 * the inpainting U-Net (those are not scaled: they are conditioning, not the noisy sample). */
static void build_input(const dec_loop *d, kd_sampler *s, int i) {
    size_t plane = (size_t)d->hw * sizeof(float);
    for (int b = 0; b < d->batch; b++) {
        int si = b % d->n;
        float *dst = d->x_in + (int64_t)b * d->Cin * d->hw;
        memcpy(dst, d->x + (int64_t)si * d->C * d->hw, d->C * plane);
        kd_sampler_scale_model_input(s, i, dst, (size_t)d->C * d->hw);
        if (d->in && d->in->mask) {
            memcpy(dst + d->C * d->hw, d->in->masked_latents + (int64_t)si * d->C * d->hw, d->C * plane);
            memcpy(dst + 2 * d->C * d->hw, d->in->mask + (int64_t)si * d->hw, plane);
        }
    }
}

/* Inpainting: known region = the image latents, noised to the next timestep (not after the last
 * step); m = mask of the first image (1 keeps), as diffusers uses image[:1] and mask[:1]. */
static kd_status blend_known(kd_ctx *ctx, const kd_decoder_stage *ds, dec_loop *d, int i_next) {
    const kd_dec_inputs *in = d->in;
    int64_t per = (int64_t)d->C * d->hw;
    for (int b = 0; b < d->n; b++) {
        const float *known = in->image_latents;
        if (i_next >= 0) {
            KD_TRY(kd_sampler_add_noise(ds->sampler, i_next, in->image_latents, d->noise0 + b * per, (size_t)per, d->tmp,
                                        &ctx->err));
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

/* The first image's current latents, 2×2-averaged when both sides are even, through the MoVQ →
 * a preview image for the caller. */
static kd_status send_preview(kd_ctx *ctx, const kd_decoder_stage *ds, const kd_denoise_args *a, const dec_loop *d,
                              int step, int total) {
    int h = a->lat_h, w = a->lat_w, r = (h % 2 == 0 && w % 2 == 0) ? 2 : 1, sh = h / r, sw = w / r;
    int f = kd_ae_downscale(&ds->ae);
    float *small = malloc((size_t)d->C * sh * sw * sizeof(float));
    float *pix = malloc((size_t)3 * (sh * f) * (sw * f) * sizeof(float));
    kd_status s = small && pix ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "preview: out of memory");
    for (int c = 0; s == KD_OK && c < d->C; c++)
        for (int y = 0; y < sh; y++)
            for (int x = 0; x < sw; x++) {
                float acc = 0;
                for (int dy = 0; dy < r; dy++)
                    for (int dx = 0; dx < r; dx++) acc += d->x[(size_t)c * d->hw + (size_t)(y * r + dy) * w + x * r + dx];
                small[((size_t)c * sh + y) * sw + x] = acc / (float)(r * r);
            }
    kd_image img = {0};
    if (s == KD_OK) s = kd_ae_decode_host(ctx, &ds->ae, small, 1, sh, sw, pix);
    if (s == KD_OK) s = kd_tensor_to_image(pix, sw * f, sh * f, &img, &ctx->err);
    if (s == KD_OK) a->preview(a->preview_user, &img, step, total);
    kd_image_free(&img);
    free(small);
    free(pix);
    return s;
}

static kd_status denoise(kd_ctx *ctx, const kd_decoder_stage *ds, const kd_denoise_args *a, kd_rng *rng, dec_loop *d,
                         int start) {
    kd_backend *be = &ctx->be;
    kd_sampler *s = ds->sampler;
    int n = kd_sampler_num_timesteps(s);
    const double *ts = kd_sampler_timesteps(s);
    kd_sched_shape shape = {d->n, d->C, d->hw};
    int blend = d->in && d->in->mask && ds->version->inpaint_blend;
    size_t in_bytes = (size_t)d->batch * d->Cin * d->hw * sizeof(float);
    size_t out_bytes = (size_t)d->batch * d->Cout * d->hw * sizeof(float);
    for (int i = start; i < n; i++) {
        build_input(d, s, i);
        for (int b = 0; b < d->batch; b++) d->ts[b] = (float)ts[i];
        KD_TRY(kd_upload(be, d->d_x_in, d->x_in, in_bytes, &ctx->err));
        KD_TRY(kd_unet_forward_be(ds->unet, be, d->d_x_in, d->batch, a->lat_h, a->lat_w, &d->cond, d->d_out, &ctx->err));
        KD_TRY(kd_download(be, d->out, d->d_out, out_bytes, &ctx->err));
        guide(d);
        kd_status st = kd_sampler_step(s, i, d->model_out, d->learned ? 2 * d->C : d->C, d->x, &shape, rng, d->x,
                                       &ctx->err);
        if (st != KD_OK) return kd_err_prefix(&ctx->err, "decoder sampler %s", kd_sampler_name(s));
        if (blend) KD_TRY(blend_known(ctx, ds, d, i + 1 < n ? i + 1 : -1));
        int done = i + 1 - start, total = n - start;
        if (a->preview && a->preview_every > 0 && done % a->preview_every == 0 && done < total)
            KD_TRY(send_preview(ctx, ds, a, d, done, total));
        KD_TRY(kd_progress_report(&a->progress, &ctx->err, "decoder", done, total));
    }
    if (blend) KD_TRY(blend_known(ctx, ds, d, -1));
    return KD_OK;
}

/* Initial latents: noise, or the init image's latents noised to the first timestep (img2img). */
static kd_status init_latents(kd_ctx *ctx, const kd_decoder_stage *ds, kd_rng *rng, dec_loop *d, int *start) {
    size_t nx = (size_t)d->n * d->C * d->hw, per = (size_t)d->C * d->hw;
    *start = 0;
    if (d->in && d->in->init_latents) {
        int count;
        KD_TRY(kd_sampler_img2img_start(ds->sampler, d->in->strength, start, &count, &ctx->err));
        if (count < 1)
            return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG,
                               "strength %g leaves no denoising step out of %d (strength × steps must be >= 1)",
                               d->in->strength, ds->sampler->num_inference_steps);
        return ds->version->img2img_latents(ctx, ds, rng, d->in, d->n, per, *start, d->x);
    }
    kd_rng_randn(rng, d->x, nx);
    float sigma = kd_sampler_init_noise_sigma(ds->sampler);
    for (size_t k = 0; k < nx; k++) d->x[k] *= sigma;
    if (d->noise0) memcpy(d->noise0, d->x, nx * sizeof(float));
    return KD_OK;
}

static kd_status check_unet(kd_ctx *ctx, const kd_decoder_stage *ds, const dec_loop *d) {
    int hint = d->in && d->in->hint, mask = d->in && d->in->mask;
    int C = kd_ae_latent_channels(&ds->ae);
    if (d->Cin != (mask ? 2 * C + 1 : C))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG,
                           mask ? "inpainting needs an inpainting decoder (U-Net with %d input channels); this one has %d"
                                : "this decoder's U-Net takes %d input channels; only inpainting (a mask) uses them all",
                           mask ? 2 * C + 1 : d->Cin, mask ? d->Cin : 0);
    if (hint != kd_unet_has_hint(ds->unet))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, hint ? "a hint image needs a ControlNet decoder (image_hint U-Net)"
                                                         : "this ControlNet decoder needs a hint image (--hint)");
    if (d->Cout < (d->learned ? 2 : 1) * d->C)
        return kd_ctx_fail(ctx, KD_ERR_SHAPE, "decoder: U-Net with %d output channels does not fit %d latent channels",
                           d->Cout, d->C);
    return KD_OK;
}

static void loop_free(kd_backend *be, dec_loop *d) {
    kd_be_mirror_free(be, d->x_in, d->d_x_in); /* before the host buffers they may stand for */
    kd_be_mirror_free(be, d->out, d->d_out);
    free(d->x_in);
    free(d->out);
    free(d->model_out);
    free(d->ts);
    free(d->hint);
    free(d->noise0);
    free(d->tmp);
    for (int i = 0; i < 4; i++) kd_be_free(be, d->d_bufs[i]);
}

/* src (host, bytes) into a new backend buffer kept in d->d_bufs[slot]. */
static kd_status upload_new(kd_ctx *ctx, dec_loop *d, int slot, const void *src, size_t bytes, const float **dst) {
    KD_TRY(kd_be_alloc(&ctx->be, bytes, &d->d_bufs[slot], &ctx->err));
    *dst = d->d_bufs[slot];
    return kd_upload(&ctx->be, d->d_bufs[slot], src, bytes, &ctx->err);
}

/* Host and backend buffers; the conditioning and the CFG hint batch go to the backend once. */
static kd_status loop_alloc(kd_ctx *ctx, const kd_denoise_args *a, dec_loop *d) {
    const kd_dec_cond *c = a->cond;
    size_t nx = (size_t)d->n * d->C * d->hw, hint_n = (size_t)3 * 64 * d->hw, f = sizeof(float);
    d->x_in = malloc((size_t)d->batch * d->Cin * d->hw * f);
    d->out = malloc((size_t)d->batch * d->Cout * d->hw * f);
    d->model_out = malloc(2 * nx * f);
    d->ts = malloc((size_t)d->batch * f);
    if (d->in && d->in->hint) d->hint = malloc((size_t)d->batch * hint_n * f);
    if (d->in && d->in->mask) {
        d->noise0 = malloc(nx * f);
        d->tmp = malloc((size_t)d->C * d->hw * f);
    }
    if (!d->x_in || !d->out || !d->model_out || !d->ts || (d->in && d->in->hint && !d->hint) ||
        (d->in && d->in->mask && (!d->noise0 || !d->tmp)))
        return kd_ctx_fail(ctx, KD_ERR_OOM, "decoder: out of memory for %d×%d latents", a->lat_w, a->lat_h);
    KD_TRY(kd_be_mirror(&ctx->be, d->x_in, (size_t)d->batch * d->Cin * d->hw * f, (void **)&d->d_x_in, &ctx->err));
    KD_TRY(kd_be_mirror(&ctx->be, d->out, (size_t)d->batch * d->Cout * d->hw * f, (void **)&d->d_out, &ctx->err));
    d->cond.timesteps = d->ts;
    KD_TRY(upload_new(ctx, d, 0, c->image_embeds, (size_t)c->batch * c->image_dim * f, &d->cond.image_embeds));
    if (c->text_embeds) {
        KD_TRY(upload_new(ctx, d, 1, c->text_embeds, (size_t)c->batch * c->text_dim * f, &d->cond.text_embeds));
        KD_TRY(upload_new(ctx, d, 2, c->text_hidden, (size_t)c->batch * c->text_len * c->hidden_dim * f,
                          &d->cond.encoder_hidden_states));
        d->cond.text_len = c->text_len;
    }
    if (d->hint) { /* the same hint for every sample and both CFG halves */
        for (int b = 0; b < d->batch; b++) memcpy(d->hint + b * hint_n, d->in->hint, hint_n * f);
        KD_TRY(upload_new(ctx, d, 3, d->hint, (size_t)d->batch * hint_n * f, &d->cond.hint));
    }
    return KD_OK;
}

kd_status kd_decoder_denoise(kd_ctx *ctx, const kd_decoder_stage *ds, const kd_denoise_args *a, kd_rng *rng,
                             float *latents) {
    dec_loop d = {.n = a->n, .cfg = a->guidance > 1.0f, .C = kd_ae_latent_channels(&ds->ae),
                  .Cin = kd_unet_sample_channels(ds->unet), .Cout = kd_unet_out_channels(ds->unet),
                  .hw = (int64_t)a->lat_h * a->lat_w, .guidance = a->guidance, .in = a->in, .x = latents,
                  .learned = kd_sampler_learned_variance(ds->sampler)};
    d.batch = d.cfg ? 2 * d.n : d.n;
    int start = 0;
    kd_status s = check_unet(ctx, ds, &d);
    if (s == KD_OK && a->cond->batch != d.batch)
        s = kd_ctx_fail(ctx, KD_ERR_INTERNAL, "decoder: conditioning for %d rows, the loop runs %d", a->cond->batch, d.batch);
    if (s == KD_OK) s = loop_alloc(ctx, a, &d);
    if (s == KD_OK) {
        s = kd_sampler_set_timesteps(ds->sampler, a->steps, &ctx->err);
        if (s != KD_OK) kd_err_prefix(&ctx->err, "decoder sampler %s", kd_sampler_name(ds->sampler));
    }
    if (s == KD_OK) s = init_latents(ctx, ds, rng, &d, &start);
    if (s == KD_OK) s = denoise(ctx, ds, a, rng, &d, start);
    if (s == KD_OK) s = check_finite(ctx, &d);
    loop_free(&ctx->be, &d);
    return s;
}
