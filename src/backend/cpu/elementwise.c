/* Element-wise ops, layout changes, resampling and the timestep embedding. */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/vecmath.h"

/* ---- a parallel "map" over a flat range, in chunks ---- */

typedef struct {
    float *y;
    const float *a, *b;
    float s, t;
    int64_t n;
    int kind;
} map_job;

enum { MAP_SILU, MAP_GELU, MAP_QUICK_GELU, MAP_GELU_TANH, MAP_ADD, MAP_MUL, MAP_SCALE_SHIFT };

static void map_range(const map_job *j, int64_t i0, int64_t i1) {
    float *restrict y = j->y;
    const float *a = j->a, *b = j->b;
    switch (j->kind) {
    case MAP_SILU:
        for (int64_t i = i0; i < i1; i++) y[i] = a[i] * kd_sigmoidf(a[i]);
        break;
    case MAP_GELU:
        for (int64_t i = i0; i < i1; i++) y[i] = 0.5f * a[i] * (1.0f + kd_erff(a[i] * 0.70710678118654752f));
        break;
    case MAP_QUICK_GELU:
        for (int64_t i = i0; i < i1; i++) y[i] = a[i] * kd_sigmoidf(1.702f * a[i]);
        break;
    case MAP_GELU_TANH:
        for (int64_t i = i0; i < i1; i++) {
            float x = a[i], u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            y[i] = 0.5f * x * (1.0f + kd_tanhf(u));
        }
        break;
    case MAP_ADD:
        for (int64_t i = i0; i < i1; i++) y[i] = a[i] + b[i];
        break;
    case MAP_MUL:
        for (int64_t i = i0; i < i1; i++) y[i] = a[i] * b[i];
        break;
    case MAP_SCALE_SHIFT:
        for (int64_t i = i0; i < i1; i++) y[i] = a[i] * j->s + j->t;
        break;
    }
}

#define MAP_CHUNK 16384

static void map_task(void *arg, int64_t idx, int tid) {
    const map_job *j = arg;
    int64_t i0 = idx * MAP_CHUNK, i1 = i0 + MAP_CHUNK;
    map_range(j, i0, i1 < j->n ? i1 : j->n);
}

static void map_run(kd_cpu *be, map_job *j) {
    int64_t tasks = (j->n + MAP_CHUNK - 1) / MAP_CHUNK;
    kd_pool_run(be->pool, tasks, map_task, j);
}

void kd_cpu_silu(kd_cpu *be, float *y, const float *x, int64_t n) {
    map_job j = {.y = y, .a = x, .n = n, .kind = MAP_SILU};
    map_run(be, &j);
}
void kd_cpu_gelu(kd_cpu *be, float *y, const float *x, int64_t n) {
    map_job j = {.y = y, .a = x, .n = n, .kind = MAP_GELU};
    map_run(be, &j);
}
void kd_cpu_quick_gelu(kd_cpu *be, float *y, const float *x, int64_t n) {
    map_job j = {.y = y, .a = x, .n = n, .kind = MAP_QUICK_GELU};
    map_run(be, &j);
}
void kd_cpu_gelu_tanh(kd_cpu *be, float *y, const float *x, int64_t n) {
    map_job j = {.y = y, .a = x, .n = n, .kind = MAP_GELU_TANH};
    map_run(be, &j);
}
void kd_cpu_add(kd_cpu *be, float *y, const float *a, const float *b, int64_t n) {
    map_job j = {.y = y, .a = a, .b = b, .n = n, .kind = MAP_ADD};
    map_run(be, &j);
}
void kd_cpu_mul(kd_cpu *be, float *y, const float *a, const float *b, int64_t n) {
    map_job j = {.y = y, .a = a, .b = b, .n = n, .kind = MAP_MUL};
    map_run(be, &j);
}
void kd_cpu_scale_shift(kd_cpu *be, float *y, const float *x, float s, float t, int64_t n) {
    map_job j = {.y = y, .a = x, .s = s, .t = t, .n = n, .kind = MAP_SCALE_SHIFT};
    map_run(be, &j);
}

void kd_cpu_add_row_vector(kd_cpu *be, float *x, const float *b, int64_t rows, int64_t n) {
    (void)be;
    for (int64_t r = 0; r < rows; r++) {
        float *restrict xr = x + r * n;
        for (int64_t i = 0; i < n; i++) xr[i] += b[i];
    }
}

typedef struct {
    float *x;
    const float *b;
    int64_t HW;
} chan_job;

static void chan_task(void *arg, int64_t bc, int tid) {
    chan_job *j = arg;
    float *restrict p = j->x + bc * j->HW;
    float v = j->b[bc];
    for (int64_t i = 0; i < j->HW; i++) p[i] += v;
}

void kd_cpu_add_channel_vector(kd_cpu *be, float *x, const float *b, int64_t B, int64_t C, int64_t HW) {
    chan_job j = {x, b, HW};
    kd_pool_run(be->pool, B * C, chan_task, &j);
}

/* ---- layout ---- */

void kd_cpu_concat_dim1(float *y, const float *a, int64_t Xa, const float *b, int64_t Xb, int64_t B, int64_t inner) {
    for (int64_t n = 0; n < B; n++) {
        memcpy(y, a + n * Xa * inner, (size_t)(Xa * inner) * sizeof(float));
        y += Xa * inner;
        memcpy(y, b + n * Xb * inner, (size_t)(Xb * inner) * sizeof(float));
        y += Xb * inner;
    }
}

typedef struct {
    float *y;
    const float *x;
    int64_t rows, cols;
} tr_job;

#define TR_TILE 32

static void transpose_task(void *arg, int64_t r, int tid) {
    const tr_job *j = arg;
    const float *x = j->x + r * j->rows * j->cols;
    float *y = j->y + r * j->rows * j->cols;
    for (int64_t i0 = 0; i0 < j->rows; i0 += TR_TILE)
        for (int64_t c0 = 0; c0 < j->cols; c0 += TR_TILE) {
            int64_t i1 = i0 + TR_TILE < j->rows ? i0 + TR_TILE : j->rows;
            int64_t c1 = c0 + TR_TILE < j->cols ? c0 + TR_TILE : j->cols;
            for (int64_t i = i0; i < i1; i++)
                for (int64_t c = c0; c < c1; c++) y[c * j->rows + i] = x[i * j->cols + c];
        }
}

void kd_cpu_transpose_last2(kd_cpu *be, float *y, const float *x, int64_t R, int64_t rows, int64_t cols) {
    tr_job j = {y, x, rows, cols};
    kd_pool_run(be->pool, R, transpose_task, &j);
}

/* ---- resampling ---- */

typedef struct {
    float *y;
    const float *x;
    int64_t H, W, Ho, Wo;
    const int64_t *src_x; /* for resize */
} rs_job;

static void up2_task(void *arg, int64_t p, int tid) {
    const rs_job *j = arg;
    const float *x = j->x + p * j->H * j->W;
    float *y = j->y + p * 4 * j->H * j->W;
    int64_t W2 = 2 * j->W;
    for (int64_t i = 0; i < j->H; i++) {
        float *r0 = y + (2 * i) * W2;
        const float *xr = x + i * j->W;
        for (int64_t k = 0; k < j->W; k++) r0[2 * k] = r0[2 * k + 1] = xr[k];
        memcpy(r0 + W2, r0, (size_t)W2 * sizeof(float));
    }
}

void kd_cpu_upsample_nearest2x(kd_cpu *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W) {
    rs_job j = {.y = y, .x = x, .H = H, .W = W};
    kd_pool_run(be->pool, planes, up2_task, &j);
}

/* PyTorch's nearest (not nearest-exact): src = min(floor(dst · (in/out) as float), in-1). */
static int64_t nearest_src(int64_t dst, int64_t in, int64_t out) {
    float scale = (float)in / (float)out;
    int64_t s = (int64_t)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

static void resize_task(void *arg, int64_t p, int tid) {
    const rs_job *j = arg;
    const float *x = j->x + p * j->H * j->W;
    float *y = j->y + p * j->Ho * j->Wo;
    for (int64_t i = 0; i < j->Ho; i++) {
        const float *xr = x + nearest_src(i, j->H, j->Ho) * j->W;
        for (int64_t k = 0; k < j->Wo; k++) y[i * j->Wo + k] = xr[j->src_x[k]];
    }
}

void kd_cpu_resize_nearest(kd_cpu *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W, int64_t Ho,
                       int64_t Wo) {
    /* column map on the stack in chunks would complicate things; sizes here are image sizes */
    kd_arena_mark m = kd_arena_get_mark(&be->scratch);
    int64_t *src_x = kd_arena_alloc(&be->scratch, (size_t)Wo * sizeof(int64_t), NULL);
    if (!src_x) { /* out of memory for a few KB: fall back to computing per element */
        for (int64_t p = 0; p < planes; p++)
            for (int64_t i = 0; i < Ho; i++)
                for (int64_t k = 0; k < Wo; k++)
                    y[(p * Ho + i) * Wo + k] = x[(p * H + nearest_src(i, H, Ho)) * W + nearest_src(k, W, Wo)];
        return;
    }
    for (int64_t k = 0; k < Wo; k++) src_x[k] = nearest_src(k, W, Wo);
    rs_job j = {.y = y, .x = x, .H = H, .W = W, .Ho = Ho, .Wo = Wo, .src_x = src_x};
    kd_pool_run(be->pool, planes, resize_task, &j);
    kd_arena_release(&be->scratch, m);
}

static void pool2_task(void *arg, int64_t p, int tid) {
    const rs_job *j = arg;
    const float *x = j->x + p * j->H * j->W;
    float *y = j->y + p * j->Ho * j->Wo;
    for (int64_t i = 0; i < j->Ho; i++) {
        const float *r0 = x + 2 * i * j->W, *r1 = r0 + j->W;
        for (int64_t k = 0; k < j->Wo; k++)
            y[i * j->Wo + k] = (r0[2 * k] + r0[2 * k + 1] + r1[2 * k] + r1[2 * k + 1]) * 0.25f;
    }
}

void kd_cpu_avg_pool2x2(kd_cpu *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W) {
    rs_job j = {.y = y, .x = x, .H = H, .W = W, .Ho = H / 2, .Wo = W / 2};
    kd_pool_run(be->pool, planes, pool2_task, &j);
}

/* ---- timestep embedding ---- */

void kd_cpu_timestep_embedding(float *y, const float *t, int64_t B, int dim, int flip_sin_to_cos,
                           float downscale_freq_shift, float max_period) {
    int half = dim / 2;
    /* Same float32 op order as diffusers: exponent = -ln(P)·i, / (half - shift), exp, · t. */
    float neg_log_p = (float)-log((double)max_period);
    float denom = (float)half - downscale_freq_shift;
    for (int64_t n = 0; n < B; n++) {
        float *row = y + n * dim;
        for (int i = 0; i < half; i++) {
            float freq = expf((neg_log_p * (float)i) / denom);
            float a = t[n] * freq;
            float s = sinf(a), c = cosf(a);
            row[i] = flip_sin_to_cos ? c : s;
            row[half + i] = flip_sin_to_cos ? s : c;
        }
        if (dim % 2) row[dim - 1] = 0.0f;
    }
}

/* ---- fused multiply-add (SpatialNorm's norm·conv_y(z) + conv_b(z), FiLM) ---- */

typedef struct {
    float *y;
    const float *a, *b, *c;
    int64_t n;
    int silu;
} fma_job;

static void fma_task(void *arg, int64_t idx, int tid) {
    const fma_job *j = arg;
    int64_t i1 = kd_min64((idx + 1) * MAP_CHUNK, j->n);
    float *restrict y = j->y;
    if (j->silu)
        for (int64_t i = idx * MAP_CHUNK; i < i1; i++) {
            float v = j->a[i] * j->b[i] + j->c[i];
            y[i] = v * kd_sigmoidf(v);
        }
    else
        for (int64_t i = idx * MAP_CHUNK; i < i1; i++) y[i] = j->a[i] * j->b[i] + j->c[i];
}

void kd_cpu_mul_add(kd_cpu *be, float *y, const float *a, const float *b, const float *c, int64_t n, int silu) {
    fma_job j = {y, a, b, c, n, silu};
    kd_pool_run(be->pool, kd_ceil_div(n, MAP_CHUNK), fma_task, &j);
}

/* ---- FiLM: x[B, C, HW] = x·(1 + scale[b, c]) + shift[b, c], optional SiLU ---- */

typedef struct {
    float *x;
    const float *ss;
    int64_t C, HW;
    int silu;
} film_job;

static void film_task(void *arg, int64_t bc, int tid) {
    const film_job *j = arg;
    int64_t b = bc / j->C, c = bc % j->C;
    float s = 1.0f + j->ss[b * 2 * j->C + c], t = j->ss[b * 2 * j->C + j->C + c];
    float *restrict p = j->x + bc * j->HW;
    if (j->silu)
        for (int64_t i = 0; i < j->HW; i++) {
            float v = p[i] * s + t;
            p[i] = v * kd_sigmoidf(v);
        }
    else
        for (int64_t i = 0; i < j->HW; i++) p[i] = p[i] * s + t;
}

void kd_cpu_film(kd_cpu *be, float *x, const float *scale_shift, int64_t B, int64_t C, int64_t HW, int silu) {
    film_job j = {x, scale_shift, C, HW, silu};
    kd_pool_run(be->pool, B * C, film_task, &j);
}
