#include "api/ctx.h"

#include "backend/ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef KD_VERSION_STRING
#define KD_VERSION_STRING "0.1.0"
#endif

const char *kd_version(void) { return KD_VERSION_STRING; }

kd_ctx_params kd_ctx_params_default(void) {
    kd_ctx_params p = {.n_threads = 0, .verbosity = 0, .precision = KD_PRECISION_FP32, .weights = KD_WEIGHTS_AS_STORED};
    return p;
}

const char *kd_precision_name(kd_precision p) { return p == KD_PRECISION_BF16 ? "bf16" : "fp32"; }

int kd_precision_parse(const char *s, kd_precision *out) {
    if (!s || !out) return -1;
    if (strcmp(s, "fp32") == 0 || strcmp(s, "f32") == 0) *out = KD_PRECISION_FP32;
    else if (strcmp(s, "bf16") == 0) *out = KD_PRECISION_BF16;
    else return -1;
    return 0;
}

const char *kd_weight_mode_name(kd_weight_mode m) { return m == KD_WEIGHTS_Q8 ? "q8" : "stored"; }

int kd_weight_mode_parse(const char *s, kd_weight_mode *out) {
    if (!s || !out) return -1;
    if (strcmp(s, "q8") == 0 || strcmp(s, "q8_0") == 0) *out = KD_WEIGHTS_Q8;
    else if (strcmp(s, "stored") == 0 || strcmp(s, "default") == 0) *out = KD_WEIGHTS_AS_STORED;
    else return -1;
    return 0;
}

kd_status kd_ctx_set_precision(kd_ctx *ctx, kd_precision p) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (p != KD_PRECISION_FP32 && p != KD_PRECISION_BF16)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "precision %d is not fp32 or bf16", (int)p);
    ctx->params.precision = p;
    ctx->active_bf16 = ctx->be.ops->set_bf16(&ctx->be, p == KD_PRECISION_BF16);
    return KD_OK;
}

kd_precision kd_ctx_precision(const kd_ctx *ctx) {
    return ctx && ctx->active_bf16 ? KD_PRECISION_BF16 : KD_PRECISION_FP32;
}

kd_status kd_ctx_create(const kd_ctx_params *params, kd_ctx **out) {
    if (!out) return KD_ERR_INVALID_ARG;
    *out = NULL;
    kd_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return KD_ERR_OOM;
    ctx->params = params ? *params : kd_ctx_params_default();
    if (ctx->params.n_threads < 0 || (unsigned)ctx->params.precision > KD_PRECISION_BF16 ||
        (unsigned)ctx->params.weights > KD_WEIGHTS_Q8) {
        free(ctx);
        return KD_ERR_INVALID_ARG;
    }
    kd_status s = kd_backend_cpu_init(&ctx->be, ctx->params.n_threads, &ctx->err);
    if (s != KD_OK) {
        free(ctx);
        return s;
    }
    ctx->active_bf16 = ctx->be.ops->set_bf16(&ctx->be, ctx->params.precision == KD_PRECISION_BF16);
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
