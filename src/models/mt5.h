/* mT5 encoder (Kandinsky 2.0's second text encoder), internal API (the public one is in
 * kandinsky.h). */
#ifndef KD_MODELS_MT5_H
#define KD_MODELS_MT5_H

#include "backend/backend.h"
#include "kandinsky.h"

/* kd_mt5_forward with last_hidden [batch, seq_len, d_model] in backend memory; ids and mask stay
 * host memory. */
kd_status kd_mt5_forward_be(kd_mt5 *m, kd_backend *be, const int32_t *ids, const int32_t *mask, int batch,
                            int seq_len, float *last_hidden, kd_err *e);

/* T5Attention._relative_position_bucket for rel = key position − query position, in the float32
 * arithmetic torch uses (checked against torch for every distance -300..300). */
int kd_t5_relative_bucket(int64_t rel, int bidirectional, int num_buckets, int max_distance);

#endif
