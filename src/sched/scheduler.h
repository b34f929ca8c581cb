/* Noise schedulers: diffusers' DDPMScheduler, DDIMScheduler and UnCLIPScheduler on plain float
 * arrays (no model, no backend). One kd_sched type covers the three; the kind picks the rules.
 *
 * Typical loop (what the Kandinsky pipelines do):
 *   kd_sched *s; kd_sched_load("decoder/scheduler/scheduler_config.json", KD_SCHED_AUTO, &s, &e);
 *   kd_sched_set_timesteps(s, 50, &e);
 *   kd_rng_randn(&rng, x, n);                             // initial latents (init_noise_sigma = 1)
 *   for (i = 0; i < kd_sched_num_timesteps(s); i++) {
 *       int64_t t = kd_sched_timesteps(s)[i];
 *       ... model → eps ([B, C or 2C, inner]) ...
 *       kd_sched_step(s, eps, C_model, t, x, &shape, &rng, x, NULL, &e);   // in place is fine
 *   }
 *
 * Numerics follow diffusers' float32 torch arithmetic operation by operation: betas from
 * torch.linspace in float32 (evaluated start + step·i with an FMA, as torch's x86 kernel is
 * compiled), squaredcos_cap_v2 in double rounded to float32, alphas_cumprod accumulated in double
 * and rounded per entry (torch's CPU cumprod accumulates float in double), step coefficients on
 * float32 0-dim values, element-wise float32 products and sums in the same order and without
 * contraction. log/exp of the variance use libm (torch uses SLEEF: may differ by 1 ulp).
 * The timesteps are computed with numpy's exact float64 rules (arange fill, round half to even),
 * including diffusers' quirks (see each kind below).
 *
 * Stochastic steps draw their noise from the kd_rng exactly as diffusers' randn_tensor does with a
 * CPU generator: one torch.randn of model_output's shape after any variance split (i.e. B·C·inner
 * values), at the point in the step where diffusers draws it:
 *   DDPM / UnCLIP: only when t > 0;  DDIM: only when eta > 0 (every step, whatever t). */
#ifndef KD_SCHED_SCHEDULER_H
#define KD_SCHED_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/rng.h"
#include "io/config.h"

typedef enum kd_sched_kind {
    KD_SCHED_AUTO = 0, /* from the config's "_class_name" */
    KD_SCHED_DDPM,
    KD_SCHED_DDIM,
    KD_SCHED_UNCLIP
} kd_sched_kind;

typedef enum kd_beta_schedule {
    KD_BETA_LINEAR = 0,        /* torch.linspace(beta_start, beta_end, T, float32) */
    KD_BETA_SCALED_LINEAR,     /* torch.linspace(sqrt(beta_start), sqrt(beta_end), T, float32) ** 2 */
    KD_BETA_SQUAREDCOS_CAP_V2, /* betas_for_alpha_bar(T), max beta 0.999 */
    KD_BETA_TRAINED            /* "trained_betas" given in the config */
} kd_beta_schedule;

typedef enum kd_variance_type {
    KD_VAR_FIXED_SMALL = 0,
    KD_VAR_FIXED_SMALL_LOG,
    KD_VAR_FIXED_LARGE,
    KD_VAR_LEARNED,
    KD_VAR_LEARNED_RANGE
} kd_variance_type;

typedef enum kd_prediction_type { KD_PRED_EPSILON = 0, KD_PRED_SAMPLE, KD_PRED_V } kd_prediction_type;

typedef enum kd_timestep_spacing { KD_SPACING_LEADING = 0, KD_SPACING_TRAILING, KD_SPACING_LINSPACE } kd_timestep_spacing;

/* The parsed scheduler_config.json. Fields a kind does not have keep their diffusers defaults
 * and are ignored by that kind. */
typedef struct kd_sched_config {
    kd_sched_kind kind;
    int num_train_timesteps;          /* T (1000) */
    double beta_start, beta_end;      /* 0.0001, 0.02 */
    kd_beta_schedule beta_schedule;   /* linear (UnCLIP: squaredcos_cap_v2, the only one it allows) */
    kd_variance_type variance_type;   /* DDPM: fixed_small; UnCLIP: fixed_small_log */
    int clip_sample;                  /* true */
    double clip_sample_range;         /* 1.0 */
    kd_prediction_type prediction_type; /* epsilon */
    int thresholding;                 /* DDPM, DDIM: false */
    double dynamic_thresholding_ratio; /* 0.995 */
    double sample_max_value;          /* 1.0 */
    kd_timestep_spacing timestep_spacing; /* DDPM, DDIM: leading */
    int steps_offset;                 /* DDPM, DDIM: 0 */
    int set_alpha_to_one;             /* DDIM: true */
} kd_sched_config;

typedef struct kd_sched kd_sched;

/* Tensor layout for step(): sample is [batch, channels, inner] in memory (inner = H·W for
 * latents, 1 for the prior's [B, E] embeddings). */
typedef struct kd_sched_shape {
    int64_t batch, channels, inner;
} kd_sched_shape;

/* Parses a scheduler config. kind = KD_SCHED_AUTO takes it from "_class_name" (DDPMScheduler,
 * DDIMScheduler, UnCLIPScheduler); any other kind reads the keys of that class whatever
 * "_class_name" says (as diffusers' from_config does). As in diffusers, keys the class does not
 * know are ignored (a DDPM config may carry "set_alpha_to_one"), missing keys take the class
 * defaults; a key of the wrong JSON type is KD_ERR_FORMAT naming it; values diffusers rejects, or
 * that this build does not implement (beta_schedule "sigmoid"/"laplace", variance_type
 * "fixed_large_log", rescale_betas_zero_snr: true), are KD_ERR_UNSUPPORTED / KD_ERR_FORMAT.
 * A null value counts as absent, except for booleans where null is false (Python's None). */
kd_status kd_sched_config_parse(const kd_config *cfg, kd_sched_kind kind, kd_sched_config *out, kd_err *e);
/* The diffusers defaults of a class (kind must not be AUTO). */
void kd_sched_config_default(kd_sched_kind kind, kd_sched_config *out);

/* Builds the schedule (betas, alphas, alphas_cumprod). trained_betas (may be NULL) are used when
 * cfg->beta_schedule is KD_BETA_TRAINED: num_train_timesteps values. */
kd_status kd_sched_create(const kd_sched_config *cfg, const double *trained_betas, kd_sched **out, kd_err *e);
/* kd_sched_config_parse + kd_sched_create (reads "trained_betas" when present). */
kd_status kd_sched_from_config(const kd_config *cfg, kd_sched_kind kind, kd_sched **out, kd_err *e);
/* Loads a scheduler_config.json file. */
kd_status kd_sched_load(const char *path, kd_sched_kind kind, kd_sched **out, kd_err *e);
void kd_sched_free(kd_sched *s);

const kd_sched_config *kd_sched_get_config(const kd_sched *s);
const char *kd_sched_kind_name(kd_sched_kind k); /* "DDPMScheduler", ... */
/* float32 arrays of num_train_timesteps entries. */
const float *kd_sched_betas(const kd_sched *s);
const float *kd_sched_alphas_cumprod(const kd_sched *s);
/* init_noise_sigma (1.0 for all three). */
float kd_sched_init_noise_sigma(const kd_sched *s);

/* set_timesteps(n). n must be in [1, num_train_timesteps] (UnCLIP: [2, T]; its rule divides by
 * n - 1). The resulting list (descending) is usually n long, but DDPM/DDIM "trailing" spacing
 * yields n + 1 entries ending in -1 for some n (numpy arange's length rounding; diffusers keeps
 * them): kd_sched_set_timesteps fails with KD_ERR_UNSUPPORTED there rather than index
 * alphas_cumprod[-1] as Python would.
 *   DDPM/DDIM leading:  arange(n) · (T // n), reversed, + steps_offset
 *             trailing: round(arange(T, 0, -T/n)) - 1
 *             linspace: round(linspace(0, T - 1, n)), reversed
 *   UnCLIP:             round(arange(n) · ((T - 1) / (n - 1))), reversed */
kd_status kd_sched_set_timesteps(kd_sched *s, int n, kd_err *e);
int kd_sched_num_timesteps(const kd_sched *s);          /* 0 before set_timesteps */
const int64_t *kd_sched_timesteps(const kd_sched *s);   /* NULL before set_timesteps */
int kd_sched_num_inference_steps(const kd_sched *s);    /* the n given to set_timesteps */

/* The img2img start (the Kandinsky pipelines' get_timesteps): init = min(int(n·strength), n),
 * t_start = max(n - init, 0); the loop runs over timesteps[t_start:]. *start gets t_start,
 * *count the number of timesteps left (0 when strength·n < 1). strength must be in [0, 1]. */
kd_status kd_sched_img2img_start(const kd_sched *s, double strength, int *start, int *count, kd_err *e);

/* DDIM only: eta (default 0) and use_clipped_model_output (default false) of DDIMScheduler.step. */
kd_status kd_sched_set_eta(kd_sched *s, double eta, int use_clipped_model_output, kd_err *e);

/* One denoising step at timestep t (an entry of the timesteps list; DDPM also accepts any t in
 * [0, T) before set_timesteps, stepping to t - 1, as diffusers does).
 *   model_output: [batch, model_channels, inner]; model_channels = channels, or 2·channels for
 *                 DDPM "learned"/"learned_range" and UnCLIP "learned_range" (the second half is
 *                 the predicted variance, as diffusers splits it).
 *   sample:       [batch, channels, inner]
 *   rng:          the generator of the stochastic part (may be NULL only when the step draws no
 *                 noise: t == 0 for DDPM/UnCLIP, eta == 0 for DDIM)
 *   prev_sample:  output, same shape as sample; may alias sample (not model_output)
 *   pred_original: optional output (x0 after clipping/thresholding), may be NULL; must not
 *                 alias the inputs
 * The previous timestep is the next entry of the timesteps list (DDPM; UnCLIP as the prior
 * pipeline passes it, with "None" = t - 1 on the last step), or t - T // n (DDIM, whatever the
 * spacing, as diffusers does). Scratch memory is allocated on the first call and reused. */
kd_status kd_sched_step(kd_sched *s, const float *model_output, int64_t model_channels, int64_t t,
                        const float *sample, const kd_sched_shape *shape, kd_rng *rng, float *prev_sample,
                        float *pred_original, kd_err *e);

/* UnCLIP with an explicit previous timestep (diffusers' prev_timestep argument):
 * KD_SCHED_PREV_NONE means None (t - 1 with the precomputed beta); a negative prev_t means
 * ᾱ_prev = 1. Other kinds: KD_ERR_INVALID_ARG. */
#define KD_SCHED_PREV_NONE INT64_MIN
kd_status kd_sched_step_unclip(kd_sched *s, const float *model_output, int64_t model_channels, int64_t t,
                               int64_t prev_t, const float *sample, const kd_sched_shape *shape, kd_rng *rng,
                               float *prev_sample, float *pred_original, kd_err *e);

/* add_noise: out = sqrt(ᾱ_t)·original + sqrt(1 - ᾱ_t)·noise over n elements, t in [0, T).
 * out may alias either input. */
kd_status kd_sched_add_noise(const kd_sched *s, const float *original, const float *noise, size_t n, int64_t t,
                             float *out, kd_err *e);

#endif
