/* Samplers: every noise scheduler the pipelines can run, behind one interface, named as users
 * know them (AUTOMATIC1111 / stable-diffusion.cpp) and equal to diffusers' classes configured
 * with `Class.from_config(pipe.scheduler.config, **overrides)`.
 *
 *   name             diffusers class + overrides
 *   ddpm             DDPMScheduler
 *   ddim             DDIMScheduler
 *   unclip           UnCLIPScheduler (the prior's default)
 *   dpm++2m          DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)
 *   dpm++2m-karras   the same with use_karras_sigmas=True
 *   dpm++3m          solver_order=3
 *   dpm++sde         algorithm_type="sde-dpmsolver++" (solver_order=2)
 *   unipc            UniPCMultistepScheduler (solver_type="bh2", solver_order=2)
 *   euler            EulerDiscreteScheduler
 *   euler-a          EulerAncestralDiscreteScheduler
 *   heun             HeunDiscreteScheduler
 *
 * The loop a pipeline runs (diffusers' order, scale_model_input included — diffusers' Kandinsky
 * pipelines skip it, which is wrong for the sigma samplers; see docs/NOTES.md):
 *
 *   kd_sampler_set_timesteps(s, steps, e);
 *   x = randn · kd_sampler_init_noise_sigma(s)               (or img2img: kd_sampler_add_noise)
 *   for (i = start; i < kd_sampler_num_timesteps(s); i++) {
 *       t = kd_sampler_timesteps(s)[i];                         (float: sigma samplers interpolate)
 *       in = x; kd_sampler_scale_model_input(s, i, in, n);
 *       out = model(in, t)                                      ([B, model_channels, inner])
 *       kd_sampler_step(s, i, out, model_channels, x, &shape, rng, x, e);
 *   }
 *
 * Numerics follow diffusers' float32 torch arithmetic (and its numpy float64 for timesteps and
 * sigmas) operation by operation, as src/sched's DDPM/DDIM/UnCLIP do; stochastic samplers draw from
 * the kd_rng exactly where and in the shape diffusers' randn_tensor does with a CPU generator. */
#ifndef KD_SCHED_SAMPLER_H
#define KD_SCHED_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/rng.h"
#include "io/config.h"
#include "sched/scheduler.h"

typedef struct kd_sampler kd_sampler;

typedef struct kd_sampler_ops {
    const char *name;            /* "dpm++2m" */
    const char *diffusers_class; /* "DPMSolverMultistepScheduler" */
    /* Reads what this sampler needs from a scheduler_config.json (the model's, whatever its
     * _class_name: keys the class does not know are ignored, missing ones take the class's
     * defaults, as from_config does) and sets up s->impl. The overrides of the name (solver order,
     * Karras sigmas, ...) are applied on top. */
    kd_status (*init)(kd_sampler *s, const kd_config *cfg, kd_err *e);
    void (*destroy)(kd_sampler *s);
    /* set_timesteps(n); afterwards num_timesteps / timesteps describe the model calls. */
    kd_status (*set_timesteps)(kd_sampler *s, int n, kd_err *e);
    /* x[n] ← scale_model_input(x, timesteps[i]) in place; NULL = identity. */
    void (*scale_model_input)(kd_sampler *s, int i, float *x, size_t n);
    /* prev_sample ← step(model_output, timesteps[i], sample). model_output is [batch,
     * model_channels, inner]; model_channels is channels, or 2·channels when the sampler uses a
     * learned variance (learned_variance() = 1), else the extra half is ignored. prev_sample may
     * alias sample. rng may be NULL only for a sampler that draws no noise at this step. */
    kd_status (*step)(kd_sampler *s, int i, const float *model_output, int64_t model_channels, const float *sample,
                      const kd_sched_shape *shape, kd_rng *rng, float *prev_sample, kd_err *e);
    /* out ← add_noise(original, noise, timesteps[i]) over n values (img2img / inpainting: the
     * sampler's own formula, e.g. x + σ·noise for the sigma samplers); out may alias either input. */
    kd_status (*add_noise)(const kd_sampler *s, int i, const float *original, const float *noise, size_t n, float *out,
                           kd_err *e);
    /* 1 when the step consumes the variance half of a learned-variance model output (DDPM with
     * learned / learned_range, UnCLIP learned_range); NULL = 0. */
    int (*learned_variance)(const kd_sampler *s);
} kd_sampler_ops;

struct kd_sampler {
    const kd_sampler_ops *ops;
    /* set by set_timesteps */
    int num_inference_steps;
    int num_timesteps;     /* model calls (Heun: 2·n − 1) */
    double *timesteps;     /* [num_timesteps], owned by the sampler, what the model is called with */
    float init_noise_sigma;
    int order;             /* diffusers' scheduler.order: 2 for Heun, else 1 */
    int num_train_timesteps; /* the config's (1000), set by kd_sampler_create */
    void *impl;            /* the sampler's own state */
};

/* The names above, NULL-terminated, in that order (for --help and error messages). */
const char *const *kd_sampler_names(void);
/* "ddpm, ddim, ..." */
const char *kd_sampler_name_list(void);
/* The ops of a name, NULL when unknown. */
const kd_sampler_ops *kd_sampler_find(const char *name);

/* Creates the sampler `name` from a scheduler_config.json (path); name NULL = the config's own
 * class (DDPMScheduler → ddpm, DDIMScheduler → ddim, UnCLIPScheduler → unclip). An unknown name
 * is KD_ERR_INVALID_ARG with the list of names. */
kd_status kd_sampler_load(const char *config_path, const char *name, kd_sampler **out, kd_err *e);
kd_status kd_sampler_from_config(const kd_config *cfg, const char *name, kd_sampler **out, kd_err *e);
void kd_sampler_free(kd_sampler *s);

static inline const char *kd_sampler_name(const kd_sampler *s) { return s->ops->name; }
kd_status kd_sampler_set_timesteps(kd_sampler *s, int n, kd_err *e);
static inline int kd_sampler_num_timesteps(const kd_sampler *s) { return s->num_timesteps; }
static inline const double *kd_sampler_timesteps(const kd_sampler *s) { return s->timesteps; }
static inline float kd_sampler_init_noise_sigma(const kd_sampler *s) { return s->init_noise_sigma; }
static inline int kd_sampler_learned_variance(const kd_sampler *s) {
    return s->ops->learned_variance ? s->ops->learned_variance(s) : 0;
}
static inline void kd_sampler_scale_model_input(kd_sampler *s, int i, float *x, size_t n) {
    if (s->ops->scale_model_input) s->ops->scale_model_input(s, i, x, n);
}
kd_status kd_sampler_step(kd_sampler *s, int i, const float *model_output, int64_t model_channels, const float *sample,
                          const kd_sched_shape *shape, kd_rng *rng, float *prev_sample, kd_err *e);
kd_status kd_sampler_add_noise(const kd_sampler *s, int i, const float *original, const float *noise, size_t n,
                               float *out, kd_err *e);
/* Kandinsky's get_timesteps: init = min(int(n·strength), n), t_start = max(n − init, 0); the loop
 * starts at index t_start·order (Heun: 2·t_start; diffusers' Kandinsky pipelines forget the order
 * and turn a Heun img2img run into NaN — sampler.c). *count = model calls left (0 when
 * strength·n < 1). */
kd_status kd_sampler_img2img_start(const kd_sampler *s, double strength, int *start, int *count, kd_err *e);

/* ---- for sampler implementations ---- */

/* A sampler of the given ops (registered or not) from a parsed config. */
kd_status kd_sampler_create(const kd_sampler_ops *ops, const kd_config *cfg, kd_sampler **out, kd_err *e);

/* The training schedule a config describes (beta_schedule, beta_start/end, trained_betas,
 * num_train_timesteps), float32 as torch builds it: *betas and *alphas_cumprod are malloc'd
 * [*T] arrays (free them). Uses the same code as DDPMScheduler's (bit for bit). */
kd_status kd_sampler_train_schedule(const kd_config *cfg, int *T, float **betas, float **alphas_cumprod, kd_err *e);

/* The registered samplers (defined in their files). */
extern const kd_sampler_ops kd_sampler_ddpm, kd_sampler_ddim, kd_sampler_unclip;
extern const kd_sampler_ops kd_sampler_dpmpp_2m, kd_sampler_dpmpp_2m_karras, kd_sampler_dpmpp_3m, kd_sampler_dpmpp_sde;
extern const kd_sampler_ops kd_sampler_unipc, kd_sampler_euler, kd_sampler_euler_a, kd_sampler_heun;

#endif
