/* Shared internals of the CPU backend: its state (kd_cpu, the impl of its kd_backend) and the
 * kernels the table in backend_cpu.c dispatches to. Nothing outside backend/cpu includes this
 * (but test_sgemm and bench_ops, which test the kernels themselves). */
#ifndef KD_CPU_H
#define KD_CPU_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/pool.h"
#include "core/tensor.h"

/* 3×3 convolution algorithm: chosen per shape, or forced by KD_CONV_ALGO (read once at init) */
typedef enum kd_conv_algo { KD_CONV_AUTO = 0, KD_CONV_IM2COL, KD_CONV_WINO23, KD_CONV_WINO43 } kd_conv_algo;

typedef struct kd_cpu {
    kd_pool *pool;
    int n_threads;
    /* KD_PRECISION_BF16: GEMM operands (linear, conv, attention products) rounded to BF16, F32
     * accumulation (gemm_bf16.c). Only ever set where kd_gemm_has_bf16(). */
    int bf16;
    /* Temporaries of a single op (im2col buffers, converted f16 weight panels, attention
     * scores). Every op releases what it took before returning, so the block stays warm. */
    kd_arena scratch;
    kd_conv_algo conv_algo;
} kd_cpu;

static inline kd_cpu *kd_cpu_of(kd_backend *be) { return (kd_cpu *)be->impl; }

/* ---- kernels (same contracts as the ops.h wrappers of the same name without "cpu_") ---- */
void kd_cpu_gemm(kd_cpu *be, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
kd_status kd_cpu_linear(kd_cpu *be, float *y, const float *x, int64_t M, const kd_tensor *w, const float *b, kd_err *e);
kd_status kd_cpu_conv2d(kd_cpu *be, float *y, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                        const kd_tensor *w, const float *b, const kd_conv2d_params *p, kd_err *e);
void kd_cpu_group_norm(kd_cpu *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups, float eps,
                       const float *gamma, const float *beta);
void kd_cpu_group_norm_silu(kd_cpu *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                            float eps, const float *gamma, const float *beta);
void kd_cpu_layer_norm(kd_cpu *be, float *y, const float *x, int64_t rows, int64_t dim, float eps, const float *gamma,
                       const float *beta);
void kd_cpu_rms_norm(kd_cpu *be, float *y, const float *x, int64_t rows, int64_t dim, float eps, const float *gamma);
void kd_cpu_softmax(kd_cpu *be, float *x, int64_t rows, int64_t n);
kd_status kd_cpu_attention(kd_cpu *be, float *out, const kd_attn_params *p, kd_err *e);
void kd_cpu_silu(kd_cpu *be, float *y, const float *x, int64_t n);
void kd_cpu_gelu(kd_cpu *be, float *y, const float *x, int64_t n);
void kd_cpu_quick_gelu(kd_cpu *be, float *y, const float *x, int64_t n);
void kd_cpu_gelu_tanh(kd_cpu *be, float *y, const float *x, int64_t n);
void kd_cpu_add(kd_cpu *be, float *y, const float *a, const float *b, int64_t n);
void kd_cpu_mul(kd_cpu *be, float *y, const float *a, const float *b, int64_t n);
void kd_cpu_mul_add(kd_cpu *be, float *y, const float *a, const float *b, const float *c, int64_t n, int silu);
void kd_cpu_film(kd_cpu *be, float *x, const float *scale_shift, int64_t B, int64_t C, int64_t HW, int silu);
void kd_cpu_scale_shift(kd_cpu *be, float *y, const float *x, float s, float t, int64_t n);
void kd_cpu_add_row_vector(kd_cpu *be, float *x, const float *b, int64_t rows, int64_t n);
void kd_cpu_add_channel_vector(kd_cpu *be, float *x, const float *b, int64_t B, int64_t C, int64_t HW);
void kd_cpu_concat_dim1(float *y, const float *a, int64_t Xa, const float *b, int64_t Xb, int64_t B, int64_t inner);
void kd_cpu_transpose_last2(kd_cpu *be, float *y, const float *x, int64_t R, int64_t rows, int64_t cols);
void kd_cpu_upsample_nearest2x(kd_cpu *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W);
void kd_cpu_resize_nearest(kd_cpu *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W, int64_t Ho,
                           int64_t Wo);
void kd_cpu_avg_pool2x2(kd_cpu *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W);
void kd_cpu_timestep_embedding(float *y, const float *t, int64_t B, int dim, int flip_sin_to_cos,
                               float downscale_freq_shift, float max_period);

static inline int64_t kd_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t kd_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t kd_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* A GEMM operand as the kernels see it: element (r, k) of its storage at p + r·ld + k (r = row of
 * op(X) when trans == 0, column when trans == 1). F32 in either layout; F16, BF16 and Q8_0
 * (weights, converted while packing) only where the rows of storage run along k: A untransposed
 * (A[M][K]) or B transposed (B = Wᵀ, W[N][K]); Q8_0 needs ld % 32 == 0. */
typedef struct kd_gemm_operand {
    const void *p;
    int64_t ld; /* in elements */
    int trans;
    kd_dtype dtype;
    const uint16_t *scale; /* Q8_0: F16 scales, one per 32 elements of storage */
} kd_gemm_operand;

/* The operand from storage row r on (a panel of rows of a weight). */
static inline kd_gemm_operand kd_gemm_operand_from_row(kd_gemm_operand o, int64_t r) {
    o.p = (const char *)o.p + (size_t)(r * o.ld) * kd_dtype_size(o.dtype);
    if (o.scale) o.scale += r * o.ld / KD_Q8_BLOCK;
    return o;
}

/* Single-threaded C = alpha·op(A)·op(B) + beta·C on operands (the AVX-512 F32 kernel); 0 without
 * touching C when its packing buffer cannot be allocated, or without AVX-512. */
int kd_sgemm_avx512_op(const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K,
                       float alpha, float beta, float *C, int64_t ldc);
/* The same with every operand rounded to BF16 (round to nearest even) and F32 accumulation:
 * vdpbf16ps (AVX512_BF16, gemm_bf16.c). 0 without a buffer or without the instruction. */
int kd_gemm_bf16_op(const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K, float alpha,
                    float beta, float *C, int64_t ldc);
/* 1 when kd_gemm_bf16_op can run: AVX512_BF16 and the AVX-512 kernels are in use */
int kd_gemm_has_bf16(void);
/* Threaded C[M,N] = alpha·op(A)·op(B) + beta·C on operands with the backend's precision (gemm.c):
 * what the BF16 mode and Q8_0 weights run through. Falls back to converting op(A) rows to F32
 * (BLAS) when no AVX-512 kernel can take it. KD_ERR_OOM only. */
kd_status kd_gemm_op(kd_cpu *be, const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K,
                     float alpha, float beta, float *C, int64_t ldc, kd_err *e);

/* Single-threaded BLAS sgemm, row-major (the one place that talks to cblas). */
void kd_sgemm_1t(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* Our AVX-512F sgemm (sgemm_avx512.c), same contract as kd_sgemm_1t; returns 0 without touching C
 * when its packing buffer cannot be allocated. Only call it where kd_cpu_has_avx512(). */
int kd_sgemm_avx512(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* C[M,N] = A[M,K] · Wᵀ with W[N,K] in F16 or BF16 (a Linear's weight), converted while packing. */
int kd_sgemm_avx512_half_wt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *W,
                            kd_dtype wdtype, int64_t ldw, float *C, int64_t ldc);
/* C[M,N] = W[M,K] · B[K,N] with W in F32, F16 or BF16 (a conv's weight), converted while packing. */
int kd_sgemm_avx512_wa(int64_t M, int64_t N, int64_t K, const void *W, kd_dtype wdtype, int64_t ldw, const float *B,
                       int64_t ldb, float *C, int64_t ldc);
/* Threaded C[M,N] = W[M,K] · B[K,N] for weights of any dtype (F32, F16, BF16, Q8_0; gemm.c): the
 * AVX-512 kernel converts while packing; the BLAS path converts slabs of rows of W into scratch.
 * KD_ERR_OOM only. */
kd_status kd_gemm_wa(kd_cpu *be, int64_t M, int64_t N, int64_t K, const kd_tensor *W, const float *B, int64_t ldb,
                     float *C, int64_t ldc, kd_err *e);
/* The AVX-512 kernel's packed-A layout, for producers that can write it directly (the Winograd
 * weight transforms): per KC slice of K, ceil(M/MR) panels of kc × MR floats, A[i][k] at
 * kd_sgemm_pa_index(M, K, i, k); kd_sgemm_pa_floats(M, K) floats in all. Rows M .. ceil(M/MR)·MR
 * are padding (computed, never stored). */
#define KD_SGEMM_MR 14
#define KD_SGEMM_KC 256
static inline int64_t kd_sgemm_pa_rows(int64_t M) { return kd_ceil_div(M, KD_SGEMM_MR) * KD_SGEMM_MR; }
static inline int64_t kd_sgemm_pa_floats(int64_t M, int64_t K) { return kd_sgemm_pa_rows(M) * K; }
static inline int64_t kd_sgemm_pa_index(int64_t M, int64_t K, int64_t i, int64_t k) {
    int64_t pc = k / KD_SGEMM_KC * KD_SGEMM_KC, kc = kd_min64(KD_SGEMM_KC, K - pc);
    return pc * kd_sgemm_pa_rows(M) + i / KD_SGEMM_MR * kc * KD_SGEMM_MR + (k - pc) * KD_SGEMM_MR + i % KD_SGEMM_MR;
}
/* C[M,N] = A · B[K,N] with A already in the packed-A layout; 0 if the B buffer is unavailable. */
int kd_sgemm_avx512_pa(int64_t M, int64_t N, int64_t K, const float *Ap, const float *B, int64_t ldb, float *C,
                       int64_t ldc);
/* 1 when kd_sgemm_1t runs the AVX-512 kernel (so packed-A producers may be used) */
int kd_gemm_uses_avx512(void);
/* AVX-512F, BW and VL (what the kernel uses) */
int kd_cpu_has_avx512(void);
/* "avx512" or "blas": the kernel kd_sgemm_1t uses (KD_GEMM=blas forces BLAS) */
const char *kd_gemm_kernel_name(void);

/* softmax of one row in place (norm.c) */
void kd_softmax_row(float *x, int64_t n);

#endif
