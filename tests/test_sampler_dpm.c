/* DPM-Solver++ samplers (src/sched/dpmsolver.c: dpm++2m, dpm++2m-karras, dpm++3m, dpm++sde)
 * against diffusers 0.42's DPMSolverMultistepScheduler.from_config(cfg, algorithm_type=...,
 * solver_order=..., use_karras_sigmas=...) (tools/reference/gen_sampler_dpm.py →
 * tests/data/samplers/dpm), over the Kandinsky 2.2 decoder (DDPM), 2.1 (DDIM) and prior (UnCLIP)
 * scheduler configs and variations (spacings, final sigma, lower_order_final, euler_at_final,
 * heun, thresholding, v / sample prediction, learned_range, lambda_min_clipped):
 *   - timesteps: exact, for n = 1, 2, 10, 25, 50 (and trailing n = 61: 62 entries ending in -1);
 *   - sigmas: exact (float32), Karras ones included;
 *   - whole loops from randn latents (kd_rng seeded as the torch.Generator) with the "model"
 *     0.9·x + 0.1·base, the SDE noise drawn from the same generator: x after every step (n <= 10)
 *     or after chosen steps; an img2img loop from add_noise at timesteps[t_start]; add_noise at a
 *     few indices (a repeated Karras timestep included). Tolerance |got - ref| <= atol + rtol·|ref|
 *     with rtol 1e-5 and atol 1e-6·max|ref|: the arithmetic is torch's float32 operation order,
 *     but torch's float32 log/exp (for lambda and exp(-h)) are MKL's, not correctly rounded as
 *     here, so the coefficients may differ by an ulp; the atol covers elements that are sums with
 *     cancellation near 0, where one ulp of the larger term is a large relative error;
 *   - restarting a loop at i = 0 without set_timesteps gives the same samples;
 *   - config errors: unsupported options refused with KD_ERR_UNSUPPORTED naming the key, bad
 *     values KD_ERR_FORMAT, solver types DPM maps to midpoint accepted, unknown keys ignored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "sched/dpmsolver.h"
#include "sched/sampler.h"
#include "testutil.h"

static const char *const CONFIGS[] = {"k22",       "k21",    "prior", "sl_default", "trailing",
                                      "linspace",  "sigma_min", "no_lof", "euler_final", "heun",
                                      "thresh",    "vpred",  "learned", "cos_clip",  "cos_clip_trailing"};
#define N_CONFIGS ((int)(sizeof CONFIGS / sizeof *CONFIGS))

static const kd_sampler_ops *const SAMPLERS[] = {&kd_sampler_dpmpp_2m, &kd_sampler_dpmpp_2m_karras,
                                                 &kd_sampler_dpmpp_3m, &kd_sampler_dpmpp_sde};
#define N_SAMPLERS 4

/* worst errors over the whole suite, for the summary */
static double g_max_abs, g_max_rel, g_atol_need;
static size_t g_values, g_exact;

static const float *tensor_f32(const kd_st_file *f, const char *name, size_t *n) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t || t->t.dtype != KD_F32) return NULL;
    if (n) *n = (size_t)kd_tensor_numel(&t->t);
    return t->t.data;
}

/* a malloc'd copy (the data of an int64 tensor need not be 8-byte aligned in the file) */
static int64_t *tensor_i64(const kd_st_file *f, const char *name, size_t *n) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t || t->t.dtype != KD_I64) return NULL;
    if (n) *n = (size_t)kd_tensor_numel(&t->t);
    int64_t *p = malloc(t->nbytes + 8);
    if (p) memcpy(p, t->t.data, t->nbytes);
    return p;
}

/* sigmas: within 1 ulp (torch's float32 sqrt, in sqrt((1 - ᾱ) / ᾱ), is MKL's vsSqrt: not correctly
 * rounded, up to 0.75 ulp off; here it is the exact sqrtf) */
static int64_t g_sigma_ulp;
static size_t g_sigmas, g_sigmas_exact;

static int64_t ulp_dist(float a, float b) {
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    if (x < 0) x = INT32_MIN - x;
    if (y < 0) y = INT32_MIN - y;
    return llabs((long long)x - (long long)y);
}

static int close_x(const char *label, const float *got, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > g_max_abs) g_max_abs = d;
        if (ref[i] != 0 && d / fabs((double)ref[i]) > g_max_rel) g_max_rel = d / fabs((double)ref[i]);
        g_exact += got[i] == ref[i];
    }
    {
        double mx = kt_max_abs(ref, n);
        for (size_t i = 0; i < n; i++) {
            double d = fabs((double)got[i] - (double)ref[i]) - 1e-5 * fabs((double)ref[i]);
            if (mx > 0 && d / mx > g_atol_need) g_atol_need = d / mx;
        }
    }
    g_values += n;
    return kt_allclose(label, got, ref, n, 1e-6 * kt_max_abs(ref, n), 1e-5);
}

/* "a,b,c" → ints; returns the count */
static int parse_ints(const char *s, int *out, int max) {
    int n = 0;
    while (s && *s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s) break;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',') break;
    }
    return n;
}

/* "n:k,k;n:k,..." → the ks of entry key (-1 if absent) */
static int parse_keyed(const char *s, int key, int *out, int max) {
    while (s && *s) {
        char *end;
        long k = strtol(s, &end, 10);
        if (end == s || *end != ':') return -1;
        if (k == key) return parse_ints(end + 1, out, max);
        s = strchr(end, ';');
        if (!s) return -1;
        s++;
    }
    return -1;
}

typedef struct fixture {
    const char *name;
    kd_st_file *f;
    kd_config cfg;
    kd_sched_shape shape;
    int64_t mc;
    size_t n, n_mo;
    const float *base, *var;
    int steps[16], n_steps;
} fixture;

/* model_output = 0.9·x + 0.1·base (+ var as the variance half) */
static void model(const fixture *fx, const float *x, float *mo) {
    size_t row = (size_t)(fx->shape.channels * fx->shape.inner);
    for (int64_t b = 0; b < fx->shape.batch; b++) {
        float *o = mo + (size_t)b * (size_t)fx->mc * (size_t)fx->shape.inner;
        for (size_t j = 0; j < row; j++) {
            size_t k = (size_t)b * row + j;
            float p = x[k] * 0.9f, q = fx->base[k] * 0.1f;
            o[j] = p + q;
            if (fx->var) o[row + j] = fx->var[k];
        }
    }
}

static void check_timesteps(fixture *fx, kd_sampler *s, int a) {
    kd_err e = {0};
    for (int k = 0; k < fx->n_steps; k++) {
        int n = fx->steps[k];
        char name[96];
        size_t nt = 0, ns = 0;
        snprintf(name, sizeof name, "s%d.N%d.timesteps", a, n);
        int64_t *rt = tensor_i64(fx->f, name, &nt);
        snprintf(name, sizeof name, "s%d.N%d.sigmas", a, n);
        const float *rs = tensor_f32(fx->f, name, &ns);
        kd_status st = kd_sampler_set_timesteps(s, n, &e);
        TEST_CHECK(st == KD_OK && rt && rs, "%s/%s: set_timesteps(%d): %s", fx->name, kd_sampler_name(s), n, e.msg);
        if (st != KD_OK || !rt || !rs) {
            free(rt);
            continue;
        }
        int len = kd_sampler_num_timesteps(s);
        int ok = (size_t)len == nt && ns == nt + 1;
        const double *ts = kd_sampler_timesteps(s);
        const float *sig = kd_dpm_sigmas(s);
        int bad_t = -1, bad_s = -1;
        for (int i = 0; ok && i < len; i++)
            if (ts[i] != (double)rt[i] && bad_t < 0) bad_t = i;
        for (int i = 0; ok && sig && i <= len; i++) {
            int64_t u = ulp_dist(sig[i], rs[i]);
            if (u > g_sigma_ulp) g_sigma_ulp = u;
            g_sigmas++;
            g_sigmas_exact += u == 0;
            if (u > 1 && bad_s < 0) bad_s = i;
        }
        TEST_CHECK(ok && sig && bad_t < 0, "%s/%s n=%d: %d timesteps (ref %zu), first mismatch at %d (%g vs %lld)",
                   fx->name, kd_sampler_name(s), n, len, nt, bad_t, bad_t >= 0 ? ts[bad_t] : 0.0,
                   bad_t >= 0 ? (long long)rt[bad_t] : 0LL);
        TEST_CHECK(ok && sig && bad_s < 0, "%s/%s n=%d: sigmas within 1 ulp, first beyond at %d (%.9g vs %.9g)",
                   fx->name,
                   kd_sampler_name(s), n, bad_s, bad_s >= 0 ? sig[bad_s] : 0.0, bad_s >= 0 ? rs[bad_s] : 0.0);
        free(rt);
    }
}

/* Runs steps [from, N) on x (in place); compares the recorded ones. */
static void run_loop(fixture *fx, kd_sampler *s, int a, const char *tag, int from, const int *rec, int n_rec,
                     float *x, kd_rng *rng, float *mo) {
    kd_err e = {0};
    int N = kd_sampler_num_timesteps(s);
    for (int i = from; i < N; i++) {
        model(fx, x, mo);
        kd_status st = kd_sampler_step(s, i, mo, fx->mc, x, &fx->shape, rng, x, &e);
        if (st != KD_OK) {
            TEST_CHECK(0, "%s/%s %s: step %d: %s", fx->name, kd_sampler_name(s), tag, i, e.msg);
            return;
        }
        int want = rec == NULL;
        for (int r = 0; r < n_rec; r++) want |= rec[r] == i;
        if (!want) continue;
        char name[96], label[160];
        snprintf(name, sizeof name, "s%d.%s.x%d", a, tag, i);
        size_t nr = 0;
        const float *ref = tensor_f32(fx->f, name, &nr);
        snprintf(label, sizeof label, "%s/%s %s x%d", fx->name, kd_sampler_name(s), tag, i);
        TEST_CHECK(ref && nr == fx->n, "%s: reference %s", label, name);
        if (ref && nr == fx->n) close_x(label, x, ref, fx->n);
    }
}

static void check_loops(fixture *fx, kd_sampler *s, int a) {
    kd_err e = {0};
    float *x = malloc(fx->n * sizeof *x), *mo = malloc(fx->n_mo * sizeof *mo), *again = malloc(fx->n * sizeof *x);
    const char *recs = kd_st_meta(fx->f, "records");
    for (int k = 0; k < fx->n_steps; k++) {
        int n = fx->steps[k];
        int rec[64];
        int n_rec = parse_keyed(recs, n, rec, 64);
        TEST_CHECK(n_rec > 0, "%s: records for n=%d", fx->name, n);
        if (kd_sampler_set_timesteps(s, n, &e) != KD_OK) {
            TEST_CHECK(0, "%s: set_timesteps(%d): %s", fx->name, n, e.msg);
            continue;
        }
        char name[96], tag[16];
        snprintf(name, sizeof name, "s%d.L%d.x_init", a, n);
        size_t nr = 0;
        const float *init = tensor_f32(fx->f, name, &nr);
        kd_rng rng;
        kd_rng_seed(&rng, (uint64_t)(100 * a + n));
        kd_rng_randn(&rng, x, fx->n);
        TEST_CHECK(init && nr == fx->n && !memcmp(init, x, fx->n * sizeof *x), "%s/%s: initial latents n=%d",
                   fx->name, kd_sampler_name(s), n);
        snprintf(tag, sizeof tag, "L%d", n);
        run_loop(fx, s, a, tag, 0, rec, n_rec, x, &rng, mo);
        if (n == 10) {
            /* the same loop again without set_timesteps: i == 0 starts afresh */
            kd_rng_seed(&rng, (uint64_t)(100 * a + n));
            kd_rng_randn(&rng, again, fx->n);
            int N = kd_sampler_num_timesteps(s), ok = 1;
            for (int i = 0; i < N && ok; i++) {
                model(fx, again, mo);
                ok = kd_sampler_step(s, i, mo, fx->mc, again, &fx->shape, &rng, again, &e) == KD_OK;
            }
            TEST_CHECK(ok && !memcmp(again, x, fx->n * sizeof *x), "%s/%s: a second loop (n=10) repeats the first",
                       fx->name, kd_sampler_name(s));
        }
    }
    /* img2img: add_noise(base, noise0, timesteps[t_start]), then steps t_start.. */
    int img[2];
    if (parse_ints(kd_st_meta(fx->f, "img2img") ? strchr(kd_st_meta(fx->f, "img2img"), ':') + 1 : NULL, img + 1,
                   1) == 1 &&
        sscanf(kd_st_meta(fx->f, "img2img"), "%d", &img[0]) == 1) {
        TEST_CHECK(kd_sampler_set_timesteps(s, img[0], &e) == KD_OK, "%s: set_timesteps: %s", fx->name, e.msg);
        kd_rng rng;
        kd_rng_seed(&rng, (uint64_t)(900 + a));
        float *noise0 = malloc(fx->n * sizeof *noise0);
        kd_rng_randn(&rng, noise0, fx->n);
        char name[96];
        snprintf(name, sizeof name, "s%d.I.x_init", a);
        size_t nr = 0;
        const float *ref = tensor_f32(fx->f, name, &nr);
        kd_status st = kd_sampler_add_noise(s, img[1], fx->base, noise0, fx->n, x, &e);
        char label[128];
        snprintf(label, sizeof label, "%s/%s img2img x_init (add_noise at %d)", fx->name, kd_sampler_name(s), img[1]);
        TEST_CHECK(st == KD_OK && ref && nr == fx->n, "%s: %s", label, e.msg);
        if (st == KD_OK && ref && nr == fx->n) close_x(label, x, ref, fx->n);
        run_loop(fx, s, a, "I", img[1], NULL, 0, x, &rng, mo);
        free(noise0);
    } else {
        TEST_CHECK(0, "%s: img2img metadata", fx->name);
    }
    /* add_noise at chosen indices after set_timesteps(25) */
    int idx[8];
    int n_idx = parse_keyed(kd_st_meta(fx->f, "add_noise"), a, idx, 8);
    const float *orig = tensor_f32(fx->f, "add.original", NULL), *noise = tensor_f32(fx->f, "add.noise", NULL);
    TEST_CHECK(n_idx > 0 && orig && noise, "%s: add_noise fixture", fx->name);
    if (n_idx > 0 && orig && noise && kd_sampler_set_timesteps(s, 25, &e) == KD_OK) {
        for (int k = 0; k < n_idx; k++) {
            char name[96], label[128];
            snprintf(name, sizeof name, "s%d.A.i%d", a, idx[k]);
            size_t nr = 0;
            const float *ref = tensor_f32(fx->f, name, &nr);
            kd_status st = kd_sampler_add_noise(s, idx[k], orig, noise, fx->n, x, &e);
            snprintf(label, sizeof label, "%s/%s add_noise i=%d (t=%g)", fx->name, kd_sampler_name(s), idx[k],
                     kd_sampler_timesteps(s)[idx[k]]);
            TEST_CHECK(st == KD_OK && ref && nr == fx->n, "%s: %s", label, e.msg);
            if (st == KD_OK && ref && nr == fx->n) close_x(label, x, ref, fx->n);
        }
    }
    free(x);
    free(mo);
    free(again);
}

static void check_config(const char *cname) {
    char rel[128];
    snprintf(rel, sizeof rel, "samplers/dpm/%s.safetensors", cname);
    fixture fx;
    memset(&fx, 0, sizeof fx);
    fx.name = cname;
    kd_err e = {0};
    if (kd_st_open(kt_data_path(rel), &fx.f, &e) != KD_OK) {
        TEST_CHECK(0, "open %s: %s", rel, e.msg);
        return;
    }
    const char *text = kd_st_meta(fx.f, "config");
    int sh[3];
    int ok = text && kd_config_parse(text, strlen(text), cname, &fx.cfg, &e) == KD_OK &&
             parse_ints(kd_st_meta(fx.f, "shape"), sh, 3) == 3 && kd_st_meta(fx.f, "model_channels");
    TEST_CHECK(ok, "%s: fixture metadata (%s)", cname, e.msg);
    if (!ok) goto out;
    fx.shape = (kd_sched_shape){sh[0], sh[1], sh[2]};
    fx.mc = atoi(kd_st_meta(fx.f, "model_channels"));
    fx.n = (size_t)(sh[0] * sh[1] * sh[2]);
    fx.n_mo = (size_t)(sh[0] * fx.mc * sh[2]);
    fx.n_steps = parse_ints(kd_st_meta(fx.f, "steps"), fx.steps, 16);
    size_t nb = 0;
    fx.base = tensor_f32(fx.f, "base", &nb);
    fx.var = fx.mc != sh[1] ? tensor_f32(fx.f, "var", NULL) : NULL;
    TEST_CHECK(fx.base && nb == fx.n && (fx.mc == sh[1] || fx.var), "%s: base / var", cname);
    if (!fx.base || nb != fx.n || (fx.mc != sh[1] && !fx.var)) goto out;
    const char *names = kd_st_meta(fx.f, "samplers");
    for (int a = 0; a < N_SAMPLERS; a++) {
        kd_sampler *s = NULL;
        kd_status st = kd_sampler_create(SAMPLERS[a], &fx.cfg, &s, &e);
        TEST_CHECK(st == KD_OK, "%s/%s: create: %s", cname, SAMPLERS[a]->name, e.msg);
        if (st != KD_OK) continue;
        TEST_CHECK(names && strstr(names, kd_sampler_name(s)) &&
                       !strcmp(SAMPLERS[a]->diffusers_class, "DPMSolverMultistepScheduler") &&
                       kd_sampler_init_noise_sigma(s) == 1.0f && s->ops->scale_model_input == NULL &&
                       kd_sampler_learned_variance(s) == (fx.mc != sh[1]),
                   "%s/%s: properties", cname, kd_sampler_name(s));
        check_timesteps(&fx, s, a);
        check_loops(&fx, s, a);
        kd_sampler_free(s);
    }
out:
    kd_config_free(&fx.cfg);
    kd_st_close(fx.f);
}

/* ------------------------------------------------------------------------------------------------
 * errors and config handling */

static kd_status create_from(const kd_sampler_ops *ops, const char *json, kd_sampler **s, kd_err *e) {
    kd_config cfg;
    *s = NULL;
    kd_status st = kd_config_parse(json, strlen(json), "test_config.json", &cfg, e);
    if (st != KD_OK) return st;
    st = kd_sampler_create(ops, &cfg, s, e);
    kd_config_free(&cfg);
    return st;
}

static void expect_refused(const char *json, kd_status want, const char *needle) {
    kd_err e = {0};
    kd_sampler *s;
    kd_status st = create_from(&kd_sampler_dpmpp_2m, json, &s, &e);
    TEST_CHECK(st == want && strstr(e.msg, needle), "%s → %s (want %s naming '%s'): %s", json, kd_status_str(st),
               kd_status_str(want), needle, e.msg);
    kd_sampler_free(s);
}

static void check_errors(void) {
    expect_refused("{\"use_lu_lambdas\": true}", KD_ERR_UNSUPPORTED, "use_lu_lambdas");
    expect_refused("{\"use_exponential_sigmas\": true}", KD_ERR_UNSUPPORTED, "use_exponential_sigmas");
    expect_refused("{\"use_beta_sigmas\": true}", KD_ERR_UNSUPPORTED, "use_beta_sigmas");
    expect_refused("{\"rescale_betas_zero_snr\": true}", KD_ERR_UNSUPPORTED, "rescale_betas_zero_snr");
    expect_refused("{\"use_flow_sigmas\": true}", KD_ERR_UNSUPPORTED, "use_flow_sigmas");
    expect_refused("{\"prediction_type\": \"flow_prediction\"}", KD_ERR_UNSUPPORTED, "prediction_type");
    expect_refused("{\"prediction_type\": \"noise\"}", KD_ERR_FORMAT, "prediction_type");
    expect_refused("{\"solver_type\": \"euler\"}", KD_ERR_FORMAT, "solver_type");
    expect_refused("{\"timestep_spacing\": \"uniform\"}", KD_ERR_FORMAT, "timestep_spacing");
    expect_refused("{\"final_sigmas_type\": \"one\"}", KD_ERR_FORMAT, "final_sigmas_type");
    expect_refused("{\"beta_schedule\": \"sigmoid\"}", KD_ERR_UNSUPPORTED, "beta_schedule");
    expect_refused("{\"lower_order_final\": 1}", KD_ERR_FORMAT, "lower_order_final");
    expect_refused("{\"thresholding\": true, \"dynamic_thresholding_ratio\": 1.5}", KD_ERR_FORMAT,
                   "dynamic_thresholding_ratio");
    /* the SDE variant needs the generator */
    kd_err e = {0};
    kd_sampler *s;
    kd_status st = create_from(&kd_sampler_dpmpp_sde, "{\"some_future_key\": [1, 2], \"variance_type\": "
                               "\"fixed_small_log\", \"clip_sample\": true}", &s, &e);
    TEST_CHECK(st == KD_OK, "unknown keys and other classes' values ignored: %s", e.msg);
    if (st == KD_OK) {
        float x[16] = {0}, mo[16] = {0};
        kd_sched_shape sh = {1, 4, 4};
        TEST_CHECK(kd_sampler_set_timesteps(s, 5, &e) == KD_OK && kd_sampler_learned_variance(s) == 0,
                   "set_timesteps / learned_variance: %s", e.msg);
        st = kd_sampler_step(s, 0, mo, 4, x, &sh, NULL, x, &e);
        TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "rng"), "sde step without rng refused: %s", e.msg);
        kd_sampler_free(s);
    }
    /* solver types DEIS / UniPC name are mapped to midpoint by __init__: bh2 == midpoint */
    kd_sampler *a, *b;
    kd_status sa = create_from(&kd_sampler_dpmpp_3m, "{\"solver_type\": \"bh2\"}", &a, &e);
    kd_status sb = create_from(&kd_sampler_dpmpp_3m, "{\"solver_type\": \"midpoint\"}", &b, &e);
    TEST_CHECK(sa == KD_OK && sb == KD_OK, "solver_type bh2 accepted: %s", e.msg);
    if (sa == KD_OK && sb == KD_OK) {
        float xa[32], xb[32], mo[32];
        kd_sched_shape sh = {2, 4, 4};
        kd_rng r;
        kd_rng_seed(&r, 3);
        kd_rng_randn(&r, xa, 32);
        memcpy(xb, xa, sizeof xa);
        kd_sampler_set_timesteps(a, 8, &e);
        kd_sampler_set_timesteps(b, 8, &e);
        for (int i = 0; i < kd_sampler_num_timesteps(a); i++) {
            for (int j = 0; j < 32; j++) mo[j] = 0.5f * xa[j];
            kd_sampler_step(a, i, mo, 4, xa, &sh, NULL, xa, &e);
            for (int j = 0; j < 32; j++) mo[j] = 0.5f * xb[j];
            kd_sampler_step(b, i, mo, 4, xb, &sh, NULL, xb, &e);
        }
        TEST_CHECK(!memcmp(xa, xb, sizeof xa), "solver_type bh2 runs as midpoint");
    }
    kd_sampler_free(a);
    kd_sampler_free(b);
    /* the learned variance half: dropped whether the output has it or not */
    kd_sampler *s2 = NULL;
    st = create_from(&kd_sampler_dpmpp_2m, "{\"variance_type\": \"learned_range\"}", &s, &e);
    if (st == KD_OK) st = create_from(&kd_sampler_dpmpp_2m, "{\"variance_type\": \"learned_range\"}", &s2, &e);
    TEST_CHECK(st == KD_OK && kd_sampler_learned_variance(s) == 1, "learned_range: learned_variance 1: %s", e.msg);
    if (st == KD_OK) {
        float x1[16], x2[16], mo1[16], mo2[32];
        kd_sched_shape sh = {1, 4, 4};
        kd_rng r;
        kd_rng_seed(&r, 4);
        kd_rng_randn(&r, x1, 16);
        memcpy(x2, x1, sizeof x1);
        kd_sampler_set_timesteps(s, 4, &e);
        kd_sampler_set_timesteps(s2, 4, &e);
        for (int i = 0; i < 4; i++) {
            for (int j = 0; j < 16; j++) {
                mo1[j] = 0.3f * x1[j];
                mo2[j] = 0.3f * x2[j];
                mo2[16 + j] = 123.0f;
            }
            kd_sampler_step(s, i, mo1, 4, x1, &sh, NULL, x1, &e);
            kd_sampler_step(s2, i, mo2, 8, x2, &sh, NULL, x2, &e);
        }
        TEST_CHECK(!memcmp(x1, x2, sizeof x1), "learned_range: the variance half is ignored");
    }
    kd_sampler_free(s);
    kd_sampler_free(s2);
}

int main(void) {
    for (int c = 0; c < N_CONFIGS; c++) check_config(CONFIGS[c]);
    check_errors();
    printf("DPM samplers: beyond rtol 1e-5, at most %.2e·max|ref|\n", g_atol_need);
    printf("DPM samplers: %zu sigmas, %zu bit-exact, max %lld ulp\n", g_sigmas, g_sigmas_exact, (long long)g_sigma_ulp);
    printf("DPM samplers: %zu compared values, %zu bit-exact (%.2f%%); max abs err %.3e, max rel err %.3e\n",
           g_values, g_exact, g_values ? 100.0 * (double)g_exact / (double)g_values : 0.0, g_max_abs, g_max_rel);
    return kt_finish("test_sampler_dpm");
}
