#include "models/clip_config.h"

#include <stdio.h>

typedef struct {
    const kd_config *cfg;
    const char *prefix; /* "" or "text_config." */
    kd_err *e;
} reader;

static const char *key(const reader *r, const char *k, char *buf) {
    snprintf(buf, 128, "%s%s", r->prefix, k);
    return buf;
}

static kd_status get_int(const reader *r, const char *k, int64_t def, int64_t *out) {
    char buf[128];
    return kd_config_int_or(r->cfg, key(r, k, buf), def, out, r->e);
}

kd_status kd_clip_config_read(const kd_config *cfg, const char *section, int text, kd_clip_config *c, kd_err *e) {
    char pre[64] = "";
    if (kd_config_has(cfg, section)) snprintf(pre, sizeof pre, "%s.", section);
    reader r = {cfg, pre, e};
    char buf[128];
    KD_TRY(get_int(&r, "hidden_size", text ? 512 : 768, &c->hidden));
    KD_TRY(get_int(&r, "intermediate_size", text ? 2048 : 3072, &c->intermediate));
    KD_TRY(get_int(&r, "num_hidden_layers", 12, &c->layers));
    KD_TRY(get_int(&r, "num_attention_heads", text ? 8 : 12, &c->heads));
    KD_TRY(get_int(&r, "projection_dim", 512, &c->projection_dim));
    double eps;
    KD_TRY(kd_config_float_or(cfg, key(&r, "layer_norm_eps", buf), 1e-5, &eps, e));
    c->eps = (float)eps;
    const char *act;
    KD_TRY(kd_config_str_or(cfg, key(&r, "hidden_act", buf), "quick_gelu", &act, e));
    if (kd_act_parse(act, &c->act) != 0)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "hidden_act '%s' is not supported (gelu, quick_gelu)", act);
    KD_TRY(get_int(&r, "vocab_size", 49408, &c->vocab));
    KD_TRY(get_int(&r, "max_position_embeddings", 77, &c->max_positions));
    KD_TRY(get_int(&r, "eos_token_id", 2, &c->eos_token_id));
    KD_TRY(get_int(&r, "image_size", 224, &c->image_size));
    KD_TRY(get_int(&r, "patch_size", 32, &c->patch_size));
    KD_TRY(get_int(&r, "num_channels", 3, &c->num_channels));
    int64_t big = (int64_t)1 << 20;
    if (c->hidden < 1 || c->hidden > big || c->intermediate < 1 || c->intermediate > big || c->layers < 0 ||
        c->layers > 1024 || c->heads < 1 || c->hidden % c->heads || c->projection_dim < 1 || c->projection_dim > big ||
        c->vocab < 1 || c->vocab > (int64_t)1 << 24 || c->max_positions < 1 || c->max_positions > 1 << 16 ||
        c->image_size < 1 || c->image_size > 4096 || c->patch_size < 1 || c->patch_size > c->image_size ||
        c->num_channels < 1 || c->num_channels > 16)
        return kd_errf(e, KD_ERR_FORMAT,
                       "implausible CLIP sizes (hidden %lld, heads %lld, layers %lld, intermediate %lld, image %lld/%lld)",
                       (long long)c->hidden, (long long)c->heads, (long long)c->layers, (long long)c->intermediate,
                       (long long)c->image_size, (long long)c->patch_size);
    return KD_OK;
}
