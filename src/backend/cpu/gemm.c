/* GEMM and Linear. The single-threaded kernel is ours (sgemm_avx512.c) on AVX-512 CPUs, else
 * BLAS (pinned to one thread); we split C into column (or row) panels, one pool task each, so
 * BLAS threads never compete with the pool. Half-precision weights are converted while packing
 * on the AVX-512 path, in slabs through scratch on the BLAS path. */
#include <cblas.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"

/* Which single-threaded kernel runs: our AVX-512 one where the CPU has AVX-512F, BLAS otherwise.
 * KD_GEMM=blas forces BLAS (to compare, or to rule our kernel out when chasing a difference). */
static int g_use_avx512;
static pthread_once_t g_gemm_once = PTHREAD_ONCE_INIT;

static void gemm_choose(void) {
    const char *env = getenv("KD_GEMM");
    g_use_avx512 = kd_cpu_has_avx512() && !(env && strcmp(env, "blas") == 0);
}

int kd_gemm_uses_avx512(void) {
    pthread_once(&g_gemm_once, gemm_choose);
    return g_use_avx512;
}

const char *kd_gemm_kernel_name(void) {
    pthread_once(&g_gemm_once, gemm_choose);
    return g_use_avx512 ? "avx512" : "blas";
}

void kd_sgemm_1t(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    pthread_once(&g_gemm_once, gemm_choose);
    if (g_use_avx512 && kd_sgemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)M,
                (int)N, (int)K, alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

typedef struct {
    int ta, tb;
    int64_t M, N, K;
    float alpha, beta;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    int64_t panel; /* columns (split_n) or rows per task */
    int split_n;
} gemm_job;

static void gemm_task(void *arg, int64_t idx, int tid) {
    const gemm_job *j = arg;
    int64_t p0 = idx * j->panel;
    if (j->split_n) {
        int64_t n = kd_min64(j->panel, j->N - p0);
        const float *B = j->tb ? j->B + p0 * j->ldb : j->B + p0;
        kd_sgemm_1t(j->ta, j->tb, j->M, n, j->K, j->alpha, j->A, j->lda, B, j->ldb, j->beta, j->C + p0, j->ldc);
    } else {
        int64_t m = kd_min64(j->panel, j->M - p0);
        const float *A = j->ta ? j->A + p0 : j->A + p0 * j->lda;
        kd_sgemm_1t(j->ta, j->tb, m, j->N, j->K, j->alpha, A, j->lda, j->B, j->ldb, j->beta, j->C + p0 * j->ldc,
                    j->ldc);
    }
}

/* Panels: one per thread, rounded to a multiple of `align` (16 for BLAS, whose kernels like
 * aligned widths; 32 = NR for column panels of the AVX-512 kernel). */
static int64_t panel_size(int64_t extent, int threads, int64_t align) {
    int64_t p = kd_ceil_div(extent, threads);
    return kd_ceil_div(p, align) * align;
}

void kd_cpu_gemm(kd_cpu *be, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
             const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    int threads = be->n_threads;
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (threads == 1 || flops < 4e6) {
        kd_sgemm_1t(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_job j = {trans_a, trans_b, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, 0, N >= M};
    j.panel = panel_size(j.split_n ? N : M, threads, 16);
    int64_t tasks = kd_ceil_div(j.split_n ? N : M, j.panel);
    kd_pool_run(be->pool, tasks, gemm_task, &j);
}

/* ---- C = W · B with weights of any dtype (convolutions) ---- */

typedef struct {
    const void *w;
    kd_dtype wdt;
    const float *B;
    float *C;
    int64_t M, N, K, ldb, ldc, panel;
    int split_n, failed;
} wa_job;

static void wa_task(void *arg, int64_t idx, int tid) {
    wa_job *j = arg;
    int64_t p0 = idx * j->panel, esz = (int64_t)kd_dtype_size(j->wdt);
    int ok;
    if (j->split_n)
        ok = kd_sgemm_avx512_wa(j->M, kd_min64(j->panel, j->N - p0), j->K, j->w, j->wdt, j->K, j->B + p0, j->ldb,
                                j->C + p0, j->ldc);
    else
        ok = kd_sgemm_avx512_wa(kd_min64(j->panel, j->M - p0), j->N, j->K, (const char *)j->w + p0 * j->K * esz, j->wdt,
                                j->K, j->B, j->ldb, j->C + p0 * j->ldc, j->ldc);
    if (!ok) j->failed = 1;
}

#define WA_SLAB_BYTES ((int64_t)32 << 20) /* BLAS path: rows of W converted at a time */

kd_status kd_gemm_wa(kd_cpu *be, int64_t M, int64_t N, int64_t K, const void *W, kd_dtype wdtype,
                     const float *B, int64_t ldb, float *C, int64_t ldc, kd_err *e) {
    pthread_once(&g_gemm_once, gemm_choose);
    if (g_use_avx512 && (wdtype == KD_F16 || wdtype == KD_BF16)) {
        wa_job j = {W, wdtype, B, C, M, N, K, ldb, ldc, 0, N >= M, 0};
        j.panel = j.split_n ? panel_size(N, be->n_threads, 32) : panel_size(M, be->n_threads, 16);
        kd_pool_run(be->pool, kd_ceil_div(j.split_n ? N : M, j.panel), wa_task, &j);
        if (!j.failed) return KD_OK; /* else: no packing buffer; the path below allocates from the arena */
    }
    if (wdtype == KD_F32) {
        kd_cpu_gemm(be, 0, 0, M, N, K, 1.0f, W, K, B, ldb, 0.0f, C, ldc);
        return KD_OK;
    }
    int64_t slab = kd_min64(kd_max64(WA_SLAB_BYTES / 4 / K, 16), M);
    kd_arena_mark m = kd_arena_get_mark(&be->scratch);
    float *ws = kd_arena_floats(&be->scratch, (size_t)(slab * K), e);
    if (!ws) return KD_ERR_OOM;
    size_t esz = kd_dtype_size(wdtype);
    for (int64_t r0 = 0; r0 < M; r0 += slab) {
        int64_t nr = kd_min64(slab, M - r0);
        kd_convert_to_f32(ws, (const char *)W + (size_t)(r0 * K) * esz, wdtype, (size_t)(nr * K));
        kd_cpu_gemm(be, 0, 0, nr, N, K, 1.0f, ws, K, B, ldb, 0.0f, C + r0 * ldc, ldc);
    }
    kd_arena_release(&be->scratch, m);
    return KD_OK;
}

/* ---- Linear with f16/bf16 weights (BLAS path): convert panels of output rows into scratch ---- */

#define LIN_PANEL 128 /* weight rows converted at a time: 128 × K floats stays in L2 for K <= 2048 */

typedef struct {
    float *y;
    const float *x;
    int64_t M, N, K;
    const kd_tensor *w;
    float *scratch; /* threads × LIN_PANEL × K */
} lin_job;

static void lin_task(void *arg, int64_t idx, int tid) {
    const lin_job *j = arg;
    int64_t n0 = idx * LIN_PANEL, n = kd_min64(LIN_PANEL, j->N - n0);
    float *wp = j->scratch + (int64_t)tid * LIN_PANEL * j->K;
    size_t esz = kd_dtype_size(j->w->dtype);
    kd_convert_to_f32(wp, (const char *)j->w->data + (size_t)(n0 * j->K) * esz, j->w->dtype, (size_t)(n * j->K));
    kd_sgemm_1t(0, 1, j->M, n, j->K, 1.0f, j->x, j->K, wp, j->K, 0.0f, j->y + n0, j->N);
}

/* AVX-512: the kernel converts F16/BF16 weights while packing them; one panel of output columns
 * per thread, so the activations are packed once per thread rather than once per 128 columns. */
typedef struct {
    float *y;
    const float *x;
    int64_t M, N, K, panel;
    const kd_tensor *w;
    int failed;
} half_job;

static void half_task(void *arg, int64_t idx, int tid) {
    half_job *j = arg;
    int64_t n0 = idx * j->panel, n = kd_min64(j->panel, j->N - n0);
    const char *w = (const char *)j->w->data + (size_t)(n0 * j->K) * kd_dtype_size(j->w->dtype);
    if (!kd_sgemm_avx512_half_wt(j->M, n, j->K, j->x, j->K, w, j->w->dtype, j->K, j->y + n0, j->N)) j->failed = 1;
}

static int linear_half_avx512(kd_cpu *be, float *y, const float *x, int64_t M, const kd_tensor *w) {
    pthread_once(&g_gemm_once, gemm_choose);
    if (!g_use_avx512 || (w->dtype != KD_F16 && w->dtype != KD_BF16)) return 0;
    half_job j = {y, x, M, w->shape[0], w->shape[1], 0, w, 0};
    j.panel = panel_size(j.N, be->n_threads, 32);
    kd_pool_run(be->pool, kd_ceil_div(j.N, j.panel), half_task, &j);
    return !j.failed; /* a packing buffer that could not be allocated: redo it all on the BLAS path */
}

kd_status kd_cpu_linear(kd_cpu *be, float *y, const float *x, int64_t M, const kd_tensor *w, const float *b,
                    kd_err *e) {
    int64_t N = w->shape[0], K = w->shape[1];
    if (w->dtype == KD_F32) {
        kd_cpu_gemm(be, 0, 1, M, N, K, 1.0f, x, K, (const float *)w->data, K, 0.0f, y, N);
    } else if (!linear_half_avx512(be, y, x, M, w)) { /* BLAS: convert panels of weight rows */
        kd_arena_mark m = kd_arena_get_mark(&be->scratch);
        float *scratch = kd_arena_floats(&be->scratch, (size_t)be->n_threads * LIN_PANEL * (size_t)K, e);
        if (!scratch) return KD_ERR_OOM;
        lin_job j = {y, x, M, N, K, w, scratch};
        kd_pool_run(be->pool, kd_ceil_div(N, LIN_PANEL), lin_task, &j);
        kd_arena_release(&be->scratch, m);
    }
    if (b) kd_cpu_add_row_vector(be, y, b, M, N);
    return KD_OK;
}
