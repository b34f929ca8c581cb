/* EulerDiscreteScheduler ("euler") and EulerAncestralDiscreteScheduler ("euler-a") of diffusers
 * 0.42 as samplers. set_timesteps and the config keys are in sigma_util.c; the steps below are
 * diffusers' float32 torch expressions, one rounding per torch op, in its order:
 *
 *   Euler (s_churn = 0, so γ = 0 and σ̂ = σ·1 = σ; no noise is drawn)
 *     x0 = x - σ̂·m | m | m·(-σ / sqrt(σ² + 1)) + x / (σ² + 1)      (epsilon | sample | v)
 *     d = (x - x0) / σ̂;  dt = σ_next - σ̂;  x' = x + d·dt
 *   Euler ancestral
 *     x0 as above with σ (epsilon | v_prediction)
 *     σ_up = sqrt(σ_next² · (σ² - σ_next²) / σ²);  σ_down = sqrt(σ_next² - σ_up²)
 *     d = (x - x0) / σ;  x' = x + d·(σ_down - σ);  x' = x' + ε·σ_up,  ε = randn(B·C·inner)
 *     (drawn at every step, the last one included, as randn_tensor(model_output.shape) with the
 *     generator)
 *
 * The step index is the interface's i as diffusers resolves it (kd_sigma_step_index: i itself
 * unless timesteps[i] of the loop's first call is repeated). add_noise(i) takes σ at
 * index_for_timestep(timesteps[i]), as diffusers' add_noise does without a begin index. A model
 * output with 2·C channels (a learned-variance UNet) is read for its first C channels of each
 * batch row: diffusers' Euler classes never split, the Kandinsky pipelines drop the variance half
 * before step. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sampler.h"
#include "sched/sigma_util.h"

typedef struct euler_state {
    kd_sigma_sched ss;
    kd_sigma_cursor cur;
    float *noise; /* ancestral: the step's randn, grown on demand */
    size_t noise_cap;
} euler_state;

static euler_state *st_of(const kd_sampler *s) { return s->impl; }

static kd_status init_cls(kd_sampler *s, const kd_config *cfg, kd_sigma_class cls, kd_err *e) {
    euler_state *st = calloc(1, sizeof *st);
    if (!st) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", kd_sigma_class_name(cls));
    kd_status r = kd_sigma_init(&st->ss, cfg, cls, e);
    if (r != KD_OK) {
        free(st);
        return r;
    }
    s->impl = st;
    s->order = 1;
    return KD_OK;
}

static kd_status euler_init(kd_sampler *s, const kd_config *cfg, kd_err *e) {
    return init_cls(s, cfg, KD_SIGMA_EULER, e);
}
static kd_status euler_a_init(kd_sampler *s, const kd_config *cfg, kd_err *e) {
    return init_cls(s, cfg, KD_SIGMA_EULER_A, e);
}

static void euler_destroy(kd_sampler *s) {
    euler_state *st = st_of(s);
    if (!st) return;
    kd_sigma_free(&st->ss);
    free(st->noise);
    free(st);
    s->impl = NULL;
}

static kd_status euler_set_timesteps(kd_sampler *s, int n, kd_err *e) {
    euler_state *st = st_of(s);
    KD_TRY(kd_sigma_set_timesteps(&st->ss, n, e));
    int m = st->ss.len;
    double *t = malloc((size_t)m * sizeof(double));
    if (!t) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", s->ops->name);
    for (int i = 0; i < m; i++) t[i] = (double)st->ss.timesteps[i];
    free(s->timesteps);
    s->timesteps = t;
    s->num_timesteps = m;
    s->init_noise_sigma = kd_sigma_init_noise_sigma(&st->ss.cfg, st->ss.sigmas, m + 1);
    st->cur.begun = 0;
    return KD_OK;
}

static void euler_scale_model_input(kd_sampler *s, int i, float *x, size_t n) {
    euler_state *st = st_of(s);
    if (!st->ss.sigmas || i < 0 || i >= s->num_timesteps) return;
    int k = kd_sigma_step_index(&st->cur, s->timesteps, s->num_timesteps, i);
    if (k <= st->ss.len) kd_sigma_scale_input(st->ss.sigmas[k], x, n);
}

/* x0 of the prediction types, as the step expressions above. */
static inline float pred_x0(kd_prediction_type p, float x, float m, float sigma, float c_out, float c_den) {
    if (p == KD_PRED_EPSILON) {
        float q = sigma * m;
        return x - q;
    }
    if (p == KD_PRED_SAMPLE) return m;
    float a = m * c_out, b = x / c_den;
    return a + b;
}

static kd_status euler_step(kd_sampler *s, int i, const float *mo, int64_t mc, const float *x,
                            const kd_sched_shape *shape, kd_rng *rng, float *prev, kd_err *e) {
    euler_state *st = st_of(s);
    const kd_sigma_config *c = &st->ss.cfg;
    const size_t per = (size_t)(shape->channels * shape->inner);
    const size_t stride = (size_t)(mc * shape->inner);
    const size_t n = (size_t)shape->batch * per;
    const int ix = kd_sigma_step_index(&st->cur, s->timesteps, s->num_timesteps, i);
    if (ix + 1 > st->ss.len)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.step: call %d runs at step index %d, past the %d sigmas (diffusers "
                       "raises IndexError)", s->ops->name, i, ix, st->ss.len + 1);
    const float sigma = st->ss.sigmas[ix], sigma_next = st->ss.sigmas[ix + 1];
    /* v_prediction: -σ / (σ² + 1) ** 0.5 and σ² + 1 */
    const float sq1 = sigma * sigma + 1.0f;
    const float c_out = -sigma / sqrtf(sq1);

    if (c->cls == KD_SIGMA_EULER) {
        const float sigma_hat = sigma * 1.0f; /* σ · (γ + 1), γ = 0 */
        const float dt = sigma_next - sigma_hat;
        for (size_t k = 0; k < n; k++) {
            float m = mo[kd_sigma_mo_index(k, per, stride)], xv = x[k];
            float x0 = pred_x0(c->prediction_type, xv, m, sigma_hat, c_out, sq1);
            float d = (xv - x0) / sigma_hat;
            float q = d * dt;
            prev[k] = xv + q;
        }
        return KD_OK;
    }

    /* ancestral */
    if (!rng) return kd_errf(e, KD_ERR_INVALID_ARG, "%s.step: draws noise at every step but rng is NULL", s->ops->name);
    if (n > st->noise_cap) {
        float *p = realloc(st->noise, n * sizeof(float));
        if (!p) return kd_errf(e, KD_ERR_OOM, "%s.step: out of memory", s->ops->name);
        st->noise = p;
        st->noise_cap = n;
    }
    const float sf2 = sigma * sigma, st2 = sigma_next * sigma_next;
    const float up2 = (st2 * (sf2 - st2)) / sf2;
    const float sigma_up = sqrtf(up2);
    const float down2 = st2 - sigma_up * sigma_up;
    const float sigma_down = sqrtf(down2);
    const float dt = sigma_down - sigma;
    kd_rng_randn(rng, st->noise, n);
    for (size_t k = 0; k < n; k++) {
        float m = mo[kd_sigma_mo_index(k, per, stride)], xv = x[k];
        float x0 = pred_x0(c->prediction_type, xv, m, sigma, c_out, sq1);
        float d = (xv - x0) / sigma;
        float q = d * dt;
        float y = xv + q;
        float r = st->noise[k] * sigma_up;
        prev[k] = y + r;
    }
    return KD_OK;
}

static kd_status euler_add_noise(const kd_sampler *s, int i, const float *original, const float *noise, size_t n,
                                 float *out, kd_err *e) {
    if (n && (!original || !noise || !out))
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.add_noise: NULL argument", s->ops->name);
    kd_sigma_add_noise(st_of(s)->ss.sigmas[kd_sigma_index_for(s->timesteps, s->num_timesteps, i)], original, noise, n,
                       out);
    return KD_OK;
}

const kd_sampler_ops kd_sampler_euler = {"euler", "EulerDiscreteScheduler", euler_init, euler_destroy,
                                         euler_set_timesteps, euler_scale_model_input, euler_step, euler_add_noise,
                                         NULL};
const kd_sampler_ops kd_sampler_euler_a = {"euler-a", "EulerAncestralDiscreteScheduler", euler_a_init, euler_destroy,
                                           euler_set_timesteps, euler_scale_model_input, euler_step, euler_add_noise,
                                           NULL};
