/* The compute backend a model runs on. Today: the CPU (threads from kd_pool, GEMM from BLAS);
 * a CUDA backend will implement the same ops (ops.h). Models only see this struct and ops.h. */
#ifndef KD_BACKEND_H
#define KD_BACKEND_H

#include "core/arena.h"
#include "core/err.h"
#include "core/pool.h"

typedef struct kd_backend {
    kd_pool *pool;
    int n_threads;
    /* Temporaries of a single op (im2col buffers, converted f16 weight panels, attention
     * scores). Every op releases what it took before returning, so the block stays warm. */
    kd_arena scratch;
} kd_backend;

/* n_threads as in kd_ctx_params (0 = auto). Also pins BLAS to one thread per call: all our
 * parallelism comes from the pool, so BLAS never competes with it for cores. */
kd_status kd_backend_init(kd_backend *be, int n_threads, kd_err *e);
void kd_backend_free(kd_backend *be);

#endif
