/* The single-threaded sgemm kernels against a float64 reference: our AVX-512 kernel (where the CPU
 * has AVX-512F) and whatever kd_sgemm_1t dispatches to. Shapes cover every edge of the blocking
 * (MR = 14, NR = 32, KC = 256, MC = 168, NC = 3072: one below, at and above each), all four
 * transpositions, alpha/beta, padded leading dimensions. Each element must be within the
 * classic float error bound (K + 2)·u·Σ|α·a·b| + u·|β·c|; C outside the M × N window must be
 * untouched, and beta = 0 must ignore NaN already in C (BLAS semantics). The F16/BF16-weight entry
 * (kd_sgemm_avx512_half_wt, what kd_linear uses for half-precision weights) is checked the same way. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "testutil.h"

typedef int (*sgemm_fn)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                        float, float *, int64_t);

static int dispatch_1t(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                       const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    kd_sgemm_1t(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return 1;
}

static uint64_t g_rng = 0x5eed;

static float *random_matrix(int64_t rows, int64_t ld) {
    float *m = malloc((size_t)(rows * ld) * sizeof(float) + 4);
    for (int64_t i = 0; i < rows * ld; i++) m[i] = kt_rand_uniform(&g_rng);
    return m;
}

/* One case; returns 1 if every element is within its bound and nothing outside C's window moved. */
static int run_case(sgemm_fn fn, const char *name, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                    float beta) {
    int64_t pad = (int64_t)(kt_rand_u64(&g_rng) % 5);
    int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    float *A = random_matrix(ta ? K : M, lda), *B = random_matrix(tb ? N : K, ldb);
    float *C = random_matrix(M, ldc), *C0 = malloc((size_t)(M * ldc) * sizeof(float) + 4);
    if (beta == 0.0f)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = NAN;
    memcpy(C0, C, (size_t)(M * ldc) * sizeof(float));
    int ran = fn(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    int ok = ran, bad_shown = 0;
    const double u = 0x1p-24;
    for (int64_t i = 0; i < M && ok; i++) {
        for (int64_t j = 0; j < ldc; j++) {
            float got = C[i * ldc + j];
            if (j >= N) { /* padding column: must be untouched */
                if (memcmp(&got, &C0[i * ldc + j], sizeof got) != 0) ok = 0;
                continue;
            }
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                double a = ta ? A[k * lda + i] : A[i * lda + k], b = tb ? B[j * ldb + k] : B[k * ldb + j];
                ref += a * b;
                mag += fabs(a * b);
            }
            ref *= alpha;
            mag *= fabs(alpha);
            double c0 = beta == 0.0f ? 0.0 : (double)beta * C0[i * ldc + j];
            ref += c0;
            double tol = (double)(K + 2) * u * mag + 2 * u * fabs(c0) + 1e-30;
            if (!(fabs(got - ref) <= tol)) {
                if (!bad_shown++)
                    printf("  %s ta=%d tb=%d M=%lld N=%lld K=%lld α=%g β=%g: C[%lld,%lld] = %.9g, expected %.9g (tol %.3g)\n",
                           name, ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta, (long long)i,
                           (long long)j, got, ref, tol);
                ok = 0;
            }
        }
    }
    TEST_CHECK(ok, "%s ta=%d tb=%d M=%lld N=%lld K=%lld alpha=%g beta=%g (ran=%d)", name, ta, tb, (long long)M,
               (long long)N, (long long)K, alpha, beta, ran);
    free(A);
    free(B);
    free(C);
    free(C0);
    return ok;
}

static void run_suite(sgemm_fn fn, const char *name) {
    static const int64_t edges[] = {1, 2, 13, 14, 15, 16, 17, 31, 32, 33, 47, 167, 168, 169, 255, 256, 257};
    const int ne = (int)(sizeof edges / sizeof edges[0]);
    static const float alphas[] = {1.0f, 0.5f, -2.0f}, betas[] = {0.0f, 1.0f, 0.25f};
    int cases = 0, passed = 0;
    /* every transposition × a random draw of edge sizes */
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 24; r++) {
            int64_t M = edges[kt_rand_u64(&g_rng) % ne], N = edges[kt_rand_u64(&g_rng) % ne];
            int64_t K = edges[kt_rand_u64(&g_rng) % ne];
            float alpha = alphas[r % 3], beta = betas[(r / 3) % 3];
            passed += run_case(fn, name, t & 1, t >> 1, M, N, K, alpha, beta);
            cases++;
        }
    /* several KC slices, several MC blocks, two NC blocks, K = 0 (C = β·C) */
    static const int64_t big[][3] = {{37, 45, 777}, {340, 40, 300}, {20, 3100, 70}, {15, 33, 0}, {169, 3073, 257}};
    for (size_t b = 0; b < sizeof big / sizeof big[0]; b++)
        for (int t = 0; t < 4; t++) {
            passed += run_case(fn, name, t & 1, t >> 1, big[b][0], big[b][1], big[b][2], t == 3 ? 0.75f : 1.0f,
                               t == 2 ? 0.0f : 0.5f);
            cases++;
        }
    printf("%s: %d/%d cases within the float error bound\n", name, passed, cases);
}

/* C[M,N] (row-major) against A[M,K] · B within the float error bound, B(k, c) = B[k·sk + c·sc]. */
static int product_ok(const float *A, const float *B, int64_t sk, int64_t sc, const float *C, int64_t M, int64_t N,
                      int64_t K) {
    for (int64_t r = 0; r < M; r++)
        for (int64_t c = 0; c < N; c++) {
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)A[r * K + k] * B[k * sk + c * sc];
                ref += p;
                mag += fabs(p);
            }
            if (!(fabs(C[r * N + c] - ref) <= (double)(K + 2) * 0x1p-24 * mag + 1e-30)) return 0;
        }
    return 1;
}

/* C = A · Wᵀ with W in F16 / BF16: against float64 on the exactly converted weights. */
static void run_half_suite(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},    {14, 32, 16},  {15, 33, 17},   {29, 95, 300},
                                        {169, 70, 257}, {3, 3100, 40}, {154, 130, 513}};
    int cases = 0, passed = 0;
    for (int d = 0; d < 2; d++) {
        kd_dtype dt = d ? KD_BF16 : KD_F16;
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            int64_t M = shapes[i][0], N = shapes[i][1], K = shapes[i][2], ldw = K + (int64_t)(i % 3);
            float *A = random_matrix(M, K), *Wf = random_matrix(N, ldw), *C = malloc((size_t)(M * N) * sizeof(float));
            uint16_t *W = malloc((size_t)(N * ldw) * sizeof(uint16_t));
            kd_convert_from_f32(W, dt, Wf, (size_t)(N * ldw));
            kd_convert_to_f32(Wf, W, dt, (size_t)(N * ldw)); /* the values the kernel sees */
            for (int64_t j = 0; j < M * N; j++) C[j] = NAN;
            int ok = kd_sgemm_avx512_half_wt(M, N, K, A, K, W, dt, ldw, C, N) && product_ok(A, Wf, 1, ldw, C, M, N, K);
            TEST_CHECK(ok, "half_wt %s M=%lld N=%lld K=%lld", kd_dtype_name(dt), (long long)M, (long long)N,
                       (long long)K);
            passed += ok;
            cases++;
            free(A);
            free(Wf);
            free(W);
            free(C);
        }
    }
    printf("kd_sgemm_avx512_half_wt: %d/%d cases within the float error bound\n", passed, cases);
}

/* C = A · B with A handed over in the packed-A layout (kd_sgemm_pa_index), as Winograd writes it. */
static void run_prepacked_suite(void) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {14, 32, 16}, {15, 33, 255}, {29, 95, 257}, {169, 70, 600}, {3, 700, 40}};
    int cases = 0, passed = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
        float *A = random_matrix(M, K), *B = random_matrix(K, N), *C = malloc((size_t)(M * N) * sizeof(float));
        float *Ap = calloc((size_t)kd_sgemm_pa_floats(M, K), sizeof(float));
        for (int64_t r = 0; r < M; r++)
            for (int64_t k = 0; k < K; k++) Ap[kd_sgemm_pa_index(M, K, r, k)] = A[r * K + k];
        int ok = kd_sgemm_avx512_pa(M, N, K, Ap, B, N, C, N) && product_ok(A, B, N, 1, C, M, N, K);
        TEST_CHECK(ok, "prepacked A: M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
        passed += ok;
        cases++;
        free(A), free(B), free(C), free(Ap);
    }
    printf("kd_sgemm_avx512_pa: %d/%d cases within the float error bound\n", passed, cases);
}

int main(void) {
    printf("kd_sgemm_1t dispatches to: %s\n", kd_gemm_kernel_name());
    run_suite(dispatch_1t, "kd_sgemm_1t");
    if (kd_cpu_has_avx512())
    {
        run_suite(kd_sgemm_avx512, "kd_sgemm_avx512");
        run_half_suite();
        run_prepacked_suite();
    } else
        printf("kd_sgemm_avx512: this CPU has no AVX-512F, kernel not run\n");
    return kt_finish("test_sgemm");
}
