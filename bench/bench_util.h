/* Helpers shared by the bench_*.c programs: a monotonic clock, a qsort comparator for medians,
 * and the deterministic inputs the matching bench_*.py scripts generate the same way. */
#ifndef KD_BENCH_UTIL_H
#define KD_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kandinsky.h"

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* LCG floats in [-scale, scale): the same sequence as lcg_floats in the bench_*.py scripts. */
static inline float *random_floats(size_t n, unsigned seed, float scale) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = scale * ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f);
    }
    return p;
}

/* --precision fp32|bf16 and --weights stored|q8, taken by every bench program; the "impl" label of
 * the JSON lines names them: kandinsky.c, kandinsky.c-bf16, kandinsky.c-q8, kandinsky.c-bf16-q8
 * (bf16 only where the CPU computes it: on others the run is fp32 and labelled so). */
typedef struct bench_mode {
    kd_precision precision;
    kd_weight_mode weights;
    char label[64];
} bench_mode;

/* 1 if (k, v) was a mode option (a bad value exits with a message), else 0. */
static inline int bench_mode_arg(bench_mode *m, const char *k, const char *v) {
    if (!strcmp(k, "--precision")) {
        if (kd_precision_parse(v, &m->precision) == 0) return 1;
    } else if (!strcmp(k, "--weights")) {
        if (kd_weight_mode_parse(v, &m->weights) == 0) return 1;
    } else {
        return 0;
    }
    fprintf(stderr, "bench: %s: bad value '%s' (fp32|bf16, stored|q8)\n", k, v);
    exit(2);
}

/* Context parameters for the mode; after kd_ctx_create call bench_mode_label. */
static inline void bench_mode_params(const bench_mode *m, kd_ctx_params *cp) {
    cp->precision = m->precision;
    cp->weights = m->weights;
}

static inline const char *bench_mode_label(bench_mode *m, const kd_ctx *ctx) {
    int bf = kd_ctx_precision(ctx) == KD_PRECISION_BF16;
    if (m->precision == KD_PRECISION_BF16 && !bf) fprintf(stderr, "bench: no BF16 products on this CPU: running fp32\n");
    snprintf(m->label, sizeof m->label, "kandinsky.c%s%s", bf ? "-bf16" : "", m->weights == KD_WEIGHTS_Q8 ? "-q8" : "");
    return m->label;
}

#endif
