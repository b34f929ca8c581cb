/* CLIP text encoder, internal API (the public one is in kandinsky.h). */
#ifndef KD_MODELS_CLIP_TEXT_H
#define KD_MODELS_CLIP_TEXT_H

#include "backend/backend.h"
#include "kandinsky.h"

/* kd_clip_text_forward with text_embeds [batch, P] and last_hidden [batch, seq_len, W] (may be
 * NULL) in backend memory; ids stay host memory. */
kd_status kd_clip_text_forward_be(kd_clip_text *m, kd_backend *be, const int32_t *ids, int batch, int seq_len,
                                  float *text_embeds, float *last_hidden, kd_err *e);

#endif
