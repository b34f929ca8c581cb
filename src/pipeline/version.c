/* Which Kandinsky a decoder folder holds, decided once at load: model_index.json's pipeline class
 * when the folder has one, else the U-Net's addition_embed_type (the only structural difference a
 * bare folder shows). A version the caller names must agree with what the folder says. */
#include <stdio.h>
#include <string.h>

#include "io/config.h"
#include "pipeline/k20.h"
#include "pipeline/pipeline.h"

const char *kd_model_version_name(kd_model_version v) {
    switch (v) {
    case KD_MODEL_VERSION_AUTO: return "auto";
    case KD_MODEL_VERSION_2_0: return "2.0";
    case KD_MODEL_VERSION_2_1: return "2.1";
    case KD_MODEL_VERSION_2_2: return "2.2";
    }
    return "?";
}

int kd_model_version_parse(const char *s, kd_model_version *out) {
    if (!s) return -1;
    if (!strcmp(s, "2.0")) *out = KD_MODEL_VERSION_2_0;
    else if (!strcmp(s, "2.1")) *out = KD_MODEL_VERSION_2_1;
    else if (!strcmp(s, "2.2")) *out = KD_MODEL_VERSION_2_2;
    else if (!strcmp(s, "auto")) *out = KD_MODEL_VERSION_AUTO;
    else return -1;
    return 0;
}

const kd_version_desc *kd_version_desc_of(kd_model_version v) {
    return v == KD_MODEL_VERSION_2_1 ? &kd_version_21 : v == KD_MODEL_VERSION_2_2 ? &kd_version_22 : NULL;
}

static const struct {
    const char *name;
    kd_model_version v;
} pipeline_classes[] = {
    {"KandinskyPipeline", KD_MODEL_VERSION_2_1},
    {"KandinskyImg2ImgPipeline", KD_MODEL_VERSION_2_1},
    {"KandinskyInpaintPipeline", KD_MODEL_VERSION_2_1},
    {"KandinskyV22Pipeline", KD_MODEL_VERSION_2_2},
    {"KandinskyV22Img2ImgPipeline", KD_MODEL_VERSION_2_2},
    {"KandinskyV22InpaintPipeline", KD_MODEL_VERSION_2_2},
    {"KandinskyV22ControlnetPipeline", KD_MODEL_VERSION_2_2},
    {"KandinskyV22ControlnetImg2ImgPipeline", KD_MODEL_VERSION_2_2},
};

/* 1 = found (and *out set), 0 = file absent, or a failure status as -1 with e set. */
static int from_model_index(const char *dir, kd_model_version *out, kd_err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    kd_config cfg;
    const char *cls;
    if (kd_config_load(path, &cfg, e) != KD_OK) return -1;
    kd_status s = kd_config_str_or(&cfg, "_class_name", NULL, &cls, e);
    int found = 0;
    for (size_t i = 0; s == KD_OK && cls && i < sizeof pipeline_classes / sizeof *pipeline_classes; i++)
        if (!strcmp(cls, pipeline_classes[i].name)) {
            *out = pipeline_classes[i].v;
            found = 1;
        }
    kd_config_free(&cfg);
    if (s != KD_OK) return kd_err_prefix(e, "%s", path), -1;
    return found; /* another class (a prior, a future version): let the U-Net decide */
}

static kd_status from_unet(const char *dir, kd_model_version *out, kd_err *e) {
    char path[4096];
    snprintf(path, sizeof path, "%s/unet/config.json", dir);
    kd_config cfg;
    const char *add;
    KD_TRY(kd_config_load(path, &cfg, e));
    kd_status s = kd_config_str_or(&cfg, "addition_embed_type", NULL, &add, e);
    if (s == KD_OK && add && !strcmp(add, "text_image")) *out = KD_MODEL_VERSION_2_1;
    else if (s == KD_OK && add && (!strcmp(add, "image") || !strcmp(add, "image_hint"))) *out = KD_MODEL_VERSION_2_2;
    else if (s == KD_OK)
        s = kd_errf(e, KD_ERR_UNSUPPORTED, "addition_embed_type '%s' is not a Kandinsky 2.1 or 2.2 U-Net",
                    add ? add : "null");
    kd_config_free(&cfg);
    if (s != KD_OK) kd_err_prefix(e, "%s", path);
    return s;
}

kd_status kd_detect_decoder_version(const char *decoder_dir, kd_model_version *out, kd_err *e) {
    if (kd_k20_is_folder(decoder_dir)) {
        *out = KD_MODEL_VERSION_2_0;
        return KD_OK;
    }
    int r = from_model_index(decoder_dir, out, e);
    if (r < 0) return e ? e->code : KD_ERR_FORMAT;
    return r ? KD_OK : from_unet(decoder_dir, out, e);
}

kd_status kd_decoder_detect_version(kd_ctx *ctx, const char *decoder_dir, kd_model_version *out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!decoder_dir || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "model version: NULL argument");
    return kd_detect_decoder_version(decoder_dir, out, &ctx->err);
}

const char *kd_decoder_model_version(const char *decoder_dir) {
    kd_model_version v = KD_MODEL_VERSION_2_2;
    if (decoder_dir) kd_detect_decoder_version(decoder_dir, &v, NULL);
    return kd_model_version_name(v);
}
