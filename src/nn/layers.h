/* Backend-agnostic layers: a weight binding plus a forward function, named after the PyTorch
 * modules they mirror. Each *_load takes the module's full state-dict prefix (e.g.
 * "decoder.conv_in") and the shape the config implies, and fails with the tensor's name if the
 * checkpoint disagrees. Big weights stay in the mapping in their stored dtype (F32/F16/BF16);
 * biases and norm parameters become f32 copies owned by the kd_weights. */
#ifndef KD_NN_LAYERS_H
#define KD_NN_LAYERS_H

#include "backend/ops.h"
#include "io/weights.h"

typedef struct kd_conv2d_layer {
    kd_tensor weight; /* [cout, cin, k, k] */
    float *bias;      /* [cout] or NULL */
    int64_t cin, cout;
    int k;
    kd_conv2d_params p;
} kd_conv2d_layer;

typedef struct kd_linear_layer {
    kd_tensor weight; /* [out, in] */
    float *bias;      /* [out] or NULL */
    int64_t in, out;
} kd_linear_layer;

typedef struct kd_norm_layer {
    float *weight, *bias; /* [C] */
    int64_t C;
    int groups;           /* GroupNorm; 0 for LayerNorm */
    float eps;
} kd_norm_layer;

/* nn.Conv2d(cin, cout, k, stride, padding=pad) at `name`; has_bias 0/1. */
kd_status kd_conv2d_layer_load(kd_weights *w, const char *name, int64_t cin, int64_t cout, int k, int stride, int pad,
                               int has_bias, kd_conv2d_layer *out, kd_err *e);
/* y[B,cout,Ho,Wo] from x[B,cin,H,W]; Ho/Wo from kd_conv2d_out_dim. */
kd_status kd_conv2d_layer_forward(kd_backend *be, const kd_conv2d_layer *l, float *y, const float *x, int64_t B,
                                  int64_t H, int64_t W, kd_err *e);
void kd_conv2d_layer_out_size(const kd_conv2d_layer *l, int64_t H, int64_t W, int64_t *Ho, int64_t *Wo);

kd_status kd_linear_layer_load(kd_weights *w, const char *name, int64_t in, int64_t out, int has_bias,
                               kd_linear_layer *l, kd_err *e);
/* The same from a 1×1 convolution's weight [out, in, 1, 1] (ldm's attention q/k/v/proj_out), applied
 * to tokens instead of an NCHW map. */
kd_status kd_linear_layer_load_1x1(kd_weights *w, const char *name, int64_t in, int64_t out, int has_bias,
                                   kd_linear_layer *l, kd_err *e);
/* y[M,out] = x[M,in]·Wᵀ + b */
kd_status kd_linear_layer_forward(kd_backend *be, const kd_linear_layer *l, float *y, const float *x, int64_t M,
                                  kd_err *e);

kd_status kd_group_norm_layer_load(kd_weights *w, const char *name, int64_t C, int groups, float eps,
                                   kd_norm_layer *out, kd_err *e);
kd_status kd_layer_norm_layer_load(kd_weights *w, const char *name, int64_t C, float eps, kd_norm_layer *out,
                                   kd_err *e);

/* "prefix" + "." + "suffix" into buf (size KD_NAME_MAX). */
#define KD_NAME_MAX 256
const char *kd_name(char *buf, const char *prefix, const char *suffix);
const char *kd_namef(char *buf, const char *fmt, ...) KD_PRINTF(2, 3);

#endif
