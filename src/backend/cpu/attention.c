/* Multi-head attention, one pool task per (batch, head, block of queries):
 *   S = scale · Q_blk Kᵀ  (BLAS, keys of the "pre" segment first)  → + mask, causal → softmax
 *   O_blk = S · V          (BLAS, accumulating the two segments)
 * Scores live in per-thread scratch of Q_BLOCK × (Lpre + Lkv) floats; nothing of size Lq × Lk is
 * ever materialised, so MoVQ's 4096-token single-head attention stays small. */
#include <math.h>

#include "backend/cpu/cpu.h"

#define Q_BLOCK 64

typedef struct {
    const kd_attn_params *p;
    float *out;
    float *scratch; /* threads × Q_BLOCK × Lk */
    int64_t Lk, n_qblk;
    int bf16;
} attn_job;

/* C = alpha · op(A)·op(B) + beta·C through the backend's precision (A, B F32; one thread). */
static void attn_gemm(int bf16, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (bf16) {
        kd_gemm_operand a = {A, lda, 0, KD_F32, NULL}, b = {B, ldb, tb, KD_F32, NULL};
        if (kd_gemm_bf16_op(&a, &b, M, N, K, alpha, beta, C, ldc)) return;
    }
    kd_sgemm_1t(0, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void attn_task(void *arg, int64_t idx, int tid) {
    const attn_job *j = arg;
    const kd_attn_params *p = j->p;
    int64_t qb = idx % j->n_qblk, bh = idx / j->n_qblk;
    int64_t h = bh % p->heads, b = bh / p->heads;
    int64_t d = p->head_dim, i0 = qb * Q_BLOCK, nq = kd_min64(Q_BLOCK, p->q_len - i0);
    int64_t Lk = j->Lk, Lpre = p->pre_len;
    float *S = j->scratch + (int64_t)tid * Q_BLOCK * Lk;

    const float *q = p->q + (b * p->q_len + i0) * p->q_stride + h * d;
    const float *k = p->k + b * p->kv_len * p->kv_stride + h * d;
    const float *v = p->v + b * p->kv_len * p->kv_stride + h * d;
    if (Lpre) {
        const float *kp = p->k_pre + b * Lpre * p->pre_stride + h * d;
        attn_gemm(j->bf16, 1, nq, Lpre, d, p->scale, q, p->q_stride, kp, p->pre_stride, 0.0f, S, Lk);
    }
    attn_gemm(j->bf16, 1, nq, p->kv_len, d, p->scale, q, p->q_stride, k, p->kv_stride, 0.0f, S + Lpre, Lk);

    for (int64_t r = 0; r < nq; r++) {
        float *row = S + r * Lk;
        int64_t i = i0 + r;
        if (p->mask) {
            const float *mrow = p->mask + b * p->mask_bstride + h * p->mask_hstride + i * p->mask_qstride;
            for (int64_t c = 0; c < Lk; c++) row[c] += mrow[c];
        }
        if (p->causal)
            for (int64_t c = i + 1; c < Lk; c++) row[c] = -INFINITY;
        kd_softmax_row(row, Lk);
    }

    int64_t ld_out = p->heads * d;
    float *o = j->out + (b * p->q_len + i0) * ld_out + h * d;
    float beta = 0.0f;
    if (Lpre) {
        const float *vp = p->v_pre + b * Lpre * p->pre_stride + h * d;
        attn_gemm(j->bf16, 0, nq, d, Lpre, 1.0f, S, Lk, vp, p->pre_stride, 0.0f, o, ld_out);
        beta = 1.0f;
    }
    attn_gemm(j->bf16, 0, nq, d, p->kv_len, 1.0f, S + Lpre, Lk, v, p->kv_stride, beta, o, ld_out);
}

kd_status kd_cpu_attention(kd_cpu *be, float *out, const kd_attn_params *p, kd_err *e) {
    int64_t Lk = p->pre_len + p->kv_len;
    if (Lk <= 0 || p->q_len <= 0) return kd_errf(e, KD_ERR_INVALID_ARG, "attention: empty query or key sequence");
    kd_arena_mark m = kd_arena_get_mark(&be->scratch);
    float *scratch = kd_arena_floats(&be->scratch, (size_t)be->n_threads * Q_BLOCK * (size_t)Lk, e);
    if (!scratch) return KD_ERR_OOM;
    attn_job j = {p, out, scratch, Lk, kd_ceil_div(p->q_len, Q_BLOCK), be->bf16};
    kd_pool_run(be->pool, p->batch * p->heads * j.n_qblk, attn_task, &j);
    kd_arena_release(&be->scratch, m);
    return KD_OK;
}
