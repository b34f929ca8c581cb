/* CLIP vision encoder, internal API (the public one is in kandinsky.h). */
#ifndef KD_MODELS_CLIP_VISION_H
#define KD_MODELS_CLIP_VISION_H

#include "backend/backend.h"
#include "kandinsky.h"

/* kd_clip_vision_forward on backend memory: pixels [batch, 3, S, S] → image_embeds [batch, P]. */
kd_status kd_clip_vision_forward_be(kd_clip_vision *m, kd_backend *be, const float *pixels, int batch,
                                    float *image_embeds, kd_err *e);

#endif
