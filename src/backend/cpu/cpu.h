/* Shared internals of the CPU backend. */
#ifndef KD_CPU_H
#define KD_CPU_H

#include <stdint.h>

#include "backend/backend.h"

static inline int64_t kd_min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t kd_max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t kd_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Single-threaded BLAS sgemm, row-major (the one place that talks to cblas). */
void kd_sgemm_1t(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* softmax of one row in place (norm.c) */
void kd_softmax_row(float *x, int64_t n);

#endif
