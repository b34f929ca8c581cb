/* Kandinsky 2.2 pipeline internals: the prior stage (CLIP tokenizer + text encoder + image
 * encoder + PriorTransformer + UnCLIP scheduler) and the decoder stage (U-Net + DDPM scheduler +
 * MoVQ). Models are loaded on first use and, in low-memory mode, released as soon as their stage
 * is done. */
#ifndef KD_PIPELINE_H
#define KD_PIPELINE_H

#include "api/ctx.h"
#include "core/rng.h"
#include "kandinsky.h"
#include "sched/scheduler.h"
#include "text/clip_tokenizer.h"

struct kd_pipeline {
    char *prior_dir, *decoder_dir;
    char *decoder_sched_dir; /* subfolder of decoder_dir; NULL = "scheduler" */
    int low_memory;
    /* prior stage */
    kd_clip_tokenizer *tokenizer;
    kd_clip_text *text_encoder;
    kd_clip_vision *image_encoder;
    kd_prior *prior;
    kd_sched *prior_sched;
    float *zero_embed;   /* CLIP embedding of the all-zero image: a constant of the model, cached */
    int zero_embed_dim;
    /* decoder stage */
    struct kd_xlmr_tokenizer *xlmr; /* 2.1 only: the decoder reads the prompt too */
    kd_mclip *mclip;
    kd_unet *unet;
    kd_movq *movq;
    kd_sched *decoder_sched;
};

/* Prompt (+ optional negative prompt) → image_embeds[n, E] and negative_image_embeds[n, E],
 * drawing from rng exactly as KandinskyV22PriorPipeline does. */
kd_status kd_pipe_prior(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, float *image_embeds,
                        float *negative_embeds);
/* What the decoder variants add to text-to-image (all NULL: KandinskyV22Pipeline). */
typedef struct kd_dec_inputs {
    const float *init_latents;   /* img2img: [n, C, h, w] MoVQ latents of the init image */
    double strength;             /* img2img */
    const float *image_latents;  /* inpaint: [1, C, h, w] latents of the image */
    const float *masked_latents; /* inpaint: [n, C, h, w] image latents × mask */
    const float *mask;           /* inpaint: [n, 1, h, w] after erosion, 1 = keep */
    const float *hint;           /* ControlNet: [1, 3, 8h, 8w] in [0, 1] */
} kd_dec_inputs;

/* image_embeds / negative_image_embeds [n, E] → n images [3, H, W] in [-1, 1] (movq output),
 * as KandinskyV22Pipeline and its variants do; lat_h / lat_w from kd_pipe_latent_size. */
kd_status kd_pipe_decode(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, const float *image_embeds,
                         const float *negative_embeds, int lat_h, int lat_w, const kd_dec_inputs *in, float *pixels);
/* Prepare the decoder variants' inputs (variants.c); owned[] receive buffers the caller frees. */
kd_status kd_pipe_prepare_img2img(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_dec_inputs *in,
                                  float **owned, int *lat_h, int *lat_w);
kd_status kd_pipe_prepare_inpaint(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_dec_inputs *in,
                                  float **owned, int lat_h, int lat_w);
kd_status kd_pipe_prepare_hint(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_dec_inputs *in, float **owned,
                               int lat_h, int lat_w);
/* Image mixing (KandinskyV22PriorPipeline.interpolate). */
kd_status kd_pipe_mix(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, float *image_embeds,
                      float *negative_embeds);

/* diffusers' downscale_height_and_width: latent side = ceil(side / f²) · f. */
void kd_pipe_latent_size(const kd_pipeline *p, int height, int width, int *lat_h, int *lat_w);

kd_status kd_pipe_load_prior_stage(kd_ctx *ctx, kd_pipeline *p);
kd_status kd_pipe_load_decoder_stage(kd_ctx *ctx, kd_pipeline *p);
void kd_pipe_free_prior_stage(kd_pipeline *p);
void kd_pipe_free_decoder_stage(kd_pipeline *p);

/* Kandinsky 2.1 decoder text conditioning (text21.c): loaded when the decoder folder has a
 * text_encoder/. texts[rows] → text_embeds [rows, E] and last_hidden_state [rows, 77, H]. */
kd_status kd_pipe_load_text21(kd_ctx *ctx, kd_pipeline *p);
void kd_pipe_free_text21(kd_pipeline *p);
int kd_pipe_text21_len(void);
kd_status kd_pipe_encode_text21(kd_ctx *ctx, kd_pipeline *p, const char *const *texts, int rows, float *embeds,
                                float *hidden);

/* Progress report for one step of a stage. */
void kd_pipe_progress(const kd_gen_params *g, const char *stage, int step, int total);

#endif
