/* DDIMScheduler.step (diffusers), float32 in torch's operation order.
 * The previous timestep is t - T // n whatever the spacing (diffusers' rule, also for
 * "trailing"/"linspace" lists whose gaps differ); below 0 it uses final_alpha_cumprod
 * (1 with set_alpha_to_one, else alphas_cumprod[0]). */
#include <math.h>

#include "sched/internal.h"

kd_status kd_sched__ddim_step(kd_sched *s, int64_t t, const kd_sched_step_args *a, kd_rng *rng, kd_err *e) {
    const kd_sched_config *c = &s->cfg;
    if (s->num_inference_steps < 1)
        return kd_errf(e, KD_ERR_INVALID_ARG, "DDIMScheduler.step: call set_timesteps first");
    const double eta = s->eta;
    if (eta > 0 && !rng)
        return kd_errf(e, KD_ERR_INVALID_ARG, "DDIMScheduler.step: eta %g > 0 draws noise but rng is NULL", eta);
    const int64_t prev = t - c->num_train_timesteps / s->num_inference_steps;
    const float a_t = s->alphas_cumprod[t];
    const float a_prev = prev >= 0 ? s->alphas_cumprod[prev] : s->final_alpha_cumprod;
    const float beta_prod_t = 1.0f - a_t;
    const float sqrt_a = sqrtf(a_t), sqrt_b = sqrtf(beta_prod_t);
    const size_t n = a->n;
    /* pred_epsilon lives in the noise scratch until the noise is drawn (then it is consumed) */
    float *eps = a->noise;

    for (size_t i = 0; i < n; i++) {
        float m = a->model_output[kd_sched__mo_index(a, i)], x = a->sample[i], x0, pe;
        if (c->prediction_type == KD_PRED_EPSILON) {
            x0 = (x - sqrt_b * m) / sqrt_a;
            pe = m;
        } else if (c->prediction_type == KD_PRED_SAMPLE) {
            x0 = m;
            pe = (x - sqrt_a * x0) / sqrt_b;
        } else {
            x0 = sqrt_a * x - sqrt_b * m;
            float p = sqrt_a * m, q = sqrt_b * x;
            pe = p + q;
        }
        a->x0[i] = x0;
        eps[i] = pe;
    }
    if (c->thresholding) kd_sched__threshold(s, a);
    else if (c->clip_sample) kd_sched__clip(a->x0, n, c->clip_sample_range);

    /* _get_variance, then std_dev_t = eta * variance ** 0.5 (eta cast to float32 by torch) */
    const float beta_prod_prev = 1.0f - a_prev;
    const float variance = (beta_prod_prev / beta_prod_t) * (1.0f - a_t / a_prev);
    const float std = (float)eta * sqrtf(variance);
    const float dir_coef = sqrtf((1.0f - a_prev) - std * std);
    const float sqrt_a_prev = sqrtf(a_prev);

    for (size_t i = 0; i < n; i++) {
        float x0 = a->x0[i];
        float pe = s->use_clipped_model_output ? (a->sample[i] - sqrt_a * x0) / sqrt_b : eps[i];
        float dir = dir_coef * pe;
        float p = sqrt_a_prev * x0;
        a->out[i] = p + dir;
    }
    if (eta > 0) {
        kd_rng_randn(rng, a->noise, n);
        for (size_t i = 0; i < n; i++) a->out[i] = a->out[i] + std * a->noise[i];
    }
    return KD_OK;
}
