/* Schedulers against diffusers 0.42 (tools/reference/gen_sched.py → tests/data/sched):
 * DDPM / DDIM / UnCLIP built from scheduler_config.json texts (the Kandinsky ones of the spec §2.6
 * plus other spacings, prediction and variance types), checked for
 *   - betas and alphas_cumprod: bit-exact (linear schedules are pure float arithmetic); at most
 *     2 ulp where libm cos/pow enter (squaredcos_cap_v2), in case another libm rounds differently;
 *   - timesteps: exact, for n = 1, 2, 7, 25, 50, 100 as lists and 1000 (and every n in 1..T for
 *     each spacing rule, T = 1000 and 100) through a hash; where diffusers refuses n or yields
 *     timesteps outside [0, T), set_timesteps must fail;
 *   - step outputs (prev_sample, pred_original) with the noise drawn from kd_rng seeded as the
 *     reference torch.Generator, add_noise, and whole denoising loops drawing latents and every
 *     step's noise from one generator (2.2 img2img start included): |got - ref| <= atol + rtol·|ref|
 *     with rtol 1e-5 and atol 1e-6·max|ref| (the atol covers outputs that are sums with
 *     cancellation near 0: one ulp of the larger term there is a large relative error). The
 *     arithmetic follows torch's float32 order, so most values are bit-identical; the rest differ
 *     by ulps where torch's SLEEF log/exp differ from libm's;
 *   - Kandinsky 2.1's img2img noising (own linear schedule) and get_timesteps;
 * and the config/argument errors: unknown keys tolerated, mistyped keys named, n = 0 and n > T
 * rejected with clear messages. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "pipeline/pipeline.h" /* kd_k21_img2img_noise: 2.1's img2img quirk lives in its pipeline */
#include "sched/scheduler.h"
#include "testutil.h"

static const int STEP_COUNTS[] = {1, 2, 7, 25, 50, 100, 1000};
#define N_STEP_COUNTS ((int)(sizeof STEP_COUNTS / sizeof STEP_COUNTS[0]))

static void *copy_tensor(const kd_st_file *f, const char *name, kd_dtype dt, size_t *n, int64_t *shape, int *ndim) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t || t->t.dtype != dt) return NULL;
    if (n) *n = (size_t)kd_tensor_numel(&t->t);
    if (shape)
        for (int i = 0; i < t->t.ndim; i++) shape[i] = t->t.shape[i];
    if (ndim) *ndim = t->t.ndim;
    void *p = malloc(t->nbytes + 8);
    if (p) memcpy(p, t->t.data, t->nbytes);
    return p;
}

static uint64_t ts_hash(const int64_t *ts, int n) {
    uint64_t h = (uint64_t)n;
    for (int i = 0; i < n; i++) h = h * 1000003u + (uint64_t)(ts[i] + 1);
    return h;
}

static int64_t ulp_dist(float a, float b) {
    int32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    if (x < 0) x = INT32_MIN - x;
    if (y < 0) y = INT32_MIN - y;
    return llabs((long long)x - (long long)y);
}

static int close_step(const char *label, const float *got, const float *ref, size_t n) {
    return kt_allclose(label, got, ref, n, 1e-6 * kt_max_abs(ref, n), 1e-5);
}

/* ------------------------------------------------------------------------------------------------
 * one reference config */

typedef struct fixture {
    const char *name;
    kd_st_file *f;
    kd_sched *s;
    kd_sched_shape shape;
    int64_t model_channels;
    float *sample, *model_output;
    size_t n, n_mo;
} fixture;

static void check_schedule(fixture *fx) {
    size_t nb = 0, na = 0;
    float *betas = copy_tensor(fx->f, "betas", KD_F32, &nb, NULL, NULL);
    float *ac = copy_tensor(fx->f, "alphas_cumprod", KD_F32, &na, NULL, NULL);
    const kd_sched_config *c = kd_sched_get_config(fx->s);
    TEST_CHECK(betas && ac && nb == (size_t)c->num_train_timesteps && na == nb, "%s: schedule tensors (%zu)",
               fx->name, nb);
    if (betas && ac && nb == (size_t)c->num_train_timesteps) {
        int64_t mb = 0, ma = 0;
        for (size_t i = 0; i < nb; i++) {
            int64_t d1 = ulp_dist(kd_sched_betas(fx->s)[i], betas[i]);
            int64_t d2 = ulp_dist(kd_sched_alphas_cumprod(fx->s)[i], ac[i]);
            if (d1 > mb) mb = d1;
            if (d2 > ma) ma = d2;
        }
        int64_t allowed = c->beta_schedule == KD_BETA_SQUAREDCOS_CAP_V2 ? 2 : 0;
        TEST_CHECK(mb <= allowed && ma <= allowed, "%s: betas within %lld ulp (max %lld), alphas_cumprod (max %lld)",
                   fx->name, (long long)allowed, (long long)mb, (long long)ma);
        printf("  ok %-24s betas/alphas_cumprod max ulp %lld/%lld (allowed %lld)\n", fx->name, (long long)mb,
               (long long)ma, (long long)allowed);
    }
    free(betas);
    free(ac);
}

static void check_timesteps(fixture *fx) {
    kd_err e = {0};
    const int T = kd_sched_get_config(fx->s)->num_train_timesteps;
    for (int k = 0; k < N_STEP_COUNTS; k++) {
        int n = STEP_COUNTS[k];
        char name[64];
        size_t cnt = 0;
        snprintf(name, sizeof name, "N%d.timesteps", n);
        int64_t *ref = copy_tensor(fx->f, name, KD_I64, &cnt, NULL, NULL);
        snprintf(name, sizeof name, "N%d.hash", n);
        size_t hn = 0;
        int64_t *href = copy_tensor(fx->f, name, KD_I64, &hn, NULL, NULL);
        kd_status s = kd_sched_set_timesteps(fx->s, n, &e);
        if (!ref && !href) {
            TEST_CHECK(s != KD_OK, "%s: set_timesteps(%d) refused by diffusers, accepted here", fx->name, n);
            continue;
        }
        int valid;
        if (ref) {
            valid = 1;
            for (size_t i = 0; i < cnt; i++)
                if (ref[i] < 0 || ref[i] >= T) valid = 0;
        } else {
            valid = (int)(href[0] & 1);
            cnt = (size_t)(href[0] >> 1);
        }
        if (!valid) {
            TEST_CHECK(s != KD_OK, "%s: set_timesteps(%d) gives timesteps outside [0, %d) in diffusers; must fail",
                       fx->name, n, T);
        } else {
            TEST_CHECK(s == KD_OK, "%s: set_timesteps(%d): %s", fx->name, n, e.msg);
            if (s == KD_OK) {
                const int64_t *ts = kd_sched_timesteps(fx->s);
                int m = kd_sched_num_timesteps(fx->s);
                int same = (size_t)m == cnt;
                if (ref)
                    for (size_t i = 0; same && i < cnt; i++) same = ts[i] == ref[i];
                else
                    same = same && ts_hash(ts, m) == (uint64_t)href[1];
                TEST_CHECK(same, "%s: timesteps for n=%d differ from diffusers (%d entries, first %lld; ref first %lld)",
                           fx->name, n, m, (long long)(m ? ts[0] : -1), (long long)(ref ? ref[0] : -1));
            }
        }
        free(ref);
        free(href);
    }
}

static void build_model_output(const fixture *fx, const float *pred, float *mo) {
    /* prediction channels, then (if the scheduler splits them) the fixture's variance channels */
    size_t per = (size_t)(fx->shape.channels * fx->shape.inner);
    size_t mper = (size_t)(fx->model_channels * fx->shape.inner);
    for (int64_t b = 0; b < fx->shape.batch; b++) {
        memcpy(mo + b * mper, pred + b * per, per * sizeof(float));
        if (mper > per) memcpy(mo + b * mper + per, fx->model_output + b * mper + per, per * sizeof(float));
    }
}

static void check_cases(fixture *fx) {
    const char *cases = kd_st_meta(fx->f, "cases");
    TEST_CHECK(cases != NULL, "%s: cases metadata", fx->name);
    if (!cases || !*cases) return;
    kd_err e = {0};
    float *prev = malloc(fx->n * sizeof(float)), *x0 = malloc(fx->n * sizeof(float));
    const char *p = cases;
    while (p && *p) {
        int k, n, i;
        long long t;
        unsigned long long seed;
        if (sscanf(p, "%d:%d:%d:%lld:%llu", &k, &n, &i, &t, &seed) != 5) {
            TEST_CHECK(0, "%s: bad case description '%s'", fx->name, p);
            break;
        }
        p = strchr(p, ',');
        if (p) p++;
        kd_status s = kd_sched_set_timesteps(fx->s, n, &e);
        TEST_CHECK(s == KD_OK, "%s case %d: set_timesteps(%d): %s", fx->name, k, n, e.msg);
        if (s != KD_OK) continue;
        TEST_CHECK(i < kd_sched_num_timesteps(fx->s) && kd_sched_timesteps(fx->s)[i] == t,
                   "%s case %d: timesteps[%d] is %lld here, %lld in diffusers", fx->name, k, i,
                   (long long)(i < kd_sched_num_timesteps(fx->s) ? kd_sched_timesteps(fx->s)[i] : -1), t);
        kd_rng rng;
        kd_rng_seed(&rng, seed);
        s = kd_sched_step(fx->s, fx->model_output, fx->model_channels, t, fx->sample, &fx->shape, &rng, prev, x0, &e);
        TEST_CHECK(s == KD_OK, "%s case %d: step: %s", fx->name, k, e.msg);
        char name[64], label[128];
        snprintf(name, sizeof name, "case%d.prev_sample", k);
        float *rp = copy_tensor(fx->f, name, KD_F32, NULL, NULL, NULL);
        snprintf(name, sizeof name, "case%d.pred_original", k);
        float *rx = copy_tensor(fx->f, name, KD_F32, NULL, NULL, NULL);
        TEST_CHECK(rp && rx, "%s case %d: reference tensors", fx->name, k);
        if (s == KD_OK && rp && rx) {
            snprintf(label, sizeof label, "%s n=%d t=%lld prev_sample", fx->name, n, t);
            close_step(label, prev, rp, fx->n);
            snprintf(label, sizeof label, "%s n=%d t=%lld pred_original", fx->name, n, t);
            close_step(label, x0, rx, fx->n);
        }
        free(rp);
        free(rx);
    }
    free(prev);
    free(x0);
}

static void check_add_noise(fixture *fx) {
    kd_err e = {0};
    float *orig = copy_tensor(fx->f, "add_noise.original", KD_F32, NULL, NULL, NULL);
    float *noise = copy_tensor(fx->f, "add_noise.noise", KD_F32, NULL, NULL, NULL);
    TEST_CHECK(orig && noise, "%s: add_noise inputs", fx->name);
    float *out = malloc(fx->n * sizeof(float));
    int checked = 0;
    for (size_t j = 0; orig && noise && j < fx->f->n_tensors; j++) {
        const char *nm = fx->f->tensors[j].name;
        if (strncmp(nm, "add_noise.t", 11) != 0) continue;
        int64_t t = atoll(nm + 11);
        float *ref = copy_tensor(fx->f, nm, KD_F32, NULL, NULL, NULL);
        kd_status s = kd_sched_add_noise(fx->s, orig, noise, fx->n, t, out, &e);
        TEST_CHECK(s == KD_OK && ref, "%s add_noise t=%lld: %s", fx->name, (long long)t, e.msg);
        char label[96];
        snprintf(label, sizeof label, "%s add_noise t=%lld", fx->name, (long long)t);
        if (s == KD_OK && ref) close_step(label, out, ref, fx->n);
        free(ref);
        checked++;
    }
    TEST_CHECK(checked >= 2, "%s: add_noise cases present (%d)", fx->name, checked);
    free(out);
    free(orig);
    free(noise);
}

static void check_loops(fixture *fx) {
    const char *loops = kd_st_meta(fx->f, "loops");
    TEST_CHECK(loops && *loops, "%s: loops metadata", fx->name);
    if (!loops) return;
    kd_err e = {0};
    float *base = copy_tensor(fx->f, "loop.base", KD_F32, NULL, NULL, NULL);
    TEST_CHECK(base != NULL, "%s: loop.base", fx->name);
    if (!base) return;
    float *x = malloc(fx->n * sizeof(float)), *pred = malloc(fx->n * sizeof(float));
    float *mo = malloc(fx->n_mo * sizeof(float));
    const char *p = loops;
    while (p && *p) {
        int k, n, count;
        unsigned long long seed;
        char strength_s[32];
        if (sscanf(p, "%d:%d:%llu:%31[^:]:%d", &k, &n, &seed, strength_s, &count) != 5) {
            TEST_CHECK(0, "%s: bad loop description '%s'", fx->name, p);
            break;
        }
        p = strchr(p, ',');
        if (p) p++;
        kd_status s = kd_sched_set_timesteps(fx->s, n, &e);
        TEST_CHECK(s == KD_OK, "%s loop %d: set_timesteps(%d): %s", fx->name, k, n, e.msg);
        if (s != KD_OK) continue;
        kd_rng rng;
        kd_rng_seed(&rng, seed);
        const int64_t *ts = kd_sched_timesteps(fx->s);
        int start = 0, cnt = kd_sched_num_timesteps(fx->s);
        char name[64], label[128];
        if (strcmp(strength_s, "none") == 0) {
            kd_rng_randn(&rng, x, fx->n); /* randn_tensor(shape, generator) · init_noise_sigma (1) */
        } else {
            double strength = strtod(strength_s, NULL);
            s = kd_sched_img2img_start(fx->s, strength, &start, &cnt, &e);
            TEST_CHECK(s == KD_OK && cnt == count, "%s loop %d: img2img start: %d steps (ref %d) %s", fx->name, k, cnt,
                       count, e.msg);
            if (s != KD_OK) continue;
            kd_rng_randn(&rng, pred, fx->n); /* noise, then add_noise at timesteps[t_start] */
            s = kd_sched_add_noise(fx->s, base, pred, fx->n, ts[start], x, &e);
            TEST_CHECK(s == KD_OK, "%s loop %d add_noise: %s", fx->name, k, e.msg);
            snprintf(name, sizeof name, "loop%d.x_init", k);
            float *ref = copy_tensor(fx->f, name, KD_F32, NULL, NULL, NULL);
            snprintf(label, sizeof label, "%s loop%d img2img start t=%lld", fx->name, k, (long long)ts[start]);
            TEST_CHECK(ref != NULL, "%s: %s", fx->name, name);
            if (ref) close_step(label, x, ref, fx->n);
            free(ref);
        }
        TEST_CHECK(cnt == count, "%s loop %d: %d steps, diffusers %d", fx->name, k, cnt, count);
        int compared = 0;
        for (int i = 0; i < cnt; i++) {
            int64_t t = ts[start + i];
            for (size_t j = 0; j < fx->n; j++) {
                float a = x[j] * 0.9f, b = base[j] * 0.1f; /* the fixture's "model": x * 0.9 + base * 0.1 */
                pred[j] = a + b;
            }
            build_model_output(fx, pred, mo);
            s = kd_sched_step(fx->s, mo, fx->model_channels, t, x, &fx->shape, &rng, x, NULL, &e);
            TEST_CHECK(s == KD_OK, "%s loop %d step %d: %s", fx->name, k, i, e.msg);
            if (s != KD_OK) break;
            snprintf(name, sizeof name, "loop%d.x%d", k, i);
            float *ref = copy_tensor(fx->f, name, KD_F32, NULL, NULL, NULL);
            if (ref) {
                snprintf(label, sizeof label, "%s loop%d (n=%d) after step %d t=%lld", fx->name, k, n, i, (long long)t);
                /* errors of ~1 ulp per step propagate through the chain: same bound, it holds */
                close_step(label, x, ref, fx->n);
                compared++;
                free(ref);
            }
        }
        TEST_CHECK(compared >= 1, "%s loop %d: compared %d steps", fx->name, k, compared);
    }
    free(x);
    free(pred);
    free(mo);
    free(base);
}

static void run_fixture(const char *name) {
    fixture fx = {0};
    fx.name = name;
    kd_err e = {0};
    char rel[128];
    snprintf(rel, sizeof rel, "sched/%s.safetensors", name);
    kd_status s = kd_st_open(kt_data_path(rel), &fx.f, &e);
    TEST_CHECK(s == KD_OK, "open %s: %s", rel, e.msg);
    if (s != KD_OK) return;
    const char *json = kd_st_meta(fx.f, "config");
    kd_config cfg = {0};
    s = json ? kd_config_parse(json, strlen(json), name, &cfg, &e) : KD_ERR_NOT_FOUND;
    TEST_CHECK(s == KD_OK, "%s: config JSON: %s", name, e.msg);
    if (s == KD_OK) s = kd_sched_from_config(&cfg, KD_SCHED_AUTO, &fx.s, &e);
    TEST_CHECK(s == KD_OK, "%s: scheduler from config: %s", name, e.msg);
    kd_config_free(&cfg);
    if (s != KD_OK) {
        kd_st_close(fx.f);
        return;
    }
    const char *eta = kd_st_meta(fx.f, "eta");
    if (eta) {
        const char *uc = kd_st_meta(fx.f, "use_clipped");
        s = kd_sched_set_eta(fx.s, strtod(eta, NULL), uc && strcmp(uc, "1") == 0, &e);
        TEST_CHECK(s == KD_OK, "%s: set_eta: %s", name, e.msg);
    }
    int64_t sh[8] = {0}, msh[8] = {0};
    int nd = 0, mnd = 0;
    fx.sample = copy_tensor(fx.f, "sample", KD_F32, &fx.n, sh, &nd);
    fx.model_output = copy_tensor(fx.f, "model_output", KD_F32, &fx.n_mo, msh, &mnd);
    TEST_CHECK(fx.sample && fx.model_output && nd >= 2 && mnd == nd, "%s: step inputs", name);
    if (fx.sample && fx.model_output && nd >= 2) {
        fx.shape.batch = sh[0];
        fx.shape.channels = sh[1];
        fx.shape.inner = 1;
        for (int i = 2; i < nd; i++) fx.shape.inner *= sh[i];
        fx.model_channels = msh[1];
        check_schedule(&fx);
        check_timesteps(&fx);
        check_cases(&fx);
        check_add_noise(&fx);
        check_loops(&fx);
    }
    free(fx.sample);
    free(fx.model_output);
    kd_sched_free(fx.s);
    kd_st_close(fx.f);
}

/* ------------------------------------------------------------------------------------------------
 * every n in 1..T for each spacing rule */

static void check_timestep_hashes(void) {
    kd_err e = {0};
    kd_st_file *f = NULL;
    kd_status s = kd_st_open(kt_data_path("sched/timesteps_hash.safetensors"), &f, &e);
    TEST_CHECK(s == KD_OK, "open timesteps_hash: %s", e.msg);
    if (s != KD_OK) return;
    static const struct {
        const char *name;
        kd_sched_kind kind;
        kd_timestep_spacing spacing;
        int offset;
    } variants[] = {
        {"leading_off1", KD_SCHED_DDPM, KD_SPACING_LEADING, 1},
        {"leading_off0", KD_SCHED_DDIM, KD_SPACING_LEADING, 0},
        {"trailing", KD_SCHED_DDPM, KD_SPACING_TRAILING, 0},
        {"linspace", KD_SCHED_DDIM, KD_SPACING_LINSPACE, 0},
        {"unclip", KD_SCHED_UNCLIP, KD_SPACING_LEADING, 0},
    };
    static const int Ts[] = {1000, 100};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        for (size_t ti = 0; ti < 2; ti++) {
            int T = Ts[ti];
            char name[64];
            snprintf(name, sizeof name, "%s.T%d", variants[v].name, T);
            size_t cnt = 0;
            int64_t *rows = copy_tensor(f, name, KD_I64, &cnt, NULL, NULL);
            TEST_CHECK(rows && cnt == (size_t)T * 2, "%s rows", name);
            if (!rows) continue;
            kd_sched_config c;
            kd_sched_config_default(variants[v].kind, &c);
            c.num_train_timesteps = T;
            c.timestep_spacing = variants[v].spacing;
            c.steps_offset = variants[v].offset;
            kd_sched *sc = NULL;
            s = kd_sched_create(&c, NULL, &sc, &e);
            TEST_CHECK(s == KD_OK, "%s: create: %s", name, e.msg);
            int bad = 0, refused = 0, first_bad = 0;
            for (int n = 1; s == KD_OK && n <= T; n++) {
                int64_t lv = rows[2 * (n - 1)];
                uint64_t h = (uint64_t)rows[2 * (n - 1) + 1];
                kd_status st = kd_sched_set_timesteps(sc, n, &e);
                int ok;
                if (lv == 0 || (lv & 1) == 0) { /* diffusers refuses n, or gives timesteps outside [0, T) */
                    ok = st != KD_OK;
                    refused++;
                } else {
                    ok = st == KD_OK && kd_sched_num_timesteps(sc) == (int)(lv >> 1) &&
                         ts_hash(kd_sched_timesteps(sc), kd_sched_num_timesteps(sc)) == h;
                }
                if (!ok && !bad++) first_bad = n;
            }
            TEST_CHECK(bad == 0, "%s: %d of %d step counts differ from diffusers, first n=%d", name, bad, T, first_bad);
            if (!bad) printf("  ok %-20s all n in 1..%d match (%d refused as diffusers would fail)\n", name, T, refused);
            kd_sched_free(sc);
            free(rows);
        }
    }
    kd_st_close(f);
}

/* KandinskyImg2ImgPipeline.add_noise (a 2.1 pipeline quirk built on the scheduler: pipeline/k21.c). */
static void check_k21_img2img(void) {
    kd_err e = {0};
    kd_st_file *f = NULL;
    kd_status s = kd_st_open(kt_data_path("sched/k21_img2img.safetensors"), &f, &e);
    TEST_CHECK(s == KD_OK, "open k21_img2img: %s", e.msg);
    if (s != KD_OK) return;
    size_t n = 0;
    float *orig = copy_tensor(f, "original", KD_F32, &n, NULL, NULL);
    float *noise = copy_tensor(f, "noise", KD_F32, NULL, NULL, NULL);
    const char *sl = kd_st_meta(f, "strengths");
    TEST_CHECK(orig && noise && sl, "k21_img2img inputs");
    double strengths[16];
    int ns = 0;
    for (const char *p = sl; p && *p && ns < 16; ns++) {
        strengths[ns] = strtod(p, NULL);
        p = strchr(p, ',');
        if (p) p++;
    }
    float *out = malloc(n * sizeof(float));
    for (int k = 0; orig && noise && k < ns; k++) {
        char name[32];
        snprintf(name, sizeof name, "s%d.t", k);
        int64_t *tref = copy_tensor(f, name, KD_I64, NULL, NULL, NULL);
        snprintf(name, sizeof name, "s%d.noised", k);
        float *ref = copy_tensor(f, name, KD_F32, NULL, NULL, NULL);
        int64_t t = -1;
        s = kd_k21_img2img_noise(orig, noise, n, strengths[k], 1000, out, &t, &e);
        if (!tref) {
            TEST_CHECK(s != KD_OK, "k21 add_noise strength %g gives a negative timestep: must fail", strengths[k]);
        } else {
            TEST_CHECK(s == KD_OK && t == tref[0], "k21 add_noise strength %g: t %lld (ref %lld) %s", strengths[k],
                       (long long)t, (long long)tref[0], e.msg);
            char label[64];
            snprintf(label, sizeof label, "k21 img2img add_noise strength %g", strengths[k]);
            if (s == KD_OK && ref) close_step(label, out, ref, n);
        }
        free(tref);
        free(ref);
    }
    free(out);
    size_t nr = 0;
    int64_t *rows = copy_tensor(f, "get_timesteps", KD_I64, &nr, NULL, NULL);
    TEST_CHECK(rows && nr % 4 == 0, "get_timesteps rows");
    kd_sched_config c;
    kd_sched_config_default(KD_SCHED_DDPM, &c);
    c.beta_start = 0.00085;
    c.beta_end = 0.012;
    c.steps_offset = 1;
    kd_sched *sc = NULL;
    s = kd_sched_create(&c, NULL, &sc, &e);
    int bad = 0;
    for (size_t r = 0; rows && s == KD_OK && r + 3 < nr; r += 4) {
        int start = -1, cnt = -1;
        kd_sched_set_timesteps(sc, (int)rows[r], &e);
        kd_status st = kd_sched_img2img_start(sc, strengths[rows[r + 1]], &start, &cnt, &e);
        if (st != KD_OK || start != rows[r + 2] || cnt != rows[r + 3]) {
            bad++;
            printf("FAIL get_timesteps n=%lld strength %g: start %d count %d, ref %lld %lld\n", (long long)rows[r],
                   strengths[rows[r + 1]], start, cnt, (long long)rows[r + 2], (long long)rows[r + 3]);
        }
    }
    TEST_CHECK(bad == 0, "img2img get_timesteps: %d mismatches", bad);
    if (!bad) printf("  ok img2img get_timesteps (%zu cases)\n", nr / 4);
    kd_sched_free(sc);
    free(rows);
    free(orig);
    free(noise);
    kd_st_close(f);
}

/* ------------------------------------------------------------------------------------------------
 * configs from JSON strings, errors */

static kd_status from_json(const char *json, kd_sched_kind kind, kd_sched **out, kd_err *e) {
    kd_config cfg = {0};
    kd_status s = kd_config_parse(json, strlen(json), "scheduler_config.json", &cfg, e);
    if (s == KD_OK) s = kd_sched_from_config(&cfg, kind, out, e);
    kd_config_free(&cfg);
    return s;
}

static void expect_error(const char *json, kd_sched_kind kind, kd_status code, const char *needle) {
    kd_err e = {0};
    kd_sched *s = NULL;
    kd_status st = from_json(json, kind, &s, &e);
    TEST_CHECK(st == code && s == NULL && strstr(e.msg, needle) != NULL,
               "config %s: got %s \"%s\", expected %s mentioning '%s'", json, kd_status_str(st), e.msg,
               kd_status_str(code), needle);
    if (st == code) printf("  ok error: %s\n", e.msg);
    kd_sched_free(s);
}

static void test_configs(void) {
    kd_err e = {0};
    kd_sched *s = NULL;
    /* unknown keys (of any type) are tolerated, as diffusers does when loading a file */
    kd_status st = from_json("{\"_class_name\": \"DDPMScheduler\", \"set_alpha_to_one\": false, \"skip_prk_steps\": true,"
                             " \"foo\": {\"bar\": [1, \"x\"]}, \"clip_sample\": false}",
                             KD_SCHED_AUTO, &s, &e);
    TEST_CHECK(st == KD_OK && s && kd_sched_get_config(s)->kind == KD_SCHED_DDPM && !kd_sched_get_config(s)->clip_sample,
               "unknown keys tolerated: %s", e.msg);
    kd_sched_free(s);
    s = NULL;

    /* missing keys take diffusers' defaults */
    st = from_json("{}", KD_SCHED_DDIM, &s, &e);
    TEST_CHECK(st == KD_OK, "empty DDIM config: %s", e.msg);
    if (st == KD_OK) {
        const kd_sched_config *c = kd_sched_get_config(s);
        TEST_CHECK(c->num_train_timesteps == 1000 && c->beta_start == 0.0001 && c->beta_end == 0.02 &&
                       c->beta_schedule == KD_BETA_LINEAR && c->clip_sample && c->clip_sample_range == 1.0 &&
                       c->set_alpha_to_one && c->steps_offset == 0 && c->prediction_type == KD_PRED_EPSILON &&
                       c->timestep_spacing == KD_SPACING_LEADING && !c->thresholding,
                   "DDIM defaults");
        /* DDIM steps need set_timesteps first */
        float x[4] = {0}, y[4];
        kd_sched_shape sh = {1, 4, 1};
        st = kd_sched_step(s, x, 4, 10, x, &sh, NULL, y, NULL, &e);
        TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "set_timesteps"), "DDIM step before set_timesteps: %s",
                   e.msg);
    }
    kd_sched_free(s);
    s = NULL;
    st = from_json("{\"_class_name\": \"UnCLIPScheduler\"}", KD_SCHED_AUTO, &s, &e);
    TEST_CHECK(st == KD_OK && kd_sched_get_config(s)->variance_type == KD_VAR_FIXED_SMALL_LOG &&
                   kd_sched_get_config(s)->beta_schedule == KD_BETA_SQUAREDCOS_CAP_V2 &&
                   kd_sched_get_config(s)->prediction_type == KD_PRED_EPSILON,
               "UnCLIP defaults: %s", e.msg);
    kd_sched_free(s);
    s = NULL;
    /* null booleans are Python's None: false */
    st = from_json("{\"clip_sample\": null, \"trained_betas\": null}", KD_SCHED_DDPM, &s, &e);
    TEST_CHECK(st == KD_OK && !kd_sched_get_config(s)->clip_sample, "null clip_sample is false: %s", e.msg);
    kd_sched_free(s);
    s = NULL;
    /* trained_betas */
    st = from_json("{\"num_train_timesteps\": 4, \"trained_betas\": [0.1, 0.2, 0.30000001, 0.4]}", KD_SCHED_DDIM, &s, &e);
    TEST_CHECK(st == KD_OK && kd_sched_betas(s)[2] == (float)0.30000001 &&
                   kd_sched_alphas_cumprod(s)[1] == (float)((double)(1.0f - 0.1f) * (double)(1.0f - 0.2f)),
               "trained_betas: %s", e.msg);
    kd_sched_free(s);
    s = NULL;

    /* mistyped and invalid keys are named */
    expect_error("{\"num_train_timesteps\": \"1000\"}", KD_SCHED_DDPM, KD_ERR_FORMAT, "num_train_timesteps");
    expect_error("{\"num_train_timesteps\": 1000.0}", KD_SCHED_DDPM, KD_ERR_FORMAT, "num_train_timesteps");
    expect_error("{\"num_train_timesteps\": 0}", KD_SCHED_DDPM, KD_ERR_FORMAT, "num_train_timesteps");
    expect_error("{\"clip_sample\": 1}", KD_SCHED_DDPM, KD_ERR_FORMAT, "clip_sample");
    expect_error("{\"beta_start\": \"0.1\"}", KD_SCHED_DDIM, KD_ERR_FORMAT, "beta_start");
    expect_error("{\"beta_schedule\": \"cosine\"}", KD_SCHED_DDIM, KD_ERR_FORMAT, "squaredcos_cap_v2");
    expect_error("{\"beta_schedule\": \"sigmoid\"}", KD_SCHED_DDPM, KD_ERR_UNSUPPORTED, "sigmoid");
    expect_error("{\"prediction_type\": \"v_prediction\"}", KD_SCHED_UNCLIP, KD_ERR_FORMAT, "prediction_type");
    expect_error("{\"prediction_type\": [\"epsilon\"]}", KD_SCHED_DDPM, KD_ERR_FORMAT, "prediction_type");
    expect_error("{\"timestep_spacing\": \"uniform\"}", KD_SCHED_DDPM, KD_ERR_FORMAT, "timestep_spacing");
    expect_error("{\"variance_type\": \"fixed_large_log\"}", KD_SCHED_DDPM, KD_ERR_UNSUPPORTED, "fixed_large_log");
    expect_error("{\"variance_type\": \"fixed_small\"}", KD_SCHED_UNCLIP, KD_ERR_FORMAT, "variance_type");
    expect_error("{\"beta_schedule\": \"linear\"}", KD_SCHED_UNCLIP, KD_ERR_FORMAT, "squaredcos_cap_v2");
    expect_error("{\"set_alpha_to_one\": \"no\"}", KD_SCHED_DDIM, KD_ERR_FORMAT, "set_alpha_to_one");
    expect_error("{\"steps_offset\": 1.5}", KD_SCHED_DDIM, KD_ERR_FORMAT, "steps_offset");
    expect_error("{\"rescale_betas_zero_snr\": true}", KD_SCHED_DDIM, KD_ERR_UNSUPPORTED, "rescale_betas_zero_snr");
    expect_error("{\"trained_betas\": [0.1, 0.2]}", KD_SCHED_DDPM, KD_ERR_FORMAT, "trained_betas");
    expect_error("{\"trained_betas\": \"0.1\"}", KD_SCHED_DDPM, KD_ERR_FORMAT, "trained_betas");
    expect_error("{\"_class_name\": \"EulerDiscreteScheduler\"}", KD_SCHED_AUTO, KD_ERR_UNSUPPORTED,
                 "EulerDiscreteScheduler");
    expect_error("{\"beta_start\": 0.001}", KD_SCHED_AUTO, KD_ERR_NOT_FOUND, "_class_name");
    expect_error("{\"_class_name\": 3}", KD_SCHED_AUTO, KD_ERR_FORMAT, "_class_name");
}

static void test_arguments(void) {
    kd_err e = {0};
    kd_sched *s = NULL;
    kd_status st = from_json("{\"_class_name\": \"DDPMScheduler\", \"beta_start\": 0.00085, \"beta_end\": 0.012}",
                             KD_SCHED_AUTO, &s, &e);
    TEST_CHECK(st == KD_OK, "DDPM: %s", e.msg);
    if (st != KD_OK) return;
    st = kd_sched_set_timesteps(s, 0, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "at least 1"), "set_timesteps(0): %s", e.msg);
    printf("  ok error: %s\n", e.msg);
    st = kd_sched_set_timesteps(s, -3, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG, "set_timesteps(-3): %s", e.msg);
    st = kd_sched_set_timesteps(s, 1001, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "num_train_timesteps 1000"), "set_timesteps(1001): %s", e.msg);
    printf("  ok error: %s\n", e.msg);

    /* step arguments */
    float mo[2 * 8 * 3], x[2 * 4 * 3], y[2 * 4 * 3];
    for (int i = 0; i < 48; i++) mo[i] = 0.01f * (float)i;
    for (int i = 0; i < 24; i++) x[i] = 0.5f - 0.02f * (float)i;
    kd_sched_shape sh = {2, 4, 3};
    kd_rng rng;
    kd_rng_seed(&rng, 1);
    st = kd_sched_step(s, mo, 4, 999, x, &sh, &rng, y, NULL, &e); /* before set_timesteps: t - 1 */
    TEST_CHECK(st == KD_OK, "DDPM step before set_timesteps: %s", e.msg);
    st = kd_sched_step(s, mo, 8, 999, x, &sh, &rng, y, NULL, &e);
    TEST_CHECK(st == KD_ERR_SHAPE && strstr(e.msg, "channels"), "fixed_small with 8 channels: %s", e.msg);
    st = kd_sched_step(s, mo, 4, 1000, x, &sh, &rng, y, NULL, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "1000"), "t = T: %s", e.msg);
    st = kd_sched_step(s, mo, 4, 5, x, &sh, NULL, y, NULL, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "rng"), "noise without rng: %s", e.msg);
    st = kd_sched_step(s, mo, 4, 0, x, &sh, NULL, y, NULL, &e);
    TEST_CHECK(st == KD_OK, "t = 0 draws nothing, rng may be NULL: %s", e.msg);
    kd_sched_set_timesteps(s, 10, &e);
    st = kd_sched_step(s, mo, 4, 501, x, &sh, &rng, y, NULL, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "not in"), "t not in the list: %s", e.msg);
    st = kd_sched_set_eta(s, 0.5, 0, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG, "eta on DDPM: %s", e.msg);
    st = kd_sched_img2img_start(s, 1.5, &(int){0}, &(int){0}, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "strength"), "strength 1.5: %s", e.msg);
    st = kd_sched_add_noise(s, x, x, 24, -1, y, &e);
    TEST_CHECK(st == KD_ERR_INVALID_ARG, "add_noise t=-1: %s", e.msg);
    kd_sched_free(s);
    s = NULL;

    /* in-place step equals out-of-place */
    st = from_json("{\"_class_name\": \"DDPMScheduler\", \"variance_type\": \"learned_range\", \"thresholding\": true}",
                   KD_SCHED_AUTO, &s, &e);
    TEST_CHECK(st == KD_OK, "learned_range DDPM: %s", e.msg);
    if (st == KD_OK) {
        st = kd_sched_step(s, mo, 4, 999, x, &sh, &rng, y, NULL, &e);
        TEST_CHECK(st == KD_ERR_SHAPE && strstr(e.msg, "variance"), "learned_range needs 2C channels: %s", e.msg);
        kd_sched_set_timesteps(s, 10, &e);
        float xin[24];
        memcpy(xin, x, sizeof x);
        kd_rng_seed(&rng, 4);
        kd_sched_step(s, mo, 8, kd_sched_timesteps(s)[2], x, &sh, &rng, y, NULL, &e);
        kd_rng_seed(&rng, 4);
        st = kd_sched_step(s, mo, 8, kd_sched_timesteps(s)[2], xin, &sh, &rng, xin, NULL, &e);
        TEST_CHECK(st == KD_OK && memcmp(xin, y, sizeof y) == 0, "in-place step: %s", e.msg);
    }
    kd_sched_free(s);
    s = NULL;

    /* trailing spacing: numpy's arange gives n + 1 entries ending in -1 for n = 61 of 1000 */
    st = from_json("{\"timestep_spacing\": \"trailing\"}", KD_SCHED_DDIM, &s, &e);
    if (st == KD_OK) {
        st = kd_sched_set_timesteps(s, 61, &e);
        TEST_CHECK(st == KD_ERR_UNSUPPORTED && strstr(e.msg, "trailing"), "trailing n=61: %s", e.msg);
        printf("  ok error: %s\n", e.msg);
    }
    kd_sched_free(s);
    s = NULL;
    /* leading with steps_offset 1 and n = T reaches t = T */
    st = from_json("{\"steps_offset\": 1}", KD_SCHED_DDPM, &s, &e);
    if (st == KD_OK) {
        st = kd_sched_set_timesteps(s, 1000, &e);
        TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "1000"), "offset 1, n=1000: %s", e.msg);
        printf("  ok error: %s\n", e.msg);
    }
    kd_sched_free(s);
    s = NULL;
    st = from_json("{}", KD_SCHED_UNCLIP, &s, &e);
    if (st == KD_OK) {
        st = kd_sched_set_timesteps(s, 1, &e);
        TEST_CHECK(st == KD_ERR_INVALID_ARG && strstr(e.msg, "at least 2"), "UnCLIP n=1: %s", e.msg);
        printf("  ok error: %s\n", e.msg);
        st = kd_sched_set_eta(s, 0.0, 0, &e);
        TEST_CHECK(st == KD_ERR_INVALID_ARG, "eta on UnCLIP");
    }
    kd_sched_free(s);
    TEST_CHECK(kd_sched_load("/nonexistent/scheduler_config.json", KD_SCHED_AUTO, &s, &e) == KD_ERR_NOT_FOUND && s == NULL,
               "missing file: %s", e.msg);
}

int main(void) {
    static const char *fixtures[] = {
        "k21_ddim", "k21_ddim_eta05", "k21_ddpm", "k22_ddpm_clip", "k22_ddpm_noclip", "prior_unclip",
        "ddim_trailing_v", "ddim_linspace_thresh", "ddpm_linspace_sample", "ddpm_trailing_learned_v",
        "ddpm_fixed_large_t500", "unclip_learned_eps",
    };
    test_configs();
    test_arguments();
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) run_fixture(fixtures[i]);
    check_timestep_hashes();
    check_k21_img2img();
    return kt_finish("test_sched");
}
