/* The sampler interface (src/sched/sampler.h): the registry and its names, an unknown name refused
 * with the list, DDPM / DDIM / UnCLIP as samplers giving bit for bit what kd_sched gives (whose
 * numerics test_sched checks against diffusers), the img2img start of Kandinsky's get_timesteps,
 * and bad calls (no set_timesteps, an index out of range, a bad shape) refused with a message. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/config.h"
#include "sched/sampler.h"
#include "testutil.h"

#define B 2
#define C 3
#define INNER 5
#define N (B * C * INNER)

static void test_registry(void) {
    const char *const *names = kd_sampler_names();
    int n = 0;
    for (; names[n]; n++) {
        const kd_sampler_ops *ops = kd_sampler_find(names[n]);
        TEST_CHECK(ops && !strcmp(ops->name, names[n]), "kd_sampler_find(%s)", names[n]);
        TEST_CHECK(strstr(kd_sampler_name_list(), names[n]) != NULL, "%s in the list", names[n]);
    }
    TEST_CHECK(n >= 3 && kd_sampler_find("ddpm") && kd_sampler_find("ddim") && kd_sampler_find("unclip"),
               "ddpm, ddim and unclip are registered (%d names)", n);
    TEST_CHECK(!kd_sampler_find("DDPM") && !kd_sampler_find("") && !kd_sampler_find(NULL), "names are exact");
}

static kd_status load(const char *rel, const char *name, kd_sampler **s, kd_err *e) {
    return kd_sampler_load(kt_data_path(rel), name, s, e);
}

/* A fixed "model": out = 0.9·x + 0.1·base, [B, mc, INNER] (the variance half, if any, = 0.3). */
static void model(const float *x, int64_t mc, float *out) {
    for (int b = 0; b < B; b++)
        for (int c = 0; c < mc; c++)
            for (int k = 0; k < INNER; k++) {
                float *o = out + ((size_t)b * mc + c) * INNER + k;
                *o = c < C ? 0.9f * x[((size_t)b * C + c) * INNER + k] + 0.1f * (float)((c + k) % 5 - 2) : 0.3f;
            }
}

/* The same loop through kd_sampler and through kd_sched: bit-equal samples after every step. */
static void test_adapter(const char *rel, const char *name, kd_sched_kind kind, int steps) {
    kd_err e = {0};
    kd_sampler *s = NULL;
    kd_sched *k = NULL;
    TEST_CHECK(load(rel, name, &s, &e) == KD_OK, "load %s as %s: %s", rel, name, e.msg);
    TEST_CHECK(kd_sched_load(kt_data_path(rel), kind, &k, &e) == KD_OK, "kd_sched_load %s: %s", rel, e.msg);
    if (!s || !k) goto done;
    TEST_CHECK(kd_sampler_set_timesteps(s, steps, &e) == KD_OK && kd_sched_set_timesteps(k, steps, &e) == KD_OK,
               "%s set_timesteps(%d): %s", name, steps, e.msg);
    TEST_CHECK(kd_sampler_num_timesteps(s) == kd_sched_num_timesteps(k), "%s: %d timesteps", name,
               kd_sampler_num_timesteps(s));
    int same_t = 1;
    for (int i = 0; i < kd_sampler_num_timesteps(s); i++)
        same_t &= kd_sampler_timesteps(s)[i] == (double)kd_sched_timesteps(k)[i];
    TEST_CHECK(same_t, "%s: the same timesteps", name);
    int64_t mc = kd_sampler_learned_variance(s) ? 2 * C : C;
    float xa[N], xb[N], out[2 * N];
    kd_rng ra, rb;
    kd_rng_seed(&ra, 7);
    kd_rng_seed(&rb, 7);
    kd_rng_randn(&ra, xa, N);
    memcpy(xb, xa, sizeof xa);
    kd_rng_randn(&rb, xb, N); /* keep the two generators in step */
    memcpy(xb, xa, sizeof xa);
    kd_sched_shape shape = {B, C, INNER};
    int equal = 1;
    for (int i = 0; i < kd_sampler_num_timesteps(s) && equal; i++) {
        model(xa, mc, out);
        kd_status st = kd_sampler_step(s, i, out, mc, xa, &shape, &ra, xa, &e);
        TEST_CHECK(st == KD_OK, "%s step %d: %s", name, i, e.msg);
        int64_t t = kd_sched_timesteps(k)[i];
        if (kind == KD_SCHED_UNCLIP) {
            int64_t prev = i + 1 < kd_sched_num_timesteps(k) ? kd_sched_timesteps(k)[i + 1] : KD_SCHED_PREV_NONE;
            st = kd_sched_step_unclip(k, out, mc, t, prev, xb, &shape, &rb, xb, NULL, &e);
        } else {
            st = kd_sched_step(k, out, mc, t, xb, &shape, &rb, xb, NULL, &e);
        }
        equal = st == KD_OK && !memcmp(xa, xb, sizeof xa);
    }
    TEST_CHECK(equal, "%s over %d steps: kd_sampler and kd_sched give the same samples", name, steps);
    /* add_noise by index = kd_sched_add_noise at that timestep */
    float na[N], nb[N];
    TEST_CHECK(kd_sampler_add_noise(s, 1, xa, out, N, na, &e) == KD_OK &&
                   kd_sched_add_noise(k, xa, out, N, kd_sched_timesteps(k)[1], nb, &e) == KD_OK && !memcmp(na, nb, sizeof na),
               "%s add_noise at index 1", name);
    /* the img2img start equals kd_sched's get_timesteps */
    static const double strengths[] = {0.0, 0.1, 0.3, 0.5, 0.99, 1.0};
    int starts_ok = 1;
    for (size_t j = 0; j < sizeof strengths / sizeof *strengths; j++) {
        int s0, c0, s1, c1;
        starts_ok &= kd_sampler_img2img_start(s, strengths[j], &s0, &c0, &e) == KD_OK &&
                     kd_sched_img2img_start(k, strengths[j], &s1, &c1, &e) == KD_OK && s0 == s1 && c0 == c1;
    }
    TEST_CHECK(starts_ok, "%s img2img start for strengths 0 .. 1", name);
done:
    kd_sampler_free(s);
    kd_sched_free(k);
}

static void test_bad_calls(void) {
    kd_err e = {0};
    kd_sampler *s = NULL;
    TEST_CHECK(load("pipeline22/decoder/scheduler/scheduler_config.json", "dpm++9m", &s, &e) == KD_ERR_INVALID_ARG &&
                   !s && strstr(e.msg, "dpm++9m") && strstr(e.msg, "ddpm"),
               "unknown name: %s", e.msg);
    TEST_CHECK(load("no/such/scheduler_config.json", NULL, &s, &e) != KD_OK && strstr(e.msg, "no/such"),
               "missing config: %s", e.msg);
    TEST_CHECK(load("pipeline22/decoder/scheduler/scheduler_config.json", NULL, &s, &e) == KD_OK &&
                   !strcmp(kd_sampler_name(s), "ddpm"),
               "NULL name = the config's class (DDPMScheduler → ddpm): %s", e.msg);
    if (!s) return;
    float x[N] = {0}, out[N] = {0};
    kd_sched_shape shape = {B, C, INNER};
    TEST_CHECK(kd_sampler_step(s, 0, out, C, x, &shape, NULL, x, &e) == KD_ERR_INVALID_ARG &&
                   strstr(e.msg, "set_timesteps"),
               "step before set_timesteps: %s", e.msg);
    TEST_CHECK(kd_sampler_set_timesteps(s, 0, &e) == KD_ERR_INVALID_ARG, "0 steps: %s", e.msg);
    TEST_CHECK(kd_sampler_set_timesteps(s, 4, &e) == KD_OK, "4 steps: %s", e.msg);
    TEST_CHECK(kd_sampler_step(s, 4, out, C, x, &shape, NULL, x, &e) == KD_ERR_INVALID_ARG, "index 4 of 4: %s", e.msg);
    TEST_CHECK(kd_sampler_step(s, -1, out, C, x, &shape, NULL, x, &e) == KD_ERR_INVALID_ARG, "index -1: %s", e.msg);
    TEST_CHECK(kd_sampler_step(s, 0, out, C + 1, x, &shape, NULL, x, &e) == KD_ERR_INVALID_ARG,
               "model channels neither C nor 2C: %s", e.msg);
    int start, count;
    TEST_CHECK(kd_sampler_img2img_start(s, 1.5, &start, &count, &e) == KD_ERR_INVALID_ARG, "strength 1.5: %s", e.msg);
    kd_sampler_free(s);
}

int main(void) {
    test_registry();
    test_adapter("pipeline22/decoder/scheduler/scheduler_config.json", "ddpm", KD_SCHED_DDPM, 10);
    test_adapter("pipeline22/decoder/scheduler/scheduler_config.json", "ddim", KD_SCHED_DDIM, 7);
    test_adapter("pipeline21/decoder/scheduler/scheduler_config.json", "ddim", KD_SCHED_DDIM, 25);
    test_adapter("pipeline21/decoder_ddpm/ddpm_scheduler/scheduler_config.json", "ddpm", KD_SCHED_DDPM, 5);
    test_adapter("pipeline22/prior/scheduler/scheduler_config.json", "unclip", KD_SCHED_UNCLIP, 25);
    test_bad_calls();
    return kt_finish("test_sampler");
}
