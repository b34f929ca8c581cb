/* Kandinsky 2.0's own samplers, as its original code runs them (ai-forever/Kandinsky-2:
 * model/gaussian_diffusion.py + respace.py for "p_sampler", model/samplers.py for "ddim_sampler"
 * and "plms_sampler"; kandinsky2_model.py generate_img for how they are called):
 *
 *   p_sampler   SpacedDiffusion(timestep_respacing = str(steps)) .p_sample_loop: learned-range
 *               variance from the model's channels C..2C, x0 = √(1/ᾱ)·x − √(1/ᾱ−1)·ε, then
 *               denoised_fn (inpainting: threshold + blend with the init latents) and, always,
 *               clip_denoised's dynamic threshold (the 99.5th percentile of |x0| of SAMPLE 0, at
 *               least 1: x0 = clip(x0, ±s) / s); mean from the posterior; + exp(½·logvar)·noise
 *               except at the last step. The model sees t·1000/1000 of the respaced map.
 *   ddim_sampler  ldm's DDIMSampler on the 1000-step schedule: timesteps 1, 1+k, 1+2k, ...
 *               (k = 1000 / steps), σ = η·√((1−ᾱprev)/(1−ᾱ)·(1−ᾱ/ᾱprev)), no thresholding.
 *   plms_sampler  ldm's PLMSSampler on the same timesteps (η = 0): pseudo improved Euler on the
 *               first step (two model calls), then 2-, 3- and 4-step Adams–Bashforth.
 *
 * The original loops carry the whole CFG batch [cond; uncond] but feed only its first half to the
 * model, so only that half matters; the noise of every step is drawn for the whole batch (2·B
 * samples), and that is what is reproduced: the stream of a torch CPU generator (kd_rng) gives the
 * original code's result on the CPU. (The original runs DDIM / PLMS on CUDA, whose generator is a
 * different one; see docs/NOTES.md.) Coefficients are float64 tables rounded to float32 per step,
 * the arithmetic float32 in torch's order. */
#ifndef KD_SCHED_GUIDED_H
#define KD_SCHED_GUIDED_H

#include <stdint.h>

#include "core/err.h"
#include "core/rng.h"

typedef enum kd_g20_kind { KD_G20_P, KD_G20_DDIM, KD_G20_PLMS } kd_g20_kind;

#define KD_G20_T 1000

typedef struct kd_g20 {
    kd_g20_kind kind;
    int n;                 /* loop steps */
    int steps;             /* as asked (p_sampler's respacing; DDIM's stride 1000 / steps) */
    double eta;            /* DDIM */
    int64_t t[KD_G20_T];   /* per loop step i (0 = first): the timestep given to the model */
    int index[KD_G20_T];   /* p: the respaced index of step i; DDIM/PLMS: the ddim index */
    /* p_sampler (respaced process, indexed by respaced index) */
    double betas[KD_G20_T], sqrt_recip_ac[KD_G20_T], sqrt_recipm1_ac[KD_G20_T], coef1[KD_G20_T], coef2[KD_G20_T],
        post_log_var[KD_G20_T];
    int n_resp;
    /* DDIM / PLMS (indexed by ddim index) */
    double a[KD_G20_T], a_prev[KD_G20_T], sigma[KD_G20_T];
    int n_ddim;
} kd_g20;

/* The process for `steps` steps of kind, starting at init_step (-1: from the start): p_sampler
 * keeps the respaced indices below init_step; DDIM / PLMS the timesteps <= init_step (as the
 * original's apply_init_step, where init_step is int(1000·(1 − strength))). */
kd_status kd_g20_init(kd_g20 *s, kd_g20_kind kind, int steps, double eta, int init_step, kd_err *e);

/* The timestep of the q_sample that starts image-to-image: timestep_map[init_step − 1]. */
int64_t kd_g20_img2img_t(const kd_g20 *s, int init_step);

/* The model, as the sampler calls it: x[B, C, HW] (the first half of the CFG batch) at model
 * timestep t → the guided ε[B, C, HW] and, for p_sampler, the variance channels of the
 * conditional half var[B, C, HW]. */
typedef kd_status (*kd_g20_model_fn)(void *ctx, const float *x, float t, float *eps, float *var, kd_err *e);

/* Optional denoised_fn for p_sampler (inpainting): x0[B, C, HW] in place. */
typedef void (*kd_g20_denoise_fn)(void *ctx, float *x0, int64_t B, int64_t C, int64_t HW);

/* Runs the loop on x[B, C, HW] in place (the first half of the original's 2B batch), drawing each
 * step's noise for 2B samples from rng. */
kd_status kd_g20_run(const kd_g20 *s, kd_g20_model_fn model, kd_g20_denoise_fn denoise, void *ctx, float *x, int64_t B,
                     int64_t C, int64_t HW, kd_rng *rng, kd_err *e);

/* The original's dynamic threshold on x0[B, C·HW] in place: s = max(1, percentile(|x0[0]|, p)),
 * x0 = clip(x0, −s, s) / s for every sample (numpy's linear percentile of sample 0). */
void kd_g20_dynamic_threshold(float *x0, int64_t B, int64_t per_sample, double p);

/* The original's linear beta schedule (1e-4 → 0.02 over 1000 steps, np.linspace) → ᾱ in float64. */
void kd_g20_alphas_cumprod(double *ac);

#endif
