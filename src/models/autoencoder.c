#include "models/autoencoder.h"

#include "backend/ops.h"
#include "models/movq.h"

static int movq_latent_channels(const void *m) { return kd_movq_latent_channels(m); }
static int movq_downscale(const void *m) { return kd_movq_downscale(m); }
static void movq_latent_size(const void *m, int h, int w, int *lh, int *lw) { kd_movq_latent_size(m, h, w, lh, lw); }
static kd_status movq_encode(void *m, kd_backend *be, const float *x, int B, int H, int W, float *z, kd_err *e) {
    return kd_movq_encode_be(m, be, x, B, H, W, z, e);
}
static kd_status movq_decode(void *m, kd_backend *be, const float *z, int B, int h, int w, float *x, kd_err *e) {
    return kd_movq_decode_be(m, be, z, B, h, w, x, e);
}
static void movq_free(void *m) { kd_movq_free(m); }

static const kd_autoencoder_ops movq_ops = {"movq", movq_latent_channels, movq_downscale, movq_latent_size,
                                            movq_encode, movq_decode, movq_free};

kd_status kd_autoencoder_load_movq(kd_ctx *ctx, const char *dir, kd_autoencoder *out) {
    kd_movq *m;
    *out = (kd_autoencoder){0};
    KD_TRY(kd_movq_load(ctx, dir, &m));
    *out = (kd_autoencoder){&movq_ops, m};
    return KD_OK;
}

/* The same code runs ldm's AutoencoderKL; encode gives the posterior's mean (mode()). */
static const kd_autoencoder_ops kl_ops = {"autoencoder_kl", movq_latent_channels, movq_downscale, movq_latent_size,
                                          movq_encode, movq_decode, movq_free};

kd_status kd_autoencoder_load_kl_ldm(kd_ctx *ctx, const char *ckpt, const kd_ldm_kl_config *cfg, kd_autoencoder *out) {
    kd_movq *m;
    *out = (kd_autoencoder){0};
    KD_TRY(kd_vae_kl_load_ldm(ctx, ckpt, cfg, &m));
    *out = (kd_autoencoder){&kl_ops, m};
    return KD_OK;
}

void kd_autoencoder_free(kd_autoencoder *ae) {
    if (ae->ops) ae->ops->free(ae->model);
    *ae = (kd_autoencoder){0};
}


/* in (host) → encode or decode → out (host), through two backend buffers. */
static kd_status staged(kd_ctx *ctx, const kd_autoencoder *ae, const float *in, size_t in_bytes, float *out,
                        size_t out_bytes, int decode, int B, int h, int w) {
    kd_backend *be = &ctx->be;
    kd_err *e = &ctx->err;
    void *a = NULL, *b = NULL;
    kd_status s = kd_be_alloc(be, in_bytes, &a, e);
    if (s == KD_OK) s = kd_be_alloc(be, out_bytes, &b, e);
    if (s == KD_OK) s = kd_upload(be, a, in, in_bytes, e);
    if (s == KD_OK)
        s = decode ? ae->ops->decode(ae->model, be, a, B, h, w, b, e) : ae->ops->encode(ae->model, be, a, B, h, w, b, e);
    if (s == KD_OK) s = kd_download(be, out, b, out_bytes, e);
    kd_be_free(be, a);
    kd_be_free(be, b);
    return s;
}

kd_status kd_ae_encode_host(kd_ctx *ctx, const kd_autoencoder *ae, const float *image, int batch, int height, int width,
                            float *latents) {
    int lh, lw;
    kd_ae_latent_size(ae, height, width, &lh, &lw);
    if (lh < 1 || lw < 1) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "%s encode: image %d×%d is too small", ae->ops->name, width, height);
    size_t in_bytes = (size_t)batch * 3 * height * width * sizeof(float);
    size_t out_bytes = (size_t)batch * kd_ae_latent_channels(ae) * lh * lw * sizeof(float);
    return staged(ctx, ae, image, in_bytes, latents, out_bytes, 0, batch, height, width);
}

kd_status kd_ae_decode_host(kd_ctx *ctx, const kd_autoencoder *ae, const float *latents, int batch, int lat_h,
                            int lat_w, float *image) {
    int f = kd_ae_downscale(ae);
    size_t in_bytes = (size_t)batch * kd_ae_latent_channels(ae) * lat_h * lat_w * sizeof(float);
    size_t out_bytes = (size_t)batch * 3 * (size_t)(lat_h * f) * (lat_w * f) * sizeof(float);
    return staged(ctx, ae, latents, in_bytes, image, out_bytes, 1, batch, lat_h, lat_w);
}
