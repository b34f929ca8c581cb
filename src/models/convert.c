#define _DEFAULT_SOURCE /* realpath */
/* kandinsky convert --weights q8 IN_DIR OUT_DIR: a copy of a model folder whose Linear and conv
 * weights are stored as q8_0 (docs/QUANTIZATION.md), which loads with no conversion cost.
 *
 * The folder is walked recursively. A component folder (config.json naming a model class this
 * engine runs: UNet2DConditionModel, VQModel, PriorTransformer, CLIPTextModelWithProjection,
 * CLIPVisionModelWithProjection, MultilingualCLIP) is loaded the normal way with q8 weights, so
 * exactly the tensors the layer loaders quantise are quantised, and its weights are written as one
 * safetensors file: each quantised weight as I8 of the weight's shape plus "<name>_scale" F16
 * [rows, row_len / 32]; every other tensor (embeddings, norms, biases, conv_in) as stored. Every
 * other file (configs, tokenizers, schedulers, model_index.json) is copied; the component's old
 * weight files are not. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/config.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "models/model.h"

#define CONVERT_MAX_DEPTH 4

typedef enum { K_NONE, K_UNET, K_MOVQ, K_PRIOR, K_CLIP_TEXT, K_CLIP_VISION, K_MCLIP } comp_kind;

static const struct {
    const char *cls;
    comp_kind kind;
} g_classes[] = {{"UNet2DConditionModel", K_UNET},         {"VQModel", K_MOVQ},
                 {"PriorTransformer", K_PRIOR},            {"CLIPTextModelWithProjection", K_CLIP_TEXT},
                 {"CLIPVisionModelWithProjection", K_CLIP_VISION}, {"MultilingualCLIP", K_MCLIP}};

/* The component kind of a folder from its config.json (diffusers' _class_name, transformers'
 * architectures[0]); K_NONE for anything else, or no config. */
static comp_kind folder_kind(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return K_NONE;
    kd_config cfg;
    kd_err e;
    if (kd_config_load(path, &cfg, &e) != KD_OK) return K_NONE;
    const char *cls = NULL, *arch[1] = {NULL};
    int n = 0;
    if (kd_config_str_or(&cfg, "_class_name", NULL, &cls, &e) != KD_OK) cls = NULL;
    if (!cls && kd_config_has(&cfg, "architectures") &&
        kd_config_str_array(&cfg, "architectures", arch, 1, &n, &e) == KD_OK && n >= 1)
        cls = arch[0];
    comp_kind k = K_NONE;
    for (size_t i = 0; cls && i < sizeof g_classes / sizeof g_classes[0]; i++)
        if (!strcmp(cls, g_classes[i].cls)) k = g_classes[i].kind;
    kd_config_free(&cfg);
    return k;
}

/* Loads the component with the context's weight mode (q8) and returns its weight set. */
static kd_status load_component(kd_ctx *ctx, comp_kind k, const char *dir, void **model, kd_weights **w) {
    kd_status s = KD_ERR_INTERNAL;
    switch (k) {
    case K_UNET: s = kd_unet_load(ctx, dir, (kd_unet **)model); break;
    case K_MOVQ: s = kd_movq_load(ctx, dir, (kd_movq **)model); break;
    case K_PRIOR: s = kd_prior_load(ctx, dir, (kd_prior **)model); break;
    case K_CLIP_TEXT: s = kd_clip_text_load(ctx, dir, (kd_clip_text **)model); break;
    case K_CLIP_VISION: s = kd_clip_vision_load(ctx, dir, (kd_clip_vision **)model); break;
    case K_MCLIP: s = kd_mclip_load(ctx, dir, (kd_mclip **)model); break;
    case K_NONE: break;
    }
    if (s == KD_OK) *w = ((kd_model_base *)*model)->w; /* every model struct starts with its base */
    return s;
}

static void free_component(comp_kind k, void *m) {
    switch (k) {
    case K_UNET: kd_unet_free(m); break;
    case K_MOVQ: kd_movq_free(m); break;
    case K_PRIOR: kd_prior_free(m); break;
    case K_CLIP_TEXT: kd_clip_text_free(m); break;
    case K_CLIP_VISION: kd_clip_vision_free(m); break;
    case K_MCLIP: kd_mclip_free(m); break;
    case K_NONE: break;
    }
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Files that hold weights in any format: not copied out of a converted component. */
static int is_weight_file(const char *name) {
    static const char *const ext[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx",
                                      ".index.json", NULL};
    for (int i = 0; ext[i]; i++)
        if (ends_with(name, ext[i])) return 1;
    return 0;
}

/* Writes w's tensors to path: quantised ones as I8 + "_scale", the rest as they are. */
static kd_status write_weights(kd_ctx *ctx, const kd_weights *w, const char *path, size_t *n_q8, size_t *bytes) {
    kd_err *e = &ctx->err;
    size_t n = kd_weights_count(w), cap = 2 * n;
    const char **names = calloc(cap ? cap : 1, sizeof *names);
    char **owned = calloc(n ? n : 1, sizeof *owned);
    kd_tensor *ts = calloc(cap ? cap : 1, sizeof *ts);
    if (!names || !owned || !ts) {
        free(names), free(owned), free(ts);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "convert: out of memory");
    }
    size_t m = 0;
    kd_status s = KD_OK;
    *n_q8 = 0;
    *bytes = 0;
    for (size_t i = 0; i < n && s == KD_OK; i++) {
        const kd_st_tensor *t = kd_weights_at(w, i);
        const int8_t *q;
        const uint16_t *sc;
        names[m] = t->name;
        ts[m] = t->t;
        if (!kd_weights_q8_at(w, i, &q, &sc)) {
            *bytes += kd_tensor_nbytes(&ts[m]);
            m++;
            continue;
        }
        ts[m].dtype = KD_I8;
        ts[m].data = (void *)q;
        *bytes += kd_tensor_nbytes(&ts[m]);
        m++;
        size_t len = strlen(t->name) + 8;
        owned[i] = malloc(len);
        if (!owned[i]) {
            s = kd_ctx_fail(ctx, KD_ERR_OOM, "convert: out of memory");
            break;
        }
        snprintf(owned[i], len, "%s_scale", t->name);
        int64_t rows = t->t.shape[0], numel = kd_tensor_numel(&t->t);
        names[m] = owned[i];
        ts[m] = (kd_tensor){.dtype = KD_F16, .ndim = 2, .shape = {rows, numel / rows / KD_Q8_BLOCK}, .data = (void *)sc};
        *bytes += kd_tensor_nbytes(&ts[m]);
        m++;
        (*n_q8)++;
    }
    kd_st_kv meta[2] = {{"format", "pt"},
                        {"kandinsky.c.weights", "q8_0: int8 I8 tensors with F16 '<name>_scale' [rows, row_len/32], "
                                                "w = q * scale[i/32] (docs/QUANTIZATION.md)"}};
    if (s == KD_OK && kd_st_write(path, names, ts, m, meta, 2, e) != KD_OK) s = e->code ? e->code : KD_ERR_IO;
    for (size_t i = 0; i < n; i++) free(owned[i]);
    free(owned), free(names), free(ts);
    return s;
}

static kd_status copy_file(kd_ctx *ctx, const char *src, const char *dst) {
    FILE *in = fopen(src, "rb");
    if (!in) return kd_ctx_fail(ctx, KD_ERR_IO, "convert: %s: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    if (!out) {
        fclose(in);
        return kd_ctx_fail(ctx, KD_ERR_IO, "convert: cannot create %s: %s", dst, strerror(errno));
    }
    char buf[1 << 16];
    size_t k;
    int ok = 1;
    while (ok && (k = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, k, out) == k;
    ok = ok && !ferror(in);
    fclose(in);
    if (fclose(out) != 0) ok = 0;
    return ok ? KD_OK : kd_ctx_fail(ctx, KD_ERR_IO, "convert: copying %s to %s failed", src, dst);
}

static kd_status convert_component(kd_ctx *ctx, comp_kind k, const char *in, const char *out, kd_convert_report report,
                                   void *user) {
    char *wpath = NULL;
    if (kd_weights_locate(in, &wpath, &ctx->err) != KD_OK) return ctx->err.code;
    const char *base = strrchr(wpath, '/') ? strrchr(wpath, '/') + 1 : wpath;
    const char *oname = !strncmp(base, "diffusion_pytorch_model", 23) ? "diffusion_pytorch_model.safetensors"
                                                                       : "model.safetensors";
    free(wpath);
    void *model = NULL;
    kd_weights *w = NULL;
    KD_TRY(load_component(ctx, k, in, &model, &w));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out, oname);
    size_t n_q8 = 0, bytes = 0;
    kd_status s = write_weights(ctx, w, path, &n_q8, &bytes);
    if (s == KD_OK && report) {
        char line[4400];
        snprintf(line, sizeof line, "%s: %zu of %zu tensors quantised, %.1f MB", path, n_q8, kd_weights_count(w),
                 (double)bytes / 1e6);
        report(user, line);
    }
    free_component(k, model);
    return s;
}

static kd_status convert_dir(kd_ctx *ctx, const char *in, const char *out, int depth, kd_convert_report report,
                             void *user) {
    if (depth > CONVERT_MAX_DEPTH) return kd_ctx_fail(ctx, KD_ERR_UNSUPPORTED, "convert: %s is nested too deep", in);
    if (mkdir(out, 0755) != 0 && errno != EEXIST)
        return kd_ctx_fail(ctx, KD_ERR_IO, "convert: cannot create %s: %s", out, strerror(errno));
    comp_kind k = folder_kind(in);
    DIR *d = opendir(in);
    if (!d) return kd_ctx_fail(ctx, KD_ERR_IO, "convert: cannot read %s: %s", in, strerror(errno));
    kd_status s = KD_OK;
    struct dirent *de;
    while (s == KD_OK && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2]))) continue;
        char src[4096], dst[4096];
        if ((size_t)snprintf(src, sizeof src, "%s/%s", in, name) >= sizeof src ||
            (size_t)snprintf(dst, sizeof dst, "%s/%s", out, name) >= sizeof dst) {
            s = kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "convert: path too long under %s", in);
            break;
        }
        struct stat st;
        if (stat(src, &st) != 0) continue; /* a dangling link */
        if (S_ISDIR(st.st_mode))
            s = convert_dir(ctx, src, dst, depth + 1, report, user);
        else if (S_ISREG(st.st_mode) && !(k != K_NONE && is_weight_file(name)))
            s = copy_file(ctx, src, dst);
    }
    closedir(d);
    if (s == KD_OK && k != K_NONE) s = convert_component(ctx, k, in, out, report, user);
    return s;
}

kd_status kd_convert_weights(kd_ctx *ctx, const char *in_dir, const char *out_dir, kd_weight_mode mode,
                             kd_convert_report report, void *user) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!in_dir || !out_dir) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "convert: NULL folder");
    if (mode != KD_WEIGHTS_Q8) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "convert: only --weights q8 is a conversion");
    struct stat si;
    if (stat(in_dir, &si) != 0 || !S_ISDIR(si.st_mode))
        return kd_ctx_fail(ctx, KD_ERR_NOT_FOUND, "convert: %s is not a folder", in_dir);
    int created = mkdir(out_dir, 0755) == 0;
    if (!created && errno != EEXIST)
        return kd_ctx_fail(ctx, KD_ERR_IO, "convert: cannot create %s: %s", out_dir, strerror(errno));
    char *ri = realpath(in_dir, NULL), *ro = realpath(out_dir, NULL);
    size_t li = ri ? strlen(ri) : 0;
    int inside = !ri || !ro || (!strncmp(ro, ri, li) && (ro[li] == '/' || !ro[li]));
    free(ri);
    free(ro);
    if (inside) {
        if (created) rmdir(out_dir);
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "convert: the output %s is %s %s", out_dir,
                           "the input folder or inside", in_dir);
    }
    kd_weight_mode saved = ctx->params.weights;
    ctx->params.weights = mode;
    kd_status s = convert_dir(ctx, in_dir, out_dir, 0, report, user);
    ctx->params.weights = saved;
    return s;
}
