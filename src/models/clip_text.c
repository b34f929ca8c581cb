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

#include "models/clip_config.h"
#include "models/clip_text.h"
#include "models/model.h"

struct kd_clip_text {
    kd_model_base base;
    kd_clip_config c;
    kd_tensor token_embedding;    /* [vocab, W] */
    float *position_embedding;    /* [max_positions, W] f32 copy */
    kd_tf_layer *layers;          /* W wide, intermediate_size feed-forward */
    kd_norm_layer final_ln;       /* LayerNorm(W) */
    kd_linear_layer projection;   /* text_projection: [P, W], no bias */
};

int kd_clip_text_hidden_size(const kd_clip_text *m) { return (int)m->c.hidden; }
int kd_clip_text_embed_dim(const kd_clip_text *m) { return (int)m->c.projection_dim; }
int kd_clip_text_max_len(const kd_clip_text *m) { return (int)m->c.max_positions; }

static kd_status load_weights(kd_clip_text *m, kd_err *e) {
    const kd_clip_config *c = &m->c;
    kd_bind b = {.name = "text_model.embeddings.token_embedding.weight", .dst = &m->token_embedding, .ndim = 2,
                 .shape = {c->vocab, c->hidden}};
    KD_TRY(kd_weights_bind(m->base.w, NULL, &b, 1, e));
    int64_t ps[2] = {c->max_positions, c->hidden};
    KD_TRY(kd_weights_f32(m->base.w, "text_model.embeddings.position_embedding.weight", 2, ps, &m->position_embedding, e));
    m->layers = calloc((size_t)c->layers + 1, sizeof *m->layers);
    if (!m->layers) return kd_errf(e, KD_ERR_OOM, "clip text: out of memory");
    char buf[KD_NAME_MAX];
    for (int64_t i = 0; i < c->layers; i++)
        KD_TRY(kd_tf_layer_load(m->base.w, kd_namef(buf, "text_model.encoder.layers.%lld", (long long)i), &kd_tf_names_clip,
                                c->hidden, c->intermediate, (int)c->heads, c->eps, c->act, &m->layers[i], e));
    KD_TRY(kd_layer_norm_layer_load(m->base.w, "text_model.final_layer_norm", c->hidden, c->eps, &m->final_ln, e));
    return kd_linear_layer_load(m->base.w, "text_projection", c->hidden, c->projection_dim, 0, &m->projection, e);
}

static void free_layers(void *model) { free(((kd_clip_text *)model)->layers); }
static kd_status read_config(void *model, const kd_config *cfg, kd_err *e) {
    return kd_clip_config_read(cfg, "text_config", 1, &((kd_clip_text *)model)->c, e);
}
static kd_status load_weights_any(void *model, kd_err *e) { return load_weights(model, e); }

static const kd_model_kind clip_text_kind = {"clip text", sizeof(kd_clip_text), read_config, load_weights_any,
                                             free_layers};

void kd_clip_text_free(kd_clip_text *m) { kd_model_free(m, &clip_text_kind); }

kd_status kd_clip_text_load(kd_ctx *ctx, const char *path, kd_clip_text **out) {
    return kd_model_load(ctx, path, &clip_text_kind, (void **)out);
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

/* ids[B, L] (host) → text_embeds[B, P] and, if not NULL, last_hidden[B, L, W] (backend memory). */
static kd_status forward_impl(kd_clip_text *m, kd_backend *be, const int32_t *ids, int64_t B, int64_t L,
                              float *text_embeds, float *last_hidden, kd_err *e) {
    int64_t W = m->c.hidden;
    kd_arena *a = &m->base.arena;
    float *x = kd_arena_floats(a, (size_t)(B * L * W), e);
    float *pooled = x ? kd_arena_floats(a, (size_t)(B * W), e) : NULL;
    if (!pooled) return KD_ERR_OOM;
    KD_TRY(kd_embedding(be, x, &m->token_embedding, ids, B * L, e)); /* token_embedding[ids] + position_embedding */
    for (int64_t b = 0; b < B; b++) KD_TRY(kd_add(be, x + b * L * W, x + b * L * W, m->position_embedding, L * W, e));
    kd_tf_mask causal = {.causal = 1};
    for (int64_t i = 0; i < m->c.layers; i++) KD_TRY(kd_tf_layer_forward(be, a, &m->layers[i], x, B, L, &causal, e));
    KD_TRY(kd_layer_norm(be, x, x, B * L, W, m->final_ln.eps, m->final_ln.weight, m->final_ln.bias, e));
    if (last_hidden) KD_TRY(kd_copy(be, last_hidden, x, (size_t)(B * L * W) * sizeof(float), e));
    for (int64_t b = 0; b < B; b++)
        KD_TRY(kd_copy(be, pooled + b * W, x + (b * L + eos_position(m, ids + b * L, L)) * W, (size_t)W * sizeof(float),
                       e));
    return kd_linear_layer_forward(be, &m->projection, text_embeds, pooled, B, e);
}

static kd_status check_args(const kd_clip_text *m, const int32_t *ids, int batch, int seq_len, const float *text_embeds,
                            kd_err *e) {
    if (!m || !ids || !text_embeds) return kd_errf(e, KD_ERR_INVALID_ARG, "clip text: NULL argument");
    if (batch < 1 || seq_len < 1 || seq_len > m->c.max_positions)
        return kd_errf(e, KD_ERR_INVALID_ARG, "clip text: batch %d × %d tokens (1..%lld tokens)", batch, seq_len,
                       (long long)m->c.max_positions);
    for (int64_t i = 0; i < (int64_t)batch * seq_len; i++)
        if (ids[i] < 0 || ids[i] >= m->c.vocab)
            return kd_errf(e, KD_ERR_INVALID_ARG, "clip text: token id %d at position %lld is outside the vocabulary of %lld",
                           ids[i], (long long)i, (long long)m->c.vocab);
    return KD_OK;
}

kd_status kd_clip_text_forward_be(kd_clip_text *m, kd_backend *be, const int32_t *ids, int batch, int seq_len,
                                  float *text_embeds, float *last_hidden, kd_err *e) {
    KD_TRY(check_args(m, ids, batch, seq_len, text_embeds, e));
    kd_status s = forward_impl(m, be, ids, batch, seq_len, text_embeds, last_hidden, e);
    kd_arena_reset(&m->base.arena);
    if (s != KD_OK) kd_err_prefix(e, "clip text");
    return s;
}

kd_status kd_clip_text_forward(kd_ctx *ctx, kd_clip_text *m, const int32_t *ids, int batch, int seq_len,
                               float *text_embeds, float *last_hidden) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    kd_backend *be = &ctx->be;
    kd_err *e = &ctx->err;
    KD_TRY(check_args(m, ids, batch, seq_len, text_embeds, e));
    size_t eb = (size_t)batch * m->c.projection_dim * sizeof(float);
    size_t hb = (size_t)batch * seq_len * m->c.hidden * sizeof(float);
    void *y, *h = NULL;
    kd_status s = kd_model_stage_out(be, &m->base, text_embeds, eb, &y, e);
    if (s == KD_OK && last_hidden) s = kd_model_stage_out(be, &m->base, last_hidden, hb, &h, e);
    if (s == KD_OK) s = kd_clip_text_forward_be(m, be, ids, batch, seq_len, y, h, e);
    if (s == KD_OK) s = kd_model_finish_out(be, text_embeds, y, eb, e);
    if (s == KD_OK && last_hidden) s = kd_model_finish_out(be, last_hidden, h, hb, e);
    kd_model_end_call(&m->base);
    return s;
}
