/* The "unipc" sampler (src/sched/unipc.c) against diffusers 0.42's UniPCMultistepScheduler
 * (tools/reference/gen_sampler_unipc.py → tests/data/samplers/unipc): for each config (the
 * Kandinsky 2.2 decoder's DDPM file, 2.1's DDIM file, the prior's UnCLIP file, and variations:
 * linspace / trailing spacing, v_prediction, predict_x0 false, bh1, lower_order_final false,
 * final_sigmas_type sigma_min, disable_corrector, thresholding, Karras sigmas, solver_order 1 / 3)
 *   - set_timesteps(n), n = 1, 2, 10, 25, 50 (and 61: a trailing list of 62 ending in -1):
 *     the timesteps exactly, and α / σ_t at every index through add_noise within 4 ulp (torch's
 *     sqrt is MKL's vsSqrt, 1 ulp off the correctly rounded one in ~17% of inputs on the AMD CPU
 *     that made the references; src/sched/unipc.c computes the correctly rounded one: 3 ulp seen);
 *   - whole loops from kd_rng latents (equal to torch's randn) with a fixed model 0.9·x + 0.1·base,
 *     every step's sample; img2img loops starting at Kandinsky's get_timesteps index from
 *     add_noise; loops re-run without set_timesteps and after an abandoned run (the history must
 *     start over); every other loop with a model output of 2·C channels whose variance half is NaN
 *     (it must not be read);
 *   - add_noise at several indices;
 *   - config handling: unknown keys ignored, missing keys → class defaults, refused options named.
 * Tolerance: |got − ref| ≤ atol + rtol·|ref| with rtol 1e-5 and atol 2e-6·max|ref| over each
 * sample (the largest difference seen is 1.1e-6·max|ref|). The arithmetic is torch's, operation by
 * operation (expm1 is SLEEF's, reproduced bit for bit; linalg.solve is reproduced for 2 × 2), except
 * torch.log and torch.sqrt, which are MKL's vsLn / vsSqrt (not reproducible; 1 ulp from the
 * correctly rounded results in ~8% / ~17% of inputs): λ_t − λ_s0 then differs by an ulp of λ
 * (~5e-7 for |λ| ≤ 8), which moves a sample by ~1e-6 of its range; near 0 that is a large relative
 * error, hence the atol. Where diffusers' own result is inf / NaN (a final sigma 0 with bh1,
 * predict_x0 false or lower_order_final false) the same elements must be the same non-finite
 * value. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "sched/sampler.h"
#include "testutil.h"

#define RTOL 1e-5
#define ATOL_FRAC 2e-6
#define MAX_ULP_SIGMA 4

static const char *const FIXTURES[] = {
    "k22_decoder",     "k21_ddim",         "prior_unclip",     "k22_linspace",    "k22_trailing", "k22_v",
    "k22_lof_false",   "k22_lof_false_smin", "k22_bh1",        "k22_bh1_smin_dc", "k22_noise",    "k22_noise_v_smin",
    "prior_noise_smin", "prior_thresh",    "k22_karras",       "k22_karras_smin", "k22_order1",   "k22_order3",
};
#define N_FIXTURES ((int)(sizeof FIXTURES / sizeof FIXTURES[0]))

static double g_max_abs, g_max_rel_scaled; /* over every compared sample: |d|, |d| / max|ref| */
static int64_t g_max_ulp_sigma;

static int64_t ulp_dist(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : INT64_MAX;
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    if (x < 0) x = INT32_MIN - x;
    if (y < 0) y = INT32_MIN - y;
    return llabs((long long)x - (long long)y);
}

static void *copy_tensor(const kd_st_file *f, const char *name, kd_dtype dt, size_t *n) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t || t->t.dtype != dt) return NULL;
    if (n) *n = (size_t)kd_tensor_numel(&t->t);
    void *p = malloc(t->nbytes + 8);
    if (p) memcpy(p, t->t.data, t->nbytes);
    return p;
}

/* Non-finite elements must match (same inf, or both NaN); the rest within the tolerance. */
static int close_x(const char *label, const float *got, const float *ref, size_t n) {
    float *g = malloc(n * sizeof(float) + 4), *r = malloc(n * sizeof(float) + 4);
    size_t m = 0, nonfinite = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (isfinite(ref[i]) && isfinite(got[i])) {
            g[m] = got[i];
            r[m] = ref[i];
            m++;
        } else {
            nonfinite++;
            if (!((isnan(ref[i]) && isnan(got[i])) || ref[i] == got[i])) bad++;
        }
    }
    int ok = 1;
    if (nonfinite) {
        TEST_CHECK(bad == 0, "%s: %zu of %zu non-finite elements differ from diffusers'", label, bad, nonfinite);
        ok = bad == 0;
    }
    if (m) {
        double mx = kt_max_abs(r, m);
        ok &= kt_allclose(label, g, r, m, ATOL_FRAC * mx, RTOL);
        for (size_t i = 0; i < m; i++) {
            double d = fabs((double)g[i] - (double)r[i]);
            if (d > g_max_abs) g_max_abs = d;
            if (mx > 0 && d / mx > g_max_rel_scaled) g_max_rel_scaled = d / mx;
        }
    }
    free(g);
    free(r);
    return ok;
}

/* ------------------------------------------------------------------------------------------------
 * one fixture */

typedef struct fixture {
    const char *name;
    kd_st_file *f;
    kd_sampler *s;
    kd_sched_shape shape;
    size_t n;
    float *base;
    int cur_n; /* the n of the last set_timesteps */
} fixture;

static int set_n(fixture *fx, int n) {
    kd_err e = {0};
    kd_status st = kd_sampler_set_timesteps(fx->s, n, &e);
    TEST_CHECK(st == KD_OK, "%s: set_timesteps(%d): %s", fx->name, n, e.msg);
    fx->cur_n = st == KD_OK ? n : -1;
    return st == KD_OK;
}

static void check_timesteps(fixture *fx, int n) {
    if (!set_n(fx, n)) return;
    char name[64];
    size_t len = 0, la = 0, ls = 0;
    snprintf(name, sizeof name, "N%d.timesteps", n);
    int64_t *ref = copy_tensor(fx->f, name, KD_I64, &len);
    snprintf(name, sizeof name, "N%d.alpha", n);
    float *ra = copy_tensor(fx->f, name, KD_F32, &la);
    snprintf(name, sizeof name, "N%d.sigma_t", n);
    float *rs = copy_tensor(fx->f, name, KD_F32, &ls);
    TEST_CHECK(ref && ra && rs && la == len && ls == len, "%s: N%d reference tensors", fx->name, n);
    if (ref && ra && rs && la == len && ls == len) {
        int m = kd_sampler_num_timesteps(fx->s);
        const double *ts = kd_sampler_timesteps(fx->s);
        int same = (size_t)m == len;
        for (size_t i = 0; same && i < len; i++) same = ts[i] == (double)ref[i];
        TEST_CHECK(same, "%s: n=%d: %d timesteps (first %g, last %g), diffusers %zu (first %lld, last %lld)",
                   fx->name, n, m, m ? ts[0] : -1.0, m ? ts[m - 1] : -1.0, len, (long long)ref[0],
                   (long long)ref[len - 1]);
        int64_t worst = 0;
        int bad = 0;
        kd_err e = {0};
        for (int i = 0; same && i < m; i++) {
            float one = 1.0f, zero = 0.0f, a = NAN, s = NAN;
            kd_status s1 = kd_sampler_add_noise(fx->s, i, &one, &zero, 1, &a, &e);
            kd_status s2 = kd_sampler_add_noise(fx->s, i, &zero, &one, 1, &s, &e);
            int64_t d = s1 == KD_OK && s2 == KD_OK ? ulp_dist(a, ra[i]) : INT64_MAX;
            int64_t d2 = s1 == KD_OK && s2 == KD_OK ? ulp_dist(s, rs[i]) : INT64_MAX;
            if (d2 > d) d = d2;
            if (d > worst) worst = d;
            if (d > MAX_ULP_SIGMA) {
                if (!bad)
                    printf("  %s n=%d i=%d: alpha %.9g / %.9g, sigma_t %.9g / %.9g (here / diffusers)\n", fx->name, n,
                           i, a, ra[i], s, rs[i]);
                bad++;
            }
            if (d > g_max_ulp_sigma) g_max_ulp_sigma = d;
        }
        TEST_CHECK(same && bad == 0, "%s: n=%d: alpha / sigma_t within %d ulp at every index (%d are not)", fx->name, n,
                   MAX_ULP_SIGMA, bad);
        if (same && !bad)
            printf("  ok %-22s n=%-3d %3d timesteps exact, alpha/sigma_t max %lld ulp\n", fx->name, n, m,
                   (long long)worst);
    }
    free(ref);
    free(ra);
    free(rs);
}

typedef struct loop_desc {
    int k, n, start, count;
    unsigned long long seed;
    double strength; /* < 0: none */
} loop_desc;

/* Runs loop d (set_timesteps only when do_set), comparing every step; mc2: a 2·C model output. */
static void run_loop(fixture *fx, const loop_desc *d, int do_set, int mc2, int stop_after, const char *tag) {
    if (do_set && !set_n(fx, d->n)) return;
    kd_err e = {0};
    const size_t n = fx->n;
    const int64_t C = fx->shape.channels, inner = fx->shape.inner, B = fx->shape.batch;
    const int64_t mc = mc2 ? 2 * C : C;
    float *x = malloc(n * sizeof(float)), *noise = malloc(n * sizeof(float));
    float *mo = malloc((size_t)(B * mc * inner) * sizeof(float));
    char name[64], label[160];
    kd_rng rng;
    kd_rng_seed(&rng, d->seed);
    kd_rng_randn(&rng, noise, n);
    snprintf(name, sizeof name, "loop%d.x_init", d->k);
    float *xinit = copy_tensor(fx->f, name, KD_F32, NULL);
    TEST_CHECK(xinit != NULL, "%s: %s", fx->name, name);
    if (!xinit) goto done;
    if (d->strength >= 0) {
        int start = -1, count = -1;
        kd_status st = kd_sampler_img2img_start(fx->s, d->strength, &start, &count, &e);
        TEST_CHECK(st == KD_OK && start == d->start && count == d->count,
                   "%s loop %d: img2img start %d count %d for strength %g (diffusers %d, %d)", fx->name, d->k, start,
                   count, d->strength, d->start, d->count);
        st = kd_sampler_add_noise(fx->s, d->start, fx->base, noise, n, x, &e);
        TEST_CHECK(st == KD_OK, "%s loop %d: add_noise: %s", fx->name, d->k, e.msg);
        snprintf(label, sizeof label, "%s%s loop%d n=%d x_init (add_noise at %d)", fx->name, tag, d->k, d->n,
                 d->start);
        close_x(label, x, xinit, n);
    } else {
        TEST_CHECK(memcmp(noise, xinit, n * sizeof(float)) == 0, "%s loop %d: kd_rng latents equal torch's randn",
                   fx->name, d->k);
        memcpy(x, xinit, n * sizeof(float));
    }
    int worst_i = -1;
    double worst = -1;
    int all_ok = 1;
    int end = d->start + d->count;
    if (stop_after >= 0 && d->start + stop_after < end) end = d->start + stop_after;
    for (int i = d->start; i < end; i++) {
        size_t per = (size_t)(C * inner);
        for (int64_t b = 0; b < B; b++)
            for (size_t j = 0; j < per; j++) {
                float p = x[b * per + j] * 0.9f, q = fx->base[b * per + j] * 0.1f;
                mo[(size_t)b * (size_t)(mc * inner) + j] = p + q;
                if (mc2) mo[(size_t)b * (size_t)(mc * inner) + per + j] = NAN; /* the variance half: unread */
            }
        kd_status st = kd_sampler_step(fx->s, i, mo, mc, x, &fx->shape, NULL, x, &e);
        TEST_CHECK(st == KD_OK, "%s loop %d step %d: %s", fx->name, d->k, i, e.msg);
        if (st != KD_OK) break;
        snprintf(name, sizeof name, "loop%d.x%d", d->k, i);
        float *ref = copy_tensor(fx->f, name, KD_F32, NULL);
        TEST_CHECK(ref != NULL, "%s: %s", fx->name, name);
        if (!ref) break;
        /* one check per loop: report the worst step, fail on any */
        float *g = malloc(n * sizeof(float)), *r = malloc(n * sizeof(float));
        size_t m = 0, nf = 0, nf_bad = 0;
        for (size_t j = 0; j < n; j++) {
            if (isfinite(ref[j]) && isfinite(x[j])) {
                g[m] = x[j];
                r[m++] = ref[j];
            } else {
                nf++;
                if (!((isnan(ref[j]) && isnan(x[j])) || ref[j] == x[j])) nf_bad++;
            }
        }
        double mx = kt_max_abs(r, m), dmax = 0;
        int ok = nf_bad == 0;
        for (size_t j = 0; j < m; j++) {
            double dd = fabs((double)g[j] - (double)r[j]);
            if (!(dd <= ATOL_FRAC * mx + RTOL * fabs((double)r[j]))) ok = 0;
            if (dd > g_max_abs) g_max_abs = dd;
            if (mx > 0 && dd / mx > g_max_rel_scaled) g_max_rel_scaled = dd / mx;
            double sc = mx > 0 ? dd / mx : dd;
            if (sc > dmax) dmax = sc;
        }
        if (dmax > worst) {
            worst = dmax;
            worst_i = i;
        }
        if (!ok && all_ok) {
            snprintf(label, sizeof label, "%s%s loop%d n=%d step %d (%zu non-finite)", fx->name, tag, d->k, d->n, i,
                     nf);
            if (nf_bad) TEST_CHECK(0, "%s: %zu non-finite elements differ", label, nf_bad);
            if (m) kt_allclose(label, g, r, m, ATOL_FRAC * mx, RTOL);
            all_ok = 0;
        }
        free(g);
        free(r);
        free(ref);
    }
    if (all_ok) {
        snprintf(label, sizeof label, "%s%s loop%d n=%d steps %d..%d%s", fx->name, tag, d->k, d->n, d->start, end - 1,
                 mc2 ? " (2C output)" : "");
        TEST_CHECK(1, "%s", label);
        printf("  ok %-62s max |d|/max|ref| %.2e (step %d)\n", label, worst, worst_i);
    }
done:
    free(xinit);
    free(x);
    free(noise);
    free(mo);
}

static int parse_loops(const char *s, loop_desc *out, int max) {
    int cnt = 0;
    while (s && *s && cnt < max) {
        loop_desc d;
        char st[32];
        if (sscanf(s, "%d:%d:%d:%d:%llu:%31[^,]", &d.k, &d.n, &d.start, &d.count, &d.seed, st) != 6) return -1;
        d.strength = strcmp(st, "none") == 0 ? -1.0 : atof(st);
        out[cnt++] = d;
        s = strchr(s, ',');
        if (s) s++;
    }
    return cnt;
}

static void check_add_noise(fixture *fx) {
    const char *spec = kd_st_meta(fx->f, "add_noise");
    float *orig = copy_tensor(fx->f, "add_noise.original", KD_F32, NULL);
    float *noise = copy_tensor(fx->f, "add_noise.noise", KD_F32, NULL);
    TEST_CHECK(spec && orig && noise, "%s: add_noise reference", fx->name);
    float *out = malloc(fx->n * sizeof(float));
    for (const char *p = spec; orig && noise && p && *p;) {
        int n, i;
        if (sscanf(p, "%d:%d", &n, &i) != 2) break;
        p = strchr(p, ',');
        if (p) p++;
        if (fx->cur_n != n && !set_n(fx, n)) continue;
        char name[64], label[96];
        snprintf(name, sizeof name, "add_noise.n%d.i%d", n, i);
        float *ref = copy_tensor(fx->f, name, KD_F32, NULL);
        kd_err e = {0};
        kd_status st = kd_sampler_add_noise(fx->s, i, orig, noise, fx->n, out, &e);
        TEST_CHECK(st == KD_OK && ref, "%s add_noise n=%d i=%d: %s", fx->name, n, i, e.msg);
        snprintf(label, sizeof label, "%s add_noise n=%d i=%d", fx->name, n, i);
        if (st == KD_OK && ref) close_x(label, out, ref, fx->n);
        free(ref);
    }
    free(out);
    free(orig);
    free(noise);
}

static void check_fixture(const char *nm) {
    char rel[128];
    snprintf(rel, sizeof rel, "samplers/unipc/%s.safetensors", nm);
    fixture fx = {0};
    fx.name = nm;
    fx.cur_n = -1;
    kd_err e = {0};
    kd_status st = kd_st_open(kt_data_path(rel), &fx.f, &e);
    TEST_CHECK(st == KD_OK, "%s: %s", rel, e.msg);
    if (st != KD_OK) return;
    const char *text = kd_st_meta(fx.f, "config");
    const char *shape = kd_st_meta(fx.f, "shape");
    const char *steps = kd_st_meta(fx.f, "steps");
    const char *loops = kd_st_meta(fx.f, "loops");
    long long b = 0, c = 0, in = 0;
    TEST_CHECK(text && shape && steps && loops && sscanf(shape, "%lld,%lld,%lld", &b, &c, &in) == 3,
               "%s: metadata", nm);
    kd_config cfg = {0};
    if (!text || !shape || !steps || !loops) goto out;
    st = kd_config_parse(text, strlen(text), nm, &cfg, &e);
    TEST_CHECK(st == KD_OK, "%s: config: %s", nm, e.msg);
    if (st != KD_OK) goto out;
    st = kd_sampler_create(&kd_sampler_unipc, &cfg, &fx.s, &e);
    TEST_CHECK(st == KD_OK, "%s: kd_sampler_create: %s", nm, e.msg);
    if (st != KD_OK) goto out;
    fx.shape.batch = b;
    fx.shape.channels = c;
    fx.shape.inner = in;
    fx.n = (size_t)(b * c * in);
    fx.base = copy_tensor(fx.f, "loop.base", KD_F32, NULL);
    TEST_CHECK(fx.base != NULL, "%s: loop.base", nm);
    if (!fx.base) goto out;

    for (const char *p = steps; p && *p;) {
        check_timesteps(&fx, atoi(p));
        p = strchr(p, ',');
        if (p) p++;
    }
    loop_desc ld[32];
    int nl = parse_loops(loops, ld, 32);
    TEST_CHECK(nl > 0, "%s: loops metadata '%s'", nm, loops);
    for (int k = 0; k < nl; k++) run_loop(&fx, &ld[k], fx.cur_n != ld[k].n, k & 1, -1, "");
    /* runs that follow one another without set_timesteps: an img2img run right after a full one,
     * a full one after that, and a full one after an abandoned run */
    const loop_desc *full25 = NULL, *img25 = NULL;
    for (int k = 0; k < nl; k++) {
        if (ld[k].n == 25 && ld[k].strength < 0) full25 = &ld[k];
        if (ld[k].n == 25 && ld[k].strength >= 0) img25 = &ld[k];
    }
    TEST_CHECK(full25 && img25, "%s: n=25 loops present", nm);
    if (full25 && img25) {
        run_loop(&fx, full25, 1, 0, -1, " (again)");
        run_loop(&fx, img25, 0, 1, -1, " (after a run)");
        run_loop(&fx, full25, 0, 0, 7, " (abandoned)");
        run_loop(&fx, full25, 0, 1, -1, " (after 7 steps)");
    }
    check_add_noise(&fx);
out:
    kd_sampler_free(fx.s);
    kd_config_free(&cfg);
    free(fx.base);
    kd_st_close(fx.f);
}

/* ------------------------------------------------------------------------------------------------
 * config handling */

static kd_status make(const char *json, kd_sampler **s, kd_err *e) {
    kd_config cfg = {0};
    *s = NULL;
    kd_status st = kd_config_parse(json, strlen(json), "test config", &cfg, e);
    if (st != KD_OK) return st;
    st = kd_sampler_create(&kd_sampler_unipc, &cfg, s, e);
    kd_config_free(&cfg);
    return st;
}

static void expect_refused(const char *json, kd_status code, const char *needle) {
    kd_sampler *s;
    kd_err e = {0};
    kd_status st = make(json, &s, &e);
    TEST_CHECK(st == code && strstr(e.msg, needle) != NULL, "%s: status %d (expected %d), message '%s' names '%s'",
               json, (int)st, (int)code, e.msg, needle);
    kd_sampler_free(s);
}

static void check_config(void) {
    kd_sampler *s;
    kd_err e = {0};
    /* class defaults: T 1000, linear betas, linspace spacing */
    kd_status st = make("{}", &s, &e);
    TEST_CHECK(st == KD_OK, "empty config: %s", e.msg);
    if (st == KD_OK) {
        TEST_CHECK(strcmp(kd_sampler_name(s), "unipc") == 0 && kd_sampler_learned_variance(s) == 0 &&
                       kd_sampler_init_noise_sigma(s) == 1.0f && s->ops->scale_model_input == NULL &&
                       strcmp(s->ops->diffusers_class, "UniPCMultistepScheduler") == 0,
                   "name, learned_variance 0, init_noise_sigma 1, identity scale_model_input");
        float x = 1.0f;
        TEST_CHECK(kd_sampler_step(s, 0, &x, 1, &x, &(kd_sched_shape){1, 1, 1}, NULL, &x, &e) != KD_OK,
                   "step before set_timesteps refused");
        static const double want[] = {999, 899, 799, 699, 599, 500, 400, 300, 200, 100};
        st = kd_sampler_set_timesteps(s, 10, &e);
        int same = st == KD_OK && kd_sampler_num_timesteps(s) == 10;
        for (int i = 0; same && i < 10; i++) same = kd_sampler_timesteps(s)[i] == want[i];
        TEST_CHECK(same, "default spacing is linspace (np.linspace(0, 999, 11).round()[::-1][:-1])");
        float y[3] = {0};
        TEST_CHECK(kd_sampler_step(s, 0, y, 3, y, &(kd_sched_shape){1, 1, 1}, NULL, y, &e) != KD_OK,
                   "a model output of 3 channels for 1 refused");
    }
    kd_sampler_free(s);
    /* keys of other classes (and mistyped ones UniPC does not know) are ignored */
    st = make("{\"_class_name\": \"DDPMScheduler\", \"variance_type\": \"nonsense\", \"clip_sample\": \"yes\", "
              "\"set_alpha_to_one\": 3, \"some_future_key\": [1, 2], \"solver_type\": \"heun\", "
              "\"use_karras_sigmas\": null, \"disable_corrector\": null, \"sigma_min\": null}",
              &s, &e);
    TEST_CHECK(st == KD_OK, "unknown and foreign keys ignored: %s", e.msg);
    kd_sampler_free(s);
    st = make("{\"use_karras_sigmas\": true, \"beta_schedule\": \"scaled_linear\"}", &s, &e);
    TEST_CHECK(st == KD_OK && kd_sampler_set_timesteps(s, 50, &e) == KD_OK && kd_sampler_timesteps(s)[0] == 999,
               "use_karras_sigmas accepted: %s", e.msg);
    kd_sampler_free(s);

    expect_refused("{\"use_exponential_sigmas\": true}", KD_ERR_UNSUPPORTED, "use_exponential_sigmas");
    expect_refused("{\"use_beta_sigmas\": true}", KD_ERR_UNSUPPORTED, "use_beta_sigmas");
    expect_refused("{\"use_flow_sigmas\": true}", KD_ERR_UNSUPPORTED, "use_flow_sigmas");
    expect_refused("{\"rescale_betas_zero_snr\": true}", KD_ERR_UNSUPPORTED, "rescale_betas_zero_snr");
    expect_refused("{\"use_dynamic_shifting\": true}", KD_ERR_UNSUPPORTED, "use_dynamic_shifting");
    expect_refused("{\"prediction_type\": \"flow_prediction\"}", KD_ERR_UNSUPPORTED, "flow_prediction");
    expect_refused("{\"prediction_type\": \"x0\"}", KD_ERR_FORMAT, "prediction_type");
    expect_refused("{\"solver_type\": \"bh3\"}", KD_ERR_FORMAT, "solver_type");
    expect_refused("{\"solver_order\": 4}", KD_ERR_UNSUPPORTED, "solver_order");
    expect_refused("{\"solver_order\": 0}", KD_ERR_FORMAT, "solver_order");
    expect_refused("{\"timestep_spacing\": \"middle\"}", KD_ERR_FORMAT, "timestep_spacing");
    expect_refused("{\"final_sigmas_type\": \"one\"}", KD_ERR_FORMAT, "final_sigmas_type");
    expect_refused("{\"thresholding\": \"yes\"}", KD_ERR_FORMAT, "thresholding");
    expect_refused("{\"predict_x0\": 1.5}", KD_ERR_FORMAT, "predict_x0");
    expect_refused("{\"disable_corrector\": [0, \"one\"]}", KD_ERR_FORMAT, "disable_corrector");
    expect_refused("{\"shift_terminal\": 0.1}", KD_ERR_FORMAT, "shift_terminal");
    expect_refused("{\"solver_p\": {\"_class_name\": \"DDIMScheduler\"}}", KD_ERR_UNSUPPORTED, "solver_p");
    expect_refused("{\"beta_schedule\": \"sigmoid\"}", KD_ERR_UNSUPPORTED, "sigmoid");
    expect_refused("{\"num_train_timesteps\": \"many\"}", KD_ERR_FORMAT, "num_train_timesteps");
}

int main(void) {
    for (int i = 0; i < N_FIXTURES; i++) check_fixture(FIXTURES[i]);
    check_config();
    printf("unipc: max |got - ref| %.3e, max |got - ref| / max|ref| %.3e (atol %.0e of max|ref|, rtol %.0e); "
           "alpha / sigma_t max %lld ulp\n",
           g_max_abs, g_max_rel_scaled, ATOL_FRAC, RTOL, (long long)g_max_ulp_sigma);
    return kt_finish("test_sampler_unipc");
}
