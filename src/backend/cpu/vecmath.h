/* Branch-free scalar math that gcc/clang vectorise inside loops (libm calls block vectorisation). */
#ifndef KD_CPU_VECMATH_H
#define KD_CPU_VECMATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) with relative error < 2e-7 over the float range; 0 below -87.3 (so exp(-inf) = 0, as
 * softmax needs for masked scores), +large at the top end, NaN for NaN. Cody-Waite reduction to
 * r in [-ln2/2, ln2/2], degree-6 polynomial, 2^n through the exponent bits. */
static inline float kd_expf(float x) {
    const float hi = 88.3762626647949f, lo = -87.3365447505531f;
    float xc = x > hi ? hi : x;
    xc = xc >= lo ? xc : lo; /* NaN → lo too: the int conversion below must never see NaN */
    float n = __builtin_rintf(xc * 1.44269504088896341f); /* rint vectorises (vrndscaleps); roundf does not */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &e, 4);
    float y = p * scale;
    y = x == x ? y : x; /* NaN in, NaN out */
    return x < lo ? 0.0f : y;
}

static inline float kd_sigmoidf(float x) { return 1.0f / (1.0f + kd_expf(-x)); }

/* tanh(x) = 1 − 2/(exp(2x) + 1): absolute error ~1e-7 (relative error grows near 0, where the
 * difference cancels; GELU adds it to 1, so only the absolute error matters there); ±1 at the ends,
 * NaN in, NaN out. */
static inline float kd_tanhf(float x) {
    float r = 1.0f - 2.0f / (kd_expf(2.0f * x) + 1.0f);
    return x == x ? r : x;
}

/* erf(x) for exact GELU, vectorisable (libm's erff is a call per element: 5% of a prior step).
 * erfc(z) = t·exp(−z² − 1.26551223 + t·P(t)), t = 1 / (1 + z/2), z = |x| (Chebyshev fit, fractional
 * error < 1.2e-7 for all z ≥ 0); erf = ±(1 − erfc), or a Taylor series below 0.5. Absolute error
 * ≤ 1.8e-7, ~3 ulp (checked against double erf over [−10, 10] in steps of 1e-5); NaN in, NaN out. */
static inline float kd_erff(float x) {
    float z = x < 0.0f ? -x : x;
    z = z < 10.0f ? z : 10.0f; /* erfc(10) < 1e-44: 1 − erfc rounds to 1 */
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    float erfc = t * kd_expf(-z * z - 1.26551223f + t * p);
    float r = 1.0f - erfc;
    /* near 0, 1 − erfc cancels: the Taylor series 2/√π·(z − z³/3 + z⁵/10 − z⁷/42 + z⁹/216 − z¹¹/1320) */
    float z2 = z * z;
    float s = 1.12837916709551257f * z *
              (1.0f + z2 * (-1.0f / 3 + z2 * (1.0f / 10 + z2 * (-1.0f / 42 + z2 * (1.0f / 216 + z2 * (-1.0f / 1320))))));
    r = z < 0.5f ? s : r;
    r = x < 0.0f ? -r : r;
    return x == x ? r : x;
}

#endif
