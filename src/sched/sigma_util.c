/* Shared parts of the sigma samplers: config keys, training sigmas, set_timesteps (see
 * sigma_util.h for the numerics). Built as ISO C11 (no FMA contraction); the numpy float32 log
 * kernel's fused multiply-adds are explicit fmaf(). */
#include "sched/sigma_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/internal.h"
#include "sched/sampler.h"

#define KD_SIGMA_MAX_TRAIN_TIMESTEPS (1 << 20)

const char *kd_sigma_class_name(kd_sigma_class cls) {
    switch (cls) {
    case KD_SIGMA_EULER: return "EulerDiscreteScheduler";
    case KD_SIGMA_EULER_A: return "EulerAncestralDiscreteScheduler";
    default: return "HeunDiscreteScheduler";
    }
}

/* ------------------------------------------------------------------------------------------------
 * config keys */

/* An optional float that may be null (sigma_min / sigma_max). */
static kd_status get_opt_float(const kd_config *cfg, const char *key, int *has, double *out, kd_err *e) {
    *has = kd_config_has(cfg, key);
    *out = 0.0;
    if (!*has) return KD_OK;
    return kd_config_float_or(cfg, key, 0.0, out, e);
}

static kd_status refuse_true(const kd_config *cfg, const char *origin, kd_sigma_class cls, const char *key,
                             kd_err *e) {
    int v;
    KD_TRY(kd_sched__get_bool(cfg, key, 0, &v, e));
    if (v)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: %s with %s true is not supported", origin, kd_sigma_class_name(cls),
                       key);
    return KD_OK;
}

static kd_status parse_config(const kd_config *cfg, const char *origin, kd_sigma_class cls, kd_sigma_config *c,
                              kd_err *e) {
    memset(c, 0, sizeof *c);
    c->cls = cls;
    c->clip_sample_range = 1.0;
    KD_TRY(kd_sched__get_int(cfg, "num_train_timesteps", 1000, 1, KD_SIGMA_MAX_TRAIN_TIMESTEPS, &c->num_train_timesteps,
                   e));

    /* prediction_type: what each class's step accepts (EulerDiscreteScheduler also takes
     * "original_sample" as "sample"; the ancestral one raises NotImplementedError for "sample") */
    static const char *const pred_names[] = {"epsilon", "sample", "v_prediction", "original_sample"};
    int v;
    KD_TRY(kd_sched__get_enum(cfg, "prediction_type", pred_names, 4, 0, &v, e));
    if (v == 3 && cls != KD_SIGMA_EULER)
        return kd_errf(e, KD_ERR_FORMAT, "%s: %s does not know prediction_type 'original_sample' (epsilon, sample, "
                       "v_prediction)", origin, kd_sigma_class_name(cls));
    if (v == 1 && cls == KD_SIGMA_EULER_A)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: EulerAncestralDiscreteScheduler does not implement prediction_type "
                       "'sample' (diffusers raises NotImplementedError; epsilon or v_prediction)", origin);
    c->prediction_type = v == 0 ? KD_PRED_EPSILON : v == 2 ? KD_PRED_V : KD_PRED_SAMPLE;

    static const char *const spacing_names[] = {"leading", "trailing", "linspace"}; /* kd_timestep_spacing order */
    KD_TRY(kd_sched__get_enum(cfg, "timestep_spacing", spacing_names, 3, KD_SPACING_LINSPACE, &v, e));
    c->timestep_spacing = (kd_timestep_spacing)v;
    KD_TRY(kd_sched__get_int(cfg, "steps_offset", 0, -KD_SIGMA_MAX_TRAIN_TIMESTEPS, KD_SIGMA_MAX_TRAIN_TIMESTEPS,
                   &c->steps_offset, e));

    if (cls != KD_SIGMA_HEUN) KD_TRY(refuse_true(cfg, origin, cls, "rescale_betas_zero_snr", e));
    if (cls != KD_SIGMA_EULER_A) {
        KD_TRY(kd_sched__get_bool(cfg, "use_karras_sigmas", 0, &c->use_karras_sigmas, e));
        KD_TRY(refuse_true(cfg, origin, cls, "use_exponential_sigmas", e));
        KD_TRY(refuse_true(cfg, origin, cls, "use_beta_sigmas", e));
        /* Euler registers sigma_min / sigma_max; Heun reads them too when the config has them
         * (from_config registers the keys a class does not take as hidden config entries, and
         * Heun's _convert_to_karras looks them up with hasattr(self.config, ...)) */
        KD_TRY(get_opt_float(cfg, "sigma_min", &c->has_sigma_min, &c->sigma_min, e));
        KD_TRY(get_opt_float(cfg, "sigma_max", &c->has_sigma_max, &c->sigma_max, e));
        if (c->use_karras_sigmas && c->num_train_timesteps < 2)
            return kd_errf(e, KD_ERR_FORMAT, "%s: use_karras_sigmas needs num_train_timesteps >= 2", origin);
        if (c->use_karras_sigmas && ((c->has_sigma_min && !(c->sigma_min > 0.0)) ||
                                     (c->has_sigma_max && !(c->sigma_max > 0.0))))
            return kd_errf(e, KD_ERR_FORMAT, "%s: sigma_min / sigma_max must be positive", origin);
    }
    if (cls == KD_SIGMA_EULER) {
        static const char *const interp_names[] = {"linear", "log_linear"};
        KD_TRY(kd_sched__get_enum(cfg, "interpolation_type", interp_names, 2, 0, &v, e));
        if (v == 1)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: EulerDiscreteScheduler with interpolation_type 'log_linear' is "
                           "not supported (linear)", origin);
        static const char *const final_names[] = {"zero", "sigma_min"};
        KD_TRY(kd_sched__get_enum(cfg, "final_sigmas_type", final_names, 2, 0, &c->final_sigma_min, e));
        /* timestep_type: diffusers only acts on "continuous" together with v_prediction (the
         * timesteps become 0.25·log σ); any other value is the discrete schedule */
        const char *tt;
        KD_TRY(kd_config_str_or(cfg, "timestep_type", "discrete", &tt, e));
        if (strcmp(tt, "continuous") == 0 && c->prediction_type == KD_PRED_V)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: EulerDiscreteScheduler with timestep_type 'continuous' and "
                           "v_prediction is not supported (timestep_type 'discrete')", origin);
    }
    if (cls == KD_SIGMA_HEUN) {
        KD_TRY(kd_sched__get_bool(cfg, "clip_sample", 0, &c->clip_sample, e));
        KD_TRY(kd_config_float_or(cfg, "clip_sample_range", 1.0, &c->clip_sample_range, e));
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * training schedule */

/* Copies key from cfg into root when present and not null. */
static int copy_key(cJSON *root, const kd_config *cfg, const char *key) {
    const cJSON *it = kd_config_get(cfg, key);
    if (!it || cJSON_IsNull(it)) return 1;
    cJSON *d = cJSON_Duplicate(it, 1);
    return d && cJSON_AddItemToObject(root, key, d);
}

/* The beta keys of cfg as a config of their own, for kd_sampler_train_schedule (DDPMScheduler's
 * parser, which would otherwise judge keys such as variance_type that these classes ignore):
 * the class's default betas where the config has none (Heun: 0.00085..0.012), Heun's "exp"
 * schedule (betas_for_alpha_bar(exp), not a DDPM schedule) as explicit trained betas. */
static kd_status train_schedule(const kd_config *cfg, const char *origin, const kd_sigma_config *c, float **ac,
                                kd_err *e) {
    *ac = NULL;
    const int T = c->num_train_timesteps;
    int trained = kd_config_has(cfg, "trained_betas");
    const char *bs = "linear";
    if (!trained) {
        KD_TRY(kd_config_str_or(cfg, "beta_schedule", "linear", &bs, e));
        int known = !strcmp(bs, "linear") || !strcmp(bs, "scaled_linear") || !strcmp(bs, "squaredcos_cap_v2") ||
                    (c->cls == KD_SIGMA_HEUN && !strcmp(bs, "exp"));
        if (!known)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: beta_schedule '%.64s' is not implemented for %s (linear, "
                           "scaled_linear, squaredcos_cap_v2%s)", origin, bs, kd_sigma_class_name(c->cls),
                           c->cls == KD_SIGMA_HEUN ? ", exp" : "");
    }
    cJSON *root = cJSON_CreateObject();
    int ok = root && copy_key(root, cfg, "num_train_timesteps");
    if (ok && trained) {
        ok = copy_key(root, cfg, "trained_betas");
    } else if (ok && !strcmp(bs, "exp")) {
        /* math.exp(t · -12) ratios in float64, min(·, 0.999), then a float32 tensor */
        cJSON *arr = cJSON_AddArrayToObject(root, "trained_betas");
        ok = arr != NULL;
        for (int i = 0; ok && i < T; i++) {
            double t1 = (double)i / T, t2 = (double)(i + 1) / T;
            double b = 1.0 - exp(t2 * -12.0) / exp(t1 * -12.0);
            cJSON *num = cJSON_CreateNumber((double)(float)(b < 0.999 ? b : 0.999));
            ok = num && cJSON_AddItemToArray(arr, num);
        }
    } else if (ok) {
        ok = cJSON_AddStringToObject(root, "beta_schedule", bs) != NULL;
    }
    int has_start = kd_config_has(cfg, "beta_start"), has_end = kd_config_has(cfg, "beta_end");
    int heun = c->cls == KD_SIGMA_HEUN;
    if (ok) ok = has_start ? copy_key(root, cfg, "beta_start")
                           : cJSON_AddNumberToObject(root, "beta_start", heun ? 0.00085 : 0.0001) != NULL;
    if (ok) ok = has_end ? copy_key(root, cfg, "beta_end")
                         : cJSON_AddNumberToObject(root, "beta_end", heun ? 0.012 : 0.02) != NULL;
    size_t ol = strlen(origin);
    kd_config mini = {malloc(ol + 1), root};
    if (!ok || !mini.origin) {
        cJSON_Delete(root);
        free(mini.origin);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", kd_sigma_class_name(c->cls));
    }
    memcpy(mini.origin, origin, ol + 1);
    int T2 = 0;
    float *betas = NULL;
    kd_status st = kd_sampler_train_schedule(&mini, &T2, &betas, ac, e);
    kd_config_free(&mini);
    free(betas);
    if (st == KD_OK && T2 != T) {
        free(*ac);
        *ac = NULL;
        st = kd_errf(e, KD_ERR_INTERNAL, "%s: training schedule of %d steps, expected %d", origin, T2, T);
    }
    return st;
}

kd_status kd_sigma_init(kd_sigma_sched *ss, const kd_config *cfg, kd_sigma_class cls, kd_err *e) {
    memset(ss, 0, sizeof *ss);
    if (!cfg || !cfg->root) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: NULL config", kd_sigma_class_name(cls));
    const char *origin = cfg->origin ? cfg->origin : "scheduler config";
    KD_TRY(parse_config(cfg, origin, cls, &ss->cfg, e));
    KD_TRY(train_schedule(cfg, origin, &ss->cfg, &ss->alphas_cumprod, e));
    const int T = ss->cfg.num_train_timesteps;
    ss->train_sigmas = malloc((size_t)T * sizeof(float));
    if (ss->cfg.use_karras_sigmas) ss->log_sigmas = malloc((size_t)T * sizeof(float));
    if (!ss->train_sigmas || (ss->cfg.use_karras_sigmas && !ss->log_sigmas)) {
        kd_sigma_free(ss);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", kd_sigma_class_name(cls));
    }
    for (int t = 0; t < T; t++) {
        float a = ss->alphas_cumprod[t];
        float q = (1.0f - a) / a; /* torch: ((1 - ᾱ) / ᾱ) ** 0.5, pow 0.5 being sqrt */
        ss->train_sigmas[t] = sqrtf(q);
        if (ss->log_sigmas) ss->log_sigmas[t] = kd_np_logf(ss->train_sigmas[t]);
    }
    return KD_OK;
}

void kd_sigma_free(kd_sigma_sched *ss) {
    if (!ss) return;
    free(ss->alphas_cumprod);
    free(ss->train_sigmas);
    free(ss->log_sigmas);
    free(ss->timesteps);
    free(ss->sigmas);
    memset(ss, 0, sizeof *ss);
}

/* ------------------------------------------------------------------------------------------------
 * numpy pieces */

static float f32_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* numpy/_core/src/umath/loops_exponent_log.dispatch.c.src simd_log_FLOAT: mantissa in [0.5, 1)
 * and exponent + 1 (getmant / getexp), the mantissa doubled when <= sqrt(1/2), then log1p of
 * m - 1 as P5/Q5 (FMA Horner) plus exponent · ln 2 (one FMA). Constants: npy_simd_data.h. */
float kd_np_logf(float x) {
    if (isnan(x)) return x;
    if (x < 0.0f) return -NAN;
    if (x == 0.0f) return -INFINITY;
    if (isinf(x)) return x;
    int ex;
    float m = frexpf(x, &ex); /* x = m · 2^ex, m in [0.5, 1), denormals included */
    float k = (float)ex;
    if (m <= f32_bits(0x3F3504F3u)) { /* NPY_SQRT1_2f */
        m = m + m;
        k = k - 1.0f;
    }
    float y = m - 1.0f;
    static const uint32_t P[6] = {0x00000000u, 0x3F800000u, 0x4007361Cu, 0x3FBD70A9u, 0x3EC30333u, 0x3CD42BCDu};
    static const uint32_t Q[6] = {0x3F800000u, 0x4027361Cu, 0x401CFE0Du, 0x3F7C8AE4u, 0x3E1E5BF3u, 0x3BC083DFu};
    float num = fmaf(f32_bits(P[5]), y, f32_bits(P[4]));
    float den = fmaf(f32_bits(Q[5]), y, f32_bits(Q[4]));
    for (int i = 3; i >= 0; i--) {
        num = fmaf(num, y, f32_bits(P[i]));
        den = fmaf(den, y, f32_bits(Q[i]));
    }
    return fmaf(k, f32_bits(0x3F317218u) /* NPY_LOGE2f */, num / den);
}

/* np.linspace(start, stop, n) in float64: i · step + start, the last exactly stop. */
static double np_linspace_at(double start, double stop, int n, int i) {
    if (n == 1) return start; /* y · delta + start with y = 0 */
    if (i == n - 1) return stop;
    double delta = stop - start, step = delta / (double)(n - 1);
    double y = step == 0.0 ? (double)i / (double)(n - 1) * delta : (double)i * step;
    return y + start;
}

/* np.interp(x, arange(T), fp) (compiled_base.c arr_interp; the slope divides by xp[j+1] - xp[j],
 * here 1; left / right values fp[0] / fp[T-1]). */
static double np_interp(double x, const float *fp, int T) {
    if (isnan(x)) return x;
    if (x < 0.0) return fp[0];
    if (x > (double)(T - 1)) return fp[T - 1];
    int j = (int)floor(x);
    if (j >= T - 1) return fp[T - 1];
    double dj = (double)j, dj1 = (double)(j + 1);
    double y0 = fp[j], y1 = fp[j + 1];
    if (dj == x) return y0;
    double slope = (y1 - y0) / (dj1 - dj);
    double r = slope * (x - dj) + y0;
    if (isnan(r)) {
        r = slope * (x - dj1) + y1;
        if (isnan(r) && y0 == y1) r = y0;
    }
    return r;
}

/* diffusers _sigma_to_t: the last index whose log σ is <= log(max(σ, 1e-10)) (cumsum(dists >=
 * 0).argmax(), clipped to T - 2), then linear interpolation weight w in [0, 1]. */
static double sigma_to_t(double sigma, const float *log_sigmas, int T) {
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    if (isnan(sigma)) ls = sigma; /* np.maximum propagates NaN */
    long cum = 0, best = -1;
    int low = 0;
    for (int j = 0; j < T; j++) {
        if (ls - (double)log_sigmas[j] >= 0.0) cum++;
        if (cum > best) { /* argmax: the first maximum */
            best = cum;
            low = j;
        }
    }
    if (low > T - 2) low = T - 2;
    int high = low + 1;
    double lo = log_sigmas[low], hi = log_sigmas[high];
    double w = (lo - ls) / (lo - hi);
    if (w < 0.0) w = 0.0;
    if (w > 1.0) w = 1.0;
    return (1.0 - w) * (double)low + w * (double)high;
}

/* ------------------------------------------------------------------------------------------------
 * set_timesteps */

kd_status kd_sigma_set_timesteps(kd_sigma_sched *ss, int n, kd_err *e) {
    const kd_sigma_config *c = &ss->cfg;
    const int T = c->num_train_timesteps;
    const char *name = kd_sigma_class_name(c->cls);
    if (n < 1) return kd_errf(e, KD_ERR_INVALID_ARG, "%s.set_timesteps: %d steps", name, n);
    float *ts = malloc(((size_t)n + 2) * sizeof(float));
    double *sig = malloc(((size_t)n + 2) * sizeof(double));
    float *out = malloc(((size_t)n + 3) * sizeof(float));
    if (!ts || !sig || !out) {
        free(ts);
        free(sig);
        free(out);
        return kd_errf(e, KD_ERR_OOM, "%s.set_timesteps: out of memory", name);
    }
    int len = n;
    if (c->timestep_spacing == KD_SPACING_LINSPACE) {
        for (int i = 0; i < n; i++) ts[n - 1 - i] = (float)np_linspace_at(0.0, (double)(T - 1), n, i);
    } else if (c->timestep_spacing == KD_SPACING_LEADING) {
        int64_t ratio = T / n;
        for (int i = 0; i < n; i++) ts[n - 1 - i] = (float)((int64_t)i * ratio) + (float)c->steps_offset;
    } else {
        /* np.arange(T, 0, -T/n): length ceil((0 - T) / step) (may be n + 1), values start,
         * start + step, then start + i·((start + step) - start); round, float32, - 1 */
        double step = -((double)T / (double)n);
        double lenf = ceil((0.0 - (double)T) / step);
        len = lenf >= 1.0 && lenf <= (double)n + 1 ? (int)lenf : n;
        double v0 = (double)T, v1 = v0 + step, delta = v1 - v0;
        for (int i = 0; i < len; i++) {
            double v = i == 0 ? v0 : i == 1 ? v1 : v0 + (double)i * delta;
            ts[i] = (float)rint(v) - 1.0f;
        }
    }
    for (int i = 0; i < len; i++) sig[i] = np_interp((double)ts[i], ss->train_sigmas, T);
    if (c->use_karras_sigmas) {
        double smin = c->has_sigma_min ? c->sigma_min : sig[len - 1];
        double smax = c->has_sigma_max ? c->sigma_max : sig[0];
        const double rho = 7.0;
        double min_inv = pow(smin, 1.0 / rho), max_inv = pow(smax, 1.0 / rho);
        double d = min_inv - max_inv;
        for (int i = 0; i < n; i++) {
            double r = np_linspace_at(0.0, 1.0, n, i);
            double b = r * d;
            sig[i] = pow(max_inv + b, rho);
        }
        len = n;
        for (int i = 0; i < n; i++) ts[i] = (float)sigma_to_t(sig[i], ss->log_sigmas, T);
    }
    for (int i = 0; i < len; i++) out[i] = (float)sig[i];
    out[len] = c->final_sigma_min ? ss->train_sigmas[0] : 0.0f;
    free(sig);
    free(ss->timesteps);
    free(ss->sigmas);
    ss->timesteps = ts;
    ss->sigmas = out;
    ss->len = len;
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * float32 formulas */

float kd_sigma_init_noise_sigma(const kd_sigma_config *c, const float *sigmas, int count) {
    float mx = sigmas[0];
    for (int i = 1; i < count; i++)
        if (sigmas[i] > mx || isnan(sigmas[i])) mx = sigmas[i];
    if (c->timestep_spacing == KD_SPACING_LINSPACE || c->timestep_spacing == KD_SPACING_TRAILING) return mx;
    float q = mx * mx + 1.0f;
    return sqrtf(q);
}

int kd_sigma_index_for(const double *timesteps, int m, int i) {
    int first = -1;
    for (int j = 0; j < m; j++) {
        if (timesteps[j] != timesteps[i]) continue;
        if (first >= 0) return j;
        first = j;
    }
    return first >= 0 ? first : i; /* NaN timestep: no match, as == fails (diffusers raises) */
}

void kd_sigma_scale_input(float sigma, float *x, size_t n) {
    float q = sigma * sigma + 1.0f;
    float d = sqrtf(q);
    for (size_t i = 0; i < n; i++) x[i] = x[i] / d;
}

void kd_sigma_add_noise(float sigma, const float *original, const float *noise, size_t n, float *out) {
    for (size_t i = 0; i < n; i++) {
        float p = noise[i] * sigma;
        out[i] = original[i] + p;
    }
}
