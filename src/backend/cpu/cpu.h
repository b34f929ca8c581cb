/* Shared internals of the CPU backend. */
#ifndef KD_CPU_H
#define KD_CPU_H

#include <stdint.h>

#include "backend/backend.h"
#include "core/tensor.h"

static inline int64_t kd_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t kd_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t kd_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

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
/* Threaded C[M,N] = W[M,K] · B[K,N] for weights of any dtype (gemm.c): the AVX-512 kernel converts
 * while packing; the BLAS path converts slabs of rows of W into scratch. KD_ERR_OOM only. */
kd_status kd_gemm_wa(kd_backend *be, int64_t M, int64_t N, int64_t K, const void *W, kd_dtype wdtype,
                     const float *B, int64_t ldb, float *C, int64_t ldc, kd_err *e);
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
