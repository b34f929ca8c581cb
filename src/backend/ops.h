/* CPU ops, f32 compute. Pointers are contiguous row-major in PyTorch dim order; output buffers
 * must not alias inputs unless an op says so. Shapes are given as explicit dims; each op's
 * comment gives them in PyTorch notation. Ops that need scratch memory return kd_status (only
 * KD_ERR_OOM can happen); the rest cannot fail. Weight tensors (kd_tensor) may be F32, F16 or BF16;
 * small per-channel vectors (bias, norm gamma/beta) are plain f32 arrays (NULL = absent). */
#ifndef KD_BACKEND_OPS_H
#define KD_BACKEND_OPS_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/tensor.h"

/* ---- matrix products ---- */

/* C[M,N] = alpha · op(A) · op(B) + beta · C, row-major, op = transpose when trans_* != 0.
 * Threaded over the pool; BLAS underneath. */
void kd_gemm(kd_backend *be, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
             const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* y[M,N] = x[M,K] · w[N,K]ᵀ + b[N]   (torch.nn.Linear; w F32/F16/BF16, b may be NULL) */
kd_status kd_linear(kd_backend *be, float *y, const float *x, int64_t M, const kd_tensor *w, const float *b,
                    kd_err *e);

/* ---- convolution ---- */

typedef struct kd_conv2d_params {
    int stride;                                   /* same in both directions */
    int pad_top, pad_bottom, pad_left, pad_right; /* zero padding */
} kd_conv2d_params;

/* stride 1, padding k/2 on every side ("same" for odd k) */
kd_conv2d_params kd_conv2d_same(int k);
/* Output extent of one spatial dim; <= 0 if the input is too small. */
int64_t kd_conv2d_out_dim(int64_t in, int k, int stride, int pad_a, int pad_b);

/* y[B,Cout,Ho,Wo] = conv2d(x[B,Cin,H,W], w[Cout,Cin,kh,kw]) + b[Cout]  (groups 1, dilation 1) */
kd_status kd_conv2d(kd_backend *be, float *y, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                    const kd_tensor *w, const float *b, const kd_conv2d_params *p, kd_err *e);

/* ---- normalisation ---- */

/* y[B,C,HW] = GroupNorm(groups, eps)(x) · gamma[C] + beta[C]; biased variance. y may equal x. */
void kd_group_norm(kd_backend *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                   float eps, const float *gamma, const float *beta);
/* Same, followed by SiLU (the ubiquitous norm → act pair of ResNet blocks). */
void kd_group_norm_silu(kd_backend *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                        float eps, const float *gamma, const float *beta);
/* y[R,D] = LayerNorm(D, eps)(x) · gamma + beta. y may equal x. */
void kd_layer_norm(kd_backend *be, float *y, const float *x, int64_t rows, int64_t dim, float eps,
                   const float *gamma, const float *beta);
/* x[R,N] = softmax(x, dim=-1), in place; rows that are all -inf give zeros. */
void kd_softmax(kd_backend *be, float *x, int64_t rows, int64_t n);

/* ---- attention ----
 * out[B, Lq, H·d] = softmax(q·kᵀ·scale + mask) · v per head h, with
 *   q[B, Lq, ·]  (head h at columns h·d .. h·d+d-1, row stride q_stride),
 *   keys/values  = concat_tokens(k_pre[B, Lpre, ·], k[B, Lkv, ·])  (the pre tokens come first, as in
 *                  diffusers' added-KV attention; pre_len 0 = none),
 *   mask         = additive, element (b, i, j) at mask[b·mask_bstride + i·mask_qstride + j] over the
 *                  Lpre + Lkv keys (strides 0 broadcast; NULL = none),
 *   causal       = key j > query i is excluded (index over the concatenated keys).
 * out row stride is H·d. scale is usually 1/sqrt(d). */
typedef struct kd_attn_params {
    int64_t batch, heads, head_dim, q_len, kv_len, pre_len;
    const float *q;
    int64_t q_stride;
    const float *k, *v;
    int64_t kv_stride;
    const float *k_pre, *v_pre;
    int64_t pre_stride;
    const float *mask;
    int64_t mask_bstride, mask_qstride;
    int causal;
    float scale;
} kd_attn_params;

kd_status kd_attention(kd_backend *be, float *out, const kd_attn_params *p, kd_err *e);

/* ---- element-wise (y may equal x) ---- */
void kd_silu(kd_backend *be, float *y, const float *x, int64_t n);
void kd_gelu(kd_backend *be, float *y, const float *x, int64_t n);       /* exact, erf */
void kd_quick_gelu(kd_backend *be, float *y, const float *x, int64_t n); /* x·σ(1.702x) */
void kd_add(kd_backend *be, float *y, const float *a, const float *b, int64_t n);
void kd_mul(kd_backend *be, float *y, const float *a, const float *b, int64_t n);
/* y = a·b + c element-wise, then SiLU if silu != 0 (y may equal any input) */
void kd_mul_add(kd_backend *be, float *y, const float *a, const float *b, const float *c, int64_t n, int silu);
/* x[B, C, HW] = x · (1 + scale) + shift with scale_shift[B, 2C] = [scale | shift] per sample
 * (ResnetBlock2D "scale_shift" time conditioning), then SiLU if silu != 0. In place. */
void kd_film(kd_backend *be, float *x, const float *scale_shift, int64_t B, int64_t C, int64_t HW, int silu);
/* y[i] = x[i] · s + t */
void kd_scale_shift(kd_backend *be, float *y, const float *x, float s, float t, int64_t n);
/* x[R, N] += b[N] (bias over the last dim) */
void kd_add_row_vector(kd_backend *be, float *x, const float *b, int64_t rows, int64_t n);
/* x[B, C, HW] += b[B, C]  (per-channel value, e.g. a time embedding) */
void kd_add_channel_vector(kd_backend *be, float *x, const float *b, int64_t B, int64_t C, int64_t HW);

/* ---- layout ---- */
/* y[B, Xa+Xb, inner] = cat(a[B, Xa, inner], b[B, Xb, inner], dim=1): channels of NCHW (inner = HW)
 * or tokens of [B, T, C] (inner = C). */
void kd_concat_dim1(float *y, const float *a, int64_t Xa, const float *b, int64_t Xb, int64_t B, int64_t inner);
/* y[R, C, HW] ← x[R, HW, C] and back (NCHW ↔ token layout). */
void kd_transpose_last2(kd_backend *be, float *y, const float *x, int64_t R, int64_t rows, int64_t cols);

/* ---- resampling (planes = B·C) ---- */
/* y[P, 2H, 2W] = nearest ×2 upsample of x[P, H, W] */
void kd_upsample_nearest2x(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W);
/* y[P, Ho, Wo] = F.interpolate(x[P, H, W], size=(Ho, Wo), mode="nearest") */
void kd_resize_nearest(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W, int64_t Ho,
                       int64_t Wo);
/* y[P, H/2, W/2] = F.avg_pool2d(x, 2, 2) (floor for odd sizes) */
void kd_avg_pool2x2(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W);

/* ---- embeddings ---- */
/* y[B, dim] = diffusers get_timestep_embedding(t[B], dim, flip_sin_to_cos, downscale_freq_shift,
 * scale=1, max_period): exponent_i = -ln(max_period)·i/(half - shift), a = t·exp(exponent),
 * [sin(a), cos(a)] or [cos(a), sin(a)] when flip_sin_to_cos; odd dim gets a zero last column. */
void kd_timestep_embedding(float *y, const float *t, int64_t B, int dim, int flip_sin_to_cos,
                           float downscale_freq_shift, float max_period);

#endif
