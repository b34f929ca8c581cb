/* Public image and latent file helpers built on src/io: kd_image_read / kd_image_write and the
 * MoVQ round trips used by `kandinsky autoencode` and `kandinsky decode`. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/ctx.h"
#include "io/image.h"
#include "io/safetensors.h"

kd_status kd_image_read(kd_ctx *ctx, const char *path, kd_image *out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!path || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "image read: NULL argument");
    *out = (kd_image){0};
    kd_image raw = {0};
    kd_image_limits lim = kd_image_limits_default();
    KD_TRY(kd_image_load(path, &lim, &raw, &ctx->err));
    kd_status s = kd_image_to_rgb(&raw, out, &ctx->err);
    kd_image_free(&raw);
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

kd_status kd_image_encode_png(kd_ctx *ctx, const kd_image *img, const char *const *text, uint8_t **png,
                              size_t *png_len) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!img || !png || !png_len) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "kd_image_encode_png: NULL argument");
    return kd_image_encode_png_mem(img, text, png, png_len, &ctx->err);
}

kd_status kd_image_write(kd_ctx *ctx, const char *path, const kd_image *img, const char *const *text) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!path || !img || !img->data) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "image write: NULL argument");
    if (ends_with(path, ".jpg") || ends_with(path, ".jpeg")) return kd_image_save_jpeg(path, img, 95, &ctx->err);
    if (!ends_with(path, ".png"))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "%s: unknown image type (use .png, .jpg or .jpeg)", path);
    return kd_image_save_png_text(path, img, text, &ctx->err);
}

/* Image → [-1, 1] tensor at the largest size that is a multiple of the MoVQ factor (bicubic,
 * Pillow reducing_gap 1: diffusers' VaeImageProcessor as the Kandinsky img2img pipelines set it). */
static kd_status image_to_input(kd_ctx *ctx, const kd_image *rgb, int f, float **out, int *w, int *h) {
    *w = rgb->width / f * f;
    *h = rgb->height / f * f;
    if (*w < f || *h < f)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "image %dx%d is smaller than the autoencoder's factor %d", rgb->width,
                           rgb->height, f);
    kd_image sized = {0};
    const kd_image *src = rgb;
    if (*w != rgb->width || *h != rgb->height) {
        KD_TRY(kd_image_resize(rgb, *w, *h, KD_RESAMPLE_BICUBIC, 1.0, &sized, &ctx->err));
        src = &sized;
    }
    *out = malloc((size_t)3 * *w * *h * sizeof(float));
    kd_status s = *out ? kd_image_to_tensor(src, *out, &ctx->err) : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    kd_image_free(&sized);
    return s;
}

static kd_status save_latents(kd_ctx *ctx, const char *path, const float *z, int C, int h, int w) {
    kd_tensor t = {.dtype = KD_F32, .ndim = 4, .shape = {1, C, h, w}, .data = (void *)z};
    const char *names[] = {"latents"};
    kd_st_kv meta[] = {{"format", "pt"}, {"producer", "kandinsky.c"}};
    return kd_st_write(path, names, &t, 1, meta, 2, &ctx->err);
}

static kd_status decode_to_file(kd_ctx *ctx, kd_movq *m, const float *z, int h, int w, const char *out) {
    int f = kd_movq_downscale(m);
    float *px = malloc((size_t)3 * h * f * w * f * sizeof(float));
    if (!px) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    kd_status s = kd_movq_decode(ctx, m, z, 1, h, w, px);
    kd_image img = {0};
    if (s == KD_OK) s = kd_tensor_to_image(px, w * f, h * f, &img, &ctx->err);
    if (s == KD_OK) s = kd_image_write(ctx, out, &img, NULL);
    kd_image_free(&img);
    free(px);
    return s;
}

kd_status kd_movq_autoencode_file(kd_ctx *ctx, const char *model, const char *in, const char *out,
                                  const char *latents_out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!model || !in || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "autoencode: NULL argument");
    kd_movq *m = NULL;
    kd_image rgb = {0};
    float *x = NULL, *z = NULL;
    int w = 0, h = 0, lh = 0, lw = 0;
    kd_status s = kd_movq_load(ctx, model, &m);
    if (s == KD_OK) s = kd_image_read(ctx, in, &rgb);
    if (s == KD_OK) s = image_to_input(ctx, &rgb, kd_movq_downscale(m), &x, &w, &h);
    if (s == KD_OK) {
        kd_movq_latent_size(m, h, w, &lh, &lw);
        z = malloc((size_t)kd_movq_latent_channels(m) * lh * lw * sizeof(float));
        s = z ? kd_movq_encode(ctx, m, x, 1, h, w, z) : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    }
    if (s == KD_OK && latents_out) s = save_latents(ctx, latents_out, z, kd_movq_latent_channels(m), lh, lw);
    if (s == KD_OK) s = decode_to_file(ctx, m, z, lh, lw, out);
    free(x);
    free(z);
    kd_image_free(&rgb);
    kd_movq_free(m);
    return s;
}

kd_status kd_movq_decode_file(kd_ctx *ctx, const char *model, const char *latents, const char *out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!model || !latents || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "decode: NULL argument");
    kd_movq *m = NULL;
    kd_st_file *f = NULL;
    float *z = NULL;
    kd_status s = kd_movq_load(ctx, model, &m);
    if (s == KD_OK) s = kd_st_open(latents, &f, &ctx->err);
    const kd_st_tensor *t = NULL;
    if (s == KD_OK) {
        t = kd_st_find(f, "latents");
        if (!t && f->n_tensors == 1) t = &f->tensors[0];
        if (!t)
            s = kd_ctx_fail(ctx, KD_ERR_NOT_FOUND, "%s: no tensor named 'latents' (and more than one tensor)", latents);
    }
    if (s == KD_OK && (t->t.ndim != 4 || t->t.shape[0] != 1 || t->t.shape[1] != kd_movq_latent_channels(m) ||
                       t->t.dtype == KD_I64))
        s = kd_ctx_fail(ctx, KD_ERR_SHAPE, "%s: latents must be a float [1, %d, h, w] tensor", latents,
                        kd_movq_latent_channels(m));
    if (s == KD_OK) {
        size_t n = (size_t)kd_tensor_numel(&t->t);
        z = malloc(n * sizeof(float));
        if (!z) s = kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
        else kd_convert_to_f32(z, t->t.data, t->t.dtype, n);
    }
    if (s == KD_OK) s = decode_to_file(ctx, m, z, (int)t->t.shape[2], (int)t->t.shape[3], out);
    free(z);
    kd_st_close(f);
    kd_movq_free(m);
    return s;
}
