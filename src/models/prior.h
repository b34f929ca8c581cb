/* Diffusion prior (PriorTransformer), internal API (the public one is in kandinsky.h). */
#ifndef KD_MODELS_PRIOR_H
#define KD_MODELS_PRIOR_H

#include "backend/backend.h"
#include "kandinsky.h"

/* kd_prior_forward_text on backend memory: x_t, proj_embedding [batch, E], encoder_hidden_states
 * [batch, text_len, E] and out [batch, E] are backend buffers; timesteps [batch] and
 * attention_mask [batch, text_len] (may be NULL) are host memory. */
kd_status kd_prior_forward_be(kd_prior *p, kd_backend *be, const float *x_t, const float *timesteps,
                              const float *proj_embedding, const float *encoder_hidden_states,
                              const int32_t *attention_mask, int text_len, int batch, float *out, kd_err *e);

#endif
