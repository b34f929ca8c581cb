/* What the three kd_sched kinds (DDPM, DDIM, UnCLIP) share: config parsing, the beta schedules,
 * set_timesteps, add_noise, dynamic thresholding and step argument checks. The kinds' steps
 * (ddpm.c, ddim.c, unclip.c) depend on this file only; step.c dispatches to them.
 *
 * float32 throughout where diffusers computes in float32 torch tensors; this file is built as
 * ISO C11 (no FMA contraction), and the few places where torch's compiled kernels do contract
 * (linspace, lerp in quantile) use explicit fmaf(). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/internal.h"

#define KD_SCHED_MAX_TRAIN_TIMESTEPS (1 << 20)

/* ------------------------------------------------------------------------------------------------
 * config */

const char *kd_sched_kind_name(kd_sched_kind k) {
    switch (k) {
    case KD_SCHED_DDPM: return "DDPMScheduler";
    case KD_SCHED_DDIM: return "DDIMScheduler";
    case KD_SCHED_UNCLIP: return "UnCLIPScheduler";
    default: return "auto";
    }
}

void kd_sched_config_default(kd_sched_kind kind, kd_sched_config *c) {
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->num_train_timesteps = 1000;
    c->beta_start = 0.0001;
    c->beta_end = 0.02;
    c->beta_schedule = kind == KD_SCHED_UNCLIP ? KD_BETA_SQUAREDCOS_CAP_V2 : KD_BETA_LINEAR;
    c->variance_type = kind == KD_SCHED_UNCLIP ? KD_VAR_FIXED_SMALL_LOG : KD_VAR_FIXED_SMALL;
    c->clip_sample = 1;
    c->clip_sample_range = 1.0;
    c->prediction_type = KD_PRED_EPSILON;
    c->thresholding = 0;
    c->dynamic_thresholding_ratio = 0.995;
    c->sample_max_value = 1.0;
    c->timestep_spacing = KD_SPACING_LEADING;
    c->steps_offset = 0;
    c->set_alpha_to_one = 1;
}

static const char *origin_of(const kd_config *cfg) { return cfg->origin ? cfg->origin : "scheduler config"; }

/* A boolean key: absent → def; null → false (diffusers passes None, which is falsy). */
kd_status kd_sched__get_bool(const kd_config *cfg, const char *key, int def, int *out, kd_err *e) {
    const cJSON *it = kd_config_get(cfg, key);
    if (it && cJSON_IsNull(it)) {
        *out = 0;
        return KD_OK;
    }
    return kd_config_bool_or(cfg, key, def, out, e);
}

kd_status kd_sched__get_int(const kd_config *cfg, const char *key, int def, int64_t lo, int64_t hi, int *out,
                            kd_err *e) {
    int64_t v;
    KD_TRY(kd_config_int_or(cfg, key, def, &v, e));
    if (v < lo || v > hi)
        return kd_errf(e, KD_ERR_FORMAT, "%s: key '%s' is %lld, expected %lld..%lld", origin_of(cfg), key, (long long)v,
                       (long long)lo, (long long)hi);
    *out = (int)v;
    return KD_OK;
}

/* A string key mapped to an enum: names[i] ↔ value i; NULL names are not accepted. */
kd_status kd_sched__get_enum(const kd_config *cfg, const char *key, const char *const *names, int count, int def,
                             int *out, kd_err *e) {
    const char *v;
    KD_TRY(kd_config_str_or(cfg, key, NULL, &v, e));
    if (!v) {
        *out = def;
        return KD_OK;
    }
    char list[256] = "";
    for (int i = 0; i < count; i++) {
        if (!names[i]) continue;
        if (strcmp(v, names[i]) == 0) {
            *out = i;
            return KD_OK;
        }
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s'%s'", l ? ", " : "", names[i]);
    }
    return kd_errf(e, KD_ERR_FORMAT, "%s: key '%s' is '%.64s', expected one of %s", origin_of(cfg), key, v, list);
}

kd_status kd_sched_config_parse(const kd_config *cfg, kd_sched_kind kind, kd_sched_config *out, kd_err *e) {
    if (!cfg || !cfg->root || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_config_parse: NULL argument");
    const char *origin = cfg->origin ? cfg->origin : "scheduler config";
    if (kind == KD_SCHED_AUTO) {
        const char *cls;
        kd_status st = kd_config_str(cfg, "_class_name", &cls, e);
        if (st == KD_ERR_NOT_FOUND)
            return kd_errf(e, KD_ERR_NOT_FOUND, "%s: no '_class_name' to tell the scheduler kind", origin);
        KD_TRY(st);
        if (strcmp(cls, "DDPMScheduler") == 0) kind = KD_SCHED_DDPM;
        else if (strcmp(cls, "DDIMScheduler") == 0) kind = KD_SCHED_DDIM;
        else if (strcmp(cls, "UnCLIPScheduler") == 0) kind = KD_SCHED_UNCLIP;
        else
            return kd_errf(e, KD_ERR_UNSUPPORTED,
                           "%s: scheduler class '%.64s' is not supported (DDPMScheduler, DDIMScheduler, "
                           "UnCLIPScheduler)", origin, cls);
    } else if (kind != KD_SCHED_DDPM && kind != KD_SCHED_DDIM && kind != KD_SCHED_UNCLIP) {
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_config_parse: bad scheduler kind %d", (int)kind);
    }
    kd_sched_config c;
    kd_sched_config_default(kind, &c);
    int v;

    KD_TRY(kd_sched__get_int(cfg, "num_train_timesteps", 1000, 1, KD_SCHED_MAX_TRAIN_TIMESTEPS, &c.num_train_timesteps, e));
    KD_TRY(kd_sched__get_bool(cfg, "clip_sample", c.clip_sample, &c.clip_sample, e));
    KD_TRY(kd_config_float_or(cfg, "clip_sample_range", c.clip_sample_range, &c.clip_sample_range, e));

    static const char *const pred_names[] = {"epsilon", "sample", "v_prediction"};
    int npred = kind == KD_SCHED_UNCLIP ? 2 : 3; /* UnCLIP has no v_prediction */
    KD_TRY(kd_sched__get_enum(cfg, "prediction_type", pred_names, npred, KD_PRED_EPSILON, &v, e));
    c.prediction_type = (kd_prediction_type)v;

    static const char *const beta_names[] = {"linear", "scaled_linear", "squaredcos_cap_v2"};
    const char *bs;
    KD_TRY(kd_config_str_or(cfg, "beta_schedule", NULL, &bs, e));
    if (bs && (strcmp(bs, "sigmoid") == 0 || strcmp(bs, "laplace") == 0) && kind == KD_SCHED_DDPM)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: beta_schedule '%s' is not supported (linear, scaled_linear, "
                       "squaredcos_cap_v2)", origin, bs);
    if (kind == KD_SCHED_UNCLIP) {
        if (bs && strcmp(bs, "squaredcos_cap_v2") != 0)
            return kd_errf(e, KD_ERR_FORMAT, "%s: UnCLIPScheduler only supports beta_schedule 'squaredcos_cap_v2', "
                           "not '%.64s'", origin, bs);
        c.beta_schedule = KD_BETA_SQUAREDCOS_CAP_V2;
    } else {
        KD_TRY(kd_sched__get_enum(cfg, "beta_schedule", beta_names, 3, KD_BETA_LINEAR, &v, e));
        c.beta_schedule = (kd_beta_schedule)v;
        KD_TRY(kd_config_float_or(cfg, "beta_start", c.beta_start, &c.beta_start, e));
        KD_TRY(kd_config_float_or(cfg, "beta_end", c.beta_end, &c.beta_end, e));
        const cJSON *tb = kd_config_get(cfg, "trained_betas");
        if (tb && !cJSON_IsNull(tb)) {
            if (!cJSON_IsArray(tb))
                return kd_errf(e, KD_ERR_FORMAT, "%s: key 'trained_betas' is %s, expected an array of numbers or null",
                               origin, kd_json_kind(tb));
            c.beta_schedule = KD_BETA_TRAINED;
        }
        KD_TRY(kd_sched__get_bool(cfg, "thresholding", 0, &c.thresholding, e));
        KD_TRY(kd_config_float_or(cfg, "dynamic_thresholding_ratio", c.dynamic_thresholding_ratio,
                                  &c.dynamic_thresholding_ratio, e));
        KD_TRY(kd_config_float_or(cfg, "sample_max_value", c.sample_max_value, &c.sample_max_value, e));
        static const char *const spacing_names[] = {"leading", "trailing", "linspace"};
        KD_TRY(kd_sched__get_enum(cfg, "timestep_spacing", spacing_names, 3, KD_SPACING_LEADING, &v, e));
        c.timestep_spacing = (kd_timestep_spacing)v;
        KD_TRY(kd_sched__get_int(cfg, "steps_offset", 0, -KD_SCHED_MAX_TRAIN_TIMESTEPS, KD_SCHED_MAX_TRAIN_TIMESTEPS,
                       &c.steps_offset, e));
        int rescale;
        KD_TRY(kd_sched__get_bool(cfg, "rescale_betas_zero_snr", 0, &rescale, e));
        if (rescale)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: rescale_betas_zero_snr true is not supported", origin);
        if (c.thresholding && !(c.dynamic_thresholding_ratio >= 0.0 && c.dynamic_thresholding_ratio <= 1.0))
            return kd_errf(e, KD_ERR_FORMAT, "%s: dynamic_thresholding_ratio %g is outside [0, 1]", origin,
                           c.dynamic_thresholding_ratio);
        if (c.thresholding && c.sample_max_value < 1.0)
            return kd_errf(e, KD_ERR_FORMAT, "%s: sample_max_value %g is below 1 (torch.clamp(min=1, max=%g))",
                           origin, c.sample_max_value, c.sample_max_value);
    }
    if (kind == KD_SCHED_DDPM) {
        static const char *const var_names[] = {"fixed_small", "fixed_small_log", "fixed_large", "learned",
                                                "learned_range"};
        const char *vt;
        KD_TRY(kd_config_str_or(cfg, "variance_type", NULL, &vt, e));
        if (vt && strcmp(vt, "fixed_large_log") == 0)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: variance_type 'fixed_large_log' is not supported (diffusers' "
                           "DDPMScheduler.step takes the square root of log(beta) and returns NaN)", origin);
        KD_TRY(kd_sched__get_enum(cfg, "variance_type", var_names, 5, KD_VAR_FIXED_SMALL, &v, e));
        c.variance_type = (kd_variance_type)v;
    } else if (kind == KD_SCHED_UNCLIP) {
        static const char *const var_names[] = {NULL, "fixed_small_log", NULL, NULL, "learned_range"};
        KD_TRY(kd_sched__get_enum(cfg, "variance_type", var_names, 5, KD_VAR_FIXED_SMALL_LOG, &v, e));
        c.variance_type = (kd_variance_type)v;
    } else {
        KD_TRY(kd_sched__get_bool(cfg, "set_alpha_to_one", 1, &c.set_alpha_to_one, e));
    }
    *out = c;
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * schedule */

/* torch.linspace(start, end, n, dtype=float32) on x86-64: step in float, then start + step·i for
 * the first half and end - step·(n - 1 - i) for the rest, each contracted to one FMA by the
 * compiler that built torch's kernel (verified bit for bit against torch 2.11). */
static void linspace_f32(double start_d, double end_d, int n, float *out) {
    float start = (float)start_d, end = (float)end_d;
    if (n == 1) {
        out[0] = start;
        return;
    }
    float step = (end - start) / (float)(n - 1);
    int half = n / 2;
    for (int i = 0; i < n; i++)
        out[i] = i < half ? fmaf(step, (float)i, start) : fmaf(-step, (float)(n - 1 - i), end);
}

/* diffusers' betas_for_alpha_bar (cosine): float64 Python math, then a float32 tensor. */
static double alpha_bar_cos(double t) {
    return pow(cos((t + 0.008) / 1.008 * 3.141592653589793 / 2), 2.0);
}

static void alphas_from_betas(const float *betas, int n, float *alphas, float *cumprod) {
    double acc = 1.0; /* torch's CPU cumprod accumulates float32 in double */
    for (int i = 0; i < n; i++) {
        alphas[i] = 1.0f - betas[i];
        acc *= (double)alphas[i];
        cumprod[i] = (float)acc;
    }
}

kd_status kd_sched_create(const kd_sched_config *cfg, const double *trained_betas, kd_sched **out, kd_err *e) {
    if (!cfg || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_create: NULL argument");
    *out = NULL;
    if (cfg->kind != KD_SCHED_DDPM && cfg->kind != KD_SCHED_DDIM && cfg->kind != KD_SCHED_UNCLIP)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_create: bad scheduler kind %d", (int)cfg->kind);
    int T = cfg->num_train_timesteps;
    if (T < 1 || T > KD_SCHED_MAX_TRAIN_TIMESTEPS)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_create: num_train_timesteps %d out of range", T);
    if (cfg->beta_schedule == KD_BETA_TRAINED && !trained_betas)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_create: trained_betas schedule without values");
    kd_sched *s = calloc(1, sizeof *s);
    if (!s) return kd_errf(e, KD_ERR_OOM, "scheduler: out of memory");
    s->cfg = *cfg;
    s->betas = malloc((size_t)T * sizeof(float));
    s->alphas = malloc((size_t)T * sizeof(float));
    s->alphas_cumprod = malloc((size_t)T * sizeof(float));
    if (!s->betas || !s->alphas || !s->alphas_cumprod) {
        kd_sched_free(s);
        return kd_errf(e, KD_ERR_OOM, "scheduler: out of memory for %d timesteps", T);
    }
    switch (cfg->beta_schedule) {
    case KD_BETA_LINEAR: linspace_f32(cfg->beta_start, cfg->beta_end, T, s->betas); break;
    case KD_BETA_SCALED_LINEAR:
        linspace_f32(pow(cfg->beta_start, 0.5), pow(cfg->beta_end, 0.5), T, s->betas);
        for (int i = 0; i < T; i++) s->betas[i] = s->betas[i] * s->betas[i];
        break;
    case KD_BETA_SQUAREDCOS_CAP_V2:
        for (int i = 0; i < T; i++) {
            double t1 = (double)i / T, t2 = (double)(i + 1) / T;
            double b = 1 - alpha_bar_cos(t2) / alpha_bar_cos(t1);
            s->betas[i] = (float)(b < 0.999 ? b : 0.999);
        }
        break;
    case KD_BETA_TRAINED:
        for (int i = 0; i < T; i++) s->betas[i] = (float)trained_betas[i];
        break;
    }
    alphas_from_betas(s->betas, T, s->alphas, s->alphas_cumprod);
    s->final_alpha_cumprod = cfg->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
    *out = s;
    return KD_OK;
}

kd_status kd_sched_from_config(const kd_config *cfg, kd_sched_kind kind, kd_sched **out, kd_err *e) {
    if (!out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_from_config: NULL argument");
    *out = NULL;
    kd_sched_config c;
    KD_TRY(kd_sched_config_parse(cfg, kind, &c, e));
    double *tb = NULL;
    if (c.beta_schedule == KD_BETA_TRAINED) {
        int n = 0;
        tb = malloc((size_t)c.num_train_timesteps * sizeof(double) + 1);
        if (!tb) return kd_errf(e, KD_ERR_OOM, "scheduler: out of memory");
        kd_status st = kd_config_float_array(cfg, "trained_betas", tb, c.num_train_timesteps, &n, e);
        if (st == KD_OK && n != c.num_train_timesteps)
            st = kd_errf(e, KD_ERR_FORMAT, "%s: 'trained_betas' has %d values, num_train_timesteps is %d",
                         cfg->origin, n, c.num_train_timesteps);
        if (st != KD_OK) {
            free(tb);
            return st;
        }
    }
    kd_status st = kd_sched_create(&c, tb, out, e);
    free(tb);
    return st;
}

kd_status kd_sched_load(const char *path, kd_sched_kind kind, kd_sched **out, kd_err *e) {
    if (!path || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_load: NULL argument");
    *out = NULL;
    kd_config cfg = {0};
    KD_TRY(kd_config_load(path, &cfg, e));
    kd_status st = kd_sched_from_config(&cfg, kind, out, e);
    kd_config_free(&cfg);
    return st;
}

void kd_sched_free(kd_sched *s) {
    if (!s) return;
    free(s->betas);
    free(s->alphas);
    free(s->alphas_cumprod);
    free(s->timesteps);
    free(s->scratch);
    free(s);
}

const kd_sched_config *kd_sched_get_config(const kd_sched *s) { return s ? &s->cfg : NULL; }
const float *kd_sched_betas(const kd_sched *s) { return s ? s->betas : NULL; }
const float *kd_sched_alphas_cumprod(const kd_sched *s) { return s ? s->alphas_cumprod : NULL; }
float kd_sched_init_noise_sigma(const kd_sched *s) {
    (void)s;
    return 1.0f;
}

/* ------------------------------------------------------------------------------------------------
 * timesteps (numpy float64 rules; np.round is round-half-even = rint) */

kd_status kd_sched_set_timesteps(kd_sched *s, int n, kd_err *e) {
    if (!s) return kd_errf(e, KD_ERR_INVALID_ARG, "set_timesteps: NULL scheduler");
    const kd_sched_config *c = &s->cfg;
    const int T = c->num_train_timesteps;
    const char *name = kd_sched_kind_name(c->kind);
    if (n < 1)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.set_timesteps: num_inference_steps must be at least 1, got %d",
                       name, n);
    if (n > T)
        return kd_errf(e, KD_ERR_INVALID_ARG,
                       "%s.set_timesteps: num_inference_steps %d exceeds num_train_timesteps %d", name, n, T);
    if (c->kind == KD_SCHED_UNCLIP && n < 2)
        return kd_errf(e, KD_ERR_INVALID_ARG,
                       "UnCLIPScheduler.set_timesteps: num_inference_steps must be at least 2 (its spacing divides "
                       "by num_inference_steps - 1)");
    int64_t *ts = malloc(((size_t)n + 1) * sizeof *ts);
    if (!ts) return kd_errf(e, KD_ERR_OOM, "set_timesteps: out of memory");
    int len = n;
    if (c->kind == KD_SCHED_UNCLIP) {
        double ratio = (double)(T - 1) / (double)(n - 1);
        for (int i = 0; i < n; i++) ts[n - 1 - i] = (int64_t)rint((double)i * ratio);
    } else if (c->timestep_spacing == KD_SPACING_LEADING) {
        int64_t ratio = T / n;
        for (int i = 0; i < n; i++) ts[n - 1 - i] = (int64_t)i * ratio + c->steps_offset;
    } else if (c->timestep_spacing == KD_SPACING_LINSPACE) {
        /* np.linspace(0, T - 1, n): i · step, the last one exactly T - 1 */
        double step = n > 1 ? (double)(T - 1) / (double)(n - 1) : 0.0;
        for (int i = 0; i < n; i++) {
            double y = i == n - 1 && n > 1 ? (double)(T - 1) : (double)i * step;
            ts[n - 1 - i] = (int64_t)rint(y);
        }
    } else {
        /* np.round(np.arange(T, 0, -T / n)) - 1. arange's length is ceil((0 - T) / step), which
         * floating point can make n + 1; its values are start, start + step, then
         * start + i · ((start + step) - start). */
        double step = -((double)T / (double)n);
        double lenf = ceil((0.0 - (double)T) / step);
        len = (int)lenf;
        if (len > n + 1 || len < 1) len = n; /* cannot happen for 1 <= n <= T; stay in bounds */
        double v0 = (double)T, v1 = v0 + step, delta = v1 - v0;
        for (int i = 0; i < len; i++) {
            double v = i == 0 ? v0 : i == 1 ? v1 : v0 + (double)i * delta;
            ts[i] = (int64_t)rint(v) - 1;
        }
    }
    for (int i = 0; i < len; i++) {
        if (ts[i] < 0 || ts[i] >= T) {
            kd_status st;
            if (len != n)
                st = kd_errf(e, KD_ERR_UNSUPPORTED,
                             "%s.set_timesteps: 'trailing' spacing with %d steps of %d gives %d timesteps ending in "
                             "%lld (numpy arange rounding; diffusers would index alphas_cumprod[-1]); choose another "
                             "step count", name, n, T, len, (long long)ts[len - 1]);
            else
                st = kd_errf(e, KD_ERR_INVALID_ARG,
                             "%s.set_timesteps: %d steps give timestep %lld outside [0, %d) (steps_offset %d)", name,
                             n, (long long)ts[i], T, c->steps_offset);
            free(ts);
            return st;
        }
    }
    free(s->timesteps);
    s->timesteps = ts;
    s->n_timesteps = len;
    s->num_inference_steps = n;
    return KD_OK;
}

int kd_sched_num_timesteps(const kd_sched *s) { return s ? s->n_timesteps : 0; }
const int64_t *kd_sched_timesteps(const kd_sched *s) { return s ? s->timesteps : NULL; }
int kd_sched_num_inference_steps(const kd_sched *s) { return s ? s->num_inference_steps : 0; }

kd_status kd_sched_img2img_start(const kd_sched *s, double strength, int *start, int *count, kd_err *e) {
    if (!s || !start || !count) return kd_errf(e, KD_ERR_INVALID_ARG, "img2img_start: NULL argument");
    if (!s->timesteps) return kd_errf(e, KD_ERR_INVALID_ARG, "img2img_start: call set_timesteps first");
    if (!(strength >= 0.0 && strength <= 1.0))
        return kd_errf(e, KD_ERR_INVALID_ARG, "img2img strength must be in [0, 1], got %g", strength);
    int n = s->num_inference_steps;
    int init = (int)((double)n * strength); /* Python int(): truncation */
    if (init > n) init = n;
    int t_start = n - init;
    if (t_start < 0) t_start = 0;
    if (t_start > s->n_timesteps) t_start = s->n_timesteps;
    *start = t_start;
    *count = s->n_timesteps - t_start;
    return KD_OK;
}

kd_status kd_sched_set_eta(kd_sched *s, double eta, int use_clipped_model_output, kd_err *e) {
    if (!s) return kd_errf(e, KD_ERR_INVALID_ARG, "set_eta: NULL scheduler");
    if (s->cfg.kind != KD_SCHED_DDIM)
        return kd_errf(e, KD_ERR_INVALID_ARG, "eta is a DDIMScheduler.step argument; this is %s",
                       kd_sched_kind_name(s->cfg.kind));
    if (!isfinite(eta)) return kd_errf(e, KD_ERR_INVALID_ARG, "DDIM eta must be finite");
    s->eta = eta;
    s->use_clipped_model_output = use_clipped_model_output ? 1 : 0;
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * add_noise */

static void add_noise_with(const float *alphas_cumprod, const float *original, const float *noise, size_t n,
                           int64_t t, float *out) {
    float a = alphas_cumprod[t];
    float sa = sqrtf(a), sb = sqrtf(1.0f - a);
    for (size_t i = 0; i < n; i++) {
        float x = sa * original[i];
        float y = sb * noise[i];
        out[i] = x + y;
    }
}

kd_status kd_sched_add_noise(const kd_sched *s, const float *original, const float *noise, size_t n, int64_t t,
                             float *out, kd_err *e) {
    if (!s || (n && (!original || !noise || !out))) return kd_errf(e, KD_ERR_INVALID_ARG, "add_noise: NULL argument");
    if (t < 0 || t >= s->cfg.num_train_timesteps)
        return kd_errf(e, KD_ERR_INVALID_ARG, "add_noise: timestep %lld outside [0, %d)", (long long)t,
                       s->cfg.num_train_timesteps);
    add_noise_with(s->alphas_cumprod, original, noise, n, t, out);
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * shared step parts */

kd_status kd_sched__prepare(kd_sched *s, const float *model_output, int64_t model_channels, int64_t t,
                            const float *sample, const kd_sched_shape *shape, int split_variance, float *prev_sample,
                            float *pred_original, kd_sched_step_args *a, kd_err *e) {
    const char *name = kd_sched_kind_name(s->cfg.kind);
    if (!model_output || !sample || !shape || !prev_sample)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.step: NULL argument", name);
    if (shape->batch < 1 || shape->channels < 1 || shape->inner < 1)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.step: bad sample shape [%lld, %lld, %lld]", name,
                       (long long)shape->batch, (long long)shape->channels, (long long)shape->inner);
    if (t < 0 || t >= s->cfg.num_train_timesteps)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.step: timestep %lld outside [0, %d)", name, (long long)t,
                       s->cfg.num_train_timesteps);
    const int64_t lim = INT64_C(1) << 40;
    if (shape->batch > lim / shape->channels || shape->batch * shape->channels > lim / shape->inner)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.step: sample too large", name);
    if (model_channels == 2 * shape->channels && split_variance) {
        a->pred_var = model_output + shape->channels * shape->inner;
    } else if (model_channels == shape->channels) {
        a->pred_var = NULL;
    } else {
        return kd_errf(e, KD_ERR_SHAPE,
                       "%s.step: model_output has %lld channels for a sample of %lld; expected %lld%s", name,
                       (long long)model_channels, (long long)shape->channels, (long long)shape->channels,
                       split_variance ? " or twice that (predicted variance)" : "");
    }
    if (split_variance && !a->pred_var)
        return kd_errf(e, KD_ERR_SHAPE,
                       "%s.step: a learned variance type needs model_output with 2 x %lld channels (prediction, then "
                       "variance), got %lld", name, (long long)shape->channels, (long long)model_channels);
    a->model_output = model_output;
    a->mo_batch_stride = model_channels * shape->inner;
    a->sample = sample;
    a->batch = shape->batch;
    a->channels = shape->channels;
    a->inner = shape->inner;
    a->n = (size_t)(shape->batch * shape->channels * shape->inner);
    a->out = prev_sample;
    size_t row = (size_t)(shape->channels * shape->inner);
    size_t need = 2 * a->n + row;
    if (need > s->scratch_cap) {
        float *p = realloc(s->scratch, need * sizeof(float));
        if (!p) return kd_errf(e, KD_ERR_OOM, "%s.step: out of memory for %zu scratch floats", name, need);
        s->scratch = p;
        s->scratch_cap = need;
    }
    a->x0 = pred_original ? pred_original : s->scratch;
    a->noise = s->scratch + a->n;
    a->sel = s->scratch + 2 * a->n;
    return KD_OK;
}

void kd_sched__clip(float *x, size_t n, double range) {
    float hi = (float)range, lo = -hi; /* torch.clamp casts the Python bounds to float32 */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        if (v < lo) v = lo;
        if (v > hi) v = hi;
        x[i] = v;
    }
}

/* k-th smallest (0-based) of v[0..n), reordering v so that everything after index k is >= v[k]
 * (Hoare partition quickselect, median-of-three pivot). No NaN in v. */
static float select_kth(float *v, ptrdiff_t n, ptrdiff_t k) {
    ptrdiff_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float x = v[lo], y = v[lo + (hi - lo) / 2], z = v[hi];
        float pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) {
                float tmp = v[i];
                v[i] = v[j];
                v[j] = tmp;
                i++;
                j--;
            }
        }
        /* v[lo..j] <= pivot <= v[i..hi]; anything between equals the pivot */
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

/* diffusers _threshold_sample: per batch row, s = quantile(|x0|, ratio) (torch: rank in float32,
 * linear interpolation with torch's lerp), clamped to [1, sample_max_value]; x0 = clamp(x0, -s, s) / s. */
void kd_sched__threshold(const kd_sched *s, const kd_sched_step_args *a) {
    size_t row = (size_t)(a->channels * a->inner);
    float q = (float)s->cfg.dynamic_thresholding_ratio;
    float smax = (float)s->cfg.sample_max_value;
    for (int64_t b = 0; b < a->batch; b++) {
        float *x = a->x0 + (size_t)b * row;
        int has_nan = 0;
        for (size_t i = 0; i < row; i++) {
            a->sel[i] = fabsf(x[i]);
            if (isnan(x[i])) has_nan = 1;
        }
        float th;
        if (has_nan) {
            th = NAN; /* torch.quantile of a row with NaN is NaN */
        } else {
            float rank = q * (float)(row - 1);
            size_t below = (size_t)rank;
            size_t above = (size_t)ceilf(rank);
            if (above > row - 1) above = row - 1;
            float w = rank - (float)below;
            float vb = select_kth(a->sel, (ptrdiff_t)row, (ptrdiff_t)below), va = vb;
            if (above != below) { /* the next order statistic: the least of what lies above */
                va = INFINITY;
                for (size_t i = below + 1; i < row; i++)
                    if (a->sel[i] < va) va = a->sel[i];
            }
            float d = va - vb;
            th = fabsf(w) < 0.5f ? fmaf(w, d, vb) : fmaf(-d, 1.0f - w, va);
            if (th < 1.0f) th = 1.0f;
            if (th > smax) th = smax;
        }
        for (size_t i = 0; i < row; i++) {
            float v = x[i];
            if (isnan(th)) {
                v = NAN;
            } else {
                if (v < -th) v = -th;
                if (v > th) v = th;
            }
            x[i] = v / th;
        }
    }
}
