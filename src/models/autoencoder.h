/* The image autoencoder of a decoder, behind one small interface: MoVQ (2.1, 2.2) and the
 * AutoencoderKL of Kandinsky 2.0 (the same encoder / decoder code, models/movq.c). Images are NCHW RGB in [-1, 1],
 * latents NCHW with latent_channels channels at 1/downscale of the image size. */
#ifndef KD_MODELS_AUTOENCODER_H
#define KD_MODELS_AUTOENCODER_H

#include "api/ctx.h"

typedef struct kd_autoencoder_ops {
    const char *name; /* "movq", "autoencoder_kl" */
    int (*latent_channels)(const void *model);
    int (*downscale)(const void *model);
    /* latent size the encoder makes of an image of height × width */
    void (*latent_size)(const void *model, int height, int width, int *lat_h, int *lat_w);
    /* backend memory in and out */
    kd_status (*encode)(void *model, kd_backend *be, const float *image, int batch, int height, int width,
                        float *latents, kd_err *e);
    kd_status (*decode)(void *model, kd_backend *be, const float *latents, int batch, int lat_h, int lat_w,
                        float *image, kd_err *e);
    void (*free)(void *model);
} kd_autoencoder_ops;

typedef struct kd_autoencoder {
    const kd_autoencoder_ops *ops; /* NULL: none loaded */
    void *model;
} kd_autoencoder;

/* <dir> is a diffusers VQModel folder (the decoder's movq/). */
kd_status kd_autoencoder_load_movq(kd_ctx *ctx, const char *dir, kd_autoencoder *out);
/* ckpt: ldm's AutoencoderKL checkpoint (2.0's vae.ckpt) with its ddconfig (kd_ldm_kl_config_2_0). */
struct kd_ldm_kl_config;
kd_status kd_autoencoder_load_kl_ldm(kd_ctx *ctx, const char *ckpt, const struct kd_ldm_kl_config *cfg,
                                     kd_autoencoder *out);
void kd_autoencoder_free(kd_autoencoder *ae);

static inline int kd_ae_latent_channels(const kd_autoencoder *ae) { return ae->ops->latent_channels(ae->model); }
static inline int kd_ae_downscale(const kd_autoencoder *ae) { return ae->ops->downscale(ae->model); }
static inline void kd_ae_latent_size(const kd_autoencoder *ae, int h, int w, int *lh, int *lw) {
    ae->ops->latent_size(ae->model, h, w, lh, lw);
}

/* Host-memory conveniences for the pipeline's one-off calls (image preparation, final decode):
 * stage through the backend, run, download. */
kd_status kd_ae_encode_host(kd_ctx *ctx, const kd_autoencoder *ae, const float *image, int batch, int height, int width,
                            float *latents);
kd_status kd_ae_decode_host(kd_ctx *ctx, const kd_autoencoder *ae, const float *latents, int batch, int lat_h,
                            int lat_w, float *image);

#endif
