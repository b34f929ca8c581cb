/* Tensor views and element types. A kd_tensor never owns its data: weights point into a mapped
 * safetensors file (or a converted copy owned by the model), activations into an arena.
 * Shapes are in PyTorch order (NCHW, [B, T, C]); data is contiguous row-major. */
#ifndef KD_CORE_TENSOR_H
#define KD_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define KD_MAX_DIMS 8

typedef enum kd_dtype {
    KD_F32 = 0,
    KD_F16,
    KD_BF16,
    KD_I64,
    KD_I8,   /* in files: the int8 values of a q8_0 tensor (beside its "<name>_scale" F16 tensor) */
    KD_Q8_0, /* in memory only: int8 values in data, one F16 scale per block of 32 in scale */
    KD_DTYPE_COUNT
} kd_dtype;

typedef struct kd_tensor {
    kd_dtype dtype;
    int ndim;
    int64_t shape[KD_MAX_DIMS];
    void *data;
    /* KD_Q8_0 only: F16 scales, one per KD_Q8_BLOCK consecutive elements (row-major order; the
     * last dim times the ones after the first is a multiple of the block), else NULL. */
    const uint16_t *scale;
} kd_tensor;

/* ---- q8_0: blocks of 32 values, w[i] = q[i] · scale[i / 32], q in [-127, 127] ---- */
#define KD_Q8_BLOCK 32

size_t kd_dtype_size(kd_dtype t);
/* safetensors spelling: "F32", "F16", "BF16", "I64", "I8" ("Q8_0" for the in-memory type). */
const char *kd_dtype_name(kd_dtype t);
/* Parses a safetensors dtype string; returns -1 if unknown ("Q8_0" is not a file dtype). */
int kd_dtype_parse(const char *s, kd_dtype *out);

int64_t kd_tensor_numel(const kd_tensor *t);
size_t kd_tensor_nbytes(const kd_tensor *t);
/* Writes "[384, 4, 3, 3]" into buf. */
const char *kd_shape_str(const int64_t *shape, int ndim, char *buf, size_t cap);

/* ---- f16 / bf16 ---- */
float kd_f16_to_f32(uint16_t h);
uint16_t kd_f32_to_f16(float f);   /* round to nearest even, overflow to inf, NaN kept */
float kd_bf16_to_f32(uint16_t h);
uint16_t kd_f32_to_bf16(float f);  /* round to nearest even, NaN kept */

/* dst[i] = (float)src[i] for n elements of dtype t (F32, F16 or BF16). */
void kd_convert_to_f32(float *dst, const void *src, kd_dtype t, size_t n);
/* dst[i] = src[i] converted to t (F16 or BF16 or F32). */
void kd_convert_from_f32(void *dst, kd_dtype t, const float *src, size_t n);

/* Elements [off, off + n) of a weight (F32, F16, BF16 or Q8_0 with its scales) as F32. */
void kd_weight_to_f32(float *dst, const kd_tensor *w, size_t off, size_t n);

/* Quantises n values (n a multiple of KD_Q8_BLOCK) of src (F32, F16 or BF16) to q8_0: per block
 * scale = amax / 127 rounded to F16, q = round(x / scale). Returns 0 when a block's scale is not
 * a finite F16 (|x| > 8.3e6, or NaN / inf in the block): the tensor cannot be stored as q8_0. */
int kd_q8_quantize(int8_t *q, uint16_t *scale, const void *src, kd_dtype t, size_t n);

#endif
