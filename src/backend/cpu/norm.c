/* GroupNorm, LayerNorm, softmax. Statistics are accumulated in double and use two passes
 * (mean, then squared deviations), so large offsets (x·3 + 100) keep full f32 accuracy. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/vecmath.h"

typedef struct {
    float *y;
    const float *x;
    int64_t C, HW;
    int groups;
    float eps;
    const float *gamma, *beta;
    int silu;
} gn_job;

/* Sum of x[i] (or of (x[i]-m)² when sq) over n values: 16 float lanes within blocks of 1024
 * (vectorises without -ffast-math), blocks added in double. Two passes keep full precision on
 * inputs with a large mean. */
#define LANES 16
#define BLOCK 1024
typedef float kd_v16 __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t kd_v16i __attribute__((vector_size(LANES * sizeof(int32_t))));

static double block_sum(const float *x, int64_t n, float m, int sq) {
    double total = 0;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        int64_t b1 = kd_min64(b0 + BLOCK, n), i = b0;
        float acc[LANES] = {0};
        for (; i + LANES <= b1; i += LANES)
            for (int l = 0; l < LANES; l++) {
                float d = x[i + l] - m;
                acc[l] += sq ? d * d : x[i + l];
            }
        float tail = 0;
        for (; i < b1; i++) tail += sq ? (x[i] - m) * (x[i] - m) : x[i];
        double s = tail;
        for (int l = 0; l < LANES; l++) s += acc[l];
        total += s;
    }
    return total;
}

/* Mean and 1/std (biased variance) of n values. */
static void moments(const float *x, int64_t n, float eps, float *mean_out, float *rstd_out) {
    float mean = (float)(block_sum(x, n, 0.0f, 0) / (double)n);
    double var = block_sum(x, n, mean, 1) / (double)n;
    *mean_out = mean;
    *rstd_out = (float)(1.0 / sqrt(var + eps));
}

/* The same in one pass over x (GroupNorm's groups are large: one read less of every activation).
 * Sums of d = x − x[0] and d², shifted by a sample so that a large common offset (x·3 + 100)
 * does not cancel: var = E[d²] − E[d]², with |E[d]| of the order of the spread. Float lanes
 * within blocks of 1024, blocks added in double, as block_sum. */
static void moments_1pass(const float *x, int64_t n, float eps, float *mean_out, float *rstd_out) {
    const float c = x[0];
    double s1 = 0, s2 = 0;
    for (int64_t b0 = 0; b0 < n; b0 += BLOCK) {
        int64_t b1 = kd_min64(b0 + BLOCK, n), i = b0;
        kd_v16 a1 = {0}, a2 = {0}, vc = c - (kd_v16){0}; /* GCC/Clang vector extension: 16 lanes in registers */
        for (; i + LANES <= b1; i += LANES) {
            kd_v16 v;
            memcpy(&v, x + i, sizeof v);
            kd_v16 d = v - vc;
            a1 += d;
            a2 += d * d;
        }
        double t1 = 0, t2 = 0;
        for (; i < b1; i++) {
            float d = x[i] - c;
            t1 += d;
            t2 += (double)d * d;
        }
        for (int l = 0; l < LANES; l++) t1 += a1[l], t2 += a2[l];
        s1 += t1;
        s2 += t2;
    }
    double m = s1 / (double)n, var = s2 / (double)n - m * m;
    if (var < 0) var = 0;
    *mean_out = (float)((double)c + m);
    *rstd_out = (float)(1.0 / sqrt(var + eps));
}

static void gn_task(void *arg, int64_t bg, int tid) {
    const gn_job *j = arg;
    int64_t cpg = j->C / j->groups;
    int64_t c0 = (bg % j->groups) * cpg;
    int64_t b = bg / j->groups;
    const float *x = j->x + (b * j->C + c0) * j->HW;
    float *y = j->y + (b * j->C + c0) * j->HW;
    float mean, rstd;
    moments_1pass(x, cpg * j->HW, j->eps, &mean, &rstd);
    for (int64_t c = 0; c < cpg; c++) {
        float g = j->gamma ? j->gamma[c0 + c] : 1.0f, bt = j->beta ? j->beta[c0 + c] : 0.0f;
        /* (x - mean)·sc + beta, not x·sc + (beta - mean·sc): the latter cancels catastrophically
         * when |mean| >> std. */
        float sc = rstd * g;
        const float *xc = x + c * j->HW;
        float *restrict yc = y + c * j->HW;
        if (j->silu)
            for (int64_t i = 0; i < j->HW; i++) {
                float v = (xc[i] - mean) * sc + bt;
                yc[i] = v * kd_sigmoidf(v);
            }
        else
            for (int64_t i = 0; i < j->HW; i++) yc[i] = (xc[i] - mean) * sc + bt;
    }
}

static void group_norm_run(kd_cpu *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                           float eps, const float *gamma, const float *beta, int silu) {
    gn_job j = {y, x, C, HW, groups, eps, gamma, beta, silu};
    kd_pool_run(be->pool, B * groups, gn_task, &j);
}

void kd_cpu_group_norm(kd_cpu *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                   float eps, const float *gamma, const float *beta) {
    group_norm_run(be, y, x, B, C, HW, groups, eps, gamma, beta, 0);
}

void kd_cpu_group_norm_silu(kd_cpu *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                        float eps, const float *gamma, const float *beta) {
    group_norm_run(be, y, x, B, C, HW, groups, eps, gamma, beta, 1);
}

typedef struct {
    float *y;
    const float *x;
    int64_t rows, dim;
    float eps;
    const float *gamma, *beta;
} ln_job;

#define ROW_BLOCK 16

static void ln_task(void *arg, int64_t blk, int tid) {
    const ln_job *j = arg;
    int64_t r1 = kd_min64((blk + 1) * ROW_BLOCK, j->rows);
    for (int64_t r = blk * ROW_BLOCK; r < r1; r++) {
        const float *x = j->x + r * j->dim;
        float *restrict y = j->y + r * j->dim;
        float mean, rstd;
        moments(x, j->dim, j->eps, &mean, &rstd);
        for (int64_t i = 0; i < j->dim; i++) {
            float v = (x[i] - mean) * rstd;
            y[i] = v * (j->gamma ? j->gamma[i] : 1.0f) + (j->beta ? j->beta[i] : 0.0f);
        }
    }
}

void kd_cpu_layer_norm(kd_cpu *be, float *y, const float *x, int64_t rows, int64_t dim, float eps,
                   const float *gamma, const float *beta) {
    ln_job j = {y, x, rows, dim, eps, gamma, beta};
    kd_pool_run(be->pool, kd_ceil_div(rows, ROW_BLOCK), ln_task, &j);
}

/* T5LayerNorm: y = x · rsqrt(mean(x²) + eps) · gamma, the mean of squares in float32. */
static void rms_task(void *arg, int64_t blk, int tid) {
    const ln_job *j = arg;
    int64_t r1 = kd_min64((blk + 1) * ROW_BLOCK, j->rows);
    for (int64_t r = blk * ROW_BLOCK; r < r1; r++) {
        const float *x = j->x + r * j->dim;
        float *restrict y = j->y + r * j->dim;
        double ss = 0.0;
        for (int64_t i = 0; i < j->dim; i++) ss += (double)x[i] * x[i];
        float rs = 1.0f / sqrtf((float)(ss / (double)j->dim) + j->eps);
        for (int64_t i = 0; i < j->dim; i++) y[i] = x[i] * rs * (j->gamma ? j->gamma[i] : 1.0f);
    }
}

void kd_cpu_rms_norm(kd_cpu *be, float *y, const float *x, int64_t rows, int64_t dim, float eps, const float *gamma) {
    ln_job j = {y, x, rows, dim, eps, gamma, NULL};
    kd_pool_run(be->pool, kd_ceil_div(rows, ROW_BLOCK), rms_task, &j);
}

/* One row in place. Exposed to attention.c through cpu.h-less linkage. */
/* Max, exp and sum each in their own loop so that every one vectorises without -ffast-math
 * (the reductions keep 16 lanes, added at the end). */
void kd_softmax_row(float *x, int64_t n) {
    kd_v16 lm = -INFINITY - (kd_v16){0};
    float m = -INFINITY;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES) {
        kd_v16 v;
        memcpy(&v, x + i, sizeof v);
        kd_v16i gt = v > lm; /* lanes all-ones where v is larger */
        lm = (kd_v16)(((kd_v16i)v & gt) | ((kd_v16i)lm & ~gt));
    }
    for (int l = 0; l < LANES; l++) m = lm[l] > m ? lm[l] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    if (m == -INFINITY) { /* fully masked row */
        for (i = 0; i < n; i++) x[i] = 0.0f;
        return;
    }
    for (i = 0; i < n; i++) x[i] = kd_expf(x[i] - m);
    kd_v16 acc = {0};
    for (i = 0; i + LANES <= n; i += LANES) {
        kd_v16 v;
        memcpy(&v, x + i, sizeof v);
        acc += v;
    }
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += x[i];
    float inv = 1.0f / s;
    for (i = 0; i < n; i++) x[i] *= inv;
}

typedef struct {
    float *x;
    int64_t rows, n;
} sm_job;

static void sm_task(void *arg, int64_t blk, int tid) {
    const sm_job *j = arg;
    int64_t r1 = kd_min64((blk + 1) * ROW_BLOCK, j->rows);
    for (int64_t r = blk * ROW_BLOCK; r < r1; r++) kd_softmax_row(j->x + r * j->n, j->n);
}

void kd_cpu_softmax(kd_cpu *be, float *x, int64_t rows, int64_t n) {
    sm_job j = {x, rows, n};
    kd_pool_run(be->pool, kd_ceil_div(rows, ROW_BLOCK), sm_task, &j);
}
