/* Fields shared by CLIPTextConfig and CLIPVisionConfig, read from a text_encoder/ or
 * image_encoder/ config.json (top-level keys), or from a combined CLIPConfig's
 * "text_config" / "vision_config" section. */
#ifndef KD_MODELS_CLIP_CONFIG_H
#define KD_MODELS_CLIP_CONFIG_H

#include "io/config.h"
#include "nn/transformer.h"

typedef struct kd_clip_config {
    int64_t hidden, intermediate, layers, heads, projection_dim;
    float eps;
    kd_act act;
    /* text */
    int64_t vocab, max_positions, eos_token_id;
    /* vision */
    int64_t image_size, patch_size, num_channels;
} kd_clip_config;

/* section: "text_config" or "vision_config" (used only when the file has that key). */
kd_status kd_clip_config_read(const kd_config *cfg, const char *section, int text, kd_clip_config *c, kd_err *e);

#endif
