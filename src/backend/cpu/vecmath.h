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

#endif
