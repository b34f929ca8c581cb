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

/* The F32 GEMM, whatever the backend's precision. */
static void kd_cpu_gemm_f32(kd_cpu *be, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                            const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                            int64_t ldc) {
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

/* ---- operand GEMM: BF16 mode and Q8_0 weights ---- */

/* One pool task's panel of C through the kernel of the backend's precision. */
static int op_1t(int bf16, const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K,
                 float alpha, float beta, float *C, int64_t ldc) {
    if (bf16 && kd_gemm_bf16_op(a, b, M, N, K, alpha, beta, C, ldc)) return 1;
    return kd_sgemm_avx512_op(a, b, M, N, K, alpha, beta, C, ldc);
}

typedef struct {
    kd_gemm_operand a, b;
    int64_t M, N, K, ldc, panel;
    float alpha, beta;
    float *C;
    int split_n, bf16;
    unsigned char *failed; /* per task: its kernel had no packing buffer */
} op_job;

static void op_task(void *arg, int64_t idx, int tid) {
    op_job *j = arg;
    int64_t p0 = idx * j->panel;
    int ok;
    if (j->split_n) { /* columns p0.. of op(B): storage rows when transposed */
        kd_gemm_operand b = j->b;
        if (b.trans)
            b = kd_gemm_operand_from_row(b, p0);
        else
            b.p = (const float *)b.p + p0;
        ok = op_1t(j->bf16, &j->a, &b, j->M, kd_min64(j->panel, j->N - p0), j->K, j->alpha, j->beta, j->C + p0, j->ldc);
    } else { /* rows p0.. of op(A) */
        kd_gemm_operand a = j->a;
        if (a.trans)
            a.p = (const float *)a.p + p0;
        else
            a = kd_gemm_operand_from_row(a, p0);
        ok = op_1t(j->bf16, &a, &j->b, kd_min64(j->panel, j->M - p0), j->N, j->K, j->alpha, j->beta,
                   j->C + p0 * j->ldc, j->ldc);
    }
    if (!ok) j->failed[idx] = 1;
}

/* Without an AVX-512 kernel (or its buffer): op(A) with a weight dtype is converted to F32 one
 * slab of rows at a time and multiplied by BLAS; F32 operands go straight to BLAS. */
#define OP_SLAB_BYTES ((int64_t)32 << 20)

static kd_status op_fallback(kd_cpu *be, const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N,
                             int64_t K, float alpha, float beta, float *C, int64_t ldc, kd_err *e) {
    if (a->dtype == KD_F32 && b->dtype == KD_F32) {
        kd_cpu_gemm_f32(be, a->trans, b->trans, M, N, K, alpha, a->p, a->ld, b->p, b->ld, beta, C, ldc);
        return KD_OK;
    }
    /* one weight operand: A untransposed (conv) or B transposed (linear), rows along k */
    int w_is_b = b->dtype != KD_F32;
    const kd_gemm_operand *w = w_is_b ? b : a;
    int64_t rows = w_is_b ? N : M;
    int64_t slab = kd_min64(kd_max64(OP_SLAB_BYTES / 4 / K, 16), rows);
    kd_arena_mark m = kd_arena_get_mark(&be->scratch);
    float *ws = kd_arena_floats(&be->scratch, (size_t)(slab * K), e);
    if (!ws) return KD_ERR_OOM;
    kd_tensor wt = {.dtype = w->dtype, .data = (void *)w->p, .scale = w->scale};
    for (int64_t r0 = 0; r0 < rows; r0 += slab) {
        int64_t nr = kd_min64(slab, rows - r0);
        for (int64_t r = 0; r < nr; r++) kd_weight_to_f32(ws + r * K, &wt, (size_t)((r0 + r) * w->ld), (size_t)K);
        if (w_is_b)
            kd_cpu_gemm_f32(be, a->trans, 1, M, nr, K, alpha, a->p, a->ld, ws, K, beta, C + r0, ldc);
        else
            kd_cpu_gemm_f32(be, 0, b->trans, nr, N, K, alpha, ws, K, b->p, b->ld, beta, C + r0 * ldc, ldc);
    }
    kd_arena_release(&be->scratch, m);
    return KD_OK;
}

kd_status kd_gemm_op(kd_cpu *be, const kd_gemm_operand *a, const kd_gemm_operand *b, int64_t M, int64_t N, int64_t K,
                     float alpha, float beta, float *C, int64_t ldc, kd_err *e) {
    if (M <= 0 || N <= 0) return KD_OK;
    pthread_once(&g_gemm_once, gemm_choose);
    if (!g_use_avx512) return op_fallback(be, a, b, M, N, K, alpha, beta, C, ldc, e);
    op_job j = {*a, *b, M, N, K, ldc, 0, alpha, beta, C, N >= M, be->bf16, NULL};
    double flops = 2.0 * (double)M * (double)N * (double)K;
    int threads = be->n_threads == 1 || flops < 4e6 ? 1 : be->n_threads;
    j.panel = j.split_n ? panel_size(N, threads, 32) : panel_size(M, threads, KD_SGEMM_MR);
    int64_t tasks = kd_ceil_div(j.split_n ? N : M, j.panel);
    kd_arena_mark m = kd_arena_get_mark(&be->scratch);
    j.failed = kd_arena_alloc(&be->scratch, (size_t)tasks, e);
    if (!j.failed) return KD_ERR_OOM;
    memset(j.failed, 0, (size_t)tasks);
    kd_pool_run(be->pool, tasks, op_task, &j);
    kd_status s = KD_OK;
    for (int64_t t = 0; t < tasks && s == KD_OK; t++) { /* redo the panels that found no buffer */
        if (!j.failed[t]) continue;
        int64_t p0 = t * j.panel;
        if (j.split_n) {
            kd_gemm_operand bs = b->trans ? kd_gemm_operand_from_row(*b, p0) : *b;
            if (!b->trans) bs.p = (const float *)b->p + p0;
            s = op_fallback(be, a, &bs, M, kd_min64(j.panel, N - p0), K, alpha, beta, C + p0, ldc, e);
        } else {
            kd_gemm_operand as = a->trans ? *a : kd_gemm_operand_from_row(*a, p0);
            if (a->trans) as.p = (const float *)a->p + p0;
            s = op_fallback(be, &as, b, kd_min64(j.panel, M - p0), N, K, alpha, beta, C + p0 * ldc, ldc, e);
        }
    }
    kd_arena_release(&be->scratch, m);
    return s;
}

void kd_cpu_gemm(kd_cpu *be, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                 const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (be->bf16) {
        kd_gemm_operand a = {A, lda, trans_a, KD_F32, NULL}, b = {B, ldb, trans_b, KD_F32, NULL};
        if (kd_gemm_op(be, &a, &b, M, N, K, alpha, beta, C, ldc, NULL) == KD_OK) return;
    }
    kd_cpu_gemm_f32(be, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
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

kd_status kd_gemm_wa(kd_cpu *be, int64_t M, int64_t N, int64_t K, const kd_tensor *Wt, const float *B, int64_t ldb,
                     float *C, int64_t ldc, kd_err *e) {
    const void *W = Wt->data;
    kd_dtype wdtype = Wt->dtype;
    if (be->bf16 || wdtype == KD_Q8_0) {
        kd_gemm_operand a = {W, K, 0, wdtype, Wt->scale}, b = {B, ldb, 0, KD_F32, NULL};
        return kd_gemm_op(be, &a, &b, M, N, K, 1.0f, 0.0f, C, ldc, e);
    }
    pthread_once(&g_gemm_once, gemm_choose);
    if (g_use_avx512 && (wdtype == KD_F16 || wdtype == KD_BF16)) {
        wa_job j = {W, wdtype, B, C, M, N, K, ldb, ldc, 0, N >= M, 0};
        j.panel = j.split_n ? panel_size(N, be->n_threads, 32) : panel_size(M, be->n_threads, 16);
        kd_pool_run(be->pool, kd_ceil_div(j.split_n ? N : M, j.panel), wa_task, &j);
        if (!j.failed) return KD_OK; /* else: no packing buffer; the path below allocates from the arena */
    }
    if (wdtype == KD_F32) {
        kd_cpu_gemm_f32(be, 0, 0, M, N, K, 1.0f, W, K, B, ldb, 0.0f, C, ldc);
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
        kd_cpu_gemm_f32(be, 0, 0, nr, N, K, 1.0f, ws, K, B, ldb, 0.0f, C + r0 * ldc, ldc);
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
    if (be->bf16 || w->dtype == KD_Q8_0) {
        kd_gemm_operand a = {x, K, 0, KD_F32, NULL}, bw = {w->data, K, 1, w->dtype, w->scale};
        KD_TRY(kd_gemm_op(be, &a, &bw, M, N, K, 1.0f, 0.0f, y, N, e));
    } else if (w->dtype == KD_F32) {
        kd_cpu_gemm_f32(be, 0, 1, M, N, K, 1.0f, x, K, (const float *)w->data, K, 0.0f, y, N);
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
