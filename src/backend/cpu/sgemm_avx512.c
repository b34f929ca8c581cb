/* Single-threaded SGEMM for CPUs with AVX-512F, row-major, any transposition, alpha and beta.
 *
 * Why our own: PyTorch's MKL and OpenBLAS's AVX2 kernels (what OpenBLAS runs wherever it does
 * not recognise the CPU, or where OPENBLAS_CORETYPE says so) use 256-bit FMAs; CPUs with full
 * 512-bit FMA units (Zen 5, Intel server parts) do twice the work per instruction.
 *
 * The classic packed layout (Goto / BLIS):
 *   for each NC-column block of C        (jc)
 *     for each KC slice of the sum        (pc)  pack op(B)[pc:+kc, jc:+nc] into NR-wide panels
 *       for each MC-row block of C        (ic)  pack op(A)[ic:+mc, pc:+kc] into MR-tall panels
 *         for each NR panel, each MR panel: the MR×NR micro-kernel over kc
 * One B micro-panel (KC × NR floats, 32 KB) stays in L1 while the A block (MC × KC, 168 KB)
 * streams from L2. Packing zero-pads partial panels, so the micro-kernel always runs full size
 * and only the store step looks at the real tile size. */
#include "backend/cpu/cpu.h"

#if (defined(__x86_64__) || defined(__i386__)) && !defined(KD_NO_AVX512)

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/gemm_avx512.h"

#ifndef KD_SGEMM_MC /* overridable for tuning experiments */
#define KD_SGEMM_MC 168
#define KD_SGEMM_NC 3072
#endif
enum {
    MR = KD_SGEMM_MR,  /* rows of the micro-tile (14): 14 × 2 accumulators + 2 B vectors + 1 broadcast = 31 zmm */
    NR = 32,           /* columns of the micro-tile: two zmm */
    KC = KD_SGEMM_KC,  /* depth of one packed slice (256; cpu.h, as the packed-A layout depends on it) */
    MC = KD_SGEMM_MC,  /* rows of a packed A block (a multiple of MR) */
    NC = KD_SGEMM_NC   /* columns of a packed B block */
};

#define PACK_FLOATS ((size_t)KC * NC + (size_t)MC * KC)

/* ---- per-thread packing buffer, freed when the thread exits ---- */

static pthread_key_t g_buf_key;
static int g_buf_key_ok;
static pthread_once_t g_buf_once = PTHREAD_ONCE_INIT;

static void buf_key_init(void) { g_buf_key_ok = pthread_key_create(&g_buf_key, free) == 0; }

static float *pack_buffer(void) {
    pthread_once(&g_buf_once, buf_key_init);
    if (!g_buf_key_ok) return NULL;
    float *p = pthread_getspecific(g_buf_key);
    if (!p) {
        p = aligned_alloc(64, PACK_FLOATS * sizeof(float));
        if (p && pthread_setspecific(g_buf_key, p) != 0) {
            free(p);
            p = NULL;
        }
    }
    return p;
}

/* ---- packing ---- */

/* Both packers write dst[k*W + c] for k < kc and c < W (W = NR for B panels, MR for A panels),
 * with zeros for columns nc <= c < W; stores are masked to W, so W need not be a multiple of 16. */

/* dst[k*W + c] = rows[j0 + c][k0 + k]: rows of the operand run along k (B = Wᵀ, or A untransposed),
 * turned into columns by 16 × 16 register transposes. */
KD_AVX512 static void pack_transposed(float *dst, int W, const kd_gemm_operand *b, int64_t j0, int64_t k0, int nc, int kc) {
    for (int c0 = 0; c0 < W; c0 += 16) {
        __mmask16 wm = kd_tail_mask(W - c0);
        for (int k = 0; k < kc; k += 16) {
            int kk = kc - k < 16 ? kc - k : 16;
            __mmask16 km = kd_tail_mask(kk);
            __m512 r[16];
            for (int c = 0; c < 16; c++)
                r[c] = c0 + c < nc ? kd_load_row16(b, j0 + c0 + c, k0 + k, km) : _mm512_setzero_ps();
            kd_transpose16(r);
            for (int i = 0; i < kk; i++) _mm512_mask_storeu_ps(dst + (int64_t)(k + i) * W + c0, wm, r[i]);
        }
    }
}

/* dst[k*W + c] = src[k*ld + c] (F32 whose rows already run along the panel's width). */
KD_AVX512 static void pack_copy(float *dst, int W, const float *src, int64_t ld, int nc, int kc) {
    for (int c0 = 0; c0 < W; c0 += 16) {
        __mmask16 m = c0 < nc ? kd_tail_mask(nc - c0) : 0, wm = kd_tail_mask(W - c0);
        for (int k = 0; k < kc; k++)
            _mm512_mask_storeu_ps(dst + (int64_t)k * W + c0, wm, _mm512_maskz_loadu_ps(m, src + (int64_t)k * ld + c0));
    }
}

/* op(B)[k0:+kc, j0:+nc] → NR-wide panels, each kc × NR. */
KD_AVX512 static void pack_b(const kd_gemm_operand *b, int64_t k0, int64_t j0, int nc, int kc, float *Bp) {
    for (int q = 0; q < nc; q += NR) {
        int nr = nc - q < NR ? nc - q : NR;
        float *dst = Bp + (int64_t)q * kc;
        if (b->trans)
            pack_transposed(dst, NR, b, j0 + q, k0, nr, kc);
        else
            pack_copy(dst, NR, (const float *)b->p + k0 * b->ld + j0 + q, b->ld, nr, kc);
    }
}

/* op(A)[i0:+mc, k0:+kc] → MR-tall panels, each kc × MR (row r of the panel at k*MR + r). */
KD_AVX512 static void pack_a(const kd_gemm_operand *a, int64_t i0, int64_t k0, int mc, int kc, float *Ap) {
    for (int p = 0; p < mc; p += MR) {
        int mr = mc - p < MR ? mc - p : MR;
        float *dst = Ap + (int64_t)p * kc;
        if (a->trans) /* F32 only: columns of A are contiguous */
            pack_copy(dst, MR, (const float *)a->p + k0 * a->ld + i0 + p, a->ld, mr, kc);
        else
            pack_transposed(dst, MR, a, i0 + p, k0, mr, kc);
    }
}

/* ---- micro-kernel: acc[MR][NR] = Ap · Bp over kc, then C = alpha·acc + beta·C on the mr × nr tile ---- */

KD_AVX512 static void micro_kernel(int kc, const float *Ap, const float *Bp, float *C, int64_t ldc, int mr, int nr,
                                   float alpha, float beta) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    __m512 c80 = c00, c81 = c00, c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
    __m512 cc0 = c00, cc1 = c00, cd0 = c00, cd1 = c00;
#define KD_ROW(r, acc0, acc1)                        \
    do {                                             \
        __m512 a_ = _mm512_set1_ps(Ap[r]);           \
        acc0 = _mm512_fmadd_ps(a_, b0, acc0);        \
        acc1 = _mm512_fmadd_ps(a_, b1, acc1);        \
    } while (0)
#pragma GCC unroll 2
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16);
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
        Ap += MR;
        Bp += NR;
    }
#undef KD_ROW
    __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}, {c60, c61},
                         {c70, c71}, {c80, c81}, {c90, c91}, {ca0, ca1}, {cb0, cb1}, {cc0, cc1}, {cd0, cd1}};
    kd_store_tile(acc, mr, nr, C, ldc, alpha, beta);
}

/* ---- driver ---- */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* a == NULL: A comes already packed in `prepacked` (kd_sgemm_pa_index layout). */
static int sgemm_packed(const kd_gemm_operand *a, const float *prepacked, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K,
                        float alpha, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return 1;
    if (K <= 0 || alpha == 0.0f) { /* C = beta·C, as BLAS does */
        kd_scale_c(M, N, beta, C, ldc);
        return 1;
    }
    float *buf = pack_buffer();
    if (!buf) return 0; /* caller falls back to BLAS */
    float *Bp = buf, *Ap = buf + (size_t)KC * NC;
    for (int64_t jc = 0; jc < N; jc += NC) {
        int nc = (int)min64(NC, N - jc);
        for (int64_t pc = 0; pc < K; pc += KC) {
            int kc = (int)min64(KC, K - pc);
            float beta_k = pc == 0 ? beta : 1.0f; /* later slices accumulate onto the first */
            pack_b(b, pc, jc, nc, kc, Bp);
            for (int64_t ic = 0; ic < M; ic += MC) {
                int mc = (int)min64(MC, M - ic);
                const float *Aic = Ap;
                if (a)
                    pack_a(a, ic, pc, mc, kc, Ap);
                else
                    Aic = prepacked + pc * kd_sgemm_pa_rows(M) + ic * kc;
                for (int jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? nc - jr : NR;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? mc - ir : MR;
                        micro_kernel(kc, Aic + (int64_t)ir * kc, Bp + (int64_t)jr * kc, C + (ic + ir) * ldc + jc + jr,
                                     ldc, mr, nr, alpha, beta_k);
                    }
                }
            }
        }
    }
    return 1;
}

int kd_sgemm_avx512(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    kd_gemm_operand a = {A, lda, trans_a, KD_F32, NULL}, b = {B, ldb, trans_b, KD_F32, NULL};
    return sgemm_packed(&a, NULL, &b, M, N, K, alpha, beta, C, ldc);
}

int kd_sgemm_avx512_half_wt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *W,
                            kd_dtype wdtype, int64_t ldw, float *C, int64_t ldc) {
    kd_gemm_operand a = {A, lda, 0, KD_F32, NULL}, b = {W, ldw, 1, wdtype, NULL};
    return sgemm_packed(&a, NULL, &b, M, N, K, 1.0f, 0.0f, C, ldc);
}

int kd_sgemm_avx512_wa(int64_t M, int64_t N, int64_t K, const void *W, kd_dtype wdtype, int64_t ldw, const float *B,
                       int64_t ldb, float *C, int64_t ldc) {
    kd_gemm_operand a = {W, ldw, 0, wdtype, NULL}, b = {B, ldb, 0, KD_F32, NULL};
    return sgemm_packed(&a, NULL, &b, M, N, K, 1.0f, 0.0f, C, ldc);
}

int kd_sgemm_avx512_op(const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K,
                       float alpha, float beta, float *C, int64_t ldc) {
    return sgemm_packed(a, NULL, b, M, N, K, alpha, beta, C, ldc);
}

int kd_sgemm_avx512_pa(int64_t M, int64_t N, int64_t K, const float *Ap, const float *B, int64_t ldb, float *C,
                       int64_t ldc) {
    kd_gemm_operand b = {B, ldb, 0, KD_F32, NULL};
    return sgemm_packed(NULL, Ap, &b, M, N, K, 1.0f, 0.0f, C, ldc);
}

int kd_cpu_has_avx512(void) {
    /* (vcvtph2ps on zmm, the F16 weight conversion, is part of AVX-512F itself) */
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

#else /* not x86, or KD_NO_AVX512: no AVX-512 kernel; kd_sgemm_1t uses BLAS */

int kd_cpu_has_avx512(void) { return 0; }

int kd_sgemm_avx512(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    return 0;
}

int kd_sgemm_avx512_half_wt(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const void *W,
                            kd_dtype wdtype, int64_t ldw, float *C, int64_t ldc) {
    return 0;
}

int kd_sgemm_avx512_wa(int64_t M, int64_t N, int64_t K, const void *W, kd_dtype wdtype, int64_t ldw, const float *B,
                       int64_t ldb, float *C, int64_t ldc) {
    return 0;
}

int kd_sgemm_avx512_pa(int64_t M, int64_t N, int64_t K, const float *Ap, const float *B, int64_t ldb, float *C,
                       int64_t ldc) {
    return 0;
}

int kd_sgemm_avx512_op(const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K,
                       float alpha, float beta, float *C, int64_t ldc) {
    return 0;
}

#endif
