/* The library context behind the public kd_ctx handle. */
#ifndef KD_CORE_CTX_H
#define KD_CORE_CTX_H

#include "backend/backend.h"
#include "core/err.h"
#include "kandinsky.h"

struct kd_ctx {
    kd_ctx_params params;
    kd_err err;
    kd_backend be;
};

/* Records a failure on the context and returns code (for public entry points). */
kd_status kd_ctx_fail(kd_ctx *ctx, kd_status code, const char *fmt, ...) KD_PRINTF(3, 4);

#endif
