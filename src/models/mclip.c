/* MultilingualCLIP (Kandinsky 2.1's decoder text encoder): XLM-RoBERTa + mean pooling + linear.
 * Spec §2.4, §3.7.
 *   pos  = cumsum(ids != pad) · (ids != pad) + pad            RoBERTa positions (first real → 2)
 *   x    = LN(word[ids] + position[pos] + token_type[0])
 *   L × post-LN BERT layers, additive key mask (mask == 0 → −∞)
 *   last_hidden_state = x                                    [B, L, H] (pads included)
 *   text_embeds = LinearTransformation(Σ x·mask / Σ mask)    [B, numDims]
 * The XLM-R pooler weights are in the checkpoint but unused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ctx.h"
#include "io/config.h"
#include "nn/transformer.h"

struct kd_mclip {
    int64_t vocab, hidden, layers, heads, ff, max_pos, pad_id, out_dim;
    float eps;
    kd_act act;
    kd_tensor word;          /* [vocab, H] */
    float *position;         /* [max_pos, H] */
    float *token_type;       /* [type_vocab, H]: row 0 */
    kd_norm_layer emb_ln;
    kd_tf_layer *blocks;
    kd_linear_layer proj;    /* LinearTransformation H → out_dim */
    kd_weights *w;
    kd_arena arena;
};

int kd_mclip_hidden_size(const kd_mclip *m) { return (int)m->hidden; }
int kd_mclip_embed_dim(const kd_mclip *m) { return (int)m->out_dim; }

static kd_status read_config(kd_mclip *m, const kd_config *cfg, kd_err *e) {
    double eps;
    const char *act;
    int64_t tdim;
    KD_TRY(kd_config_int(cfg, "vocab_size", &m->vocab, e));
    KD_TRY(kd_config_int(cfg, "hidden_size", &m->hidden, e));
    KD_TRY(kd_config_int(cfg, "num_hidden_layers", &m->layers, e));
    KD_TRY(kd_config_int(cfg, "num_attention_heads", &m->heads, e));
    KD_TRY(kd_config_int(cfg, "intermediate_size", &m->ff, e));
    KD_TRY(kd_config_int_or(cfg, "max_position_embeddings", 514, &m->max_pos, e));
    KD_TRY(kd_config_int_or(cfg, "pad_token_id", 1, &m->pad_id, e));
    KD_TRY(kd_config_int_or(cfg, "transformerDimensions", m->hidden, &tdim, e));
    KD_TRY(kd_config_int_or(cfg, "numDims", 768, &m->out_dim, e));
    KD_TRY(kd_config_float_or(cfg, "layer_norm_eps", 1e-5, &eps, e));
    KD_TRY(kd_config_str_or(cfg, "hidden_act", "gelu", &act, e));
    m->eps = (float)eps;
    if (kd_act_parse(act, &m->act) != 0)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "hidden_act '%s' is not supported (gelu, quick_gelu)", act);
    int64_t big = (int64_t)1 << 20;
    if (m->vocab < 1 || m->vocab > ((int64_t)1 << 24) || m->hidden < 1 || m->hidden > big || m->layers < 0 ||
        m->layers > 1024 || m->heads < 1 || m->hidden % m->heads || m->ff < 1 || m->ff > big || m->max_pos < 3 ||
        m->max_pos > (1 << 16) || m->pad_id < 0 || m->pad_id >= m->vocab || m->out_dim < 1 || m->out_dim > big)
        return kd_errf(e, KD_ERR_FORMAT, "implausible sizes (vocab %lld, hidden %lld, heads %lld, layers %lld)",
                       (long long)m->vocab, (long long)m->hidden, (long long)m->heads, (long long)m->layers);
    if (tdim != m->hidden)
        return kd_errf(e, KD_ERR_FORMAT, "transformerDimensions %lld != hidden_size %lld", (long long)tdim,
                       (long long)m->hidden);
    return KD_OK;
}

static kd_status load_weights(kd_mclip *m, kd_err *e) {
    int64_t H = m->hidden;
    kd_bind b = {.name = "transformer.embeddings.word_embeddings.weight", .dst = &m->word, .ndim = 2,
                 .shape = {m->vocab, H}};
    KD_TRY(kd_weights_bind(m->w, NULL, &b, 1, e));
    int64_t ps[2] = {m->max_pos, H}, ts[2] = {-1, H};
    KD_TRY(kd_weights_f32(m->w, "transformer.embeddings.position_embeddings.weight", 2, ps, &m->position, e));
    KD_TRY(kd_weights_f32(m->w, "transformer.embeddings.token_type_embeddings.weight", 2, ts, &m->token_type, e));
    KD_TRY(kd_layer_norm_layer_load(m->w, "transformer.embeddings.LayerNorm", H, m->eps, &m->emb_ln, e));
    m->blocks = calloc((size_t)m->layers + 1, sizeof *m->blocks);
    if (!m->blocks) return kd_errf(e, KD_ERR_OOM, "mclip: out of memory");
    char buf[KD_NAME_MAX];
    for (int64_t i = 0; i < m->layers; i++)
        KD_TRY(kd_tf_layer_load(m->w, kd_namef(buf, "transformer.encoder.layer.%lld", (long long)i), &kd_tf_names_bert,
                                H, m->ff, (int)m->heads, m->eps, m->act, &m->blocks[i], e));
    return kd_linear_layer_load(m->w, "LinearTransformation", H, m->out_dim, 1, &m->proj, e);
}

void kd_mclip_free(kd_mclip *m) {
    if (!m) return;
    free(m->blocks);
    kd_weights_close(m->w);
    kd_arena_free(&m->arena);
    free(m);
}

kd_status kd_mclip_load(kd_ctx *ctx, const char *path, kd_mclip **out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!path || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "mclip: NULL path or output");
    *out = NULL;
    kd_err *e = &ctx->err;
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
    kd_config cfg;
    KD_TRY(kd_config_load(cfg_path, &cfg, e));
    kd_mclip *m = calloc(1, sizeof *m);
    if (!m) {
        kd_config_free(&cfg);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "mclip: out of memory");
    }
    kd_arena_init(&m->arena, 0);
    kd_status s = read_config(m, &cfg, e);
    kd_config_free(&cfg);
    if (s != KD_OK) kd_err_prefix(e, "%s", cfg_path);
    if (s == KD_OK) s = kd_weights_open(path, &m->w, e);
    if (s == KD_OK) s = load_weights(m, e);
    if (s != KD_OK) {
        kd_mclip_free(m);
        return s;
    }
    *out = m;
    return KD_OK;
}

static kd_status forward_impl(kd_mclip *m, kd_backend *be, const int32_t *ids, const int32_t *mask, int64_t B,
                              int64_t L, float *text_embeds, float *last_hidden, kd_err *e) {
    int64_t H = m->hidden;
    kd_arena *a = &m->arena;
    float *x = kd_arena_floats(a, (size_t)(B * L * H), e), *row = x ? kd_arena_floats(a, (size_t)H, e) : NULL;
    float *keymask = row ? kd_arena_floats(a, (size_t)(B * L), e) : NULL;
    float *pooled = keymask ? kd_arena_floats(a, (size_t)(B * H), e) : NULL;
    if (!pooled) return KD_ERR_OOM;
    size_t esz = kd_dtype_size(m->word.dtype);
    for (int64_t b = 0; b < B; b++) {
        int64_t run = 0; /* RoBERTa position ids count real (non-pad) tokens */
        for (int64_t t = 0; t < L; t++) {
            int32_t id = ids[b * L + t];
            int64_t pos = id != m->pad_id ? ++run + m->pad_id : m->pad_id;
            kd_convert_to_f32(row, (const char *)m->word.data + (size_t)id * (size_t)H * esz, m->word.dtype, (size_t)H);
            float *xt = x + (b * L + t) * H;
            for (int64_t i = 0; i < H; i++) xt[i] = row[i] + m->token_type[i] + m->position[pos * H + i];
            keymask[b * L + t] = mask[b * L + t] ? 0.0f : -INFINITY;
        }
    }
    /* torch adds (word + token_type) + position: keep that order */
    KD_TRY(kd_layer_norm(be, x, x, B * L, H, m->emb_ln.eps, m->emb_ln.weight, m->emb_ln.bias, e));
    kd_tf_mask km = {.add = keymask, .bstride = L, .qstride = 0};
    for (int64_t i = 0; i < m->layers; i++) KD_TRY(kd_tf_layer_forward(be, a, &m->blocks[i], x, B, L, &km, e));
    if (last_hidden) memcpy(last_hidden, x, (size_t)(B * L * H) * sizeof(float));
    for (int64_t b = 0; b < B; b++) { /* mean over real tokens, as (x·mask).sum / mask.sum in float32 */
        float n = 0;
        for (int64_t i = 0; i < H; i++) pooled[b * H + i] = 0.0f;
        for (int64_t t = 0; t < L; t++) {
            float w = (float)mask[b * L + t];
            n += w;
            for (int64_t i = 0; i < H; i++) pooled[b * H + i] += x[(b * L + t) * H + i] * w;
        }
        for (int64_t i = 0; i < H; i++) pooled[b * H + i] /= n;
    }
    return kd_linear_layer_forward(be, &m->proj, text_embeds, pooled, B, e);
}

kd_status kd_mclip_forward(kd_ctx *ctx, kd_mclip *m, const int32_t *ids, const int32_t *mask, int batch,
                           int seq_len, float *text_embeds, float *last_hidden) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!m || !ids || !mask || !text_embeds) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "mclip: NULL argument");
    if (batch < 1 || seq_len < 1 || seq_len + m->pad_id + 1 > m->max_pos)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "mclip: batch %d × %d tokens (at most %lld tokens)", batch, seq_len,
                           (long long)(m->max_pos - m->pad_id - 1));
    for (int64_t b = 0; b < batch; b++) {
        int any = 0;
        for (int64_t t = 0; t < seq_len; t++) {
            int32_t id = ids[b * seq_len + t];
            if (id < 0 || id >= m->vocab)
                return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "mclip: token id %d outside the vocabulary of %lld", id,
                                   (long long)m->vocab);
            any |= mask[b * seq_len + t] != 0;
        }
        if (!any) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "mclip: sequence %lld has no real token in its mask", (long long)b);
    }
    kd_status s = forward_impl(m, &ctx->be, ids, mask, batch, seq_len, text_embeds, last_hidden, &ctx->err);
    kd_arena_reset(&m->arena);
    if (s != KD_OK) kd_err_prefix(&ctx->err, "mclip");
    return s;
}
