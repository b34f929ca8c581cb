#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

static const struct {
    const char *name;
    size_t size;
} dtype_info[KD_DTYPE_COUNT] = {
    [KD_F32] = {"F32", 4}, [KD_F16] = {"F16", 2}, [KD_BF16] = {"BF16", 2}, [KD_I64] = {"I64", 8},
    [KD_I8] = {"I8", 1},   [KD_Q8_0] = {"Q8_0", 1},
};

size_t kd_dtype_size(kd_dtype t) { return (unsigned)t < KD_DTYPE_COUNT ? dtype_info[t].size : 0; }
const char *kd_dtype_name(kd_dtype t) { return (unsigned)t < KD_DTYPE_COUNT ? dtype_info[t].name : "?"; }

int kd_dtype_parse(const char *s, kd_dtype *out) {
    for (int i = 0; i < KD_DTYPE_COUNT; i++) {
        if (i != KD_Q8_0 && strcmp(s, dtype_info[i].name) == 0) {
            *out = (kd_dtype)i;
            return 0;
        }
    }
    return -1;
}

int64_t kd_tensor_numel(const kd_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t kd_tensor_nbytes(const kd_tensor *t) { return (size_t)kd_tensor_numel(t) * kd_dtype_size(t->dtype); }

const char *kd_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t n = 0;
    if (cap == 0) return buf;
    buf[0] = '\0';
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* ---- half precision ---- */

static inline float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline uint32_t f32_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float kd_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0) {
        if (man == 0) return bits_to_f32(sign);
        /* subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13));
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t kd_f32_to_f16(float f) {
    uint32_t u = f32_to_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) /* inf or NaN */
        return (uint16_t)(sign | 0x7c00 | (absu > 0x7f800000u ? 0x200 | ((absu >> 13) & 0x3ff) : 0));
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absu < 0x38800000u) {                                  /* below 2^-14: subnormal or zero */
        /* value * 2^24 rounded to nearest even gives the subnormal mantissa */
        float v = bits_to_f32(absu) * 16777216.0f;
        uint32_t m = (uint32_t)v;
        float frac = v - (float)m;
        if (frac > 0.5f || (frac == 0.5f && (m & 1))) m++;
        return (uint16_t)(sign | m);
    }
    uint32_t exp = ((absu >> 23) - 112) << 10;
    uint32_t man = (absu >> 13) & 0x3ff;
    uint32_t rest = absu & 0x1fff;
    uint32_t h = exp | man;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++; /* carries into exponent correctly */
    return (uint16_t)(sign | h);
}

float kd_bf16_to_f32(uint16_t h) { return bits_to_f32((uint32_t)h << 16); }

uint16_t kd_f32_to_bf16(float f) {
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

void kd_convert_to_f32(float *dst, const void *src, kd_dtype t, size_t n) {
    size_t i = 0;
    if (t == KD_F32) {
        memmove(dst, src, n * 4);
        return;
    }
    const uint16_t *s = (const uint16_t *)src;
    if (t == KD_F16) {
#if defined(__AVX512F__)
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + i))));
#elif defined(__F16C__)
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
#endif
        for (; i < n; i++) dst[i] = kd_f16_to_f32(s[i]);
    } else if (t == KD_BF16) {
        uint32_t *d = (uint32_t *)dst;
        for (; i < n; i++) d[i] = (uint32_t)s[i] << 16; /* vectorises */
    }
}

void kd_convert_from_f32(void *dst, kd_dtype t, const float *src, size_t n) {
    if (t == KD_F32) {
        memmove(dst, src, n * 4);
        return;
    }
    uint16_t *d = (uint16_t *)dst;
    for (size_t i = 0; i < n; i++) d[i] = t == KD_F16 ? kd_f32_to_f16(src[i]) : kd_f32_to_bf16(src[i]);
}

/* ---- q8_0 ---- */

void kd_weight_to_f32(float *dst, const kd_tensor *w, size_t off, size_t n) {
    if (w->dtype != KD_Q8_0) {
        kd_convert_to_f32(dst, (const char *)w->data + off * kd_dtype_size(w->dtype), w->dtype, n);
        return;
    }
    const int8_t *q = (const int8_t *)w->data;
    for (size_t i = 0; i < n;) { /* one block (or the part of it inside the range) at a time */
        size_t blk = (off + i) / KD_Q8_BLOCK, end = (blk + 1) * KD_Q8_BLOCK - off;
        if (end > n) end = n;
        float s = kd_f16_to_f32(w->scale[blk]);
        for (; i < end; i++) dst[i] = (float)q[off + i] * s;
    }
}

int kd_q8_quantize(int8_t *q, uint16_t *scale, const void *src, kd_dtype t, size_t n) {
    float x[KD_Q8_BLOCK];
    for (size_t b = 0; b < n / KD_Q8_BLOCK; b++) {
        kd_convert_to_f32(x, (const char *)src + b * KD_Q8_BLOCK * kd_dtype_size(t), t, KD_Q8_BLOCK);
        float amax = 0.0f;
        for (int i = 0; i < KD_Q8_BLOCK; i++) {
            float a = x[i] < 0 ? -x[i] : x[i];
            if (!(a <= 3.0e38f)) return 0; /* NaN or inf */
            amax = a > amax ? a : amax;
        }
        uint16_t h = kd_f32_to_f16(amax / 127.0f);
        float s = kd_f16_to_f32(h);
        if (!(s <= 65504.0f)) return 0;
        scale[b] = h;
        float inv = s > 0.0f ? 1.0f / s : 0.0f;
        for (int i = 0; i < KD_Q8_BLOCK; i++) {
            float v = __builtin_rintf(x[i] * inv);
            q[b * KD_Q8_BLOCK + i] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
        }
    }
    return 1;
}
