/* DPM-Solver++ samplers: diffusers' DPMSolverMultistepScheduler (0.42), as
 *   DPMSolverMultistepScheduler.from_config(cfg, algorithm_type=A, solver_order=K, use_karras_sigmas=S)
 *   dpm++2m          A = "dpmsolver++",     K = 2, S = False
 *   dpm++2m-karras   A = "dpmsolver++",     K = 2, S = True
 *   dpm++3m          A = "dpmsolver++",     K = 3, S = False
 *   dpm++sde         A = "sde-dpmsolver++", K = 2, S = False
 *
 * Numerics, as diffusers computes them:
 *   training     betas / alphas_cumprod: kd_sampler_train_schedule (torch float32, bit-exact)
 *   set_timesteps (numpy, float64 unless said otherwise)
 *     clip       L = T - searchsorted(flip(lambda_t), lambda_min_clipped), lambda_t = log sqrt(ᾱ) -
 *                log sqrt(1 - ᾱ) in float32 (torch's lower-bound binary search)
 *     linspace   round(linspace(0, L - 1, n + 1))[::-1][:-1]
 *     leading    (arange(n + 1) · (L // (n + 1)))[::-1][:-1] + steps_offset
 *     trailing   round(arange(L, 0, -T / n)) - 1 (numpy's arange length and fill rules: for some n
 *                this is n + 1 entries ending in -1; diffusers keeps them, and so do we)
 *     σ          np.interp(timesteps, arange(T), σ_train) with σ_train = sqrt((1 - ᾱ) / ᾱ) float32
 *     Karras     σ = (σmax^(1/7) + linspace(0, 1, n)·(σmin^(1/7) - σmax^(1/7)))^7, timesteps =
 *                _sigma_to_t(σ) against numpy's float32 log of σ_train (its AVX2/AVX512F kernel,
 *                reproduced below bit for bit), rounded unless beta_schedule is squaredcos_cap_v2,
 *                then cast to int64 (truncation)
 *     final σ    0 ("zero") or sqrt((1 - ᾱ_0) / ᾱ_0) in float32 ("sigma_min"); the list is float32
 *   step (torch float32, one operation at a time, no contraction): alpha_t = 1 / sqrt(σ² + 1),
 *     sigma_t = σ · alpha_t, lambda = log alpha_t - log sigma_t, then the coefficient formulas on
 *     0-dim values and the element-wise update in Python's evaluation order.
 * What is not bit-exact: torch's float32 sqrt, log and exp on x86 are Intel MKL VML's (VML_HA; not
 * correctly rounded — sqrt is up to 0.75 ulp off, in about 1 of 6 values — and not reproducible
 * without MKL); here sqrt is the exact sqrtf and log / exp are correctly rounded (computed in
 * double). So σ_train, hence the sigma list, may differ by 1 ulp, and the step coefficients
 * (alpha_t, the λ's, exp(-h)) by an ulp now and then: the samples move by a few float32 ulps
 * (about half of the values stay bit-identical over whole loops). numpy's float64 pow (Karras σ)
 * is SVML's on AVX-512 machines, libm's here: a last-bit double difference at most, which float32
 * σ and integer timesteps do not show.
 *
 * The multistep state (the converted model outputs of the last steps, lower_order_nums) lives in
 * impl. diffusers counts steps from the first call after set_timesteps; here the step index is
 * the i given, and a call with i == 0, or with an i that does not follow the previous call's,
 * starts a new loop (fresh history) — what a pipeline loop over timesteps[start:] does after
 * set_timesteps. (diffusers' own first call looks the index up from the timestep value, which
 * for a timestep that occurs twice in a Karras list is its second occurrence: a loop starting
 * there runs one index ahead and fails with IndexError on its last step — with Karras on the
 * cosine prior schedule even from i = 0, its list starting 998, 998, ... for n >= 4. We do what
 * set_begin_index(start) makes diffusers do.) add_noise does look the index up as diffusers
 * does (index_for_timestep: the second occurrence of a repeated timestep), since the Kandinsky
 * pipelines call it without set_begin_index. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/internal.h"
#include "sched/dpmsolver.h"
#include "sched/sigma_util.h"

typedef struct dpm {
    /* configuration */
    int T;
    float *betas, *alphas_cumprod; /* [T] */
    int solver_order;              /* 2 or 3 */
    int sde;                       /* sde-dpmsolver++ */
    int karras;
    int cosine;                    /* beta_schedule squaredcos_cap_v2 (Karras timesteps not rounded) */
    kd_prediction_type prediction_type;
    int thresholding;
    double dynamic_thresholding_ratio, sample_max_value;
    int heun;                      /* solver_type heun (else midpoint) */
    int lower_order_final, euler_at_final;
    int final_sigma_min;           /* final_sigmas_type sigma_min (else zero) */
    kd_timestep_spacing spacing;
    int steps_offset;
    double lambda_min_clipped;
    int learned_variance;          /* variance_type learned / learned_range */
    /* set_timesteps */
    float *sigmas;                 /* [num_timesteps + 1] */
    /* multistep state */
    size_t n, row;                 /* elements of the sample / of one batch row */
    float *hist[3];                /* model_outputs[0..solver_order): oldest first */
    float *noise, *sel;            /* [n], [row] */
    int lower_order_nums;
    int last_index;                /* the i of the previous step, -1 when fresh */
} dpm;

static dpm *D(const kd_sampler *s) { return s->impl; }

/* ------------------------------------------------------------------------------------------------
 * config */

/* A string key among names (NULL-terminated); absent / null → def (an index). */
static kd_status get_choice(const kd_config *cfg, const char *key, const char *const *names, int def, int *out,
                            kd_err *e) {
    int n = 0;
    while (names[n]) n++;
    return kd_sched__get_enum(cfg, key, names, n, def, out, e);
}

/* Refuses a boolean option this build does not implement. */
static kd_status refuse_true(const kd_config *cfg, const char *key, kd_err *e) {
    int v;
    KD_TRY(kd_sched__get_bool(cfg, key, 0, &v, e));
    if (v) return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: %s true is not supported", cfg->origin, key);
    return KD_OK;
}

/* The training schedule from the keys DPMSolverMultistepScheduler's __init__ uses for it, passed on
 * alone so that other classes' keys (a DDPM variance_type, ...) cannot matter. */
static kd_status train_schedule(dpm *d, const kd_config *cfg, kd_err *e) {
    const cJSON *tb = kd_config_get(cfg, "trained_betas");
    int trained = tb && !cJSON_IsNull(tb);
    const char *bs;
    KD_TRY(kd_config_str_or(cfg, "beta_schedule", "linear", &bs, e));
    d->cosine = !strcmp(bs, "squaredcos_cap_v2");
    if (!trained && strcmp(bs, "linear") && strcmp(bs, "scaled_linear") && !d->cosine)
        return kd_errf(e, KD_ERR_UNSUPPORTED,
                       "%s: beta_schedule '%.64s' is not supported (linear, scaled_linear, squaredcos_cap_v2)",
                       cfg->origin, bs);
    static const char *const keys[] = {"num_train_timesteps", "beta_start", "beta_end", "beta_schedule",
                                       "trained_betas"};
    cJSON *root = cJSON_CreateObject();
    if (!root) return kd_errf(e, KD_ERR_OOM, "out of memory");
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        if (trained && !strcmp(keys[k], "beta_schedule")) continue; /* trained_betas win whatever it says */
        const cJSON *it = kd_config_get(cfg, keys[k]);
        if (!it) continue;
        cJSON *dup = cJSON_Duplicate(it, 1);
        if (!dup || !cJSON_AddItemToObject(root, keys[k], dup)) {
            cJSON_Delete(dup);
            cJSON_Delete(root);
            return kd_errf(e, KD_ERR_OOM, "out of memory");
        }
    }
    kd_config sub = {cfg->origin, root};
    kd_status st = kd_sampler_train_schedule(&sub, &d->T, &d->betas, &d->alphas_cumprod, e);
    cJSON_Delete(root);
    return st;
}

static kd_status dpm_init_with(kd_sampler *s, const kd_config *cfg, int order, int sde, int karras, kd_err *e) {
    if (!cfg || !cfg->root) return kd_errf(e, KD_ERR_INVALID_ARG, "NULL config");
    dpm *d = calloc(1, sizeof *d);
    if (!d) return kd_errf(e, KD_ERR_OOM, "out of memory");
    s->impl = d;
    d->solver_order = order;
    d->sde = sde;
    d->karras = karras;
    d->last_index = -1;
    int v;

    static const char *const pred_names[] = {"epsilon", "sample", "v_prediction", "flow_prediction", NULL};
    KD_TRY(get_choice(cfg, "prediction_type", pred_names, 0, &v, e));
    if (v == 3)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: prediction_type 'flow_prediction' is not supported", cfg->origin);
    d->prediction_type = v == 0 ? KD_PRED_EPSILON : v == 1 ? KD_PRED_SAMPLE : KD_PRED_V;

    KD_TRY(kd_sched__get_bool(cfg, "thresholding", 0, &d->thresholding, e));
    KD_TRY(kd_config_float_or(cfg, "dynamic_thresholding_ratio", 0.995, &d->dynamic_thresholding_ratio, e));
    KD_TRY(kd_config_float_or(cfg, "sample_max_value", 1.0, &d->sample_max_value, e));
    if (d->thresholding && !(d->dynamic_thresholding_ratio >= 0.0 && d->dynamic_thresholding_ratio <= 1.0))
        return kd_errf(e, KD_ERR_FORMAT, "%s: dynamic_thresholding_ratio %g is outside [0, 1] (torch.quantile)",
                       cfg->origin, d->dynamic_thresholding_ratio);

    /* __init__ maps DEIS / UniPC solver types to midpoint */
    static const char *const solver_names[] = {"midpoint", "heun", "logrho", "bh1", "bh2", NULL};
    KD_TRY(get_choice(cfg, "solver_type", solver_names, 0, &v, e));
    d->heun = v == 1;

    KD_TRY(kd_sched__get_bool(cfg, "lower_order_final", 1, &d->lower_order_final, e));
    KD_TRY(kd_sched__get_bool(cfg, "euler_at_final", 0, &d->euler_at_final, e));
    KD_TRY(refuse_true(cfg, "use_exponential_sigmas", e));
    KD_TRY(refuse_true(cfg, "use_beta_sigmas", e));
    KD_TRY(refuse_true(cfg, "use_lu_lambdas", e));
    KD_TRY(refuse_true(cfg, "use_flow_sigmas", e));
    KD_TRY(refuse_true(cfg, "rescale_betas_zero_snr", e));

    static const char *const final_names[] = {"zero", "sigma_min", NULL};
    KD_TRY(get_choice(cfg, "final_sigmas_type", final_names, 0, &v, e));
    d->final_sigma_min = v == 1;
    KD_TRY(kd_config_float_or(cfg, "lambda_min_clipped", -INFINITY, &d->lambda_min_clipped, e));

    /* only these two drop the variance half; any other value (a DDPM config's "fixed_small") is None */
    const char *vt;
    KD_TRY(kd_config_str_or(cfg, "variance_type", NULL, &vt, e));
    d->learned_variance = vt && (!strcmp(vt, "learned") || !strcmp(vt, "learned_range"));

    static const char *const spacing_names[] = {"linspace", "leading", "trailing", NULL};
    KD_TRY(get_choice(cfg, "timestep_spacing", spacing_names, 0, &v, e));
    d->spacing = v == 0 ? KD_SPACING_LINSPACE : v == 1 ? KD_SPACING_LEADING : KD_SPACING_TRAILING;
    int64_t off;
    KD_TRY(kd_config_int_or(cfg, "steps_offset", 0, &off, e));
    if (off < -(INT64_C(1) << 30) || off > (INT64_C(1) << 30))
        return kd_errf(e, KD_ERR_FORMAT, "%s: steps_offset %lld is out of range", cfg->origin, (long long)off);
    d->steps_offset = (int)off;

    KD_TRY(train_schedule(d, cfg, e));
    if (karras && d->T < 2)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: Karras sigmas need num_train_timesteps >= 2", cfg->origin);
    s->init_noise_sigma = 1.0f;
    s->order = 1;
    return KD_OK;
}

static void dpm_destroy(kd_sampler *s) {
    dpm *d = D(s);
    if (!d) return;
    free(d->betas);
    free(d->alphas_cumprod);
    free(d->sigmas);
    for (int k = 0; k < 3; k++) free(d->hist[k]);
    free(d->noise);
    free(d->sel);
    free(d);
    s->impl = NULL;
}

/* ------------------------------------------------------------------------------------------------
 * set_timesteps */

/* numpy's float32 np.log, bit for bit: kd_np_logf (sigma_util.c). */
#define np_logf kd_np_logf

static float t_logf(float x) { return (float)log((double)x); }
static float t_expf(float x) { return (float)exp((double)x); }

/* _sigma_to_alpha_sigma_t: alpha_t = 1 / (σ² + 1) ** 0.5, sigma_t = σ · alpha_t (float32). */
static void alpha_sigma(float sigma, float *alpha_t, float *sigma_t) {
    float a = 1.0f / sqrtf(sigma * sigma + 1.0f);
    *alpha_t = a;
    *sigma_t = sigma * a;
}

static float lambda_of(float alpha_t, float sigma_t) { return t_logf(alpha_t) - t_logf(sigma_t); }

/* np.linspace(0, stop, num)[i] (numpy: arange · step + 0, the last exactly stop; step 0 → arange /
 * div · delta). */
static double np_linspace0(double stop, int num, int i) {
    if (num == 1) return 0.0;
    if (i == num - 1) return stop;
    double div = (double)(num - 1), step = stop / div;
    return step == 0.0 ? (double)i / div * stop : (double)i * step;
}

/* diffusers _sigma_to_t: low = the last index whose log σ is <= log(max(σ, 1e-10)) (0 when none:
 * cumsum(dists >= 0).argmax()), clipped to T - 2; w = (low - log σ) / (low - high) with low - high
 * in float32 (numpy: float32 arrays) and the rest in float64, clipped to [0, 1]. */
static double sigma_to_t(double sigma, const float *log_sigmas, int T) {
    double ls = log(sigma > 1e-10 ? sigma : 1e-10);
    if (isnan(sigma)) ls = sigma;
    int low = 0;
    for (int j = T - 1; j >= 0; j--)
        if (ls - (double)log_sigmas[j] >= 0.0) {
            low = j;
            break;
        }
    if (low > T - 2) low = T - 2;
    float lo = log_sigmas[low], hi = log_sigmas[low + 1];
    float den = lo - hi;
    double w = ((double)lo - ls) / (double)den;
    if (w < 0.0) w = 0.0; /* np.clip keeps NaN */
    if (w > 1.0) w = 1.0;
    return (1.0 - w) * (double)low + w * (double)(low + 1);
}

/* np.interp(t, arange(T), fp) at an integer t: fp[t], clamped to the ends. */
static float interp_int(int64_t t, const float *fp, int T) {
    if (t < 0) return fp[0];
    if (t > T - 1) return fp[T - 1];
    return fp[t];
}

static kd_status dpm_set_timesteps(kd_sampler *s, int n, kd_err *e) {
    dpm *d = D(s);
    const int T = d->T;
    const float *ac = d->alphas_cumprod;
    if (n < 1) return kd_errf(e, KD_ERR_INVALID_ARG, "set_timesteps: %d steps", n);
    int64_t *ts = NULL;
    double *ksig = NULL;
    float *train = NULL, *work = NULL;
    kd_status st = KD_OK;
    int len = n;

    train = malloc((size_t)T * sizeof *train);
    work = malloc((size_t)T * sizeof *work);
    ts = malloc(((size_t)n + 2) * sizeof *ts);
    if (!train || !work || !ts) {
        st = kd_errf(e, KD_ERR_OOM, "set_timesteps: out of memory");
        goto done;
    }
    for (int j = 0; j < T; j++) {
        float num = 1.0f - ac[j];
        train[j] = sqrtf(num / ac[j]);
    }

    if (!d->karras) {
        /* clipped_idx = torch.searchsorted(flip(lambda_t), lambda_min_clipped) (float32 compare) */
        for (int j = 0; j < T; j++) {
            float a = sqrtf(ac[j]), sg = sqrtf(1.0f - ac[j]);
            work[T - 1 - j] = t_logf(a) - t_logf(sg);
        }
        float val = (float)d->lambda_min_clipped;
        int lo = 0, hi = T;
        while (lo < hi) {
            int mid = lo + ((hi - lo) >> 1);
            if (!(work[mid] >= val)) lo = mid + 1;
            else hi = mid;
        }
        const int L = T - lo;
        if (L < 1) { /* diffusers would go on with an empty or negative range */
            st = kd_errf(e, KD_ERR_INVALID_ARG, "set_timesteps: lambda_min_clipped %g clips all %d timesteps",
                         d->lambda_min_clipped, T);
            goto done;
        }
        if (d->spacing == KD_SPACING_LINSPACE) {
            for (int k = 0; k < n; k++) ts[k] = (int64_t)rint(np_linspace0((double)(L - 1), n + 1, n - k));
        } else if (d->spacing == KD_SPACING_LEADING) {
            int64_t ratio = (int64_t)L / ((int64_t)n + 1); /* Python // of non-negative ints */
            for (int k = 0; k < n; k++) ts[k] = (int64_t)(n - k) * ratio + d->steps_offset;
        } else {
            /* np.arange(L, 0, -T / n): length ceil((0 - L) / step), values start, start + step,
             * then start + i · ((start + step) - start); rounded half to even, - 1 */
            double step = -((double)T / (double)n);
            double lenf = ceil((0.0 - (double)L) / step);
            if (!(lenf >= 1.0)) {
                st = kd_errf(e, KD_ERR_INVALID_ARG,
                             "set_timesteps: 'trailing' spacing leaves no timesteps (lambda_min_clipped %g clips "
                             "all %d)", d->lambda_min_clipped, T);
                goto done;
            }
            len = lenf > (double)n + 1 ? n + 1 : (int)lenf; /* <= n + 1 for L <= T */
            double v0 = (double)L, v1 = v0 + step, delta = v1 - v0;
            for (int k = 0; k < len; k++) {
                double v = k == 0 ? v0 : k == 1 ? v1 : v0 + (double)k * delta;
                ts[k] = (int64_t)rint(v) - 1;
            }
        }
    } else {
        /* Karras: in_sigmas = flip(σ_train): σmin = σ_train[0], σmax = σ_train[T - 1] */
        ksig = malloc((size_t)n * sizeof *ksig);
        if (!ksig) {
            st = kd_errf(e, KD_ERR_OOM, "set_timesteps: out of memory");
            goto done;
        }
        for (int j = 0; j < T; j++) work[j] = np_logf(train[j]);
        const double rho = 7.0;
        double min_inv = pow((double)train[0], 1.0 / rho), max_inv = pow((double)train[T - 1], 1.0 / rho);
        double dinv = min_inv - max_inv;
        for (int k = 0; k < n; k++) {
            double r = np_linspace0(1.0, n, k);
            double p = r * dinv;
            ksig[k] = pow(max_inv + p, rho);
            double t = sigma_to_t(ksig[k], work, T);
            if (!d->cosine) t = rint(t);
            if (!(t >= -9.2e18 && t <= 9.2e18)) {
                st = kd_errf(e, KD_ERR_NUMERIC, "set_timesteps: Karras timestep %d is %g", k, t);
                goto done;
            }
            ts[k] = (int64_t)t; /* torch .to(int64): truncation */
        }
    }

    {
        float *sig = malloc(((size_t)len + 1) * sizeof *sig);
        double *tsd = malloc((size_t)len * sizeof *tsd);
        if (!sig || !tsd) {
            free(sig);
            free(tsd);
            st = kd_errf(e, KD_ERR_OOM, "set_timesteps: out of memory");
            goto done;
        }
        for (int k = 0; k < len; k++) {
            sig[k] = d->karras ? (float)ksig[k] : interp_int(ts[k], train, T);
            tsd[k] = (double)ts[k];
        }
        float num0 = 1.0f - ac[0];
        sig[len] = d->final_sigma_min ? sqrtf(num0 / ac[0]) : 0.0f;
        free(d->sigmas);
        d->sigmas = sig;
        free(s->timesteps);
        s->timesteps = tsd;
        s->num_timesteps = len;
        /* set_timesteps resets model_outputs and lower_order_nums */
        d->lower_order_nums = 0;
        d->last_index = -1;
    }

done:
    free(train);
    free(work);
    free(ts);
    free(ksig);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * step */

static kd_status ensure_buffers(dpm *d, size_t n, size_t row, kd_err *e) {
    if (d->n == n && d->row == row && d->noise) return KD_OK;
    for (int k = 0; k < 3; k++) {
        free(d->hist[k]);
        d->hist[k] = NULL;
    }
    free(d->noise);
    free(d->sel);
    d->noise = d->sel = NULL;
    d->n = d->row = 0;
    for (int k = 0; k < d->solver_order; k++)
        if (!(d->hist[k] = malloc(n * sizeof(float)))) goto oom;
    if (!(d->noise = malloc(n * sizeof(float))) || !(d->sel = malloc(row * sizeof(float)))) goto oom;
    d->n = n;
    d->row = row;
    return KD_OK;
oom:
    return kd_errf(e, KD_ERR_OOM, "step: out of memory for %zu values", n);
}

static kd_status dpm_step(kd_sampler *s, int i, const float *mo, int64_t mc, const float *x,
                          const kd_sched_shape *shape, kd_rng *rng, float *prev, kd_err *e) {
    dpm *d = D(s);
    const int N = s->num_timesteps;
    const int64_t lim = INT64_C(1) << 40;
    if (shape->batch > lim / shape->channels || shape->batch * shape->channels > lim / shape->inner ||
        mc * shape->inner > lim)
        return kd_errf(e, KD_ERR_INVALID_ARG, "step: sample too large");
    if (d->sde && !rng) return kd_errf(e, KD_ERR_INVALID_ARG, "step: the SDE variant draws noise but rng is NULL");
    const size_t row = (size_t)(shape->channels * shape->inner);
    const size_t n = (size_t)shape->batch * row;
    const size_t mo_stride = (size_t)(mc * shape->inner); /* a variance half (2·C) is skipped */
    const int consecutive = i > 0 && i == d->last_index + 1 && n == d->n && row == d->row;
    if (!consecutive) {
        KD_TRY(ensure_buffers(d, n, row, e));
        d->lower_order_nums = 0;
    }
    const int K = i; /* step_index */

    const int lower_order_final =
        K == N - 1 && (d->euler_at_final || (d->lower_order_final && N < 15) || !d->final_sigma_min);
    const int lower_order_second = K == N - 2 && d->lower_order_final && N < 15;

    /* convert_model_output → x0_pred, into model_outputs[-1] after the shift */
    float *newest = d->hist[0];
    for (int k = 0; k + 1 < d->solver_order; k++) d->hist[k] = d->hist[k + 1];
    d->hist[d->solver_order - 1] = newest;
    {
        float a_t, s_t;
        alpha_sigma(d->sigmas[K], &a_t, &s_t);
        for (size_t j = 0; j < n; j++) {
            float m = mo[(j / row) * mo_stride + j % row], xj = x[j], x0;
            if (d->prediction_type == KD_PRED_EPSILON) {
                float p = s_t * m;
                x0 = (xj - p) / a_t;
            } else if (d->prediction_type == KD_PRED_SAMPLE) {
                x0 = m;
            } else {
                float p = a_t * xj, q = s_t * m;
                x0 = p - q;
            }
            newest[j] = x0;
        }
        if (d->thresholding) {
            /* _threshold_sample is DDPM's (same code in diffusers): the shared implementation */
            kd_sched th;
            memset(&th, 0, sizeof th);
            th.cfg.dynamic_thresholding_ratio = d->dynamic_thresholding_ratio;
            th.cfg.sample_max_value = d->sample_max_value;
            kd_sched_step_args a;
            memset(&a, 0, sizeof a);
            a.x0 = newest;
            a.sel = d->sel;
            a.batch = shape->batch;
            a.channels = shape->channels;
            a.inner = shape->inner;
            a.n = n;
            kd_sched__threshold(&th, &a);
        }
    }

    if (d->sde) kd_rng_randn(rng, d->noise, n); /* randn_tensor(model_output.shape), every step */
    const float *noise = d->noise;

    int order;
    if (d->solver_order == 1 || d->lower_order_nums < 1 || lower_order_final) order = 1;
    else if (d->solver_order == 2 || d->lower_order_nums < 2 || lower_order_second) order = 2;
    else order = 3;

    const float *m0 = d->hist[d->solver_order - 1];
    float alpha_t, sigma_t, alpha_s0, sigma_s0;
    alpha_sigma(d->sigmas[K + 1], &alpha_t, &sigma_t);
    alpha_sigma(d->sigmas[K], &alpha_s0, &sigma_s0);
    const float lambda_t = lambda_of(alpha_t, sigma_t), lambda_s0 = lambda_of(alpha_s0, sigma_s0);
    const float h = lambda_t - lambda_s0;

    if (order == 1) {
        if (!d->sde) {
            /* x_t = (sigma_t / sigma_s) * sample - (alpha_t * (exp(-h) - 1.0)) * model_output */
            const float A = sigma_t / sigma_s0, B = alpha_t * (t_expf(-h) - 1.0f);
            for (size_t j = 0; j < n; j++) {
                float p = A * x[j], q = B * m0[j];
                prev[j] = p - q;
            }
        } else {
            /* (sigma_t / sigma_s * exp(-h)) * sample + (alpha_t * (1 - exp(-2h))) * model_output
             * + sigma_t * sqrt(1 - exp(-2h)) * noise */
            const float e2 = t_expf(-2.0f * h);
            const float A = (sigma_t / sigma_s0) * t_expf(-h), B = alpha_t * (1.0f - e2);
            const float Cn = sigma_t * sqrtf(1.0f - e2);
            for (size_t j = 0; j < n; j++) {
                float p = A * x[j], q = B * m0[j], r = Cn * noise[j];
                float pq = p + q;
                prev[j] = pq + r;
            }
        }
    } else if (order == 2) {
        const float *m1 = d->hist[d->solver_order - 2];
        float alpha_s1, sigma_s1;
        alpha_sigma(d->sigmas[K - 1], &alpha_s1, &sigma_s1);
        const float lambda_s1 = lambda_of(alpha_s1, sigma_s1);
        const float h0 = lambda_s0 - lambda_s1;
        const float r0 = h0 / h;
        const float inv_r0 = 1.0f / r0; /* D1 = (1.0 / r0) * (m0 - m1) */
        if (!d->sde) {
            const float A = sigma_t / sigma_s0, em = t_expf(-h) - 1.0f, B = alpha_t * em;
            /* midpoint: - 0.5 * (alpha_t * (exp(-h) - 1.0)) * D1;
             * heun:     + (alpha_t * ((exp(-h) - 1.0) / h + 1.0)) * D1 */
            const float C = d->heun ? alpha_t * (em / h + 1.0f) : 0.5f * B;
            for (size_t j = 0; j < n; j++) {
                float dm = m0[j] - m1[j];
                float D1 = inv_r0 * dm;
                float p = A * x[j], q = B * m0[j], r = C * D1;
                float pq = p - q;
                prev[j] = d->heun ? pq + r : pq - r;
            }
        } else {
            const float e2 = t_expf(-2.0f * h);
            const float A = (sigma_t / sigma_s0) * t_expf(-h), om = 1.0f - e2, B = alpha_t * om;
            /* midpoint: + 0.5 * (alpha_t * (1 - exp(-2h))) * D1;
             * heun:     + (alpha_t * ((1.0 - exp(-2h)) / (-2.0 * h) + 1.0)) * D1 */
            const float C = d->heun ? alpha_t * (om / (-2.0f * h) + 1.0f) : 0.5f * B;
            const float Cn = sigma_t * sqrtf(1.0f - e2);
            for (size_t j = 0; j < n; j++) {
                float dm = m0[j] - m1[j];
                float D1 = inv_r0 * dm;
                float p = A * x[j], q = B * m0[j], r = C * D1, w = Cn * noise[j];
                float pq = p + q;
                float pqr = pq + r;
                prev[j] = pqr + w;
            }
        }
    } else {
        /* third order (dpmsolver++ only: the SDE sampler is second order) */
        const float *m1 = d->hist[d->solver_order - 2], *m2 = d->hist[d->solver_order - 3];
        float alpha_s1, sigma_s1, alpha_s2, sigma_s2;
        alpha_sigma(d->sigmas[K - 1], &alpha_s1, &sigma_s1);
        alpha_sigma(d->sigmas[K - 2], &alpha_s2, &sigma_s2);
        const float lambda_s1 = lambda_of(alpha_s1, sigma_s1), lambda_s2 = lambda_of(alpha_s2, sigma_s2);
        const float h0 = lambda_s0 - lambda_s1, h1 = lambda_s1 - lambda_s2;
        const float r0 = h0 / h, r1 = h1 / h;
        const float inv_r0 = 1.0f / r0, inv_r1 = 1.0f / r1;
        const float rs = r0 + r1;
        const float c1 = r0 / rs, c2 = 1.0f / rs;
        const float A = sigma_t / sigma_s0, em = t_expf(-h) - 1.0f;
        const float B = alpha_t * em;                       /* - B * D0 */
        const float C = alpha_t * (em / h + 1.0f);          /* + C * D1 */
        const float Ecoef = alpha_t * ((em + h) / (h * h) - 0.5f); /* - E * D2 */
        for (size_t j = 0; j < n; j++) {
            float d0 = m0[j] - m1[j], d1 = m1[j] - m2[j];
            float D1_0 = inv_r0 * d0, D1_1 = inv_r1 * d1;
            float diff = D1_0 - D1_1;
            float t1 = c1 * diff;
            float D1 = D1_0 + t1;
            float D2 = c2 * diff;
            float p = A * x[j], q = B * m0[j], r = C * D1, w = Ecoef * D2;
            float pq = p - q;
            float pqr = pq + r;
            prev[j] = pqr - w;
        }
    }

    if (d->lower_order_nums < d->solver_order) d->lower_order_nums++;
    d->last_index = i;
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------------
 * add_noise, learned_variance, ops */

static kd_status dpm_add_noise(const kd_sampler *s, int i, const float *original, const float *noise, size_t n,
                               float *out, kd_err *e) {
    const dpm *d = D(s);
    if (n && (!original || !noise || !out)) return kd_errf(e, KD_ERR_INVALID_ARG, "add_noise: NULL argument");
    /* index_for_timestep(timesteps[i]): the second occurrence when the value repeats */
    const double t = s->timesteps[i];
    int k = -1, seen = 0;
    for (int j = 0; j < s->num_timesteps && seen < 2; j++)
        if (s->timesteps[j] == t) {
            k = j;
            seen++;
        }
    float alpha_t, sigma_t;
    alpha_sigma(d->sigmas[k], &alpha_t, &sigma_t);
    for (size_t j = 0; j < n; j++) {
        float p = alpha_t * original[j], q = sigma_t * noise[j];
        out[j] = p + q;
    }
    return KD_OK;
}

static int dpm_learned_variance(const kd_sampler *s) { return D(s)->learned_variance; }

static kd_status init_2m(kd_sampler *s, const kd_config *cfg, kd_err *e) { return dpm_init_with(s, cfg, 2, 0, 0, e); }
static kd_status init_2m_karras(kd_sampler *s, const kd_config *cfg, kd_err *e) {
    return dpm_init_with(s, cfg, 2, 0, 1, e);
}
static kd_status init_3m(kd_sampler *s, const kd_config *cfg, kd_err *e) { return dpm_init_with(s, cfg, 3, 0, 0, e); }
static kd_status init_sde(kd_sampler *s, const kd_config *cfg, kd_err *e) { return dpm_init_with(s, cfg, 2, 1, 0, e); }

const kd_sampler_ops kd_sampler_dpmpp_2m = {"dpm++2m", "DPMSolverMultistepScheduler", init_2m, dpm_destroy,
                                             dpm_set_timesteps, NULL, dpm_step, dpm_add_noise,
                                             dpm_learned_variance};
const kd_sampler_ops kd_sampler_dpmpp_2m_karras = {"dpm++2m-karras", "DPMSolverMultistepScheduler", init_2m_karras,
                                                    dpm_destroy, dpm_set_timesteps, NULL, dpm_step, dpm_add_noise,
                                                    dpm_learned_variance};
const kd_sampler_ops kd_sampler_dpmpp_3m = {"dpm++3m", "DPMSolverMultistepScheduler", init_3m, dpm_destroy,
                                             dpm_set_timesteps, NULL, dpm_step, dpm_add_noise,
                                             dpm_learned_variance};
const kd_sampler_ops kd_sampler_dpmpp_sde = {"dpm++sde", "DPMSolverMultistepScheduler", init_sde, dpm_destroy,
                                              dpm_set_timesteps, NULL, dpm_step, dpm_add_noise,
                                              dpm_learned_variance};

const float *kd_dpm_sigmas(const kd_sampler *s) {
    if (!s || !s->impl || !s->timesteps) return NULL;
    if (s->ops != &kd_sampler_dpmpp_2m && s->ops != &kd_sampler_dpmpp_2m_karras && s->ops != &kd_sampler_dpmpp_3m &&
        s->ops != &kd_sampler_dpmpp_sde)
        return NULL;
    return D(s)->sigmas;
}
