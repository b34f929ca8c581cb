/* Diffusion prior: diffusers PriorTransformer as Kandinsky 2.1 / 2.2 configure it. Spec §2.3, §3.6.
 *   tokens = [proj(text hidden states) ×77, embedding_proj(text_embeds), time_embedding(t),
 *             proj_in(x_t), prd_embedding] + positional_embedding              [B, 81, D]
 *   mask   = −10000 on padded text keys + −10000 above the diagonal (causal), added
 *   20 × pre-LN blocks (BasicTransformerBlock, exact GELU) → norm_out → last token →
 *   proj_to_clip_embeddings = predicted x0 in the normalised space;
 *   post_process: x · clip_std + clip_mean. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "models/prior.h"
#include "nn/transformer.h"

struct kd_prior {
    kd_model_base base;
    int64_t E, D, heads, head_dim, layers, n_text, n_extra, seq;
    kd_linear_layer time_linear_1, time_linear_2; /* time_embedding: [D, D] each */
    kd_linear_layer proj_in;                      /* [D, E] (x_t) */
    kd_linear_layer embedding_proj;               /* [D, E] (text_embeds) */
    kd_linear_layer ehs_proj;                     /* encoder_hidden_states_proj: [D, E] */
    kd_linear_layer proj_out;                     /* proj_to_clip_embeddings: [E, D] */
    float *positional_embedding;                  /* [1, seq, D] */
    float *prd_embedding;                         /* [1, 1, D] */
    float *clip_mean, *clip_std;                  /* [1, E] */
    kd_tf_layer *blocks;                          /* transformer_blocks, D wide, 4·D feed-forward */
    kd_norm_layer norm_out;                       /* LayerNorm(D) */
};

int kd_prior_embed_dim(const kd_prior *p) { return (int)p->E; }
int kd_prior_text_len(const kd_prior *p) { return (int)p->n_text; }

static kd_status expect_default(const kd_config *cfg, const char *k, const char *want, kd_err *e) {
    const char *v;
    KD_TRY(kd_config_str_or(cfg, k, want, &v, e));
    if ((want == NULL) != (v == NULL) || (want && strcmp(v, want)))
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s = '%s' is not supported (Kandinsky priors use %s)", k, v ? v : "null",
                       want ? want : "null");
    return KD_OK;
}

static kd_status read_config(kd_prior *p, const kd_config *cfg, kd_err *e) {
    int64_t t, pd, ce;
    KD_TRY(kd_config_int_or(cfg, "num_attention_heads", 32, &p->heads, e));
    KD_TRY(kd_config_int_or(cfg, "attention_head_dim", 64, &p->head_dim, e));
    KD_TRY(kd_config_int_or(cfg, "num_layers", 20, &p->layers, e));
    KD_TRY(kd_config_int_or(cfg, "embedding_dim", 768, &p->E, e));
    KD_TRY(kd_config_int_or(cfg, "num_embeddings", 77, &p->n_text, e));
    KD_TRY(kd_config_int_or(cfg, "additional_embeddings", 4, &p->n_extra, e));
    KD_TRY(kd_config_int_or(cfg, "time_embed_dim", -1, &t, e));
    KD_TRY(kd_config_int_or(cfg, "embedding_proj_dim", -1, &pd, e));
    KD_TRY(kd_config_int_or(cfg, "clip_embed_dim", -1, &ce, e));
    KD_TRY(expect_default(cfg, "time_embed_act_fn", "silu", e));
    KD_TRY(expect_default(cfg, "norm_in_type", NULL, e));
    KD_TRY(expect_default(cfg, "embedding_proj_norm_type", NULL, e));
    KD_TRY(expect_default(cfg, "encoder_hid_proj_type", "linear", e));
    KD_TRY(expect_default(cfg, "added_emb_type", "prd", e));
    p->D = p->heads * p->head_dim;
    if (p->heads < 1 || p->head_dim < 1 || p->D > (1 << 16) || p->layers < 0 || p->layers > 1024 || p->E < 1 ||
        p->E > (1 << 16) || p->n_text < 1 || p->n_text > 4096 || p->n_extra != 4)
        return kd_errf(e, KD_ERR_FORMAT, "implausible prior sizes (heads %lld × %lld, layers %lld, embedding_dim %lld, "
                                         "num_embeddings %lld, additional_embeddings %lld)",
                       (long long)p->heads, (long long)p->head_dim, (long long)p->layers, (long long)p->E,
                       (long long)p->n_text, (long long)p->n_extra);
    if ((t >= 0 && t != p->D) || (pd >= 0 && pd != p->E) || (ce >= 0 && ce != p->E))
        return kd_errf(e, KD_ERR_UNSUPPORTED, "time_embed_dim / embedding_proj_dim / clip_embed_dim other than the defaults");
    p->seq = p->n_text + p->n_extra;
    return KD_OK;
}

static kd_status load_weights(kd_prior *p, kd_err *e) {
    kd_weights *w = p->base.w;
    int64_t D = p->D, E = p->E;
    KD_TRY(kd_linear_layer_load(w, "time_embedding.linear_1", D, D, 1, &p->time_linear_1, e));
    KD_TRY(kd_linear_layer_load(w, "time_embedding.linear_2", D, D, 1, &p->time_linear_2, e));
    KD_TRY(kd_linear_layer_load(w, "proj_in", E, D, 1, &p->proj_in, e));
    KD_TRY(kd_linear_layer_load(w, "embedding_proj", E, D, 1, &p->embedding_proj, e));
    KD_TRY(kd_linear_layer_load(w, "encoder_hidden_states_proj", E, D, 1, &p->ehs_proj, e));
    int64_t pos[3] = {1, p->seq, D}, prd[3] = {1, 1, D}, cm[2] = {1, E};
    KD_TRY(kd_weights_f32(w, "positional_embedding", 3, pos, &p->positional_embedding, e));
    KD_TRY(kd_weights_f32(w, "prd_embedding", 3, prd, &p->prd_embedding, e));
    KD_TRY(kd_weights_f32(w, "clip_mean", 2, cm, &p->clip_mean, e));
    KD_TRY(kd_weights_f32(w, "clip_std", 2, cm, &p->clip_std, e));
    p->blocks = calloc((size_t)p->layers + 1, sizeof *p->blocks);
    if (!p->blocks) return kd_errf(e, KD_ERR_OOM, "prior: out of memory");
    char buf[KD_NAME_MAX];
    for (int64_t i = 0; i < p->layers; i++)
        KD_TRY(kd_tf_layer_load(w, kd_namef(buf, "transformer_blocks.%lld", (long long)i), &kd_tf_names_prior, D, 4 * D,
                                (int)p->heads, 1e-5f, KD_ACT_GELU, &p->blocks[i], e));
    KD_TRY(kd_layer_norm_layer_load(w, "norm_out", D, 1e-5f, &p->norm_out, e));
    return kd_linear_layer_load(w, "proj_to_clip_embeddings", D, E, 1, &p->proj_out, e);
}

static void free_layers(void *model) { free(((kd_prior *)model)->blocks); }
static kd_status read_config_any(void *model, const kd_config *cfg, kd_err *e) { return read_config(model, cfg, e); }
static kd_status load_weights_any(void *model, kd_err *e) { return load_weights(model, e); }

static const kd_model_kind prior_kind = {"prior", sizeof(kd_prior), read_config_any, load_weights_any, free_layers};

void kd_prior_free(kd_prior *p) { kd_model_free(p, &prior_kind); }

kd_status kd_prior_load(kd_ctx *ctx, const char *path, kd_prior **out) {
    return kd_model_load(ctx, path, &prior_kind, (void **)out);
}

/* Additive mask [B, S, S] for Nt text tokens (S = Nt + 4): padding of text keys and the causal
 * part, both −10000 as diffusers. */
static void build_mask(const int32_t *text_mask, int64_t B, int64_t Nt, int64_t S, float *mask) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < S; i++)
            for (int64_t j = 0; j < S; j++) {
                float v = j > i ? -10000.0f : 0.0f;
                if (j < Nt && !text_mask[b * Nt + j]) v += -10000.0f;
                mask[(b * S + i) * S + j] = v;
            }
}

/* out[B, E] (predicted x0) from x_t[B, E], proj_embedding[B, E], ehs[B, Nt, E] (backend memory),
 * timesteps[B] and text_mask[B, Nt] (host; NULL = no mask). Nt ≤ n_text text tokens: the first Nt
 * positions of the full layout, then the four extra tokens at their usual positions
 * n_text .. n_text + 3. */
static kd_status forward_impl(kd_prior *p, kd_backend *be, const float *x_t, const float *timesteps,
                              const float *proj_embedding, const float *ehs, const int32_t *text_mask, int64_t B,
                              int64_t Nt, float *out, kd_err *e) {
    int64_t D = p->D, S = Nt + p->n_extra;
    kd_arena *a = &p->base.arena;
    float *tok = kd_arena_floats(a, (size_t)(B * S * D), e);
    float *sin_emb = tok ? kd_arena_floats(a, (size_t)(B * D), e) : NULL;
    float *h = sin_emb ? kd_arena_floats(a, (size_t)(B * D), e) : NULL;
    float *mask = h && text_mask ? kd_arena_floats(a, (size_t)(B * S * S), e) : NULL;
    float *last = h ? kd_arena_floats(a, (size_t)(B * D), e) : NULL;
    if (!last || (text_mask && !mask)) return KD_ERR_OOM;
    for (int64_t b = 0; b < B; b++) { /* text tokens, then the four extra tokens */
        float *tb = tok + b * S * D;
        KD_TRY(kd_linear_layer_forward(be, &p->ehs_proj, tb, ehs + b * Nt * p->E, Nt, e));
        KD_TRY(kd_linear_layer_forward(be, &p->embedding_proj, tb + Nt * D, proj_embedding + b * p->E, 1, e));
        KD_TRY(kd_linear_layer_forward(be, &p->proj_in, tb + (Nt + 2) * D, x_t + b * p->E, 1, e));
        KD_TRY(kd_copy(be, tb + (Nt + 3) * D, p->prd_embedding, (size_t)D * sizeof(float), e));
    }
    KD_TRY(kd_timestep_embedding(be, sin_emb, timesteps, B, (int)D, 1, 0.0f, 10000.0f, e));
    KD_TRY(kd_linear_layer_forward(be, &p->time_linear_1, h, sin_emb, B, e));
    KD_TRY(kd_silu(be, h, h, B * D, e));
    for (int64_t b = 0; b < B; b++)
        KD_TRY(kd_linear_layer_forward(be, &p->time_linear_2, tok + (b * S + Nt + 1) * D, h + b * D, 1, e));
    const float *pos_extra = p->positional_embedding + p->n_text * D;
    for (int64_t b = 0; b < B; b++) {
        float *tb = tok + b * S * D;
        KD_TRY(kd_add(be, tb, tb, p->positional_embedding, Nt * D, e));
        KD_TRY(kd_add(be, tb + Nt * D, tb + Nt * D, pos_extra, p->n_extra * D, e));
    }

    kd_tf_mask m = {0};
    if (text_mask) { /* built on the host, then moved to the backend */
        float *hm = kd_model_host_scratch(&p->base, (size_t)(B * S * S) * sizeof(float), e);
        if (!hm) return KD_ERR_OOM;
        build_mask(text_mask, B, Nt, S, hm);
        KD_TRY(kd_upload(be, mask, hm, (size_t)(B * S * S) * sizeof(float), e));
        m = (kd_tf_mask){.add = mask, .bstride = S * S, .qstride = S};
    }
    for (int64_t i = 0; i < p->layers; i++) KD_TRY(kd_tf_layer_forward(be, a, &p->blocks[i], tok, B, S, &m, e));
    for (int64_t b = 0; b < B; b++)
        KD_TRY(kd_layer_norm(be, last + b * D, tok + (b * S + S - 1) * D, 1, D, p->norm_out.eps, p->norm_out.weight,
                             p->norm_out.bias, e));
    return kd_linear_layer_forward(be, &p->proj_out, out, last, B, e);
}

static kd_status check_args(const kd_prior *p, const float *x_t, const float *timesteps, const float *proj_embedding,
                            const float *ehs, int text_len, int batch, const float *out, kd_err *e) {
    if (!p || !x_t || !timesteps || !proj_embedding || !ehs || !out)
        return kd_errf(e, KD_ERR_INVALID_ARG, "prior: NULL argument");
    if (batch < 1 || batch > 4096) return kd_errf(e, KD_ERR_INVALID_ARG, "prior: batch %d", batch);
    if (text_len < 1 || text_len > p->n_text)
        return kd_errf(e, KD_ERR_INVALID_ARG, "prior: %d text tokens (1..%lld)", text_len, (long long)p->n_text);
    return KD_OK;
}

kd_status kd_prior_forward_be(kd_prior *p, kd_backend *be, const float *x_t, const float *timesteps,
                              const float *proj_embedding, const float *encoder_hidden_states,
                              const int32_t *attention_mask, int text_len, int batch, float *out, kd_err *e) {
    KD_TRY(check_args(p, x_t, timesteps, proj_embedding, encoder_hidden_states, text_len, batch, out, e));
    kd_status s = forward_impl(p, be, x_t, timesteps, proj_embedding, encoder_hidden_states, attention_mask, batch,
                               text_len, out, e);
    kd_arena_reset(&p->base.arena);
    if (s != KD_OK) kd_err_prefix(e, "prior");
    return s;
}

kd_status kd_prior_forward(kd_ctx *ctx, kd_prior *p, const float *x_t, const float *timesteps,
                           const float *proj_embedding, const float *encoder_hidden_states,
                           const int32_t *attention_mask, int batch, float *out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!p) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "prior: NULL argument");
    return kd_prior_forward_text(ctx, p, x_t, timesteps, proj_embedding, encoder_hidden_states, attention_mask,
                                 (int)p->n_text, batch, out);
}

kd_status kd_prior_forward_text(kd_ctx *ctx, kd_prior *p, const float *x_t, const float *timesteps,
                                const float *proj_embedding, const float *encoder_hidden_states,
                                const int32_t *attention_mask, int text_len, int batch, float *out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    kd_backend *be = &ctx->be;
    kd_err *e = &ctx->err;
    KD_TRY(check_args(p, x_t, timesteps, proj_embedding, encoder_hidden_states, text_len, batch, out, e));
    size_t row = (size_t)p->E * sizeof(float);
    const void *x, *pe, *ehs;
    void *y;
    kd_status s = kd_model_stage_in(be, &p->base, x_t, batch * row, &x, e);
    if (s == KD_OK) s = kd_model_stage_in(be, &p->base, proj_embedding, batch * row, &pe, e);
    if (s == KD_OK) s = kd_model_stage_in(be, &p->base, encoder_hidden_states, (size_t)batch * text_len * row, &ehs, e);
    if (s == KD_OK) s = kd_model_stage_out(be, &p->base, out, batch * row, &y, e);
    if (s == KD_OK) s = kd_prior_forward_be(p, be, x, timesteps, pe, ehs, attention_mask, text_len, batch, y, e);
    if (s == KD_OK) s = kd_model_finish_out(be, out, y, batch * row, e);
    kd_model_end_call(&p->base);
    return s;
}

void kd_prior_post_process(const kd_prior *p, float *x, int batch) {
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < p->E; i++) x[b * p->E + i] = x[b * p->E + i] * p->clip_std[i] + p->clip_mean[i];
}
