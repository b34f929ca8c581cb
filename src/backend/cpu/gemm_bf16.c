/* Single-threaded GEMM with BF16 operands and F32 accumulation, for CPUs with AVX512_BF16
 * (`vdpbf16ps`: 32 multiply-adds per instruction where the F32 FMA does 16).
 *
 * Same Goto/BLIS blocking as the F32 kernel (sgemm_avx512.c), with operands packed as BF16 pairs
 * along k, the layout vdpbf16ps consumes:
 *   B panel:  for each pair p = k/2, NR columns × (B[2p][c], B[2p+1][c])  → two zmm per pair
 *   A panel:  for each pair p, MR rows × (A[r][2p], A[r][2p+1])          → one 32-bit broadcast per row
 * acc[r][c] += A[r][2p]·B[2p][c] + A[r][2p+1]·B[2p+1][c]  (one vdpbf16ps per 16 columns).
 * Operands are rounded to BF16 (nearest even, vcvtne2ps2bf16) while packing, from F32 or from
 * F16 / BF16 / Q8_0 weights; an odd K is padded with a zero pair half. Results are the exact
 * products of the rounded operands summed in F32 (the order differs from the F32 kernel's). */
#include "backend/cpu/cpu.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(KD_NO_AVX512)

#include <pthread.h>
#include <stdlib.h>

#include "backend/cpu/gemm_avx512.h"

#define KD_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,f16c,avx512bf16")))

enum {
    MR = 14,   /* rows of the micro-tile: 14 × 2 accumulators + 2 B vectors + 1 broadcast */
    NR = 32,   /* columns: two zmm of 16 F32 accumulators */
    KC = 512,  /* depth of one packed slice (256 pairs): a B micro-panel is 256 × 32 pairs = 32 KB */
    MC = 168,  /* rows of a packed A block (a multiple of MR) */
    NC = 3072  /* columns of a packed B block */
};

#define PACK_HALVES ((size_t)KC * NC + (size_t)MC * KC) /* BF16 values */

static pthread_key_t g_key;
static int g_key_ok;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void key_init(void) { g_key_ok = pthread_key_create(&g_key, free) == 0; }

static uint16_t *pack_buffer(void) {
    pthread_once(&g_once, key_init);
    if (!g_key_ok) return NULL;
    uint16_t *p = pthread_getspecific(g_key);
    if (!p) {
        p = aligned_alloc(64, PACK_HALVES * sizeof(uint16_t));
        if (p && pthread_setspecific(g_key, p) != 0) {
            free(p);
            p = NULL;
        }
    }
    return p;
}

/* Two F32 vectors → 32 BF16 values, lo in elements 0..15 and hi in 16..31. */
KD_BF16 static inline __m512i to_bf16(__m512 lo, __m512 hi) { return (__m512i)_mm512_cvtne2ps_pbh(hi, lo); }

/* Packers write pairs: dst32[p * W + c] = (X[c][2p], X[c][2p+1]) for p < ceil(kc/2), c < W,
 * zero for columns nc <= c < W (stores masked to W, so W need not be a multiple of 16). */

/* Storage rows run along k (B = Wᵀ, or A untransposed): 32 values of a row are 16 pairs, i.e. 16
 * 32-bit lanes, and 16 rows of them are turned into 16 columns by the F32 register transpose. */
KD_BF16 static void pack_pairs_rows(uint16_t *dst, int W, const kd_gemm_operand *o, int64_t j0, int64_t k0, int nc,
                                    int kc) {
    int32_t *d = (int32_t *)dst;
    for (int c0 = 0; c0 < W; c0 += 16) {
        __mmask16 wm = kd_tail_mask(W - c0);
        for (int k = 0; k < kc; k += 32) {
            int kk = kc - k < 32 ? kc - k : 32;
            __mmask16 m0 = kd_tail_mask(kk), m1 = kk > 16 ? kd_tail_mask(kk - 16) : 0;
            __m512 r[16];
            for (int c = 0; c < 16; c++) {
                if (c0 + c >= nc) {
                    r[c] = _mm512_setzero_ps();
                    continue;
                }
                __m512 lo = kd_load_row16(o, j0 + c0 + c, k0 + k, m0);
                __m512 hi = m1 ? kd_load_row16(o, j0 + c0 + c, k0 + k + 16, m1) : _mm512_setzero_ps();
                r[c] = _mm512_castsi512_ps(to_bf16(lo, hi));
            }
            kd_transpose16(r); /* r[p]: pair k/2 + p of the 16 columns */
            for (int p = 0; p < (kk + 1) / 2; p++)
                _mm512_mask_storeu_epi32(d + (int64_t)(k / 2 + p) * W + c0, wm, _mm512_castps_si512(r[p]));
        }
    }
}

/* F32 storage whose rows run along the panel's width (B untransposed, or A transposed): rows 2p
 * and 2p+1 are converted together and their values interleaved. */
KD_BF16 static void pack_pairs_cols(uint16_t *dst, int W, const float *src, int64_t ld, int nc, int kc) {
    static const uint16_t interleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                            8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i idx = _mm512_loadu_si512(interleave);
    int32_t *d = (int32_t *)dst;
    for (int p = 0; p < (kc + 1) / 2; p++) {
        const float *r0 = src + (int64_t)(2 * p) * ld, *r1 = r0 + ld;
        int has1 = 2 * p + 1 < kc;
        for (int c0 = 0; c0 < W; c0 += 16) {
            __mmask16 m = c0 < nc ? kd_tail_mask(nc - c0) : 0, wm = kd_tail_mask(W - c0);
            __m512 x0 = _mm512_maskz_loadu_ps(m, r0 + c0);
            __m512 x1 = has1 ? _mm512_maskz_loadu_ps(m, r1 + c0) : _mm512_setzero_ps();
            __m512i v = _mm512_permutexvar_epi16(idx, to_bf16(x0, x1));
            _mm512_mask_storeu_epi32(d + (int64_t)p * W + c0, wm, v);
        }
    }
}

/* op(B)[k0:+kc, j0:+nc] → NR-wide panels of ceil(kc/2) pairs each. */
KD_BF16 static void pack_b(const kd_gemm_operand *b, int64_t k0, int64_t j0, int nc, int kc, uint16_t *Bp) {
    int64_t panel = (int64_t)(kc + 1) / 2 * 2 * NR;
    for (int q = 0; q < nc; q += NR) {
        int nr = nc - q < NR ? nc - q : NR;
        uint16_t *dst = Bp + q / NR * panel;
        if (b->trans)
            pack_pairs_rows(dst, NR, b, j0 + q, k0, nr, kc);
        else
            pack_pairs_cols(dst, NR, (const float *)b->p + k0 * b->ld + j0 + q, b->ld, nr, kc);
    }
}

/* op(A)[i0:+mc, k0:+kc] → MR-tall panels of ceil(kc/2) pairs each. */
KD_BF16 static void pack_a(const kd_gemm_operand *a, int64_t i0, int64_t k0, int mc, int kc, uint16_t *Ap) {
    int64_t panel = (int64_t)(kc + 1) / 2 * 2 * MR;
    for (int p = 0; p < mc; p += MR) {
        int mr = mc - p < MR ? mc - p : MR;
        uint16_t *dst = Ap + p / MR * panel;
        if (a->trans) /* F32 only: columns of A are contiguous */
            pack_pairs_cols(dst, MR, (const float *)a->p + k0 * a->ld + i0 + p, a->ld, mr, kc);
        else
            pack_pairs_rows(dst, MR, a, i0 + p, k0, mr, kc);
    }
}

KD_BF16 static inline __m512 dp(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

/* acc[MR][NR] = Ap · Bp over kp pairs, then C = alpha·acc + beta·C on the mr × nr tile. */
KD_BF16 static void micro_kernel(int kp, const uint16_t *Ap, const uint16_t *Bp, float *C, int64_t ldc, int mr, int nr,
                                 float alpha, float beta) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    __m512 c80 = c00, c81 = c00, c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
    __m512 cc0 = c00, cc1 = c00, cd0 = c00, cd1 = c00;
    const int32_t *A32 = (const int32_t *)Ap;
#define KD_ROW(r, acc0, acc1)                    \
    do {                                         \
        __m512i a_ = _mm512_set1_epi32(A32[r]);  \
        acc0 = dp(acc0, a_, b0);                 \
        acc1 = dp(acc1, a_, b1);                 \
    } while (0)
#pragma GCC unroll 2
    for (int p = 0; p < kp; p++) {
        __m512i b0 = _mm512_load_si512(Bp), b1 = _mm512_load_si512(Bp + 32);
        KD_ROW(0, c00, c01);
        KD_ROW(1, c10, c11);
        KD_ROW(2, c20, c21);
        KD_ROW(3, c30, c31);
        KD_ROW(4, c40, c41);
        KD_ROW(5, c50, c51);
        KD_ROW(6, c60, c61);
        KD_ROW(7, c70, c71);
        KD_ROW(8, c80, c81);
        KD_ROW(9, c90, c91);
        KD_ROW(10, ca0, ca1);
        KD_ROW(11, cb0, cb1);
        KD_ROW(12, cc0, cc1);
        KD_ROW(13, cd0, cd1);
        A32 += MR;
        Bp += 2 * NR;
    }
#undef KD_ROW
    __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}, {c60, c61},
                         {c70, c71}, {c80, c81}, {c90, c91}, {ca0, ca1}, {cb0, cb1}, {cc0, cc1}, {cd0, cd1}};
    kd_store_tile(acc, mr, nr, C, ldc, alpha, beta);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

int kd_gemm_bf16_op(const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K, float alpha,
                    float beta, float *C, int64_t ldc) {
    if (!kd_gemm_has_bf16()) return 0;
    if (M <= 0 || N <= 0) return 1;
    if (K <= 0 || alpha == 0.0f) {
        kd_scale_c(M, N, beta, C, ldc);
        return 1;
    }
    uint16_t *buf = pack_buffer();
    if (!buf) return 0;
    uint16_t *Bp = buf, *Ap = buf + (size_t)KC * NC;
    for (int64_t jc = 0; jc < N; jc += NC) {
        int nc = (int)min64(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            int kc = (int)min64(KC, K - pc), kp = (kc + 1) / 2;
            float beta_k = pc == 0 ? beta : 1.0f; /* later slices accumulate onto the first */
            pack_b(b, pc, jc, nc, kc, Bp);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int mc = (int)min64(MC, M - ic);
                pack_a(a, ic, pc, mc, kc, Ap);
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? nc - jr : NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? mc - ir : MR;
                        micro_kernel(kp, Ap + (int64_t)ir / MR * kp * 2 * MR, Bp + (int64_t)jr / NR * kp * 2 * NR,
                                     C + (ic + ir) * ldc + jc + jr, ldc, mr, nr, alpha, beta_k);
                    }
                }
            }
        }
    }
    return 1;
}

static int g_has;
static pthread_once_t g_has_once = PTHREAD_ONCE_INIT;

static void has_init(void) { g_has = kd_gemm_uses_avx512() && __builtin_cpu_supports("avx512bf16"); }

int kd_gemm_has_bf16(void) {
    pthread_once(&g_has_once, has_init);
    return g_has;
}

#else /* no AVX-512 kernels: BF16 mode falls back to F32 */

int kd_gemm_bf16_op(const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K, float alpha,
                    float beta, float *C, int64_t ldc) {
    return 0;
}

int kd_gemm_has_bf16(void) { return 0; }

#endif
