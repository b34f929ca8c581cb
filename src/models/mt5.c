/* mT5 encoder: transformers' MT5EncoderModel (= T5EncoderModel), Kandinsky 2.0's second text
 * encoder. Spec §3.8; the definition is transformers' modeling_t5.py.
 *   x = shared[ids]                                      no scaling, no positions added
 *   bias[h, i, j] = relative_attention_bias[bucket(j − i), h]   (block 0's table, every layer)
 *   per block:  x = x + o(attn(RMS(x)))   q, k, v: d_model → heads·d_kv, o back; no biases,
 *                                         scores q·kᵀ NOT scaled, + bias + key mask (−∞)
 *               x = x + wo(act(wi_0(RMS(x))) · wi_1(RMS(x)))   gated-gelu: act = gelu_new (tanh)
 *   last_hidden_state = RMS(x; final_layer_norm)            [B, L, d_model] (pads included)
 * RMS(x) = x · rsqrt(mean(x²) + eps) · weight (T5LayerNorm). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/model.h"
#include "models/mt5.h"
#include "nn/layers.h"

typedef struct mt5_block {
    float *ln_attn;               /* layer.0.layer_norm.weight [D] */
    kd_linear_layer q, k, v, o;   /* layer.0.SelfAttention.{q,k,v} [inner, D], o [D, inner] */
    float *ln_ff;                 /* layer.1.layer_norm.weight [D] */
    kd_linear_layer wi_0, wi_1, wo; /* layer.1.DenseReluDense: wi_* [F, D] (wi for ungated), wo [D, F] */
} mt5_block;

struct kd_mt5 {
    kd_model_base base;
    int64_t vocab, d_model, d_kv, d_ff, layers, heads, buckets, max_distance;
    int gated;
    float eps;
    kd_tensor shared;   /* shared.weight [vocab, D] */
    float *rel_bias;    /* block 0's relative_attention_bias.weight [buckets, heads] */
    mt5_block *blocks;
    float *final_ln;    /* encoder.final_layer_norm.weight [D] */
};

int kd_mt5_hidden_size(const kd_mt5 *m) { return m ? (int)m->d_model : 0; }

int kd_t5_relative_bucket(int64_t rel, int bidirectional, int num_buckets, int max_distance) {
    int bucket = 0;
    int64_t n;
    if (bidirectional) {
        num_buckets /= 2;
        if (rel > 0) bucket += num_buckets;
        n = rel < 0 ? -rel : rel;
    } else {
        n = rel < 0 ? -rel : 0;
    }
    int max_exact = num_buckets / 2;
    if (n < max_exact) return bucket + (int)n;
    /* torch: log(n.float() / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact),
     * each step in float32 (the Python scalars are rounded to float first), truncated */
    float r = logf((float)n / (float)max_exact);
    r = r / (float)log((double)max_distance / max_exact);
    r = r * (float)(num_buckets - max_exact);
    int large = max_exact + (int)r;
    if (large > num_buckets - 1) large = num_buckets - 1;
    return bucket + large;
}

static kd_status read_config(kd_mt5 *m, const kd_config *cfg, kd_err *e) {
    double eps;
    const char *ff;
    KD_TRY(kd_config_int(cfg, "vocab_size", &m->vocab, e));
    KD_TRY(kd_config_int(cfg, "d_model", &m->d_model, e));
    KD_TRY(kd_config_int(cfg, "d_kv", &m->d_kv, e));
    KD_TRY(kd_config_int(cfg, "d_ff", &m->d_ff, e));
    KD_TRY(kd_config_int(cfg, "num_layers", &m->layers, e));
    KD_TRY(kd_config_int(cfg, "num_heads", &m->heads, e));
    KD_TRY(kd_config_int_or(cfg, "relative_attention_num_buckets", 32, &m->buckets, e));
    KD_TRY(kd_config_int_or(cfg, "relative_attention_max_distance", 128, &m->max_distance, e));
    KD_TRY(kd_config_float_or(cfg, "layer_norm_epsilon", 1e-6, &eps, e));
    KD_TRY(kd_config_str_or(cfg, "feed_forward_proj", "relu", &ff, e));
    m->eps = (float)eps;
    /* transformers maps "gated-gelu" to gelu_new; plain "gelu" would be the exact erf GELU, "relu"
     * T5 v1.0's ReLU: only mT5's own choice is implemented */
    if (strcmp(ff, "gated-gelu") != 0 && strcmp(ff, "gated-gelu_new") != 0)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "feed_forward_proj '%s' is not supported (mT5 uses gated-gelu)", ff);
    m->gated = 1;
    int64_t big = (int64_t)1 << 20;
    if (m->vocab < 1 || m->vocab > ((int64_t)1 << 24) || m->d_model < 1 || m->d_model > big || m->d_kv < 1 ||
        m->d_kv > 4096 || m->heads < 1 || m->heads > 1024 || m->d_ff < 1 || m->d_ff > big || m->layers < 1 ||
        m->layers > 1024 || m->buckets < 2 || m->buckets > 4096 || m->max_distance < 1 || m->max_distance > (1 << 20) ||
        !(eps > 0 && eps < 1))
        return kd_errf(e, KD_ERR_FORMAT,
                       "implausible sizes (vocab %lld, d_model %lld, d_kv %lld, heads %lld, d_ff %lld, layers %lld, "
                       "buckets %lld, max_distance %lld)",
                       (long long)m->vocab, (long long)m->d_model, (long long)m->d_kv, (long long)m->heads,
                       (long long)m->d_ff, (long long)m->layers, (long long)m->buckets, (long long)m->max_distance);
    return KD_OK;
}

static kd_status load_block(kd_mt5 *m, int64_t i, mt5_block *b, kd_err *e) {
    char pre[KD_NAME_MAX], buf[KD_NAME_MAX];
    int64_t D = m->d_model, I = m->heads * m->d_kv, F = m->d_ff, ds[1] = {D};
    kd_weights *w = m->base.w;
    kd_namef(pre, "encoder.block.%lld.layer.0", (long long)i);
    KD_TRY(kd_weights_f32(w, kd_name(buf, pre, "layer_norm.weight"), 1, ds, &b->ln_attn, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, pre, "SelfAttention.q"), D, I, 0, &b->q, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, pre, "SelfAttention.k"), D, I, 0, &b->k, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, pre, "SelfAttention.v"), D, I, 0, &b->v, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, pre, "SelfAttention.o"), I, D, 0, &b->o, e));
    kd_namef(pre, "encoder.block.%lld.layer.1", (long long)i);
    KD_TRY(kd_weights_f32(w, kd_name(buf, pre, "layer_norm.weight"), 1, ds, &b->ln_ff, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, pre, "DenseReluDense.wi_0"), D, F, 0, &b->wi_0, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, pre, "DenseReluDense.wi_1"), D, F, 0, &b->wi_1, e));
    return kd_linear_layer_load(w, kd_name(buf, pre, "DenseReluDense.wo"), F, D, 0, &b->wo, e);
}

static kd_status load_weights(kd_mt5 *m, kd_err *e) {
    int64_t D = m->d_model;
    kd_weights *w = m->base.w;
    /* MT5EncoderModel ties encoder.embed_tokens to shared; a file may hold either name or both */
    const char *emb = kd_weights_get(w, "shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
    kd_bind b = {.name = emb, .dst = &m->shared, .ndim = 2, .shape = {m->vocab, D}};
    KD_TRY(kd_weights_bind(w, NULL, &b, 1, e));
    int64_t rs[2] = {m->buckets, m->heads}, ds[1] = {D};
    KD_TRY(kd_weights_f32(w, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2, rs,
                          &m->rel_bias, e));
    m->blocks = calloc((size_t)m->layers, sizeof *m->blocks);
    if (!m->blocks) return kd_errf(e, KD_ERR_OOM, "mt5: out of memory");
    for (int64_t i = 0; i < m->layers; i++) KD_TRY(load_block(m, i, &m->blocks[i], e));
    return kd_weights_f32(w, "encoder.final_layer_norm.weight", 1, ds, &m->final_ln, e);
}

static void free_layers(void *model) { free(((kd_mt5 *)model)->blocks); }
static kd_status read_config_any(void *model, const kd_config *cfg, kd_err *e) { return read_config(model, cfg, e); }
static kd_status load_weights_any(void *model, kd_err *e) { return load_weights(model, e); }

static const kd_model_kind mt5_kind = {"mt5", sizeof(kd_mt5), read_config_any, load_weights_any, free_layers};

void kd_mt5_free(kd_mt5 *m) { kd_model_free(m, &mt5_kind); }

kd_status kd_mt5_load(kd_ctx *ctx, const char *path, kd_mt5 **out) {
    return kd_model_load(ctx, path, &mt5_kind, (void **)out);
}

/* host: bias[b, h, i, j] = rel_bias[bucket(j − i), h] + (mask[b, j] ? 0 : −∞) */
static void build_bias(const kd_mt5 *m, const int32_t *mask, int64_t B, int64_t L, float *bias) {
    int64_t H = m->heads;
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < L; j++) {
                int bk = kd_t5_relative_bucket(j - i, 1, (int)m->buckets, (int)m->max_distance);
                float v = m->rel_bias[bk * H + h];
                for (int64_t b = 0; b < B; b++)
                    bias[((b * H + h) * L + i) * L + j] = mask[b * L + j] ? v : -INFINITY;
            }
}

static kd_status block_forward(kd_mt5 *m, kd_backend *be, const mt5_block *b, float *x, int64_t B, int64_t L,
                               const float *bias, kd_err *e) {
    int64_t D = m->d_model, I = m->heads * m->d_kv, F = m->d_ff, T = B * L;
    kd_arena *a = &m->base.arena;
    kd_arena_mark mk = kd_arena_get_mark(a);
    float *h = kd_arena_floats(a, (size_t)(T * D), e);
    float *q = h ? kd_arena_floats(a, (size_t)(T * I), e) : NULL;
    float *k = q ? kd_arena_floats(a, (size_t)(T * I), e) : NULL;
    float *v = k ? kd_arena_floats(a, (size_t)(T * I), e) : NULL;
    float *att = v ? kd_arena_floats(a, (size_t)(T * I), e) : NULL;
    float *g = att ? kd_arena_floats(a, (size_t)(T * F), e) : NULL;
    float *u = g ? kd_arena_floats(a, (size_t)(T * F), e) : NULL;
    if (!u) return KD_ERR_OOM;

    KD_TRY(kd_rms_norm(be, h, x, T, D, m->eps, b->ln_attn, e));
    KD_TRY(kd_linear_layer_forward(be, &b->q, q, h, T, e));
    KD_TRY(kd_linear_layer_forward(be, &b->k, k, h, T, e));
    KD_TRY(kd_linear_layer_forward(be, &b->v, v, h, T, e));
    kd_attn_params p = {.batch = B, .heads = m->heads, .head_dim = m->d_kv, .q_len = L, .kv_len = L, .q = q,
                        .q_stride = I, .k = k, .v = v, .kv_stride = I, .scale = 1.0f, .mask = bias,
                        .mask_bstride = m->heads * L * L, .mask_hstride = L * L, .mask_qstride = L};
    KD_TRY(kd_attention(be, att, &p, e));
    KD_TRY(kd_linear_layer_forward(be, &b->o, h, att, T, e));
    KD_TRY(kd_add(be, x, x, h, T * D, e));

    KD_TRY(kd_rms_norm(be, h, x, T, D, m->eps, b->ln_ff, e));
    KD_TRY(kd_linear_layer_forward(be, &b->wi_0, g, h, T, e));
    KD_TRY(kd_gelu_tanh(be, g, g, T * F, e));
    KD_TRY(kd_linear_layer_forward(be, &b->wi_1, u, h, T, e));
    KD_TRY(kd_mul(be, g, g, u, T * F, e));
    KD_TRY(kd_linear_layer_forward(be, &b->wo, h, g, T, e));
    KD_TRY(kd_add(be, x, x, h, T * D, e));
    kd_arena_release(a, mk);
    return KD_OK;
}

static kd_status forward_impl(kd_mt5 *m, kd_backend *be, const int32_t *ids, const int32_t *mask, int64_t B,
                              int64_t L, float *last_hidden, kd_err *e) {
    int64_t D = m->d_model;
    size_t nb = (size_t)(B * m->heads * L * L);
    kd_arena *a = &m->base.arena;
    float *x = kd_arena_floats(a, (size_t)(B * L * D), e), *bias = x ? kd_arena_floats(a, nb, e) : NULL;
    float *hbias = bias ? kd_model_host_scratch(&m->base, nb * sizeof(float), e) : NULL;
    if (!hbias) return KD_ERR_OOM;
    build_bias(m, mask, B, L, hbias);
    KD_TRY(kd_upload(be, bias, hbias, nb * sizeof(float), e));
    KD_TRY(kd_embedding(be, x, &m->shared, ids, B * L, e));
    for (int64_t i = 0; i < m->layers; i++) KD_TRY(block_forward(m, be, &m->blocks[i], x, B, L, bias, e));
    return kd_rms_norm(be, last_hidden, x, B * L, D, m->eps, m->final_ln, e);
}

static kd_status check_args(const kd_mt5 *m, const int32_t *ids, const int32_t *mask, int batch, int seq_len,
                            const float *out, kd_err *e) {
    if (!m || !ids || !mask || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "mt5: NULL argument");
    if (batch < 1 || seq_len < 1 || seq_len > 4096 || (int64_t)batch * seq_len > (1 << 20))
        return kd_errf(e, KD_ERR_INVALID_ARG, "mt5: batch %d × %d tokens (1..4096 tokens)", batch, seq_len);
    for (int64_t b = 0; b < batch; b++) {
        int any = 0;
        for (int64_t t = 0; t < seq_len; t++) {
            int32_t id = ids[b * seq_len + t];
            if (id < 0 || id >= m->vocab)
                return kd_errf(e, KD_ERR_INVALID_ARG, "mt5: token id %d outside the vocabulary of %lld", id,
                               (long long)m->vocab);
            any |= mask[b * seq_len + t] != 0;
        }
        if (!any) return kd_errf(e, KD_ERR_INVALID_ARG, "mt5: sequence %lld has no real token in its mask", (long long)b);
    }
    return KD_OK;
}

kd_status kd_mt5_forward_be(kd_mt5 *m, kd_backend *be, const int32_t *ids, const int32_t *mask, int batch,
                            int seq_len, float *last_hidden, kd_err *e) {
    KD_TRY(check_args(m, ids, mask, batch, seq_len, last_hidden, e));
    kd_status s = forward_impl(m, be, ids, mask, batch, seq_len, last_hidden, e);
    kd_arena_reset(&m->base.arena);
    if (s != KD_OK) kd_err_prefix(e, "mt5");
    return s;
}

kd_status kd_mt5_forward(kd_ctx *ctx, kd_mt5 *m, const int32_t *ids, const int32_t *mask, int batch, int seq_len,
                         float *last_hidden) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    kd_backend *be = &ctx->be;
    kd_err *e = &ctx->err;
    KD_TRY(check_args(m, ids, mask, batch, seq_len, last_hidden, e));
    size_t hb = (size_t)batch * seq_len * m->d_model * sizeof(float);
    void *h;
    kd_status s = kd_model_stage_out(be, &m->base, last_hidden, hb, &h, e);
    if (s == KD_OK) s = kd_mt5_forward_be(m, be, ids, mask, batch, seq_len, h, e);
    if (s == KD_OK) s = kd_model_finish_out(be, last_hidden, h, hb, e);
    kd_model_end_call(&m->base);
    return s;
}
