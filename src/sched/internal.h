/* Internals of the kd_sched kinds: schedule.c holds the schedule and the common parts of a step,
 * ddpm.c, ddim.c and unclip.c their own steps, step.c the dispatch. Nothing outside src/sched
 * includes this (but the samplers that reuse the thresholding). */
#ifndef KD_SCHED_INTERNAL_H
#define KD_SCHED_INTERNAL_H

#include "sched/scheduler.h"

struct kd_sched {
    kd_sched_config cfg;
    float *betas, *alphas, *alphas_cumprod; /* num_train_timesteps each */
    float final_alpha_cumprod;              /* DDIM: 1 or alphas_cumprod[0] */
    int64_t *timesteps;
    int n_timesteps, num_inference_steps;
    double eta;                             /* DDIM step arguments */
    int use_clipped_model_output;
    float *scratch;                         /* grown on demand, reused across steps */
    size_t scratch_cap;
};

/* Checked arguments of a step, shared by the three kinds. */
typedef struct kd_sched_step_args {
    const float *model_output; /* the prediction: [batch, channels, inner] slices of model_output */
    const float *pred_var;     /* the variance half, or NULL */
    int64_t mo_batch_stride;   /* model_channels · inner */
    const float *sample;
    int64_t batch, channels, inner;
    size_t n;                  /* batch · channels · inner */
    float *out, *x0;           /* x0: scratch or pred_original */
    float *noise;              /* scratch for n values */
    float *sel;                /* scratch for channels · inner values (thresholding) */
} kd_sched_step_args;

/* scheduler_config.json readers with diffusers' semantics, shared by every scheduler and sampler:
 * a missing key takes def; a null boolean is false (None); out-of-range ints and unknown enum
 * strings are KD_ERR_FORMAT naming the file and key. get_enum: names[i] ↔ i (NULL entries are
 * gaps, never matched); absent or null → def. */
kd_status kd_sched__get_bool(const kd_config *cfg, const char *key, int def, int *out, kd_err *e);
kd_status kd_sched__get_int(const kd_config *cfg, const char *key, int def, int64_t lo, int64_t hi, int *out,
                            kd_err *e);
kd_status kd_sched__get_enum(const kd_config *cfg, const char *key, const char *const *names, int count, int def,
                             int *out, kd_err *e);

kd_status kd_sched__prepare(kd_sched *s, const float *model_output, int64_t model_channels, int64_t t,
                            const float *sample, const kd_sched_shape *shape, int split_variance, float *prev_sample,
                            float *pred_original, kd_sched_step_args *a, kd_err *e);
/* element i of the prediction / predicted variance */
static inline size_t kd_sched__mo_index(const kd_sched_step_args *a, size_t i) {
    size_t per = (size_t)(a->channels * a->inner);
    return (i / per) * (size_t)a->mo_batch_stride + i % per;
}
/* DDPM/DDIM dynamic thresholding of x0 in place (per batch row). */
void kd_sched__threshold(const kd_sched *s, const kd_sched_step_args *a);
void kd_sched__clip(float *x, size_t n, double range);
kd_status kd_sched__ddpm_step(kd_sched *s, int64_t t, const kd_sched_step_args *a, kd_rng *rng, kd_err *e);
kd_status kd_sched__ddim_step(kd_sched *s, int64_t t, const kd_sched_step_args *a, kd_rng *rng, kd_err *e);
kd_status kd_sched__unclip_step(kd_sched *s, int64_t t, int64_t prev_t, const kd_sched_step_args *a, kd_rng *rng,
                                kd_err *e);

#endif
