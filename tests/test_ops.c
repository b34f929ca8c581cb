/* Parity of every CPU op (src/backend/ops.h) with PyTorch, case by case.
 *
 * tools/reference/gen_ops.py writes tests/data/ops/<case>.safetensors: the inputs, the op's
 * parameters in __metadata__ ("op" selects the runner below) and torch's float32 CPU result "out".
 * tests/data/ops/cases.txt lists the cases. The suite runs every case twice, on a backend with the
 * default thread count and on one with a single thread, and fails if a listed case is missing, a
 * file in the folder is not listed, an op has no case, or any output is out of tolerance.
 *
 * Tolerances (|got - ref| <= atol + rtol·|ref|): rtol 1e-4 for f32 compute (design.md); atol is
 * chosen per op family where the runner calls the comparison, with the reason next to it. Outputs
 * that are pure data movement or a single IEEE rounding (conversions, nearest resizing, concat,
 * transpose, add, mul, bias adds) must be bit-equal.
 *
 * Inputs are copied from the mapping into 64-byte aligned buffers (tensor data in a safetensors
 * file is only as aligned as the writer made it), outputs get a NaN fill (so unwritten elements
 * fail) and a guard zone after the end (so overruns fail). */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "io/safetensors.h"
#include "testutil.h"

#define RTOL 1e-4
#define GUARD 16              /* floats (or halves ×2) after every output buffer */
#define GUARD_BITS 0x7fbadbadu /* a NaN pattern no op writes */
#define MAX_ALLOCS 64
#define MAX_CASES 512

typedef struct tcase {
    const char *name; /* case name: file name without .safetensors */
    kd_st_file *f;
    kd_backend *be;
    const char *tag; /* "" or " [1 thread]" */
    void *allocs[MAX_ALLOCS];
    int n_allocs;
} tcase;

/* ---------------------------------------------------------------- buffers and inputs */

static void *tc_alloc(tcase *c, size_t bytes) {
    size_t sz = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, sz ? sz : 64);
    if (!p || c->n_allocs == MAX_ALLOCS) {
        fprintf(stderr, "test_ops: out of memory\n");
        exit(2);
    }
    c->allocs[c->n_allocs++] = p;
    return p;
}

static void tc_free_all(tcase *c) {
    for (int i = 0; i < c->n_allocs; i++) free(c->allocs[i]);
    c->n_allocs = 0;
}

static char label_buf[512];
static const char *label(tcase *c, const char *what) {
    snprintf(label_buf, sizeof label_buf, "%s%s%s%s", c->name, *what ? " " : "", what, c->tag);
    return label_buf;
}

/* Structural problems (missing tensor, wrong shape, bad metadata) count as one failed check. */
static int tc_fail(tcase *c, const char *msg, const char *detail) {
    TEST_CHECK(0, "%s%s: %s%s%s", c->name, c->tag, msg, detail ? ": " : "", detail ? detail : "");
    return 0;
}

/* Every op returns a status (on the CPU only scratch allocation can fail): a failure fails the case. */
static kd_err op_err;
static int op_ok(tcase *c, kd_status s) { return s == KD_OK ? 1 : tc_fail(c, "op failed", op_err.msg); }

static const kd_st_tensor *opt_tensor(tcase *c, const char *name) { return kd_st_find(c->f, name); }

static const kd_st_tensor *need_tensor(tcase *c, const char *name) {
    const kd_st_tensor *t = kd_st_find(c->f, name);
    if (!t) tc_fail(c, "missing tensor", name);
    return t;
}

static int64_t numel(const kd_st_tensor *t) { return kd_tensor_numel(&t->t); }

/* Aligned f32 copy of an F32 tensor (NULL and a failed check if absent or not F32). */
static float *load_f32(tcase *c, const kd_st_tensor *t) {
    if (!t) return NULL;
    if (t->t.dtype != KD_F32) {
        tc_fail(c, "tensor is not F32", t->name);
        return NULL;
    }
    float *p = tc_alloc(c, t->nbytes);
    memcpy(p, t->t.data, t->nbytes);
    return p;
}

static float *opt_f32(tcase *c, const char *name) {
    const kd_st_tensor *t = opt_tensor(c, name);
    return t ? load_f32(c, t) : NULL;
}

/* Weight: aligned copy that keeps the file's dtype (F32, F16 or BF16). */
static int load_weight(tcase *c, const char *name, kd_tensor *w) {
    const kd_st_tensor *t = need_tensor(c, name);
    if (!t) return 0;
    *w = t->t;
    w->data = tc_alloc(c, t->nbytes);
    memcpy(w->data, t->t.data, t->nbytes);
    return 1;
}

/* Output of n floats: NaN-filled, followed by a guard zone. */
static float *out_f32(tcase *c, int64_t n) {
    float *p = tc_alloc(c, (size_t)(n + GUARD) * sizeof(float));
    uint32_t g = GUARD_BITS;
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    for (int i = 0; i < GUARD; i++) memcpy(p + n + i, &g, 4);
    return p;
}

static int guard_ok(tcase *c, const void *buf, size_t nbytes) {
    const unsigned char *p = (const unsigned char *)buf + nbytes;
    uint32_t g = GUARD_BITS;
    for (int i = 0; i < GUARD; i++)
        if (memcmp(p + 4 * i, &g, 4) != 0) return tc_fail(c, "op wrote past the end of its output", NULL);
    return 1;
}

static int shape_is(tcase *c, const kd_st_tensor *t, int ndim, const int64_t *dims) {
    char want[128], got[128];
    int ok = t->t.ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->t.shape[i] == dims[i];
    if (ok) return 1;
    kd_shape_str(dims, ndim, want, sizeof want);
    kd_shape_str(t->t.shape, t->t.ndim, got, sizeof got);
    char msg[400];
    snprintf(msg, sizeof msg, "%s is %s, expected %s", t->name, got, want);
    return tc_fail(c, "shape mismatch", msg);
}

static int64_t prod_dims(const kd_st_tensor *t, int from, int to) {
    int64_t p = 1;
    for (int i = from; i < to && i < t->t.ndim; i++) p *= t->t.shape[i];
    return p;
}

/* ---------------------------------------------------------------- metadata */

static int meta_ok; /* cleared when a required key is missing or malformed */

static double meta_d(tcase *c, const char *key) {
    const char *s = kd_st_meta(c->f, key);
    char *end;
    double v = s ? strtod(s, &end) : 0;
    if (!s || end == s || *end) {
        tc_fail(c, s ? "malformed metadata value" : "missing metadata key", key);
        meta_ok = 0;
        return 0;
    }
    return v;
}

static int64_t meta_i(tcase *c, const char *key) {
    double v = meta_d(c, key);
    if (v != floor(v)) {
        tc_fail(c, "metadata value is not an integer", key);
        meta_ok = 0;
    }
    return (int64_t)v;
}

/* ---------------------------------------------------------------- comparisons */

static void close_f32(tcase *c, const char *what, const float *got, const float *ref, int64_t n, double atol,
                      double rtol) {
    kt_allclose(label(c, what), got, ref, (size_t)n, atol, rtol);
}

/* Bit-equal, except that any NaN matches any NaN (payloads are not part of the contract). */
static void exact_f32(tcase *c, const char *what, const float *got, const float *ref, int64_t n) {
    int64_t bad = 0, first = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) && isnan(ref[i])) continue;
        if (memcmp(&got[i], &ref[i], 4) != 0 && !bad++) first = i;
    }
    const char *l = label(c, what);
    if (bad) {
        uint32_t g, r;
        memcpy(&g, &got[first], 4);
        memcpy(&r, &ref[first], 4);
        TEST_CHECK(0, "%s: %lld of %lld elements differ (exact); first at %lld: got %.9g (0x%08x) ref %.9g (0x%08x)",
                   l, (long long)bad, (long long)n, (long long)first, got[first], g, ref[first], r);
    } else {
        TEST_CHECK(1, "%s", l);
        printf("  ok %-48s n=%-9lld exact\n", l, (long long)n);
    }
}

static int half_is_nan(uint16_t h, kd_dtype t) {
    return t == KD_F16 ? (h & 0x7c00) == 0x7c00 && (h & 0x3ff) : (h & 0x7f80) == 0x7f80 && (h & 0x7f);
}

static void exact_u16(tcase *c, const char *what, const uint16_t *got, const uint16_t *ref, int64_t n, kd_dtype t,
                      const float *x) {
    int64_t bad = 0, first = 0;
    for (int64_t i = 0; i < n; i++) {
        if (half_is_nan(got[i], t) && half_is_nan(ref[i], t)) continue;
        if (got[i] != ref[i] && !bad++) first = i;
    }
    const char *l = label(c, what);
    if (bad) {
        TEST_CHECK(0, "%s: %lld of %lld values differ; first at %lld: input %.9g, got 0x%04x ref 0x%04x", l,
                   (long long)bad, (long long)n, (long long)first, x ? x[first] : 0.0, got[first], ref[first]);
    } else {
        TEST_CHECK(1, "%s", l);
        printf("  ok %-48s n=%-9lld exact\n", l, (long long)n);
    }
}

/* GEMM-like sums (gemm, linear, conv2d): BLAS and torch (oneDNN/MKL) add the K products in a
 * different order, so outputs differ by ~K·eps·Σ|terms|, which scales with the output's range,
 * not with each element (an output near zero is a cancellation of terms of the range's size).
 * atol = 1e-5 · max|ref| covers that (the expected error is ~sqrt(K)·6e-8 ≈ 2e-6 of the range at
 * K = 1280) and still catches a wrong tap, stride or pad, which is an error of order the range. */
static double gemm_atol(const float *ref, int64_t n) { return 1e-5 * kt_max_abs(ref, (size_t)n); }

/* ---------------------------------------------------------------- runners */

static void run_gemm(tcase *c) {
    const kd_st_tensor *ta = need_tensor(c, "x"), *tb = need_tensor(c, "w"), *tc_ = need_tensor(c, "c"),
                       *to = need_tensor(c, "out");
    meta_ok = 1;
    int trans_a = (int)meta_i(c, "trans_a"), trans_b = (int)meta_i(c, "trans_b");
    float alpha = (float)meta_d(c, "alpha"), beta = (float)meta_d(c, "beta");
    if (!ta || !tb || !tc_ || !to || !meta_ok) return;
    if (ta->t.ndim != 2 || tb->t.ndim != 2 || tc_->t.ndim != 2) {
        tc_fail(c, "gemm operands must be 2-D", NULL);
        return;
    }
    int64_t M = tc_->t.shape[0], N = tc_->t.shape[1];
    int64_t K = trans_a ? ta->t.shape[0] : ta->t.shape[1];
    int64_t ashape[2] = {trans_a ? K : M, trans_a ? M : K}, bshape[2] = {trans_b ? N : K, trans_b ? K : N};
    int64_t oshape[2] = {M, N};
    if (!shape_is(c, ta, 2, ashape) || !shape_is(c, tb, 2, bshape) || !shape_is(c, to, 2, oshape)) return;
    float *A = load_f32(c, ta), *B = load_f32(c, tb), *C0 = load_f32(c, tc_), *ref = load_f32(c, to);
    if (!A || !B || !C0 || !ref) return;
    float *C = out_f32(c, M * N);
    memcpy(C, C0, (size_t)(M * N) * sizeof(float)); /* beta != 0 reads C; beta == 0 must not (NaNs) */
    if (!op_ok(c, kd_gemm(c->be, trans_a, trans_b, M, N, K, alpha, A, ashape[1], B, bshape[1], beta, C, N, &op_err))) return;
    guard_ok(c, C, (size_t)(M * N) * sizeof(float));
    close_f32(c, "", C, ref, M * N, gemm_atol(ref, M * N), RTOL);
}

static void run_linear(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *tw = need_tensor(c, "w"), *to = need_tensor(c, "out");
    if (!tx || !tw || !to) return;
    if (tw->t.ndim != 2) {
        tc_fail(c, "w must be [N, K]", NULL);
        return;
    }
    int64_t N = tw->t.shape[0], K = tw->t.shape[1];
    if (tx->t.shape[tx->t.ndim - 1] != K || numel(to) != numel(tx) / K * N || to->t.shape[to->t.ndim - 1] != N) {
        tc_fail(c, "x / w / out shapes disagree", NULL);
        return;
    }
    int64_t M = numel(tx) / K;
    kd_tensor w;
    float *x = load_f32(c, tx), *ref = load_f32(c, to), *b = opt_f32(c, "b");
    if (!x || !ref || !load_weight(c, "w", &w)) return;
    float *y = out_f32(c, M * N);
    kd_err e = {0};
    kd_status st = kd_linear(c->be, y, x, M, &w, b, &e);
    if (st != KD_OK) {
        tc_fail(c, "kd_linear failed", e.msg);
        return;
    }
    guard_ok(c, y, (size_t)(M * N) * sizeof(float));
    close_f32(c, kd_dtype_name(w.dtype), y, ref, M * N, gemm_atol(ref, M * N), RTOL);
}

static void run_conv2d(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *tw = need_tensor(c, "w"), *to = need_tensor(c, "out");
    meta_ok = 1;
    kd_conv2d_params p = {(int)meta_i(c, "stride"), (int)meta_i(c, "pad_top"), (int)meta_i(c, "pad_bottom"),
                          (int)meta_i(c, "pad_left"), (int)meta_i(c, "pad_right")};
    if (!tx || !tw || !to || !meta_ok) return;
    if (tx->t.ndim != 4 || tw->t.ndim != 4 || tw->t.shape[1] != tx->t.shape[1]) {
        tc_fail(c, "x must be [B, Cin, H, W] and w [Cout, Cin, kh, kw]", NULL);
        return;
    }
    int64_t B = tx->t.shape[0], Cin = tx->t.shape[1], H = tx->t.shape[2], W = tx->t.shape[3];
    int64_t Cout = tw->t.shape[0];
    int kh = (int)tw->t.shape[2], kw = (int)tw->t.shape[3];
    int64_t Ho = kd_conv2d_out_dim(H, kh, p.stride, p.pad_top, p.pad_bottom);
    int64_t Wo = kd_conv2d_out_dim(W, kw, p.stride, p.pad_left, p.pad_right);
    int64_t oshape[4] = {B, Cout, Ho, Wo};
    if (!shape_is(c, to, 4, oshape)) return; /* also checks kd_conv2d_out_dim */
    if (kh == kw && p.stride == 1 && p.pad_top == kh / 2 && p.pad_bottom == kh / 2 && p.pad_left == kh / 2 &&
        p.pad_right == kh / 2) {
        kd_conv2d_params s = kd_conv2d_same(kh);
        TEST_CHECK(s.stride == 1 && s.pad_top == kh / 2 && s.pad_bottom == kh / 2 && s.pad_left == kh / 2 &&
                       s.pad_right == kh / 2,
                   "%s: kd_conv2d_same(%d) = stride %d pads %d %d %d %d", c->name, kh, s.stride, s.pad_top,
                   s.pad_bottom, s.pad_left, s.pad_right);
    }
    kd_tensor w;
    float *x = load_f32(c, tx), *ref = load_f32(c, to), *b = opt_f32(c, "b");
    if (!x || !ref || !load_weight(c, "w", &w)) return;
    int64_t n = B * Cout * Ho * Wo;
    float *y = out_f32(c, n);
    kd_err e = {0};
    kd_status st = kd_conv2d(c->be, y, x, B, Cin, H, W, &w, b, &p, &e);
    if (st != KD_OK) {
        tc_fail(c, "kd_conv2d failed", e.msg);
        return;
    }
    guard_ok(c, y, (size_t)n * sizeof(float));
    close_f32(c, kd_dtype_name(w.dtype), y, ref, n, gemm_atol(ref, n), RTOL);
}

/* Normalised outputs are order 1 (gamma ~ 1 ± 0.5, beta ~ ±0.5): atol 1e-5 (~100 ulps of 1)
 * leaves room for a different reduction order. On top of that, inputs far from their mean carry
 * an error no f32 implementation can avoid: x is only known to an ulp of |x|, and normalising
 * (torch's x·(rstd·γ) + (β − mean·rstd·γ) as much as (x − mean)·rstd·γ + β) rounds terms of size
 * |x|·rstd·|γ|. torch's own output is 4e-5 away from the exact result (float64 from the same
 * inputs) on group_norm_c64_12x20_eps1e-6_mean100 (|x|·rstd ≈ 204). So atol grows by
 * 2·FLT_EPSILON·max(|x|·rstd)·max(1, |γ|): 1.1e-4 there, ~2e-6 for inputs of mean 0. A one-pass
 * E[x²] − E[x]² variance in f32 is still caught: it is off by ~1e-3 relative on the +100 cases. */
#define NORM_ATOL 1e-5

/* max over the n_groups contiguous groups of len values of max|x|·rstd (statistics in double) */
static double norm_condition(const float *x, int64_t n_groups, int64_t len, double eps) {
    double worst = 0;
    for (int64_t g = 0; g < n_groups; g++) {
        const float *p = x + g * len;
        double s = 0, v = 0, mx = 0;
        for (int64_t i = 0; i < len; i++) s += p[i];
        double mean = s / (double)len;
        for (int64_t i = 0; i < len; i++) {
            v += (p[i] - mean) * (p[i] - mean);
            if (fabs(p[i]) > mx) mx = fabs(p[i]);
        }
        double c = mx / sqrt(v / (double)len + eps);
        if (c > worst) worst = c;
    }
    return worst;
}

static double norm_atol(const float *x, int64_t n_groups, int64_t len, double eps, const float *gamma,
                        int64_t n_gamma) {
    double gmax = gamma ? kt_max_abs(gamma, (size_t)n_gamma) : 1.0;
    return NORM_ATOL + 2.0 * FLT_EPSILON * norm_condition(x, n_groups, len, eps) * (gmax > 1 ? gmax : 1);
}

static void run_group_norm_common(tcase *c, int with_silu) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    meta_ok = 1;
    int groups = (int)meta_i(c, "groups");
    float eps = (float)meta_d(c, "eps");
    if (!tx || !to || !meta_ok) return;
    if (tx->t.ndim < 2 || numel(to) != numel(tx) || groups <= 0 || tx->t.shape[1] % groups) {
        tc_fail(c, "x must be [B, C, ...] with C divisible by groups, out like x", NULL);
        return;
    }
    int64_t B = tx->t.shape[0], C = tx->t.shape[1], HW = prod_dims(tx, 2, tx->t.ndim), n = numel(tx);
    float *x = load_f32(c, tx), *ref = load_f32(c, to), *gamma = opt_f32(c, "gamma"), *beta = opt_f32(c, "beta");
    if (!x || !ref) return;
    kd_status (*fn)(kd_backend *, float *, const float *, int64_t, int64_t, int64_t, int, float, const float *,
                    const float *, kd_err *) = with_silu ? kd_group_norm_silu : kd_group_norm;
    double atol = norm_atol(x, B * groups, C / groups * HW, eps, gamma, C);
    float *y = out_f32(c, n);
    if (!op_ok(c, fn(c->be, y, x, B, C, HW, groups, eps, gamma, beta, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    close_f32(c, "", y, ref, n, atol, RTOL);
    float *z = out_f32(c, n); /* y may equal x */
    memcpy(z, x, (size_t)n * sizeof(float));
    if (!op_ok(c, fn(c->be, z, z, B, C, HW, groups, eps, gamma, beta, &op_err))) return;
    guard_ok(c, z, (size_t)n * sizeof(float));
    close_f32(c, "in-place", z, ref, n, atol, RTOL);
}

static void run_group_norm(tcase *c) { run_group_norm_common(c, 0); }
static void run_group_norm_silu(tcase *c) { run_group_norm_common(c, 1); }

static void run_layer_norm(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    meta_ok = 1;
    float eps = (float)meta_d(c, "eps");
    if (!tx || !to || !meta_ok) return;
    if (numel(to) != numel(tx)) {
        tc_fail(c, "out must have x's shape", NULL);
        return;
    }
    int64_t D = tx->t.shape[tx->t.ndim - 1], n = numel(tx), rows = n / D;
    float *x = load_f32(c, tx), *ref = load_f32(c, to), *gamma = opt_f32(c, "gamma"), *beta = opt_f32(c, "beta");
    if (!x || !ref) return;
    double atol = norm_atol(x, rows, D, eps, gamma, D);
    float *y = out_f32(c, n);
    if (!op_ok(c, kd_layer_norm(c->be, y, x, rows, D, eps, gamma, beta, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    close_f32(c, "", y, ref, n, atol, RTOL);
    float *z = out_f32(c, n);
    memcpy(z, x, (size_t)n * sizeof(float));
    if (!op_ok(c, kd_layer_norm(c->be, z, z, rows, D, eps, gamma, beta, &op_err))) return;
    guard_ok(c, z, (size_t)n * sizeof(float));
    close_f32(c, "in-place", z, ref, n, atol, RTOL);
}

static void run_softmax(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    if (!tx || !to) return;
    int64_t N = tx->t.shape[tx->t.ndim - 1], n = numel(tx);
    float *x = load_f32(c, tx), *ref = load_f32(c, to);
    if (!x || !ref || numel(to) != n) return;
    float *y = out_f32(c, n);
    memcpy(y, x, (size_t)n * sizeof(float));
    if (!op_ok(c, kd_softmax(c->be, y, n / N, N, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    /* probabilities <= 1: a different exp (few ulps) is covered by rtol; atol 1e-6 only matters
     * for tiny probabilities and is still far below anything a model could notice. */
    close_f32(c, "", y, ref, n, 1e-6, RTOL);
}

/* Attention outputs are convex combinations of v rows (order 1): atol 1e-5. */
#define ATTN_ATOL 1e-5

static void run_attention(tcase *c) {
    const kd_st_tensor *tq = need_tensor(c, "q"), *tk = need_tensor(c, "k"), *tv = need_tensor(c, "v"),
                       *to = need_tensor(c, "out"), *tm = opt_tensor(c, "mask");
    meta_ok = 1;
    int64_t H = meta_i(c, "heads"), d = meta_i(c, "head_dim"), pre = meta_i(c, "pre_len");
    int causal = (int)meta_i(c, "causal");
    float scale = (float)meta_d(c, "scale");
    int64_t mb = meta_i(c, "mask_bstride"), mq = meta_i(c, "mask_qstride");
    if (!tq || !tk || !tv || !to || !meta_ok) return;
    if (tq->t.ndim != 3) {
        tc_fail(c, "q must be [B, Lq, H*d]", NULL);
        return;
    }
    int64_t B = tq->t.shape[0], Lq = tq->t.shape[1], HD = H * d, Lkv = tk->t.shape[1], Lk = pre + Lkv;
    int64_t qs[3] = {B, Lq, HD}, ks[3] = {B, Lkv, HD}, ps[3] = {B, pre, HD};
    if (!shape_is(c, tq, 3, qs) || !shape_is(c, tk, 3, ks) || !shape_is(c, tv, 3, ks) || !shape_is(c, to, 3, qs))
        return;
    float *q = load_f32(c, tq), *k = load_f32(c, tk), *v = load_f32(c, tv), *ref = load_f32(c, to);
    float *kp = NULL, *vp = NULL, *mask = NULL;
    if (pre) {
        const kd_st_tensor *tkp = need_tensor(c, "k_pre"), *tvp = need_tensor(c, "v_pre");
        if (!tkp || !tvp || !shape_is(c, tkp, 3, ps) || !shape_is(c, tvp, 3, ps)) return;
        kp = load_f32(c, tkp);
        vp = load_f32(c, tvp);
    }
    if (tm) {
        /* the strides must stay inside the stored mask */
        if ((B - 1) * mb + (Lq - 1) * mq + Lk > numel(tm)) {
            tc_fail(c, "mask strides reach past the stored mask", NULL);
            return;
        }
        mask = load_f32(c, tm);
    }
    if (!q || !k || !v || !ref || (pre && (!kp || !vp)) || (tm && !mask)) return;

    kd_attn_params p = {.batch = B, .heads = H, .head_dim = d, .q_len = Lq, .kv_len = Lkv, .pre_len = pre,
                        .q = q, .q_stride = HD, .k = k, .v = v, .kv_stride = HD, .k_pre = kp, .v_pre = vp,
                        .pre_stride = HD, .mask = mask, .mask_bstride = mb, .mask_qstride = mq,
                        .causal = causal, .scale = scale};
    int64_t n = B * Lq * HD;
    float *y = out_f32(c, n);
    kd_err e = {0};
    if (kd_attention(c->be, y, &p, &e) != KD_OK) {
        tc_fail(c, "kd_attention failed", e.msg);
        return;
    }
    guard_ok(c, y, (size_t)n * sizeof(float));
    close_f32(c, "", y, ref, n, ATTN_ATOL, RTOL);

    /* The same through row strides: q|k|v packed in one [B, L, 3·H·d] buffer when Lq == Lkv (a
     * fused qkv projection), else k|v packed [B, Lkv, 2·H·d]; k_pre|v_pre packed [B, Lpre, 2·H·d]. */
    int fused = Lq == Lkv;
    int64_t kvw = fused ? 3 * HD : 2 * HD;
    float *kv = tc_alloc(c, (size_t)(B * Lkv * kvw) * sizeof(float));
    for (int64_t r = 0; r < B * Lkv; r++) {
        float *row = kv + r * kvw;
        if (fused) memcpy(row, q + r * HD, (size_t)HD * sizeof(float));
        memcpy(row + (fused ? HD : 0), k + r * HD, (size_t)HD * sizeof(float));
        memcpy(row + (fused ? 2 : 1) * HD, v + r * HD, (size_t)HD * sizeof(float));
    }
    kd_attn_params ps2 = p;
    if (fused) {
        ps2.q = kv;
        ps2.q_stride = kvw;
    }
    ps2.k = kv + (fused ? HD : 0);
    ps2.v = kv + (fused ? 2 : 1) * HD;
    ps2.kv_stride = kvw;
    if (pre) {
        float *pkv = tc_alloc(c, (size_t)(B * pre * 2 * HD) * sizeof(float));
        for (int64_t r = 0; r < B * pre; r++) {
            memcpy(pkv + r * 2 * HD, kp + r * HD, (size_t)HD * sizeof(float));
            memcpy(pkv + r * 2 * HD + HD, vp + r * HD, (size_t)HD * sizeof(float));
        }
        ps2.k_pre = pkv;
        ps2.v_pre = pkv + HD;
        ps2.pre_stride = 2 * HD;
    }
    float *y2 = out_f32(c, n);
    if (kd_attention(c->be, y2, &ps2, &e) != KD_OK) {
        tc_fail(c, "kd_attention (strided) failed", e.msg);
        return;
    }
    guard_ok(c, y2, (size_t)n * sizeof(float));
    close_f32(c, fused ? "strided qkv" : "strided kv", y2, ref, n, ATTN_ATOL, RTOL);
}

typedef kd_status (*unary_fn)(kd_backend *, float *, const float *, int64_t, kd_err *);

/* Activations: values up to 1e4 (rtol governs); near the zero crossing and in the far negative
 * tail (where torch's own f32 formula cancels, e.g. gelu for x < -5 is 1 - erf ≈ a few ulps)
 * outputs are ~1e-6 or smaller, hence atol 1e-6. */
static void run_unary(tcase *c, unary_fn fn) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    if (!tx || !to) return;
    int64_t n = numel(tx);
    float *x = load_f32(c, tx), *ref = load_f32(c, to);
    if (!x || !ref || numel(to) != n) return;
    float *y = out_f32(c, n);
    if (!op_ok(c, fn(c->be, y, x, n, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    close_f32(c, "", y, ref, n, 1e-6, RTOL);
    float *z = out_f32(c, n);
    memcpy(z, x, (size_t)n * sizeof(float));
    if (!op_ok(c, fn(c->be, z, z, n, &op_err))) return;
    guard_ok(c, z, (size_t)n * sizeof(float));
    close_f32(c, "in-place", z, ref, n, 1e-6, RTOL);
}

static void run_silu(tcase *c) { run_unary(c, kd_silu); }
static void run_gelu(tcase *c) { run_unary(c, kd_gelu); }
static void run_quick_gelu(tcase *c) { run_unary(c, kd_quick_gelu); }

/* add / mul: one IEEE rounding each, so bit-equal (also in place, y == a). */
static void run_binary(tcase *c, kd_status (*fn)(kd_backend *, float *, const float *, const float *, int64_t, kd_err *)) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *ty = need_tensor(c, "y"), *to = need_tensor(c, "out");
    if (!tx || !ty || !to) return;
    int64_t n = numel(tx);
    float *a = load_f32(c, tx), *b = load_f32(c, ty), *ref = load_f32(c, to);
    if (!a || !b || !ref || numel(ty) != n || numel(to) != n) return;
    float *y = out_f32(c, n);
    if (!op_ok(c, fn(c->be, y, a, b, n, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    exact_f32(c, "", y, ref, n);
    float *z = out_f32(c, n);
    memcpy(z, a, (size_t)n * sizeof(float));
    if (!op_ok(c, fn(c->be, z, z, b, n, &op_err))) return;
    guard_ok(c, z, (size_t)n * sizeof(float));
    exact_f32(c, "in-place", z, ref, n);
}

static void run_add(tcase *c) { run_binary(c, kd_add); }
static void run_mul(tcase *c) { run_binary(c, kd_mul); }

static void run_scale_shift(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    meta_ok = 1;
    float s = (float)meta_d(c, "scale"), t = (float)meta_d(c, "shift");
    if (!tx || !to || !meta_ok) return;
    int64_t n = numel(tx);
    float *x = load_f32(c, tx), *ref = load_f32(c, to);
    if (!x || !ref || numel(to) != n) return;
    float *y = out_f32(c, n);
    if (!op_ok(c, kd_scale_shift(c->be, y, x, s, t, n, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    /* torch rounds x·s, then + t; an FMA rounds once: they differ by <= 1 ulp of x·s (~1e-7 here),
     * which in relative terms is unbounded where x·s + t cancels, hence an atol. */
    close_f32(c, "", y, ref, n, 1e-6, 1e-6);
    float *z = out_f32(c, n);
    memcpy(z, x, (size_t)n * sizeof(float));
    if (!op_ok(c, kd_scale_shift(c->be, z, z, s, t, n, &op_err))) return;
    guard_ok(c, z, (size_t)n * sizeof(float));
    close_f32(c, "in-place", z, ref, n, 1e-6, 1e-6);
}

static void run_add_row_vector(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *tb = need_tensor(c, "b"), *to = need_tensor(c, "out");
    if (!tx || !tb || !to) return;
    int64_t N = tx->t.shape[tx->t.ndim - 1], n = numel(tx);
    float *x = load_f32(c, tx), *b = load_f32(c, tb), *ref = load_f32(c, to);
    if (!x || !b || !ref || numel(tb) != N || numel(to) != n) return;
    float *y = out_f32(c, n);
    memcpy(y, x, (size_t)n * sizeof(float));
    if (!op_ok(c, kd_add_row_vector(c->be, y, b, n / N, N, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    exact_f32(c, "", y, ref, n);
}

static void run_add_channel_vector(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *tb = need_tensor(c, "b"), *to = need_tensor(c, "out");
    if (!tx || !tb || !to) return;
    if (tx->t.ndim < 2) {
        tc_fail(c, "x must be [B, C, ...]", NULL);
        return;
    }
    int64_t B = tx->t.shape[0], C = tx->t.shape[1], HW = prod_dims(tx, 2, tx->t.ndim), n = numel(tx);
    int64_t bs[2] = {B, C};
    if (!shape_is(c, tb, 2, bs)) return;
    float *x = load_f32(c, tx), *b = load_f32(c, tb), *ref = load_f32(c, to);
    if (!x || !b || !ref || numel(to) != n) return;
    float *y = out_f32(c, n);
    memcpy(y, x, (size_t)n * sizeof(float));
    if (!op_ok(c, kd_add_channel_vector(c->be, y, b, B, C, HW, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    exact_f32(c, "", y, ref, n);
}

static void run_concat_dim1(tcase *c) {
    const kd_st_tensor *ta = need_tensor(c, "x"), *tb = need_tensor(c, "y"), *to = need_tensor(c, "out");
    if (!ta || !tb || !to) return;
    if (ta->t.ndim < 2 || tb->t.ndim != ta->t.ndim || ta->t.shape[0] != tb->t.shape[0] ||
        prod_dims(ta, 2, ta->t.ndim) != prod_dims(tb, 2, tb->t.ndim) || numel(to) != numel(ta) + numel(tb)) {
        tc_fail(c, "x, y must be [B, X, ...] with equal trailing dims", NULL);
        return;
    }
    int64_t B = ta->t.shape[0], Xa = ta->t.shape[1], Xb = tb->t.shape[1], inner = prod_dims(ta, 2, ta->t.ndim);
    int64_t n = numel(to);
    float *a = load_f32(c, ta), *b = load_f32(c, tb), *ref = load_f32(c, to);
    if (!a || !b || !ref) return;
    float *y = out_f32(c, n);
    if (!op_ok(c, kd_concat_dim1(c->be, y, a, Xa, b, Xb, B, inner, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    exact_f32(c, "", y, ref, n);
}

static void run_transpose_last2(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    if (!tx || !to) return;
    if (tx->t.ndim != 3) {
        tc_fail(c, "x must be [R, rows, cols]", NULL);
        return;
    }
    int64_t R = tx->t.shape[0], rows = tx->t.shape[1], cols = tx->t.shape[2], n = numel(tx);
    int64_t os[3] = {R, cols, rows};
    if (!shape_is(c, to, 3, os)) return;
    float *x = load_f32(c, tx), *ref = load_f32(c, to);
    if (!x || !ref) return;
    float *y = out_f32(c, n);
    if (!op_ok(c, kd_transpose_last2(c->be, y, x, R, rows, cols, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    exact_f32(c, "", y, ref, n);
}

/* Resampling: planes = B·C of an NCHW x. */
static int nchw(tcase *c, const kd_st_tensor *t, int64_t *planes, int64_t *H, int64_t *W) {
    if (t->t.ndim != 4) return tc_fail(c, "tensor must be NCHW", t->name);
    *planes = t->t.shape[0] * t->t.shape[1];
    *H = t->t.shape[2];
    *W = t->t.shape[3];
    return 1;
}

static void run_upsample_nearest2x(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    int64_t P, H, W;
    if (!tx || !to || !nchw(c, tx, &P, &H, &W)) return;
    int64_t os[4] = {tx->t.shape[0], tx->t.shape[1], 2 * H, 2 * W}, n = P * 4 * H * W;
    if (!shape_is(c, to, 4, os)) return;
    float *x = load_f32(c, tx), *ref = load_f32(c, to);
    if (!x || !ref) return;
    float *y = out_f32(c, n);
    if (!op_ok(c, kd_upsample_nearest2x(c->be, y, x, P, H, W, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    exact_f32(c, "", y, ref, n);
}

static void run_resize_nearest(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    int64_t P, H, W, P2, Ho, Wo;
    if (!tx || !to || !nchw(c, tx, &P, &H, &W) || !nchw(c, to, &P2, &Ho, &Wo)) return;
    if (P2 != P) {
        tc_fail(c, "x and out differ in B·C", NULL);
        return;
    }
    int64_t n = P * Ho * Wo;
    float *x = load_f32(c, tx), *ref = load_f32(c, to);
    if (!x || !ref) return;
    float *y = out_f32(c, n);
    if (!op_ok(c, kd_resize_nearest(c->be, y, x, P, H, W, Ho, Wo, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    exact_f32(c, "", y, ref, n);
}

static void run_avg_pool2x2(tcase *c) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    int64_t P, H, W;
    if (!tx || !to || !nchw(c, tx, &P, &H, &W)) return;
    int64_t os[4] = {tx->t.shape[0], tx->t.shape[1], H / 2, W / 2}, n = P * (H / 2) * (W / 2);
    if (!shape_is(c, to, 4, os)) return;
    float *x = load_f32(c, tx), *ref = load_f32(c, to);
    if (!x || !ref) return;
    float *y = out_f32(c, n);
    if (!op_ok(c, kd_avg_pool2x2(c->be, y, x, P, H, W, &op_err))) return;
    guard_ok(c, y, (size_t)n * sizeof(float));
    /* (a+b+c+d)/4 in another summation order or as ·0.25 differs by an ulp or two of order-1
     * values; atol for sums that cancel to ~0. */
    close_f32(c, "", y, ref, n, 1e-6, 1e-6);
}

static void run_timestep_embedding(tcase *c) {
    const kd_st_tensor *tt = need_tensor(c, "t"), *to = need_tensor(c, "out");
    meta_ok = 1;
    int dim = (int)meta_i(c, "dim"), flip = (int)meta_i(c, "flip_sin_to_cos");
    float shift = (float)meta_d(c, "downscale_freq_shift"), maxp = (float)meta_d(c, "max_period");
    if (!tt || !to || !meta_ok) return;
    int64_t B = numel(tt), os[2] = {B, dim};
    if (!shape_is(c, to, 2, os)) return;
    float *t = load_f32(c, tt), *ref = load_f32(c, to);
    if (!t || !ref) return;
    float *y = out_f32(c, B * dim);
    if (!op_ok(c, kd_timestep_embedding(c->be, y, t, B, dim, flip, shift, maxp, &op_err))) return;
    guard_ok(c, y, (size_t)(B * dim) * sizeof(float));
    /* The argument t·freq is a float32 of magnitude up to max|t| (999: ulp 6.1e-5). torch's exp
     * (Sleef) and libm's expf each stay within 1 ulp of exact, so a faithful float32
     * implementation lands within ~2 ulps of the argument of torch's; sin/cos pass that error
     * through with slope <= 1. atol = 4 ulps of the largest argument (2.4e-4 at t = 999). */
    float tmax = (float)kt_max_abs(t, (size_t)B);
    double atol = 4.0 * (nextafterf(tmax, INFINITY) - tmax) + 1e-6;
    close_f32(c, "", y, ref, B * dim, atol, RTOL);
}

/* f32 -> f16 / bf16: bulk (kd_convert_from_f32) and scalar (kd_f32_to_f16 / _bf16), bit-equal. */
static void run_to_half(tcase *c, kd_dtype dt) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    if (!tx || !to) return;
    int64_t n = numel(tx);
    if (to->t.dtype != dt || numel(to) != n) {
        tc_fail(c, "out must have x's shape and the target dtype", NULL);
        return;
    }
    float *x = load_f32(c, tx);
    uint16_t *ref = tc_alloc(c, to->nbytes);
    memcpy(ref, to->t.data, to->nbytes);
    if (!x) return;
    uint16_t *y = (uint16_t *)out_f32(c, (n + 1) / 2);
    kd_convert_from_f32(y, dt, x, (size_t)n);
    guard_ok(c, y, (size_t)((n + 1) / 2) * sizeof(float));
    exact_u16(c, "kd_convert_from_f32", y, ref, n, dt, x);
    uint16_t *s = tc_alloc(c, (size_t)n * 2);
    for (int64_t i = 0; i < n; i++) s[i] = dt == KD_F16 ? kd_f32_to_f16(x[i]) : kd_f32_to_bf16(x[i]);
    exact_u16(c, dt == KD_F16 ? "kd_f32_to_f16" : "kd_f32_to_bf16", s, ref, n, dt, x);
}

static void run_f32_to_f16(tcase *c) { run_to_half(c, KD_F16); }
static void run_f32_to_bf16(tcase *c) { run_to_half(c, KD_BF16); }

/* f16 / bf16 -> f32: exact by definition. */
static void run_from_half(tcase *c, kd_dtype dt) {
    const kd_st_tensor *tx = need_tensor(c, "x"), *to = need_tensor(c, "out");
    if (!tx || !to) return;
    int64_t n = numel(tx);
    if (tx->t.dtype != dt || numel(to) != n) {
        tc_fail(c, "x must have the source dtype and out x's shape", NULL);
        return;
    }
    uint16_t *x = tc_alloc(c, tx->nbytes);
    memcpy(x, tx->t.data, tx->nbytes);
    float *ref = load_f32(c, to);
    if (!ref) return;
    float *y = out_f32(c, n);
    kd_convert_to_f32(y, x, dt, (size_t)n);
    guard_ok(c, y, (size_t)n * sizeof(float));
    exact_f32(c, "kd_convert_to_f32", y, ref, n);
    float *s = out_f32(c, n);
    for (int64_t i = 0; i < n; i++) s[i] = dt == KD_F16 ? kd_f16_to_f32(x[i]) : kd_bf16_to_f32(x[i]);
    exact_f32(c, dt == KD_F16 ? "kd_f16_to_f32" : "kd_bf16_to_f32", s, ref, n);
}

static void run_f16_to_f32(tcase *c) { run_from_half(c, KD_F16); }
static void run_bf16_to_f32(tcase *c) { run_from_half(c, KD_BF16); }

/* ---------------------------------------------------------------- the table */

static struct {
    const char *op;
    void (*run)(tcase *);
    int cases; /* how many case files exercised it (first pass) */
} runners[] = {
    {"gemm", run_gemm, 0},
    {"linear", run_linear, 0},
    {"conv2d", run_conv2d, 0},
    {"group_norm", run_group_norm, 0},
    {"group_norm_silu", run_group_norm_silu, 0},
    {"layer_norm", run_layer_norm, 0},
    {"softmax", run_softmax, 0},
    {"attention", run_attention, 0},
    {"silu", run_silu, 0},
    {"gelu", run_gelu, 0},
    {"quick_gelu", run_quick_gelu, 0},
    {"add", run_add, 0},
    {"mul", run_mul, 0},
    {"scale_shift", run_scale_shift, 0},
    {"add_row_vector", run_add_row_vector, 0},
    {"add_channel_vector", run_add_channel_vector, 0},
    {"concat_dim1", run_concat_dim1, 0},
    {"transpose_last2", run_transpose_last2, 0},
    {"upsample_nearest2x", run_upsample_nearest2x, 0},
    {"resize_nearest", run_resize_nearest, 0},
    {"avg_pool2x2", run_avg_pool2x2, 0},
    {"timestep_embedding", run_timestep_embedding, 0},
    {"f32_to_f16", run_f32_to_f16, 0},
    {"f32_to_bf16", run_f32_to_bf16, 0},
    {"f16_to_f32", run_f16_to_f32, 0},
    {"bf16_to_f32", run_bf16_to_f32, 0},
};
#define N_RUNNERS (sizeof runners / sizeof runners[0])

/* ---------------------------------------------------------------- case list */

static char *case_files[MAX_CASES];
static int n_case_files;

static int read_case_list(void) {
    FILE *fp = fopen(kt_data_path("ops/cases.txt"), "r");
    TEST_CHECK(fp != NULL, "cannot open %s (run tools/reference/gen_ops.py)", kt_data_path("ops/cases.txt"));
    if (!fp) return 0;
    char line[512];
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        if (n_case_files == MAX_CASES) {
            TEST_CHECK(0, "more than %d cases in cases.txt", MAX_CASES);
            break;
        }
        case_files[n_case_files++] = strdup(line);
    }
    fclose(fp);
    TEST_CHECK(n_case_files > 0, "cases.txt lists no case");
    return 1;
}

/* Every *.safetensors in tests/data/ops must be listed (a stale or unlisted case never runs). */
static void check_folder_listed(void) {
    DIR *dir = opendir(kt_data_path("ops"));
    TEST_CHECK(dir != NULL, "cannot list %s", kt_data_path("ops"));
    if (!dir) return;
    struct dirent *de;
    while ((de = readdir(dir))) {
        size_t l = strlen(de->d_name);
        if (l < 12 || strcmp(de->d_name + l - 12, ".safetensors") != 0) continue;
        int listed = 0;
        for (int i = 0; i < n_case_files && !listed; i++) listed = strcmp(case_files[i], de->d_name) == 0;
        TEST_CHECK(listed, "tests/data/ops/%s is not listed in cases.txt", de->d_name);
    }
    closedir(dir);
}

static void run_case(kd_backend *be, const char *tag, const char *file, int count) {
    char rel[600], name[512];
    snprintf(rel, sizeof rel, "ops/%s", file);
    snprintf(name, sizeof name, "%s", file);
    char *dot = strstr(name, ".safetensors");
    if (dot) *dot = 0;
    tcase c = {.name = name, .be = be, .tag = tag};
    kd_err e = {0};
    if (kd_st_open(kt_data_path(rel), &c.f, &e) != KD_OK) {
        TEST_CHECK(0, "case %s: cannot open: %s", name, e.msg);
        return;
    }
    const char *op = kd_st_meta(c.f, "op");
    size_t r = 0;
    while (op && r < N_RUNNERS && strcmp(runners[r].op, op) != 0) r++;
    if (!op || r == N_RUNNERS) {
        TEST_CHECK(0, "case %s: %s op \"%s\"", name, op ? "no runner for" : "no metadata", op ? op : "op");
    } else {
        if (count) runners[r].cases++;
        runners[r].run(&c);
    }
    tc_free_all(&c);
    kd_st_close(c.f);
}

int main(void) {
    if (read_case_list()) check_folder_listed();

    const struct {
        int threads;
        const char *tag;
    } passes[] = {{0, ""}, {1, " [1 thread]"}};
    for (size_t pi = 0; pi < sizeof passes / sizeof passes[0]; pi++) {
        kd_backend be;
        kd_err e = {0};
        if (kd_backend_cpu_init(&be, passes[pi].threads, &e) != KD_OK) {
            TEST_CHECK(0, "kd_backend_cpu_init(%d): %s", passes[pi].threads, e.msg);
            continue;
        }
        printf("== %d thread%s\n", kd_backend_threads(&be), kd_backend_threads(&be) == 1 ? "" : "s");
        for (int i = 0; i < n_case_files; i++) run_case(&be, passes[pi].tag, case_files[i], pi == 0);
        kd_backend_free(&be);
    }

    /* A trimmed cases.txt must not pass silently: every runner needs at least one case. */
    for (size_t r = 0; r < N_RUNNERS; r++)
        TEST_CHECK(runners[r].cases > 0, "op %s has no case in tests/data/ops", runners[r].op);
    for (int i = 0; i < n_case_files; i++) free(case_files[i]);
    return kt_finish("test_ops");
}
