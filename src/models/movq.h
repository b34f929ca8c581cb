/* MoVQ autoencoder, internal API (the public one is in kandinsky.h). */
#ifndef KD_MODELS_MOVQ_H
#define KD_MODELS_MOVQ_H

#include "backend/backend.h"
#include "kandinsky.h"

/* kd_movq_encode / kd_movq_decode on backend memory (same shapes; sizes checked as there). */
kd_status kd_movq_encode_be(kd_movq *m, kd_backend *be, const float *image, int batch, int height, int width,
                            float *latents, kd_err *e);
kd_status kd_movq_decode_be(kd_movq *m, kd_backend *be, const float *latents, int batch, int lat_h, int lat_w,
                            float *image, kd_err *e);

/* ---- AutoencoderKL (ldm; Kandinsky 2.0's vae.ckpt), on the same encoder / decoder code ---- */

/* ldm's ddconfig (the original code passes it; the checkpoint has no config). */
typedef struct kd_ldm_kl_config {
    int ch, n_levels, ch_mult[8], num_res_blocks, resolution, n_attn, attn_resolutions[8];
    int in_channels, out_ch, z_channels, embed_dim;
} kd_ldm_kl_config;

/* Kandinsky 2.0's (configs.py CONFIG_2_0 image_enc_params): ch 128, ch_mult 1,2,4,4, 2 res blocks,
 * no attention but the middle's, z 4, embed 4. */
extern const kd_ldm_kl_config kd_ldm_kl_config_2_0;

/* ckpt: a torch.save / Lightning checkpoint (or safetensors) with the original names
 * (encoder.down.0.block.0.norm1.weight, ..., quant_conv, post_quant_conv); other tensors (the
 * training loss's) are ignored. Free with kd_movq_free. */
kd_status kd_vae_kl_load_ldm(kd_ctx *ctx, const char *ckpt, const kd_ldm_kl_config *cfg, kd_movq **out);
int kd_movq_is_kl(const kd_movq *m);
/* image → moments [batch, 2·embed_dim, h, w] (mean, then log-variance), backend memory. */
kd_status kd_vae_kl_moments_be(kd_movq *m, kd_backend *be, const float *image, int batch, int height, int width,
                               float *moments, kd_err *e);
/* DiagonalGaussianDistribution on the host: z = mean + exp(0.5·clamp(logvar, −30, 20))·noise
 * (.sample()), or z = mean when noise is NULL (.mode()). z [batch, channels, hw]. */
void kd_vae_kl_sample(const float *moments, int batch, int channels, int64_t hw, const float *noise, float *z);

#endif
