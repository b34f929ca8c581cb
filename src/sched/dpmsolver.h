/* DPM-Solver++ samplers (dpmsolver.c: kd_sampler_dpmpp_2m, _2m_karras, _3m, _sde, declared in
 * sampler.h). What is not part of the kd_sampler interface, for tests and diagnostics. */
#ifndef KD_SCHED_DPMSOLVER_H
#define KD_SCHED_DPMSOLVER_H

#include "sched/sampler.h"

/* diffusers' scheduler.sigmas after set_timesteps: float32, kd_sampler_num_timesteps(s) + 1
 * entries (the last is the final sigma). NULL before set_timesteps or for another sampler. */
const float *kd_dpm_sigmas(const kd_sampler *s);

#endif
