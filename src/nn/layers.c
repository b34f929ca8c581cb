#include "nn/layers.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

const char *kd_name(char *buf, const char *prefix, const char *suffix) {
    snprintf(buf, KD_NAME_MAX, "%s%s%s", prefix, *prefix ? "." : "", suffix);
    return buf;
}

const char *kd_namef(char *buf, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, KD_NAME_MAX, fmt, ap);
    va_end(ap);
    return buf;
}

/* Binds a big weight. An F32 tensor whose data is not 4-byte aligned inside the file (legal in
 * safetensors, never produced by the reference writers) gets an aligned f32 copy. A q8_0 weight
 * of a converted file binds as it is; with kd_weights_set_q8 the others are quantised here. */
static kd_status bind_weight(kd_weights *w, const char *name, int ndim, const int64_t *shape, kd_tensor *dst,
                             kd_err *e) {
    kd_bind b = {.name = name, .dst = dst, .ndim = ndim, .q8_ok = 1};
    for (int i = 0; i < ndim; i++) b.shape[i] = shape[i];
    KD_TRY(kd_weights_bind(w, NULL, &b, 1, e));
    if (dst->dtype == KD_Q8_0) return KD_OK; /* stored quantised */
    if ((uintptr_t)dst->data % kd_dtype_size(dst->dtype) != 0) {
        float *copy;
        KD_TRY(kd_weights_f32(w, name, ndim, shape, &copy, e));
        dst->data = copy;
        dst->dtype = KD_F32;
    }
    if (kd_weights_wants_q8(w)) {
        kd_status s = kd_weights_quantize_q8(w, name, dst, e);
        if (s != KD_ERR_UNSUPPORTED) return s;
        kd_err_clear(e); /* this one stays in its file's type (e.g. conv_in: 4 × 9 values per row) */
    }
    return KD_OK;
}

static kd_status bind_vector(kd_weights *w, const char *name, int64_t n, float **out, kd_err *e) {
    return kd_weights_f32(w, name, 1, &n, out, e);
}

kd_status kd_conv2d_layer_load(kd_weights *w, const char *name, int64_t cin, int64_t cout, int k, int stride, int pad,
                               int has_bias, kd_conv2d_layer *out, kd_err *e) {
    char buf[KD_NAME_MAX];
    int64_t shape[4] = {cout, cin, k, k};
    out->cin = cin;
    out->cout = cout;
    out->k = k;
    out->p = (kd_conv2d_params){stride, pad, pad, pad, pad};
    out->bias = NULL;
    KD_TRY(bind_weight(w, kd_name(buf, name, "weight"), 4, shape, &out->weight, e));
    if (has_bias) KD_TRY(bind_vector(w, kd_name(buf, name, "bias"), cout, &out->bias, e));
    return KD_OK;
}

void kd_conv2d_layer_out_size(const kd_conv2d_layer *l, int64_t H, int64_t W, int64_t *Ho, int64_t *Wo) {
    *Ho = kd_conv2d_out_dim(H, l->k, l->p.stride, l->p.pad_top, l->p.pad_bottom);
    *Wo = kd_conv2d_out_dim(W, l->k, l->p.stride, l->p.pad_left, l->p.pad_right);
}

kd_status kd_conv2d_layer_forward(kd_backend *be, const kd_conv2d_layer *l, float *y, const float *x, int64_t B,
                                  int64_t H, int64_t W, kd_err *e) {
    return kd_conv2d(be, y, x, B, l->cin, H, W, &l->weight, l->bias, &l->p, e);
}

kd_status kd_linear_layer_load_1x1(kd_weights *w, const char *name, int64_t in, int64_t out, int has_bias,
                                   kd_linear_layer *l, kd_err *e) {
    char buf[KD_NAME_MAX];
    int64_t shape[4] = {out, in, 1, 1};
    l->in = in;
    l->out = out;
    l->bias = NULL;
    KD_TRY(bind_weight(w, kd_name(buf, name, "weight"), 4, shape, &l->weight, e));
    l->weight.ndim = 2; /* the same bytes as [out, in] */
    if (has_bias) KD_TRY(bind_vector(w, kd_name(buf, name, "bias"), out, &l->bias, e));
    return KD_OK;
}

kd_status kd_linear_layer_load(kd_weights *w, const char *name, int64_t in, int64_t out, int has_bias,
                               kd_linear_layer *l, kd_err *e) {
    char buf[KD_NAME_MAX];
    int64_t shape[2] = {out, in};
    l->in = in;
    l->out = out;
    l->bias = NULL;
    KD_TRY(bind_weight(w, kd_name(buf, name, "weight"), 2, shape, &l->weight, e));
    if (has_bias) KD_TRY(bind_vector(w, kd_name(buf, name, "bias"), out, &l->bias, e));
    return KD_OK;
}

kd_status kd_linear_layer_forward(kd_backend *be, const kd_linear_layer *l, float *y, const float *x, int64_t M,
                                  kd_err *e) {
    return kd_linear(be, y, x, M, &l->weight, l->bias, e);
}

static kd_status norm_load(kd_weights *w, const char *name, int64_t C, int groups, float eps, kd_norm_layer *out,
                           kd_err *e) {
    char buf[KD_NAME_MAX];
    out->C = C;
    out->groups = groups;
    out->eps = eps;
    KD_TRY(bind_vector(w, kd_name(buf, name, "weight"), C, &out->weight, e));
    return bind_vector(w, kd_name(buf, name, "bias"), C, &out->bias, e);
}

kd_status kd_group_norm_layer_load(kd_weights *w, const char *name, int64_t C, int groups, float eps,
                                   kd_norm_layer *out, kd_err *e) {
    if (groups <= 0 || C % groups != 0)
        return kd_errf(e, KD_ERR_SHAPE, "%s: %lld channels cannot be split into %d groups", name, (long long)C, groups);
    return norm_load(w, name, C, groups, eps, out, e);
}

kd_status kd_layer_norm_layer_load(kd_weights *w, const char *name, int64_t C, float eps, kd_norm_layer *out,
                                   kd_err *e) {
    return norm_load(w, name, C, 0, eps, out, e);
}
