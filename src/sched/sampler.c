/* The sampler registry, the shared entry points, and DDPM / DDIM / UnCLIP as samplers (thin
 * adapters over kd_sched, whose numerics are parity-tested in test_sched). */
#include "sched/sampler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- registry ---- */

static const kd_sampler_ops *const registry[] = {
    &kd_sampler_ddpm,    &kd_sampler_ddim,    &kd_sampler_unclip, &kd_sampler_dpmpp_2m, &kd_sampler_dpmpp_2m_karras,
    &kd_sampler_dpmpp_3m, &kd_sampler_dpmpp_sde, &kd_sampler_unipc, &kd_sampler_euler,    &kd_sampler_euler_a,
    &kd_sampler_heun,
};
#define N_REGISTRY (sizeof registry / sizeof *registry)

const char *const *kd_sampler_names(void) {
    static const char *names[N_REGISTRY + 1];
    for (size_t i = 0; i < N_REGISTRY; i++) names[i] = registry[i]->name;
    return names;
}

const char *kd_sampler_name_list(void) {
    static char list[512];
    if (!list[0])
        for (size_t i = 0; i < N_REGISTRY; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", registry[i]->name);
    return list;
}

const kd_sampler_ops *kd_sampler_find(const char *name) {
    for (size_t i = 0; name && i < N_REGISTRY; i++)
        if (!strcmp(name, registry[i]->name)) return registry[i];
    return NULL;
}

kd_status kd_sampler_create(const kd_sampler_ops *ops, const kd_config *cfg, kd_sampler **out, kd_err *e) {
    *out = NULL;
    kd_sampler *s = calloc(1, sizeof *s);
    if (!s) return kd_errf(e, KD_ERR_OOM, "sampler: out of memory");
    s->ops = ops;
    s->order = 1;
    s->init_noise_sigma = 1.0f;
    int64_t T;
    kd_status st = kd_config_int_or(cfg, "num_train_timesteps", 1000, &T, e);
    s->num_train_timesteps = (int)T;
    if (st == KD_OK) st = ops->init(s, cfg, e);
    if (st != KD_OK) {
        kd_err_prefix(e, "%s (%s)", ops->name, ops->diffusers_class);
        kd_sampler_free(s);
        return st;
    }
    *out = s;
    return KD_OK;
}

kd_status kd_sampler_from_config(const kd_config *cfg, const char *name, kd_sampler **out, kd_err *e) {
    const kd_sampler_ops *ops = NULL;
    if (name) {
        ops = kd_sampler_find(name);
        if (!ops)
            return kd_errf(e, KD_ERR_INVALID_ARG, "unknown sampler '%.100s' (one of: %s)", name, kd_sampler_name_list());
    } else {
        const char *cls;
        KD_TRY(kd_config_str_or(cfg, "_class_name", NULL, &cls, e));
        if (cls && !strcmp(cls, "DDPMScheduler")) ops = &kd_sampler_ddpm;
        else if (cls && !strcmp(cls, "DDIMScheduler")) ops = &kd_sampler_ddim;
        else if (cls && !strcmp(cls, "UnCLIPScheduler")) ops = &kd_sampler_unclip;
        for (size_t i = 0; !ops && cls && i < N_REGISTRY; i++)
            if (!strcmp(cls, registry[i]->diffusers_class)) ops = registry[i];
        if (!ops)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "_class_name '%s' is not a scheduler this build has (%s)",
                           cls ? cls : "(missing)", kd_sampler_name_list());
    }
    return kd_sampler_create(ops, cfg, out, e);
}

kd_status kd_sampler_load(const char *config_path, const char *name, kd_sampler **out, kd_err *e) {
    kd_config cfg;
    *out = NULL;
    KD_TRY(kd_config_load(config_path, &cfg, e));
    kd_status s = kd_sampler_from_config(&cfg, name, out, e);
    kd_config_free(&cfg);
    if (s != KD_OK && !(e && strstr(e->msg, config_path))) kd_err_prefix(e, "%s", config_path); /* named once */
    return s;
}

void kd_sampler_free(kd_sampler *s) {
    if (!s) return;
    if (s->ops && s->ops->destroy) s->ops->destroy(s);
    free(s->timesteps);
    free(s);
}

/* ---- entry points ---- */

kd_status kd_sampler_set_timesteps(kd_sampler *s, int n, kd_err *e) {
    if (n < 1 || n > 100000) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: %d steps", s->ops->name, n);
    KD_TRY(s->ops->set_timesteps(s, n, e));
    s->num_inference_steps = n;
    return KD_OK;
}

static kd_status check_index(const kd_sampler *s, int i, kd_err *e) {
    if (!s->timesteps || i < 0 || i >= s->num_timesteps)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s: step index %d outside the %d timesteps (set_timesteps first)",
                       s->ops->name, i, s->num_timesteps);
    return KD_OK;
}

kd_status kd_sampler_step(kd_sampler *s, int i, const float *model_output, int64_t model_channels, const float *sample,
                          const kd_sched_shape *shape, kd_rng *rng, float *prev_sample, kd_err *e) {
    KD_TRY(check_index(s, i, e));
    if (!model_output || !sample || !shape || !prev_sample)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.step: NULL argument", s->ops->name);
    if (shape->batch < 1 || shape->channels < 1 || shape->inner < 1 ||
        (model_channels != shape->channels && model_channels != 2 * shape->channels))
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s.step: sample [%lld, %lld, %lld] with %lld model channels", s->ops->name,
                       (long long)shape->batch, (long long)shape->channels, (long long)shape->inner,
                       (long long)model_channels);
    return s->ops->step(s, i, model_output, model_channels, sample, shape, rng, prev_sample, e);
}

kd_status kd_sampler_add_noise(const kd_sampler *s, int i, const float *original, const float *noise, size_t n,
                               float *out, kd_err *e) {
    KD_TRY(check_index(s, i, e));
    return s->ops->add_noise(s, i, original, noise, n, out, e);
}

kd_status kd_sampler_img2img_start(const kd_sampler *s, double strength, int *start, int *count, kd_err *e) {
    if (!(strength >= 0.0 && strength <= 1.0))
        return kd_errf(e, KD_ERR_INVALID_ARG, "img2img strength must be in [0, 1], got %g", strength);
    int n = s->num_inference_steps;
    if (!s->timesteps || n < 1) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: set_timesteps first", s->ops->name);
    int init = (int)((double)n * strength);
    if (init > n) init = n;
    int t_start = n - init > 0 ? n - init : 0;
    /* ×order as diffusers' SD img2img pipelines do (with set_begin_index). Its Kandinsky pipelines
     * slice timesteps[t_start:] without the order: a Heun run then starts inside a pair of its
     * doubled list, runs one sigma late and ends in NaN (checked with diffusers 0.42.1). Only Heun
     * has order 2, so every other sampler starts where diffusers' Kandinsky pipelines start. */
    *start = t_start * s->order;
    if (*start > s->num_timesteps) *start = s->num_timesteps;
    *count = s->num_timesteps - *start;
    return KD_OK;
}

kd_status kd_sampler_train_schedule(const kd_config *cfg, int *T, float **betas, float **alphas_cumprod, kd_err *e) {
    kd_sched *ddpm;
    *betas = *alphas_cumprod = NULL;
    KD_TRY(kd_sched_from_config(cfg, KD_SCHED_DDPM, &ddpm, e));
    int n = kd_sched_get_config(ddpm)->num_train_timesteps;
    *betas = malloc((size_t)n * sizeof(float));
    *alphas_cumprod = malloc((size_t)n * sizeof(float));
    if (!*betas || !*alphas_cumprod) {
        free(*betas);
        free(*alphas_cumprod);
        *betas = *alphas_cumprod = NULL;
        kd_sched_free(ddpm);
        return kd_errf(e, KD_ERR_OOM, "sampler: out of memory");
    }
    memcpy(*betas, kd_sched_betas(ddpm), (size_t)n * sizeof(float));
    memcpy(*alphas_cumprod, kd_sched_alphas_cumprod(ddpm), (size_t)n * sizeof(float));
    *T = n;
    kd_sched_free(ddpm);
    return KD_OK;
}

/* ---- DDPM, DDIM, UnCLIP over kd_sched ---- */

static kd_sched *legacy(const kd_sampler *s) { return s->impl; }

static kd_status legacy_init(kd_sampler *s, const kd_config *cfg, kd_sched_kind kind, kd_err *e) {
    kd_sched *k;
    KD_TRY(kd_sched_from_config(cfg, kind, &k, e));
    s->impl = k;
    s->init_noise_sigma = kd_sched_init_noise_sigma(k);
    return KD_OK;
}
static kd_status ddpm_init(kd_sampler *s, const kd_config *cfg, kd_err *e) {
    return legacy_init(s, cfg, KD_SCHED_DDPM, e);
}
static kd_status ddim_init(kd_sampler *s, const kd_config *cfg, kd_err *e) {
    return legacy_init(s, cfg, KD_SCHED_DDIM, e);
}
static kd_status unclip_init(kd_sampler *s, const kd_config *cfg, kd_err *e) {
    return legacy_init(s, cfg, KD_SCHED_UNCLIP, e);
}

static void legacy_destroy(kd_sampler *s) { kd_sched_free(legacy(s)); }

static kd_status legacy_set_timesteps(kd_sampler *s, int n, kd_err *e) {
    KD_TRY(kd_sched_set_timesteps(legacy(s), n, e));
    int m = kd_sched_num_timesteps(legacy(s));
    double *t = malloc((size_t)m * sizeof(double));
    if (!t) return kd_errf(e, KD_ERR_OOM, "sampler: out of memory");
    for (int i = 0; i < m; i++) t[i] = (double)kd_sched_timesteps(legacy(s))[i];
    free(s->timesteps);
    s->timesteps = t;
    s->num_timesteps = m;
    return KD_OK;
}

static kd_status legacy_step(kd_sampler *s, int i, const float *mo, int64_t mc, const float *x,
                             const kd_sched_shape *shape, kd_rng *rng, float *prev, kd_err *e) {
    const int64_t *ts = kd_sched_timesteps(legacy(s));
    if (kd_sched_get_config(legacy(s))->kind == KD_SCHED_UNCLIP) {
        int64_t p = i + 1 < s->num_timesteps ? ts[i + 1] : KD_SCHED_PREV_NONE;
        return kd_sched_step_unclip(legacy(s), mo, mc, ts[i], p, x, shape, rng, prev, NULL, e);
    }
    return kd_sched_step(legacy(s), mo, mc, ts[i], x, shape, rng, prev, NULL, e);
}

static kd_status legacy_add_noise(const kd_sampler *s, int i, const float *x, const float *noise, size_t n, float *out,
                                  kd_err *e) {
    return kd_sched_add_noise(legacy(s), x, noise, n, kd_sched_timesteps(legacy(s))[i], out, e);
}

static int legacy_learned_variance(const kd_sampler *s) {
    kd_variance_type v = kd_sched_get_config(legacy(s))->variance_type;
    return v == KD_VAR_LEARNED || v == KD_VAR_LEARNED_RANGE;
}

const kd_sampler_ops kd_sampler_ddpm = {"ddpm", "DDPMScheduler", ddpm_init, legacy_destroy, legacy_set_timesteps,
                                        NULL, legacy_step, legacy_add_noise, legacy_learned_variance};
const kd_sampler_ops kd_sampler_ddim = {"ddim", "DDIMScheduler", ddim_init, legacy_destroy, legacy_set_timesteps,
                                        NULL, legacy_step, legacy_add_noise, NULL};
const kd_sampler_ops kd_sampler_unclip = {"unclip", "UnCLIPScheduler", unclip_init, legacy_destroy,
                                          legacy_set_timesteps, NULL, legacy_step, legacy_add_noise,
                                          legacy_learned_variance};
