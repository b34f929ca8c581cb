/* The sigma samplers euler / euler-a / heun (src/sched/euler.c, heun.c) against diffusers 0.42's
 * EulerDiscreteScheduler, EulerAncestralDiscreteScheduler and HeunDiscreteScheduler
 * (tools/reference/gen_sampler_euler.py → tests/data/samplers/euler), each built from the
 * config text the fixture holds (Kandinsky 2.2 decoder DDPM, 2.1 DDIM, the prior's UnCLIP, and
 * variations: linspace + v_prediction, trailing + scaled_linear with a 62-entry arange, Karras
 * sigmas with and without sigma_min/sigma_max + final_sigmas_type sigma_min, Heun's exp betas +
 * sample prediction + clipping, an empty config = each class's defaults):
 *   - a sampler diffusers refuses for a config (raises in __init__, set_timesteps or step) must
 *     be refused by kd_sampler_create;
 *   - set_timesteps(n), n = 1, 2, 10, 25, 50 (+ 61 for trailing): the timesteps, the sigmas (read
 *     back through add_noise(i, 0, 1) = 0 + 1·σ_i; the final sigma shows in the loops) and
 *     init_noise_sigma;
 *   - add_noise at the step indices diffusers resolves for timesteps[j];
 *   - whole loops (scale_model_input, a linear "model", step) for every n, two img2img starts
 *     (Kandinsky's get_timesteps × scheduler.order with set_begin_index, as diffusers' SD img2img:
 *     its Kandinsky pipelines forget the order, and a Heun run there ends in NaN), and a 15-value euler-a loop (torch.randn's scalar path
 *     with its cached normal), x compared after every step (every 7th for n = 50). Each loop runs
 *     twice: with a C-channel model output, and with 2·C channels whose second half is garbage (a
 *     learned-variance UNet: the samplers must read only the first half).
 *
 * Two references. torch's float32 sqrt (** 0.5) on this CPU build is MKL VML's, faithfully but
 * not correctly rounded (17% of inputs 1 ulp off, at most 0.75 ulp); the C side uses sqrtf.
 *   1. ieee.* hashes: diffusers with a correctly rounded ** 0.5. Everything here must be
 *      BIT-IDENTICAL to it (FNV-1a of the timesteps + sigmas + init_noise_sigma of every n, and of
 *      every loop's states): the op order is torch's exactly.
 *   2. the plain diffusers values, within tolerance: timesteps exactly, except with Karras sigmas
 *      (t from log σ_train, where σ_train carries torch's sqrt ulp: rtol 1e-6, a few float32
 *      ulps); sigmas, init_noise_sigma with rtol 1e-5, atol 0; add_noise x + ε·σ (which may cancel
 *      too) with rtol 1e-5, atol 1e-6 · max|ref|; loop states with rtol 1e-5 and atol = 1e-6 ·
 *      (largest |x| of the loop so far, its initial latents included). The atol is the conditioning of the sampler, not slack in the C code: x' = x + d·dt cancels
 *      most of x when σ_next ≪ σ (the prior's squaredcos schedule goes from σ = 20291 to 15.4 in
 *      its first step), so an ulp of σ in torch becomes an error of ~ulp(max|x_init|) that the
 *      following states carry; relative to them that is up to ~1e-4.
 * Plus config handling: refused keys named in KD_ERR_UNSUPPORTED, unknown / other classes' keys
 * ignored, Heun's order and 2n - 1 calls, euler-a without a generator. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "sched/sampler.h"
#include "testutil.h"

static const char *const CONFIGS[] = {"k22_decoder", "k21_ddim",       "prior_unclip",  "linspace_v", "trailing_scaled",
                                      "karras",      "karras_bounds_v", "heun_exp_clip", "defaults"};
#define N_CONFIGS ((int)(sizeof CONFIGS / sizeof CONFIGS[0]))
static const char *const SNAMES[] = {"euler", "euler_a", "heun"};
static const kd_sampler_ops *const OPS[] = {&kd_sampler_euler, &kd_sampler_euler_a, &kd_sampler_heun};
static const int STEP_COUNTS[] = {1, 2, 10, 25, 50, 61};
#define N_STEP_COUNTS ((int)(sizeof STEP_COUNTS / sizeof STEP_COUNTS[0]))
#define N_REQUIRED 5 /* the first five are in every fixture */

/* ------------------------------------------------------------------------------------------------
 * fixture access (tensors copied out: the mapping does not align I64 data) */

static void *copy_tensor(const kd_st_file *f, const char *name, kd_dtype dt, size_t *n) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t || t->t.dtype != dt) return NULL;
    if (n) *n = (size_t)kd_tensor_numel(&t->t);
    void *p = malloc(t->nbytes + 8);
    if (p) memcpy(p, t->t.data, t->nbytes);
    return p;
}

static float *ftensor(const kd_st_file *f, const char *prefix, const char *what, size_t *n) {
    char name[192];
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    return copy_tensor(f, name, KD_F32, n);
}

/* ------------------------------------------------------------------------------------------------
 * comparison statistics, per (config, sampler) */

typedef struct stats {
    double max_abs, max_rel;
    size_t values, inexact;
} stats;

static double g_max_abs, g_max_rel;
static size_t g_values, g_inexact;

static int compare(stats *st, const float *got, const float *ref, size_t n, double atol, double rtol, size_t *bad_at) {
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i], d = g == r ? 0.0 : fabs(g - r);
        if (isnan(g) && isnan(r)) continue; /* diffusers' Heun img2img with an odd start ends in NaN */
        if (isnan(g) != isnan(r)) d = INFINITY;
        if (!isfinite(r) && d == 0.0) continue;
        if (d > st->max_abs) st->max_abs = d;
        if (fabs(r) > 0 && d / fabs(r) > st->max_rel) st->max_rel = d / fabs(r);
        if (memcmp(&got[i], &ref[i], sizeof(float)) != 0) st->inexact++;
        if (!(d <= atol + rtol * fabs(r))) {
            if (ok && bad_at) *bad_at = i;
            ok = 0;
        }
    }
    st->values += n;
    return ok;
}

static void finish_stats(const char *label, const stats *st) {
    printf("  %-32s %7zu values, %zu not bit-identical, max abs err %.3e, max rel err %.3e\n", label, st->values,
           st->inexact, st->max_abs, st->max_rel);
    if (st->max_abs > g_max_abs) g_max_abs = st->max_abs;
    if (st->max_rel > g_max_rel) g_max_rel = st->max_rel;
    g_values += st->values;
    g_inexact += st->inexact;
}

/* FNV-1a 64 over float32 bytes, NaNs as 0x7fc00000 (gen_sampler_euler.py fnv1a64). */
#define FNV_INIT UINT64_C(0xcbf29ce484222325)
static uint64_t fnv_floats(uint64_t h, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        if (isnan(x[i])) u = 0x7FC00000u;
        for (int b = 0; b < 4; b++) {
            h ^= (u >> (8 * b)) & 0xFFu;
            h *= UINT64_C(0x100000001b3);
        }
    }
    return h;
}

static size_t g_hashes, g_hash_ok;

/* The IEEE-sqrt reference hash ieee.<pre>: the values must be bit-identical to it. */
static void check_hash(const kd_st_file *f, const char *label, const char *pre, uint64_t h) {
    char name[96];
    snprintf(name, sizeof name, "ieee.%s", pre);
    int64_t *ref = copy_tensor(f, name, KD_I64, NULL);
    TEST_CHECK(ref && (uint64_t)ref[0] == h,
               "%s: %s not bit-identical to diffusers with a correctly rounded sqrt (regenerate with "
               "gen_sampler_euler.py --ieee-out DIR and run with KD_TEST_DATA=DIR to see where)",
               label, ref ? name : "(fixture lacks the hash)");
    g_hashes++;
    if (ref && (uint64_t)ref[0] == h) g_hash_ok++;
    free(ref);
}

/* ------------------------------------------------------------------------------------------------
 * schedule checks */

static void check_set_timesteps(kd_sampler *s, const kd_st_file *f, const char *label, const char *sn, int karras,
                                stats *st) {
    kd_err e = {0};
    for (int k = 0; k < N_STEP_COUNTS; k++) {
        int n = STEP_COUNTS[k];
        char pre[64];
        snprintf(pre, sizeof pre, "%s.N%d", sn, n);
        size_t nt = 0, ns = 0, ni = 0;
        float *ts = ftensor(f, pre, "timesteps", &nt), *sg = ftensor(f, pre, "sigmas", &ns);
        float *ins = ftensor(f, pre, "init_noise_sigma", &ni);
        if (!ts || !sg || !ins) {
            TEST_CHECK(k >= N_REQUIRED, "%s: fixture lacks %s.*", label, pre);
            free(ts);
            free(sg);
            free(ins);
            continue;
        }
        kd_status r = kd_sampler_set_timesteps(s, n, &e);
        TEST_CHECK(r == KD_OK, "%s: set_timesteps(%d): %s", label, n, e.msg);
        if (r != KD_OK) goto next;
        int m = kd_sampler_num_timesteps(s);
        TEST_CHECK((size_t)m == nt && ns == nt + 1, "%s: set_timesteps(%d) gives %d timesteps, diffusers %zu (%zu sigmas)",
                   label, n, m, nt, ns);
        if ((size_t)m != nt || ns != nt + 1) goto next;
        /* exactly; Karras: within 1e-6 relative (t interpolates log σ_train, see the top) */
        int same = 1, at = -1;
        for (int i = 0; i < m; i++) {
            double tg = kd_sampler_timesteps(s)[i], tr = ts[i];
            int ok = karras ? fabs(tg - tr) <= 1e-6 * fabs(tr) : tg == tr;
            if (!ok && same) {
                same = 0;
                at = i;
            }
        }
        TEST_CHECK(same, "%s: N%d timesteps[%d] = %.9g, diffusers %.9g", label, n, at,
                   at >= 0 ? kd_sampler_timesteps(s)[at] : 0.0, at >= 0 ? (double)ts[at] : 0.0);
        float *tsf = malloc((size_t)m * sizeof(float));
        for (int i = 0; tsf && i < m; i++) tsf[i] = (float)kd_sampler_timesteps(s)[i]; /* float32 values */
        /* σ_i = add_noise(i, 0, 1) */
        float *got = malloc((size_t)m * sizeof(float));
        float zero = 0.0f, one = 1.0f;
        for (int i = 0; got && i < m; i++) {
            r = kd_sampler_add_noise(s, i, &zero, &one, 1, &got[i], &e);
            if (r != KD_OK) break;
        }
        TEST_CHECK(got && r == KD_OK, "%s: add_noise for the sigmas: %s", label, e.msg);
        size_t bad = 0;
        if (got && r == KD_OK) {
            int ok = compare(st, got, sg, (size_t)m, 0.0, 1e-5, &bad); /* before the message reads bad */
            TEST_CHECK(ok, "%s: N%d sigmas[%zu] = %.9g, diffusers %.9g", label, n, bad, got[bad], sg[bad]);
        }
        float ig = kd_sampler_init_noise_sigma(s);
        TEST_CHECK(compare(st, &ig, ins, 1, 0.0, 1e-5, NULL), "%s: N%d init_noise_sigma %.9g, diffusers %.9g", label, n,
                   ig, ins[0]);
        if (got && tsf && r == KD_OK)
            check_hash(f, label, pre, fnv_floats(fnv_floats(fnv_floats(FNV_INIT, tsf, (size_t)m), got, (size_t)m), &ig, 1));
        free(tsf);
        free(got);
    next:
        free(ts);
        free(sg);
        free(ins);
    }
}

static void check_add_noise(kd_sampler *s, const kd_st_file *f, const char *label, const char *sn, stats *st) {
    kd_err e = {0};
    size_t n = 0, n2 = 0;
    float *orig = copy_tensor(f, "add_noise.original", KD_F32, &n), *noise = copy_tensor(f, "add_noise.noise", KD_F32, &n2);
    char key[64];
    snprintf(key, sizeof key, "%s.add_noise", sn);
    const char *list = kd_st_meta(f, key);
    TEST_CHECK(orig && noise && n == n2 && list, "%s: add_noise fixture", label);
    if (!orig || !noise || n != n2 || !list || kd_sampler_set_timesteps(s, 10, &e) != KD_OK) goto out;
    float *got = malloc(n * sizeof(float));
    for (const char *p = list; got && *p;) {
        int idx = atoi(p);
        char what[32];
        snprintf(what, sizeof what, "add_noise.%d", idx);
        float *ref = ftensor(f, sn, what, NULL);
        kd_status r = kd_sampler_add_noise(s, idx, orig, noise, n, got, &e);
        TEST_CHECK(ref && r == KD_OK, "%s: add_noise at index %d: %s", label, idx, e.msg);
        size_t bad = 0;
        if (ref && r == KD_OK) {
            int ok = compare(st, got, ref, n, 1e-6 * kt_max_abs(ref, n), 1e-5, &bad);
            TEST_CHECK(ok, "%s: add_noise(%d)[%zu] = %.9g, diffusers %.9g", label, idx, bad, got[bad], ref[bad]);
        }
        free(ref);
        p = strchr(p, ',');
        if (!p) break;
        p++;
    }
    free(got);
out:
    free(orig);
    free(noise);
}

/* ------------------------------------------------------------------------------------------------
 * loops */

typedef struct loop_spec {
    int k, n;
    uint64_t seed;
    double strength; /* < 0: txt2img */
    int64_t B, C, inner;
    int count;
} loop_spec;

static int parse_loop(const char *p, loop_spec *l) {
    char strength[32];
    long long seed, B, C, inner;
    if (sscanf(p, "%d:%d:%lld:%31[^:]:%lld:%lld:%lld:%d", &l->k, &l->n, &seed, strength, &B, &C, &inner, &l->count) != 8)
        return 0;
    l->seed = (uint64_t)seed;
    l->B = B;
    l->C = C;
    l->inner = inner;
    l->strength = strcmp(strength, "none") == 0 ? -1.0 : atof(strength);
    return B > 0 && C > 0 && inner > 0 && l->count >= 0;
}

/* One loop as the generator ran it; mc = C or 2·C (garbage variance half). */
static void run_loop(kd_sampler *s, const kd_st_file *f, const char *label, const char *sn, const loop_spec *l,
                     int64_t mc, stats *st) {
    kd_err e = {0};
    char pre[64], what[96];
    snprintf(pre, sizeof pre, "%s.loop%d", sn, l->k);
    const size_t n = (size_t)(l->B * l->C * l->inner), per = (size_t)(l->C * l->inner);
    size_t nb = 0, nrec = 0;
    float *base = ftensor(f, pre, "base", &nb);
    snprintf(what, sizeof what, "%s.recorded", pre);
    int64_t *rec = copy_tensor(f, what, KD_I64, &nrec);
    float *x = malloc(n * sizeof(float)), *xin = malloc(n * sizeof(float));
    float *mo = malloc((size_t)l->B * (size_t)(mc * l->inner) * sizeof(float));
    char tag[160];
    snprintf(tag, sizeof tag, "%s loop%d (n=%d, %s, mc=%lld)", label, l->k, l->n,
             l->strength < 0 ? "txt2img" : "img2img", (long long)mc);
    TEST_CHECK(base && nb == n && rec && x && xin && mo, "%s: fixture tensors", tag);
    if (!base || nb != n || !rec || !x || !xin || !mo) goto out;
    kd_status r = kd_sampler_set_timesteps(s, l->n, &e);
    TEST_CHECK(r == KD_OK, "%s: set_timesteps: %s", tag, e.msg);
    if (r != KD_OK) goto out;
    kd_rng rng;
    kd_rng_seed(&rng, l->seed);
    int start = 0, count = kd_sampler_num_timesteps(s);
    if (l->strength < 0) {
        kd_rng_randn(&rng, x, n);
        float sig = kd_sampler_init_noise_sigma(s);
        for (size_t i = 0; i < n; i++) x[i] = x[i] * sig;
    } else {
        r = kd_sampler_img2img_start(s, l->strength, &start, &count, &e);
        TEST_CHECK(r == KD_OK, "%s: img2img_start: %s", tag, e.msg);
        if (r != KD_OK) goto out;
        kd_rng_randn(&rng, xin, n);
        r = kd_sampler_add_noise(s, start, base, xin, n, x, &e);
        float *ref = ftensor(f, pre, "x_init", NULL);
        size_t bad = 0;
        int ok = r == KD_OK && ref && compare(st, x, ref, n, 1e-6 * kt_max_abs(ref, n), 1e-5, &bad);
        TEST_CHECK(ok, "%s: x_init[%zu] %.9g vs %.9g", tag, bad, x[bad], ref ? ref[bad] : 0.0f);
        free(ref);
    }
    TEST_CHECK(count == l->count, "%s: %d model calls, diffusers %d", tag, count, l->count);
    if (count != l->count) goto out;
    kd_sched_shape shape = {l->B, l->C, l->inner};
    size_t ri = 0;
    int checked = 0, ok = 1;
    uint64_t h = FNV_INIT;
    if (l->strength >= 0) h = fnv_floats(h, x, n);
    double hist = kt_max_abs(x, n); /* largest |x| of the loop so far */
    for (int j = 0; j < count && ok; j++) {
        int i = start + j;
        memcpy(xin, x, n * sizeof(float));
        kd_sampler_scale_model_input(s, i, xin, n);
        for (int64_t b = 0; b < l->B; b++) {
            float *row = mo + (size_t)b * (size_t)(mc * l->inner);
            for (size_t q = 0; q < per; q++) {
                size_t idx = (size_t)b * per + q;
                float p = xin[idx] * 0.9f, c = base[idx] * 0.1f;
                row[q] = p + c;
            }
            for (size_t q = per; q < (size_t)(mc * l->inner); q++) row[q] = 1e30f; /* must not be read */
        }
        r = kd_sampler_step(s, i, mo, mc, x, &shape, &rng, x, &e);
        TEST_CHECK(r == KD_OK, "%s: step %d: %s", tag, i, e.msg);
        if (r != KD_OK) break;
        double mx = kt_max_abs(x, n);
        if (mx > hist) hist = mx;
        if (ri < nrec && rec[ri] == j) {
            ri++;
            h = fnv_floats(h, x, n);
            snprintf(what, sizeof what, "x%d", j);
            float *ref = ftensor(f, pre, what, NULL);
            size_t bad = 0;
            ok = ref && compare(st, x, ref, n, 1e-6 * hist, 1e-5, &bad);
            TEST_CHECK(ok, "%s: x after step %d [%zu] = %.9g, diffusers %.9g", tag, j, bad, x[bad], ref ? ref[bad] : 0.0f);
            free(ref);
            checked++;
        }
    }
    TEST_CHECK(!ok || (size_t)checked == nrec, "%s: %d of %zu recorded states compared", tag, checked, nrec);
    if (ok && (size_t)checked == nrec) check_hash(f, tag, pre, h);
out:
    free(base);
    free(rec);
    free(x);
    free(xin);
    free(mo);
}

static void check_loops(kd_sampler *s, const kd_st_file *f, const char *label, const char *sn, stats *st) {
    char key[64];
    snprintf(key, sizeof key, "%s.loops", sn);
    const char *list = kd_st_meta(f, key);
    TEST_CHECK(list && *list, "%s: no loops in the fixture", label);
    for (const char *p = list; p && *p;) {
        loop_spec l;
        TEST_CHECK(parse_loop(p, &l), "%s: bad loop spec '%.40s'", label, p);
        if (parse_loop(p, &l)) {
            run_loop(s, f, label, sn, &l, l.C, st);
            run_loop(s, f, label, sn, &l, 2 * l.C, st);
        }
        p = strchr(p, ';');
        if (p) p++;
    }
}

/* ------------------------------------------------------------------------------------------------
 * one fixture file */

static int listed(const char *list, const char *name) {
    size_t l = strlen(name);
    for (const char *p = list; p && *p;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == l && strncmp(p, name, l) == 0) return 1;
        p = q ? q + 1 : NULL;
    }
    return 0;
}

static void check_config(const char *cname) {
    char rel[128];
    snprintf(rel, sizeof rel, "samplers/euler/%s.safetensors", cname);
    kd_err e = {0};
    kd_st_file *f = NULL;
    if (kd_st_open(kt_data_path(rel), &f, &e) != KD_OK) {
        TEST_CHECK(0, "%s: %s", rel, e.msg);
        return;
    }
    const char *text = kd_st_meta(f, "config"), *refused = kd_st_meta(f, "refused");
    kd_config cfg = {0};
    if (!text || !refused || kd_config_parse(text, strlen(text), cname, &cfg, &e) != KD_OK) {
        TEST_CHECK(0, "%s: config metadata: %s", rel, e.msg);
        kd_st_close(f);
        return;
    }
    for (int k = 0; k < 3; k++) {
        char label[96];
        snprintf(label, sizeof label, "%s/%s", cname, OPS[k]->name);
        kd_sampler *s = NULL;
        kd_status r = kd_sampler_create(OPS[k], &cfg, &s, &e);
        if (listed(refused, SNAMES[k])) {
            TEST_CHECK(r != KD_OK, "%s: diffusers refuses this config, accepted here", label);
            if (r != KD_OK) printf("  ok %-32s refused as diffusers does: %s\n", label, e.msg);
            kd_sampler_free(s);
            continue;
        }
        TEST_CHECK(r == KD_OK, "%s: create: %s", label, e.msg);
        if (r != KD_OK) continue;
        TEST_CHECK(kd_sampler_learned_variance(s) == 0, "%s: learned_variance must be 0", label);
        TEST_CHECK(s->order == (k == 2 ? 2 : 1), "%s: order %d", label, s->order);
        stats st = {0};
        int karras = 0;
        if (k != 1 && kd_config_has(&cfg, "use_karras_sigmas")) kd_config_bool(&cfg, "use_karras_sigmas", &karras, &e);
        check_set_timesteps(s, f, label, SNAMES[k], karras, &st);
        check_add_noise(s, f, label, SNAMES[k], &st);
        check_loops(s, f, label, SNAMES[k], &st);
        finish_stats(label, &st);
        kd_sampler_free(s);
    }
    kd_config_free(&cfg);
    kd_st_close(f);
}

/* ------------------------------------------------------------------------------------------------
 * config handling and arguments */

static kd_status create_from(const kd_sampler_ops *ops, const char *json, kd_sampler **s, kd_err *e) {
    kd_config cfg = {0};
    *s = NULL;
    kd_status r = kd_config_parse(json, strlen(json), "test.json", &cfg, e);
    if (r == KD_OK) r = kd_sampler_create(ops, &cfg, s, e);
    kd_config_free(&cfg);
    return r;
}

static void expect(const kd_sampler_ops *ops, const char *json, kd_status want, const char *needle) {
    kd_err e = {0};
    kd_sampler *s = NULL;
    kd_status r = create_from(ops, json, &s, &e);
    TEST_CHECK(r == want && (!needle || strstr(e.msg, needle)), "%s with %s: status %d (want %d), '%s'", ops->name,
               json, (int)r, (int)want, e.msg);
    kd_sampler_free(s);
}

static void check_config_errors(void) {
    /* what the classes refuse or this build does not implement: named */
    expect(&kd_sampler_euler, "{\"use_exponential_sigmas\": true}", KD_ERR_UNSUPPORTED, "use_exponential_sigmas");
    expect(&kd_sampler_heun, "{\"use_beta_sigmas\": true}", KD_ERR_UNSUPPORTED, "use_beta_sigmas");
    expect(&kd_sampler_euler, "{\"interpolation_type\": \"log_linear\"}", KD_ERR_UNSUPPORTED, "interpolation_type");
    expect(&kd_sampler_euler, "{\"interpolation_type\": \"cubic\"}", KD_ERR_FORMAT, "interpolation_type");
    expect(&kd_sampler_euler, "{\"rescale_betas_zero_snr\": true}", KD_ERR_UNSUPPORTED, "rescale_betas_zero_snr");
    expect(&kd_sampler_euler_a, "{\"rescale_betas_zero_snr\": true}", KD_ERR_UNSUPPORTED, "rescale_betas_zero_snr");
    expect(&kd_sampler_euler, "{\"timestep_type\": \"continuous\", \"prediction_type\": \"v_prediction\"}",
           KD_ERR_UNSUPPORTED, "timestep_type");
    expect(&kd_sampler_euler, "{\"final_sigmas_type\": \"max\"}", KD_ERR_FORMAT, "final_sigmas_type");
    expect(&kd_sampler_euler_a, "{\"prediction_type\": \"sample\"}", KD_ERR_UNSUPPORTED, "sample");
    expect(&kd_sampler_heun, "{\"prediction_type\": \"noise\"}", KD_ERR_FORMAT, "prediction_type");
    expect(&kd_sampler_euler, "{\"timestep_spacing\": 3}", KD_ERR_FORMAT, "timestep_spacing");
    expect(&kd_sampler_euler, "{\"timestep_spacing\": \"uniform\"}", KD_ERR_FORMAT, "timestep_spacing");
    expect(&kd_sampler_euler, "{\"beta_schedule\": \"exp\"}", KD_ERR_UNSUPPORTED, "exp");
    expect(&kd_sampler_heun, "{\"beta_schedule\": \"sigmoid\"}", KD_ERR_UNSUPPORTED, "sigmoid");
    expect(&kd_sampler_euler, "{\"use_karras_sigmas\": \"yes\"}", KD_ERR_FORMAT, "use_karras_sigmas");
    expect(&kd_sampler_heun, "{\"clip_sample_range\": \"big\"}", KD_ERR_FORMAT, "clip_sample_range");
    /* keys a class does not know are ignored, whatever their value */
    expect(&kd_sampler_heun, "{\"rescale_betas_zero_snr\": true, \"final_sigmas_type\": \"max\"}", KD_OK, NULL);
    expect(&kd_sampler_euler_a, "{\"use_karras_sigmas\": true, \"interpolation_type\": \"log_linear\", "
                                "\"use_exponential_sigmas\": true}", KD_OK, NULL);
    expect(&kd_sampler_euler, "{\"variance_type\": \"fixed_large_log\", \"thresholding\": true, "
                              "\"clip_sample\": 7, \"set_alpha_to_one\": null, \"future\": {\"a\": [1]}}", KD_OK, NULL);
    expect(&kd_sampler_euler, "{\"timestep_type\": \"continuous\", \"use_karras_sigmas\": null}", KD_OK, NULL);

    /* Heun: order 2, 2n - 1 calls; the img2img start is t_start·order (sampler.c says why) */
    kd_err e = {0};
    kd_sampler *s = NULL;
    if (create_from(&kd_sampler_heun, "{}", &s, &e) == KD_OK && kd_sampler_set_timesteps(s, 10, &e) == KD_OK) {
        int start = -1, count = -1;
        kd_sampler_img2img_start(s, 0.5, &start, &count, &e);
        TEST_CHECK(s->order == 2 && kd_sampler_num_timesteps(s) == 19 && start == 10 && count == 9,
                   "heun: order %d, %d calls for 10 steps, img2img 0.5 from %d (%d calls)", s->order,
                   kd_sampler_num_timesteps(s), start, count);
    } else {
        TEST_CHECK(0, "heun from {}: %s", e.msg);
    }
    kd_sampler_free(s);

    /* euler-a draws at every step: no generator is an error; euler draws nothing */
    for (int k = 0; k < 2; k++) {
        s = NULL;
        if (create_from(OPS[k], "{}", &s, &e) != KD_OK || kd_sampler_set_timesteps(s, 4, &e) != KD_OK) {
            TEST_CHECK(0, "%s from {}: %s", OPS[k]->name, e.msg);
            kd_sampler_free(s);
            continue;
        }
        float x[8] = {0}, mo[8] = {0};
        kd_sched_shape shape = {1, 2, 4};
        kd_status r = kd_sampler_step(s, 0, mo, 2, x, &shape, NULL, x, &e);
        TEST_CHECK(k == 0 ? r == KD_OK : r == KD_ERR_INVALID_ARG, "%s.step without rng: status %d (%s)", OPS[k]->name,
                   (int)r, e.msg);
        r = kd_sampler_step(s, 4, mo, 2, x, &shape, NULL, x, &e);
        TEST_CHECK(r == KD_ERR_INVALID_ARG, "%s.step index 4 of 4: status %d", OPS[k]->name, (int)r);
        r = kd_sampler_step(s, 1, mo, 3, x, &shape, NULL, x, &e);
        TEST_CHECK(r == KD_ERR_INVALID_ARG, "%s.step with 3 model channels for 2: status %d", OPS[k]->name, (int)r);
        kd_sampler_free(s);
    }
}

int main(void) {
    for (int c = 0; c < N_CONFIGS; c++) check_config(CONFIGS[c]);
    printf("  all: %zu values vs diffusers: %zu not bit-identical, max abs err %.3e, max rel err %.3e; %zu of %zu "
           "hashes bit-identical to diffusers with a correctly rounded sqrt\n", g_values, g_inexact, g_max_abs, g_max_rel,
           g_hash_ok, g_hashes);
    check_config_errors();
    return kt_finish("test_sampler_euler");
}
