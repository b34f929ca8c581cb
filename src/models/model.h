/* What every model shares: loading from a folder (config.json + weights) and the buffers of its
 * public host-pointer entry points. A model struct starts with a kd_model_base; its file gives a
 * kd_model_kind (how to read its config and bind its weights) and kd_model_load does the rest,
 * the same way for all of them: config → struct → weights → the backend's weights_ready.
 *
 * Two ways into a model:
 *   - internal (models/<name>.h, used by pipeline/): *_forward_be on backend memory, arena reset
 *     on return; inputs and outputs are the caller's backend buffers.
 *   - public (kandinsky.h): host pointers; a thin wrapper checks the arguments, stages the inputs
 *     into backend memory (kd_model_stage_in; nothing to copy where the backend's memory is the
 *     host's), runs the internal forward and downloads the outputs (kd_model_stage_out). */
#ifndef KD_MODELS_MODEL_H
#define KD_MODELS_MODEL_H

#include <stddef.h>

#include "api/ctx.h"
#include "backend/ops.h"
#include "io/config.h"
#include "io/weights.h"

typedef struct kd_model_base {
    kd_weights *w;      /* every tensor the model binds points into these */
    kd_arena arena;     /* activations of one forward (backend memory), reset after each */
    kd_arena io;        /* staged inputs/outputs of the public wrappers (backend memory) */
    void *host;         /* host scratch a forward builds small inputs in (masks, ids), grown once */
    size_t host_cap;
} kd_model_base;

typedef struct kd_model_kind {
    const char *name;  /* "unet", "movq", ...: prefixes messages */
    size_t size;       /* sizeof the model struct, whose first member is its kd_model_base */
    /* Reads the config into the zeroed model; a failure is prefixed with the config's path. */
    kd_status (*read_config)(void *model, const kd_config *cfg, kd_err *e);
    kd_status (*load_weights)(void *model, kd_err *e);
    void (*free_layers)(void *model); /* what load_weights allocated besides the base (may be NULL) */
} kd_model_kind;

/* <path>/config.json + the weights in <path> → *out (NULL on failure, with the message on ctx). */
kd_status kd_model_load(kd_ctx *ctx, const char *path, const kd_model_kind *kind, void **out);
void kd_model_free(void *model, const kd_model_kind *kind);
/* The same for a checkpoint without config.json (e.g. Kandinsky 2.0's vae.ckpt, whose
 * configuration is the original code's): init fills the zeroed model in place of read_config;
 * path is the weights file or folder. */
kd_status kd_model_load_init(kd_ctx *ctx, const char *path, const kd_model_kind *kind,
                             kd_status (*init)(void *model, const void *arg, kd_err *e), const void *arg, void **out);

/* Host scratch of at least `bytes`, 64-byte aligned, kept for the model's lifetime (NULL + message
 * on failure); each call may move it. */
void *kd_model_host_scratch(kd_model_base *b, size_t bytes, kd_err *e);

/* Public-wrapper staging. stage_in: *dev = host itself where the backend's memory is the host's,
 * else a copy in b->io. stage_out: a buffer the internal forward writes, host_out itself or one in
 * b->io; kd_model_finish_out downloads it into host_out (no-op when they are the same).
 * kd_model_end_call resets both arenas. */
kd_status kd_model_stage_in(kd_backend *be, kd_model_base *b, const void *host, size_t bytes, const void **dev,
                            kd_err *e);
kd_status kd_model_stage_out(kd_backend *be, kd_model_base *b, void *host_out, size_t bytes, void **dev, kd_err *e);
kd_status kd_model_finish_out(kd_backend *be, void *host_out, const void *dev, size_t bytes, kd_err *e);
void kd_model_end_call(kd_model_base *b);

#endif
