/* UniPCMultistepScheduler (diffusers 0.42, scheduling_unipc_multistep.py) as the sampler "unipc":
 * the UniP predictor with the UniC corrector in their B(h) forms (solver_type "bh2", the default, or
 * "bh1"), on the data prediction (predict_x0 true, the default) or the noise prediction.
 *
 * What the class does, and so what this file does:
 *   set_timesteps(n)  timesteps by timestep_spacing (linspace, the class default; leading; trailing,
 *                     which numpy's arange can make n + 1 long, ending in -1, as diffusers keeps it),
 *                     then sigmas = sqrt((1 - ᾱ) / ᾱ) (float32 torch) at those timesteps (np.interp:
 *                     a lookup, clamped at the ends) and a final sigma (0 or sigma_min); or, with
 *                     use_karras_sigmas, Karras sigmas (float64 numpy) and the timesteps
 *                     _sigma_to_t finds for them (rounded);
 *   step(i)           x0 (or ε) from the model output (thresholded if asked); for i > 0 the
 *                     corrector first rewrites the sample from the previous step's sample and the
 *                     model outputs; then the predictor of order min(solver_order, steps done + 1)
 *                     (and, with lower_order_final, ≤ the steps left) goes to sigmas[i + 1];
 *   add_noise(i)      α(σ)·x + σ_t(σ)·noise at σ = sigmas[index_for_timestep(timesteps[i])] (the index
 *                     diffusers finds for a timestep: the second of duplicates, which only Karras
 *                     lists have).
 * The history (model outputs, the sample before the last predictor, the order warm-up) starts over
 * whenever step is not called at the index after the previous call: a run may start anywhere
 * (img2img), as diffusers' would after set_timesteps. The variance half of a learned-variance model
 * output is not read (the Kandinsky pipelines drop it before step; UniPC does not split it).
 *
 * Numerics: diffusers' float32 torch operations one by one (0-dim tensors for the coefficients),
 * numpy float64 for the timesteps and Karras sigmas. Three of the torch functions are not plain
 * IEEE operations on x86 CPUs:
 *   torch.expm1  is SLEEF's Sleef_expm1f16_u10 (vec512 / vec256): emulated below operation for
 *                operation (its double-float arithmetic with FMAs), bit-exact with torch 2.11;
 *   torch.log    is Intel MKL's vsLn (torch's VML path; not SLEEF), a proprietary routine that
 *                differs from the correctly rounded logarithm in ~8% of inputs (by 1 ulp);
 *   torch.sqrt   (and x ** 0.5) is MKL's vsSqrt, which on the AMD machine the references come from
 *                is not correctly rounded either (1 ulp in ~17% of inputs; Intel's may well be).
 * Here log and sqrt are the correctly rounded ones. The sigmas (hence α, σ_t) can then differ from
 * torch's by an ulp or two and λ = log α − log σ_t by an ulp, which moves a sample by ~1e-6 of its
 * range (tests/test_sampler_unipc.c). Ill-conditioned corners magnify that: predict_x0 false from
 * t = 999 of the cosine schedule (α = 5e-5) cancels terms ~600 times the result. Karras' log σ_train
 * is numpy's float32 log in diffusers, the correctly rounded one here: it only moves _sigma_to_t's
 * interpolation weight by an ulp, before the timesteps are rounded to integers.
 * Dynamic thresholding is DDPMScheduler's (kd_sched__threshold: the same _threshold_sample).
 * torch.linalg.solve (orders ≥ 2 of the corrector, ≥ 3 of the predictor) is MKL's sgesv: LU with
 * partial pivoting, the column scaled by the pivot's reciprocal, then the triangular solves; the
 * order written below matches it bit for bit for the 2 × 2 systems of solver_order 2 (and 9 in 10 of
 * the 3 × 3 of solver_order 3; this file accepts solver_order 1 to 3). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/internal.h"
#include "sched/sampler.h"

#define UNIPC_MAX_ORDER 3
#define UNIPC_MAX_DISABLED 4096

typedef struct unipc {
    /* config */
    int T;
    float *sigmas_train;           /* [T] ((1 - ᾱ) / ᾱ) ** 0.5, float32 */
    kd_prediction_type prediction_type;
    int thresholding;
    double dynamic_thresholding_ratio, sample_max_value;
    int predict_x0, bh1, solver_order, lower_order_final;
    int64_t *disable_corrector;
    int n_disable;
    int karras, has_sigma_min, has_sigma_max;
    double sigma_min, sigma_max;
    kd_timestep_spacing spacing;
    int steps_offset;
    int final_sigma_min;           /* final_sigmas_type "sigma_min" (else "zero") */
    /* set_timesteps */
    float *sigmas;                 /* [num_timesteps + 1] */
    /* the run */
    int64_t batch, channels, inner;
    size_t n, row;
    float *buf;                    /* (solver_order + 2) · n + row floats */
    float *mo[UNIPC_MAX_ORDER];    /* model_outputs (converted), oldest first */
    float *spare, *last, *sel;     /* next conversion, last_sample, thresholding scratch */
    int has_last, lower_order_nums, this_order, next;
} unipc;

/* ------------------------------------------------------------------------------------------------
 * torch's expm1 (SLEEF xexpm1f, AVX-512F / AVX2 build: FMA) and log */

typedef struct df2 {
    float x, y;
} df2;

static df2 df_make(float x, float y) {
    df2 r = {x, y};
    return r;
}
static df2 dfadd2_df_f(df2 x, float y) {
    float s = x.x + y, v = s - x.x;
    float t = (x.x - (s - v)) + (y - v);
    return df_make(s, t + x.y);
}
static df2 dfadd2_df_df(df2 x, df2 y) {
    float s = x.x + y.x, v = s - x.x;
    float t = (x.x - (s - v)) + (y.x - v);
    return df_make(s, t + (x.y + y.y));
}
static df2 dfadd_f_df(float x, df2 y) {
    float s = x + y.x;
    return df_make(s, ((x - s) + y.x) + y.y);
}
static df2 dfmul_df_f(df2 x, float y) {
    float s = x.x * y;
    return df_make(s, fmaf(x.y, y, fmaf(x.x, y, -s)));
}
static df2 dfmul_df_df(df2 x, df2 y) {
    float s = x.x * y.x;
    return df_make(s, fmaf(x.x, y.y, fmaf(x.y, y.x, fmaf(x.x, y.x, -s))));
}
static df2 dfsqu(df2 x) {
    float s = x.x * x.x;
    return df_make(s, fmaf(x.x + x.x, x.y, fmaf(x.x, x.x, -s)));
}
/* SLEEF's vldexp2: two exact power-of-two products */
static float ldexp2f_k(float d, int e) {
    return (d * ldexpf(1.0f, e >> 1)) * ldexpf(1.0f, e - (e >> 1));
}

static df2 expk2f(df2 d) {
    float u = (d.x + d.y) * 1.442695040888963407359924681001892137426645954152985934135449406931f;
    int q = (int)rintf(u); /* cvtps2dq: round to nearest even */
    df2 s = dfadd2_df_f(d, (float)q * -0.693145751953125f);
    s = dfadd2_df_f(s, (float)q * -1.428606765330187045e-06f);
    u = 0.1980960224e-3f;
    u = fmaf(u, s.x, 0.1394256484e-2f);
    u = fmaf(u, s.x, 0.8333456703e-2f);
    u = fmaf(u, s.x, 0.4166637361e-1f);
    df2 t = dfadd2_df_f(dfmul_df_f(s, u), 0.166666659414234244790680580464e+0f);
    t = dfadd2_df_f(dfmul_df_df(s, t), 0.5f);
    t = dfadd2_df_df(s, dfmul_df_df(dfsqu(s), t));
    t = dfadd_f_df(1.0f, t);
    t.x = ldexp2f_k(t.x, q);
    t.y = ldexp2f_k(t.y, q);
    if (d.x < -104.0f) t.x = t.y = 0.0f;
    return t;
}

static float torch_expm1f(float a) {
    if (isnan(a)) return a;
    if (a > 88.72283172607421875f) return INFINITY;
    if (a < -16.635532333438687426013570f) return -1.0f;
    if (a == 0.0f) return a; /* ±0 */
    df2 d = dfadd2_df_f(expk2f(df_make(a, 0.0f)), -1.0f);
    return d.x + d.y;
}

/* MKL's vsLn is not reproduced (see the top): the correctly rounded logarithm. */
static float torch_logf(float x) { return (float)log((double)x); }

/* ------------------------------------------------------------------------------------------------
 * config */

/* A number key that may be null (None): *has = 0 then. */
static kd_status get_opt_float(const kd_config *cfg, const char *key, int *has, double *out, kd_err *e) {
    const cJSON *it = kd_config_get(cfg, key);
    *has = 0;
    if (!it || cJSON_IsNull(it)) return KD_OK;
    KD_TRY(kd_config_float(cfg, key, out, e));
    *has = 1;
    return KD_OK;
}

static kd_status refuse_true(const kd_config *cfg, const char *key, const char *why, kd_err *e) {
    int v;
    KD_TRY(kd_sched__get_bool(cfg, key, 0, &v, e));
    if (v) return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: %s true is not supported%s", cfg->origin, key, why);
    return KD_OK;
}

/* The training schedule from the keys UniPC shares with DDPMScheduler only (so that a key of another
 * class, e.g. a mistyped clip_sample, cannot fail here as it would not in diffusers). */
static kd_status train_alphas(const kd_config *cfg, int *T, float **alphas_cumprod, kd_err *e) {
    static const char *const keys[] = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                                       "trained_betas"};
    cJSON *obj = cJSON_CreateObject();
    if (!obj) return kd_errf(e, KD_ERR_OOM, "unipc: out of memory");
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const cJSON *it = kd_config_get(cfg, keys[k]);
        if (!it) continue;
        cJSON *dup = cJSON_Duplicate(it, 1);
        if (!dup || !cJSON_AddItemToObject(obj, keys[k], dup)) {
            cJSON_Delete(dup);
            cJSON_Delete(obj);
            return kd_errf(e, KD_ERR_OOM, "unipc: out of memory");
        }
    }
    kd_config sub = {cfg->origin, obj};
    float *betas = NULL;
    kd_status st = kd_sampler_train_schedule(&sub, T, &betas, alphas_cumprod, e);
    free(betas);
    cJSON_Delete(obj);
    return st;
}

static void unipc_destroy(kd_sampler *s) {
    unipc *u = s->impl;
    if (!u) return;
    free(u->sigmas_train);
    free(u->disable_corrector);
    free(u->sigmas);
    free(u->buf);
    free(u);
    s->impl = NULL;
}

static kd_status unipc_parse(unipc *u, const kd_config *cfg, kd_err *e) {
    const char *origin = cfg->origin ? cfg->origin : "scheduler config";
    int v;

    KD_TRY(kd_sched__get_int(cfg, "solver_order", 2, 1, 1 << 20, &u->solver_order, e));
    if (u->solver_order > UNIPC_MAX_ORDER)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: solver_order %d is not supported (1 to %d)", origin,
                       u->solver_order, UNIPC_MAX_ORDER);

    const char *pt;
    KD_TRY(kd_config_str_or(cfg, "prediction_type", NULL, &pt, e));
    if (pt && strcmp(pt, "flow_prediction") == 0)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: prediction_type 'flow_prediction' is not supported (it goes "
                       "with use_flow_sigmas)", origin);
    static const char *const pred_names[] = {"epsilon", "sample", "v_prediction"};
    KD_TRY(kd_sched__get_enum(cfg, "prediction_type", pred_names, 3, KD_PRED_EPSILON, &v, e));
    u->prediction_type = (kd_prediction_type)v;

    KD_TRY(kd_sched__get_bool(cfg, "thresholding", 0, &u->thresholding, e));
    u->dynamic_thresholding_ratio = 0.995;
    u->sample_max_value = 1.0;
    KD_TRY(kd_config_float_or(cfg, "dynamic_thresholding_ratio", 0.995, &u->dynamic_thresholding_ratio, e));
    KD_TRY(kd_config_float_or(cfg, "sample_max_value", 1.0, &u->sample_max_value, e));
    KD_TRY(kd_sched__get_bool(cfg, "predict_x0", 1, &u->predict_x0, e));
    if (u->thresholding && u->predict_x0) {
        if (!(u->dynamic_thresholding_ratio >= 0.0 && u->dynamic_thresholding_ratio <= 1.0))
            return kd_errf(e, KD_ERR_FORMAT, "%s: dynamic_thresholding_ratio %g is outside [0, 1]", origin,
                           u->dynamic_thresholding_ratio);
        if (!(u->sample_max_value >= 1.0))
            return kd_errf(e, KD_ERR_FORMAT, "%s: sample_max_value %g is below 1 (torch.clamp(min=1, max=%g))",
                           origin, u->sample_max_value, u->sample_max_value);
    }

    /* midpoint / heun / logrho are DPM-Solver's names: the class re-registers them as bh2 */
    static const char *const solver_names[] = {"bh1", "bh2", "midpoint", "heun", "logrho"};
    const char *stype;
    KD_TRY(kd_config_str_or(cfg, "solver_type", NULL, &stype, e));
    if (stype) {
        int found = 0;
        for (int k = 0; k < 5; k++) found |= strcmp(stype, solver_names[k]) == 0;
        if (!found)
            return kd_errf(e, KD_ERR_FORMAT, "%s: solver_type '%.64s' is not implemented for UniPCMultistepScheduler "
                           "('bh1', 'bh2')", origin, stype);
    }
    u->bh1 = stype && strcmp(stype, "bh1") == 0;
    KD_TRY(kd_sched__get_bool(cfg, "lower_order_final", 1, &u->lower_order_final, e));

    const cJSON *dc = kd_config_get(cfg, "disable_corrector");
    if (dc && !cJSON_IsNull(dc)) {
        int cnt = cJSON_IsArray(dc) ? cJSON_GetArraySize(dc) : 0;
        u->disable_corrector = malloc(((size_t)cnt + 1) * sizeof *u->disable_corrector);
        if (!u->disable_corrector) return kd_errf(e, KD_ERR_OOM, "unipc: out of memory");
        KD_TRY(kd_config_int_array(cfg, "disable_corrector", u->disable_corrector,
                                   cnt < UNIPC_MAX_DISABLED ? cnt : UNIPC_MAX_DISABLED, &u->n_disable, e));
    }
    const cJSON *sp = kd_config_get(cfg, "solver_p");
    if (sp && !cJSON_IsNull(sp))
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: solver_p (another scheduler as the predictor) is not supported",
                       origin);

    KD_TRY(kd_sched__get_bool(cfg, "use_karras_sigmas", 0, &u->karras, e));
    KD_TRY(refuse_true(cfg, "use_exponential_sigmas", "", e));
    KD_TRY(refuse_true(cfg, "use_beta_sigmas", "", e));
    KD_TRY(refuse_true(cfg, "use_flow_sigmas", "", e));
    KD_TRY(refuse_true(cfg, "use_dynamic_shifting", " (it needs use_flow_sigmas)", e));
    KD_TRY(refuse_true(cfg, "rescale_betas_zero_snr", "", e));
    const cJSON *st = kd_config_get(cfg, "shift_terminal");
    if (st && !cJSON_IsNull(st))
        return kd_errf(e, KD_ERR_FORMAT, "%s: shift_terminal is only supported when use_flow_sigmas is true", origin);
    KD_TRY(get_opt_float(cfg, "sigma_min", &u->has_sigma_min, &u->sigma_min, e));
    KD_TRY(get_opt_float(cfg, "sigma_max", &u->has_sigma_max, &u->sigma_max, e));

    static const char *const spacing_names[] = {"leading", "trailing", "linspace"};
    KD_TRY(kd_sched__get_enum(cfg, "timestep_spacing", spacing_names, 3, KD_SPACING_LINSPACE, &v, e));
    u->spacing = (kd_timestep_spacing)v;
    KD_TRY(kd_sched__get_int(cfg, "steps_offset", 0, -(1 << 20), 1 << 20, &u->steps_offset, e));
    static const char *const final_names[] = {"zero", "sigma_min"};
    KD_TRY(kd_sched__get_enum(cfg, "final_sigmas_type", final_names, 2, 0, &u->final_sigma_min, e));
    return KD_OK;
}

static kd_status unipc_init(kd_sampler *s, const kd_config *cfg, kd_err *e) {
    if (!cfg || !cfg->root) return kd_errf(e, KD_ERR_INVALID_ARG, "unipc: NULL config");
    unipc *u = calloc(1, sizeof *u);
    if (!u) return kd_errf(e, KD_ERR_OOM, "unipc: out of memory");
    s->impl = u;
    u->next = -1;
    KD_TRY(unipc_parse(u, cfg, e));
    float *ac = NULL;
    KD_TRY(train_alphas(cfg, &u->T, &ac, e));
    u->sigmas_train = malloc((size_t)u->T * sizeof(float));
    if (!u->sigmas_train) {
        free(ac);
        return kd_errf(e, KD_ERR_OOM, "unipc: out of memory");
    }
    for (int t = 0; t < u->T; t++) {
        float num = 1.0f - ac[t];
        u->sigmas_train[t] = sqrtf(num / ac[t]); /* torch pow(x, 0.5) is sqrt */
    }
    free(ac);
    s->init_noise_sigma = 1.0f;
    s->order = 1;
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * set_timesteps */

/* np.linspace(0, 1, n)[i] */
static double linspace01(int i, int n) {
    if (n == 1) return 0.0;
    if (i == n - 1) return 1.0;
    return (double)i * (1.0 / (double)(n - 1));
}

/* EulerDiscreteScheduler._sigma_to_t for one sigma (float64) over log_sigmas (float32 [T]). */
static double sigma_to_t(double sigma, const float *log_sigmas, int T) {
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    int low = 0; /* argmax of the cumulative count of dists >= 0: the last such index, else 0 */
    for (int k = 0; k < T; k++)
        if (log_sigma - (double)log_sigmas[k] >= 0) low = k;
    if (low > T - 2) low = T - 2;
    if (low < 0) low = 0;
    int high = low + 1 < T ? low + 1 : low;
    float lo = log_sigmas[low], hi = log_sigmas[high];
    float den = lo - hi; /* float32 array minus float32 array */
    double w = ((double)lo - log_sigma) / (double)den;
    if (w < 0) w = 0;
    if (w > 1) w = 1;
    return (1.0 - w) * (double)low + w * (double)high;
}

static kd_status unipc_set_timesteps(kd_sampler *s, int n, kd_err *e) {
    unipc *u = s->impl;
    const int T = u->T;
    if (n < 1) return kd_errf(e, KD_ERR_INVALID_ARG, "unipc: %d steps", n);
    double *ts = malloc(((size_t)n + 2) * sizeof *ts);
    float *sig = malloc(((size_t)n + 3) * sizeof *sig);
    if (!ts || !sig) {
        free(ts);
        free(sig);
        return kd_errf(e, KD_ERR_OOM, "unipc: out of memory for %d steps", n);
    }
    int len = n;
    if (u->spacing == KD_SPACING_LINSPACE) {
        /* np.linspace(0, T - 1, n + 1).round()[::-1][:-1] */
        double step = (double)(T - 1) / (double)n;
        for (int k = n; k >= 1; k--) ts[n - k] = rint(k == n ? (double)(T - 1) : (double)k * step);
    } else if (u->spacing == KD_SPACING_LEADING) {
        int64_t ratio = T / (n + 1);
        for (int k = n; k >= 1; k--) ts[n - k] = (double)((int64_t)k * ratio + u->steps_offset);
    } else {
        /* np.arange(T, 0, -T / n).round() - 1: arange's length is ceil(-T / step), which floating
         * point can make n + 1 (the last entry is then -1, kept by diffusers) */
        double step = -((double)T / (double)n);
        len = (int)ceil((0.0 - (double)T) / step);
        if (len < 1 || len > n + 1) len = n;
        double v0 = (double)T, v1 = v0 + step, delta = v1 - v0;
        for (int k = 0; k < len; k++) ts[k] = rint(k == 0 ? v0 : k == 1 ? v1 : v0 + (double)k * delta) - 1.0;
    }
    if (u->karras) {
        /* log_sigmas = np.log(float32 sigmas); Karras sigmas in float64, timesteps from them */
        float *log_sigmas = malloc((size_t)T * sizeof(float));
        if (!log_sigmas) {
            free(ts);
            free(sig);
            return kd_errf(e, KD_ERR_OOM, "unipc: out of memory");
        }
        for (int t = 0; t < T; t++) log_sigmas[t] = (float)log((double)u->sigmas_train[t]);
        double smin = u->has_sigma_min ? u->sigma_min : (double)u->sigmas_train[0];
        double smax = u->has_sigma_max ? u->sigma_max : (double)u->sigmas_train[T - 1];
        const double rho = 7.0;
        double min_inv = pow(smin, 1.0 / rho), max_inv = pow(smax, 1.0 / rho);
        double last = 0.0;
        len = n;
        for (int k = 0; k < n; k++) {
            double sk = pow(max_inv + linspace01(k, n) * (min_inv - max_inv), rho);
            ts[k] = rint(sigma_to_t(sk, log_sigmas, T));
            sig[k] = (float)sk;
            last = sk;
        }
        sig[n] = u->final_sigma_min ? (float)last : 0.0f;
        free(log_sigmas);
    } else {
        for (int k = 0; k < len; k++) {
            double t = ts[k]; /* np.interp at an integer: the table entry, clamped at both ends */
            int idx = t <= 0 ? 0 : t >= (double)(T - 1) ? T - 1 : (int)t;
            sig[k] = u->sigmas_train[idx];
        }
        sig[len] = u->final_sigma_min ? u->sigmas_train[0] : 0.0f;
    }
    free(s->timesteps);
    free(u->sigmas);
    s->timesteps = ts;
    s->num_timesteps = len;
    u->sigmas = sig;
    u->next = -1;
    u->has_last = 0;
    u->lower_order_nums = 0;
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * step */

/* _sigma_to_alpha_sigma_t on a float32 0-dim tensor: 1 / (σ² + 1) ** 0.5, σ·α */
static void alpha_sigma(float sigma, float *alpha, float *sigma_t) {
    float a = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *alpha = a;
    *sigma_t = sigma * a;
}

static float lambda_of(float sigma) {
    float a, st;
    alpha_sigma(sigma, &a, &st);
    return torch_logf(a) - torch_logf(st);
}

/* torch.pow(x, k) for k = 0..3 (torch's special cases: fill 1, copy, x·x, x·x·x) */
static float pow_k(float x, int k) {
    switch (k) {
    case 0: return 1.0f;
    case 1: return x;
    case 2: return x * x;
    default: return (x * x) * x;
    }
}

/* torch.linalg.solve of an m × m float32 system (row-major a[m][UNIPC_MAX_ORDER]) as MKL's sgesv
 * computes it: LU with partial pivoting (first largest |a|), the column scaled by the reciprocal of
 * the pivot, the trailing update a − l·u; forward and back substitution as dot products, each row
 * scaled by the reciprocal of its diagonal. Returns 0 on an exactly singular matrix (torch raises). */
static int lu_solve(int m, float a[][UNIPC_MAX_ORDER], float *b) {
    int piv[UNIPC_MAX_ORDER];
    for (int k = 0; k < m; k++) {
        int p = k;
        float best = fabsf(a[k][k]);
        for (int r = k + 1; r < m; r++)
            if (fabsf(a[r][k]) > best) {
                best = fabsf(a[r][k]);
                p = r;
            }
        piv[k] = p;
        if (p != k)
            for (int c = 0; c < m; c++) {
                float t = a[k][c];
                a[k][c] = a[p][c];
                a[p][c] = t;
            }
        if (a[k][k] == 0.0f) return 0;
        float rec = 1.0f / a[k][k];
        for (int r = k + 1; r < m; r++) a[r][k] = a[r][k] * rec;
        for (int r = k + 1; r < m; r++)
            for (int c = k + 1; c < m; c++) {
                float lu = a[r][k] * a[k][c];
                a[r][c] = a[r][c] - lu;
            }
    }
    for (int k = 0; k < m; k++)
        if (piv[k] != k) {
            float t = b[k];
            b[k] = b[piv[k]];
            b[piv[k]] = t;
        }
    for (int r = 0; r < m; r++) {
        float acc = 0.0f;
        for (int c = 0; c < r; c++) {
            float p = a[r][c] * b[c];
            acc = acc + p;
        }
        if (r > 0) b[r] = b[r] - acc;
    }
    for (int r = m - 1; r >= 0; r--) {
        float acc = 0.0f;
        for (int c = r + 1; c < m; c++) {
            float p = a[r][c] * b[c];
            acc = acc + p;
        }
        if (r < m - 1) b[r] = b[r] - acc;
        b[r] = b[r] * (1.0f / a[r][r]);
    }
    return 1;
}

/* What multistep_uni_p_bh_update / multistep_uni_c_bh_update compute before touching a tensor. */
typedef struct bh_coefs {
    float c_x, c_m0, c_d;          /* x_t = c_x·x − c_m0·m0 − c_d·(Σ ρ_k D1_k [+ ρ_last·D1_t]) */
    float rk[UNIPC_MAX_ORDER];     /* r_k, k < order − 1 */
    float rhos[UNIPC_MAX_ORDER];   /* ρ_p (order − 1 of them) or ρ_c (order) */
} bh_coefs;

/* sig_t: the target sigma, sig_s0: the current one, sig_si[k]: the earlier ones (order − 1).
 * corrector: rhos = solve(R, b) (order 1: 0.5); predictor: rhos = solve(R[:-1, :-1], b[:-1])
 * (order 2: 0.5; order 1: none). */
static kd_status bh_coefficients(const unipc *u, float sig_t, float sig_s0, const float *sig_si, int order,
                                 int corrector, bh_coefs *c, kd_err *e) {
    float alpha_t, sigma_t, alpha_s0, sigma_s0;
    alpha_sigma(sig_t, &alpha_t, &sigma_t);
    alpha_sigma(sig_s0, &alpha_s0, &sigma_s0);
    float lambda_t = torch_logf(alpha_t) - torch_logf(sigma_t);
    float lambda_s0 = torch_logf(alpha_s0) - torch_logf(sigma_s0);
    float h = lambda_t - lambda_s0;
    float rks[UNIPC_MAX_ORDER];
    for (int k = 0; k < order - 1; k++) {
        float lambda_si = lambda_of(sig_si[k]);
        rks[k] = (lambda_si - lambda_s0) / h;
        c->rk[k] = rks[k];
    }
    rks[order - 1] = 1.0f;

    float hh = u->predict_x0 ? -h : h;
    float h_phi_1 = torch_expm1f(hh); /* h·φ1(h) = e^h − 1 */
    float h_phi_k = h_phi_1 / hh - 1.0f;
    float B_h = u->bh1 ? hh : torch_expm1f(hh);
    float R[UNIPC_MAX_ORDER][UNIPC_MAX_ORDER], b[UNIPC_MAX_ORDER];
    long factorial = 1;
    for (int i = 1; i <= order; i++) {
        for (int k = 0; k < order; k++) R[i - 1][k] = pow_k(rks[k], i - 1);
        float num = h_phi_k * (float)factorial;
        b[i - 1] = num / B_h;
        factorial *= i + 1;
        float q = h_phi_k / hh;
        h_phi_k = q - (float)(1.0 / (double)factorial); /* the Python float, cast by torch */
    }
    int m = corrector ? order : order - 1; /* unknowns */
    if (corrector && order == 1) {
        c->rhos[0] = 0.5f;
    } else if (!corrector && order == 2) {
        c->rhos[0] = 0.5f;
    } else if (m > 0) {
        for (int k = 0; k < m; k++) c->rhos[k] = b[k];
        if (!lu_solve(m, R, c->rhos))
            return kd_errf(e, KD_ERR_INVALID_ARG, "unipc.step: the order-%d %s system is singular (torch.linalg.solve "
                           "fails here too)", order, corrector ? "corrector" : "predictor");
    }
    if (u->predict_x0) {
        c->c_x = sigma_t / sigma_s0;
        c->c_m0 = alpha_t * h_phi_1;
        c->c_d = alpha_t * B_h;
    } else {
        c->c_x = alpha_t / alpha_s0;
        c->c_m0 = sigma_t * h_phi_1;
        c->c_d = sigma_t * B_h;
    }
    return KD_OK;
}

/* (mi − m0) / rk summed with the rhos: einsum("k,bkc...->bc...", rhos, D1s) (a plain sum) */
static inline float d1_sum(float *const *mi, const float *rk, const float *rhos, int k_count, size_t j, float m0) {
    float acc = 0.0f;
    for (int k = 0; k < k_count; k++) {
        float d = mi[k][j] - m0;
        float d1 = d / rk[k];
        float p = rhos[k] * d1;
        acc = k ? acc + p : p;
    }
    return acc;
}

static kd_status ensure_buffers(unipc *u, const kd_sched_shape *shape, kd_err *e) {
    if (u->buf && u->batch == shape->batch && u->channels == shape->channels && u->inner == shape->inner)
        return KD_OK;
    const int64_t lim = INT64_C(1) << 40;
    if (shape->batch > lim / shape->channels || shape->batch * shape->channels > lim / shape->inner)
        return kd_errf(e, KD_ERR_INVALID_ARG, "unipc.step: sample too large");
    size_t n = (size_t)(shape->batch * shape->channels * shape->inner);
    size_t row = (size_t)(shape->channels * shape->inner);
    size_t need = ((size_t)u->solver_order + 2) * n + row;
    float *p = malloc(need * sizeof(float));
    if (!p) return kd_errf(e, KD_ERR_OOM, "unipc.step: out of memory for %zu floats", need);
    free(u->buf);
    u->buf = p;
    for (int k = 0; k < u->solver_order; k++) u->mo[k] = p + (size_t)k * n;
    u->spare = p + (size_t)u->solver_order * n;
    u->last = u->spare + n;
    u->sel = u->last + n;
    u->batch = shape->batch;
    u->channels = shape->channels;
    u->inner = shape->inner;
    u->n = n;
    u->row = row;
    u->next = -1; /* a new shape is a new run */
    return KD_OK;
}

static int corrector_disabled(const unipc *u, int64_t idx) {
    for (int k = 0; k < u->n_disable; k++)
        if (u->disable_corrector[k] == idx) return 1;
    return 0;
}

static kd_status unipc_step(kd_sampler *s, int i, const float *model_output, int64_t mc, const float *sample,
                            const kd_sched_shape *shape, kd_rng *rng, float *prev_sample, kd_err *e) {
    (void)rng; /* UniPC draws no noise */
    unipc *u = s->impl;
    if (!u->sigmas) return kd_errf(e, KD_ERR_INVALID_ARG, "unipc.step: set_timesteps first");
    KD_TRY(ensure_buffers(u, shape, e));
    if (i != u->next) { /* the start of a run */
        u->has_last = 0;
        u->lower_order_nums = 0;
    }
    const size_t n = u->n, row = u->row;
    const size_t mo_stride = (size_t)mc * (size_t)u->inner;
    const int order = u->solver_order;
    const float *sig = u->sigmas;

    /* convert_model_output */
    float alpha_t, sigma_t;
    alpha_sigma(sig[i], &alpha_t, &sigma_t);
    float *cur = u->spare;
    for (int64_t bi = 0; bi < u->batch; bi++) {
        const float *m = model_output + (size_t)bi * mo_stride;
        const float *x = sample + (size_t)bi * row;
        float *o = cur + (size_t)bi * row;
        for (size_t j = 0; j < row; j++) {
            float v;
            if (u->predict_x0) {
                if (u->prediction_type == KD_PRED_EPSILON) {
                    float p = sigma_t * m[j];
                    v = (x[j] - p) / alpha_t;
                } else if (u->prediction_type == KD_PRED_SAMPLE) {
                    v = m[j];
                } else {
                    float p = alpha_t * x[j], q = sigma_t * m[j];
                    v = p - q;
                }
            } else {
                if (u->prediction_type == KD_PRED_EPSILON) {
                    v = m[j];
                } else if (u->prediction_type == KD_PRED_SAMPLE) {
                    float p = alpha_t * m[j];
                    v = (x[j] - p) / sigma_t;
                } else {
                    float p = alpha_t * m[j], q = sigma_t * x[j];
                    v = p + q;
                }
            }
            o[j] = v;
        }
    }
    if (u->predict_x0 && u->thresholding) {
        struct kd_sched th;
        memset(&th, 0, sizeof th);
        th.cfg.dynamic_thresholding_ratio = u->dynamic_thresholding_ratio;
        th.cfg.sample_max_value = u->sample_max_value;
        kd_sched_step_args a;
        memset(&a, 0, sizeof a);
        a.batch = u->batch;
        a.channels = u->channels;
        a.inner = u->inner;
        a.n = n;
        a.x0 = cur;
        a.sel = u->sel;
        kd_sched__threshold(&th, &a);
    }

    /* the corrector (UniC) rewrites the sample: last_sample ← corrected */
    int use_corrector = i > 0 && !corrector_disabled(u, (int64_t)i - 1) && u->has_last;
    if (use_corrector) {
        int p = u->this_order;
        float sig_si[UNIPC_MAX_ORDER];
        float *mi[UNIPC_MAX_ORDER];
        for (int k = 1; k < p; k++) {
            sig_si[k - 1] = sig[i - (k + 1)];
            mi[k - 1] = u->mo[order - 1 - k];
        }
        bh_coefs c;
        KD_TRY(bh_coefficients(u, sig[i], sig[i - 1], sig_si, p, 1, &c, e));
        const float *m0 = u->mo[order - 1];
        const float rho_t = c.rhos[p - 1];
        for (size_t j = 0; j < n; j++) {
            float a1 = c.c_x * u->last[j], a2 = c.c_m0 * m0[j];
            float xt_ = a1 - a2;
            float d1t = cur[j] - m0[j];
            float pt = rho_t * d1t;
            float corr = p > 1 ? d1_sum(mi, c.rk, c.rhos, p - 1, j, m0[j]) + pt : pt + 0.0f;
            float dc = c.c_d * corr;
            u->last[j] = xt_ - dc;
        }
    } else if (u->last != sample) {
        memcpy(u->last, sample, n * sizeof(float));
    }

    /* model_outputs shift; the converted output is the newest */
    float *oldest = u->mo[0];
    for (int k = 0; k + 1 < order; k++) u->mo[k] = u->mo[k + 1];
    u->mo[order - 1] = cur;
    u->spare = oldest;

    int this_order = order;
    if (u->lower_order_final && s->num_timesteps - i < this_order) this_order = s->num_timesteps - i;
    if (u->lower_order_nums + 1 < this_order) this_order = u->lower_order_nums + 1;
    u->this_order = this_order;
    u->has_last = 1;

    /* the predictor (UniP) from last_sample to sigmas[i + 1] */
    {
        int p = this_order;
        float sig_si[UNIPC_MAX_ORDER];
        float *mi[UNIPC_MAX_ORDER];
        for (int k = 1; k < p; k++) {
            sig_si[k - 1] = sig[i - k];
            mi[k - 1] = u->mo[order - 1 - k];
        }
        bh_coefs c;
        kd_status st = bh_coefficients(u, sig[i + 1], sig[i], sig_si, p, 0, &c, e);
        if (st != KD_OK) {
            u->next = -1;
            return st;
        }
        const float *m0 = u->mo[order - 1];
        const float zero_term = c.c_d * 0.0f; /* "alpha_t * B_h * 0" when there is no D1 (NaN if B_h is inf) */
        for (size_t j = 0; j < n; j++) {
            float a1 = c.c_x * u->last[j], a2 = c.c_m0 * m0[j];
            float xt_ = a1 - a2;
            if (p > 1) {
                float pred = d1_sum(mi, c.rk, c.rhos, p - 1, j, m0[j]);
                float dp = c.c_d * pred;
                prev_sample[j] = xt_ - dp;
            } else {
                prev_sample[j] = xt_ - zero_term;
            }
        }
    }
    if (u->lower_order_nums < order) u->lower_order_nums++;
    u->next = i + 1;
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * add_noise */

static kd_status unipc_add_noise(const kd_sampler *s, int i, const float *original, const float *noise, size_t n,
                                 float *out, kd_err *e) {
    const unipc *u = s->impl;
    if (n && (!original || !noise || !out)) return kd_errf(e, KD_ERR_INVALID_ARG, "unipc.add_noise: NULL argument");
    /* index_for_timestep(timesteps[i]): the only match, else the second of several */
    double t = s->timesteps[i];
    int idx = -1, seen = 0;
    for (int k = 0; k < s->num_timesteps && seen < 2; k++)
        if (s->timesteps[k] == t) {
            idx = k;
            seen++;
        }
    if (idx < 0) idx = s->num_timesteps - 1;
    float alpha_t, sigma_t;
    alpha_sigma(u->sigmas[idx], &alpha_t, &sigma_t);
    for (size_t k = 0; k < n; k++) {
        float a = alpha_t * original[k], b = sigma_t * noise[k];
        out[k] = a + b;
    }
    return KD_OK;
}

const kd_sampler_ops kd_sampler_unipc = {"unipc", "UniPCMultistepScheduler", unipc_init, unipc_destroy,
                                         unipc_set_timesteps, NULL, unipc_step, unipc_add_noise, NULL};
