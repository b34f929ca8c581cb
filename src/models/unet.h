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

/* 2.1 ("text_image") U-Nets: the widths of kd_unet_cond.text_embeds and encoder_hidden_states
 * (cross_attention_dim, encoder_hid_dim); 0 for the others. */
int kd_unet_text_embed_dim(const kd_unet *u);
int kd_unet_text_hidden_dim(const kd_unet *u);

#endif
