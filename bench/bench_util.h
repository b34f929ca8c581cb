/* Helpers shared by the bench_*.c programs: a monotonic clock, a qsort comparator for medians,
 * and the deterministic inputs the matching bench_*.py scripts generate the same way. */
#ifndef KD_BENCH_UTIL_H
#define KD_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

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

#endif
