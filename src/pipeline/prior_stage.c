/* Prior stage (KandinskyV22PriorPipeline.__call__, KandinskyPriorPipeline for 2.1). Spec §4.2.
 *
 *   prompts  = [prompt] (+ [negative_prompt] when one is given: its prior output becomes the
 *              negative image embedding), each repeated num_images times      → n_rows
 *   uncond   = "" for every row, or the negative prompt for every row when given
 *   CFG batch = [uncond rows ; prompt rows] when guidance > 1
 *   x ~ randn[n_rows, E]; for t in UnCLIP timesteps: x0 = prior(...), guided, x = step(x0)
 *   image_embeds = x · clip_std + clip_mean
 *   negative = the negative prompt's rows, or the zero-image embedding image_encoder(zeros)
 *
 * The models run on backend memory: the text encoder's outputs stay there and feed every prior
 * step; per step only x_t goes up and the prediction comes down (the scheduler works on the host). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "models/clip_text.h"
#include "models/clip_vision.h"
#include "models/prior.h"
#include "pipeline/pipeline.h"

int kd_prior_stage_embed_dim(const kd_prior_stage *ps) { return kd_prior_embed_dim(ps->prior); }

/* Only the first `len` token positions are encoded and given to the prior: len is the longest
 * row's real tokens (BOS .. EOS), everything after is padding in every row. Exact: CLIP's text
 * attention is causal, so earlier positions never see later ones, and the prior masks padded keys
 * with −10000 (softmax weight exactly 0 in float32) and outputs only its last token, so no result
 * reads a padded position. A short prompt runs ~10 positions instead of 77 (docs/NOTES.md). */
typedef struct text_batch {
    int32_t *ids, *mask; /* host [rows, len] */
    float *embeds;       /* backend [rows, E] */
    float *hidden;       /* backend [rows, len, E] */
    int len;
} text_batch;

static void text_batch_free(kd_backend *be, text_batch *t) {
    free(t->ids);
    free(t->mask);
    kd_be_free(be, t->embeds);
    kd_be_free(be, t->hidden);
}

/* Tokenises texts[rows] and runs the text encoder on them. */
static kd_status encode_texts(kd_ctx *ctx, const kd_prior_stage *ps, const char *const *texts, int rows,
                              text_batch *out) {
    kd_backend *be = &ctx->be;
    int L = kd_prior_text_len(ps->prior), E = kd_prior_embed_dim(ps->prior);
    if (kd_clip_text_hidden_size(ps->text_encoder) != E || kd_clip_text_embed_dim(ps->text_encoder) != E)
        return kd_ctx_fail(ctx, KD_ERR_SHAPE, "prior: text encoder width %d / projection %d do not match the prior's %d",
                           kd_clip_text_hidden_size(ps->text_encoder), kd_clip_text_embed_dim(ps->text_encoder), E);
    out->ids = malloc((size_t)rows * L * sizeof(int32_t));
    out->mask = malloc((size_t)rows * L * sizeof(int32_t));
    if (!out->ids || !out->mask) return kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
    out->len = 1;
    for (int r = 0; r < rows; r++) {
        int n_real;
        kd_status s = kd_clip_tokenize(ps->tokenizer, texts[r], strlen(texts[r]), L, out->ids + (size_t)r * L,
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
    KD_TRY(kd_be_alloc(be, (size_t)rows * E * sizeof(float), (void **)&out->embeds, &ctx->err));
    KD_TRY(kd_be_alloc(be, (size_t)rows * n * E * sizeof(float), (void **)&out->hidden, &ctx->err));
    return kd_clip_text_forward_be(ps->text_encoder, be, out->ids, rows, n, out->embeds, out->hidden, &ctx->err);
}

/* The zero-image embedding, repeated over rows; computed once per pipeline (the vision encoder on
 * zeros costs as much as several prior steps with ViT-bigG). */
static kd_status zero_embeds(kd_ctx *ctx, kd_prior_stage *ps, int rows, float *out) {
    int S = kd_clip_vision_image_size(ps->image_encoder), E = kd_clip_vision_embed_dim(ps->image_encoder);
    if (E != kd_prior_embed_dim(ps->prior))
        return kd_ctx_fail(ctx, KD_ERR_SHAPE, "prior: image encoder embeds %d values, the prior %d", E,
                           kd_prior_embed_dim(ps->prior));
    if (!ps->zero_embed || ps->zero_embed_dim != E) {
        float *zeros = calloc((size_t)3 * S * S, sizeof(float)), *z = malloc((size_t)E * sizeof(float));
        kd_status s = zeros && z ? kd_clip_vision_forward(ctx, ps->image_encoder, zeros, 1, z)
                                 : kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
        free(zeros);
        if (s != KD_OK) {
            free(z);
            return s;
        }
        free(ps->zero_embed);
        ps->zero_embed = z;
        ps->zero_embed_dim = E;
    }
    for (int r = 0; r < rows; r++) memcpy(out + (size_t)r * E, ps->zero_embed, (size_t)E * sizeof(float));
    return KD_OK;
}

typedef struct prior_loop {
    int rows, E, cfg;
    float guidance;
    float *x, *x_host_in, *pred, *ts; /* host: x[rows, E]; x_host_in / pred [batch, E]; ts[batch] */
    float *x_in, *out;                /* backend: [batch, E] */
    const text_batch *text;
} prior_loop;

static kd_status denoise(kd_ctx *ctx, const kd_prior_stage *ps, const kd_prior_args *a, kd_rng *rng, prior_loop *lp,
                         int start) {
    kd_backend *be = &ctx->be;
    kd_sampler *s = ps->sampler;
    int n = kd_sampler_num_timesteps(s), batch = lp->cfg ? 2 * lp->rows : lp->rows;
    size_t row_bytes = (size_t)lp->rows * lp->E * sizeof(float);
    const double *ts = kd_sampler_timesteps(s);
    kd_sched_shape shape = {lp->rows, lp->E, 1};
    for (int i = start; i < n; i++) {
        memcpy(lp->x_host_in, lp->x, row_bytes);
        kd_sampler_scale_model_input(s, i, lp->x_host_in, (size_t)lp->rows * lp->E);
        if (lp->cfg) memcpy((char *)lp->x_host_in + row_bytes, lp->x_host_in, row_bytes);
        for (int b = 0; b < batch; b++) lp->ts[b] = (float)ts[i];
        KD_TRY(kd_upload(be, lp->x_in, lp->x_host_in, (size_t)batch * lp->E * sizeof(float), &ctx->err));
        KD_TRY(kd_prior_forward_be(ps->prior, be, lp->x_in, lp->ts, lp->text->embeds, lp->text->hidden, lp->text->mask,
                                   lp->text->len, batch, lp->out, &ctx->err));
        KD_TRY(kd_download(be, lp->pred, lp->out, (size_t)batch * lp->E * sizeof(float), &ctx->err));
        if (lp->cfg) { /* pred = uncond + g · (text - uncond) */
            float *u = lp->pred, *c = lp->pred + (size_t)lp->rows * lp->E;
            for (size_t k = 0; k < (size_t)lp->rows * lp->E; k++) u[k] = u[k] + lp->guidance * (c[k] - u[k]);
        }
        kd_status st = kd_sampler_step(s, i, lp->pred, lp->E, lp->x, &shape, rng, lp->x, &ctx->err);
        if (st != KD_OK) return kd_err_prefix(&ctx->err, "prior sampler %s", kd_sampler_name(s));
        KD_TRY(kd_progress_report(&a->progress, &ctx->err, "prior", i + 1 - start, n - start));
    }
    return KD_OK;
}

/* CLIP embedding of a user image: the folder's CLIPImageProcessor preprocessing (Pillow path, as
 * the pinned reference runs it) + the image encoder. */
static kd_status embed_image(kd_ctx *ctx, const kd_prior_stage *ps, const kd_image *img, float *out) {
    return kd_clip_vision_embed_image(ctx, ps->image_encoder, ps->image_processor_config, img, out);
}

/* KandinskyV22PriorEmb2EmbPipeline's start: the CLIP embedding of init_image, as is (diffusers
 * does not normalise it by clip_mean/std), repeated over the rows and noised to the first
 * timestep that strength leaves (one randn over all rows). */
static kd_status init_from_image(kd_ctx *ctx, const kd_prior_stage *ps, const kd_prior_args *a, kd_rng *rng, float *x,
                                 int rows, int *start) {
    int E = kd_prior_embed_dim(ps->prior), count;
    if (!(a->strength >= 0.0f && a->strength <= 1.0f))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "prior strength %g is outside [0, 1]", (double)a->strength);
    KD_TRY(kd_sampler_img2img_start(ps->sampler, a->strength, start, &count, &ctx->err));
    if (count < 1)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "prior strength %g leaves no step out of %d", (double)a->strength,
                           a->steps);
    float *emb = malloc((size_t)rows * E * sizeof(float)), *noise = malloc((size_t)rows * E * sizeof(float));
    kd_status s = emb && noise ? embed_image(ctx, ps, a->init_image, emb) : kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
    if (s != KD_OK) kd_err_prefix(&ctx->err, "prior image");
    for (int r = 1; s == KD_OK && r < rows; r++) memcpy(emb + (size_t)r * E, emb, (size_t)E * sizeof(float));
    if (s == KD_OK) {
        kd_rng_randn(rng, noise, (size_t)rows * E);
        s = kd_sampler_add_noise(ps->sampler, *start, emb, noise, (size_t)rows * E, x, &ctx->err);
    }
    free(emb);
    free(noise);
    return s;
}

static kd_status loop_alloc(kd_ctx *ctx, prior_loop *lp, int batch) {
    size_t eb = (size_t)batch * lp->E * sizeof(float);
    lp->x = malloc((size_t)lp->rows * lp->E * sizeof(float));
    lp->x_host_in = malloc(eb);
    lp->pred = malloc(eb);
    lp->ts = malloc((size_t)batch * sizeof(float));
    if (!lp->x || !lp->x_host_in || !lp->pred || !lp->ts) return kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
    KD_TRY(kd_be_mirror(&ctx->be, lp->x_host_in, eb, (void **)&lp->x_in, &ctx->err));
    return kd_be_mirror(&ctx->be, lp->pred, eb, (void **)&lp->out, &ctx->err);
}

static void loop_free(kd_backend *be, prior_loop *lp) {
    kd_be_mirror_free(be, lp->x_host_in, lp->x_in); /* before the host buffers they may stand for */
    kd_be_mirror_free(be, lp->pred, lp->out);
    free(lp->x);
    free(lp->x_host_in);
    free(lp->pred);
    free(lp->ts);
}

kd_status kd_prior_run(kd_ctx *ctx, kd_prior_stage *ps, const kd_prior_args *a, kd_rng *rng, float *image_embeds,
                       float *negative_embeds) {
    int N = a->num_images, has_neg = a->negative_prompt != NULL, cfg = a->guidance > 1.0f;
    int rows = has_neg ? 2 * N : N, E = kd_prior_embed_dim(ps->prior);
    int batch = cfg ? 2 * rows : rows;
    const char **texts = malloc((size_t)batch * sizeof *texts);
    prior_loop lp = {.rows = rows, .E = E, .cfg = cfg, .guidance = a->guidance};
    text_batch tb = {0};
    if (!texts) return kd_ctx_fail(ctx, KD_ERR_OOM, "prior: out of memory");
    /* CFG order is [uncond ; cond]; cond rows are [prompt ×N (; negative ×N)] */
    for (int r = 0; r < rows; r++) {
        const char *cond = r < N ? a->prompt : a->negative_prompt;
        if (cfg) {
            texts[r] = has_neg ? a->negative_prompt : "";
            texts[rows + r] = cond;
        } else {
            texts[r] = cond;
        }
    }
    kd_status s = encode_texts(ctx, ps, texts, batch, &tb);
    if (s == KD_OK) s = loop_alloc(ctx, &lp, batch);
    if (s == KD_OK) s = kd_sampler_set_timesteps(ps->sampler, a->steps, &ctx->err);
    int start = 0;
    if (s == KD_OK && a->init_image) {
        s = init_from_image(ctx, ps, a, rng, lp.x, rows, &start);
    } else if (s == KD_OK) {
        kd_rng_randn(rng, lp.x, (size_t)rows * E); /* prepare_latents; init_noise_sigma = 1 */
        float sigma = kd_sampler_init_noise_sigma(ps->sampler);
        for (size_t k = 0; k < (size_t)rows * E; k++) lp.x[k] *= sigma;
    }
    if (s == KD_OK) {
        lp.text = &tb;
        s = denoise(ctx, ps, a, rng, &lp, start);
    }
    if (s == KD_OK) {
        kd_prior_post_process(ps->prior, lp.x, rows);
        memcpy(image_embeds, lp.x, (size_t)N * E * sizeof(float));
        if (has_neg)
            memcpy(negative_embeds, lp.x + (size_t)N * E, (size_t)N * E * sizeof(float));
        else
            s = zero_embeds(ctx, ps, N, negative_embeds);
    }
    free(texts);
    loop_free(&ctx->be, &lp);
    text_batch_free(&ctx->be, &tb);
    return s;
}

/* KandinskyV22PriorPipeline.interpolate: image_embeds = Σ w_i · e_i where a text item runs the
 * prior (prompt = item, negative prompt = the prior negative prompt, same generator, in item
 * order) and an image item is CLIP-embedded (repeated per output image); then the negative
 * embedding comes from one more prior run with the prompt "" (its negative output: the
 * zero-image embedding, or the negative prompt's embedding when one is given). */
kd_status kd_prior_mix(kd_ctx *ctx, kd_prior_stage *ps, const kd_prior_args *base, const kd_mix_item *items, int n_items,
                       kd_rng *rng, float *image_embeds, float *negative_embeds) {
    int N = base->num_images, E = kd_prior_embed_dim(ps->prior);
    size_t ne = (size_t)N * E;
    float *e = malloc(ne * sizeof(float)), *scratch = malloc(ne * sizeof(float));
    kd_status s = e && scratch ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "mix: out of memory");
    for (size_t k = 0; s == KD_OK && k < ne; k++) image_embeds[k] = 0.0f;
    kd_prior_args one = *base;
    one.init_image = NULL;
    for (int i = 0; s == KD_OK && i < n_items; i++) {
        const kd_mix_item *it = &items[i];
        if (it->text) {
            one.prompt = it->text;
            s = kd_prior_run(ctx, ps, &one, rng, e, scratch);
        } else {
            s = embed_image(ctx, ps, it->image, e);
            for (int b = 1; s == KD_OK && b < N; b++) memcpy(e + (size_t)b * E, e, (size_t)E * sizeof(float));
        }
        if (s != KD_OK) {
            kd_err_prefix(&ctx->err, "mix item %d", i);
            break;
        }
        for (size_t k = 0; k < ne; k++) image_embeds[k] += e[k] * it->weight;
    }
    if (s == KD_OK) { /* out_zero = self("", negative_prompt=negative_prior_prompt) */
        one.prompt = "";
        s = kd_prior_run(ctx, ps, &one, rng, scratch, negative_embeds);
    }
    free(e);
    free(scratch);
    return s;
}
