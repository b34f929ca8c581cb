/* CLIP text tower with projection (transformers CLIPTextModelWithProjection): the prompt encoder
 * of both Kandinsky priors (ViT-L/14 for 2.1, ViT-bigG/14 for 2.2). Spec §3.7.
 *   x = token_embedding[ids] + position_embedding[0..L)
 *   L × pre-LN layers with a causal mask → final_layer_norm = last_hidden_state
 *   text_embeds = text_projection(last_hidden_state[EOS position])   (no bias, not normalised)
 * The EOS position is argmax(ids) when eos_token_id == 2 (the legacy configs of the published
 * checkpoints, where EOS 49407 is the largest id) and the first eos_token_id otherwise, as
 * transformers does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ctx.h"
#include "models/clip_config.h"

struct kd_clip_text {
    kd_clip_config c;
    kd_tensor token_embedding;    /* [vocab, W] */
    float *position_embedding;    /* [max_positions, W] f32 copy */
    kd_tf_layer *layers;
    kd_norm_layer final_ln;
    kd_linear_layer projection;   /* W → P, no bias */
    kd_weights *w;
    kd_arena arena;
};

int kd_clip_text_hidden_size(const kd_clip_text *m) { return (int)m->c.hidden; }
int kd_clip_text_embed_dim(const kd_clip_text *m) { return (int)m->c.projection_dim; }
int kd_clip_text_max_len(const kd_clip_text *m) { return (int)m->c.max_positions; }

static kd_status load_weights(kd_clip_text *m, kd_err *e) {
    const kd_clip_config *c = &m->c;
    kd_bind b = {.name = "text_model.embeddings.token_embedding.weight", .dst = &m->token_embedding, .ndim = 2,
                 .shape = {c->vocab, c->hidden}};
    KD_TRY(kd_weights_bind(m->w, NULL, &b, 1, e));
    int64_t ps[2] = {c->max_positions, c->hidden};
    KD_TRY(kd_weights_f32(m->w, "text_model.embeddings.position_embedding.weight", 2, ps, &m->position_embedding, e));
    m->layers = calloc((size_t)c->layers + 1, sizeof *m->layers);
    if (!m->layers) return kd_errf(e, KD_ERR_OOM, "clip text: out of memory");
    char buf[KD_NAME_MAX];
    for (int64_t i = 0; i < c->layers; i++)
        KD_TRY(kd_tf_layer_load(m->w, kd_namef(buf, "text_model.encoder.layers.%lld", (long long)i), &kd_tf_names_clip,
                                c->hidden, c->intermediate, (int)c->heads, c->eps, c->act, &m->layers[i], e));
    KD_TRY(kd_layer_norm_layer_load(m->w, "text_model.final_layer_norm", c->hidden, c->eps, &m->final_ln, e));
    return kd_linear_layer_load(m->w, "text_projection", c->hidden, c->projection_dim, 0, &m->projection, e);
}

void kd_clip_text_free(kd_clip_text *m) {
    if (!m) return;
    free(m->layers);
    kd_weights_close(m->w);
    kd_arena_free(&m->arena);
    free(m);
}

kd_status kd_clip_text_load(kd_ctx *ctx, const char *path, kd_clip_text **out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!path || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "clip text: NULL path or output");
    *out = NULL;
    kd_err *e = &ctx->err;
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
    kd_config cfg;
    KD_TRY(kd_config_load(cfg_path, &cfg, e));
    kd_clip_text *m = calloc(1, sizeof *m);
    if (!m) {
        kd_config_free(&cfg);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "clip text: out of memory");
    }
    kd_arena_init(&m->arena, 0);
    kd_status s = kd_clip_config_read(&cfg, "text_config", 1, &m->c, e);
    kd_config_free(&cfg);
    if (s != KD_OK) kd_err_prefix(e, "%s", cfg_path);
    if (s == KD_OK) s = kd_weights_open(path, &m->w, e);
    if (s == KD_OK) s = load_weights(m, e);
    if (s != KD_OK) {
        kd_clip_text_free(m);
        return s;
    }
    *out = m;
    return KD_OK;
}

static int64_t eos_position(const kd_clip_text *m, const int32_t *ids, int64_t L) {
    int64_t best = 0;
    if (m->c.eos_token_id == 2) {
        for (int64_t i = 1; i < L; i++)
            if (ids[i] > ids[best]) best = i; /* first maximum, like torch.argmax */
        return best;
    }
    for (int64_t i = 0; i < L; i++)
        if (ids[i] == m->c.eos_token_id) return i;
    return 0; /* no EOS: transformers then also takes position 0 (argmax of an all-false mask) */
}

static kd_status forward_impl(kd_clip_text *m, kd_backend *be, const int32_t *ids, int64_t B, int64_t L,
                              float *text_embeds, float *last_hidden, kd_err *e) {
    int64_t W = m->c.hidden;
    kd_arena *a = &m->arena;
    float *x = kd_arena_floats(a, (size_t)(B * L * W), e), *row = x ? kd_arena_floats(a, (size_t)W, e) : NULL;
    float *pooled = row ? kd_arena_floats(a, (size_t)(B * W), e) : NULL;
    if (!pooled) return KD_ERR_OOM;
    size_t esz = kd_dtype_size(m->token_embedding.dtype);
    for (int64_t t = 0; t < B * L; t++) {
        kd_convert_to_f32(row, (const char *)m->token_embedding.data + (size_t)ids[t] * (size_t)W * esz,
                          m->token_embedding.dtype, (size_t)W);
        const float *pos = m->position_embedding + (t % L) * W;
        for (int64_t i = 0; i < W; i++) x[t * W + i] = row[i] + pos[i];
    }
    kd_tf_mask causal = {.causal = 1};
    for (int64_t i = 0; i < m->c.layers; i++) KD_TRY(kd_tf_layer_forward(be, a, &m->layers[i], x, B, L, &causal, e));
    KD_TRY(kd_layer_norm(be, x, x, B * L, W, m->final_ln.eps, m->final_ln.weight, m->final_ln.bias, e));
    if (last_hidden) memcpy(last_hidden, x, (size_t)(B * L * W) * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        memcpy(pooled + b * W, x + (b * L + eos_position(m, ids + b * L, L)) * W, (size_t)W * sizeof(float));
    return kd_linear_layer_forward(be, &m->projection, text_embeds, pooled, B, e);
}

kd_status kd_clip_text_forward(kd_ctx *ctx, kd_clip_text *m, const int32_t *ids, int batch, int seq_len,
                               float *text_embeds, float *last_hidden) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!m || !ids || !text_embeds) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "clip text: NULL argument");
    if (batch < 1 || seq_len < 1 || seq_len > m->c.max_positions)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "clip text: batch %d × %d tokens (1..%lld tokens)", batch, seq_len,
                           (long long)m->c.max_positions);
    for (int64_t i = 0; i < (int64_t)batch * seq_len; i++)
        if (ids[i] < 0 || ids[i] >= m->c.vocab)
            return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "clip text: token id %d at position %lld is outside the vocabulary of %lld",
                               ids[i], (long long)i, (long long)m->c.vocab);
    kd_status s = forward_impl(m, &ctx->be, ids, batch, seq_len, text_embeds, last_hidden, &ctx->err);
    kd_arena_reset(&m->arena);
    if (s != KD_OK) kd_err_prefix(&ctx->err, "clip text");
    return s;
}
