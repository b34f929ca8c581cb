#include "models/model.h"

#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>

/* The zeroed model with its arenas; NULL (message on ctx) when out of memory. */
static kd_model_base *model_new(kd_ctx *ctx, const kd_model_kind *k) {
    kd_model_base *m = calloc(1, k->size);
    if (!m) {
        kd_ctx_fail(ctx, KD_ERR_OOM, "%s: out of memory", k->name);
        return NULL;
    }
    kd_backend_arena_init(&ctx->be, &m->arena);
    kd_backend_arena_init(&ctx->be, &m->io);
    return m;
}

/* Weights of the configured model m from path; m is freed on failure. */
static kd_status model_finish(kd_ctx *ctx, const char *path, const kd_model_kind *k, kd_model_base *m, kd_status s,
                              void **out) {
    kd_err *e = &ctx->err;
    if (s == KD_OK) s = kd_weights_open(path, &m->w, e);
    if (s == KD_OK) kd_weights_set_q8(m->w, ctx->params.weights == KD_WEIGHTS_Q8);
    if (s == KD_OK) s = k->load_weights(m, e);
    if (s == KD_OK) s = ctx->be.ops->weights_ready(&ctx->be, m->w, e);
    if (s != KD_OK) {
        kd_model_free(m, k);
        return s;
    }
    *out = m;
    return KD_OK;
}

kd_status kd_model_load(kd_ctx *ctx, const char *path, const kd_model_kind *k, void **out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!path || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "%s: NULL path or output", k->name);
    *out = NULL;
    kd_err *e = &ctx->err;
    char cfg_path[4096];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", path);
    kd_config cfg;
    KD_TRY(kd_config_load(cfg_path, &cfg, e));
    kd_model_base *m = model_new(ctx, k);
    if (!m) {
        kd_config_free(&cfg);
        return KD_ERR_OOM;
    }
    kd_status s = k->read_config(m, &cfg, e);
    kd_config_free(&cfg);
    if (s != KD_OK) kd_err_prefix(e, "%s", cfg_path);
    return model_finish(ctx, path, k, m, s, out);
}

kd_status kd_model_load_init(kd_ctx *ctx, const char *path, const kd_model_kind *k,
                             kd_status (*init)(void *model, const void *arg, kd_err *e), const void *arg, void **out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!path || !out || !init) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "%s: NULL path or output", k->name);
    *out = NULL;
    kd_model_base *m = model_new(ctx, k);
    if (!m) return KD_ERR_OOM;
    return model_finish(ctx, path, k, m, init(m, arg, &ctx->err), out);
}

void kd_model_free(void *model, const kd_model_kind *k) {
    kd_model_base *m = model;
    if (!m) return;
    if (k->free_layers) k->free_layers(m);
    kd_weights_close(m->w);
    kd_arena_free(&m->arena);
    kd_arena_free(&m->io);
    free(m->host);
    free(m);
}

void *kd_model_host_scratch(kd_model_base *b, size_t bytes, kd_err *e) {
    if (bytes > b->host_cap) {
        void *p = NULL;
        if (posix_memalign(&p, 64, bytes) != 0) {
            kd_errf(e, KD_ERR_OOM, "out of memory for %zu bytes of host scratch", bytes);
            return NULL;
        }
        free(b->host);
        b->host = p;
        b->host_cap = bytes;
    }
    return b->host;
}

kd_status kd_model_stage_in(kd_backend *be, kd_model_base *b, const void *host, size_t bytes, const void **dev,
                            kd_err *e) {
    if (!host || be->ops->host_visible) {
        *dev = host;
        return KD_OK;
    }
    void *d = kd_arena_alloc(&b->io, bytes, e);
    if (!d) return KD_ERR_OOM;
    *dev = d;
    return kd_upload(be, d, host, bytes, e);
}

kd_status kd_model_stage_out(kd_backend *be, kd_model_base *b, void *host_out, size_t bytes, void **dev, kd_err *e) {
    if (!host_out || be->ops->host_visible) {
        *dev = host_out;
        return KD_OK;
    }
    *dev = kd_arena_alloc(&b->io, bytes, e);
    return *dev ? KD_OK : KD_ERR_OOM;
}

kd_status kd_model_finish_out(kd_backend *be, void *host_out, const void *dev, size_t bytes, kd_err *e) {
    if (!host_out || dev == host_out) return KD_OK;
    return kd_download(be, host_out, dev, bytes, e);
}

void kd_model_end_call(kd_model_base *b) {
    kd_arena_reset(&b->arena);
    kd_arena_reset(&b->io);
}
