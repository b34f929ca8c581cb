/* CLIP vision tower with projection (transformers CLIPVisionModelWithProjection): embeds user
 * images for mixing and the all-zero "negative" image of the priors. Spec §3.7.
 *   tokens = [class_embedding ; patch_embedding(pixels)] + position_embedding   (conv k = s = patch)
 *   pre_layrnorm → L × pre-LN layers (no mask) → post_layernorm(token 0) → visual_projection */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/clip_config.h"
#include "models/clip_vision.h"
#include "models/model.h"

struct kd_clip_vision {
    kd_model_base base;
    kd_clip_config c;
    kd_conv2d_layer patch;      /* patch_embedding: [W, C, p, p], no bias */
    float *class_embedding;     /* [W] */
    float *position_embedding;  /* [n_patches + 1, W] */
    kd_norm_layer pre_ln, post_ln; /* pre_layrnorm, post_layernorm: LayerNorm(W) */
    kd_tf_layer *layers;
    kd_linear_layer projection; /* visual_projection: [P, W], no bias */
};

int kd_clip_vision_image_size(const kd_clip_vision *m) { return (int)m->c.image_size; }
int kd_clip_vision_embed_dim(const kd_clip_vision *m) { return (int)m->c.projection_dim; }

static int64_t n_tokens(const kd_clip_config *c) {
    int64_t g = c->image_size / c->patch_size;
    return g * g + 1;
}

static kd_status load_weights(kd_clip_vision *m, kd_err *e) {
    const kd_clip_config *c = &m->c;
    int64_t W = c->hidden, T = n_tokens(c);
    KD_TRY(kd_conv2d_layer_load(m->base.w, "vision_model.embeddings.patch_embedding", c->num_channels, W, (int)c->patch_size,
                                (int)c->patch_size, 0, 0, &m->patch, e));
    KD_TRY(kd_weights_f32(m->base.w, "vision_model.embeddings.class_embedding", 1, &W, &m->class_embedding, e));
    int64_t ps[2] = {T, W};
    KD_TRY(kd_weights_f32(m->base.w, "vision_model.embeddings.position_embedding.weight", 2, ps, &m->position_embedding, e));
    KD_TRY(kd_layer_norm_layer_load(m->base.w, "vision_model.pre_layrnorm", W, c->eps, &m->pre_ln, e));
    m->layers = calloc((size_t)c->layers + 1, sizeof *m->layers);
    if (!m->layers) return kd_errf(e, KD_ERR_OOM, "clip vision: out of memory");
    char buf[KD_NAME_MAX];
    for (int64_t i = 0; i < c->layers; i++)
        KD_TRY(kd_tf_layer_load(m->base.w, kd_namef(buf, "vision_model.encoder.layers.%lld", (long long)i), &kd_tf_names_clip,
                                W, c->intermediate, (int)c->heads, c->eps, c->act, &m->layers[i], e));
    KD_TRY(kd_layer_norm_layer_load(m->base.w, "vision_model.post_layernorm", W, c->eps, &m->post_ln, e));
    return kd_linear_layer_load(m->base.w, "visual_projection", W, c->projection_dim, 0, &m->projection, e);
}

static void free_layers(void *model) { free(((kd_clip_vision *)model)->layers); }
static kd_status read_config(void *model, const kd_config *cfg, kd_err *e) {
    return kd_clip_config_read(cfg, "vision_config", 0, &((kd_clip_vision *)model)->c, e);
}
static kd_status load_weights_any(void *model, kd_err *e) { return load_weights(model, e); }

static const kd_model_kind clip_vision_kind = {"clip vision", sizeof(kd_clip_vision), read_config, load_weights_any,
                                               free_layers};

void kd_clip_vision_free(kd_clip_vision *m) { kd_model_free(m, &clip_vision_kind); }

kd_status kd_clip_vision_load(kd_ctx *ctx, const char *path, kd_clip_vision **out) {
    return kd_model_load(ctx, path, &clip_vision_kind, (void **)out);
}

/* pixels[B, 3, S, S] → embeds[B, P] (backend memory). */
static kd_status forward_impl(kd_clip_vision *m, kd_backend *be, const float *pixels, int64_t B, float *embeds,
                              kd_err *e) {
    const kd_clip_config *c = &m->c;
    int64_t W = c->hidden, T = n_tokens(c), G = c->image_size / c->patch_size, S = c->image_size;
    kd_arena *a = &m->base.arena;
    float *p = kd_arena_floats(a, (size_t)(B * W * G * G), e), *x = p ? kd_arena_floats(a, (size_t)(B * T * W), e) : NULL;
    float *pooled = x ? kd_arena_floats(a, (size_t)(B * W), e) : NULL;
    if (!pooled) return KD_ERR_OOM;
    KD_TRY(kd_conv2d_layer_forward(be, &m->patch, p, pixels, B, S, S, e)); /* [B, W, G, G] */
    for (int64_t b = 0; b < B; b++) {
        float *xb = x + b * T * W;
        KD_TRY(kd_copy(be, xb, m->class_embedding, (size_t)W * sizeof(float), e));
        KD_TRY(kd_transpose_last2(be, xb + W, p + b * W * G * G, 1, W, G * G, e)); /* [W, G·G] → [G·G, W] */
        KD_TRY(kd_add(be, xb, xb, m->position_embedding, T * W, e));
    }
    KD_TRY(kd_layer_norm(be, x, x, B * T, W, m->pre_ln.eps, m->pre_ln.weight, m->pre_ln.bias, e));
    for (int64_t i = 0; i < c->layers; i++) KD_TRY(kd_tf_layer_forward(be, a, &m->layers[i], x, B, T, NULL, e));
    for (int64_t b = 0; b < B; b++)
        KD_TRY(kd_layer_norm(be, pooled + b * W, x + b * T * W, 1, W, m->post_ln.eps, m->post_ln.weight, m->post_ln.bias, e));
    return kd_linear_layer_forward(be, &m->projection, embeds, pooled, B, e);
}

kd_status kd_clip_vision_forward_be(kd_clip_vision *m, kd_backend *be, const float *pixels, int batch,
                                    float *image_embeds, kd_err *e) {
    if (!m || !pixels || !image_embeds) return kd_errf(e, KD_ERR_INVALID_ARG, "clip vision: NULL argument");
    if (batch < 1 || batch > 4096) return kd_errf(e, KD_ERR_INVALID_ARG, "clip vision: batch %d", batch);
    kd_status s = forward_impl(m, be, pixels, batch, image_embeds, e);
    kd_arena_reset(&m->base.arena);
    if (s != KD_OK) kd_err_prefix(e, "clip vision");
    return s;
}

kd_status kd_clip_vision_forward(kd_ctx *ctx, kd_clip_vision *m, const float *pixels, int batch, float *image_embeds) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    kd_backend *be = &ctx->be;
    kd_err *e = &ctx->err;
    if (!m || !pixels || !image_embeds) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "clip vision: NULL argument");
    if (batch < 1 || batch > 4096) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "clip vision: batch %d", batch);
    int64_t S = m->c.image_size;
    size_t in_bytes = (size_t)batch * m->c.num_channels * S * S * sizeof(float), out_bytes = (size_t)batch * m->c.projection_dim * sizeof(float);
    const void *x;
    void *y;
    kd_status s = kd_model_stage_in(be, &m->base, pixels, in_bytes, &x, e);
    if (s == KD_OK) s = kd_model_stage_out(be, &m->base, image_embeds, out_bytes, &y, e);
    if (s == KD_OK) s = kd_clip_vision_forward_be(m, be, x, batch, y, e);
    if (s == KD_OK) s = kd_model_finish_out(be, image_embeds, y, out_bytes, e);
    kd_model_end_call(&m->base);
    return s;
}
