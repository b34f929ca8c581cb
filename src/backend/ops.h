/* The ops models and nn/ call, f32 compute. Each is a thin wrapper over the backend's table
 * (backend.h), so a model reads `KD_TRY(kd_silu(be, y, x, n, e))` whatever backend runs it.
 * Pointers are contiguous row-major backend memory in PyTorch dim order; output buffers must not
 * alias inputs unless an op says so. Shapes are explicit dims; each op's comment gives them in
 * PyTorch notation. Every op returns a kd_status (on the CPU only KD_ERR_OOM can happen, from
 * scratch memory). Weight tensors (kd_tensor) may be F32, F16 or BF16; small per-channel vectors
 * (bias, norm gamma/beta) are plain f32 arrays (NULL = absent). */
#ifndef KD_BACKEND_OPS_H
#define KD_BACKEND_OPS_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/tensor.h"

#if defined(__GNUC__)
#define KD_NODISCARD __attribute__((warn_unused_result))
#else
#define KD_NODISCARD
#endif
#define KD_OP static inline KD_NODISCARD kd_status

/* ---- memory ---- */

static inline int kd_backend_threads(const kd_backend *be) { return be->ops->n_threads(be); }
KD_OP kd_be_alloc(kd_backend *be, size_t bytes, void **out, kd_err *e) { return be->ops->alloc(be, bytes, out, e); }
static inline void kd_be_free(kd_backend *be, void *p) {
    if (p) be->ops->free(be, p);
}
KD_OP kd_upload(kd_backend *be, void *dst, const void *host_src, size_t bytes, kd_err *e) {
    return be->ops->upload(be, dst, host_src, bytes, e);
}
KD_OP kd_download(kd_backend *be, void *host_dst, const void *src, size_t bytes, kd_err *e) {
    return be->ops->download(be, host_dst, src, bytes, e);
}
/* dst ← src inside backend memory; the ranges may overlap (memmove). */
KD_OP kd_copy(kd_backend *be, void *dst, const void *src, size_t bytes, kd_err *e) {
    return be->ops->copy(be, dst, src, bytes, e);
}
KD_OP kd_sync(kd_backend *be, kd_err *e) { return be->ops->sync(be, e); }
/* A backend buffer standing for the host buffer `host` (bytes long) in a loop that moves data
 * between them every step: host itself where backend memory is host memory (the uploads and
 * downloads between the two are then no-ops), else a new backend allocation. */
KD_OP kd_be_mirror(kd_backend *be, void *host, size_t bytes, void **dev, kd_err *e) {
    if (be->ops->host_visible) {
        *dev = host;
        return KD_OK;
    }
    return be->ops->alloc(be, bytes, dev, e);
}
static inline void kd_be_mirror_free(kd_backend *be, const void *host, void *dev) {
    if (dev && dev != host) be->ops->free(be, dev);
}

/* ---- matrix products ---- */

/* C[M,N] = alpha · op(A) · op(B) + beta · C, row-major, op = transpose when trans_* != 0. */
KD_OP kd_gemm(kd_backend *be, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, kd_err *e) {
    return be->ops->gemm(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, e);
}
/* y[M,N] = x[M,K] · w[N,K]ᵀ + b[N]   (torch.nn.Linear; w F32/F16/BF16, b may be NULL) */
KD_OP kd_linear(kd_backend *be, float *y, const float *x, int64_t M, const kd_tensor *w, const float *b, kd_err *e) {
    return be->ops->linear(be, y, x, M, w, b, e);
}

/* ---- convolution ---- */

/* stride 1, padding k/2 on every side ("same" for odd k) */
kd_conv2d_params kd_conv2d_same(int k);
/* Output extent of one spatial dim; <= 0 if the input is too small. */
int64_t kd_conv2d_out_dim(int64_t in, int k, int stride, int pad_a, int pad_b);

/* y[B,Cout,Ho,Wo] = conv2d(x[B,Cin,H,W], w[Cout,Cin,kh,kw]) + b[Cout]  (groups 1, dilation 1) */
KD_OP kd_conv2d(kd_backend *be, float *y, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                const kd_tensor *w, const float *b, const kd_conv2d_params *p, kd_err *e) {
    return be->ops->conv2d(be, y, x, B, Cin, H, W, w, b, p, e);
}

/* ---- normalisation ---- */

/* y[B,C,HW] = GroupNorm(groups, eps)(x) · gamma[C] + beta[C]; biased variance. y may equal x. */
KD_OP kd_group_norm(kd_backend *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups, float eps,
                    const float *gamma, const float *beta, kd_err *e) {
    return be->ops->group_norm(be, y, x, B, C, HW, groups, eps, gamma, beta, 0, e);
}
/* Same, followed by SiLU (the ubiquitous norm → act pair of ResNet blocks). */
KD_OP kd_group_norm_silu(kd_backend *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                         float eps, const float *gamma, const float *beta, kd_err *e) {
    return be->ops->group_norm(be, y, x, B, C, HW, groups, eps, gamma, beta, 1, e);
}
/* y[R,D] = LayerNorm(D, eps)(x) · gamma + beta. y may equal x. */
KD_OP kd_layer_norm(kd_backend *be, float *y, const float *x, int64_t rows, int64_t dim, float eps, const float *gamma,
                    const float *beta, kd_err *e) {
    return be->ops->layer_norm(be, y, x, rows, dim, eps, gamma, beta, e);
}
/* y[R,D] = x · rsqrt(mean(x², -1) + eps) · gamma (T5LayerNorm: no mean subtraction, no bias).
 * y may equal x. */
KD_OP kd_rms_norm(kd_backend *be, float *y, const float *x, int64_t rows, int64_t dim, float eps, const float *gamma,
                  kd_err *e) {
    return be->ops->rms_norm(be, y, x, rows, dim, eps, gamma, e);
}
/* x[R,N] = softmax(x, dim=-1), in place; rows that are all -inf give zeros. */
KD_OP kd_softmax(kd_backend *be, float *x, int64_t rows, int64_t n, kd_err *e) {
    return be->ops->softmax(be, x, rows, n, e);
}

/* ---- attention (kd_attn_params in backend.h) ---- */
KD_OP kd_attention(kd_backend *be, float *out, const kd_attn_params *p, kd_err *e) {
    return be->ops->attention(be, out, p, e);
}

/* ---- element-wise (y may equal x) ---- */
KD_OP kd_silu(kd_backend *be, float *y, const float *x, int64_t n, kd_err *e) {
    return be->ops->unary(be, KD_UNARY_SILU, y, x, n, e);
}
/* exact GELU (erf) */
KD_OP kd_gelu(kd_backend *be, float *y, const float *x, int64_t n, kd_err *e) {
    return be->ops->unary(be, KD_UNARY_GELU, y, x, n, e);
}
/* x·σ(1.702x) */
KD_OP kd_quick_gelu(kd_backend *be, float *y, const float *x, int64_t n, kd_err *e) {
    return be->ops->unary(be, KD_UNARY_QUICK_GELU, y, x, n, e);
}
/* GELU, tanh approximation ("gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) */
KD_OP kd_gelu_tanh(kd_backend *be, float *y, const float *x, int64_t n, kd_err *e) {
    return be->ops->unary(be, KD_UNARY_GELU_TANH, y, x, n, e);
}
KD_OP kd_add(kd_backend *be, float *y, const float *a, const float *b, int64_t n, kd_err *e) {
    return be->ops->binary(be, KD_BINARY_ADD, y, a, b, n, e);
}
KD_OP kd_mul(kd_backend *be, float *y, const float *a, const float *b, int64_t n, kd_err *e) {
    return be->ops->binary(be, KD_BINARY_MUL, y, a, b, n, e);
}
/* y = a·b + c element-wise, then SiLU if silu != 0 (y may equal any input) */
KD_OP kd_mul_add(kd_backend *be, float *y, const float *a, const float *b, const float *c, int64_t n, int silu,
                 kd_err *e) {
    return be->ops->mul_add(be, y, a, b, c, n, silu, e);
}
/* x[B, C, HW] = x · (1 + scale) + shift with scale_shift[B, 2C] = [scale | shift] per sample
 * (ResnetBlock2D "scale_shift" time conditioning), then SiLU if silu != 0. In place. */
KD_OP kd_film(kd_backend *be, float *x, const float *scale_shift, int64_t B, int64_t C, int64_t HW, int silu,
              kd_err *e) {
    return be->ops->film(be, x, scale_shift, B, C, HW, silu, e);
}
/* y[i] = x[i] · s + t */
KD_OP kd_scale_shift(kd_backend *be, float *y, const float *x, float s, float t, int64_t n, kd_err *e) {
    return be->ops->scale_shift(be, y, x, s, t, n, e);
}
/* x[R, N] += b[N] (bias over the last dim) */
KD_OP kd_add_row_vector(kd_backend *be, float *x, const float *b, int64_t rows, int64_t n, kd_err *e) {
    return be->ops->add_row_vector(be, x, b, rows, n, e);
}
/* x[B, C, HW] += b[B, C]  (per-channel value, e.g. a time embedding) */
KD_OP kd_add_channel_vector(kd_backend *be, float *x, const float *b, int64_t B, int64_t C, int64_t HW, kd_err *e) {
    return be->ops->add_channel_vector(be, x, b, B, C, HW, e);
}

/* ---- layout ---- */
/* y[B, Xa+Xb, inner] = cat(a[B, Xa, inner], b[B, Xb, inner], dim=1): channels of NCHW (inner = HW)
 * or tokens of [B, T, C] (inner = C). */
KD_OP kd_concat_dim1(kd_backend *be, float *y, const float *a, int64_t Xa, const float *b, int64_t Xb, int64_t B,
                     int64_t inner, kd_err *e) {
    return be->ops->concat_dim1(be, y, a, Xa, b, Xb, B, inner, e);
}
/* y[R, C, HW] ← x[R, HW, C] and back (NCHW ↔ token layout). */
KD_OP kd_transpose_last2(kd_backend *be, float *y, const float *x, int64_t R, int64_t rows, int64_t cols, kd_err *e) {
    return be->ops->transpose_last2(be, y, x, R, rows, cols, e);
}
/* y[n, D] = table[ids[i], :] as f32 (nn.Embedding; table [V, D] F32/F16/BF16). ids are host memory
 * and must be in [0, V) (the caller checks). */
KD_OP kd_embedding(kd_backend *be, float *y, const kd_tensor *table, const int32_t *host_ids, int64_t n, kd_err *e) {
    return be->ops->embedding(be, y, table, host_ids, n, e);
}

/* y[B, D] = Σ_t x[b, t, :]·mask[b, t] / Σ_t mask[b, t] — MultilingualCLIP's pooling, float32 sums in
 * token order as torch's (x·mask).sum(1) / mask.sum(1). mask is host memory [B, L]. */
KD_OP kd_masked_mean(kd_backend *be, float *y, const float *x, const int32_t *host_mask, int64_t B, int64_t L,
                     int64_t D, kd_err *e) {
    return be->ops->masked_mean(be, y, x, host_mask, B, L, D, e);
}

/* ---- resampling (planes = B·C) ---- */
/* y[P, 2H, 2W] = nearest ×2 upsample of x[P, H, W] */
KD_OP kd_upsample_nearest2x(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W,
                            kd_err *e) {
    return be->ops->upsample_nearest2x(be, y, x, planes, H, W, e);
}
/* y[P, Ho, Wo] = F.interpolate(x[P, H, W], size=(Ho, Wo), mode="nearest") */
KD_OP kd_resize_nearest(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W, int64_t Ho,
                        int64_t Wo, kd_err *e) {
    return be->ops->resize_nearest(be, y, x, planes, H, W, Ho, Wo, e);
}
/* y[P, H/2, W/2] = F.avg_pool2d(x, 2, 2) (floor for odd sizes) */
KD_OP kd_avg_pool2x2(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W, kd_err *e) {
    return be->ops->avg_pool2x2(be, y, x, planes, H, W, e);
}

/* ---- embeddings ---- */
/* y[B, dim] = diffusers get_timestep_embedding(t[B], dim, flip_sin_to_cos, downscale_freq_shift,
 * scale=1, max_period): exponent_i = -ln(max_period)·i/(half - shift), a = t·exp(exponent),
 * [sin(a), cos(a)] or [cos(a), sin(a)] when flip_sin_to_cos; odd dim gets a zero last column.
 * t is host memory (B values). */
KD_OP kd_timestep_embedding(kd_backend *be, float *y, const float *host_t, int64_t B, int dim, int flip_sin_to_cos,
                            float downscale_freq_shift, float max_period, kd_err *e) {
    return be->ops->timestep_embedding(be, y, host_t, B, dim, flip_sin_to_cos, downscale_freq_shift, max_period, e);
}

#undef KD_OP
#endif
