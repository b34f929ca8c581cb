#include "nn/transformer.h"

#include <math.h>
#include <string.h>

const kd_tf_names kd_tf_names_clip = {"layer_norm1", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                      "self_attn.out_proj", "layer_norm2", "mlp.fc1", "mlp.fc2"};
const kd_tf_names kd_tf_names_prior = {"norm1", "attn1.to_q", "attn1.to_k", "attn1.to_v",
                                       "attn1.to_out.0", "norm3", "ff.net.0.proj", "ff.net.2"};

const kd_tf_names kd_tf_names_bert = {"attention.output.LayerNorm", "attention.self.query", "attention.self.key",
                                      "attention.self.value", "attention.output.dense", "output.LayerNorm",
                                      "intermediate.dense", "output.dense"};

int kd_act_parse(const char *name, kd_act *out) {
    if (!strcmp(name, "gelu")) *out = KD_ACT_GELU;
    else if (!strcmp(name, "quick_gelu")) *out = KD_ACT_QUICK_GELU;
    else return -1;
    return 0;
}

kd_status kd_tf_layer_load(kd_weights *w, const char *prefix, const kd_tf_names *n, int64_t dim, int64_t ff,
                           int heads, float eps, kd_act act, kd_tf_layer *l, kd_err *e) {
    char buf[KD_NAME_MAX];
    if (heads < 1 || dim % heads)
        return kd_errf(e, KD_ERR_FORMAT, "%s: width %lld is not a multiple of %d heads", prefix, (long long)dim, heads);
    l->heads = heads;
    l->dim = dim;
    l->ff = ff;
    l->act = act;
    l->post_ln = n == &kd_tf_names_bert;
    KD_TRY(kd_layer_norm_layer_load(w, kd_name(buf, prefix, n->ln1), dim, eps, &l->ln1, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, prefix, n->q), dim, dim, 1, &l->q, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, prefix, n->k), dim, dim, 1, &l->k, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, prefix, n->v), dim, dim, 1, &l->v, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, prefix, n->o), dim, dim, 1, &l->o, e));
    KD_TRY(kd_layer_norm_layer_load(w, kd_name(buf, prefix, n->ln2), dim, eps, &l->ln2, e));
    KD_TRY(kd_linear_layer_load(w, kd_name(buf, prefix, n->fc1), dim, ff, 1, &l->fc1, e));
    return kd_linear_layer_load(w, kd_name(buf, prefix, n->fc2), ff, dim, 1, &l->fc2, e);
}

kd_status kd_tf_layer_forward(kd_backend *be, kd_arena *a, const kd_tf_layer *l, float *x, int64_t B, int64_t L,
                              const kd_tf_mask *mask, kd_err *e) {
    int64_t D = l->dim, T = B * L;
    kd_arena_mark m = kd_arena_get_mark(a);
    float *h = kd_arena_floats(a, (size_t)(T * D), e);
    float *q = h ? kd_arena_floats(a, (size_t)(T * D), e) : NULL;
    float *k = q ? kd_arena_floats(a, (size_t)(T * D), e) : NULL;
    float *v = k ? kd_arena_floats(a, (size_t)(T * D), e) : NULL;
    float *f = v ? kd_arena_floats(a, (size_t)(T * l->ff), e) : NULL;
    if (!f) return KD_ERR_OOM;

    const float *in = x; /* post-LN layers attend over x itself */
    if (!l->post_ln) {
        KD_TRY(kd_layer_norm(be, h, x, T, D, l->ln1.eps, l->ln1.weight, l->ln1.bias, e));
        in = h;
    }
    KD_TRY(kd_linear_layer_forward(be, &l->q, q, in, T, e));
    KD_TRY(kd_linear_layer_forward(be, &l->k, k, in, T, e));
    KD_TRY(kd_linear_layer_forward(be, &l->v, v, in, T, e));
    kd_attn_params p = {.batch = B, .heads = l->heads, .head_dim = D / l->heads, .q_len = L, .kv_len = L, .q = q,
                        .q_stride = D, .k = k, .v = v, .kv_stride = D,
                        .scale = 1.0f / sqrtf((float)(D / l->heads))};
    if (mask) {
        p.mask = mask->add;
        p.mask_bstride = mask->bstride;
        p.mask_qstride = mask->qstride;
        p.causal = mask->causal;
    }
    KD_TRY(kd_attention(be, h, &p, e));
    KD_TRY(kd_linear_layer_forward(be, &l->o, q, h, T, e));
    KD_TRY(kd_add(be, x, x, q, T * D, e));
    if (l->post_ln) KD_TRY(kd_layer_norm(be, x, x, T, D, l->ln1.eps, l->ln1.weight, l->ln1.bias, e));

    in = x;
    if (!l->post_ln) {
        KD_TRY(kd_layer_norm(be, h, x, T, D, l->ln2.eps, l->ln2.weight, l->ln2.bias, e));
        in = h;
    }
    KD_TRY(kd_linear_layer_forward(be, &l->fc1, f, in, T, e));
    if (l->act == KD_ACT_GELU)
        KD_TRY(kd_gelu(be, f, f, T * l->ff, e));
    else
        KD_TRY(kd_quick_gelu(be, f, f, T * l->ff, e));
    KD_TRY(kd_linear_layer_forward(be, &l->fc2, q, f, T, e));
    KD_TRY(kd_add(be, x, x, q, T * D, e));
    if (l->post_ln) KD_TRY(kd_layer_norm(be, x, x, T, D, l->ln2.eps, l->ln2.weight, l->ln2.bias, e));
    kd_arena_release(a, m);
    return KD_OK;
}
