/* 3×3 stride-1 convolution by Winograd F(4×4, 3×3): each 4×4 block of output comes from a 6×6
 * input patch, Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A, i.e. 36 GEMMs
 * M_k[Cout, T] = U_k[Cout, Cin] · V_k[Cin, T] with 36 multiply-adds per 16 outputs instead of 144
 * (4× fewer than direct, 1.78× fewer than F(2×2, 3×3)). The interpolation points 0, ±1, ±2, ∞
 * keep the transforms' coefficients small (≤ 8), so f32 results stay within ~1e-6 relative of
 * direct convolution on U-Net-like data (tests run every conv case through this path).
 * Same structure as winograd.c: chunks of tiles across the batch, runs of tiles of one tile row,
 * 36 planes padded off 4 KiB strides. */
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/cpu/winograd.h"

#define BUDGET ((int64_t)48 << 20) /* one chunk for the U-Net 32² level (128 tiles × 36 planes × 1536 ch) */
#define RUN_MAX 128
#define LANES KD_WINO_LANES

static const float BT[6][6] = {
    {4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
    {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1},
};
static const float G[6][3] = {
    {1.0f / 4, 0, 0},
    {-1.0f / 6, -1.0f / 6, -1.0f / 6},
    {-1.0f / 6, 1.0f / 6, -1.0f / 6},
    {1.0f / 24, 1.0f / 12, 1.0f / 6},
    {1.0f / 24, -1.0f / 12, 1.0f / 6},
    {0, 0, 1},
};
static const float AT[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1},
};

typedef kd_wino_wt_job wt_job; /* 36 planes */

/* U = G g Gᵀ for LANES input channels at a time (vectorises across channels). */
static void weight_task(void *arg, int64_t co, int tid) {
    const wt_job *j = arg;
    for (int64_t c0 = 0; c0 < j->u.Cin; c0 += LANES) {
        int64_t nl = kd_min64(LANES, j->u.Cin - c0);
        float g[9][LANES] = {{0}}, t[6][3][LANES], u[36][LANES];
        kd_wino_load_taps(j, co, c0, nl, g);
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 3; c++)
                for (int l = 0; l < LANES; l++)
                    t[r][c][l] = G[r][0] * g[c][l] + G[r][1] * g[3 + c][l] + G[r][2] * g[6 + c][l];
        for (int r = 0; r < 6; r++)
            for (int c = 0; c < 6; c++)
                for (int l = 0; l < LANES; l++)
                    u[r * 6 + c][l] = t[r][0][l] * G[c][0] + t[r][1][l] * G[c][1] + t[r][2][l] * G[c][2];
        for (int k = 0; k < 36; k++) kd_wino_u_store(&j->u, k, co, c0, u[k], nl);
    }
}

/* All output channels of one packed panel (KD_SGEMM_MR rows) in one task: in the packed layout
 * neighbouring rows share cache lines, so they must not be split between threads. */
static void weight_panel_task(void *arg, int64_t p, int tid) {
    const wt_job *j = arg;
    for (int64_t co = p * KD_SGEMM_MR; co < kd_min64(j->u.Cout, (p + 1) * KD_SGEMM_MR); co++) weight_task(arg, co, tid);
}

typedef kd_wino_in_job in_job; /* V: [36][Cin][n] */

static void input_task(void *arg, int64_t ci, int tid) {
    const in_job *j = arg;
    float rows[6][4 * RUN_MAX + 2];
    for (int64_t t = 0; t < j->n;) {
        int64_t len = kd_wino_load_run(j, ci, t, 4, RUN_MAX, &rows[0][0], 4 * RUN_MAX + 2);
        float *v = j->V + ci * j->n + t;
        for (int64_t i = 0; i < len; i++) {
            float s[6][6]; /* Bᵀ d */
            for (int r = 0; r < 6; r++)
                for (int c = 0; c < 6; c++) {
                    float a = 0;
                    for (int k = 0; k < 6; k++) a += BT[r][k] * rows[k][4 * i + c];
                    s[r][c] = a;
                }
            for (int r = 0; r < 6; r++) /* (Bᵀ d) B */
                for (int c = 0; c < 6; c++) {
                    float a = 0;
                    for (int k = 0; k < 6; k++) a += s[r][k] * BT[c][k];
                    v[(r * 6 + c) * j->plane + i] = a;
                }
        }
        t += len;
    }
}

typedef kd_wino_out_job out_job; /* M: [36][Cout][n] */

static void output_task(void *arg, int64_t co, int tid) {
    const out_job *j = arg;
    float b = j->bias ? j->bias[co] : 0.0f;
    float out[4][4 * RUN_MAX];
    for (int64_t t = 0; t < j->n;) {
        int64_t gt = j->t0 + t, img = gt / j->tiles_per_img, lt = gt % j->tiles_per_img;
        int64_t ty = lt / j->tiles_x, tx0 = lt % j->tiles_x;
        int64_t len = kd_min64(kd_min64(j->tiles_x - tx0, j->n - t), RUN_MAX);
        const float *m = j->M + co * j->n + t;
        for (int64_t i = 0; i < len; i++) {
            float q[6][6], s[4][6];
            for (int k = 0; k < 36; k++) q[k / 6][k % 6] = m[k * j->plane + i];
            for (int r = 0; r < 4; r++) /* Aᵀ q */
                for (int c = 0; c < 6; c++) {
                    float a = 0;
                    for (int k = 0; k < 6; k++) a += AT[r][k] * q[k][c];
                    s[r][c] = a;
                }
            for (int r = 0; r < 4; r++) /* (Aᵀ q) A */
                for (int c = 0; c < 4; c++) {
                    float a = 0;
                    for (int k = 0; k < 6; k++) a += s[r][k] * AT[c][k];
                    out[r][4 * i + c] = a + b;
                }
        }
        int64_t oy = ty * 4, ox = tx0 * 4, w = kd_min64(4 * len, j->Wo - ox);
        float *yc = j->y + img * j->y_bstride + co * j->Ho * j->Wo;
        for (int r = 0; r < 4 && oy + r < j->Ho; r++) memcpy(yc + (oy + r) * j->Wo + ox, out[r], (size_t)w * sizeof(float));
        t += len;
    }
}

static const kd_wino_variant F43 = {"winograd F(4x4)", 4, 36, BUDGET, weight_panel_task, input_task, output_task};

kd_status kd_conv3x3_winograd43(kd_cpu *be, float *y, int64_t y_bstride, const float *x, int64_t B, int64_t Cin,
                                int64_t H, int64_t W, const kd_tensor *w, int64_t Cout, const float *bias, int pad_t,
                                int pad_l, int64_t Ho, int64_t Wo, kd_err *e) {
    return kd_wino_run(be, &F43, y, y_bstride, x, B, Cin, H, W, w, Cout, bias, pad_t, pad_l, Ho, Wo, e);
}
