/* Transformer layer, shared by CLIP (text and vision), the diffusion prior (diffusers
 * BasicTransformerBlock without cross-attention) — pre-LayerNorm:
 *   x = x + o(MHA(LN1(x)))        q/k/v/o: Linear(D → D) with bias
 *   x = x + fc2(act(fc1(LN2(x)))) fc1: D → F, fc2: F → D
 * — and XLM-RoBERTa (BERT layers, post-LayerNorm: x = LN1(x + o(MHA(x))); x = LN2(x + fc2(act(fc1(x))))).
 * The two checkpoints name the same tensors differently; kd_tf_names says how. */
#ifndef KD_NN_TRANSFORMER_H
#define KD_NN_TRANSFORMER_H

#include "nn/layers.h"

typedef enum kd_act { KD_ACT_GELU, KD_ACT_QUICK_GELU } kd_act;

/* "gelu" (exact erf) or "quick_gelu"; -1 if unknown. */
int kd_act_parse(const char *name, kd_act *out);

typedef struct kd_tf_names {
    const char *ln1, *q, *k, *v, *o, *ln2, *fc1, *fc2;
} kd_tf_names;

extern const kd_tf_names kd_tf_names_clip;  /* layer_norm1, self_attn.q_proj, ..., mlp.fc1 */
extern const kd_tf_names kd_tf_names_prior; /* norm1, attn1.to_q, ..., ff.net.0.proj, ff.net.2 */
extern const kd_tf_names kd_tf_names_bert;  /* attention.self.query, ..., output.dense, output.LayerNorm */

typedef struct kd_tf_layer {
    kd_norm_layer ln1, ln2;
    kd_linear_layer q, k, v, o, fc1, fc2;
    int heads;
    int64_t dim, ff;
    kd_act act;
    int post_ln; /* BERT order: normalise after each residual sum */
} kd_tf_layer;

kd_status kd_tf_layer_load(kd_weights *w, const char *prefix, const kd_tf_names *names, int64_t dim, int64_t ff,
                           int heads, float eps, kd_act act, kd_tf_layer *l, kd_err *e);

/* Attention masking for kd_tf_layer_forward (see kd_attn_params in ops.h). */
typedef struct kd_tf_mask {
    const float *add; /* additive mask or NULL */
    int64_t bstride, qstride;
    int causal;
} kd_tf_mask;

/* x[B, L, D] updated in place; temporaries come from the arena and are released. */
kd_status kd_tf_layer_forward(kd_backend *be, kd_arena *a, const kd_tf_layer *l, float *x, int64_t B, int64_t L,
                              const kd_tf_mask *mask, kd_err *e);

#endif
