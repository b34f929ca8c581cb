/* UnCLIPScheduler.step (diffusers; the Kandinsky prior's scheduler), float32 in torch's order.
 * Its quirk: with prev_timestep None, or equal to t - 1, beta and alpha are the precomputed
 * betas[t] / alphas[t]; otherwise they are recomputed from alphas_cumprod as
 * beta = 1 - ᾱ_t / ᾱ_prev, alpha = 1 - beta. */
#include <math.h>

#include "sched/internal.h"

kd_status kd_sched__unclip_step(kd_sched *s, int64_t t, int64_t prev, const kd_sched_step_args *a, kd_rng *rng,
                                kd_err *e) {
    const kd_sched_config *c = &s->cfg;
    if (t > 0 && !rng)
        return kd_errf(e, KD_ERR_INVALID_ARG, "UnCLIPScheduler.step: timestep %lld > 0 draws noise but rng is NULL",
                       (long long)t);
    const float a_t = s->alphas_cumprod[t];
    const float a_prev = prev >= 0 ? s->alphas_cumprod[prev] : 1.0f;
    const float beta_prod_t = 1.0f - a_t;
    const float beta_prod_prev = 1.0f - a_prev;
    float beta, alpha;
    if (prev == t - 1) {
        beta = s->betas[t];
        alpha = s->alphas[t];
    } else {
        beta = 1.0f - a_t / a_prev;
        alpha = 1.0f - beta;
    }
    const float sqrt_a = sqrtf(a_t), sqrt_b = sqrtf(beta_prod_t);
    const size_t n = a->n;

    for (size_t i = 0; i < n; i++) {
        float m = a->model_output[kd_sched__mo_index(a, i)];
        a->x0[i] = c->prediction_type == KD_PRED_EPSILON ? (a->sample[i] - sqrt_b * m) / sqrt_a : m;
    }
    if (c->clip_sample) kd_sched__clip(a->x0, n, c->clip_sample_range);

    const float c0 = (sqrtf(a_prev) * beta) / beta_prod_t;
    const float c1 = (sqrtf(alpha) * beta_prod_prev) / beta_prod_t;
    if (t == 0) {
        for (size_t i = 0; i < n; i++) {
            float p = c0 * a->x0[i], q = c1 * a->sample[i];
            a->out[i] = p + q;
        }
        return KD_OK;
    }
    kd_rng_randn(rng, a->noise, n);
    const float variance = (beta_prod_prev / beta_prod_t) * beta;
    float std = 0.0f, min_log = 0.0f, max_log = 0.0f;
    if (c->variance_type == KD_VAR_FIXED_SMALL_LOG) {
        float v = variance < 1e-20f ? 1e-20f : variance;
        std = expf(0.5f * logf(v));
    } else { /* learned_range: no clamp here (diffusers clamps only for fixed_small_log) */
        min_log = logf(variance);
        max_log = logf(beta);
    }
    for (size_t i = 0; i < n; i++) {
        float p = c0 * a->x0[i], q = c1 * a->sample[i];
        float mean = p + q;
        float sd = std;
        if (c->variance_type == KD_VAR_LEARNED_RANGE) {
            float frac = (a->pred_var[kd_sched__mo_index(a, i)] + 1.0f) / 2.0f;
            float lv = frac * max_log + (1.0f - frac) * min_log;
            sd = expf(0.5f * lv);
        }
        a->out[i] = mean + sd * a->noise[i];
    }
    return KD_OK;
}

kd_status kd_sched_step_unclip(kd_sched *s, const float *model_output, int64_t model_channels, int64_t t,
                               int64_t prev_t, const float *sample, const kd_sched_shape *shape, kd_rng *rng,
                               float *prev_sample, float *pred_original, kd_err *e) {
    if (!s) return kd_errf(e, KD_ERR_INVALID_ARG, "UnCLIPScheduler.step: NULL scheduler");
    if (s->cfg.kind != KD_SCHED_UNCLIP)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_sched_step_unclip on a %s", kd_sched_kind_name(s->cfg.kind));
    if (prev_t == KD_SCHED_PREV_NONE) prev_t = t - 1; /* below 0: ᾱ_prev = 1 */
    if (prev_t >= s->cfg.num_train_timesteps)
        return kd_errf(e, KD_ERR_INVALID_ARG, "UnCLIPScheduler.step: previous timestep %lld outside [0, %d)",
                       (long long)prev_t, s->cfg.num_train_timesteps);
    int split = s->cfg.variance_type == KD_VAR_LEARNED_RANGE;
    kd_sched_step_args a;
    KD_TRY(kd_sched__prepare(s, model_output, model_channels, t, sample, shape, split, prev_sample, pred_original, &a,
                             e));
    return kd_sched__unclip_step(s, t, prev_t, &a, rng, e);
}
