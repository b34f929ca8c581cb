/* Kandinsky pipeline internals. Data flows one way:
 *
 *   generate.c  loads and frees every model (the only place that does), checks the request, and
 *       │       runs the stages in order, handing each its models and a narrow argument struct
 *       ├─► prior_stage.c    prompts → image embeddings (KandinskyPriorPipeline / V22 prior)
 *       ├─► variants.c       init image / mask / hint → decoder inputs (img2img, inpaint, ControlNet)
 *       ├─► version->condition (k22.c, k21.c)  embeddings (+ 2.1 prompt) → U-Net conditioning
 *       ├─► decoder_stage.c  conditioning → latents (the shared denoising loop)
 *       └─► autoencoder      latents → pixels
 *
 * Stages never load, free or call each other (the prior's image mixing runs the prior stage
 * itself, with its own arguments). */
#ifndef KD_PIPELINE_H
#define KD_PIPELINE_H

#include "api/ctx.h"
#include "core/rng.h"
#include "kandinsky.h"
#include "models/autoencoder.h"
#include "sched/sampler.h"
#include "text/clip_tokenizer.h"

struct kd_xlmr_tokenizer;

/* ---- the loaded models of each stage ---- */

typedef struct kd_prior_stage {
    kd_clip_tokenizer *tokenizer;
    kd_clip_text *text_encoder;
    kd_clip_vision *image_encoder;
    kd_prior *prior;
    kd_sampler *sampler;
    const char *image_processor_config; /* <prior>/image_processor/preprocessor_config.json */
    /* CLIP embedding of the all-zero image: a constant of the model, kept across stage reloads */
    float *zero_embed;
    int zero_embed_dim;
} kd_prior_stage;

typedef struct kd_version_desc kd_version_desc;

typedef struct kd_decoder_stage {
    const kd_version_desc *version;
    kd_unet *unet;
    kd_autoencoder ae;
    kd_sampler *sampler;
    struct kd_xlmr_tokenizer *xlmr; /* 2.1: the decoder reads the prompt too */
    kd_mclip *mclip;
} kd_decoder_stage;

struct kd_k20;

struct kd_pipeline {
    struct kd_k20 *k20; /* Kandinsky 2.0 (version 2.0): its own models and loop, pipeline/k20.c */
    char *prior_dir, *decoder_dir;
    char *image_processor_config;
    char *decoder_sched_dir; /* subfolder of decoder_dir; NULL = "scheduler" */
    char *decoder_sampler;   /* sampler names of the loaded samplers (NULL = the defaults) */
    char *prior_sampler;
    int low_memory;
    kd_model_version version;
    kd_prior_stage prior;
    kd_decoder_stage dec;
};

typedef struct kd_progress {
    kd_progress_fn fn; /* may be NULL */
    void *user;
    const volatile int *cancel; /* kd_gen_params.cancel (may be NULL) */
} kd_progress;

#define KD_PROGRESS_OF(g) ((kd_progress){(g)->progress, (g)->progress_user, (g)->cancel})

/* KD_ERR_CANCELLED (with a message) once the caller has asked to stop. */
static inline kd_status kd_progress_check(const kd_progress *p, kd_err *e, const char *stage) {
    if (p->cancel && *p->cancel) return kd_errf(e, KD_ERR_CANCELLED, "cancelled during the %s stage", stage);
    return KD_OK;
}

/* Reports a step, then checks for a cancel. */
static inline kd_status kd_progress_report(const kd_progress *p, kd_err *e, const char *stage, int step, int total) {
    if (p->fn) p->fn(p->user, stage, step, total);
    return kd_progress_check(p, e, stage);
}

/* ---- prior stage (prior_stage.c) ---- */

typedef struct kd_prior_args {
    const char *prompt;
    const char *negative_prompt; /* NULL: none (negative embedding = the zero image's) */
    int num_images;
    int steps;
    float guidance;
    const kd_image *init_image;  /* emb2emb (KandinskyV22PriorEmb2EmbPipeline), or NULL */
    float strength;              /* emb2emb */
    kd_progress progress;
} kd_prior_args;

/* image_embeds and negative_embeds [num_images, E], drawing from rng exactly as
 * KandinskyV22PriorPipeline (or its emb2emb variant) does. */
kd_status kd_prior_run(kd_ctx *ctx, kd_prior_stage *ps, const kd_prior_args *a, kd_rng *rng, float *image_embeds,
                       float *negative_embeds);
/* KandinskyV22PriorPipeline.interpolate: Σ weight · embedding over the items; text items run the
 * prior with `base`'s settings and the item as prompt. */
kd_status kd_prior_mix(kd_ctx *ctx, kd_prior_stage *ps, const kd_prior_args *base, const kd_mix_item *items, int n_items,
                       kd_rng *rng, float *image_embeds, float *negative_embeds);
int kd_prior_stage_embed_dim(const kd_prior_stage *ps);

/* ---- decoder inputs (variants.c) ---- */

/* What the decoder variants add to text-to-image (all NULL: KandinskyV22Pipeline). Host memory. */
typedef struct kd_dec_inputs {
    const float *init_latents;   /* img2img: [n, C, h, w] latents of the init image */
    double strength;             /* img2img */
    const float *image_latents;  /* inpaint: [1, C, h, w] latents of the image */
    const float *masked_latents; /* inpaint: [n, C, h, w] image latents × mask */
    const float *mask;           /* inpaint: [n, 1, h, w] after erosion, 1 = keep */
    const float *hint;           /* ControlNet: [1, 3, 8h, 8w] in [0, 1] */
    float *owned[4];             /* what the kd_prepare_* functions allocated (kd_dec_inputs_free) */
} kd_dec_inputs;

void kd_dec_inputs_free(kd_dec_inputs *in);
/* img2img: init image → latents [n, C, h, w] at the image size floored to the autoencoder's factor
 * (*lat_h, *lat_w receive it). */
kd_status kd_prepare_img2img(kd_ctx *ctx, const kd_autoencoder *ae, const kd_image *init_image, int width, int height,
                             int n, double strength, kd_dec_inputs *in, int *lat_h, int *lat_w);
kd_status kd_prepare_inpaint(kd_ctx *ctx, const kd_autoencoder *ae, const kd_image *image, const kd_image *mask,
                             int invert_mask, int width, int height, int n, int lat_h, int lat_w, kd_dec_inputs *in);
kd_status kd_prepare_hint(kd_ctx *ctx, const kd_image *hint, int lat_h, int lat_w, kd_dec_inputs *in);

/* ---- conditioning (one per version: k22.c, k21.c) ---- */

/* What the U-Net is conditioned on, for the whole CFG batch (host memory, owned). */
typedef struct kd_dec_cond {
    int batch;           /* 2n under classifier-free guidance ([uncond ; cond]), else n */
    int image_dim;
    float *image_embeds; /* [batch, image_dim] */
    int text_dim, text_len, hidden_dim;
    float *text_embeds;  /* 2.1: [batch, text_dim] */
    float *text_hidden;  /* 2.1: [batch, text_len, hidden_dim] */
} kd_dec_cond;

typedef struct kd_cond_args {
    const char *prompt, *negative_prompt;
    int n, cfg;
    const float *image_embeds, *negative_embeds; /* [n, E] each */
} kd_cond_args;

void kd_dec_cond_free(kd_dec_cond *c);

/* ---- versions (version.c, k22.c, k21.c) ---- */

struct kd_version_desc {
    kd_model_version id;
    const char *name;         /* "2.2" */
    int has_prior;            /* 2.1, 2.2: a diffusion prior makes the image embedding */
    int decoder_text_encoder; /* the decoder folder's tokenizer/ + text_encoder/ condition the U-Net (2.1) */
    int inpaint_blend;        /* the known region is pasted back after every step and at the end (2.2) */
    int img2img_exact_size;   /* img2img latents must be the pipeline's latent size (2.1's get_new_h_w) */
    /* U-Net conditioning for the CFG batch */
    kd_status (*condition)(kd_ctx *ctx, const kd_decoder_stage *d, const kd_cond_args *a, kd_dec_cond *out);
    /* img2img start: x[n, C, hw] ← the init latents noised to timesteps[start] (the sampler's
     * timesteps are set), drawing from rng as the version's pipeline does */
    kd_status (*img2img_latents)(kd_ctx *ctx, const kd_decoder_stage *d, kd_rng *rng, const kd_dec_inputs *in, int n,
                                 size_t per_image, int start, float *x);
};

extern const kd_version_desc kd_version_22, kd_version_21;
const kd_version_desc *kd_version_desc_of(kd_model_version v);
/* kd_decoder_detect_version without a context (e may be NULL). */
kd_status kd_detect_decoder_version(const char *decoder_dir, kd_model_version *out, kd_err *e);

/* 2.1 decoder text encoding (k21.c): texts[rows] → embeds [rows, E], hidden [rows, 77, H]. */
int kd_k21_text_len(void);
kd_status kd_k21_encode_text(kd_ctx *ctx, const kd_decoder_stage *d, const char *const *texts, int rows, float *embeds,
                             float *hidden);
/* KandinskyImg2ImgPipeline.add_noise: the same formula as add_noise with its own schedule, betas =
 * linspace(0.0001, 0.02, 1000) whatever the scheduler's config, at t = int(T·strength) - 2
 * (T = the scheduler's num_train_timesteps). t must come out in [0, 1000). */
kd_status kd_k21_img2img_noise(const float *original, const float *noise, size_t n, double strength,
                               int num_train_timesteps, float *out, int64_t *t_used, kd_err *e);

/* ---- decoder stage (decoder_stage.c) ---- */

typedef struct kd_denoise_args {
    int n;            /* images */
    int steps;
    float guidance;   /* CFG is on when > 1 (cond->batch == 2n) */
    int lat_h, lat_w;
    const kd_dec_cond *cond;
    const kd_dec_inputs *in;
    kd_progress progress;
    kd_preview_fn preview; /* kd_gen_params.preview / preview_user / preview_every */
    void *preview_user;
    int preview_every;
} kd_denoise_args;

/* diffusers' downscale_height_and_width: latent side = ceil(side / f²) · f. */
void kd_latent_size(int f, int height, int width, int *lat_h, int *lat_w);
/* The denoising loop (KandinskyV22Pipeline and its variants; KandinskyPipeline for 2.1):
 * latents [n, C, lat_h, lat_w] (host). */
kd_status kd_decoder_denoise(kd_ctx *ctx, const kd_decoder_stage *d, const kd_denoise_args *a, kd_rng *rng,
                             float *latents);

#endif
