/* What the sigma samplers (euler.c: EulerDiscreteScheduler, EulerAncestralDiscreteScheduler;
 * heun.c: HeunDiscreteScheduler) share: reading their config keys, the training sigmas, the
 * timestep / sigma lists of set_timesteps with numpy's float64 and float32 rules, and the little
 * float32 formulas (input scaling, init_noise_sigma, add_noise). Nothing outside src/sched
 * includes this.
 *
 * Numerics of set_timesteps, as diffusers 0.42 computes them:
 *   timesteps   float32 numpy arrays: linspace np.linspace(0, T-1, n, float32) reversed (computed
 *               in float64, rounded once); leading round(arange(n)·(T//n)) reversed, as float32,
 *               + steps_offset; trailing round(arange(T, 0, -T/n)) as float32, - 1 (numpy's
 *               arange length rule: may be n + 1 entries)
 *   train σ     float32 torch: sqrt((1 - ᾱ) / ᾱ). sqrtf here is correctly rounded; torch's CPU
 *               sqrt (MKL VML on x86 builds) is only faithfully rounded, 1 ulp off for ~17% of
 *               inputs, so every σ, and the step coefficients with a ** 0.5, can differ from
 *               diffusers by an ulp (tests/test_sampler_euler.c: bit-identical otherwise)
 *   σ(t)        np.interp(timesteps, arange(T), train σ) in float64, then float32 with a final 0
 *   Karras      ramp = np.linspace(0, 1, n); σ = (σmax^(1/7) + ramp·(σmin^(1/7) - σmax^(1/7)))^7 in
 *               float64; t = _sigma_to_t(σ) against log σ_train computed by numpy's float32 log
 *               (not correctly rounded: its AVX2/AVX512F P5/Q5 rational kernel, reproduced bit
 *               for bit by kd_np_logf); float64 log/pow are libm's (numpy uses SVML there: they
 *               may differ in the last bit of a double, which the float32 results do not show). */
#ifndef KD_SCHED_SIGMA_UTIL_H
#define KD_SCHED_SIGMA_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "io/config.h"
#include "sched/scheduler.h"

typedef enum kd_sigma_class { KD_SIGMA_EULER = 0, KD_SIGMA_EULER_A, KD_SIGMA_HEUN } kd_sigma_class;

typedef struct kd_sigma_config {
    kd_sigma_class cls;
    int num_train_timesteps;            /* T */
    kd_prediction_type prediction_type; /* Euler: epsilon/sample/v; ancestral: epsilon/v; Heun: all */
    kd_timestep_spacing timestep_spacing; /* default linspace */
    int steps_offset;
    int use_karras_sigmas;              /* Euler, Heun */
    int has_sigma_min, has_sigma_max;   /* config sigma_min / sigma_max (Karras bounds) */
    double sigma_min, sigma_max;
    int final_sigma_min;                /* Euler: final_sigmas_type "sigma_min" (else "zero") */
    int clip_sample;                    /* Heun: clip_sample (false), clip_sample_range (1.0) */
    double clip_sample_range;
} kd_sigma_config;

typedef struct kd_sigma_sched {
    kd_sigma_config cfg;
    float *alphas_cumprod; /* [T], kd_sampler_train_schedule's (bit-exact with diffusers) */
    float *train_sigmas;   /* [T] sqrt((1 - ᾱ_t) / ᾱ_t), float32 */
    float *log_sigmas;     /* [T] numpy float32 log of train_sigmas (Karras only, else NULL) */
    /* set by kd_sigma_set_timesteps */
    int len;               /* entries of the timestep list (n, or n + 1 for some trailing n) */
    float *timesteps;      /* [len] float32 values, descending */
    float *sigmas;         /* [len + 1], the last is the final sigma (0 or σ_train[0]) */
} kd_sigma_sched;

/* Reads the keys the class knows (unknown keys ignored, missing → the class defaults, null
 * booleans false) and builds the training schedule. Refuses what diffusers refuses (bad values:
 * KD_ERR_FORMAT) and what is not implemented here (KD_ERR_UNSUPPORTED naming the key). */
kd_status kd_sigma_init(kd_sigma_sched *ss, const kd_config *cfg, kd_sigma_class cls, kd_err *e);
void kd_sigma_free(kd_sigma_sched *ss);

/* set_timesteps(n) before any class-specific reshaping (Heun's interleave): ss->timesteps,
 * ss->sigmas, ss->len. */
kd_status kd_sigma_set_timesteps(kd_sigma_sched *ss, int n, kd_err *e);

/* diffusers' init_noise_sigma over a sigma list: max σ for linspace / trailing spacing, else
 * sqrt(max σ² + 1), in float32. */
float kd_sigma_init_noise_sigma(const kd_sigma_config *c, const float *sigmas, int count);

/* x[i] / sqrt(σ² + 1) in place (scale_model_input). */
void kd_sigma_scale_input(float sigma, float *x, size_t n);

/* out = original + noise · σ (add_noise). */
void kd_sigma_add_noise(float sigma, const float *original, const float *noise, size_t n, float *out);

/* Index into a [batch, model_channels, inner] model output of element i of a [batch, channels,
 * inner] sample (per = channels · inner, mo_stride = model_channels · inner). */
static inline size_t kd_sigma_mo_index(size_t i, size_t per, size_t mo_stride) {
    return (i / per) * mo_stride + i % per;
}

/* diffusers' index_for_timestep: the position of timesteps[i] in the list, the second one when
 * the value occurs more than once (Heun's doubled entries: the index of its first-order step). */
int kd_sigma_index_for(const double *timesteps, int m, int i);

/* diffusers' step index for the interface's index i: _step_index is resolved by
 * index_for_timestep on the first scale_model_input / step after set_timesteps and then counts
 * one per step, so a loop that starts at i0 runs at index_for(i0) + (i - i0). (Only differs from i
 * when timesteps[i0] is repeated: a Heun loop entered at the first entry of a pair, as the
 * Kandinsky img2img pipelines do for an odd t_start, runs one index late.) */
typedef struct kd_sigma_cursor {
    int begun, offset;
} kd_sigma_cursor;
static inline int kd_sigma_step_index(kd_sigma_cursor *c, const double *timesteps, int m, int i) {
    if (!c->begun) {
        c->offset = kd_sigma_index_for(timesteps, m, i) - i;
        c->begun = 1;
    }
    return i + c->offset;
}

/* numpy's float32 np.log (AVX2 / AVX512F kernel), bit for bit. */
float kd_np_logf(float x);

/* The class's diffusers name, for messages. */
const char *kd_sigma_class_name(kd_sigma_class cls);

#endif
