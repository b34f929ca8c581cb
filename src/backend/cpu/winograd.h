#ifndef KD_CPU_WINOGRAD_H
#define KD_CPU_WINOGRAD_H

#include "backend/backend.h"
#include "core/tensor.h"

/* y[B,Cout,Ho,Wo] (image stride y_bstride) = conv3x3(x[B,Cin,H,W], w[Cout,Cin,3,3] in wdt (F32, F16 or BF16), stride 1, pads top/left as given;
 * Ho, Wo already include the bottom/right padding) + bias. */
kd_status kd_conv3x3_winograd(kd_backend *be, float *y, int64_t y_bstride, const float *x, int64_t B, int64_t Cin, int64_t H,
                              int64_t W, const void *w, kd_dtype wdt, int64_t Cout, const float *bias, int pad_t, int pad_l,
                              int64_t Ho, int64_t Wo, kd_err *e);

/* Same contract with Winograd F(4×4, 3×3): fewer multiplies, larger transforms (winograd43.c). */
kd_status kd_conv3x3_winograd43(kd_backend *be, float *y, int64_t y_bstride, const float *x, int64_t B, int64_t Cin,
                                int64_t H, int64_t W, const void *w, kd_dtype wdt, int64_t Cout, const float *bias, int pad_t,
                                int pad_l, int64_t Ho, int64_t Wo, kd_err *e);

#endif
