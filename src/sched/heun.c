/* HeunDiscreteScheduler ("heun") of diffusers 0.42 as a sampler: order 2, n steps make 2n - 1
 * model calls. set_timesteps (sigma_util.c) gives n timesteps t_k and n + 1 sigmas σ_k (σ_n = 0);
 * Heun interleaves them as diffusers does:
 *   timesteps [t0, t1, t1, t2, t2, ..., t_{n-1}, t_{n-1}]           (2n - 1, the model calls)
 *   sigmas    [σ0, σ1, σ1, σ2, σ2, ..., σ_{n-1}, σ_{n-1}, 0]         (2n)
 * Each call is a first-order (Euler) step from σ_k to σ_{k+1}, which stores its derivative, dt
 * and input sample, or the second-order correction that follows it, which averages the two
 * derivatives and restarts from the stored sample. Which of the two a call is follows the state,
 * as diffusers' state_in_first_order (dt is None) does: the first call after set_timesteps is
 * first-order, and so is the last call of a loop (σ_{n-1} → 0, nothing to correct). The step
 * index is diffusers' (kd_sigma_step_index): a loop entered at the first entry of a pair (the
 * Kandinsky img2img pipelines slice timesteps[t_start:] without the order; t_start odd) runs one
 * index late, its last call being a second-order step onto σ = 0, which divides by zero: NaN, in
 * diffusers as here. add_noise(i) takes σ at index_for_timestep(timesteps[i]) (σ of a pair is
 * the same either way).
 * float32 torch expressions, one rounding per op (γ = 0, so σ̂ = σ·1):
 *   first order:  σ = sigmas[i], σ_next = sigmas[i + 1], σ_in = σ̂
 *   second order: σ = sigmas[i - 1], σ_next = sigmas[i], σ_in = σ_next
 *   x0 = x - σ_in·m | m·(-σ_in / sqrt(σ_in² + 1)) + x / (σ_in² + 1) | m   (epsilon | v | sample)
 *   x0 = clamp(x0, -clip_sample_range, clip_sample_range) when clip_sample
 *   first:  d = (x - x0) / σ̂;  dt = σ_next - σ̂;  store d, dt, x;  x' = x + d·dt
 *   second: d = (x - x0) / σ_next;  d = (d_stored + d) / 2;  x' = x_stored + d·dt_stored
 * No noise is drawn. A model output with 2·C channels is read for its first C channels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sched/sampler.h"
#include "sched/sigma_util.h"

typedef struct heun_state {
    kd_sigma_sched ss;
    kd_sigma_cursor cur;
    float *sigmas;        /* [2·len] interleaved */
    int n_sigmas;
    int second_order;     /* a first-order step is waiting for its correction */
    float dt;
    float *prev_derivative, *saved_sample; /* [cap] */
    size_t n_saved, cap;
} heun_state;

static heun_state *st_of(const kd_sampler *s) { return s->impl; }

static kd_status heun_init(kd_sampler *s, const kd_config *cfg, kd_err *e) {
    heun_state *st = calloc(1, sizeof *st);
    if (!st) return kd_errf(e, KD_ERR_OOM, "heun: out of memory");
    kd_status r = kd_sigma_init(&st->ss, cfg, KD_SIGMA_HEUN, e);
    if (r != KD_OK) {
        free(st);
        return r;
    }
    s->impl = st;
    s->order = 2;
    return KD_OK;
}

static void heun_destroy(kd_sampler *s) {
    heun_state *st = st_of(s);
    if (!st) return;
    kd_sigma_free(&st->ss);
    free(st->sigmas);
    free(st->prev_derivative);
    free(st->saved_sample);
    free(st);
    s->impl = NULL;
}

static kd_status heun_set_timesteps(kd_sampler *s, int n, kd_err *e) {
    heun_state *st = st_of(s);
    KD_TRY(kd_sigma_set_timesteps(&st->ss, n, e));
    const int len = st->ss.len;
    const int m = 2 * len - 1;
    double *t = malloc((size_t)m * sizeof(double));
    float *sg = malloc((size_t)(2 * len) * sizeof(float));
    if (!t || !sg) {
        free(t);
        free(sg);
        return kd_errf(e, KD_ERR_OOM, "heun: out of memory");
    }
    t[0] = (double)st->ss.timesteps[0];
    for (int k = 1; k < len; k++) t[2 * k - 1] = t[2 * k] = (double)st->ss.timesteps[k];
    sg[0] = st->ss.sigmas[0];
    for (int k = 1; k < len; k++) sg[2 * k - 1] = sg[2 * k] = st->ss.sigmas[k];
    sg[2 * len - 1] = st->ss.sigmas[len];
    free(s->timesteps);
    free(st->sigmas);
    s->timesteps = t;
    s->num_timesteps = m;
    st->sigmas = sg;
    st->n_sigmas = 2 * len;
    st->second_order = 0;
    st->n_saved = 0;
    st->cur.begun = 0;
    s->init_noise_sigma = kd_sigma_init_noise_sigma(&st->ss.cfg, sg, 2 * len);
    return KD_OK;
}

static void heun_scale_model_input(kd_sampler *s, int i, float *x, size_t n) {
    heun_state *st = st_of(s);
    if (!st->sigmas || i < 0 || i >= s->num_timesteps) return;
    int k = kd_sigma_step_index(&st->cur, s->timesteps, s->num_timesteps, i);
    if (k < st->n_sigmas) kd_sigma_scale_input(st->sigmas[k], x, n);
}

static kd_status heun_step(kd_sampler *s, int i, const float *mo, int64_t mc, const float *x,
                           const kd_sched_shape *shape, kd_rng *rng, float *prev, kd_err *e) {
    (void)rng;
    heun_state *st = st_of(s);
    const kd_sigma_config *c = &st->ss.cfg;
    const size_t per = (size_t)(shape->channels * shape->inner);
    const size_t stride = (size_t)(mc * shape->inner);
    const size_t n = (size_t)shape->batch * per;
    const int second = st->second_order;
    const int i0 = i;
    i = kd_sigma_step_index(&st->cur, s->timesteps, s->num_timesteps, i0);
    if (second ? i < 1 || i >= st->n_sigmas : i + 1 >= st->n_sigmas)
        return kd_errf(e, KD_ERR_INVALID_ARG, "heun.step: call %d runs at step index %d, outside the %d sigmas "
                       "(diffusers raises IndexError)", i0, i, st->n_sigmas);
    if (second && n != st->n_saved)
        return kd_errf(e, KD_ERR_INVALID_ARG,
                       "heun.step: second-order call on %zu values after a first-order step on %zu", n, st->n_saved);
    if (!second && n > st->cap) {
        float *a = realloc(st->prev_derivative, n * sizeof(float));
        if (a) st->prev_derivative = a;
        float *b = a ? realloc(st->saved_sample, n * sizeof(float)) : NULL;
        if (b) st->saved_sample = b;
        if (!a || !b) return kd_errf(e, KD_ERR_OOM, "heun.step: out of memory");
        st->cap = n;
    }
    const float sigma = second ? st->sigmas[i - 1] : st->sigmas[i];
    const float sigma_next = second ? st->sigmas[i] : st->sigmas[i + 1];
    const float sigma_hat = sigma * 1.0f; /* σ · (γ + 1), γ = 0 */
    const float sigma_in = second ? sigma_next : sigma_hat;
    const float sq1 = sigma_in * sigma_in + 1.0f;
    const float c_out = -sigma_in / sqrtf(sq1);
    const float lo = -(float)c->clip_sample_range, hi = (float)c->clip_sample_range; /* clamp's bounds in float32 */
    const float dt = second ? st->dt : sigma_next - sigma_hat;
    const float div = second ? sigma_next : sigma_hat;

    for (size_t k = 0; k < n; k++) {
        float m = mo[kd_sigma_mo_index(k, per, stride)], xv = x[k], x0;
        if (c->prediction_type == KD_PRED_EPSILON) {
            float q = sigma_in * m;
            x0 = xv - q;
        } else if (c->prediction_type == KD_PRED_V) {
            float a = m * c_out, b = xv / sq1;
            x0 = a + b;
        } else {
            x0 = m;
        }
        if (c->clip_sample) {
            if (x0 < lo) x0 = lo;
            if (x0 > hi) x0 = hi;
        }
        float d = (xv - x0) / div;
        if (second) {
            float sum = st->prev_derivative[k] + d;
            d = sum / 2.0f;
            float q = d * dt;
            prev[k] = st->saved_sample[k] + q;
        } else {
            st->prev_derivative[k] = d;
            st->saved_sample[k] = xv; /* before prev[k], which may alias x */
            float q = d * dt;
            prev[k] = xv + q;
        }
    }
    if (second) {
        st->second_order = 0;
        st->n_saved = 0;
    } else {
        st->second_order = 1;
        st->dt = dt;
        st->n_saved = n;
    }
    return KD_OK;
}

static kd_status heun_add_noise(const kd_sampler *s, int i, const float *original, const float *noise, size_t n,
                                float *out, kd_err *e) {
    if (n && (!original || !noise || !out))
        return kd_errf(e, KD_ERR_INVALID_ARG, "heun.add_noise: NULL argument");
    kd_sigma_add_noise(st_of(s)->sigmas[kd_sigma_index_for(s->timesteps, s->num_timesteps, i)], original, noise, n,
                       out);
    return KD_OK;
}

const kd_sampler_ops kd_sampler_heun = {"heun", "HeunDiscreteScheduler", heun_init, heun_destroy, heun_set_timesteps,
                                        heun_scale_model_input, heun_step, heun_add_noise, NULL};
