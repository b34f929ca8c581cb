/* DDPMScheduler.step (the schedule and the shared step parts are in schedule.c). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/internal.h"

/* ------------------------------------------------------------------------------------------------
 * DDPM */

static int64_t ddpm_prev_timestep(const kd_sched *s, int64_t t, int *found) {
    *found = 1;
    if (!s->timesteps) return t - 1;
    for (int i = 0; i < s->n_timesteps; i++)
        if (s->timesteps[i] == t) return i + 1 < s->n_timesteps ? s->timesteps[i + 1] : -1;
    *found = 0;
    return -1;
}

kd_status kd_sched__ddpm_step(kd_sched *s, int64_t t, const kd_sched_step_args *a, kd_rng *rng, kd_err *e) {
    const kd_sched_config *c = &s->cfg;
    int found;
    int64_t prev = ddpm_prev_timestep(s, t, &found);
    if (!found)
        return kd_errf(e, KD_ERR_INVALID_ARG, "DDPMScheduler.step: timestep %lld is not in the scheduler's timesteps",
                       (long long)t);
    if (t > 0 && !rng)
        return kd_errf(e, KD_ERR_INVALID_ARG, "DDPMScheduler.step: timestep %lld > 0 draws noise but rng is NULL",
                       (long long)t);
    const float a_t = s->alphas_cumprod[t];
    const float a_prev = prev >= 0 ? s->alphas_cumprod[prev] : 1.0f;
    const float beta_prod_t = 1.0f - a_t;
    const float beta_prod_prev = 1.0f - a_prev;
    const float cur_alpha = a_t / a_prev;
    const float cur_beta = 1.0f - cur_alpha;
    const float sqrt_a = sqrtf(a_t), sqrt_b = sqrtf(beta_prod_t);
    const size_t n = a->n;

    for (size_t i = 0; i < n; i++) {
        float m = a->model_output[kd_sched__mo_index(a, i)], x = a->sample[i], x0;
        if (c->prediction_type == KD_PRED_EPSILON) x0 = (x - sqrt_b * m) / sqrt_a;
        else if (c->prediction_type == KD_PRED_SAMPLE) x0 = m;
        else x0 = sqrt_a * x - sqrt_b * m;
        a->x0[i] = x0;
    }
    if (c->thresholding) kd_sched__threshold(s, a);
    else if (c->clip_sample) kd_sched__clip(a->x0, n, c->clip_sample_range);

    const float c0 = (sqrtf(a_prev) * cur_beta) / beta_prod_t;
    const float c1 = (sqrtf(cur_alpha) * beta_prod_prev) / beta_prod_t;
    if (t == 0) {
        for (size_t i = 0; i < n; i++) {
            float p = c0 * a->x0[i], q = c1 * a->sample[i];
            a->out[i] = p + q;
        }
        return KD_OK;
    }
    kd_rng_randn(rng, a->noise, n);
    /* _get_variance: fixed_small variance, clamped at 1e-20 */
    float var = ((1.0f - a_prev) / (1.0f - a_t)) * cur_beta;
    if (var < 1e-20f) var = 1e-20f;
    float std = 0.0f, min_log = 0.0f, max_log = 0.0f;
    switch (c->variance_type) {
    case KD_VAR_FIXED_SMALL: std = sqrtf(var); break;
    case KD_VAR_FIXED_SMALL_LOG: std = expf(0.5f * logf(var)); break;
    case KD_VAR_FIXED_LARGE: std = sqrtf(cur_beta); break;
    case KD_VAR_LEARNED: break;
    case KD_VAR_LEARNED_RANGE:
        min_log = logf(var);
        max_log = logf(cur_beta);
        break;
    }
    for (size_t i = 0; i < n; i++) {
        float p = c0 * a->x0[i], q = c1 * a->sample[i];
        float mean = p + q;
        float sd = std;
        if (c->variance_type == KD_VAR_LEARNED || c->variance_type == KD_VAR_LEARNED_RANGE) {
            /* without the variance half diffusers has predicted_variance None and fails; prepare()
             * has required it */
            float v = a->pred_var[kd_sched__mo_index(a, i)];
            if (c->variance_type == KD_VAR_LEARNED) {
                sd = sqrtf(v);
            } else {
                float frac = (v + 1.0f) / 2.0f;
                float lv = frac * max_log + (1.0f - frac) * min_log;
                sd = expf(0.5f * lv);
            }
        }
        a->out[i] = mean + sd * a->noise[i];
    }
    return KD_OK;
}
