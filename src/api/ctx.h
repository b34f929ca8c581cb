/* The library context behind the public kd_ctx handle: the caller's parameters, the last error
 * and the backend the models run on. It sits above backend/ (core/ knows nothing of it); the
 * public entry points of models/ and pipeline/ take it. */
#ifndef KD_API_CTX_H
#define KD_API_CTX_H

#include "backend/backend.h"
#include "core/err.h"
#include "kandinsky.h"

struct kd_ctx {
    kd_ctx_params params;
    kd_err err;
    kd_backend be;
    int active_bf16; /* what the backend's set_bf16 put in force */
};

/* Records a failure on the context and returns code (for public entry points). */
kd_status kd_ctx_fail(kd_ctx *ctx, kd_status code, const char *fmt, ...) KD_PRINTF(3, 4);

#endif
