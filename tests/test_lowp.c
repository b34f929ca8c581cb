/* Low-precision compute: BF16 operands (--precision bf16) and q8_0 weights (--weights q8).
 *
 * 1. Kernels against float64 on the operands as the kernel must see them: BF16 GEMM (operands
 *    rounded to BF16, nearest even; every transposition, every blocking edge, F16/BF16/Q8_0
 *    weights) within the F32 accumulation bound (K + 2)·u·Σ|a·b| — a dropped pair, a wrong
 *    rounding or a mis-packed panel is far outside it; the F32 kernel with Q8_0 weights the same.
 * 2. q8_0 quantisation: |w - q·s| <= s/2 per value, non-finite blocks refused.
 * 3. Ops through the backend (linear, conv2d by im2col / Winograd F(2×2) / F(4×4), attention) in
 *    BF16 and with Q8_0 weights against the F32 backend: relative L2 error within a stated bound
 *    (measured values printed), and F32 must stay bit-for-bit after switching precision back.
 *    Winograd F(4×4) keeps F32 GEMMs in BF16 mode (its transforms amplify BF16 rounding: 2.6e-2
 *    relative L2 here against 3.9e-3 for F(2×2)), so there the BF16 result must equal F32.
 * 4. The tiny 2.2 U-Net against diffusers' output in BF16 and with q8 weights.
 * Paths this CPU lacks (AVX512_BF16, AVX-512) are reported as skipped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/ops.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "nn/layers.h"
#include "kandinsky.h"
#include "testutil.h"

static uint64_t g_rng = 0xbf16;

static float *rnd(int64_t n) {
    float *m = malloc((size_t)n * sizeof(float) + 64);
    for (int64_t i = 0; i < n; i++) m[i] = kt_rand_uniform(&g_rng);
    return m;
}

static float bf16_round(float x) { return kd_bf16_to_f32(kd_f32_to_bf16(x)); }

static double rel_l2(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---- 1. kernels ---- */

/* A weight operand in dtype dt made from F32 values (rows along k, ld = K); *vals gets the values
 * a kernel sees after conversion. */
typedef struct {
    void *data;
    uint16_t *scale;
} wbuf;

static wbuf make_weight(float *vals, int64_t rows, int64_t K, kd_dtype dt) {
    wbuf w = {NULL, NULL};
    size_t n = (size_t)(rows * K);
    if (dt == KD_F32) {
        w.data = malloc(n * 4);
        memcpy(w.data, vals, n * 4);
    } else if (dt == KD_Q8_0) {
        w.data = malloc(n);
        w.scale = malloc(n / KD_Q8_BLOCK * 2);
        kd_q8_quantize(w.data, w.scale, vals, KD_F32, n);
        kd_tensor t = {KD_Q8_0, 1, {(int64_t)n}, w.data, w.scale};
        kd_weight_to_f32(vals, &t, 0, n);
    } else {
        w.data = malloc(n * 2);
        kd_convert_from_f32(w.data, dt, vals, n);
        kd_convert_to_f32(vals, w.data, dt, n);
    }
    return w;
}

/* One GEMM case through fn (BF16 or F32 operand kernel); the A operand is F32 (rows M × K or its
 * transpose), B is F32 in either layout or, with wdt != F32, a weight W[N][K] (B = Wᵀ). */
typedef int (*op_fn)(const kd_gemm_operand *, const kd_gemm_operand *, int64_t, int64_t, int64_t, float, float,
                     float *, int64_t);

static int gemm_case(op_fn fn, int round_bf16, int ta, int tb, kd_dtype wdt, int64_t M, int64_t N, int64_t K,
                     float alpha, float beta) {
    if (wdt != KD_F32) tb = 1;
    int64_t lda = ta ? M : K, ldb = tb ? K : N, ldc = N + 3;
    float *A = rnd((ta ? K : M) * lda), *Bv = rnd((tb ? N : K) * ldb), *C = rnd(M * ldc);
    float *C0 = malloc((size_t)(M * ldc) * sizeof(float));
    wbuf w = make_weight(Bv, tb ? N : K, ldb, wdt); /* Bv now holds the converted values */
    if (beta == 0.0f)
        for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN;
    memcpy(C0, C, (size_t)(M * ldc) * sizeof(float));
    kd_gemm_operand a = {A, lda, ta, KD_F32, NULL}, b = {w.data, ldb, tb, wdt, w.scale};
    int ok = fn(&a, &b, M, N, K, alpha, beta, C, ldc);
    const double u = 0x1p-24;
    for (int64_t i = 0; i < M && ok; i++)
        for (int64_t j = 0; j < ldc && ok; j++) {
            if (j >= N) {
                ok = memcmp(&C[i * ldc + j], &C0[i * ldc + j], 4) == 0;
                continue;
            }
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                float av = ta ? A[k * lda + i] : A[i * lda + k], bv = tb ? Bv[j * ldb + k] : Bv[k * ldb + j];
                if (round_bf16) av = bf16_round(av), bv = bf16_round(bv);
                ref += (double)av * bv;
                mag += fabs((double)av * bv);
            }
            double c0 = beta == 0.0f ? 0.0 : (double)beta * C0[i * ldc + j];
            ref = alpha * ref + c0;
            double tol = (double)(K + 2) * u * fabs(alpha) * mag + 2 * u * fabs(c0) + 1e-30;
            if (!(fabs(C[i * ldc + j] - ref) <= tol)) {
                printf("  C[%lld,%lld] = %.9g, expected %.9g (tol %.3g)\n", (long long)i, (long long)j, C[i * ldc + j],
                       ref, tol);
                ok = 0;
            }
        }
    TEST_CHECK(ok, "%s gemm ta=%d tb=%d B=%s M=%lld N=%lld K=%lld alpha=%g beta=%g", round_bf16 ? "bf16" : "f32", ta,
               tb, kd_dtype_name(wdt), (long long)M, (long long)N, (long long)K, alpha, beta);
    free(A), free(Bv), free(C), free(C0), free(w.data), free(w.scale);
    return ok;
}

static void kernel_suite(op_fn fn, int round_bf16, const char *name) {
    /* edges of MR = 14, NR = 32, KC (256 F32 / 512 BF16), MC = 168; odd K (a half pair) */
    static const int64_t edges[] = {1, 2, 13, 14, 15, 16, 17, 31, 32, 33, 63, 64, 167, 168, 169, 511, 512, 513};
    const int ne = (int)(sizeof edges / sizeof edges[0]);
    static const float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, 0.25f};
    int cases = 0, passed = 0;
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 12; r++) {
            int64_t M = edges[kt_rand_u64(&g_rng) % ne], N = edges[kt_rand_u64(&g_rng) % ne];
            int64_t K = edges[kt_rand_u64(&g_rng) % ne];
            passed += gemm_case(fn, round_bf16, t & 1, t >> 1, KD_F32, M, N, K, alphas[r % 3], betas[(r / 3) % 3]);
            cases++;
        }
    /* weights in their stored types (Q8_0 needs K % 32 == 0), several KC slices, two NC blocks */
    static const int64_t wshapes[][3] = {{1, 1, 32}, {14, 32, 64}, {15, 33, 96}, {29, 95, 544}, {169, 70, 1056}, {3, 3100, 64}};
    static const kd_dtype wdts[] = {KD_F16, KD_BF16, KD_Q8_0};
    for (int d = 0; d < 3; d++)
        for (size_t i = 0; i < sizeof wshapes / sizeof wshapes[0]; i++) {
            if (!round_bf16 && wdts[d] != KD_Q8_0) continue; /* F16/BF16 in F32: test_sgemm */
            passed += gemm_case(fn, round_bf16, 0, 1, wdts[d], wshapes[i][0], wshapes[i][1], wshapes[i][2], 1.0f, 0.0f);
            cases++;
        }
    static const int64_t big[][3] = {{37, 45, 1111}, {340, 40, 300}, {20, 3100, 70}, {15, 33, 0}};
    for (size_t b = 0; b < sizeof big / sizeof big[0]; b++)
        for (int t = 0; t < 4; t++) {
            passed += gemm_case(fn, round_bf16, t & 1, t >> 1, KD_F32, big[b][0], big[b][1], big[b][2], 1.0f,
                                t == 2 ? 0.0f : 0.5f);
            cases++;
        }
    printf("%s: %d/%d cases within the F32 accumulation bound\n", name, passed, cases);
}

/* ---- 2. q8_0 ---- */

static void test_q8_quantize(void) {
    size_t n = 32 * 64;
    float *x = rnd((int64_t)n), *y = malloc(n * sizeof(float));
    for (size_t i = 0; i < 32; i++) x[i] *= 1e-6f; /* a block of tiny values: F16 subnormal scale */
    for (size_t i = 32; i < 64; i++) x[i] = 0.0f;  /* an all-zero block */
    int8_t *q = malloc(n);
    uint16_t *s = malloc(n / 32 * 2);
    TEST_CHECK(kd_q8_quantize(q, s, x, KD_F32, n), "q8_0: quantises finite values");
    kd_tensor t = {KD_Q8_0, 1, {(int64_t)n}, q, s};
    kd_weight_to_f32(y, &t, 0, n);
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        float sc = kd_f16_to_f32(s[i / 32]);
        /* s/2, plus the clamp at 127 when an F16-subnormal scale rounded down (at most 127 · 2^-25) */
        ok = fabsf(x[i] - y[i]) <= 0.5f * sc * 1.0001f + 127.0f * 0x1p-25f && q[i] != -128;
        if (!ok) printf("  value %zu: %g -> %g (scale %g)\n", i, x[i], y[i], sc);
    }
    TEST_CHECK(ok, "q8_0: |w - q·s| <= s/2 for every value");
    float part[40];
    kd_weight_to_f32(part, &t, 20, 40); /* a range across block boundaries */
    TEST_CHECK(memcmp(part, y + 20, sizeof part) == 0, "q8_0: a sub-range dequantises as the whole");
    x[100] = INFINITY;
    TEST_CHECK(!kd_q8_quantize(q, s, x, KD_F32, n), "q8_0: a block with inf is refused");
    x[100] = NAN;
    TEST_CHECK(!kd_q8_quantize(q, s, x, KD_F32, n), "q8_0: a block with NaN is refused");
    x[100] = 2e7f;
    TEST_CHECK(!kd_q8_quantize(q, s, x, KD_F32, n), "q8_0: a scale beyond F16 is refused");
    free(x), free(y), free(q), free(s);
}

/* Converted files (I8 + "<name>_scale"): what binds, and every malformed pairing refused by name. */
static void test_q8_files(void) {
    const char *dir = kt_tmp_dir("lowp_q8");
    char path[1024];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    int8_t q[64 * 64];
    uint16_t sc[64 * 2], sc_bad[128];
    float f[64 * 64];
    for (int i = 0; i < 64 * 64; i++) f[i] = kt_rand_uniform(&g_rng);
    kd_q8_quantize(q, sc, f, KD_F32, 64 * 64);
    memset(sc_bad, 0, sizeof sc_bad);
    const char *names[] = {"good.weight", "good.weight_scale", "noscale.weight", "badscale.weight", "badscale.weight_scale",
                           "odd.weight",  "odd.weight_scale"};
    kd_tensor ts[] = {{KD_I8, 2, {64, 64}, q, NULL},    {KD_F16, 2, {64, 2}, sc, NULL},
                      {KD_I8, 2, {64, 64}, q, NULL},    {KD_I8, 2, {64, 64}, q, NULL},
                      {KD_F16, 2, {64, 1}, sc_bad, NULL}, {KD_I8, 2, {128, 24}, q, NULL},
                      {KD_F16, 2, {128, 1}, sc_bad, NULL}};
    kd_err e;
    kd_weights *w = NULL;
    if (kd_st_write(path, names, ts, 7, NULL, 0, &e) != KD_OK || kd_weights_open(path, &w, &e) != KD_OK) {
        TEST_CHECK(0, "write/open %s: %s", path, e.msg);
        return;
    }
    kd_linear_layer l;
    TEST_CHECK(kd_linear_layer_load(w, "good", 64, 64, 0, &l, &e) == KD_OK && l.weight.dtype == KD_Q8_0 &&
                   l.weight.scale && memcmp(l.weight.scale, sc, sizeof sc) == 0,
               "an I8 weight with its scales binds as Q8_0: %s", e.msg);
    TEST_CHECK(kd_linear_layer_load(w, "noscale", 64, 64, 0, &l, &e) == KD_ERR_NOT_FOUND &&
                   strstr(e.msg, "'noscale.weight' has no scales ('noscale.weight_scale')"),
               "no scales: %s", e.msg);
    TEST_CHECK(kd_linear_layer_load(w, "badscale", 64, 64, 0, &l, &e) == KD_ERR_SHAPE &&
                   strstr(e.msg, "'badscale.weight_scale' must be an aligned F16 tensor of shape [64, 2]"),
               "scales of the wrong shape: %s", e.msg);
    TEST_CHECK(kd_linear_layer_load(w, "odd", 24, 128, 0, &l, &e) == KD_ERR_SHAPE && strstr(e.msg, "multiple of 32"),
               "rows of 24 values: %s", e.msg);
    float *fp = NULL;
    int64_t shp[2] = {64, 64};
    TEST_CHECK(kd_weights_f32(w, "good.weight", 2, shp, &fp, &e) == KD_ERR_SHAPE && strstr(e.msg, "int8"),
               "an int8 tensor where floats are needed: %s", e.msg);
    kd_tensor t;
    kd_bind b = {.name = "good.weight", .dst = &t, .ndim = 2, .shape = {64, 64}};
    TEST_CHECK(kd_weights_bind(w, NULL, &b, 1, &e) == KD_ERR_SHAPE && strstr(e.msg, "only Linear and conv weights"),
               "an int8 embedding: %s", e.msg);
    kd_weights_close(w);
}

/* ---- 3. ops through the backend ---- */

typedef struct {
    const char *what;
    double bf16_bound, q8_bound; /* relative L2 vs F32 */
} op_bounds;

/* y from op(be, ...) in F32, BF16 and with Q8_0 weights; prints the errors and checks the bounds. */
static void check_precisions(const char *what, const float *ref, const float *bf, const float *q8, size_t n,
                             double bb, double qb) {
    if (bf && bb == 0) {
        TEST_CHECK(memcmp(bf, ref, n * sizeof(float)) == 0, "%s: bf16 mode gives the F32 result", what);
    } else if (bf) {
        double r = rel_l2(bf, ref, n);
        printf("  %-34s bf16 rel L2 %.2e (bound %.0e)\n", what, r, bb);
        TEST_CHECK(r <= bb && r > 0, "%s: bf16 relative L2 %.3g within %.0e (and not F32)", what, r, bb);
    }
    if (q8) {
        double r = rel_l2(q8, ref, n);
        printf("  %-34s q8   rel L2 %.2e (bound %.0e)\n", what, r, qb);
        TEST_CHECK(r <= qb && r > 0, "%s: q8 relative L2 %.3g within %.0e", what, r, qb);
    }
}

static kd_tensor q8_of(const kd_tensor *w) {
    size_t n = (size_t)kd_tensor_numel(w);
    kd_tensor q = *w;
    q.dtype = KD_Q8_0;
    q.data = malloc(n);
    q.scale = malloc(n / 32 * 2);
    kd_q8_quantize(q.data, (uint16_t *)q.scale, w->data, w->dtype, n);
    return q;
}

static void test_ops(kd_backend *be, int have_bf16) {
    kd_err e;
    kd_cpu *cpu = kd_cpu_of(be);
    /* linear: [154, 640] · [1280, 640]ᵀ (a U-Net cross-attention projection's shape) */
    {
        int64_t M = 154, K = 640, N = 1280;
        float *x = rnd(M * K), *wv = rnd(N * K), *b = rnd(N);
        kd_tensor w = {KD_F32, 2, {N, K}, wv, NULL}, wq = q8_of(&w);
        float *y = malloc((size_t)(M * N) * 4), *yb = malloc((size_t)(M * N) * 4), *yq = malloc((size_t)(M * N) * 4);
        float *y2 = malloc((size_t)(M * N) * 4);
        TEST_CHECK(kd_linear(be, y, x, M, &w, b, &e) == KD_OK, "linear f32");
        if (have_bf16) {
            be->ops->set_bf16(be, 1);
            TEST_CHECK(kd_linear(be, yb, x, M, &w, b, &e) == KD_OK, "linear bf16");
            be->ops->set_bf16(be, 0);
        }
        TEST_CHECK(kd_linear(be, yq, x, M, &wq, b, &e) == KD_OK, "linear q8");
        TEST_CHECK(kd_linear(be, y2, x, M, &w, b, &e) == KD_OK && memcmp(y, y2, (size_t)(M * N) * 4) == 0,
                   "linear: F32 bit-for-bit the same after a BF16 pass");
        check_precisions("linear 154x640 -> 1280", y, have_bf16 ? yb : NULL, yq, (size_t)(M * N), 6e-3, 1e-2);
        free(x), free(wv), free(b), free(y), free(yb), free(yq), free(y2), free(wq.data), free((void *)wq.scale);
    }
    /* conv2d 3×3, 64 -> 96 channels at 2 × 24², every algorithm */
    static const struct {
        kd_conv_algo algo;
        const char *name;
        double bb, qb;
    } algos[] = {{KD_CONV_IM2COL, "conv3x3 im2col", 6e-3, 1e-2},
                 {KD_CONV_WINO23, "conv3x3 winograd F(2x2)", 6e-3, 1e-2},
                 {KD_CONV_WINO43, "conv3x3 winograd F(4x4)", 0, 1e-2}}; /* BF16 mode: F32 GEMMs (exact) */
    int64_t B = 2, Cin = 64, Cout = 96, H = 24, W = 24;
    size_t nx = (size_t)(B * Cin * H * W), ny = (size_t)(B * Cout * H * W);
    float *x = rnd((int64_t)nx), *wv = rnd(Cout * Cin * 9), *b = rnd(Cout);
    kd_tensor w = {KD_F32, 4, {Cout, Cin, 3, 3}, wv, NULL}, wq = q8_of(&w);
    kd_conv2d_params p = {1, 1, 1, 1, 1};
    kd_conv_algo saved = cpu->conv_algo;
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++) {
        cpu->conv_algo = algos[a].algo;
        float *y = malloc(ny * 4), *yb = malloc(ny * 4), *yq = malloc(ny * 4);
        TEST_CHECK(kd_conv2d(be, y, x, B, Cin, H, W, &w, b, &p, &e) == KD_OK, "%s f32", algos[a].name);
        if (have_bf16) {
            be->ops->set_bf16(be, 1);
            TEST_CHECK(kd_conv2d(be, yb, x, B, Cin, H, W, &w, b, &p, &e) == KD_OK, "%s bf16", algos[a].name);
            be->ops->set_bf16(be, 0);
        }
        TEST_CHECK(kd_conv2d(be, yq, x, B, Cin, H, W, &wq, b, &p, &e) == KD_OK, "%s q8", algos[a].name);
        check_precisions(algos[a].name, y, have_bf16 ? yb : NULL, yq, ny, algos[a].bb, algos[a].qb);
        free(y), free(yb), free(yq);
    }
    /* odd channel count over two BF16 K slices (a half pair, a partial panel), F(2×2) */
    if (have_bf16) {
        int64_t C2 = 517, O2 = 30, H2 = 12;
        float *x2 = rnd(C2 * H2 * H2), *w2 = rnd(O2 * C2 * 9), *y1 = malloc((size_t)(O2 * H2 * H2) * 4);
        float *y2 = malloc((size_t)(O2 * H2 * H2) * 4);
        kd_tensor wt2 = {KD_F32, 4, {O2, C2, 3, 3}, w2, NULL};
        cpu->conv_algo = KD_CONV_WINO23;
        TEST_CHECK(kd_conv2d(be, y1, x2, 1, C2, H2, H2, &wt2, NULL, &p, &e) == KD_OK, "conv 517 ch f32");
        be->ops->set_bf16(be, 1);
        TEST_CHECK(kd_conv2d(be, y2, x2, 1, C2, H2, H2, &wt2, NULL, &p, &e) == KD_OK, "conv 517 ch bf16");
        be->ops->set_bf16(be, 0);
        check_precisions("conv3x3 F(2x2) 517 -> 30 channels", y1, y2, NULL, (size_t)(O2 * H2 * H2), 6e-3, 0);
        free(x2), free(w2), free(y1), free(y2);
    }
    cpu->conv_algo = saved;
    free(x), free(wv), free(b), free(wq.data), free((void *)wq.scale);
    /* attention: 2 × 8 heads × 64 dims, 300 queries, 77 keys + a 2-key "pre" segment, with mask */
    if (have_bf16) {
        int64_t Bt = 2, heads = 8, d = 64, Lq = 300, Lk = 77, Lp = 2;
        float *q = rnd(Bt * Lq * heads * d), *k = rnd(Bt * Lk * heads * d), *v = rnd(Bt * Lk * heads * d);
        float *kp = rnd(Bt * Lp * heads * d), *vp = rnd(Bt * Lp * heads * d), *mask = calloc((size_t)(Bt * (Lk + Lp)), 4);
        for (int64_t i = 0; i < Bt * (Lk + Lp); i += 5) mask[i] = -INFINITY; /* keys masked out */
        kd_attn_params ap = {.batch = Bt, .heads = heads, .head_dim = d, .q_len = Lq, .kv_len = Lk, .pre_len = Lp,
                             .q = q, .q_stride = heads * d, .k = k, .v = v, .kv_stride = heads * d, .k_pre = kp,
                             .v_pre = vp, .pre_stride = heads * d, .mask = mask, .mask_bstride = Lk + Lp,
                             .mask_qstride = 0, .scale = 0.125f};
        size_t no = (size_t)(Bt * Lq * heads * d);
        float *o = malloc(no * 4), *ob = malloc(no * 4);
        TEST_CHECK(kd_attention(be, o, &ap, &e) == KD_OK, "attention f32");
        be->ops->set_bf16(be, 1);
        TEST_CHECK(kd_attention(be, ob, &ap, &e) == KD_OK, "attention bf16");
        be->ops->set_bf16(be, 0);
        check_precisions("attention 8x64, 300 x (2 + 77)", o, ob, NULL, no, 6e-3, 0);
        free(q), free(k), free(v), free(kp), free(vp), free(mask), free(o), free(ob);
    }
}

/* ---- 4. the tiny 2.2 U-Net against diffusers ---- */

static float *case_tensor(const kd_st_file *f, const char *name, int64_t *shape) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t) return NULL;
    size_t n = (size_t)kd_tensor_numel(&t->t);
    float *p = malloc(n * sizeof(float) + 4);
    memcpy(p, t->t.data, n * sizeof(float));
    for (int i = 0; shape && i < t->t.ndim; i++) shape[i] = t->t.shape[i];
    return p;
}

static void test_unet(kd_precision prec, kd_weight_mode wm, double bound) {
    char model[600], cases[600];
    snprintf(model, sizeof model, "%s/v22", kt_data_path("unet"));
    snprintf(cases, sizeof cases, "%s/v22_cases.safetensors", kt_data_path("unet"));
    kd_ctx_params cp = kd_ctx_params_default();
    cp.precision = prec;
    cp.weights = wm;
    kd_ctx *ctx = NULL;
    kd_unet *u = NULL;
    kd_st_file *f = NULL;
    kd_err e;
    if (kd_ctx_create(&cp, &ctx) != KD_OK || kd_unet_load(ctx, model, &u) != KD_OK || kd_st_open(cases, &f, &e) != KD_OK) {
        TEST_CHECK(0, "tiny U-Net %s/%s: load: %s", kd_precision_name(prec), kd_weight_mode_name(wm),
                   ctx ? kd_ctx_last_error(ctx) : "no context");
        kd_unet_free(u);
        kd_ctx_free(ctx);
        return;
    }
    TEST_CHECK(kd_ctx_precision(ctx) == prec, "context runs %s", kd_precision_name(prec));
    int64_t ssh[4] = {0}, osh[4] = {0};
    float *sample = case_tensor(f, "b2_8x12.sample", ssh), *img = case_tensor(f, "b2_8x12.image_embeds", NULL);
    float *ref = case_tensor(f, "b2_8x12.t500.out", osh);
    if (sample && img && ref) {
        float ts[2] = {500, 500};
        kd_unet_cond c = {.timesteps = ts, .image_embeds = img};
        size_t n = (size_t)(osh[0] * osh[1] * osh[2] * osh[3]);
        float *out = malloc(n * sizeof(float));
        kd_status s = kd_unet_forward(ctx, u, sample, (int)ssh[0], (int)ssh[2], (int)ssh[3], &c, out);
        TEST_CHECK(s == KD_OK, "tiny U-Net forward: %s", kd_ctx_last_error(ctx));
        if (s == KD_OK) {
            double r = rel_l2(out, ref, n);
            printf("  tiny U-Net 2.2 %s weights %-6s vs diffusers: rel L2 %.2e (bound %.0e)\n", kd_precision_name(prec),
                   kd_weight_mode_name(wm), r, bound);
            TEST_CHECK(r <= bound, "tiny U-Net %s/%s: rel L2 %.3g within %.0e", kd_precision_name(prec),
                       kd_weight_mode_name(wm), r, bound);
        }
        free(out);
    } else {
        TEST_CHECK(0, "U-Net fixture tensors present");
    }
    free(sample), free(img), free(ref);
    kd_st_close(f);
    kd_unet_free(u);
    kd_ctx_free(ctx);
}

int main(void) {
    int avx512 = kd_cpu_has_avx512() && kd_gemm_uses_avx512(), bf16 = kd_gemm_has_bf16();
    printf("CPU: AVX-512 kernels %s, AVX512_BF16 %s; AMX: no AMX kernel in this build\n", avx512 ? "yes" : "no",
           bf16 ? "yes" : "no");
    if (bf16)
        kernel_suite(kd_gemm_bf16_op, 1, "kd_gemm_bf16_op (vdpbf16ps)");
    else
        kt_skip("BF16 GEMM kernel (%s)", avx512 ? "this CPU has no AVX512_BF16" : "AVX-512 kernels not in use");
    if (avx512)
        kernel_suite(kd_sgemm_avx512_op, 0, "kd_sgemm_avx512_op (F32, Q8_0 weights)");
    else
        kt_skip("F32 AVX-512 kernel with Q8_0 weights (AVX-512 kernels not in use; the BLAS fallback runs below)");
    test_q8_quantize();
    test_q8_files();

    kd_backend be;
    kd_err e;
    if (kd_backend_cpu_init(&be, 0, &e) != KD_OK) return 1;
    TEST_CHECK(be.ops->set_bf16(&be, 1) == bf16, "set_bf16 reports %d where the CPU has BF16 = %d", bf16, bf16);
    be.ops->set_bf16(&be, 0);
    test_ops(&be, bf16);
    if (!bf16) kt_skip("BF16 ops (no BF16 GEMM on this CPU or build: BF16 requests run F32)");
    kd_backend_free(&be);

    test_unet(KD_PRECISION_FP32, KD_WEIGHTS_Q8, 2e-2);
    if (bf16) {
        test_unet(KD_PRECISION_BF16, KD_WEIGHTS_AS_STORED, 2e-2);
        test_unet(KD_PRECISION_BF16, KD_WEIGHTS_Q8, 3e-2);
    } else {
        kt_skip("tiny U-Net in BF16 (no BF16 GEMM)");
        kd_ctx_params cp = kd_ctx_params_default();
        cp.precision = KD_PRECISION_BF16;
        kd_ctx *ctx = NULL;
        TEST_CHECK(kd_ctx_create(&cp, &ctx) == KD_OK && kd_ctx_precision(ctx) == KD_PRECISION_FP32,
                   "BF16 requested without BF16 hardware runs FP32");
        kd_ctx_free(ctx);
    }
    return kt_finish("test_lowp");
}
