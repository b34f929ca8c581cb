/* Public Kandinsky 2.2 text-to-image API: kd_pipeline_load / kd_generate. The seed drives one
 * torch-identical generator through the whole run in diffusers' order (prior latents, prior step
 * noise, decoder latents, decoder step noise), as KandinskyV22CombinedPipeline does with one
 * torch.Generator, so seed s gives diffusers' image for seed s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"
#include "pipeline/pipeline.h"

kd_gen_params kd_gen_params_default(void) {
    kd_gen_params g = {
        .prompt = "",
        .negative_prompt = NULL,
        .width = 512,
        .height = 512,
        .steps = 100,
        .prior_steps = 25,
        .guidance_scale = 4.0f,
        .prior_guidance_scale = 4.0f,
        .seed = 0,
        .num_images = 1,
        .strength = 0.3f,
        .prior_strength = 0.3f,
    };
    return g;
}

void kd_pipe_progress(const kd_gen_params *g, const char *stage, int step, int total) {
    if (g->progress) g->progress(g->progress_user, stage, step, total);
}

static char *join(const char *dir, const char *sub) {
    size_t n = strlen(dir) + strlen(sub) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, sub);
    return s;
}

/* Loads one component from <dir>/<sub>. */
#define LOAD_COMPONENT(fn, dir, sub, out)                                  \
    do {                                                                  \
        char *path_ = join(dir, sub);                                     \
        if (!path_) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory"); \
        kd_status s_ = fn(ctx, path_, out);                               \
        free(path_);                                                      \
        if (s_ != KD_OK) return s_;                                       \
    } while (0)

/* <dir>/<sub>/scheduler_config.json (sub NULL: "scheduler"). */
static kd_status load_sched(kd_ctx *ctx, const char *dir, const char *sub, kd_sched_kind kind, kd_sched **out) {
    char *folder = join(dir, sub ? sub : "scheduler");
    char *path = folder ? join(folder, "scheduler_config.json") : NULL;
    free(folder);
    if (!path) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    kd_status s = kd_sched_load(path, kind, out, &ctx->err);
    free(path);
    return s;
}

static kd_status load_tokenizer(kd_ctx *ctx, const char *dir, kd_clip_tokenizer **out) {
    char *path = join(dir, "tokenizer");
    if (!path) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    kd_status s = kd_clip_tokenizer_load_hf(path, out, &ctx->err);
    free(path);
    return s;
}

kd_status kd_pipe_load_prior_stage(kd_ctx *ctx, kd_pipeline *p) {
    if (!p->tokenizer) KD_TRY(load_tokenizer(ctx, p->prior_dir, &p->tokenizer));
    if (!p->text_encoder) LOAD_COMPONENT(kd_clip_text_load, p->prior_dir, "text_encoder", &p->text_encoder);
    if (!p->image_encoder) LOAD_COMPONENT(kd_clip_vision_load, p->prior_dir, "image_encoder", &p->image_encoder);
    if (!p->prior) LOAD_COMPONENT(kd_prior_load, p->prior_dir, "prior", &p->prior);
    if (!p->prior_sched) KD_TRY(load_sched(ctx, p->prior_dir, NULL, KD_SCHED_UNCLIP, &p->prior_sched));
    return KD_OK;
}

static int has_text_encoder(const char *decoder_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/text_encoder/config.json", decoder_dir);
    FILE *f = fopen(path, "rb");
    if (f) fclose(f);
    return f != NULL;
}

const char *kd_decoder_model_version(const char *decoder_dir) {
    return decoder_dir && has_text_encoder(decoder_dir) ? "2.1" : "2.2";
}

kd_status kd_pipe_load_decoder_stage(kd_ctx *ctx, kd_pipeline *p) {
    if (has_text_encoder(p->decoder_dir)) KD_TRY(kd_pipe_load_text21(ctx, p)); /* Kandinsky 2.1 */
    if (!p->unet) LOAD_COMPONENT(kd_unet_load, p->decoder_dir, "unet", &p->unet);
    if (!p->movq) LOAD_COMPONENT(kd_movq_load, p->decoder_dir, "movq", &p->movq);
    if (!p->decoder_sched) KD_TRY(load_sched(ctx, p->decoder_dir, p->decoder_sched_dir, KD_SCHED_AUTO, &p->decoder_sched));
    return KD_OK;
}

void kd_pipe_free_prior_stage(kd_pipeline *p) {
    kd_clip_tokenizer_free(p->tokenizer);
    kd_clip_text_free(p->text_encoder);
    kd_clip_vision_free(p->image_encoder);
    kd_prior_free(p->prior);
    kd_sched_free(p->prior_sched);
    p->tokenizer = NULL;
    p->text_encoder = NULL;
    p->image_encoder = NULL;
    p->prior = NULL;
    p->prior_sched = NULL;
}

void kd_pipe_free_decoder_stage(kd_pipeline *p) {
    kd_pipe_free_text21(p);
    kd_unet_free(p->unet);
    kd_movq_free(p->movq);
    kd_sched_free(p->decoder_sched);
    p->unet = NULL;
    p->movq = NULL;
    p->decoder_sched = NULL;
}

kd_status kd_pipeline_load(kd_ctx *ctx, const char *prior_dir, const char *decoder_dir, int low_memory,
                           kd_pipeline **out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!prior_dir || !decoder_dir || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "pipeline: NULL argument");
    *out = NULL;
    kd_pipeline *p = calloc(1, sizeof *p);
    if (!p) return kd_ctx_fail(ctx, KD_ERR_OOM, "pipeline: out of memory");
    p->prior_dir = strdup(prior_dir);
    p->decoder_dir = strdup(decoder_dir);
    p->low_memory = low_memory;
    kd_status s = p->prior_dir && p->decoder_dir ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "pipeline: out of memory");
    /* Low-memory mode loads each stage when it runs; otherwise everything now, so a bad folder
     * is reported before any work. */
    if (s == KD_OK && !low_memory) s = kd_pipe_load_prior_stage(ctx, p);
    if (s == KD_OK && !low_memory) s = kd_pipe_load_decoder_stage(ctx, p);
    if (s != KD_OK) {
        kd_pipeline_free(p);
        return s;
    }
    *out = p;
    return KD_OK;
}

void kd_pipeline_free(kd_pipeline *p) {
    if (!p) return;
    kd_pipe_free_prior_stage(p);
    kd_pipe_free_decoder_stage(p);
    free(p->zero_embed);
    free(p->prior_dir);
    free(p->decoder_dir);
    free(p->decoder_sched_dir);
    free(p);
}

kd_status kd_pipeline_set_decoder_scheduler(kd_ctx *ctx, kd_pipeline *p, const char *subfolder) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!p || !subfolder) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "decoder scheduler: NULL argument");
    /* A plain folder name: no path separators, no "." or ".." */
    if (!subfolder[0] || strchr(subfolder, '/') || strchr(subfolder, '\\') || !strcmp(subfolder, ".") ||
        !strcmp(subfolder, ".."))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "decoder scheduler: '%.200s' is not a subfolder name", subfolder);
    kd_sched *sched;
    KD_TRY(load_sched(ctx, p->decoder_dir, subfolder, KD_SCHED_AUTO, &sched));
    char *name = strdup(subfolder);
    if (!name) {
        kd_sched_free(sched);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    }
    free(p->decoder_sched_dir);
    p->decoder_sched_dir = name;
    /* Replace a loaded one; with low_memory the stage loads it from decoder_sched_dir when it runs. */
    if (p->decoder_sched || !p->low_memory) {
        kd_sched_free(p->decoder_sched);
        p->decoder_sched = sched;
    } else {
        kd_sched_free(sched);
    }
    return KD_OK;
}

#define MAX_SIDE 8192
#define MAX_IMAGES 64
#define MAX_STEPS 1000

static kd_status check_params(kd_ctx *ctx, const kd_gen_params *g) {
    if (!g->prompt && g->n_mix <= 0) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "prompt is NULL");
    if (g->n_mix < 0 || g->n_mix > 64 || (g->n_mix > 0 && !g->mix))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "mix: %d items (1..64 with a list, or 0)", g->n_mix);
    for (int i = 0; i < g->n_mix; i++)
        if (!g->mix[i].text == !g->mix[i].image || !(g->mix[i].weight == g->mix[i].weight))
            return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "mix item %d: give exactly one of text or image, and a finite weight", i);
    if (g->mask_image && !g->init_image)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "a mask needs the image to inpaint (init_image)");
    if (g->init_image && !(g->strength >= 0.0f && g->strength <= 1.0f))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "strength %g is outside [0, 1]", (double)g->strength);
    if (g->width < 1 || g->height < 1 || g->width > MAX_SIDE || g->height > MAX_SIDE)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "size %d×%d is out of range (1..%d per side)", g->width, g->height,
                           MAX_SIDE);
    if (g->steps < 1 || g->steps > MAX_STEPS)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "steps = %d: must be 1..%d", g->steps, MAX_STEPS);
    if (g->prior_steps < 2 || g->prior_steps > MAX_STEPS)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "prior steps = %d: must be 2..%d (the UnCLIP schedule divides by steps - 1)",
                           g->prior_steps, MAX_STEPS);
    if (g->num_images < 1 || g->num_images > MAX_IMAGES)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "number of images = %d: must be 1..%d", g->num_images, MAX_IMAGES);
    if (!(g->guidance_scale == g->guidance_scale) || !(g->prior_guidance_scale == g->prior_guidance_scale) ||
        g->guidance_scale > 1e4f || g->prior_guidance_scale > 1e4f || g->guidance_scale < -1e4f ||
        g->prior_guidance_scale < -1e4f)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "guidance scales must be finite numbers (got %g and %g)",
                           (double)g->guidance_scale, (double)g->prior_guidance_scale);
    return KD_OK;
}

static kd_status run_prior(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, float *emb, float *neg);

kd_status kd_generate_embeds(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, float *image_embeds,
                             float *negative_embeds) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!p || !g || !image_embeds || !negative_embeds) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "NULL argument");
    KD_TRY(check_params(ctx, g));
    kd_rng rng;
    kd_rng_seed(&rng, g->seed);
    KD_TRY(kd_pipe_load_prior_stage(ctx, p));
    return run_prior(ctx, p, g, &rng, image_embeds, negative_embeds);
}

int kd_pipeline_embed_dim(kd_ctx *ctx, kd_pipeline *p) {
    if (kd_pipe_load_prior_stage(ctx, p) != KD_OK) return -1;
    return kd_prior_embed_dim(p->prior);
}

/* Latent size and the variant inputs for the decoder. */
static kd_status prepare_decoder(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_dec_inputs *in, float **owned,
                                 int *lh, int *lw) {
    kd_pipe_latent_size(p, g->height, g->width, lh, lw);
    if (g->mask_image) {
        KD_TRY(kd_pipe_prepare_inpaint(ctx, p, g, in, owned, *lh, *lw));
    } else if (g->init_image) {
        KD_TRY(kd_pipe_prepare_img2img(ctx, p, g, in, owned, lh, lw));
    }
    if (g->hint_image) KD_TRY(kd_pipe_prepare_hint(ctx, p, g, in, owned + 3, *lh, *lw));
    if (*lh % kd_unet_size_multiple(p->unet) || *lw % kd_unet_size_multiple(p->unet))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "latent size %dx%d is not a multiple of the U-Net's %d", *lw, *lh,
                           kd_unet_size_multiple(p->unet));
    return KD_OK;
}

/* Soft-mask compositing (see kd_gen_params.soft_mask): the original and the gray mask at the output
 * size (Pillow bicubic with reducing_gap 1 and Lanczos, as the inpainting preprocessing), blended
 * per pixel and rounded. */
static kd_status soft_blend(kd_ctx *ctx, const kd_gen_params *g, kd_image *out) {
    kd_image orig = {0}, rgb = {0}, m = {0}, gray = {0};
    kd_status s = kd_image_to_rgb(g->init_image, &rgb, &ctx->err);
    if (s == KD_OK) s = kd_image_resize(&rgb, out->width, out->height, KD_RESAMPLE_BICUBIC, 1.0, &orig, &ctx->err);
    if (s == KD_OK) s = kd_image_resize(g->mask_image, out->width, out->height, KD_RESAMPLE_LANCZOS, 0.0, &m, &ctx->err);
    if (s == KD_OK) s = kd_image_to_gray(&m, &gray, &ctx->err);
    for (size_t k = 0; s == KD_OK && k < (size_t)out->width * out->height; k++) {
        float w = gray.data[k] / 255.0f, keep = g->invert_mask ? w : 1.0f - w;
        for (int c = 0; c < 3; c++) {
            float v = keep * orig.data[k * 3 + c] + (1.0f - keep) * out->data[k * 3 + c];
            out->data[k * 3 + c] = (uint8_t)(v + 0.5f);
        }
    }
    kd_image_free(&orig);
    kd_image_free(&rgb);
    kd_image_free(&m);
    kd_image_free(&gray);
    return s;
}

static kd_status run_prior(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, float *emb, float *neg) {
    if (g->n_mix > 0) return kd_pipe_mix(ctx, p, g, rng, emb, neg);
    return kd_pipe_prior(ctx, p, g, rng, emb, neg);
}

kd_status kd_generate(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_image *images) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!p || !g || !images) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "NULL argument");
    KD_TRY(check_params(ctx, g));
    for (int i = 0; i < g->num_images; i++) images[i] = (kd_image){0};
    kd_rng rng;
    kd_rng_seed(&rng, g->seed);
    KD_TRY(kd_pipe_load_prior_stage(ctx, p));
    int E = kd_prior_embed_dim(p->prior), N = g->num_images;
    float *emb = malloc((size_t)2 * N * E * sizeof(float)), *pixels = NULL, *owned[4] = {0};
    if (!emb) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    kd_status s = run_prior(ctx, p, g, &rng, emb, emb + (size_t)N * E);
    if (s == KD_OK && p->low_memory) kd_pipe_free_prior_stage(p);
    if (s == KD_OK) s = kd_pipe_load_decoder_stage(ctx, p);
    if (s == KD_OK && kd_unet_image_embed_dim(p->unet) != E)
        s = kd_ctx_fail(ctx, KD_ERR_SHAPE, "the prior makes %d-value image embeddings, the decoder U-Net expects %d", E,
                        kd_unet_image_embed_dim(p->unet));
    int lh = 0, lw = 0, f = 1;
    kd_dec_inputs in = {0};
    if (s == KD_OK) s = prepare_decoder(ctx, p, g, &in, owned, &lh, &lw);
    if (s == KD_OK) f = kd_movq_downscale(p->movq);
    size_t plane = (size_t)3 * (lh * f) * (lw * f);
    if (s == KD_OK && !(pixels = malloc((size_t)N * plane * sizeof(float))))
        s = kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory for %d images of %d×%d", N, lw * f, lh * f);
    if (s == KD_OK) s = kd_pipe_decode(ctx, p, g, &rng, emb, emb + (size_t)N * E, lh, lw, &in, pixels);
    for (int i = 0; s == KD_OK && i < N; i++) {
        s = kd_tensor_to_image(pixels + i * plane, lw * f, lh * f, &images[i], &ctx->err);
        if (s == KD_OK && g->soft_mask && g->mask_image) s = soft_blend(ctx, g, &images[i]);
    }
    if (s != KD_OK)
        for (int i = 0; i < N; i++) kd_image_free(&images[i]);
    if (p->low_memory) kd_pipe_free_decoder_stage(p);
    for (int i = 0; i < 4; i++) free(owned[i]);
    free(emb);
    free(pixels);
    return s;
}
