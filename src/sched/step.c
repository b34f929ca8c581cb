/* kd_sched_step: the public step of a kd_sched, dispatching to the kind's own (ddpm.c, ddim.c,
 * unclip.c). */
#include "sched/internal.h"

/* ------------------------------------------------------------------------------------------------
 * dispatch */

kd_status kd_sched_step(kd_sched *s, const float *model_output, int64_t model_channels, int64_t t,
                        const float *sample, const kd_sched_shape *shape, kd_rng *rng, float *prev_sample,
                        float *pred_original, kd_err *e) {
    if (!s) return kd_errf(e, KD_ERR_INVALID_ARG, "scheduler step: NULL scheduler");
    kd_sched_step_args a;
    switch (s->cfg.kind) {
    case KD_SCHED_DDPM: {
        int split = s->cfg.variance_type == KD_VAR_LEARNED || s->cfg.variance_type == KD_VAR_LEARNED_RANGE;
        KD_TRY(kd_sched__prepare(s, model_output, model_channels, t, sample, shape, split, prev_sample, pred_original,
                                 &a, e));
        return kd_sched__ddpm_step(s, t, &a, rng, e);
    }
    case KD_SCHED_DDIM:
        KD_TRY(kd_sched__prepare(s, model_output, model_channels, t, sample, shape, 0, prev_sample, pred_original, &a,
                                 e));
        return kd_sched__ddim_step(s, t, &a, rng, e);
    case KD_SCHED_UNCLIP: {
        int64_t prev = KD_SCHED_PREV_NONE;
        if (s->timesteps) {
            int found = 0;
            for (int i = 0; i < s->n_timesteps && !found; i++)
                if (s->timesteps[i] == t) {
                    found = 1;
                    if (i + 1 < s->n_timesteps) prev = s->timesteps[i + 1];
                }
            if (!found)
                return kd_errf(e, KD_ERR_INVALID_ARG,
                               "UnCLIPScheduler.step: timestep %lld is not in the scheduler's timesteps (use "
                               "kd_sched_step_unclip to give the previous timestep)", (long long)t);
        }
        return kd_sched_step_unclip(s, model_output, model_channels, t, prev, sample, shape, rng, prev_sample,
                                    pred_original, e);
    }
    default: return kd_errf(e, KD_ERR_INTERNAL, "scheduler step: bad kind %d", (int)s->cfg.kind);
    }
}
