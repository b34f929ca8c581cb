#ifndef KD_CPU_WINOGRAD_H
#define KD_CPU_WINOGRAD_H

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/tensor.h"

/* y[B,Cout,Ho,Wo] (image stride y_bstride) = conv3x3(x[B,Cin,H,W], w[Cout,Cin,3,3] (F32, F16, BF16 or Q8_0), stride 1, pads top/left as given;
 * Ho, Wo already include the bottom/right padding) + bias. */
kd_status kd_conv3x3_winograd(kd_cpu *be, float *y, int64_t y_bstride, const float *x, int64_t B, int64_t Cin, int64_t H,
                              int64_t W, const kd_tensor *w, int64_t Cout, const float *bias, int pad_t, int pad_l,
                              int64_t Ho, int64_t Wo, kd_err *e);

/* Same contract with Winograd F(4×4, 3×3): fewer multiplies, larger transforms (winograd43.c). */
kd_status kd_conv3x3_winograd43(kd_cpu *be, float *y, int64_t y_bstride, const float *x, int64_t B, int64_t Cin,
                                int64_t H, int64_t W, const kd_tensor *w, int64_t Cout, const float *bias, int pad_t,
                                int pad_l, int64_t Ho, int64_t Wo, kd_err *e);

/* Where the transformed weights U_k[Cout, Cin] go: plain rows (any GEMM) or, when the AVX-512
 * kernel runs, straight into its packed-A layout, so the per-plane GEMMs skip packing U (once per
 * chunk of tiles) and U is written once instead of written, read and re-packed. */
typedef struct kd_wino_u {
    float *U;
    int64_t plane, Cout, Cin; /* plane: floats between the planes */
    int packed;
    int bf16; /* the plane GEMMs round U and V to BF16 (plain layout) */
} kd_wino_u;

/* Plane sizes (without padding) for either layout. */
static inline int64_t kd_wino_u_plane_floats(const kd_wino_u *u) {
    return u->packed ? kd_sgemm_pa_floats(u->Cout, u->Cin) : u->Cout * u->Cin;
}

/* vals[0..nl) = U_k[co][c0 .. c0+nl) */
static inline void kd_wino_u_store(const kd_wino_u *u, int k, int64_t co, int64_t c0, const float *vals, int64_t nl) {
    float *P = u->U + k * u->plane;
    if (!u->packed) {
        for (int64_t l = 0; l < nl; l++) P[co * u->Cin + c0 + l] = vals[l];
        return;
    }
    for (int64_t l = 0; l < nl; l++) P[kd_sgemm_pa_index(u->Cout, u->Cin, co, c0 + l)] = vals[l];
}

/* Zeroes the padding rows Cout .. of the last packed panel in each of n planes. */
static inline void kd_wino_u_zero_padding(const kd_wino_u *u, int n) {
    if (!u->packed) return;
    for (int k = 0; k < n; k++)
        for (int64_t co = u->Cout; co < kd_sgemm_pa_rows(u->Cout); co++)
            for (int64_t ci = 0; ci < u->Cin; ci++) u->U[k * u->plane + kd_sgemm_pa_index(u->Cout, u->Cin, co, ci)] = 0.0f;
}

/* Jobs shared by the F(2×2) and F(4×4) transforms (each file has its own tasks). */
typedef struct kd_wino_wt_job {
    const kd_tensor *w; /* [Cout, Cin, 3, 3]: F32, F16, BF16 or Q8_0 */
    kd_wino_u u;   /* the planes U_k[Cout][Cin], plain or packed */
} kd_wino_wt_job;

typedef struct kd_wino_in_job {
    const float *x; /* [B, Cin, H, W] */
    float *V;       /* [planes][Cin][n], `plane` floats apart */
    int64_t plane, Cin, H, W, tiles_x, tiles_per_img, t0, n;
    int pad_t, pad_l;
} kd_wino_in_job;

typedef struct kd_wino_out_job {
    const float *M; /* [planes][Cout][n], `plane` floats apart */
    int64_t plane;
    float *y;       /* image b, channel c at y + b·y_bstride + c·Ho·Wo */
    const float *bias;
    int64_t y_bstride, Cout, Ho, Wo, tiles_x, tiles_per_img, t0, n;
} kd_wino_out_job;

/* Both weight transforms work on KD_WINO_LANES input channels at a time (vectorised across them). */
#define KD_WINO_LANES 16

/* g[i][l] = tap i of the 3×3 kernel of output channel co, input channel c0 + l, as F32, for
 * l < nl (≤ KD_WINO_LANES); lanes beyond nl are left as they are (callers zero g). */
static inline void kd_wino_load_taps(const kd_wino_wt_job *j, int64_t co, int64_t c0, int64_t nl,
                                     float g[9][KD_WINO_LANES]) {
    float wf[KD_WINO_LANES * 9];
    kd_weight_to_f32(wf, j->w, (size_t)((co * j->u.Cin + c0) * 9), (size_t)(nl * 9));
    for (int64_t l = 0; l < nl; l++)
        for (int i = 0; i < 9; i++) g[i][l] = wf[l * 9 + i];
}

/* The run of tiles that starts at chunk tile t and stays in one tile row (at most run_max tiles):
 * copies the tile + 2 input rows under it, zero-padded at the borders, into rows (row r at
 * rows + r·stride, tile·len + 2 columns) so the transforms need no bounds checks. Returns len. */
static inline int64_t kd_wino_load_run(const kd_wino_in_job *j, int64_t ci, int64_t t, int tile, int64_t run_max,
                                       float *rows, int64_t stride) {
    int64_t gt = j->t0 + t, img = gt / j->tiles_per_img, lt = gt % j->tiles_per_img;
    int64_t ty = lt / j->tiles_x, tx0 = lt % j->tiles_x;
    int64_t len = kd_min64(kd_min64(j->tiles_x - tx0, j->n - t), run_max);
    int64_t y0 = ty * tile - j->pad_t, x0 = tx0 * tile - j->pad_l, cols = tile * len + 2;
    const float *xc = j->x + (img * j->Cin + ci) * j->H * j->W;
    for (int r = 0; r < tile + 2; r++) {
        int64_t iy = y0 + r;
        for (int64_t c = 0; c < cols; c++) {
            int64_t ix = x0 + c;
            rows[r * stride + c] = (iy >= 0 && iy < j->H && ix >= 0 && ix < j->W) ? xc[iy * j->W + ix] : 0.0f;
        }
    }
    return len;
}

/* One Winograd variant: output tile size, number of planes, scratch budget for V and M, tasks. */
typedef struct kd_wino_variant {
    const char *name;
    int tile, planes;
    int64_t budget;
    void (*weight_panel)(void *job, int64_t panel, int tid); /* kd_wino_wt_job, one KD_SGEMM_MR-row panel */
    void (*input)(void *job, int64_t ci, int tid);            /* kd_wino_in_job, one input channel */
    void (*output)(void *job, int64_t co, int tid);           /* kd_wino_out_job, one output channel */
} kd_wino_variant;

/* The driver both use (winograd.c): weight transform once, then chunks of tiles across the batch
 * (input transform, the plane GEMMs, output transform), V and M within the variant's budget. */
kd_status kd_wino_run(kd_cpu *be, const kd_wino_variant *v, float *y, int64_t y_bstride, const float *x, int64_t B,
                      int64_t Cin, int64_t H, int64_t W, const kd_tensor *w, int64_t Cout, const float *bias,
                      int pad_t, int pad_l, int64_t Ho, int64_t Wo, kd_err *e);

/* One plane's GEMM M_k[Cout, n] = U_k · V_k[Cin, n]; returns 0 if the AVX-512 kernel had no buffer. */
static inline int kd_wino_gemm(const kd_wino_u *u, int k, const float *V, int64_t n, float *Mk) {
    const float *Uk = u->U + k * u->plane;
    if (u->bf16) {
        kd_gemm_operand a = {Uk, u->Cin, 0, KD_F32, NULL}, b = {V, n, 0, KD_F32, NULL};
        if (kd_gemm_bf16_op(&a, &b, u->Cout, n, u->Cin, 1.0f, 0.0f, Mk, n)) return 1;
    }
    if (u->packed) return kd_sgemm_avx512_pa(u->Cout, n, u->Cin, Uk, V, n, Mk, n);
    kd_sgemm_1t(0, 0, u->Cout, n, u->Cin, 1.0f, Uk, u->Cin, V, n, 0.0f, Mk, n);
    return 1;
}

#endif
