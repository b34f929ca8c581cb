/* Kandinsky 2.0 (pipeline/k20.c): the original code's Kandinsky2 class (kandinsky2_model.py) —
 * mCLIP-XLMR and mT5 in parallel, the original U-Net, ldm's AutoencoderKL and the original samplers
 * — from the published folder (sberbank-ai/Kandinsky_2.0 layout):
 *   Kandinsky-2-0.pt, Kandinsky-2-0-inpainting.pt (U-Nets), vae.ckpt (AutoencoderKL),
 *   text_encoder1/ (XLM-R + LinearTransformation, tokenizer files), text_encoder2/ (mT5 encoder,
 *   spiece.model). */
#ifndef KD_PIPELINE_K20_H
#define KD_PIPELINE_K20_H

#include "api/ctx.h"
#include "kandinsky.h"

typedef struct kd_k20 kd_k20;

#define KD_K20_UNET "Kandinsky-2-0.pt"
#define KD_K20_UNET_INPAINT "Kandinsky-2-0-inpainting.pt"
#define KD_K20_VAE "vae.ckpt"

/* 1 when dir looks like a 2.0 folder (vae.ckpt and one of the U-Net files). */
int kd_k20_is_folder(const char *dir);

/* Loads the text encoders and the autoencoder now, and the U-Net a request needs at its first use
 * (low_memory: everything at use, freed after each request). */
kd_status kd_k20_load(kd_ctx *ctx, const char *dir, int low_memory, kd_k20 **out);
void kd_k20_free(kd_k20 *k);

/* kd_generate for 2.0. Sampler names: "ddim_sampler" (default; also "ddim"), "p_sampler" ("p"),
 * "plms_sampler" ("plms"); g->eta is DDIM's η (0 as the original, which drops its ddim_eta). Text-to-image at any size (latents ceil(side/64)·8,
 * the image cropped back); image-to-image and inpainting at width × height (512 × 512 as the
 * original) with batch 1 per image: n images are n runs of the original on one generator.
 * g->strength keeps its meaning (the share of noise, 0 keeps the image): the original's
 * generate_img2img(strength=s₀) is g->strength = 1 − s₀. */
kd_status kd_k20_generate(kd_ctx *ctx, kd_k20 *k, const kd_gen_params *g, kd_image *images);

#endif
