/* MultilingualCLIP (Kandinsky 2.1 text encoder), internal API (the public one is in kandinsky.h). */
#ifndef KD_MODELS_MCLIP_H
#define KD_MODELS_MCLIP_H

#include "backend/backend.h"
#include "kandinsky.h"

/* kd_mclip_forward with text_embeds [batch, out_dim] and last_hidden [batch, seq_len, H] (may be
 * NULL) in backend memory; ids and mask stay host memory. */
kd_status kd_mclip_forward_be(kd_mclip *m, kd_backend *be, const int32_t *ids, const int32_t *mask, int batch,
                              int seq_len, float *text_embeds, float *last_hidden, kd_err *e);

#endif
