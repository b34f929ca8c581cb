/* Prior stage of Kandinsky 2.2 (KandinskyV22PriorPipeline.__call__). Spec §4.2.
 *
 *   prompts  = [prompt] (+ [negative_prompt] when one is given: its prior output becomes the
 *              negative image embedding), each repeated num_images times      → n_rows
 *   uncond   = "" for every row, or the negative prompt for every row when given
 *   CFG batch = [uncond rows ; prompt rows] when prior_guidance_scale > 1
 *   x ~ randn[n_rows, E]; for t in UnCLIP timesteps: x0 = prior(...), guided, x = step(x0)
 *   image_embeds = x · clip_std + clip_mean
 *   negative = the negative prompt's rows, or the zero-image embedding image_encoder(zeros) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline.h"

/* Only the first `len` token positions are encoded and given to the prior: len is the longest
 * row's real tokens (BOS .. EOS), everything after is padding in every row. Exact: CLIP's text
 * attention is causal, so earlier positions never see later ones, and the prior masks padded keys
 * with −10000 (softmax weight exactly 0 in float32) and outputs only its last token, so no result
 * reads a padded position. A short prompt runs ~10 positions instead of 77 (docs/NOTES.md). */
typedef struct text_batch {
    int32_t *ids, *mask; /* [rows, len] */
    float *embeds;       /* [rows, E] */
    float *hidden;       /* [rows, len, E] */
    int len;
} text_batch;

static void text_batch_free(text_batch *t) {
    free(t->ids);
    free(t->mask);
    free(t->embeds);
    free(t->hidden);
}

/* Tokenises texts[rows] and runs the text encoder on them. */
static kd_status encode_texts(kd_ctx *ctx, kd_pipeline *p, const char *const *texts, int rows, text_batch *out) {
    int L = kd_prior_text_len(p->prior), E = kd_prior_embed_dim(p->prior);
    if (kd_clip_text_hidden_size(p->text_encoder) != E || kd_clip_text_embed_dim(p->text_encoder) != E)
        return kd_ctx_fail(ctx, KD_ERR_SHAPE, "prior: text encoder width %d / projection %d do not match the prior's %d",
                           kd_clip_text_hidden_size(p->text_encoder), kd_clip_text_embed_dim(p->text_encoder), E);
    out->ids = malloc((size_t)rows * L * sizeof(int32_t));
    out->mask = malloc((size_t)rows * L * sizeof(int32_t));
    out->embeds = malloc((size_t)rows * E * sizeof(float));
    out->hidden = malloc((size_t)rows * L * E * sizeof(float));
    if (!out->ids || !out->mask || !out->embeds || !out->hidden) return kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
    out->len = 1;
    for (int r = 0; r < rows; r++) {
        int n_real;
        kd_status s = kd_clip_tokenize(p->tokenizer, texts[r], strlen(texts[r]), L, out->ids + (size_t)r * L,
                                       out->mask + (size_t)r * L, &n_real, &ctx->err);
        if (s != KD_OK) return kd_err_prefix(&ctx->err, "prompt");
        for (int i = L - 1; i >= out->len; i--)
            if (out->mask[(size_t)r * L + i]) {
                out->len = i + 1;
                break;
            }
    }
    int n = out->len;
    for (int r = 1; r < rows && n < L; r++) { /* compact [rows, L] → [rows, n] */
        memmove(out->ids + (size_t)r * n, out->ids + (size_t)r * L, (size_t)n * sizeof(int32_t));
        memmove(out->mask + (size_t)r * n, out->mask + (size_t)r * L, (size_t)n * sizeof(int32_t));
    }
    return kd_clip_text_forward(ctx, p->text_encoder, out->ids, rows, n, out->embeds, out->hidden);
}

/* The zero-image embedding, repeated over rows; computed once per pipeline (the vision encoder on
 * zeros costs as much as several prior steps with ViT-bigG). */
static kd_status zero_embeds(kd_ctx *ctx, kd_pipeline *p, int rows, float *out) {
    int S = kd_clip_vision_image_size(p->image_encoder), E = kd_clip_vision_embed_dim(p->image_encoder);
    if (E != kd_prior_embed_dim(p->prior))
        return kd_ctx_fail(ctx, KD_ERR_SHAPE, "prior: image encoder embeds %d values, the prior %d", E,
                           kd_prior_embed_dim(p->prior));
    if (!p->zero_embed || p->zero_embed_dim != E) {
        float *zeros = calloc((size_t)3 * S * S, sizeof(float)), *z = malloc((size_t)E * sizeof(float));
        kd_status s = zeros && z ? kd_clip_vision_forward(ctx, p->image_encoder, zeros, 1, z)
                                 : kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
        free(zeros);
        if (s != KD_OK) {
            free(z);
            return s;
        }
        free(p->zero_embed);
        p->zero_embed = z;
        p->zero_embed_dim = E;
    }
    for (int r = 0; r < rows; r++) memcpy(out + (size_t)r * E, p->zero_embed, (size_t)E * sizeof(float));
    return KD_OK;
}

typedef struct prior_loop {
    int rows, E, L, cfg;
    float guidance;
    float *x, *x_in, *pred, *ts; /* x[rows, E]; x_in / pred [batch, E]; ts[batch] */
    const float *embeds, *hidden;
    const int32_t *mask;
} prior_loop;

static kd_status denoise(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, prior_loop *lp,
                         int start) {
    kd_sched *s = p->prior_sched;
    int n = kd_sched_num_timesteps(s), batch = lp->cfg ? 2 * lp->rows : lp->rows;
    size_t row_bytes = (size_t)lp->rows * lp->E * sizeof(float);
    const int64_t *ts = kd_sched_timesteps(s);
    kd_sched_shape shape = {lp->rows, lp->E, 1};
    for (int i = start; i < n; i++) {
        memcpy(lp->x_in, lp->x, row_bytes);
        if (lp->cfg) memcpy((char *)lp->x_in + row_bytes, lp->x, row_bytes);
        for (int b = 0; b < batch; b++) lp->ts[b] = (float)ts[i];
        KD_TRY(kd_prior_forward_text(ctx, p->prior, lp->x_in, lp->ts, lp->embeds, lp->hidden, lp->mask, lp->L, batch,
                                     lp->pred));
        if (lp->cfg) { /* pred = uncond + g · (text - uncond) */
            float *u = lp->pred, *c = lp->pred + (size_t)lp->rows * lp->E;
            for (size_t k = 0; k < (size_t)lp->rows * lp->E; k++) u[k] = u[k] + lp->guidance * (c[k] - u[k]);
        }
        int64_t prev = i + 1 < n ? ts[i + 1] : KD_SCHED_PREV_NONE;
        kd_status st = kd_sched_step_unclip(s, lp->pred, lp->E, ts[i], prev, lp->x, &shape, rng, lp->x, NULL, &ctx->err);
        if (st != KD_OK) return kd_err_prefix(&ctx->err, "prior scheduler");
        kd_pipe_progress(g, "prior", i + 1 - start, n - start);
    }
    return KD_OK;
}

static kd_status embed_image(kd_ctx *ctx, kd_pipeline *p, const char *cfg, const kd_image *img, float *out);
static char *processor_config(const kd_pipeline *p);

/* KandinskyV22PriorEmb2EmbPipeline's start: the CLIP embedding of prior_image, as is (diffusers
 * does not normalise it by clip_mean/std), repeated over the rows and noised to the first
 * timestep that prior_strength leaves (one randn over all rows). */
static kd_status init_from_image(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, float *x,
                                 int rows, int *start) {
    int E = kd_prior_embed_dim(p->prior), count;
    if (!(g->prior_strength >= 0.0f && g->prior_strength <= 1.0f))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "prior strength %g is outside [0, 1]", (double)g->prior_strength);
    KD_TRY(kd_sched_img2img_start(p->prior_sched, g->prior_strength, start, &count, &ctx->err));
    if (count < 1)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "prior strength %g leaves no step out of %d",
                           (double)g->prior_strength, g->prior_steps);
    float *emb = malloc((size_t)rows * E * sizeof(float)), *noise = malloc((size_t)rows * E * sizeof(float));
    char *cfg = processor_config(p);
    kd_status s = emb && noise && cfg ? embed_image(ctx, p, cfg, g->prior_image, emb)
                                      : kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
    if (s != KD_OK) kd_err_prefix(&ctx->err, "prior image");
    for (int r = 1; s == KD_OK && r < rows; r++) memcpy(emb + (size_t)r * E, emb, (size_t)E * sizeof(float));
    if (s == KD_OK) {
        kd_rng_randn(rng, noise, (size_t)rows * E);
        s = kd_sched_add_noise(p->prior_sched, emb, noise, (size_t)rows * E, kd_sched_timesteps(p->prior_sched)[*start],
                               x, &ctx->err);
    }
    free(emb);
    free(noise);
    free(cfg);
    return s;
}

kd_status kd_pipe_prior(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, float *image_embeds,
                        float *negative_embeds) {
    KD_TRY(kd_pipe_load_prior_stage(ctx, p));
    int N = g->num_images, has_neg = g->negative_prompt != NULL, cfg = g->prior_guidance_scale > 1.0f;
    int rows = has_neg ? 2 * N : N, E = kd_prior_embed_dim(p->prior), L = kd_prior_text_len(p->prior);
    int batch = cfg ? 2 * rows : rows;
    const char **texts = malloc((size_t)batch * sizeof *texts);
    prior_loop lp = {rows, E, L, cfg, g->prior_guidance_scale, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    text_batch tb = {0};
    kd_status s = KD_OK;
    if (!texts) return kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
    /* CFG order is [uncond ; cond]; cond rows are [prompt ×N (; negative ×N)] */
    for (int r = 0; r < rows; r++) {
        const char *cond = r < N ? g->prompt : g->negative_prompt;
        if (cfg) {
            texts[r] = has_neg ? g->negative_prompt : "";
            texts[rows + r] = cond;
        } else {
            texts[r] = cond;
        }
    }
    s = encode_texts(ctx, p, texts, batch, &tb);
    if (s == KD_OK) {
        lp.x = malloc((size_t)rows * E * sizeof(float));
        lp.x_in = malloc((size_t)batch * E * sizeof(float));
        lp.pred = malloc((size_t)batch * E * sizeof(float));
        lp.ts = malloc((size_t)batch * sizeof(float));
        if (!lp.x || !lp.x_in || !lp.pred || !lp.ts) s = kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
    }
    if (s == KD_OK) s = kd_sched_set_timesteps(p->prior_sched, g->prior_steps, &ctx->err);
    int start = 0;
    if (s == KD_OK && g->prior_image) {
        s = init_from_image(ctx, p, g, rng, lp.x, rows, &start);
    } else if (s == KD_OK) {
        kd_rng_randn(rng, lp.x, (size_t)rows * E); /* prepare_latents; init_noise_sigma = 1 */
        float sigma = kd_sched_init_noise_sigma(p->prior_sched);
        for (size_t k = 0; k < (size_t)rows * E; k++) lp.x[k] *= sigma;
    }
    if (s == KD_OK) {
        lp.embeds = tb.embeds;
        lp.hidden = tb.hidden;
        lp.mask = tb.mask;
        lp.L = tb.len;
        s = denoise(ctx, p, g, rng, &lp, start);
    }
    if (s == KD_OK) {
        kd_prior_post_process(p->prior, lp.x, rows);
        memcpy(image_embeds, lp.x, (size_t)N * E * sizeof(float));
        if (has_neg)
            memcpy(negative_embeds, lp.x + (size_t)N * E, (size_t)N * E * sizeof(float));
        else
            s = zero_embeds(ctx, p, N, negative_embeds);
    }
    free(texts);
    free(lp.x);
    free(lp.x_in);
    free(lp.pred);
    free(lp.ts);
    text_batch_free(&tb);
    return s;
}

static char *processor_config(const kd_pipeline *p) {
    size_t n = strlen(p->prior_dir) + 64;
    char *cfg = malloc(n);
    if (cfg) snprintf(cfg, n, "%s/image_processor/preprocessor_config.json", p->prior_dir);
    return cfg;
}

/* CLIP embedding of a user image: the folder's CLIPImageProcessor preprocessing (Pillow path, as
 * the pinned reference runs it) + the image encoder. */
static kd_status embed_image(kd_ctx *ctx, kd_pipeline *p, const char *cfg, const kd_image *img, float *out) {
    return kd_clip_vision_embed_image(ctx, p->image_encoder, cfg, img, out);
}

/* KandinskyV22PriorPipeline.interpolate: image_embeds = Σ w_i · e_i where a text item runs the
 * prior (prompt = item, negative prompt = the prior negative prompt, same generator, in item
 * order) and an image item is CLIP-embedded (repeated per output image); then the negative
 * embedding comes from one more prior run with the prompt "" (its negative output: the
 * zero-image embedding, or the negative prompt's embedding when one is given). */
kd_status kd_pipe_mix(kd_ctx *ctx, kd_pipeline *p, const kd_gen_params *g, kd_rng *rng, float *image_embeds,
                      float *negative_embeds) {
    KD_TRY(kd_pipe_load_prior_stage(ctx, p));
    int N = g->num_images, E = kd_prior_embed_dim(p->prior);
    size_t ne = (size_t)N * E;
    float *e = malloc(ne * sizeof(float)), *scratch = malloc(ne * sizeof(float));
    kd_status s = e && scratch ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "mix: out of memory");
    for (size_t k = 0; s == KD_OK && k < ne; k++) image_embeds[k] = 0.0f;
    char *cfg = s == KD_OK ? processor_config(p) : NULL;
    for (int i = 0; s == KD_OK && i < g->n_mix; i++) {
        const kd_mix_item *it = &g->mix[i];
        if (it->text) {
            kd_gen_params one = *g;
            one.prompt = it->text;
            one.n_mix = 0;
            one.prior_image = NULL;
            s = kd_pipe_prior(ctx, p, &one, rng, e, scratch);
        } else {
            s = embed_image(ctx, p, cfg, it->image, e);
            for (int b = 1; s == KD_OK && b < N; b++) memcpy(e + (size_t)b * E, e, (size_t)E * sizeof(float));
        }
        if (s != KD_OK) {
            kd_err_prefix(&ctx->err, "mix item %d", i);
            break;
        }
        for (size_t k = 0; k < ne; k++) image_embeds[k] += e[k] * it->weight;
    }
    if (s == KD_OK) { /* out_zero = self("", negative_prompt=negative_prior_prompt) */
        kd_gen_params zero = *g;
        zero.prompt = "";
        zero.n_mix = 0;
        zero.prior_image = NULL;
        s = kd_pipe_prior(ctx, p, &zero, rng, scratch, negative_embeds);
    }
    free(cfg);
    free(e);
    free(scratch);
    return s;
}
