/* Decoder U-Net, internal API (the public one is in kandinsky.h). */
#ifndef KD_MODELS_UNET_H
#define KD_MODELS_UNET_H

#include "backend/backend.h"
#include "kandinsky.h"

/* out[batch, out_channels, h, w] = unet(sample[batch, sample_channels, h, w], cond), one denoising
 * step. Every buffer is backend memory (sample, out, and cond's image_embeds, text_embeds,
 * encoder_hidden_states, hint) except cond->timesteps (host, [batch]). Arguments are checked as
 * kd_unet_forward checks them. */
kd_status kd_unet_forward_be(kd_unet *u, kd_backend *be, const float *sample, int batch, int h, int w,
                             const kd_unet_cond *cond, float *out, kd_err *e);

/* 2.1 ("text_image") and 2.0 U-Nets: the widths of kd_unet_cond.text_embeds and
 * encoder_hidden_states (2.1: cross_attention_dim, encoder_hid_dim; 2.0: 640, 1024); 0 for the others. */
int kd_unet_text_embed_dim(const kd_unet *u);
int kd_unet_text_hidden_dim(const kd_unet *u);

/* The original (guided-diffusion) configuration of a 2.0 U-Net; kd_unet_load_2_0 uses
 * kd_unet20_config_published with the file's in_channels. */
typedef struct kd_unet20_config {
    int model_channels, n_levels, channel_mult[8], num_res_blocks, n_attn, attention_ds[8], head_channels;
    int model_dim, in_dim1, in_dim2, mt5_dim, pool_heads, in_channels, out_channels;
} kd_unet20_config;
extern const kd_unet20_config kd_unet20_config_published;
kd_status kd_unet_load_2_0_cfg(kd_ctx *ctx, const char *path, const kd_unet20_config *cfg, kd_unet **out);
/* 2.0: the mT5 width of kd_unet_cond.encoder_hidden_states2 (512); 0 for the others. */
int kd_unet_text_hidden_dim2(const kd_unet *u);

#endif
