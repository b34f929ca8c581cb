#include "api/ctx.h"

#include "backend/ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef KD_VERSION_STRING
#define KD_VERSION_STRING "0.1.0"
#endif

const char *kd_version(void) { return KD_VERSION_STRING; }

kd_ctx_params kd_ctx_params_default(void) {
    kd_ctx_params p = {.n_threads = 0, .verbosity = 0};
    return p;
}

kd_status kd_ctx_create(const kd_ctx_params *params, kd_ctx **out) {
    if (!out) return KD_ERR_INVALID_ARG;
    *out = NULL;
    kd_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return KD_ERR_OOM;
    ctx->params = params ? *params : kd_ctx_params_default();
    if (ctx->params.n_threads < 0) {
        free(ctx);
        return KD_ERR_INVALID_ARG;
    }
    kd_status s = kd_backend_cpu_init(&ctx->be, ctx->params.n_threads, &ctx->err);
    if (s != KD_OK) {
        free(ctx);
        return s;
    }
    *out = ctx;
    return KD_OK;
}

void kd_ctx_free(kd_ctx *ctx) {
    if (!ctx) return;
    kd_backend_free(&ctx->be);
    free(ctx);
}

const char *kd_ctx_last_error(const kd_ctx *ctx) { return ctx ? ctx->err.msg : "no context"; }

int kd_ctx_threads(const kd_ctx *ctx) { return ctx ? kd_backend_threads(&ctx->be) : 0; }

kd_status kd_ctx_fail(kd_ctx *ctx, kd_status code, const char *fmt, ...) {
    if (!ctx) return code;
    ctx->err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err.msg, sizeof ctx->err.msg, fmt, ap);
    va_end(ap);
    return code;
}
