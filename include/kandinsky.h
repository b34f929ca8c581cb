/* kandinsky.c — public API.
 *
 * Everything a program needs to drive the engine: a context (threads, last error), status codes,
 * and the entry points built on top of it. The CLI and the server include only this header.
 * Every function that can fail returns a kd_status; the human-readable reason is on the context
 * (kd_ctx_last_error). Library code never exits or aborts.
 */
#ifndef KANDINSKY_H
#define KANDINSKY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kd_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KD_VERSION_MAJOR 0
#define KD_VERSION_MINOR 1
#define KD_VERSION_PATCH 0

/* kd_status and kd_status_str: kd_status.h (shared with the library internals). */

/* "0.1.0" */
const char *kd_version(void);

typedef struct kd_ctx kd_ctx;

/* Precision of the matrix products (Linear, convolutions, attention): FP32, or BF16 operands with
 * F32 accumulation (AVX512_BF16 `vdpbf16ps`; about twice the multiply rate). Norms, softmax, the
 * timestep embedding and the schedulers stay FP32 either way. On a CPU without BF16 products
 * BF16 runs as FP32 (kd_ctx_precision tells which is in force). */
typedef enum kd_precision { KD_PRECISION_FP32 = 0, KD_PRECISION_BF16 = 1 } kd_precision;

/* How Linear and conv weights are kept in memory: as the files store them (F32/F16/BF16, or q8_0
 * from a `kandinsky convert --weights q8` folder), or quantised to q8_0 at load (blocks of 32
 * int8 values with one F16 scale; see docs/QUANTIZATION.md). Embeddings, norms, biases and convs
 * whose rows are not a multiple of 32 values (a U-Net's 4-channel conv_in) keep their type. */
typedef enum kd_weight_mode { KD_WEIGHTS_AS_STORED = 0, KD_WEIGHTS_Q8 = 1 } kd_weight_mode;

/* "fp32" / "bf16"; "q8" / "stored". parse: 0 on success, -1 for an unknown name. */
const char *kd_precision_name(kd_precision p);
int kd_precision_parse(const char *s, kd_precision *out);
const char *kd_weight_mode_name(kd_weight_mode m);
int kd_weight_mode_parse(const char *s, kd_weight_mode *out);

typedef struct kd_ctx_params {
    /* Threads for the CPU kernels. 0 = the KD_THREADS environment variable if set, otherwise the
     * number of cores available to the process. BLAS is kept single-threaded inside our pool so
     * the two never oversubscribe the cores. */
    int n_threads;
    /* 0 = errors only, 1 = info, 2 = debug (to stderr). */
    int verbosity;
    kd_precision precision;  /* of the matrix products; kd_ctx_set_precision changes it later */
    kd_weight_mode weights;  /* for every model loaded on this context afterwards */
} kd_ctx_params;

kd_ctx_params kd_ctx_params_default(void);

/* Creates a context. On failure *out is NULL and the status says why (no message store exists
 * yet, so only allocation or thread creation can fail here). */
kd_status kd_ctx_create(const kd_ctx_params *params, kd_ctx **out);
void kd_ctx_free(kd_ctx *ctx);

/* The message of the last failure on this context ("" if none). Valid until the next call. */
const char *kd_ctx_last_error(const kd_ctx *ctx);

/* Sets the precision of the matrix products from the next forward on (models stay loaded). The
 * precision in force afterwards is kd_ctx_precision: FP32 where the CPU has no BF16 products. */
kd_status kd_ctx_set_precision(kd_ctx *ctx, kd_precision p);
kd_precision kd_ctx_precision(const kd_ctx *ctx);
/* 1 if this CPU computes BF16 products natively (AVX512_BF16) */
int kd_cpu_has_bf16(void);

/* A copy of the model folder in_dir (a repo folder with model_index.json, or one component) in
 * out_dir (created if needed; not in_dir nor inside it) whose Linear and conv weights are stored
 * as mode (only KD_WEIGHTS_Q8): the converted folder loads with no quantisation cost and in a
 * quarter of the F32 memory. Non-weight files are copied. report (may be NULL) gets one line per
 * converted component. */
typedef void (*kd_convert_report)(void *user, const char *line);
kd_status kd_convert_weights(kd_ctx *ctx, const char *in_dir, const char *out_dir, kd_weight_mode mode,
                             kd_convert_report report, void *user);

/* Number of threads the context's CPU kernels use. */
int kd_ctx_threads(const kd_ctx *ctx);

/* ---- Images ----------------------------------------------------------------------------------
 * 8-bit images in memory: height × width × channels bytes, row-major, channels interleaved
 * (1 = gray, 3 = RGB, 4 = RGBA). Images returned by the library are owned by the caller and
 * released with kd_image_free. */
typedef struct kd_image {
    int width, height;
    int channels;
    uint8_t *data;
} kd_image;

void kd_image_free(kd_image *img);

/* Reads a PNG or JPEG (format from the content, not the name) as 8-bit RGB, the way diffusers'
 * load_image + convert("RGB") sees it (alpha dropped, gray replicated). Size and decompression
 * limits apply (8192 px per side, 64 Mpx). */
kd_status kd_image_read(kd_ctx *ctx, const char *path, kd_image *out);
/* Writes a PNG (".png") or JPEG (".jpg"/".jpeg", quality 95) by the file name's extension. For PNG,
 * text = NULL or a NULL-terminated list of key, value, key, value, ... stored as tEXt chunks. */
kd_status kd_image_write(kd_ctx *ctx, const char *path, const kd_image *img, const char *const *text);
/* The PNG that kd_image_write would write, into a malloc'd buffer (*png, *png_len; free() it). */
kd_status kd_image_encode_png(kd_ctx *ctx, const kd_image *img, const char *const *text, uint8_t **png,
                              size_t *png_len);

/* ---- Inspection ------------------------------------------------------------------------------
 * Prints a description of a model file or folder to `out`: for a .safetensors file (or a sharded
 * *.safetensors.index.json) every tensor's name, dtype, shape and byte size; for a folder, its
 * config.json (parsed and re-printed) and every safetensors file inside it, recursing one level
 * into component folders of a diffusers pipeline (unet/, movq/, prior/ ...). */
kd_status kd_inspect(kd_ctx *ctx, const char *path, FILE *out);

/* ---- MoVQ autoencoder (diffusers VQModel with norm_type "spatial") ---------------------------
 * Loads a `movq/` folder (config.json + diffusion_pytorch_model.safetensors, F32/F16/BF16, sharded
 * or not) of any configuration of that class. Images are float NCHW RGB in [-1, 1]; latents are
 * float NCHW with kd_movq_latent_channels() channels at 1/kd_movq_downscale() of the image size
 * (the published model: 4 channels, factor 8). No scaling factor is applied, as in Kandinsky. */
typedef struct kd_movq kd_movq;

kd_status kd_movq_load(kd_ctx *ctx, const char *path, kd_movq **out);
void kd_movq_free(kd_movq *m);
int kd_movq_latent_channels(const kd_movq *m);
int kd_movq_downscale(const kd_movq *m);
/* Latent size the encoder produces for an image of height × width. */
void kd_movq_latent_size(const kd_movq *m, int height, int width, int *lat_h, int *lat_w);

/* image[batch, 3, height, width] → latents[batch, C, lat_h, lat_w] (kd_movq_latent_size);
 * the unquantized latents the Kandinsky pipelines use. */
kd_status kd_movq_encode(kd_ctx *ctx, kd_movq *m, const float *image, int batch, int height, int width,
                         float *latents);
/* latents[batch, C, lat_h, lat_w] → image[batch, 3, lat_h·f, lat_w·f] (f = kd_movq_downscale),
 * decode(force_not_quantize=True) as the pipelines call it. */
kd_status kd_movq_decode(kd_ctx *ctx, kd_movq *m, const float *latents, int batch, int lat_h, int lat_w,
                         float *image);

/* File round trips for the CLI: image → resize to multiples of the factor (bicubic, as the
 * img2img pipelines) → encode → [save latents as safetensors tensor "latents"] → decode → image. */
kd_status kd_movq_autoencode_file(kd_ctx *ctx, const char *model_dir, const char *image_in, const char *image_out,
                                  const char *latents_out);
/* latents file (tensor "latents", or the file's only tensor; [1, C, h, w], F32/F16/BF16) → image. */
kd_status kd_movq_decode_file(kd_ctx *ctx, const char *model_dir, const char *latents, const char *image_out);

/* ---- Decoder U-Net (diffusers UNet2DConditionModel, Kandinsky variants) ----------------------
 * Loads a `unet/` folder of any configuration the Kandinsky checkpoints use: 2.1 ("text_image" +
 * "text_image_proj"), 2.2 ("image" + "image_proj"), ControlNet depth ("image_hint"), inpainting
 * (9 input channels). One call = one denoising step for a batch. */
typedef struct kd_unet kd_unet;

typedef struct kd_unet_cond {
    const float *timesteps;             /* [batch] training timesteps (0..999), one per sample */
    const float *image_embeds;          /* [batch, image dim] CLIP image embedding (all variants) */
    const float *text_embeds;           /* 2.1 only: [batch, cross_attention_dim] MCLIP pooled text */
    const float *encoder_hidden_states; /* 2.1 only: [batch, text_len, encoder_hid_dim] XLM-R states */
    int text_len;                       /* 2.1 only: tokens in encoder_hidden_states (77 in the pipelines) */
    const float *hint;                  /* ControlNet only: [batch, 3, 8·h, 8·w] in [0, 1] */
    /* 2.0 (kd_unet_load_2_0): text_embeds = mCLIP pooled [batch, 640], encoder_hidden_states =
     * XLM-R states [batch, text_len, 1024], and the mT5 states here; image_embeds is unused. */
    const float *encoder_hidden_states2; /* 2.0 only: [batch, text_len2, 512] mT5 last_hidden_state */
    int text_len2;
} kd_unet_cond;

kd_status kd_unet_load(kd_ctx *ctx, const char *path, kd_unet **out);
/* Kandinsky 2.0's U-Net from its original checkpoint (Kandinsky-2-0.pt, or -inpainting.pt with
 * in_channels 9) in the original (guided-diffusion) names, with the original code's configuration
 * (configs.py CONFIG_2_0): model_channels 384, channel_mult 1,2,3,4, 3 res blocks, attention at
 * 32,16,8 of 64, 64 channels per head, model_dim 768, conditioning from mCLIP (1024 / 640) and mT5
 * (512). kd_unet_cond for it: see encoder_hidden_states2. */
kd_status kd_unet_load_2_0(kd_ctx *ctx, const char *path, int in_channels, kd_unet **out);
void kd_unet_free(kd_unet *u);
/* Channels of the `sample` argument (4; 9 for inpainting: latents + masked latents + mask; the
 * ControlNet U-Net takes 4 and concatenates the hint features itself). */
int kd_unet_sample_channels(const kd_unet *u);
int kd_unet_out_channels(const kd_unet *u);      /* 8: 4 noise + 4 variance channels */
/* Latent sides must be multiples of this (2^(number of down-samplings)). */
int kd_unet_size_multiple(const kd_unet *u);
/* Length of the image embedding the model expects (1280 for 2.2, 768 for 2.1). */
int kd_unet_image_embed_dim(const kd_unet *u);
/* 1 for the ControlNet U-Net (addition_embed_type "image_hint"): kd_unet_cond.hint is required. */
int kd_unet_has_hint(const kd_unet *u);

/* out[batch, out_channels, h, w] = unet(sample[batch, sample_channels, h, w], cond). */
kd_status kd_unet_forward(kd_ctx *ctx, kd_unet *u, const float *sample, int batch, int h, int w,
                          const kd_unet_cond *cond, float *out);

/* ---- Prior stage: CLIP text / vision encoders and the PriorTransformer ------------------------ */
typedef struct kd_clip_text kd_clip_text;
typedef struct kd_clip_vision kd_clip_vision;
typedef struct kd_prior kd_prior;

/* A transformers CLIPTextModelWithProjection folder (the prior's text_encoder/). */
kd_status kd_clip_text_load(kd_ctx *ctx, const char *path, kd_clip_text **out);
void kd_clip_text_free(kd_clip_text *m);
int kd_clip_text_hidden_size(const kd_clip_text *m);
int kd_clip_text_embed_dim(const kd_clip_text *m);
int kd_clip_text_max_len(const kd_clip_text *m);
/* ids[batch, seq_len] → text_embeds[batch, embed_dim] (projected EOS state) and, if not NULL,
 * last_hidden_state[batch, seq_len, hidden_size] (after the final LayerNorm). Causal attention,
 * no padding mask (the Kandinsky prior pipelines pass none). */
kd_status kd_clip_text_forward(kd_ctx *ctx, kd_clip_text *m, const int32_t *ids, int batch, int seq_len,
                               float *text_embeds, float *last_hidden);

/* A transformers CLIPVisionModelWithProjection folder (the prior's image_encoder/). */
kd_status kd_clip_vision_load(kd_ctx *ctx, const char *path, kd_clip_vision **out);
void kd_clip_vision_free(kd_clip_vision *m);
int kd_clip_vision_image_size(const kd_clip_vision *m);
int kd_clip_vision_embed_dim(const kd_clip_vision *m);
/* pixels[batch, 3, S, S] (already normalised, S = kd_clip_vision_image_size) → image_embeds. */
kd_status kd_clip_vision_forward(kd_ctx *ctx, kd_clip_vision *m, const float *pixels, int batch,
                                 float *image_embeds);

/* A diffusers PriorTransformer folder (prior/). */
kd_status kd_prior_load(kd_ctx *ctx, const char *path, kd_prior **out);
void kd_prior_free(kd_prior *p);
int kd_prior_embed_dim(const kd_prior *p);  /* E: 768 (2.1) or 1280 (2.2) */
int kd_prior_text_len(const kd_prior *p);   /* 77 */
/* Predicted (normalised) image embedding x0[batch, E] for noisy x_t[batch, E] at timesteps[batch],
 * conditioned on proj_embedding = CLIP text_embeds [batch, E], encoder_hidden_states = CLIP
 * last_hidden_state [batch, 77, E] and attention_mask [batch, 77] (1 = real token; NULL = no mask
 * at all, as diffusers does without one). */
kd_status kd_prior_forward(kd_ctx *ctx, kd_prior *p, const float *x_t, const float *timesteps,
                           const float *proj_embedding, const float *encoder_hidden_states,
                           const int32_t *attention_mask, int batch, float *out);
/* The same with only the first text_len (1..77) text positions: encoder_hidden_states
 * [batch, text_len, E], attention_mask [batch, text_len]; the four extra tokens keep their
 * positional embeddings. Equal (up to float rounding) to kd_prior_forward on the full 77 when every
 * dropped position is padding (mask 0) in every row: padded keys get −10000, whose softmax weight
 * is exactly 0 in float32, and no other token reads a padded token's state. The pipelines use it
 * with the longest prompt's length. */
kd_status kd_prior_forward_text(kd_ctx *ctx, kd_prior *p, const float *x_t, const float *timesteps,
                                const float *proj_embedding, const float *encoder_hidden_states,
                                const int32_t *attention_mask, int text_len, int batch, float *out);
/* x = x · clip_std + clip_mean, in place (the final step of the prior pipeline). */
void kd_prior_post_process(const kd_prior *p, float *x, int batch);

/* ---- MultilingualCLIP (Kandinsky 2.1 decoder text encoder: XLM-RoBERTa + linear) ------------- */
typedef struct kd_mclip kd_mclip;

kd_status kd_mclip_load(kd_ctx *ctx, const char *path, kd_mclip **out);
void kd_mclip_free(kd_mclip *m);
int kd_mclip_hidden_size(const kd_mclip *m); /* 1024 */
int kd_mclip_embed_dim(const kd_mclip *m);   /* 768 */
/* ids, mask [batch, seq_len] (XLM-R tokenizer output, 1 = real token) → text_embeds[batch, embed_dim]
 * (mean of the real tokens, projected) and, if not NULL, last_hidden_state[batch, seq_len, hidden]. */
kd_status kd_mclip_forward(kd_ctx *ctx, kd_mclip *m, const int32_t *ids, const int32_t *mask, int batch,
                           int seq_len, float *text_embeds, float *last_hidden);

/* ---- mT5 encoder (Kandinsky 2.0's second text encoder: transformers' MT5EncoderModel) --------
 * path: a folder with config.json and the weights (pytorch_model.bin as published, or
 * safetensors). */
typedef struct kd_mt5 kd_mt5;

kd_status kd_mt5_load(kd_ctx *ctx, const char *path, kd_mt5 **out);
void kd_mt5_free(kd_mt5 *m);
int kd_mt5_hidden_size(const kd_mt5 *m); /* d_model: 512 for mt5-small */
/* ids, mask [batch, seq_len] (T5 tokenizer output, 1 = real token; every sequence needs one) →
 * last_hidden_state[batch, seq_len, d_model] (padded positions included, as transformers gives them). */
kd_status kd_mt5_forward(kd_ctx *ctx, kd_mt5 *m, const int32_t *ids, const int32_t *mask, int batch, int seq_len,
                         float *last_hidden);

/* ---- Kandinsky 2.2 text-to-image ------------------------------------------------------------
 * A pipeline = a prior folder (kandinsky-2-2-prior layout: tokenizer/, text_encoder/,
 * image_encoder/, prior/, scheduler/) + a decoder folder (kandinsky-2-2-decoder layout: unet/,
 * movq/, scheduler/). kd_generate gives, for the same seed, the image diffusers'
 * KandinskyV22CombinedPipeline gives with torch.Generator("cpu").manual_seed(seed). */
typedef struct kd_pipeline kd_pipeline;

/* Called after every step of a stage ("prior", "decoder", "decode"). */
typedef void (*kd_progress_fn)(void *user, const char *stage, int step, int total);
/* A preview of the image being made (kd_gen_params.preview): RGB, owned by the library and valid
 * during the call only; step of total decoder steps. */
typedef void (*kd_preview_fn)(void *user, const kd_image *preview, int step, int total);

/* One ingredient of an image mix: a prompt (text) or an image, with its weight. */
typedef struct kd_mix_item {
    const char *text;      /* or NULL */
    const kd_image *image; /* or NULL (exactly one of text / image) */
    float weight;          /* any value, negative and zero included; weights need not sum to 1 */
} kd_mix_item;

typedef struct kd_gen_params {
    const char *prompt;
    const char *negative_prompt;  /* NULL: none (the negative image embedding is the CLIP embedding
                                     of an all-zero image, as in diffusers); "" is a prompt */
    int width, height;            /* 512 × 512; rounded up to multiples of 64 as diffusers does */
    int steps;                    /* decoder steps, 100 */
    int prior_steps;              /* 25 (>= 2) */
    float guidance_scale;         /* decoder, 4; guidance is off at <= 1 */
    float prior_guidance_scale;   /* 4 */
    uint64_t seed;
    int num_images;               /* 1 */
    kd_progress_fn progress;      /* may be NULL */
    void *progress_user;

    /* Image to image (KandinskyV22Img2ImgPipeline): start from init_image (resized to width ×
     * height, floored to multiples of the MoVQ factor) noised to strength; 0 keeps it, 1 ignores it. */
    const kd_image *init_image;
    float strength;               /* 0.3, diffusers' default */
    /* Inpainting (KandinskyV22InpaintPipeline, needs an inpainting decoder): init_image is the
     * picture, mask_image says where to repaint: white = repaint, black = keep (diffusers >= 0.19);
     * invert_mask = 1 for the opposite convention. The mask may have any size and channels: it is
     * resized (Lanczos) to width × height, converted to gray and thresholded at 50 %. */
    const kd_image *mask_image;
    int invert_mask;
    /* Beyond diffusers: after decoding, blend the result with the original image in pixel space
     * using the gray mask as a weight (out = keep·original + (1 − keep)·generated, keep = 1 − gray/255,
     * or gray/255 with invert_mask), so soft mask edges give seamless transitions. Off by default
     * (the default output is diffusers'). */
    int soft_mask;
    /* ControlNet depth (KandinskyV22ControlnetPipeline, needs the controlnet-depth decoder): the
     * depth map as an image (gray or RGB, white = near); resized to the output size if needed. */
    const kd_image *hint_image;
    /* Image mixing (KandinskyV22PriorPipeline.interpolate): when n_mix > 0 the image embedding is
     * Σ weight · embedding over the items (prompts run through the prior with negative_prompt as
     * the prior's negative prompt; images through CLIP), and prompt is ignored. */
    const kd_mix_item *mix;
    int n_mix;
    /* Prior emb2emb (KandinskyV22PriorEmb2EmbPipeline): start the prior from this image's CLIP
     * embedding noised to prior_strength instead of from noise (the prompt still guides it). */
    const kd_image *prior_image;
    float prior_strength;         /* 0.3 */
    /* Samplers by name (kd_sampler_list): NULL keeps the defaults of diffusers' pipelines — the
     * decoder folder's scheduler_config.json class (DDPM for 2.2, DDIM for 2.1) and UnCLIP for the
     * prior. "dpm++2m" at 25 steps gives a usable image in a quarter of the default 100. */
    const char *sampler;
    const char *prior_sampler;
    /* Kandinsky 2.0 only: the ddim_sampler's η. 0 (the default) is what the original code runs
     * whatever its ddim_eta argument says: its generate_img rebinds `sampler` to the sampler object
     * before testing `sampler == "ddim_sampler"`, so the call that would pass ddim_eta never runs.
     * Other values run DDIM with that η (beyond the original). 2.0's samplers are "ddim_sampler"
     * (default), "p_sampler" and "plms_sampler". */
    float eta;
    /* Stopping: when cancel is not NULL and *cancel becomes nonzero (set by another thread or a
     * signal handler), the generation stops at the next step of any stage and returns
     * KD_ERR_CANCELLED. */
    const volatile int *cancel;
    /* Previews (2.1 / 2.2): every preview_every decoder steps (0 = never; not after the last one,
     * whose image is the result) preview() receives the first image's current latents decoded by
     * the MoVQ at half the side (a quarter of the pixels) — noisy early on, the image later. */
    kd_preview_fn preview;
    void *preview_user;
    int preview_every;
} kd_gen_params;

/* The sampler names kd_gen_params accepts, as "ddpm, ddim, unclip, dpm++2m, ..." */
const char *kd_sampler_list(void);
/* 1 when name is one of them. */
int kd_sampler_exists(const char *name);

kd_gen_params kd_gen_params_default(void);

/* low_memory = 0 loads every component now (errors surface here); 1 loads each stage when it
 * runs and frees it afterwards (peak memory ≈ the largest stage instead of all of them). */
kd_status kd_pipeline_load(kd_ctx *ctx, const char *prior_dir, const char *decoder_dir, int low_memory,
                           kd_pipeline **out);
void kd_pipeline_free(kd_pipeline *p);
/* The decoder's scheduler from another subfolder of the decoder folder, e.g. "ddpm_scheduler"
 * (kandinsky-2-1 ships DDIM in scheduler/, its default, and DDPM there); the default is
 * "scheduler". The config is read now, so a missing or bad one is reported here. */
kd_status kd_pipeline_set_decoder_scheduler(kd_ctx *ctx, kd_pipeline *p, const char *subfolder);
/* Kandinsky versions. A pipeline's version is decided once, at load: from the decoder folder's
 * model_index.json (_class_name KandinskyPipeline / KandinskyImg2ImgPipeline /
 * KandinskyInpaintPipeline → 2.1, KandinskyV22*Pipeline → 2.2), else from its unet/config.json
 * (addition_embed_type "text_image" → 2.1, "image" / "image_hint" → 2.2). */
typedef enum kd_model_version {
    KD_MODEL_VERSION_AUTO = 0, /* what the decoder folder says */
    KD_MODEL_VERSION_2_1,
    KD_MODEL_VERSION_2_2,
    KD_MODEL_VERSION_2_0  /* the original 2.0 folder (Kandinsky-2-0.pt, vae.ckpt, text_encoder1/2): no prior */
} kd_model_version;

const char *kd_model_version_name(kd_model_version v); /* "2.0", "2.1", "2.2", "auto" */
/* "2.0", "2.1", "2.2" or "auto" → *out; -1 for anything else. */
int kd_model_version_parse(const char *s, kd_model_version *out);
/* The version a decoder folder holds (KD_ERR_* with a message when its files do not say). */
kd_status kd_decoder_detect_version(kd_ctx *ctx, const char *decoder_dir, kd_model_version *out);
/* kd_decoder_detect_version's answer as "2.1" / "2.2"; "2.2" when the folder does not say. */
const char *kd_decoder_model_version(const char *decoder_dir);
/* kd_pipeline_load for a given version: AUTO detects it; 2.1 / 2.2 must match what the decoder
 * folder says (KD_ERR_INVALID_ARG naming both otherwise) and decide when it says nothing. A 2.0
 * folder (detected by its files) needs no prior: prior_dir may then be NULL. */
kd_status kd_pipeline_load_version(kd_ctx *ctx, const char *prior_dir, const char *decoder_dir,
                                   kd_model_version version, int low_memory, kd_pipeline **out);
kd_model_version kd_pipeline_model_version(const kd_pipeline *p);
/* Length of the CLIP image embedding the pipeline works with (-1 on error). */
int kd_pipeline_embed_dim(kd_ctx *ctx, kd_pipeline *p);

/* images[num_images] receive RGB images (free each with kd_image_free). */
kd_status kd_generate(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *params, kd_image *images);
/* The prior stage only: image_embeds and negative_image_embeds, [num_images, embed_dim] each. */
kd_status kd_generate_embeds(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *params, float *image_embeds,
                             float *negative_image_embeds);

/* ---- CLIP image embedding of a user image (image mixing, emb2emb) ---------------------------
 * The prior's CLIP image preprocessing (transformers CLIPImageProcessor as the pinned stack runs
 * it: PIL bicubic resize of the shortest edge, center crop, rescale, OpenAI mean/std; alpha is
 * composited onto white, gray replicated) followed by kd_clip_vision_forward, for one image.
 * preprocessor_config_json: the prior's image_processor/preprocessor_config.json, or NULL for
 * CLIPImageProcessor's defaults (224). rgb: 1, 3 or 4 channels, any size. The processed size must
 * equal kd_clip_vision_image_size (else KD_ERR_SHAPE). image_embeds[kd_clip_vision_embed_dim]. */
kd_status kd_clip_vision_embed_image(kd_ctx *ctx, kd_clip_vision *m, const char *preprocessor_config_json,
                                     const kd_image *rgb, float *image_embeds);

/* ---- Requests: one generation as the CLI, the server and programs describe it ----------------
 * A kd_request is everything `kandinsky generate` takes (mode, prompts, size, steps, guidance,
 * samplers, seed, number of images, init image + strength, mask + options, hint, mix items, prior
 * image, model version, precision), owning its strings and decoded images. The CLI fills it from
 * argv, the server from JSON (kd_request_from_json, or its OpenAI / AUTOMATIC1111 mappings), a
 * program with the setters below. kd_request_check validates it completely against the decoder's
 * capabilities read from its config files, before any model is loaded; kd_request_run makes the
 * images; kd_request_describe writes the record that goes into each PNG.
 *
 * Differences from kd_generate (which keeps diffusers' semantics): image k of num_images gets the
 * seed seed + k and is generated alone (so any one can be made again with that seed and
 * num_images 1), and a size that is not a multiple of the latent grid (64 px) is generated at the
 * next multiple and cropped back (top-left, as the original Kandinsky 2.0 code) to the size asked
 * for. */
#define KD_REQUEST_MAX_MIX 16

typedef enum kd_mode {
    KD_MODE_AUTO = 0,   /* from the inputs given */
    KD_MODE_TEXT2IMG,
    KD_MODE_IMG2IMG,    /* init image */
    KD_MODE_INPAINT,    /* init image + mask */
    KD_MODE_CONTROLNET, /* hint (with or without an init image) */
    KD_MODE_MIX         /* mix items */
} kd_mode;
const char *kd_mode_name(kd_mode m); /* "auto", "text2img", "img2img", "inpaint", "controlnet", "mix" */
int kd_mode_parse(const char *s, kd_mode *out);

/* The image inputs of a request. */
typedef enum kd_request_slot { KD_SLOT_INIT = 0, KD_SLOT_MASK, KD_SLOT_HINT, KD_SLOT_PRIOR_IMAGE, KD_SLOT_COUNT } kd_request_slot;
const char *kd_request_slot_name(kd_request_slot s); /* "init_image", "mask_image", "hint", "prior_image" */

typedef struct kd_request_pool kd_request_pool; /* strings the request owns */

typedef struct kd_request {
    kd_gen_params g;            /* g.prompt etc.: strings owned by the request (kd_request_keep);
                                   g.init_image / mask_image / hint_image / prior_image / mix are
                                   set by kd_request_check from the fields below */
    kd_mode mode;
    kd_model_version version;   /* AUTO: whatever the pipeline is */
    int seed_random;            /* 1: no seed given (or -1): kd_request_check picks one */
    int guidance_given;         /* 0: guidance_scale is the version's default (7 for 2.0, else 4) */
    int steps_given;
    int precision_given;
    kd_precision precision;
    kd_image image[KD_SLOT_COUNT];     /* data NULL = not given */
    const char *image_name[KD_SLOT_COUNT]; /* where each came from (a file name, "upload"), for the record */
    int n_mix;
    kd_mix_item mix[KD_REQUEST_MAX_MIX];   /* .image points into mix_image */
    kd_image mix_image[KD_REQUEST_MAX_MIX];
    const char *mix_name[KD_REQUEST_MAX_MIX];
    char field[64];             /* after a failure: the field at fault ("strength", "mix[2].weight"), or "" */
    kd_request_pool *pool;
} kd_request;

/* Defaults (kd_gen_params_default, random seed). kd_request_free releases what it owns. */
void kd_request_init(kd_request *r);
void kd_request_free(kd_request *r);
/* A copy of s owned by the request (NULL for NULL, or on allocation failure). */
const char *kd_request_keep(kd_request *r, const char *s);
/* An image input from a file, from PNG/JPEG bytes, or from base64 (plain or a data: URL); name is
 * what the record shows. Decoded with the image limits (max_pixels 0 = the default 64 Mpx). */
kd_status kd_request_image_file(kd_ctx *ctx, kd_request *r, kd_request_slot slot, const char *path);
kd_status kd_request_image_bytes(kd_ctx *ctx, kd_request *r, kd_request_slot slot, const uint8_t *bytes, size_t len,
                                 const char *name, uint64_t max_pixels);
kd_status kd_request_image_base64(kd_ctx *ctx, kd_request *r, kd_request_slot slot, const char *b64, size_t len,
                                  const char *name, uint64_t max_pixels);
/* Mix items: a prompt, or an image (file or base64). */
kd_status kd_request_mix_text(kd_ctx *ctx, kd_request *r, const char *text, float weight);
kd_status kd_request_mix_image_file(kd_ctx *ctx, kd_request *r, const char *path, float weight);
kd_status kd_request_mix_image_base64(kd_ctx *ctx, kd_request *r, const char *b64, size_t len, float weight,
                                      uint64_t max_pixels);

/* The native JSON request of `kandinsky serve` (docs/SERVER.md: diffusers' field names, images
 * base64). Unknown fields, wrong types and bad images fail with KD_ERR_INVALID_ARG and r->field set. */
kd_status kd_request_from_json(kd_ctx *ctx, const char *json, size_t len, uint64_t max_pixels, kd_request *r);

/* What a decoder folder can do, from its config files alone (no weights are read). */
typedef struct kd_decoder_info {
    kd_model_version version;
    int text2img;     /* text to image, image to image, mixing (the plain decoders; 2.0 with Kandinsky-2-0.pt) */
    int inpaint;      /* a mask (the 9-channel U-Net; 2.0 with Kandinsky-2-0-inpainting.pt) */
    int controlnet;   /* needs a hint (addition_embed_type image_hint) */
} kd_decoder_info;
kd_status kd_decoder_info_read(kd_ctx *ctx, const char *decoder_dir, kd_decoder_info *out);

/* A server's or a user's limits on a request (0 = no limit beyond the library's). */
typedef struct kd_request_limits {
    int max_side, max_steps, max_images;
} kd_request_limits;

/* Validates everything before any model is loaded: values in range (strength and prior_strength in
 * (0, 1], steps, sizes, guidance, samplers for the version), the mode against the inputs, the inputs
 * against the decoder (a mask needs an inpainting decoder, a hint a ControlNet one, ...), the
 * version asked for against the decoder's, the limits. Picks the seed when seed_random and fills
 * the version's defaults. KD_ERR_INVALID_ARG with r->field and a message naming it otherwise. */
kd_status kd_request_check(kd_ctx *ctx, kd_request *r, const kd_decoder_info *decoder, const kd_request_limits *lim);

/* Called with each image as soon as it is made: index k of num_images, its own seed. The image
 * is owned by the library and valid during the call. Return nonzero to stop (the status is then
 * KD_ERR_CANCELLED). */
typedef int (*kd_request_image_fn)(void *user, int index, uint64_t seed, const kd_image *img);
/* Makes the images of a checked request: image k with seed + k, cropped back to the size asked
 * for. Stops at the first failure (the images already delivered stay delivered). */
kd_status kd_request_run(kd_ctx *ctx, kd_pipeline *p, kd_request *r, kd_request_image_fn on_image, void *user);

/* The record of image `index` (seed: its own) as "key: value" lines, for the PNG parameters chunk:
 * every field, the mix items with their weights, the inputs' names, the output size and the
 * models. extra (may be NULL) is appended as more lines. Returns the length it needed (as snprintf). */
typedef struct kd_request_record {
    const char *prior, *decoder;  /* model names as the user gave them */
    const char *decoder_scheduler;
    kd_precision precision;
    kd_weight_mode weights;
    int width, height;            /* the image's actual size */
    const char *extra;
} kd_request_record;
size_t kd_request_describe(const kd_request *r, int index, const kd_request_record *rec, char *buf, size_t cap);

/* ---- Model locations: local folders and the Hugging Face Hub ---------------------------------
 * kd_model_resolve turns a model name into a folder kd_pipeline_load can read:
 *   - an existing folder is returned as it is;
 *   - a Hub repo id "org/name" or "org/name@revision" (branch, tag or 40-hex commit; default
 *     "main") is looked up in the Hugging Face cache, in huggingface_hub's own layout
 *     (models--org--name/{refs,snapshots,blobs}), so both share one cache. When the cached
 *     snapshot holds every file the kind needs, no request is made. Otherwise the missing files are
 *     downloaded (resumed when interrupted, sha256-checked for LFS files) and the snapshot folder
 *     is returned.
 * kind "prior": model_index.json, tokenizer/, text_encoder/, image_encoder/, prior/, scheduler/;
 * kind "decoder": model_index.json, unet/, movq/, scheduler/ (config + safetensors weights, or a
 * .safetensors.index.json and its shards, per component);
 * kind "kandinsky2.0" / "kandinsky2.0-inpaint": the original 2.0 repo's files (sberbank-ai/Kandinsky_2.0:
 * Kandinsky-2-0.pt or Kandinsky-2-0-inpainting.pt, vae.ckpt, text_encoder1/, text_encoder2/).
 * Environment: HF_HUB_CACHE (cache folder; default $HF_HOME/hub), HF_HOME (default
 * $XDG_CACHE_HOME/huggingface or ~/.cache/huggingface), HF_ENDPOINT (default
 * https://huggingface.co), HF_TOKEN (else the file $HF_TOKEN_PATH or $HF_HOME/token; sent as
 * "Authorization: Bearer" to the endpoint only, needed for gated or private repos), HF_HUB_OFFLINE
 * (1/true/yes/on: never use the network; a missing file is an error that names it).
 * cb (may be NULL) reports each downloaded file's progress; total = 0 when unknown. *out_dir is
 * malloc'd: free() it. */
typedef void (*kd_download_progress_fn)(void *user, const char *file, uint64_t done, uint64_t total);

kd_status kd_model_resolve(kd_ctx *ctx, const char *id_or_path, const char *kind, kd_download_progress_fn cb,
                           void *user, char **out_dir);

#ifdef __cplusplus
}
#endif
#endif /* KANDINSKY_H */
