/* The compute backend a model runs on: a table of functions (kd_backend_ops) and the backend's own
 * state (impl). Models and nn/ see only this header and ops.h; a backend's internals (threads,
 * SIMD kernels, BLAS for the CPU; streams and cuBLAS for a GPU) stay in its folder.
 *
 * Memory. Every float* an op takes is *backend memory*: memory from ops->alloc, from an arena
 * made by kd_backend_arena_init, or a weight bound through kd_weights (see below). For the CPU
 * backend that is ordinary host memory; a GPU backend hands out device pointers. Data crosses
 * between the host and the backend only through upload / download. The few arguments that are
 * host memory by design are named so in ops.h (token ids, timesteps: small per-call arrays a
 * GPU backend copies with the launch).
 *
 * Weights. Model weights are kd_tensor views bound by io/weights (mapped safetensors, or f32
 * copies owned by the kd_weights). ops->weights_ready is called once per loaded model with the
 * model's kd_weights, before its first forward: the CPU backend uses them where they are (no-op);
 * a GPU backend uploads them once there and keeps the device copies keyed by host address.
 *
 * Errors. Every op returns a kd_status and, on failure, leaves a message in *e (may be NULL).
 * Ops never abort. sync waits for queued work (a no-op on the CPU, whose ops complete before
 * they return) and reports asynchronous failures.
 *
 * Adding a backend = filling a kd_backend_ops (every entry is required) and a create function
 * beside kd_backend_cpu_init; docs/ARCHITECTURE.md walks through it. */
#ifndef KD_BACKEND_H
#define KD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/err.h"
#include "core/tensor.h"

typedef struct kd_backend_ops kd_backend_ops;
typedef struct kd_weights kd_weights;

typedef struct kd_backend {
    const kd_backend_ops *ops;
    void *impl; /* the backend's state (kd_cpu for the CPU backend) */
} kd_backend;

/* ---- op parameter structs (shared by every backend) ---- */

typedef struct kd_conv2d_params {
    int stride;                                   /* same in both directions */
    int pad_top, pad_bottom, pad_left, pad_right; /* zero padding */
} kd_conv2d_params;

/* out[B, Lq, H·d] = softmax(q·kᵀ·scale + mask) · v per head h, with
 *   q[B, Lq, ·]  (head h at columns h·d .. h·d+d-1, row stride q_stride),
 *   keys/values  = concat_tokens(k_pre[B, Lpre, ·], k[B, Lkv, ·])  (the pre tokens come first, as in
 *                  diffusers' added-KV attention; pre_len 0 = none),
 *   mask         = additive, element (b, i, j) at mask[b·mask_bstride + i·mask_qstride + j] over the
 *                  Lpre + Lkv keys (strides 0 broadcast; NULL = none),
 *   causal       = key j > query i is excluded (index over the concatenated keys).
 * out row stride is H·d. scale is usually 1/sqrt(d). All pointers are backend memory. */
typedef struct kd_attn_params {
    int64_t batch, heads, head_dim, q_len, kv_len, pre_len;
    const float *q;
    int64_t q_stride;
    const float *k, *v;
    int64_t kv_stride;
    const float *k_pre, *v_pre;
    int64_t pre_stride;
    const float *mask;
    int64_t mask_bstride, mask_qstride, mask_hstride; /* mask row of (b, h, i): mask + b·bstride + h·hstride + i·qstride */
    int causal;
    float scale;
} kd_attn_params;

/* The table. Semantics and shapes of each op are documented at its wrapper in ops.h. */
struct kd_backend_ops {
    const char *name; /* "cpu" */
    /* 1 when backend memory is host memory (the CPU): public host-pointer entry points then hand
     * the caller's buffers to the ops directly instead of staging copies through upload/download. */
    int host_visible;
    void (*destroy)(kd_backend *be);
    int (*n_threads)(const kd_backend *be);
    /* Compute precision of the matrix products (linear, conv2d, attention, gemm): bf16 = 0 keeps
     * F32 operands; 1 rounds operands to BF16 with F32 accumulation where the backend can (norms,
     * softmax and element-wise ops stay F32). Returns the precision now in force (0 where the
     * hardware has no BF16 products). */
    int (*set_bf16)(kd_backend *be, int bf16);

    /* memory */
    kd_status (*alloc)(kd_backend *be, size_t bytes, void **out, kd_err *e); /* 64-byte aligned */
    void (*free)(kd_backend *be, void *p);
    kd_status (*upload)(kd_backend *be, void *dst, const void *host_src, size_t bytes, kd_err *e);
    kd_status (*download)(kd_backend *be, void *host_dst, const void *src, size_t bytes, kd_err *e);
    kd_status (*copy)(kd_backend *be, void *dst, const void *src, size_t bytes, kd_err *e); /* memmove */
    kd_status (*sync)(kd_backend *be, kd_err *e);
    /* block allocator for activation arenas (kd_backend_arena_init) */
    kd_arena_mem (*arena_mem)(kd_backend *be);
    kd_status (*weights_ready)(kd_backend *be, kd_weights *w, kd_err *e);

    /* matrix products */
    kd_status (*gemm)(kd_backend *be, int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc,
                      kd_err *e);
    kd_status (*linear)(kd_backend *be, float *y, const float *x, int64_t M, const kd_tensor *w, const float *b,
                        kd_err *e);
    kd_status (*conv2d)(kd_backend *be, float *y, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                        const kd_tensor *w, const float *b, const kd_conv2d_params *p, kd_err *e);

    /* normalisation */
    kd_status (*group_norm)(kd_backend *be, float *y, const float *x, int64_t B, int64_t C, int64_t HW, int groups,
                            float eps, const float *gamma, const float *beta, int silu, kd_err *e);
    kd_status (*layer_norm)(kd_backend *be, float *y, const float *x, int64_t rows, int64_t dim, float eps,
                            const float *gamma, const float *beta, kd_err *e);
    kd_status (*rms_norm)(kd_backend *be, float *y, const float *x, int64_t rows, int64_t dim, float eps,
                          const float *gamma, kd_err *e);
    kd_status (*softmax)(kd_backend *be, float *x, int64_t rows, int64_t n, kd_err *e);
    kd_status (*attention)(kd_backend *be, float *out, const kd_attn_params *p, kd_err *e);

    /* element-wise */
    kd_status (*unary)(kd_backend *be, int op, float *y, const float *x, int64_t n, kd_err *e); /* kd_unary_op */
    kd_status (*binary)(kd_backend *be, int op, float *y, const float *a, const float *b, int64_t n,
                        kd_err *e); /* kd_binary_op */
    kd_status (*mul_add)(kd_backend *be, float *y, const float *a, const float *b, const float *c, int64_t n,
                         int silu, kd_err *e);
    kd_status (*film)(kd_backend *be, float *x, const float *scale_shift, int64_t B, int64_t C, int64_t HW, int silu,
                      kd_err *e);
    kd_status (*scale_shift)(kd_backend *be, float *y, const float *x, float s, float t, int64_t n, kd_err *e);
    kd_status (*add_row_vector)(kd_backend *be, float *x, const float *b, int64_t rows, int64_t n, kd_err *e);
    kd_status (*add_channel_vector)(kd_backend *be, float *x, const float *b, int64_t B, int64_t C, int64_t HW,
                                    kd_err *e);

    /* layout */
    kd_status (*concat_dim1)(kd_backend *be, float *y, const float *a, int64_t Xa, const float *b, int64_t Xb,
                             int64_t B, int64_t inner, kd_err *e);
    kd_status (*transpose_last2)(kd_backend *be, float *y, const float *x, int64_t R, int64_t rows, int64_t cols,
                                 kd_err *e);
    kd_status (*embedding)(kd_backend *be, float *y, const kd_tensor *table, const int32_t *host_ids, int64_t n,
                           kd_err *e);
    kd_status (*masked_mean)(kd_backend *be, float *y, const float *x, const int32_t *host_mask, int64_t B, int64_t L,
                             int64_t D, kd_err *e);

    /* resampling */
    kd_status (*upsample_nearest2x)(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W,
                                    kd_err *e);
    kd_status (*resize_nearest)(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W,
                                int64_t Ho, int64_t Wo, kd_err *e);
    kd_status (*avg_pool2x2)(kd_backend *be, float *y, const float *x, int64_t planes, int64_t H, int64_t W,
                             kd_err *e);

    /* embeddings */
    kd_status (*timestep_embedding)(kd_backend *be, float *y, const float *host_t, int64_t B, int dim,
                                    int flip_sin_to_cos, float downscale_freq_shift, float max_period, kd_err *e);
};

enum kd_unary_op { KD_UNARY_SILU, KD_UNARY_GELU, KD_UNARY_QUICK_GELU, KD_UNARY_GELU_TANH };
enum kd_binary_op { KD_BINARY_ADD, KD_BINARY_MUL };

/* The CPU backend (backend/cpu): n_threads as in kd_ctx_params (0 = auto). BLAS is pinned to one
 * thread per call: all parallelism comes from our pool, so BLAS never competes with it for cores.
 * Environment, read here once: KD_CONV_ALGO=im2col|winograd|winograd43 forces a 3×3 convolution
 * algorithm (tests, benchmarks); KD_GEMM=blas forces BLAS over our AVX-512 kernel. */
kd_status kd_backend_cpu_init(kd_backend *be, int n_threads, kd_err *e);
/* Releases what the backend holds (any backend); be->ops is NULL afterwards. Safe on a zeroed struct. */
void kd_backend_free(kd_backend *be);

/* An activation arena whose blocks are backend memory (free it with kd_arena_free). */
void kd_backend_arena_init(kd_backend *be, kd_arena *a);

#endif
