/* The CPU backend's table: host memory, threads from kd_pool, our AVX-512 GEMM or BLAS. Each entry
 * adapts a kernel of backend/cpu to the kd_backend_ops contract (status + message). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"

#define CPU(be) kd_cpu_of(be)

/* ---- lifetime and memory ---- */

static void cpu_destroy(kd_backend *be) {
    kd_cpu *c = CPU(be);
    if (!c) return;
    kd_pool_free(c->pool);
    kd_arena_free(&c->scratch);
    free(c);
}

static int cpu_n_threads(const kd_backend *be) { return ((const kd_cpu *)be->impl)->n_threads; }

static kd_status cpu_alloc(kd_backend *be, size_t bytes, void **out, kd_err *e) {
    *out = NULL;
    if (posix_memalign(out, KD_ARENA_ALIGN, bytes ? bytes : KD_ARENA_ALIGN) != 0) {
        *out = NULL;
        return kd_errf(e, KD_ERR_OOM, "cpu: out of memory allocating %zu bytes", bytes);
    }
    return KD_OK;
}

static void cpu_free(kd_backend *be, void *p) { free(p); }

static kd_status cpu_move(kd_backend *be, void *dst, const void *src, size_t bytes, kd_err *e) {
    if (bytes && dst != src) memmove(dst, src, bytes);
    return KD_OK;
}

static kd_status cpu_sync(kd_backend *be, kd_err *e) { return KD_OK; }

static kd_arena_mem cpu_arena_mem(kd_backend *be) { return (kd_arena_mem){0}; /* host blocks */ }

/* Weights are used where io/weights put them (mapped file or f32 copies). */
int kd_cpu_has_bf16(void) { return kd_gemm_has_bf16(); } /* kandinsky.h */

static int cpu_set_bf16(kd_backend *be, int bf16) {
    CPU(be)->bf16 = bf16 && kd_gemm_has_bf16();
    return CPU(be)->bf16;
}

static kd_status cpu_weights_ready(kd_backend *be, kd_weights *w, kd_err *e) { return KD_OK; }

/* ---- compute ---- */

static kd_status cpu_gemm(kd_backend *be, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc, kd_err *e) {
    kd_cpu_gemm(CPU(be), ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return KD_OK;
}

static kd_status cpu_linear(kd_backend *be, float *y, const float *x, int64_t M, const kd_tensor *w, const float *b,
                            kd_err *e) {
    return kd_cpu_linear(CPU(be), y, x, M, w, b, e);
}

static kd_status cpu_conv2d(kd_backend *be, float *y, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                            const kd_tensor *w, const float *b, const kd_conv2d_params *p, kd_err *e) {
    return kd_cpu_conv2d(CPU(be), y, x, B, Cin, H, W, w, b, p, e);
}

static kd_status cpu_group_norm(kd_backend *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                                float eps, const float *gamma, const float *beta, int silu, kd_err *e) {
    if (silu) kd_cpu_group_norm_silu(CPU(be), y, x, B, C, HW, groups, eps, gamma, beta);
    else kd_cpu_group_norm(CPU(be), y, x, B, C, HW, groups, eps, gamma, beta);
    return KD_OK;
}

static kd_status cpu_layer_norm(kd_backend *be, float *y, const float *x, int64_t rows, int64_t dim, float eps,
                                const float *gamma, const float *beta, kd_err *e) {
    kd_cpu_layer_norm(CPU(be), y, x, rows, dim, eps, gamma, beta);
    return KD_OK;
}

static kd_status cpu_rms_norm(kd_backend *be, float *y, const float *x, int64_t rows, int64_t dim, float eps,
                              const float *gamma, kd_err *e) {
    kd_cpu_rms_norm(CPU(be), y, x, rows, dim, eps, gamma);
    return KD_OK;
}

static kd_status cpu_softmax(kd_backend *be, float *x, int64_t rows, int64_t n, kd_err *e) {
    kd_cpu_softmax(CPU(be), x, rows, n);
    return KD_OK;
}

static kd_status cpu_attention(kd_backend *be, float *out, const kd_attn_params *p, kd_err *e) {
    return kd_cpu_attention(CPU(be), out, p, e);
}

static kd_status cpu_unary(kd_backend *be, int op, float *y, const float *x, int64_t n, kd_err *e) {
    switch (op) {
    case KD_UNARY_SILU: kd_cpu_silu(CPU(be), y, x, n); return KD_OK;
    case KD_UNARY_GELU: kd_cpu_gelu(CPU(be), y, x, n); return KD_OK;
    case KD_UNARY_QUICK_GELU: kd_cpu_quick_gelu(CPU(be), y, x, n); return KD_OK;
    case KD_UNARY_GELU_TANH: kd_cpu_gelu_tanh(CPU(be), y, x, n); return KD_OK;
    }
    return kd_errf(e, KD_ERR_INTERNAL, "cpu: unknown unary op %d", op);
}

static kd_status cpu_binary(kd_backend *be, int op, float *y, const float *a, const float *b, int64_t n, kd_err *e) {
    switch (op) {
    case KD_BINARY_ADD: kd_cpu_add(CPU(be), y, a, b, n); return KD_OK;
    case KD_BINARY_MUL: kd_cpu_mul(CPU(be), y, a, b, n); return KD_OK;
    }
    return kd_errf(e, KD_ERR_INTERNAL, "cpu: unknown binary op %d", op);
}

static kd_status cpu_mul_add(kd_backend *be, float *y, const float *a, const float *b, const float *c, int64_t n,
                             int silu, kd_err *e) {
    kd_cpu_mul_add(CPU(be), y, a, b, c, n, silu);
    return KD_OK;
}

static kd_status cpu_film(kd_backend *be, float *x, const float *ss, int64_t B, int64_t C, int64_t HW, int silu,
                          kd_err *e) {
    kd_cpu_film(CPU(be), x, ss, B, C, HW, silu);
    return KD_OK;
}

static kd_status cpu_scale_shift(kd_backend *be, float *y, const float *x, float s, float t, int64_t n, kd_err *e) {
    kd_cpu_scale_shift(CPU(be), y, x, s, t, n);
    return KD_OK;
}

static kd_status cpu_add_row_vector(kd_backend *be, float *x, const float *b, int64_t rows, int64_t n, kd_err *e) {
    kd_cpu_add_row_vector(CPU(be), x, b, rows, n);
    return KD_OK;
}

static kd_status cpu_add_channel_vector(kd_backend *be, float *x, const float *b, int64_t B, int64_t C, int64_t HW,
                                        kd_err *e) {
    kd_cpu_add_channel_vector(CPU(be), x, b, B, C, HW);
    return KD_OK;
}

static kd_status cpu_concat_dim1(kd_backend *be, float *y, const float *a, int64_t Xa, const float *b, int64_t Xb,
                                 int64_t B, int64_t inner, kd_err *e) {
    kd_cpu_concat_dim1(y, a, Xa, b, Xb, B, inner);
    return KD_OK;
}

static kd_status cpu_transpose_last2(kd_backend *be, float *y, const float *x, int64_t R, int64_t rows, int64_t cols,
                                     kd_err *e) {
    kd_cpu_transpose_last2(CPU(be), y, x, R, rows, cols);
    return KD_OK;
}

static kd_status cpu_embedding(kd_backend *be, float *y, const kd_tensor *table, const int32_t *ids, int64_t n,
                               kd_err *e) {
    int64_t D = table->shape[1];
    size_t row = (size_t)D * kd_dtype_size(table->dtype);
    for (int64_t i = 0; i < n; i++)
        kd_convert_to_f32(y + i * D, (const char *)table->data + (size_t)ids[i] * row, table->dtype, (size_t)D);
    return KD_OK;
}

static kd_status cpu_masked_mean(kd_backend *be, float *y, const float *x, const int32_t *mask, int64_t B, int64_t L,
                                 int64_t D, kd_err *e) {
    for (int64_t b = 0; b < B; b++) {
        float n = 0, *yb = y + b * D;
        for (int64_t i = 0; i < D; i++) yb[i] = 0.0f;
        for (int64_t t = 0; t < L; t++) {
            float w = (float)mask[b * L + t];
            const float *xt = x + (b * L + t) * D;
            n += w;
            for (int64_t i = 0; i < D; i++) yb[i] += xt[i] * w;
        }
        for (int64_t i = 0; i < D; i++) yb[i] /= n;
    }
    return KD_OK;
}

static kd_status cpu_upsample_nearest2x(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W,
                                        kd_err *e) {
    kd_cpu_upsample_nearest2x(CPU(be), y, x, planes, H, W);
    return KD_OK;
}

static kd_status cpu_resize_nearest(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W,
                                    int64_t Ho, int64_t Wo, kd_err *e) {
    kd_cpu_resize_nearest(CPU(be), y, x, planes, H, W, Ho, Wo);
    return KD_OK;
}

static kd_status cpu_avg_pool2x2(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W,
                                 kd_err *e) {
    kd_cpu_avg_pool2x2(CPU(be), y, x, planes, H, W);
    return KD_OK;
}

static kd_status cpu_timestep_embedding(kd_backend *be, float *y, const float *t, int64_t B, int dim, int flip,
                                        float shift, float max_period, kd_err *e) {
    kd_cpu_timestep_embedding(y, t, B, dim, flip, shift, max_period);
    return KD_OK;
}

static const kd_backend_ops cpu_ops = {
    .name = "cpu",
    .host_visible = 1,
    .destroy = cpu_destroy,
    .n_threads = cpu_n_threads,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_move,
    .download = cpu_move,
    .copy = cpu_move,
    .sync = cpu_sync,
    .arena_mem = cpu_arena_mem,
    .weights_ready = cpu_weights_ready,
    .set_bf16 = cpu_set_bf16,
    .gemm = cpu_gemm,
    .linear = cpu_linear,
    .conv2d = cpu_conv2d,
    .group_norm = cpu_group_norm,
    .layer_norm = cpu_layer_norm,
    .rms_norm = cpu_rms_norm,
    .softmax = cpu_softmax,
    .attention = cpu_attention,
    .unary = cpu_unary,
    .binary = cpu_binary,
    .mul_add = cpu_mul_add,
    .film = cpu_film,
    .scale_shift = cpu_scale_shift,
    .add_row_vector = cpu_add_row_vector,
    .add_channel_vector = cpu_add_channel_vector,
    .concat_dim1 = cpu_concat_dim1,
    .transpose_last2 = cpu_transpose_last2,
    .embedding = cpu_embedding,
    .masked_mean = cpu_masked_mean,
    .upsample_nearest2x = cpu_upsample_nearest2x,
    .resize_nearest = cpu_resize_nearest,
    .avg_pool2x2 = cpu_avg_pool2x2,
    .timestep_embedding = cpu_timestep_embedding,
};

static kd_conv_algo conv_algo_from_env(void) {
    const char *v = getenv("KD_CONV_ALGO");
    if (!v) return KD_CONV_AUTO;
    if (!strcmp(v, "im2col")) return KD_CONV_IM2COL;
    if (!strcmp(v, "winograd")) return KD_CONV_WINO23;
    if (!strcmp(v, "winograd43")) return KD_CONV_WINO43;
    return KD_CONV_AUTO;
}

kd_status kd_backend_cpu_init(kd_backend *be, int n_threads, kd_err *e) {
    be->ops = NULL;
    be->impl = NULL;
    kd_cpu *c = calloc(1, sizeof *c);
    if (!c) return kd_errf(e, KD_ERR_OOM, "cpu backend: out of memory");
    c->n_threads = kd_threads_resolve(n_threads);
    c->pool = kd_pool_create(c->n_threads);
    if (!c->pool) {
        free(c);
        return kd_errf(e, KD_ERR_OOM, "could not start %d threads", kd_threads_resolve(n_threads));
    }
    kd_arena_init(&c->scratch, 0);
    c->conv_algo = conv_algo_from_env();
    /* Our pool splits the work; each BLAS call runs on the thread that makes it. */
    openblas_set_num_threads(1);
    be->ops = &cpu_ops;
    be->impl = c;
    return KD_OK;
}
