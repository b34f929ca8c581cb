/* Kandinsky 2.0's original samplers (p_sampler, ddim_sampler, plms_sampler) against the original
 * code run on the CPU with an analytic model (tools/reference/gen_samplers20.py):
 *   eps(x, t) = 0.5·tanh(x) + t/2000, var(x) = 0.9·sin(x); noise from the seeded CPU generator,
 *   the initial latents the first half of randn(2B, 4, 5, 6);
 * respacing, learned-range variance, the dynamic threshold of sample 0, DDIM η, init_step,
 * PLMS's first-step double evaluation, batch 1 and 2. |got − ref| <= 1e-5·max|ref| + 1e-5·|ref|. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "sched/guided.h"
#include "testutil.h"

typedef struct {
    int64_t n;
    int kind;
} model_ctx;

static kd_status analytic(void *ctx, const float *x, float t, float *eps, float *var, kd_err *e) {
    (void)e;
    const model_ctx *m = ctx;
    for (int64_t i = 0; i < m->n; i++) {
        eps[i] = 0.5f * tanhf(x[i]) + t / 2000.0f;
        if (var) var[i] = 0.9f * sinf(x[i]);
    }
    return KD_OK;
}

int main(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/cases.safetensors", kt_data_path("samplers20"));
    kd_st_file *f = NULL;
    kd_err e = {0};
    TEST_CHECK(kd_st_open(path, &f, &e) == KD_OK, "open %s: %s", path, e.msg);
    int n_cases = 0;
    for (int k = 0; f; k++) {
        char name[64];
        size_t np = 0, no = 0;
        snprintf(name, sizeof name, "case%d.params", k);
        const float *p = kt_f32_tensor(f, name, &np);
        snprintf(name, sizeof name, "case%d.out", k);
        const float *ref = kt_f32_tensor(f, name, &no);
        if (!p || !ref || np != 6) break;
        uint64_t seed = (uint64_t)p[0];
        int kind = (int)p[1], steps = (int)p[2], init_step = (int)p[4], B = (int)p[5];
        double eta = p[3] / 1000.0;
        const int64_t C = 4, HW = 30, n = B * C * HW;
        kd_g20 s;
        kd_status st = kd_g20_init(&s, (kd_g20_kind)kind, steps, eta, init_step, &e);
        TEST_CHECK(st == KD_OK, "case %d init: %s", k, e.msg);
        kd_rng rng;
        kd_rng_seed(&rng, seed);
        float *x2 = malloc((size_t)(2 * n) * sizeof(float));
        kd_rng_randn(&rng, x2, (size_t)(2 * n)); /* the loop's own randn(2B, ...): its first half */
        model_ctx m = {n, kind};
        if (st == KD_OK) st = kd_g20_run(&s, analytic, NULL, &m, x2, B, C, HW, &rng, &e);
        TEST_CHECK(st == KD_OK, "case %d run: %s", k, e.msg);
        char label[96];
        static const char *const kinds[] = {"p_sampler", "ddim", "plms"};
        snprintf(label, sizeof label, "case %d %s steps %d eta %.2f init %d B %d", k, kinds[kind], steps, eta, init_step, B);
        if (st == KD_OK && (size_t)n == no) kt_allclose(label, x2, ref, (size_t)n, 1e-5 * kt_max_abs(ref, no), 1e-5);
        free(x2);
        n_cases++;
    }
    TEST_CHECK(n_cases >= 10, "%d sampler cases", n_cases);
    size_t ni = 0, nt = 0;
    const float *tin = kt_f32_tensor(f, "thr.in", &ni), *tout = kt_f32_tensor(f, "thr.out", &nt);
    TEST_CHECK(tin && tout && ni == nt && ni == 240, "threshold case");
    if (tin && tout) {
        float *y = malloc(ni * sizeof(float));
        memcpy(y, tin, ni * sizeof(float));
        kd_g20_dynamic_threshold(y, 2, 120, 99.5);
        kt_allclose("dynamic threshold (percentile of sample 0)", y, tout, ni, 0, 0);
        free(y);
    }
    /* bad arguments */
    kd_g20 s;
    TEST_CHECK(kd_g20_init(&s, KD_G20_P, 1, 0, -1, &e) == KD_ERR_INVALID_ARG, "p_sampler 1 step: %s", e.msg);
    TEST_CHECK(kd_g20_init(&s, KD_G20_DDIM, 0, 0, -1, &e) == KD_ERR_INVALID_ARG, "0 steps: %s", e.msg);
    TEST_CHECK(kd_g20_init(&s, KD_G20_PLMS, 10, 0.5, -1, &e) == KD_ERR_INVALID_ARG, "plms eta: %s", e.msg);
    TEST_CHECK(kd_g20_init(&s, KD_G20_DDIM, 10, 2.0, -1, &e) == KD_ERR_INVALID_ARG, "eta 2: %s", e.msg);
    TEST_CHECK(kd_g20_init(&s, KD_G20_DDIM, 10, 0, 0, &e) == KD_ERR_INVALID_ARG, "init_step 0: %s", e.msg);
    kd_st_close(f);
    return kt_finish("test_samplers20");
}
