/* 3×3 stride-1 convolution by Winograd F(2×2, 3×3).
 *
 * Each 2×2 block of output ("tile") comes from a 4×4 input patch d:
 *   Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A
 * so the channel sum becomes 16 independent GEMMs, one per position k of the 4×4 transformed
 * tile:  M_k[Cout, T] = U_k[Cout, Cin] · V_k[Cin, T].  That is 16 multiply-adds per tile and
 * channel pair instead of 36 (2.25× fewer), and the transforms only use ±1 and ½, so the result
 * stays within a few ulps of direct convolution.
 *
 * Tiles of all batch images are processed in chunks so V and M stay within WINO_BUDGET bytes. */
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/winograd.h"

#define WINO_BUDGET ((int64_t)24 << 20)
#define PLANE_PAD 32

/* ---- transforms ---- */

/* U[k][co][ci] = (G g Gᵀ)[k]. Done for WT_LANES input channels at a time so the arithmetic
 * vectorises across channels and each of the 16 output rows is written contiguously. */
#define WT_LANES KD_WINO_LANES

typedef kd_wino_wt_job wt_job; /* 16 planes */

static void weight_task(void *arg, int64_t co, int tid) {
    const wt_job *j = arg;
    for (int64_t c0 = 0; c0 < j->u.Cin; c0 += WT_LANES) {
        int64_t nl = kd_min64(WT_LANES, j->u.Cin - c0);
        float g[9][WT_LANES] = {{0}}, t[4][3][WT_LANES], u[16][WT_LANES];
        kd_wino_load_taps(j, co, c0, nl, g);
        for (int c = 0; c < 3; c++) /* G g */
            for (int l = 0; l < WT_LANES; l++) {
                float g0 = g[c][l], g1 = g[3 + c][l], g2 = g[6 + c][l];
                t[0][c][l] = g0;
                t[1][c][l] = 0.5f * (g0 + g1 + g2);
                t[2][c][l] = 0.5f * (g0 - g1 + g2);
                t[3][c][l] = g2;
            }
        for (int r = 0; r < 4; r++) /* (G g) Gᵀ */
            for (int l = 0; l < WT_LANES; l++) {
                float a = t[r][0][l], b = t[r][1][l], c = t[r][2][l];
                u[r * 4 + 0][l] = a;
                u[r * 4 + 1][l] = 0.5f * (a + b + c);
                u[r * 4 + 2][l] = 0.5f * (a - b + c);
                u[r * 4 + 3][l] = c;
            }
        for (int k = 0; k < 16; k++) kd_wino_u_store(&j->u, k, co, c0, u[k], nl);
    }
}

/* All output channels of one packed panel (KD_SGEMM_MR rows) in one task: in the packed layout
 * neighbouring rows share cache lines, so they must not be split between threads. */
static void weight_panel_task(void *arg, int64_t p, int tid) {
    const wt_job *j = arg;
    for (int64_t co = p * KD_SGEMM_MR; co < kd_min64(j->u.Cout, (p + 1) * KD_SGEMM_MR); co++) weight_task(arg, co, tid);
}

typedef kd_wino_in_job in_job; /* V: [16][Cin][n] */

/* Tiles are handled in runs that share one tile row: the 4 input rows under the run are copied
 * once into a zero-padded buffer, so the transform loop has no bounds checks and vectorises
 * across tiles (stride-2 loads, contiguous stores into each of the 16 planes). */
#define RUN_MAX 256

static void input_task(void *arg, int64_t ci, int tid) {
    const in_job *j = arg;
    int64_t plane = j->plane;
    float rows[4][2 * RUN_MAX + 2];
    for (int64_t t = 0; t < j->n;) {
        int64_t len = kd_wino_load_run(j, ci, t, 2, RUN_MAX, &rows[0][0], 2 * RUN_MAX + 2);
        float *v = j->V + ci * j->n + t;
        for (int64_t i = 0; i < len; i++) {
            float s[4][4]; /* Bᵀ d, d = rows[0..3][2i .. 2i+3] */
            for (int c = 0; c < 4; c++) {
                float d0 = rows[0][2 * i + c], d1 = rows[1][2 * i + c], d2 = rows[2][2 * i + c], d3 = rows[3][2 * i + c];
                s[0][c] = d0 - d2;
                s[1][c] = d1 + d2;
                s[2][c] = d2 - d1;
                s[3][c] = d1 - d3;
            }
            for (int r = 0; r < 4; r++) { /* (Bᵀ d) B */
                v[(r * 4 + 0) * plane + i] = s[r][0] - s[r][2];
                v[(r * 4 + 1) * plane + i] = s[r][1] + s[r][2];
                v[(r * 4 + 2) * plane + i] = s[r][2] - s[r][1];
                v[(r * 4 + 3) * plane + i] = s[r][1] - s[r][3];
            }
        }
        t += len;
    }
}

typedef kd_wino_out_job out_job; /* M: [16][Cout][n] */

/* Aᵀ M A for the tiles of one output channel, bias added, cropped to the output; runs of tiles
 * in one tile row go through a 2-row buffer. */
static void output_task(void *arg, int64_t co, int tid) {
    const out_job *j = arg;
    int64_t plane = j->plane;
    float b = j->bias ? j->bias[co] : 0.0f;
    float out[2][2 * RUN_MAX];
    for (int64_t t = 0; t < j->n;) {
        int64_t gt = j->t0 + t, img = gt / j->tiles_per_img, lt = gt % j->tiles_per_img;
        int64_t ty = lt / j->tiles_x, tx0 = lt % j->tiles_x;
        int64_t len = kd_min64(kd_min64(j->tiles_x - tx0, j->n - t), RUN_MAX);
        const float *m = j->M + co * j->n + t;
        for (int64_t i = 0; i < len; i++) {
            float q[16];
            for (int k = 0; k < 16; k++) q[k] = m[k * plane + i];
            for (int r = 0; r < 2; r++) {
                float s0, s1, s2, s3; /* row r of Aᵀ q */
                if (r == 0) {
                    s0 = q[0] + q[4] + q[8], s1 = q[1] + q[5] + q[9], s2 = q[2] + q[6] + q[10], s3 = q[3] + q[7] + q[11];
                } else {
                    s0 = q[4] - q[8] - q[12], s1 = q[5] - q[9] - q[13], s2 = q[6] - q[10] - q[14], s3 = q[7] - q[11] - q[15];
                }
                out[r][2 * i] = s0 + s1 + s2 + b;
                out[r][2 * i + 1] = s1 - s2 - s3 + b;
            }
        }
        int64_t oy = ty * 2, ox = tx0 * 2, w = kd_min64(2 * len, j->Wo - ox);
        float *yc = j->y + img * j->y_bstride + co * j->Ho * j->Wo;
        for (int r = 0; r < 2 && oy + r < j->Ho; r++) memcpy(yc + (oy + r) * j->Wo + ox, out[r], (size_t)w * sizeof(float));
        t += len;
    }
}

typedef struct {
    const kd_wino_u *u;
    const float *V;
    float *M;
    int64_t v_plane, m_plane, n;
    int failed;
} gemm_job;

static void gemm_task(void *arg, int64_t k, int tid) {
    gemm_job *j = arg;
    if (!kd_wino_gemm(j->u, (int)k, j->V + k * j->v_plane, j->n, j->M + k * j->m_plane)) j->failed = 1;
}

kd_status kd_wino_run(kd_cpu *be, const kd_wino_variant *v, float *y, int64_t y_bstride, const float *x, int64_t B,
                      int64_t Cin, int64_t H, int64_t W, const kd_tensor *w, int64_t Cout, const float *bias,
                      int pad_t, int pad_l, int64_t Ho, int64_t Wo, kd_err *e) {
    int64_t tiles_y = kd_ceil_div(Ho, v->tile), tiles_x = kd_ceil_div(Wo, v->tile);
    int64_t tiles_per_img = tiles_y * tiles_x, T = B * tiles_per_img, P = v->planes;
    int64_t n = v->budget / 4 / (P * (Cin + Cout));
    n = n >= T ? T : kd_max64(n / 16 * 16, 16);

    /* The planes are written and read together; a stride that is a multiple of 4 KiB would put
     * all their streams in the same cache sets, so each plane is padded by PLANE_PAD floats. */
    /* BF16 mode rounds the plane GEMMs' operands in F(2×2) only: F(4×4)'s transforms (entries up to
     * 8, fractions down to 1/24) amplify BF16 rounding about sevenfold (docs/NOTES.md). */
    int bf16 = be->bf16 && v->tile == 2;
    kd_wino_u u = {NULL, 0, Cout, Cin, kd_gemm_uses_avx512() && !bf16, bf16};
    int64_t u_plane = kd_wino_u_plane_floats(&u) + PLANE_PAD, v_plane = Cin * n + PLANE_PAD, m_plane = Cout * n + PLANE_PAD;
    kd_arena_mark mark = kd_arena_get_mark(&be->scratch);
    float *U = kd_arena_floats(&be->scratch, (size_t)(P * u_plane), e);
    float *V = U ? kd_arena_floats(&be->scratch, (size_t)(P * v_plane), e) : NULL;
    float *M = V ? kd_arena_floats(&be->scratch, (size_t)(P * m_plane), e) : NULL;
    if (!M) {
        kd_arena_release(&be->scratch, mark);
        return KD_ERR_OOM;
    }
    u.U = U;
    u.plane = u_plane;
    kd_wino_wt_job wj = {w, u};
    kd_pool_run(be->pool, kd_ceil_div(Cout, KD_SGEMM_MR), v->weight_panel, &wj);
    kd_wino_u_zero_padding(&u, (int)P);

    for (int64_t t0 = 0; t0 < T; t0 += n) {
        int64_t nn = kd_min64(n, T - t0);
        kd_wino_in_job ij = {x, V, v_plane, Cin, H, W, tiles_x, tiles_per_img, t0, nn, pad_t, pad_l};
        kd_pool_run(be->pool, Cin, v->input, &ij);
        gemm_job gj = {&u, V, M, v_plane, m_plane, nn, 0};
        kd_pool_run(be->pool, P, gemm_task, &gj);
        if (gj.failed) {
            kd_arena_release(&be->scratch, mark);
            return kd_errf(e, KD_ERR_OOM, "%s conv: no memory for the GEMM packing buffer", v->name);
        }
        kd_wino_out_job oj = {M, m_plane, y, bias, y_bstride, Cout, Ho, Wo, tiles_x, tiles_per_img, t0, nn};
        kd_pool_run(be->pool, Cout, v->output, &oj);
    }
    kd_arena_release(&be->scratch, mark);
    return KD_OK;
}

static const kd_wino_variant F23 = {"winograd F(2x2)", 2, 16, WINO_BUDGET, weight_panel_task, input_task, output_task};

kd_status kd_conv3x3_winograd(kd_cpu *be, float *y, int64_t y_bstride, const float *x, int64_t B, int64_t Cin, int64_t H,
                              int64_t W, const kd_tensor *w, int64_t Cout, const float *bias, int pad_t, int pad_l,
                              int64_t Ho, int64_t Wo, kd_err *e) {
    return kd_wino_run(be, &F23, y, y_bstride, x, B, Cin, H, W, w, Cout, bias, pad_t, pad_l, Ho, Wo, e);
}
