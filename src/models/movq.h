/* MoVQ autoencoder, internal API (the public one is in kandinsky.h). */
#ifndef KD_MODELS_MOVQ_H
#define KD_MODELS_MOVQ_H

#include "backend/backend.h"
#include "kandinsky.h"

/* kd_movq_encode / kd_movq_decode on backend memory (same shapes; sizes checked as there). */
kd_status kd_movq_encode_be(kd_movq *m, kd_backend *be, const float *image, int batch, int height, int width,
                            float *latents, kd_err *e);
kd_status kd_movq_decode_be(kd_movq *m, kd_backend *be, const float *latents, int batch, int lat_h, int lat_w,
                            float *image, kd_err *e);

#endif
