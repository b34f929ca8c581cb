/* Inputs of the decoder variants, prepared exactly as the diffusers 2.2 pipelines prepare them.
 *
 *  img2img  (KandinskyV22Img2ImgPipeline): VaeImageProcessor — size floored to a multiple of the
 *           MoVQ factor f, Pillow bicubic with reducing_gap 1, x/255·2−1 — then MoVQ encode.
 *           (diffusers passes (width, height) into preprocess(image, height, width), transposing
 *           non-square requests; we resize to what the user asked: docs/NOTES.md.)
 *  inpaint  (KandinskyV22InpaintPipeline, prepare_mask_and_masked_image): image resized bicubic
 *           (reducing_gap 1) to the size, x/127.5−1, MoVQ encode; mask resized LANCZOS, to gray
 *           (Pillow's luma), /255, binarised at 0.5, inverted (1 = keep), nearest-resized to the
 *           latents, then eroded by prepare_mask; masked latents = image latents × mask.
 *  ControlNet (KandinskyV22ControlnetPipeline): the hint as floats in [0, 1] at 8× the latent size
 *           (the hint block always downsamples by 8); gray hints are replicated to RGB, and a hint of
 *           another size is resized (Pillow bicubic) first. */
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "io/image.h"
#include "pipeline/pipeline.h"

static kd_status to_rgb_sized(kd_ctx *ctx, const kd_image *in, int w, int h, kd_resample filter, double gap,
                              kd_image *out, const char *what) {
    if (!in || !in->data || in->width < 1 || in->height < 1)
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "%s: empty image", what);
    kd_image rgb = {0};
    KD_TRY(kd_image_to_rgb(in, &rgb, &ctx->err));
    kd_status s = KD_OK;
    if (rgb.width == w && rgb.height == h) {
        *out = rgb;
        return KD_OK;
    }
    s = kd_image_resize(&rgb, w, h, filter, gap, out, &ctx->err);
    kd_image_free(&rgb);
    if (s != KD_OK) kd_err_prefix(&ctx->err, "%s", what);
    return s;
}

void kd_dec_inputs_free(kd_dec_inputs *in) {
    for (int i = 0; i < 4; i++) free(in->owned[i]);
    *in = (kd_dec_inputs){0};
}

/* Encodes an image tensor [3, H, W] into latents [C, H/f, W/f] repeated n times. */
static kd_status encode_repeat(kd_ctx *ctx, const kd_autoencoder *ae, const float *x, int H, int W, int n, float **out) {
    int C = kd_ae_latent_channels(ae), lh, lw;
    kd_ae_latent_size(ae, H, W, &lh, &lw);
    size_t per = (size_t)C * lh * lw;
    *out = malloc((size_t)n * per * sizeof(float));
    if (!*out) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    KD_TRY(kd_ae_encode_host(ctx, ae, x, 1, H, W, *out));
    for (int b = 1; b < n; b++) memcpy(*out + b * per, *out, per * sizeof(float));
    return KD_OK;
}

kd_status kd_prepare_img2img(kd_ctx *ctx, const kd_autoencoder *ae, const kd_image *init_image, int width, int height,
                             int n, double strength, kd_dec_inputs *in, int *lat_h, int *lat_w) {
    if (!(strength >= 0.0 && strength <= 1.0))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "strength %g is outside [0, 1]", strength);
    int f = kd_ae_downscale(ae), W = width / f * f, H = height / f * f;
    if (W < f || H < f) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "size %dx%d is too small", width, height);
    kd_image sized = {0};
    KD_TRY(to_rgb_sized(ctx, init_image, W, H, KD_RESAMPLE_BICUBIC, 1.0, &sized, "init image"));
    float *x = malloc((size_t)3 * W * H * sizeof(float));
    kd_status s = x ? kd_image_to_tensor(&sized, x, &ctx->err) : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    kd_image_free(&sized);
    if (s == KD_OK) s = encode_repeat(ctx, ae, x, H, W, n, &in->owned[0]);
    free(x);
    if (s != KD_OK) return s;
    kd_ae_latent_size(ae, H, W, lat_h, lat_w);
    in->init_latents = in->owned[0];
    in->strength = strength;
    return KD_OK;
}

/* F.interpolate(mask[1, 1, H, W], (lh, lw), mode="nearest") on the backend (host in, host out). */
static kd_status resize_nearest(kd_ctx *ctx, const float *src, int H, int W, float *dst, int lh, int lw) {
    kd_backend *be = &ctx->be;
    kd_err *e = &ctx->err;
    size_t in_bytes = (size_t)H * W * sizeof(float), out_bytes = (size_t)lh * lw * sizeof(float);
    void *a = NULL, *b = NULL;
    kd_status s = kd_be_alloc(be, in_bytes, &a, e);
    if (s == KD_OK) s = kd_be_alloc(be, out_bytes, &b, e);
    if (s == KD_OK) s = kd_upload(be, a, src, in_bytes, e);
    if (s == KD_OK) s = kd_resize_nearest(be, b, a, 1, H, W, lh, lw, e);
    if (s == KD_OK) s = kd_download(be, dst, b, out_bytes, e);
    kd_be_free(be, a);
    kd_be_free(be, b);
    return s;
}

/* prepare_mask: every 0 (repaint) pixel of the original mask also clears its neighbours above,
 * left, above-left, below, right and below-right (not the anti-diagonal ones). */
static void erode(const float *src, float *dst, int h, int w) {
    memcpy(dst, src, (size_t)h * w * sizeof(float));
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            if (src[i * w + j] == 1.0f) continue;
            if (i > 0) dst[(i - 1) * w + j] = 0;
            if (j > 0) dst[i * w + j - 1] = 0;
            if (i > 0 && j > 0) dst[(i - 1) * w + j - 1] = 0;
            if (i < h - 1) dst[(i + 1) * w + j] = 0;
            if (j < w - 1) dst[i * w + j + 1] = 0;
            if (i < h - 1 && j < w - 1) dst[(i + 1) * w + j + 1] = 0;
        }
}

/* Mask [H, W] in {0, 1} with 1 = keep. */
static kd_status pixel_mask(kd_ctx *ctx, const kd_image *mask, int invert, int W, int H, float *m) {
    kd_image sized = {0}, gray = {0};
    if (!mask || !mask->data) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "mask: empty image");
    KD_TRY(kd_image_resize(mask, W, H, KD_RESAMPLE_LANCZOS, 0.0, &sized, &ctx->err));
    kd_status s = kd_image_to_gray(&sized, &gray, &ctx->err);
    kd_image_free(&sized);
    if (s != KD_OK) return kd_err_prefix(&ctx->err, "mask");
    for (int k = 0; k < W * H; k++) {
        float v = (float)gray.data[k] / 255.0f;
        float repaint = v >= 0.5f ? 1.0f : 0.0f;
        if (invert) repaint = 1.0f - repaint;
        m[k] = 1.0f - repaint;
    }
    kd_image_free(&gray);
    return KD_OK;
}

kd_status kd_prepare_inpaint(kd_ctx *ctx, const kd_autoencoder *ae, const kd_image *image, const kd_image *mask,
                             int invert_mask, int width, int height, int n, int lat_h, int lat_w, kd_dec_inputs *in) {
    int W = width, H = height, lh, lw, C = kd_ae_latent_channels(ae);
    kd_ae_latent_size(ae, H, W, &lh, &lw);
    if (lh != lat_h || lw != lat_w) {
        int f = kd_ae_downscale(ae);
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "inpainting needs a width and height that are multiples of %d (got %dx%d)",
                           f * f, W, H);
    }
    if (!image) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "inpainting needs an image to paint into");
    kd_image sized = {0};
    KD_TRY(to_rgb_sized(ctx, image, W, H, KD_RESAMPLE_BICUBIC, 1.0, &sized, "image"));
    size_t hw = (size_t)lh * lw, per = (size_t)C * hw;
    float *x = malloc((size_t)3 * W * H * sizeof(float)), *pm = malloc((size_t)W * H * sizeof(float));
    float *m1 = malloc(hw * sizeof(float));
    float **owned = in->owned;
    owned[0] = malloc(per * sizeof(float));             /* image latents */
    owned[1] = malloc((size_t)n * per * sizeof(float)); /* masked latents */
    owned[2] = malloc((size_t)n * hw * sizeof(float));  /* mask */
    kd_status s = x && pm && m1 && owned[0] && owned[1] && owned[2] ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    for (size_t k = 0; s == KD_OK && k < (size_t)3 * W * H; k++) { /* torch: u8 → float32 / 127.5 − 1 */
        size_t c = k / ((size_t)W * H), r = k % ((size_t)W * H);
        x[k] = (float)sized.data[r * 3 + c] / 127.5f - 1.0f;
    }
    kd_image_free(&sized);
    if (s == KD_OK) s = kd_ae_encode_host(ctx, ae, x, 1, H, W, owned[0]);
    if (s == KD_OK) s = pixel_mask(ctx, mask, invert_mask, W, H, pm);
    if (s == KD_OK) s = resize_nearest(ctx, pm, H, W, m1, lh, lw);
    if (s == KD_OK) {
        erode(m1, owned[2], lh, lw);
        for (int c = 0; c < C; c++)
            for (size_t k = 0; k < hw; k++) owned[1][c * hw + k] = owned[0][c * hw + k] * owned[2][k];
        for (int b = 1; b < n; b++) {
            memcpy(owned[1] + b * per, owned[1], per * sizeof(float));
            memcpy(owned[2] + b * hw, owned[2], hw * sizeof(float));
        }
        in->image_latents = owned[0];
        in->masked_latents = owned[1];
        in->mask = owned[2];
    }
    free(x);
    free(pm);
    free(m1);
    return s;
}

kd_status kd_prepare_hint(kd_ctx *ctx, const kd_image *hint, int lat_h, int lat_w, kd_dec_inputs *in) {
    int W = 8 * lat_w, H = 8 * lat_h;
    kd_image sized = {0};
    KD_TRY(to_rgb_sized(ctx, hint, W, H, KD_RESAMPLE_BICUBIC, 0.0, &sized, "hint"));
    float *h = in->owned[3] = malloc((size_t)3 * W * H * sizeof(float));
    if (!h) {
        kd_image_free(&sized);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    }
    for (size_t k = 0; k < (size_t)3 * W * H; k++) { /* [H, W, 3] u8 → [3, H, W] / 255 */
        size_t c = k / ((size_t)W * H), r = k % ((size_t)W * H);
        h[k] = (float)sized.data[r * 3 + c] / 255.0f;
    }
    kd_image_free(&sized);
    in->hint = h;
    return KD_OK;
}
