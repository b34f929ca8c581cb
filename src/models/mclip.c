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

#include "models/mclip.h"
#include "models/model.h"
#include "nn/transformer.h"

struct kd_mclip {
    kd_model_base base;
    int64_t vocab, hidden, layers, heads, ff, max_pos, pad_id, out_dim;
    float eps;
    kd_act act;
    kd_tensor word;          /* word_embeddings: [vocab, H] */
    float *position;         /* position_embeddings: [max_pos, H] */
    kd_tensor position_t;    /* the same as an F32 tensor view (for kd_embedding) */
    float *token_type;       /* token_type_embeddings: [type_vocab, H]; row 0 is used */
    kd_norm_layer emb_ln;    /* embeddings.LayerNorm(H) */
    kd_tf_layer *blocks;     /* encoder.layer: post-LN BERT layers */
    kd_linear_layer proj;    /* LinearTransformation: [out_dim, H] */
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
    /* Kandinsky 2.0's text_encoder1/config.json is a plain XLM-R config: the original code builds
     * LinearTransformation(1024, 640) itself, so the width then comes from the checkpoint */
    KD_TRY(kd_config_int_or(cfg, "numDims", -1, &m->out_dim, e));
    KD_TRY(kd_config_float_or(cfg, "layer_norm_eps", 1e-5, &eps, e));
    KD_TRY(kd_config_str_or(cfg, "hidden_act", "gelu", &act, e));
    m->eps = (float)eps;
    if (kd_act_parse(act, &m->act) != 0)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "hidden_act '%s' is not supported (gelu, quick_gelu)", act);
    int64_t big = (int64_t)1 << 20;
    if (m->vocab < 1 || m->vocab > ((int64_t)1 << 24) || m->hidden < 1 || m->hidden > big || m->layers < 0 ||
        m->layers > 1024 || m->heads < 1 || m->hidden % m->heads || m->ff < 1 || m->ff > big || m->max_pos < 3 ||
        m->max_pos > (1 << 16) || m->pad_id < 0 || m->pad_id >= m->vocab || m->out_dim == 0 || m->out_dim < -1 || m->out_dim > big)
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
    KD_TRY(kd_weights_bind(m->base.w, NULL, &b, 1, e));
    int64_t ps[2] = {m->max_pos, H}, ts[2] = {-1, H};
    KD_TRY(kd_weights_f32(m->base.w, "transformer.embeddings.position_embeddings.weight", 2, ps, &m->position, e));
    m->position_t = (kd_tensor){.dtype = KD_F32, .ndim = 2, .shape = {m->max_pos, H}, .data = m->position};
    KD_TRY(kd_weights_f32(m->base.w, "transformer.embeddings.token_type_embeddings.weight", 2, ts, &m->token_type, e));
    KD_TRY(kd_layer_norm_layer_load(m->base.w, "transformer.embeddings.LayerNorm", H, m->eps, &m->emb_ln, e));
    m->blocks = calloc((size_t)m->layers + 1, sizeof *m->blocks);
    if (!m->blocks) return kd_errf(e, KD_ERR_OOM, "mclip: out of memory");
    char buf[KD_NAME_MAX];
    for (int64_t i = 0; i < m->layers; i++)
        KD_TRY(kd_tf_layer_load(m->base.w, kd_namef(buf, "transformer.encoder.layer.%lld", (long long)i), &kd_tf_names_bert,
                                H, m->ff, (int)m->heads, m->eps, m->act, &m->blocks[i], e));
    if (m->out_dim < 0) {
        const kd_st_tensor *t = kd_weights_get(m->base.w, "LinearTransformation.weight");
        if (!t || t->t.ndim != 2 || t->t.shape[0] < 1 || t->t.shape[0] > ((int64_t)1 << 20))
            return kd_errf(e, KD_ERR_NOT_FOUND,
                           "config.json has no numDims and the weights no 2-D LinearTransformation.weight to take it from");
        m->out_dim = t->t.shape[0];
    }
    return kd_linear_layer_load(m->base.w, "LinearTransformation", H, m->out_dim, 1, &m->proj, e);
}

static void free_layers(void *model) { free(((kd_mclip *)model)->blocks); }
static kd_status read_config_any(void *model, const kd_config *cfg, kd_err *e) { return read_config(model, cfg, e); }
static kd_status load_weights_any(void *model, kd_err *e) { return load_weights(model, e); }

static const kd_model_kind mclip_kind = {"mclip", sizeof(kd_mclip), read_config_any, load_weights_any, free_layers};

void kd_mclip_free(kd_mclip *m) { kd_model_free(m, &mclip_kind); }

kd_status kd_mclip_load(kd_ctx *ctx, const char *path, kd_mclip **out) {
    return kd_model_load(ctx, path, &mclip_kind, (void **)out);
}

/* ids, mask [B, L] (host) → text_embeds [B, out_dim] and, if not NULL, last_hidden [B, L, H]
 * (backend memory). */
static kd_status forward_impl(kd_mclip *m, kd_backend *be, const int32_t *ids, const int32_t *mask, int64_t B,
                              int64_t L, float *text_embeds, float *last_hidden, kd_err *e) {
    int64_t H = m->hidden;
    kd_arena *a = &m->base.arena;
    float *x = kd_arena_floats(a, (size_t)(B * L * H), e), *pe = x ? kd_arena_floats(a, (size_t)(B * L * H), e) : NULL;
    float *keymask = pe ? kd_arena_floats(a, (size_t)(B * L), e) : NULL;
    float *pooled = keymask ? kd_arena_floats(a, (size_t)(B * H), e) : NULL;
    /* host: RoBERTa position ids (count real, non-pad tokens) and the additive key mask */
    int32_t *pos = pooled ? kd_model_host_scratch(&m->base, (size_t)(B * L) * (sizeof(int32_t) + sizeof(float)), e) : NULL;
    if (!pos) return KD_ERR_OOM;
    float *hmask = (float *)(pos + B * L);
    for (int64_t b = 0; b < B; b++) {
        int64_t run = 0;
        for (int64_t t = 0; t < L; t++) {
            int32_t id = ids[b * L + t];
            pos[b * L + t] = (int32_t)(id != m->pad_id ? ++run + m->pad_id : m->pad_id);
            hmask[b * L + t] = mask[b * L + t] ? 0.0f : -INFINITY;
        }
    }
    /* torch adds (word + token_type) + position: keep that order */
    KD_TRY(kd_embedding(be, x, &m->word, ids, B * L, e));
    KD_TRY(kd_add_row_vector(be, x, m->token_type, B * L, H, e));
    KD_TRY(kd_embedding(be, pe, &m->position_t, pos, B * L, e));
    KD_TRY(kd_add(be, x, x, pe, B * L * H, e));
    KD_TRY(kd_upload(be, keymask, hmask, (size_t)(B * L) * sizeof(float), e));
    KD_TRY(kd_layer_norm(be, x, x, B * L, H, m->emb_ln.eps, m->emb_ln.weight, m->emb_ln.bias, e));
    kd_tf_mask km = {.add = keymask, .bstride = L, .qstride = 0};
    for (int64_t i = 0; i < m->layers; i++) KD_TRY(kd_tf_layer_forward(be, a, &m->blocks[i], x, B, L, &km, e));
    if (last_hidden) KD_TRY(kd_copy(be, last_hidden, x, (size_t)(B * L * H) * sizeof(float), e));
    KD_TRY(kd_masked_mean(be, pooled, x, mask, B, L, H, e)); /* (x·mask).sum / mask.sum in float32 */
    return kd_linear_layer_forward(be, &m->proj, text_embeds, pooled, B, e);
}

static kd_status check_args(const kd_mclip *m, const int32_t *ids, const int32_t *mask, int batch, int seq_len,
                            const float *text_embeds, kd_err *e) {
    if (!m || !ids || !mask || !text_embeds) return kd_errf(e, KD_ERR_INVALID_ARG, "mclip: NULL argument");
    if (batch < 1 || seq_len < 1 || seq_len + m->pad_id + 1 > m->max_pos)
        return kd_errf(e, KD_ERR_INVALID_ARG, "mclip: batch %d × %d tokens (at most %lld tokens)", batch, seq_len,
                       (long long)(m->max_pos - m->pad_id - 1));
    for (int64_t b = 0; b < batch; b++) {
        int any = 0;
        for (int64_t t = 0; t < seq_len; t++) {
            int32_t id = ids[b * seq_len + t];
            if (id < 0 || id >= m->vocab)
                return kd_errf(e, KD_ERR_INVALID_ARG, "mclip: token id %d outside the vocabulary of %lld", id,
                               (long long)m->vocab);
            any |= mask[b * seq_len + t] != 0;
        }
        if (!any) return kd_errf(e, KD_ERR_INVALID_ARG, "mclip: sequence %lld has no real token in its mask", (long long)b);
    }
    return KD_OK;
}

kd_status kd_mclip_forward_be(kd_mclip *m, kd_backend *be, const int32_t *ids, const int32_t *mask, int batch,
                              int seq_len, float *text_embeds, float *last_hidden, kd_err *e) {
    KD_TRY(check_args(m, ids, mask, batch, seq_len, text_embeds, e));
    kd_status s = forward_impl(m, be, ids, mask, batch, seq_len, text_embeds, last_hidden, e);
    kd_arena_reset(&m->base.arena);
    if (s != KD_OK) kd_err_prefix(e, "mclip");
    return s;
}

kd_status kd_mclip_forward(kd_ctx *ctx, kd_mclip *m, const int32_t *ids, const int32_t *mask, int batch,
                           int seq_len, float *text_embeds, float *last_hidden) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    kd_backend *be = &ctx->be;
    kd_err *e = &ctx->err;
    KD_TRY(check_args(m, ids, mask, batch, seq_len, text_embeds, e));
    size_t eb = (size_t)batch * m->out_dim * sizeof(float), hb = (size_t)batch * seq_len * m->hidden * sizeof(float);
    void *y, *h = NULL;
    kd_status s = kd_model_stage_out(be, &m->base, text_embeds, eb, &y, e);
    if (s == KD_OK && last_hidden) s = kd_model_stage_out(be, &m->base, last_hidden, hb, &h, e);
    if (s == KD_OK) s = kd_mclip_forward_be(m, be, ids, mask, batch, seq_len, y, h, e);
    if (s == KD_OK) s = kd_model_finish_out(be, text_embeds, y, eb, e);
    if (s == KD_OK && last_hidden) s = kd_model_finish_out(be, last_hidden, h, hb, e);
    kd_model_end_call(&m->base);
    return s;
}
