/* Public Kandinsky 2.2 text-to-image API: kd_pipeline_load / kd_generate. The seed drives one
 * torch-identical generator through the whole run in diffusers' order (prior latents, prior step
 * noise, decoder latents, decoder step noise), as KandinskyV22CombinedPipeline does with one
 * torch.Generator, so seed s gives diffusers' image for seed s. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"
#include "models/unet.h"
#include "pipeline/k20.h"
#include "pipeline/pipeline.h"
#include "text/xlmr_tokenizer.h"

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
        .eta = 0.0f,
    };
    return g;
}

static char *join(const char *dir, const char *sub) {
    size_t n = strlen(dir) + strlen(sub) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, sub);
    return s;
}

/* ---- loading and freeing: every model of the pipeline is loaded and freed here, nowhere else ---- */

/* Loads one component from <dir>/<sub>. */
#define LOAD_COMPONENT(fn, dir, sub, out)                                  \
    do {                                                                  \
        char *path_ = join(dir, sub);                                     \
        if (!path_) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory"); \
        kd_status s_ = fn(ctx, path_, out);                               \
        free(path_);                                                      \
        if (s_ != KD_OK) return s_;                                       \
    } while (0)

/* The sampler `name` (NULL: the config's own class) from <dir>/<sub>/scheduler_config.json (sub
 * NULL: "scheduler"). */
static kd_status load_sampler(kd_ctx *ctx, const char *dir, const char *sub, const char *name, kd_sampler **out) {
    char *folder = join(dir, sub ? sub : "scheduler");
    char *path = folder ? join(folder, "scheduler_config.json") : NULL;
    free(folder);
    if (!path) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    kd_status s = kd_sampler_load(path, name, out, &ctx->err);
    free(path);
    return s;
}

/* The prior runs UnCLIP unless asked otherwise (whatever its config's class says, as diffusers'
 * prior pipelines are built with an UnCLIPScheduler). */
#define PRIOR_DEFAULT_SAMPLER "unclip"

static kd_status clip_tokenizer_load(kd_ctx *ctx, const char *path, kd_clip_tokenizer **out) {
    return kd_clip_tokenizer_load_hf(path, out, &ctx->err);
}

static kd_status xlmr_tokenizer_load(kd_ctx *ctx, const char *path, kd_xlmr_tokenizer **out) {
    return kd_xlmr_tokenizer_load(path, out, &ctx->err);
}

static kd_status load_prior_stage(kd_ctx *ctx, kd_pipeline *p) {
    kd_prior_stage *ps = &p->prior;
    if (!ps->tokenizer) LOAD_COMPONENT(clip_tokenizer_load, p->prior_dir, "tokenizer", &ps->tokenizer);
    if (!ps->text_encoder) LOAD_COMPONENT(kd_clip_text_load, p->prior_dir, "text_encoder", &ps->text_encoder);
    if (!ps->image_encoder) LOAD_COMPONENT(kd_clip_vision_load, p->prior_dir, "image_encoder", &ps->image_encoder);
    if (!ps->prior) LOAD_COMPONENT(kd_prior_load, p->prior_dir, "prior", &ps->prior);
    if (!ps->sampler)
        KD_TRY(load_sampler(ctx, p->prior_dir, NULL, p->prior_sampler ? p->prior_sampler : PRIOR_DEFAULT_SAMPLER,
                            &ps->sampler));
    ps->image_processor_config = p->image_processor_config;
    return KD_OK;
}

static kd_status movq_load(kd_ctx *ctx, const char *path, kd_autoencoder *out) {
    return kd_autoencoder_load_movq(ctx, path, out);
}

static kd_status load_decoder_stage(kd_ctx *ctx, kd_pipeline *p) {
    kd_decoder_stage *d = &p->dec;
    d->version = kd_version_desc_of(p->version);
    if (d->version->decoder_text_encoder) { /* Kandinsky 2.1 */
        if (!d->xlmr) LOAD_COMPONENT(xlmr_tokenizer_load, p->decoder_dir, "tokenizer", &d->xlmr);
        if (!d->mclip) LOAD_COMPONENT(kd_mclip_load, p->decoder_dir, "text_encoder", &d->mclip);
    }
    if (!d->unet) LOAD_COMPONENT(kd_unet_load, p->decoder_dir, "unet", &d->unet);
    if (!d->ae.ops) LOAD_COMPONENT(movq_load, p->decoder_dir, "movq", &d->ae);
    if (!d->sampler) KD_TRY(load_sampler(ctx, p->decoder_dir, p->decoder_sched_dir, p->decoder_sampler, &d->sampler));
    return KD_OK;
}

/* The models of the prior stage; the zero-image embedding stays (a constant of the model). */
static void free_prior_stage(kd_pipeline *p) {
    kd_prior_stage *ps = &p->prior;
    kd_clip_tokenizer_free(ps->tokenizer);
    kd_clip_text_free(ps->text_encoder);
    kd_clip_vision_free(ps->image_encoder);
    kd_prior_free(ps->prior);
    kd_sampler_free(ps->sampler);
    ps->tokenizer = NULL;
    ps->text_encoder = NULL;
    ps->image_encoder = NULL;
    ps->prior = NULL;
    ps->sampler = NULL;
}

static void free_unet(kd_pipeline *p) {
    kd_unet_free(p->dec.unet);
    p->dec.unet = NULL;
}

static void free_decoder_stage(kd_pipeline *p) {
    kd_decoder_stage *d = &p->dec;
    kd_xlmr_tokenizer_free(d->xlmr);
    kd_mclip_free(d->mclip);
    free_unet(p);
    kd_autoencoder_free(&d->ae);
    kd_sampler_free(d->sampler);
    d->xlmr = NULL;
    d->mclip = NULL;
    d->sampler = NULL;
}

/* The version the decoder folder holds; `want` (not AUTO) must agree, or decides when the folder
 * does not say. */
static kd_status choose_version(kd_ctx *ctx, const char *decoder_dir, kd_model_version want, kd_model_version *out) {
    kd_model_version found;
    kd_err probe = {0};
    kd_status s = kd_detect_decoder_version(decoder_dir, &found, &probe);
    if (s != KD_OK && want == KD_MODEL_VERSION_AUTO)
        return kd_ctx_fail(ctx, s, "which Kandinsky is %s? %s", decoder_dir, probe.msg);
    if (s == KD_OK && want != KD_MODEL_VERSION_AUTO && want != found)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "model version %s was asked for, but the decoder %s is Kandinsky %s",
                           kd_model_version_name(want), decoder_dir, kd_model_version_name(found));
    *out = s == KD_OK ? found : want;
    return KD_OK;
}

/* Kandinsky 2.0: one folder, no prior (prior_dir is ignored). */
static kd_status load_2_0(kd_ctx *ctx, const char *dir, int low_memory, kd_pipeline **out) {
    kd_pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->decoder_dir = strdup(dir))) {
        free(p);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "pipeline: out of memory");
    }
    p->version = KD_MODEL_VERSION_2_0;
    p->low_memory = low_memory;
    kd_status s = kd_k20_load(ctx, dir, low_memory, &p->k20);
    if (s != KD_OK) {
        kd_pipeline_free(p);
        return s;
    }
    *out = p;
    return KD_OK;
}

kd_status kd_pipeline_load_version(kd_ctx *ctx, const char *prior_dir, const char *decoder_dir,
                                   kd_model_version version, int low_memory, kd_pipeline **out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!decoder_dir || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "pipeline: NULL argument");
    *out = NULL;
    int is20 = kd_k20_is_folder(decoder_dir);
    if (version == KD_MODEL_VERSION_2_0 && !is20)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG,
                           "model version 2.0 was asked for, but %s is not a Kandinsky 2.0 folder (vae.ckpt and "
                           "Kandinsky-2-0.pt or Kandinsky-2-0-inpainting.pt)",
                           decoder_dir);
    if (is20 && version != KD_MODEL_VERSION_AUTO && version != KD_MODEL_VERSION_2_0)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "model version %s was asked for, but %s is Kandinsky 2.0",
                           kd_model_version_name(version), decoder_dir);
    if (is20) return load_2_0(ctx, decoder_dir, low_memory, out);
    if (!prior_dir) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "pipeline: Kandinsky 2.1 / 2.2 need a prior folder");
    if (!kd_version_desc_of(version) && version != KD_MODEL_VERSION_AUTO)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "pipeline: unknown model version %d", (int)version);
    kd_pipeline *p = calloc(1, sizeof *p);
    if (!p) return kd_ctx_fail(ctx, KD_ERR_OOM, "pipeline: out of memory");
    p->prior_dir = strdup(prior_dir);
    p->decoder_dir = strdup(decoder_dir);
    p->image_processor_config = join(prior_dir, "image_processor/preprocessor_config.json");
    p->low_memory = low_memory;
    kd_status s = p->prior_dir && p->decoder_dir && p->image_processor_config
                      ? KD_OK
                      : kd_ctx_fail(ctx, KD_ERR_OOM, "pipeline: out of memory");
    /* Low-memory mode loads each stage when it runs; otherwise everything now, so a bad folder
     * is reported before any work. The version is settled here either way. */
    if (s == KD_OK && !low_memory) s = load_prior_stage(ctx, p);
    if (s == KD_OK) s = choose_version(ctx, decoder_dir, version, &p->version); /* the stage derives its descriptor */
    if (s == KD_OK && !low_memory) s = load_decoder_stage(ctx, p);
    if (s != KD_OK) {
        kd_pipeline_free(p);
        return s;
    }
    *out = p;
    return KD_OK;
}

kd_status kd_pipeline_load(kd_ctx *ctx, const char *prior_dir, const char *decoder_dir, int low_memory,
                           kd_pipeline **out) {
    return kd_pipeline_load_version(ctx, prior_dir, decoder_dir, KD_MODEL_VERSION_AUTO, low_memory, out);
}

kd_model_version kd_pipeline_model_version(const kd_pipeline *p) { return p ? p->version : KD_MODEL_VERSION_AUTO; }

void kd_pipeline_free(kd_pipeline *p) {
    if (!p) return;
    kd_k20_free(p->k20);
    free_prior_stage(p);
    free_decoder_stage(p);
    free(p->prior.zero_embed);
    free(p->prior_dir);
    free(p->decoder_dir);
    free(p->image_processor_config);
    free(p->decoder_sched_dir);
    free(p->decoder_sampler);
    free(p->prior_sampler);
    free(p);
}

const char *kd_sampler_list(void) { return kd_sampler_name_list(); }
int kd_sampler_exists(const char *name) { return kd_sampler_find(name) != NULL; }

static int same_name(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

/* The samplers a request asks for: a different one replaces the loaded one (it is rebuilt from
 * the same scheduler_config.json when its stage loads). */
static kd_status select_samplers(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g) {
    char **cur[2] = {&p->decoder_sampler, &p->prior_sampler};
    kd_sampler **loaded[2] = {&p->dec.sampler, &p->prior.sampler};
    const char *want[2] = {g->sampler, g->prior_sampler};
    for (int k = 0; k < 2; k++) {
        if (same_name(*cur[k], want[k])) continue;
        char *copy = want[k] ? strdup(want[k]) : NULL;
        if (want[k] && !copy) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
        free(*cur[k]);
        *cur[k] = copy;
        kd_sampler_free(*loaded[k]);
        *loaded[k] = NULL;
    }
    return KD_OK;
}

kd_status kd_pipeline_set_decoder_scheduler(kd_ctx *ctx, kd_pipeline *p, const char *subfolder) {
    if (ctx && p && p->k20) return kd_ctx_fail(ctx, KD_ERR_UNSUPPORTED, "Kandinsky 2.0 has no scheduler folder (its samplers are built in)");
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!p || !subfolder) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "decoder scheduler: NULL argument");
    /* A plain folder name: no path separators, no "." or ".." */
    if (!subfolder[0] || strchr(subfolder, '/') || strchr(subfolder, '\\') || !strcmp(subfolder, ".") ||
        !strcmp(subfolder, ".."))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "decoder scheduler: '%.200s' is not a subfolder name", subfolder);
    kd_sampler *sched;
    KD_TRY(load_sampler(ctx, p->decoder_dir, subfolder, p->decoder_sampler, &sched));
    char *name = strdup(subfolder);
    if (!name) {
        kd_sampler_free(sched);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    }
    free(p->decoder_sched_dir);
    p->decoder_sched_dir = name;
    /* Replace a loaded one; with low_memory the stage loads it from decoder_sched_dir when it runs. */
    if (p->dec.sampler || !p->low_memory) {
        kd_sampler_free(p->dec.sampler);
        p->dec.sampler = sched;
    } else {
        kd_sampler_free(sched);
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
    for (int k = 0; k < 2; k++) {
        const char *name = k ? g->prior_sampler : g->sampler;
        if (name && !kd_sampler_find(name))
            return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "unknown %ssampler '%.100s' (one of: %s)", k ? "prior " : "", name,
                               kd_sampler_name_list());
    }
    int unclip = !g->prior_sampler || !strcmp(g->prior_sampler, PRIOR_DEFAULT_SAMPLER);
    if (g->prior_steps < (unclip ? 2 : 1) || g->prior_steps > MAX_STEPS)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "prior steps = %d: must be %d..%d%s", g->prior_steps, unclip ? 2 : 1,
                           MAX_STEPS, unclip ? " (the UnCLIP schedule divides by steps - 1)" : "");
    if (g->num_images < 1 || g->num_images > MAX_IMAGES)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "number of images = %d: must be 1..%d", g->num_images, MAX_IMAGES);
    if (!(g->guidance_scale == g->guidance_scale) || !(g->prior_guidance_scale == g->prior_guidance_scale) ||
        g->guidance_scale > 1e4f || g->prior_guidance_scale > 1e4f || g->guidance_scale < -1e4f ||
        g->prior_guidance_scale < -1e4f)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "guidance scales must be finite numbers (got %g and %g)",
                           (double)g->guidance_scale, (double)g->prior_guidance_scale);
    return KD_OK;
}

static kd_prior_args prior_args(const kd_gen_params *g) {
    kd_prior_args a = {.prompt = g->prompt, .negative_prompt = g->negative_prompt, .num_images = g->num_images,
                       .steps = g->prior_steps, .guidance = g->prior_guidance_scale, .init_image = g->prior_image,
                       .strength = g->prior_strength, .progress = KD_PROGRESS_OF(g)};
    return a;
}

/* Prompt or mix → image_embeds, negative_embeds [n, E]. */
static kd_status run_prior(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, float *emb, float *neg) {
    kd_prior_args a = prior_args(g);
    if (g->n_mix > 0) return kd_prior_mix(ctx, &p->prior, &a, g->mix, g->n_mix, rng, emb, neg);
    return kd_prior_run(ctx, &p->prior, &a, rng, emb, neg);
}

kd_status kd_generate_embeds(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, float *image_embeds,
                             float *negative_embeds) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!p || !g || !image_embeds || !negative_embeds) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "NULL argument");
    if (p->k20) return kd_ctx_fail(ctx, KD_ERR_UNSUPPORTED, "Kandinsky 2.0 has no prior (no image embeddings)");
    KD_TRY(check_params(ctx, g));
    kd_rng rng;
    kd_rng_seed(&rng, g->seed);
    KD_TRY(select_samplers(ctx, p, g));
    KD_TRY(load_prior_stage(ctx, p));
    return run_prior(ctx, p, g, &rng, image_embeds, negative_embeds);
}

int kd_pipeline_embed_dim(kd_ctx *ctx, kd_pipeline *p) {
    if (!p || p->k20 || load_prior_stage(ctx, p) != KD_OK) return -1;
    return kd_prior_stage_embed_dim(&p->prior);
}

/* Latent size and the variant inputs for the decoder. */
static kd_status prepare_decoder(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_dec_inputs *in, int *lh,
                                 int *lw) {
    const kd_decoder_stage *d = &p->dec;
    int f = kd_ae_downscale(&d->ae);
    kd_latent_size(f, g->height, g->width, lh, lw);
    if (g->mask_image) {
        KD_TRY(kd_prepare_inpaint(ctx, &d->ae, g->init_image, g->mask_image, g->invert_mask, g->width, g->height,
                                  g->num_images, *lh, *lw, in));
    } else if (g->init_image) {
        int plh = *lh, plw = *lw;
        KD_TRY(kd_prepare_img2img(ctx, &d->ae, g->init_image, g->width, g->height, g->num_images, g->strength, in, lh,
                                  lw));
        if (d->version->img2img_exact_size && (plh != *lh || plw != *lw)) /* 2.1 makes its latents at get_new_h_w's size */
            return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG,
                               "Kandinsky %s image-to-image needs a width and height that are multiples of %d (got %dx%d)",
                               d->version->name, f * f, g->width, g->height);
    }
    if (g->hint_image) KD_TRY(kd_prepare_hint(ctx, g->hint_image, *lh, *lw, in));
    if (*lh % kd_unet_size_multiple(d->unet) || *lw % kd_unet_size_multiple(d->unet))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "latent size %dx%d is not a multiple of the U-Net's %d", *lw, *lh,
                           kd_unet_size_multiple(d->unet));
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

/* The decoder: conditioning → latents → (low memory: U-Net freed) → pixels [n, 3, H, W]. */
static kd_status run_decoder(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, const float *emb,
                             const float *neg, const kd_dec_inputs *in, int lh, int lw, float *pixels) {
    kd_decoder_stage *d = &p->dec;
    int N = g->num_images, C = kd_ae_latent_channels(&d->ae);
    kd_cond_args ca = {.prompt = g->prompt, .negative_prompt = g->negative_prompt, .n = N,
                       .cfg = g->guidance_scale > 1.0f, .image_embeds = emb, .negative_embeds = neg};
    kd_dec_cond cond = {0};
    float *latents = malloc((size_t)N * C * lh * lw * sizeof(float));
    kd_status s = latents ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "decoder: out of memory for %d×%d latents", lw, lh);
    if (s == KD_OK) s = d->version->condition(ctx, d, &ca, &cond);
    kd_denoise_args da = {.n = N, .steps = g->steps, .guidance = g->guidance_scale, .lat_h = lh, .lat_w = lw,
                          .cond = &cond, .in = in, .progress = KD_PROGRESS_OF(g),
                          .preview = g->preview, .preview_user = g->preview_user, .preview_every = g->preview_every};
    if (s == KD_OK) s = kd_decoder_denoise(ctx, d, &da, rng, latents);
    if (s == KD_OK && p->low_memory) free_unet(p); /* the U-Net (5 GB) goes before the decode's activations arrive */
    if (s == KD_OK) {
        s = kd_ae_decode_host(ctx, &d->ae, latents, N, lh, lw, pixels);
        if (s == KD_OK) s = kd_progress_report(&da.progress, &ctx->err, "decode", 1, 1);
    }
    kd_dec_cond_free(&cond);
    free(latents);
    return s;
}

kd_status kd_generate(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_image *images) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!p || !g || !images) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "NULL argument");
    if (p->k20) {
        kd_gen_params g20 = *g;
        g20.sampler = NULL; /* 2.0's sampler names are its own (checked there) */
        KD_TRY(check_params(ctx, &g20));
        if (g->mask_image && g->soft_mask) return kd_ctx_fail(ctx, KD_ERR_UNSUPPORTED, "soft_mask is not available for Kandinsky 2.0");
        return kd_k20_generate(ctx, p->k20, g, images);
    }
    KD_TRY(check_params(ctx, g));
    for (int i = 0; i < g->num_images; i++) images[i] = (kd_image){0};
    kd_rng rng;
    kd_rng_seed(&rng, g->seed);
    KD_TRY(select_samplers(ctx, p, g));
    KD_TRY(load_prior_stage(ctx, p));
    int E = kd_prior_stage_embed_dim(&p->prior), N = g->num_images;
    float *emb = malloc((size_t)2 * N * E * sizeof(float)), *pixels = NULL;
    if (!emb) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    kd_progress pr = KD_PROGRESS_OF(g);
    kd_status s = kd_progress_check(&pr, &ctx->err, "prior");
    if (s == KD_OK) s = run_prior(ctx, p, g, &rng, emb, emb + (size_t)N * E);
    if (s == KD_OK) s = kd_progress_check(&pr, &ctx->err, "decoder");
    if (s == KD_OK && p->low_memory) free_prior_stage(p);
    if (s == KD_OK) s = load_decoder_stage(ctx, p);
    if (s == KD_OK && kd_unet_image_embed_dim(p->dec.unet) != E)
        s = kd_ctx_fail(ctx, KD_ERR_SHAPE, "the prior makes %d-value image embeddings, the decoder U-Net expects %d", E,
                        kd_unet_image_embed_dim(p->dec.unet));
    int lh = 0, lw = 0, f = 1;
    kd_dec_inputs in = {0};
    if (s == KD_OK) s = prepare_decoder(ctx, p, g, &in, &lh, &lw);
    if (s == KD_OK) f = kd_ae_downscale(&p->dec.ae);
    size_t plane = (size_t)3 * (lh * f) * (lw * f);
    if (s == KD_OK && !(pixels = malloc((size_t)N * plane * sizeof(float))))
        s = kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory for %d images of %d×%d", N, lw * f, lh * f);
    if (s == KD_OK) s = run_decoder(ctx, p, g, &rng, emb, emb + (size_t)N * E, &in, lh, lw, pixels);
    for (int i = 0; s == KD_OK && i < N; i++) {
        s = kd_tensor_to_image(pixels + i * plane, lw * f, lh * f, &images[i], &ctx->err);
        if (s == KD_OK && g->soft_mask && g->mask_image) s = soft_blend(ctx, g, &images[i]);
    }
    if (s != KD_OK)
        for (int i = 0; i < N; i++) kd_image_free(&images[i]);
    if (p->low_memory) free_decoder_stage(p);
    kd_dec_inputs_free(&in);
    free(emb);
    free(pixels);
    return s;
}
