/* Pieces the AVX-512 GEMM kernels share (sgemm_avx512.c: F32 operands; gemm_bf16.c: operands
 * rounded to BF16): operand loads with on-the-fly conversion, the 16×16 register transpose, tail
 * masks. Only included by those two files, inside their x86 / !KD_NO_AVX512 sections. */
#ifndef KD_CPU_GEMM_AVX512_H
#define KD_CPU_GEMM_AVX512_H

#include <immintrin.h>

#include "backend/cpu/cpu.h"

#define KD_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,f16c"))) /* f16c: _cvtsh_ss (Q8_0 scales) */

static inline __mmask16 kd_tail_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* 16 rows of 16 floats → 16 columns, in registers (unpack, 4×4 within lanes, 4×4 of lanes). */
KD_AVX512 static inline void kd_transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* u[4g + j], lane L = column 4L + j of rows 4g .. 4g+3 */
    for (int g = 0; g < 4; g++) {
        r[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        __m512 v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], _MM_SHUFFLE(1, 0, 1, 0));
        __m512 v1 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(1, 0, 1, 0));
        __m512 v2 = _mm512_shuffle_f32x4(r[j], r[4 + j], _MM_SHUFFLE(3, 2, 3, 2));
        __m512 v3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(3, 2, 3, 2));
        t[j] = _mm512_shuffle_f32x4(v0, v1, _MM_SHUFFLE(2, 0, 2, 0));
        t[4 + j] = _mm512_shuffle_f32x4(v0, v1, _MM_SHUFFLE(3, 1, 3, 1));
        t[8 + j] = _mm512_shuffle_f32x4(v2, v3, _MM_SHUFFLE(2, 0, 2, 0));
        t[12 + j] = _mm512_shuffle_f32x4(v2, v3, _MM_SHUFFLE(3, 1, 3, 1));
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

/* 16 consecutive elements of row `row` from column k0 (those in km, zero beyond) as F32. A Q8_0
 * operand needs k0 % 16 == 0 and ld % 32 == 0, so the 16 lie in one block; km must not be 0. */
KD_AVX512 static inline __m512 kd_load_row16(const kd_gemm_operand *b, int64_t row, int64_t k0, __mmask16 km) {
    int64_t off = row * b->ld + k0;
    if (b->dtype == KD_F32) return _mm512_maskz_loadu_ps(km, (const float *)b->p + off);
    if (b->dtype == KD_Q8_0) {
        __m128i q = _mm_maskz_loadu_epi8(km, (const int8_t *)b->p + off);
        __m512 v = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
        return _mm512_mul_ps(v, _mm512_set1_ps(_cvtsh_ss(b->scale[off / KD_Q8_BLOCK])));
    }
    __m256i h = _mm256_maskz_loadu_epi16(km, (const uint16_t *)b->p + off);
    if (b->dtype == KD_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* BF16: the high half of F32 */
}

/* C = alpha·acc + beta·C on the mr × nr corner of a micro-tile of 2 × 16 columns per row (beta ==
 * 0 never reads C: it may hold garbage or NaN). */
KD_AVX512 static inline void kd_store_tile(__m512 (*acc)[2], int mr, int nr, float *C, int64_t ldc, float alpha,
                                           float beta) {
    __mmask16 m0 = kd_tail_mask(nr), m1 = nr > 16 ? kd_tail_mask(nr - 16) : 0;
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < mr; r++) {
        float *c = C + r * ldc;
        __m512 x0 = _mm512_mul_ps(va, acc[r][0]), x1 = _mm512_mul_ps(va, acc[r][1]);
        if (beta != 0.0f) {
            x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), x0);
            x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), x1);
        }
        _mm512_mask_storeu_ps(c, m0, x0);
        _mm512_mask_storeu_ps(c + 16, m1, x1);
    }
}

/* C = beta·C on an M × N tile (what a GEMM with K == 0 or alpha == 0 does, as BLAS) */
KD_AVX512 static inline void kd_scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

#endif
