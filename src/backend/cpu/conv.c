/* conv2d as im2col + GEMM.
 *
 * y_b[Cout, P] = W[Cout, K] · col_b[K, P]   with K = Cin·kh·kw and P = Ho·Wo.
 * A 1×1 stride-1 unpadded conv needs no col buffer (col = x). Otherwise col is built for a chunk
 * of output pixels at a time, sized so the buffer stays around COL_BUDGET bytes while each GEMM
 * still sees hundreds of columns (small panels make BLAS re-pack the weights too often).
 * The im2col fill and the GEMM are each spread over the pool. F16/BF16 weights are read as they
 * are: converted while the GEMM packs them (kd_gemm_wa) or inside the Winograd weight transform. */
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/winograd.h"
#include "backend/ops.h"

#define COL_BUDGET ((int64_t)24 << 20)
#define WINO_MIN_TILES 100
/* F(4×4, 3×3) wins only with many tiles AND wide channels (its 6×6 transforms cost more per tile;
 * measured: U-Net 64² (384 ch) 1.2× and 32² (768 ch) 1.1× faster than F(2×2); 16² and MoVQ's 128-channel maps
 * slower). */
#define WINO43_MIN_TILES 128
#define WINO43_MIN_CHANNELS 256

typedef struct {
    const float *x;    /* images [B, Cin, H, W] */
    float *col;        /* [K, ld]: image b's pixels p0 .. p0+n-1 at columns b·n .. */
    int64_t Cin, H, W, Wo, p0, n, B, ld;
    int kh, kw, stride, pad_t, pad_l;
} im2col_job;

/* One row of col (input channel ci at kernel offset ky, kx) for output pixels p0 .. p0+n-1. */
static void im2col_row(const im2col_job *j, const float *xc, int ky, int kx, float *dst) {
    int64_t p = j->p0, end = j->p0 + j->n;
    while (p < end) {
        int64_t oy = p / j->Wo, ox0 = p % j->Wo;
        int64_t ox1 = kd_min64(j->Wo, ox0 + (end - p)); /* rest of this output row inside the chunk */
        int64_t iy = oy * j->stride - j->pad_t + ky;
        int64_t cnt = ox1 - ox0;
        if (iy < 0 || iy >= j->H) {
            memset(dst, 0, (size_t)cnt * sizeof(float));
        } else {
            const float *xr = xc + iy * j->W;
            for (int64_t ox = ox0; ox < ox1; ox++) {
                int64_t ix = ox * j->stride - j->pad_l + kx;
                dst[ox - ox0] = (ix >= 0 && ix < j->W) ? xr[ix] : 0.0f;
            }
        }
        dst += cnt;
        p += cnt;
    }
}

static void im2col_task(void *arg, int64_t r, int tid) {
    const im2col_job *j = arg;
    int64_t ci = r / (j->kh * j->kw);
    int ky = (int)(r / j->kw % j->kh), kx = (int)(r % j->kw);
    for (int64_t b = 0; b < j->B; b++) {
        const float *xc = j->x + (b * j->Cin + ci) * j->H * j->W;
        im2col_row(j, xc, ky, kx, j->col + r * j->ld + b * j->n);
    }
}

typedef struct {
    float *y;
    const float *b;
    int64_t P;
} bias_job;

static void bias_task(void *arg, int64_t c, int tid) {
    const bias_job *j = arg;
    float *restrict y = j->y + c * j->P;
    float v = j->b[c];
    for (int64_t i = 0; i < j->P; i++) y[i] += v;
}

/* Winograd pays off once there are enough tiles for its GEMMs to be wide; at 8×8 maps the im2col
 * GEMM is faster (measured in bench/, see docs/NOTES.md). KD_CONV_ALGO=im2col|winograd|winograd43
 * forces one path (for benchmarks and tests); the backend reads it once, at init. */
enum { ALGO_IM2COL, ALGO_WINO23, ALGO_WINO43 };

static int pick_algo(kd_conv_algo force, int bf16, int kh, int kw, const kd_conv2d_params *p, int64_t B,
                     int64_t Cin, int64_t Cout, int64_t Ho, int64_t Wo) {
    if (kh != 3 || kw != 3 || p->stride != 1) return ALGO_IM2COL;
    if (force == KD_CONV_IM2COL) return ALGO_IM2COL;
    if (force == KD_CONV_WINO23) return ALGO_WINO23;
    if (force == KD_CONV_WINO43) return ALGO_WINO43;
    /* BF16: F(4×4) would run F32 GEMMs (winograd.c); F(2×2) with BF16 operands does fewer F32-rate
     * multiplies (16 per 4 outputs at twice the rate vs 36 per 16) and its error stays small. */
    if (!bf16 && B * ((Ho + 3) / 4) * ((Wo + 3) / 4) >= WINO43_MIN_TILES && Cin >= WINO43_MIN_CHANNELS &&
        Cout >= WINO43_MIN_CHANNELS)
        return ALGO_WINO43;
    return B * ((Ho + 1) / 2) * ((Wo + 1) / 2) >= WINO_MIN_TILES ? ALGO_WINO23 : ALGO_IM2COL;
}

/* Small maps (the deep U-Net levels: 8×8, 4×4) with batch > 1: one GEMM over the columns of all
 * images, so the weights (up to 27648 × 1536 floats) are streamed and packed once, not per image.
 * tmp[Cout, B·P] is then scattered to y[b, Cout, P]. */
typedef struct {
    float *y;
    const float *tmp, *bias;
    int64_t y_bstride, B, P;
} scatter_job;

static void scatter_task(void *arg, int64_t co, int tid) {
    const scatter_job *j = arg;
    float v = j->bias ? j->bias[co] : 0.0f;
    for (int64_t b = 0; b < j->B; b++) {
        const float *src = j->tmp + (co * j->B + b) * j->P;
        float *dst = j->y + b * j->y_bstride + co * j->P;
        for (int64_t i = 0; i < j->P; i++) dst[i] = src[i] + v;
    }
}

static kd_status conv_merged(kd_cpu *be, float *y, int64_t y_bstride, const float *x, int64_t B, int64_t Cin,
                             int64_t H, int64_t W, const kd_tensor *w, int64_t Cout, int kh, int kw,
                             const float *bias, const kd_conv2d_params *p, int64_t Wo, int64_t P, kd_err *e) {
    int64_t K = Cin * kh * kw, N = B * P;
    kd_arena_mark m = kd_arena_get_mark(&be->scratch);
    float *col = kd_arena_floats(&be->scratch, (size_t)(K * N), e);
    float *tmp = col ? kd_arena_floats(&be->scratch, (size_t)(Cout * N), e) : NULL;
    if (!tmp) return KD_ERR_OOM;
    im2col_job j = {x, col, Cin, H, W, Wo, 0, P, B, N, kh, kw, p->stride, p->pad_top, p->pad_left};
    kd_pool_run(be->pool, K, im2col_task, &j);
    kd_status s = kd_gemm_wa(be, Cout, N, K, w, col, N, tmp, N, e);
    if (s == KD_OK) {
        scatter_job sj = {y, tmp, bias, y_bstride, B, P};
        kd_pool_run(be->pool, Cout, scatter_task, &sj);
    }
    kd_arena_release(&be->scratch, m);
    return s;
}

#define MERGE_MAX_COLUMNS 1024

/* Weights w[Cout, K] (F32, F16, BF16 or Q8_0); output channel planes at y + b·y_bstride + c·P. */
static kd_status conv_impl(kd_cpu *be, float *y, int64_t y_bstride, const float *x, int64_t B, int64_t Cin,
                           int64_t H, int64_t W, const kd_tensor *w, int64_t Cout, int kh, int kw,
                           const float *bias, const kd_conv2d_params *p, int64_t Ho, int64_t Wo, kd_err *e) {
    int64_t P = Ho * Wo, K = Cin * kh * kw;
    int algo = pick_algo(be->conv_algo, be->bf16, kh, kw, p, B, Cin, Cout, Ho, Wo);
    if (algo == ALGO_WINO43)
        return kd_conv3x3_winograd43(be, y, y_bstride, x, B, Cin, H, W, w, Cout, bias, p->pad_top, p->pad_left,
                                     Ho, Wo, e);
    if (algo == ALGO_WINO23)
        return kd_conv3x3_winograd(be, y, y_bstride, x, B, Cin, H, W, w, Cout, bias, p->pad_top, p->pad_left, Ho,
                                   Wo, e);
    if (B > 1 && B * P <= MERGE_MAX_COLUMNS)
        return conv_merged(be, y, y_bstride, x, B, Cin, H, W, w, Cout, kh, kw, bias, p, Wo, P, e);
    int direct = kh == 1 && kw == 1 && p->stride == 1 && !p->pad_top && !p->pad_bottom && !p->pad_left &&
                 !p->pad_right;
    for (int64_t b = 0; b < B; b++) {
        const float *xb = x + b * Cin * H * W;
        float *yb = y + b * y_bstride;
        if (direct) {
            kd_status s = kd_gemm_wa(be, Cout, P, K, w, xb, P, yb, P, e);
            if (s != KD_OK) return s;
        } else {
            int64_t n = kd_max64(COL_BUDGET / 4 / K, 256);
            n = n >= P ? P : n / 16 * 16;
            kd_arena_mark m = kd_arena_get_mark(&be->scratch);
            float *col = kd_arena_floats(&be->scratch, (size_t)(K * n), e);
            if (!col) return KD_ERR_OOM;
            for (int64_t p0 = 0; p0 < P; p0 += n) {
                int64_t nn = kd_min64(n, P - p0);
                im2col_job j = {xb, col, Cin, H, W, Wo, p0, nn, 1, nn, kh, kw, p->stride, p->pad_top, p->pad_left};
                kd_pool_run(be->pool, K, im2col_task, &j);
                kd_status s = kd_gemm_wa(be, Cout, nn, K, w, col, nn, yb + p0, P, e);
                if (s != KD_OK) {
                    kd_arena_release(&be->scratch, m);
                    return s;
                }
            }
            kd_arena_release(&be->scratch, m);
        }
        if (bias) {
            bias_job bj = {yb, bias, P};
            kd_pool_run(be->pool, Cout, bias_task, &bj);
        }
    }
    return KD_OK;
}

kd_status kd_cpu_conv2d(kd_cpu *be, float *y, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                    const kd_tensor *w, const float *b, const kd_conv2d_params *p, kd_err *e) {
    int64_t Cout = w->shape[0];
    int kh = (int)w->shape[2], kw = (int)w->shape[3];
    int64_t Ho = kd_conv2d_out_dim(H, kh, p->stride, p->pad_top, p->pad_bottom);
    int64_t Wo = kd_conv2d_out_dim(W, kw, p->stride, p->pad_left, p->pad_right);
    if (Ho <= 0 || Wo <= 0 || w->shape[1] != Cin)
        return kd_errf(e, KD_ERR_SHAPE, "conv2d: input [%lld, %lld, %lld, %lld] does not fit weight [%lld, %lld, %d, %d]",
                       (long long)B, (long long)Cin, (long long)H, (long long)W, (long long)Cout,
                       (long long)w->shape[1], kh, kw);
    return conv_impl(be, y, Cout * Ho * Wo, x, B, Cin, H, W, w, Cout, kh, kw, b, p, Ho, Wo, e);
}
