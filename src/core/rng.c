/* PyTorch-compatible CPU generator; see rng.h for what is reproduced and why.
 *
 * Bit-exactness rests on doing every float operation of torch's AVX2 normal kernel in the same
 * order with the same rounding. This file is compiled as ISO C11, where GCC does not contract
 * a*b+c into an FMA on its own (-ffp-contract=off); the places where torch's compiled kernel
 * does fuse are written as explicit fmaf() calls (exact by definition, hardware or not). */
#include "core/rng.h"

#include <math.h>
#include <string.h>

/* ---- mt19937 (Matsumoto & Nishimura 1998, init_genrand seeding) ---- */

#define MT_M 397
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu
#define MT_MATRIX 0x9908b0dfu

void kd_rng_seed(kd_rng *r, uint64_t seed) {
    r->seed = seed;
    r->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (uint32_t i = 1; i < KD_MT_N; i++) {
        uint32_t prev = r->state[i - 1];
        r->state[i] = 1812433253u * (prev ^ (prev >> 30)) + i;
    }
    r->next = KD_MT_N;  /* the first draw regenerates the whole state block */
    r->has_cached_normal = 0;
    r->cached_normal = 0.0;
}

static void mt_regenerate(kd_rng *r) {
    uint32_t *s = r->state;
    for (int i = 0; i < KD_MT_N; i++) {
        uint32_t y = (s[i] & MT_UPPER) | (s[(i + 1) % KD_MT_N] & MT_LOWER);
        uint32_t v = s[(i + MT_M) % KD_MT_N] ^ (y >> 1);
        if (y & 1u) v ^= MT_MATRIX;
        s[i] = v;
    }
    r->next = 0;
}

uint32_t kd_rng_u32(kd_rng *r) {
    if (r->next >= KD_MT_N) mt_regenerate(r);
    uint32_t y = r->state[r->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t kd_rng_u64(kd_rng *r) {
    uint64_t hi = kd_rng_u32(r);
    uint64_t lo = kd_rng_u32(r);
    return (hi << 32) | lo;
}

/* at::uniform_real_distribution<float>(0, 1): 24 random bits, exact in float. */
static inline float uniform_f32(kd_rng *r) {
    return (float)(kd_rng_u32(r) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* at::uniform_real_distribution<double>(0, 1): 53 random bits. */
static inline double uniform_f64(kd_rng *r) {
    return (double)(kd_rng_u64(r) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

void kd_rng_rand(kd_rng *r, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = uniform_f32(r);
}

/* ---- float log / sincos with the arithmetic of torch's AVX2 kernel ----
 * Cephes-style single-precision approximations (the same range reductions and coefficients as
 * the avx_mathfun.h routines torch uses), written out per lane. Which multiply-adds are fused
 * was established by comparing against torch's output for all 2^24 possible uniforms. */

static inline float f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Natural log for x in (0, 1] (here x = 1 - u with u a 24-bit uniform, so x >= 2^-24). */
static float box_muller_log(float x) {
    const float min_normal = f32_from_bits(0x00800000u);
    if (x < min_normal) x = min_normal;  /* the kernel clamps denormals away first */
    uint32_t bits = f32_bits(x);
    /* x = m · 2^k with m in [0.5, 1) */
    float e = (float)((int32_t)(bits >> 23) - 0x7f) + 1.0f;
    float m = f32_from_bits((bits & ~0x7f800000u) | 0x3f000000u);
    float t;
    if (m < 0.707106781186547524f) {  /* fold m into [sqrt(1/2), sqrt(2)) around 1 */
        e = e - 1.0f;
        t = (m - 1.0f) + m;
    } else {
        t = (m - 1.0f) + 0.0f;
    }
    float z = t * t;
    float y = 7.0376836292E-2f;
    y = fmaf(y, t, -1.1514610310E-1f);
    y = fmaf(y, t, 1.1676998740E-1f);
    y = fmaf(y, t, -1.2420140846E-1f);
    y = fmaf(y, t, 1.4249322787E-1f);
    y = fmaf(y, t, -1.6668057665E-1f);
    y = fmaf(y, t, 2.0000714765E-1f);
    y = fmaf(y, t, -2.4999993993E-1f);
    y = fmaf(y, t, 3.3333331174E-1f);
    y = y * t;
    y = fmaf(y, z, e * -2.12194440e-4f);
    y = fmaf(-z, 0.5f, y);
    float res = t + y;
    return fmaf(e, 0.693359375f, res);
}

/* sin and cos of x in [0, 2pi) (x = 2pi · u). */
static void box_muller_sincos(float x, float *s, float *c) {
    /* x >= 0 here, so the sine's input sign bit is clear */
    float yq = x * 1.27323954473516f;  /* 4/pi */
    int32_t j = (int32_t)yq;           /* truncation, as cvttps2dq */
    j = (j + 1) & ~1;
    float fj = (float)j;
    uint32_t sin_sign = ((uint32_t)j & 4u) << 29;
    int use_first = (j & 2) == 0;      /* octants where sin uses the sine polynomial */
    uint32_t cos_sign = (~(uint32_t)(j - 2) & 4u) << 29;

    /* extended-precision reduction x - j·pi/4 with pi/4 split in three */
    float t = fmaf(fj, -0.78515625f, x);
    t = fmaf(fj, -2.4187564849853515625e-4f, t);
    t = fmaf(fj, -3.77489497744594108e-8f, t);

    float z = t * t;
    float yc = 2.443315711809948E-005f;
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;

    float ys = -1.9515295891E-4f;
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = ys * z;
    ys = fmaf(ys, t, t);

    /* the kernel selects with masks and adds a +0 from the other branch */
    float sv = (use_first ? 0.0f : yc) + (use_first ? ys : 0.0f);
    float cv = (use_first ? yc : 0.0f) + (use_first ? 0.0f : ys);
    *s = f32_from_bits(f32_bits(sv) ^ sin_sign);
    *c = f32_from_bits(f32_bits(cv) ^ cos_sign);
}

/* 8 Box-Muller pairs over 16 uniforms in place (torch's normal_fill_16_AVX2, mean 0, std 1). */
static void normal_fill_16(float *d) {
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * box_muller_log(u1));
        float theta = 6.28318530717958647692f * u2;  /* (float)(2 pi) · u2 */
        float sv, cv;
        box_muller_sincos(theta, &sv, &cv);
        /* torch: fmadd(n, std, mean) with std 1, mean 0: n + 0 (turns -0 into +0) */
        d[j] = radius * cv + 0.0f;
        d[j + 8] = radius * sv + 0.0f;
    }
}

/* at::normal_distribution<double>(0, 1) with the generator's cache of the second value. */
static double normal_f64(kd_rng *r) {
    if (r->has_cached_normal) {
        r->has_cached_normal = 0;
        return r->cached_normal;
    }
    double u1 = uniform_f64(r);
    double u2 = uniform_f64(r);
    double radius = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    r->cached_normal = radius * sin(theta);
    r->has_cached_normal = 1;
    return radius * cos(theta);
}

void kd_rng_randn(kd_rng *r, float *out, size_t n) {
    if (n < 16) {
        for (size_t i = 0; i < n; i++) out[i] = (float)normal_f64(r);
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = uniform_f32(r);
    for (size_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform_f32(r);
        normal_fill_16(tail);
    }
}
