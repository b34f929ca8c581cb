/* CLIP image preprocessing (transformers CLIPImageProcessorPil, the class the pinned stack loads
 * for the prior's image_processor/) and the public one-image CLIP embedding. See clip_preprocess.h
 * for the exact algorithm and docs/NOTES.md "CLIP image preprocessing" for how it was established. */
#include "models/clip_preprocess.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ctx.h"
#include "io/config.h"

/* Largest resized image we agree to make (the reference has no limit; a 1 × 8192 image with
 * shortest_edge 224 would ask for 224 × 1835008 pixels). */
#define KD_CLIP_MAX_RESIZED_PIXELS (64ll << 20)
#define KD_CLIP_MAX_SIDE (1 << 24)

kd_clip_preprocess_config kd_clip_preprocess_config_default(void) {
    kd_clip_preprocess_config c;
    memset(&c, 0, sizeof c);
    c.do_convert_rgb = 1;
    c.do_resize = 1;
    c.size_kind = KD_CLIP_SIZE_SHORTEST_EDGE;
    c.shortest_edge = 224;
    c.resample = KD_RESAMPLE_BICUBIC;
    c.do_center_crop = 1;
    c.crop_height = c.crop_width = 224;
    c.do_rescale = 1;
    c.rescale_factor = 1.0 / 255.0;
    c.do_normalize = 1;
    /* OPENAI_CLIP_MEAN / OPENAI_CLIP_STD */
    c.image_mean[0] = 0.48145466, c.image_mean[1] = 0.4578275, c.image_mean[2] = 0.40821073;
    c.image_std[0] = 0.26862954, c.image_std[1] = 0.26130258, c.image_std[2] = 0.27577711;
    return c;
}

/* ---- config ---------------------------------------------------------------------------------- */

static int present(const cJSON *it) { return it && !cJSON_IsNull(it); }

/* A positive integer size value (`key` names it in messages). */
static kd_status size_value(const kd_config *j, const char *key, const cJSON *it, int *out, kd_err *e) {
    int64_t v;
    if (!kd_json_int(it, &v))
        return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' is %s, expected an integer", j->origin, key, kd_json_kind(it));
    if (v < 1 || v > KD_CLIP_MAX_SIDE)
        return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' = %lld is out of range (1..%d)", j->origin, key, (long long)v,
                       KD_CLIP_MAX_SIDE);
    *out = (int)v;
    return KD_OK;
}

/* A size given as an int, a [height, width] list or a dict; *keys gets which dict form (bit set:
 * 1 height, 2 width, 4 shortest_edge, 8 longest_edge, 16 max_height, 32 max_width, 64 min_pixels,
 * 128 max_pixels). An int gives 4 (shortest edge) unless square, then 1|2. */
static kd_status read_size(const kd_config *j, const char *key, const cJSON *it, int square, int vals[8], int *keys,
                           kd_err *e) {
    static const char *const names[8] = {"height",     "width",     "shortest_edge", "longest_edge",
                                         "max_height", "max_width", "min_pixels",    "max_pixels"};
    char where[96];
    *keys = 0;
    if (cJSON_IsNumber(it)) {
        int v = 0;
        KD_TRY(size_value(j, key, it, &v, e));
        if (square) vals[0] = vals[1] = v, *keys = 3;
        else vals[2] = v, *keys = 4;
        return KD_OK;
    }
    if (cJSON_IsArray(it)) {
        if (cJSON_GetArraySize(it) != 2)
            return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' is a list of %d values, expected [height, width]", j->origin,
                           key, cJSON_GetArraySize(it));
        for (int i = 0; i < 2; i++) {
            snprintf(where, sizeof where, "%s[%d]", key, i);
            KD_TRY(size_value(j, where, cJSON_GetArrayItem(it, i), &vals[i], e));
        }
        *keys = 3;
        return KD_OK;
    }
    if (!cJSON_IsObject(it))
        return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' is %s, expected an object, an integer or a list", j->origin, key,
                       kd_json_kind(it));
    for (const cJSON *c = it->child; c; c = c->next) {
        int k = -1;
        for (int i = 0; i < 8; i++)
            if (c->string && !strcmp(c->string, names[i])) k = i;
        if (k < 0)
            return kd_errf(e, KD_ERR_FORMAT, "%s: unknown key '%s' in '%s'", j->origin, c->string ? c->string : "?",
                           key);
        snprintf(where, sizeof where, "%s.%s", key, names[k]);
        KD_TRY(size_value(j, where, c, &vals[k], e));
        *keys |= 1 << k;
    }
    /* transformers' VALID_SIZE_DICT_KEYS */
    if (*keys != 3 && *keys != 4 && *keys != 12 && *keys != 8 && *keys != 48 && *keys != 192)
        return kd_errf(e, KD_ERR_FORMAT,
                       "%s: '%s' must have the keys {height, width}, {shortest_edge}, {shortest_edge, longest_edge}, "
                       "{longest_edge}, {max_height, max_width} or {min_pixels, max_pixels}",
                       j->origin, key);
    return KD_OK;
}

static kd_status read_triple(const kd_config *j, const char *key, double out[3], kd_err *e) {
    const cJSON *it = kd_config_get(j, key);
    if (!present(it)) return KD_OK;
    if (cJSON_IsNumber(it)) {
        if (!isfinite(it->valuedouble)) return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' is not finite", j->origin, key);
        out[0] = out[1] = out[2] = it->valuedouble;
        return KD_OK;
    }
    int n = 0;
    double v[4];
    KD_TRY(kd_config_float_array(j, key, v, 4, &n, e));
    if (n != 3)
        return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' has %d values, expected 3 (one per RGB channel)", j->origin, key, n);
    memcpy(out, v, 3 * sizeof(double));
    return KD_OK;
}

static kd_status config_from(const kd_config *j, kd_clip_preprocess_config *cfg, kd_err *e) {
    kd_clip_preprocess_config c = kd_clip_preprocess_config_default();
    KD_TRY(kd_config_bool_or(j, "do_convert_rgb", c.do_convert_rgb, &c.do_convert_rgb, e));
    KD_TRY(kd_config_bool_or(j, "do_resize", c.do_resize, &c.do_resize, e));
    KD_TRY(kd_config_bool_or(j, "do_center_crop", c.do_center_crop, &c.do_center_crop, e));
    KD_TRY(kd_config_bool_or(j, "do_rescale", c.do_rescale, &c.do_rescale, e));
    KD_TRY(kd_config_bool_or(j, "do_normalize", c.do_normalize, &c.do_normalize, e));
    int square = 0, use_square = 0;
    KD_TRY(kd_config_bool_or(j, "default_to_square", 0, &square, e));
    KD_TRY(kd_config_bool_or(j, "use_square_size", 0, &use_square, e));

    int64_t rs;
    KD_TRY(kd_config_int_or(j, "resample", KD_RESAMPLE_BICUBIC, &rs, e));
    if (rs < 0 || rs > 5)
        return kd_errf(e, KD_ERR_FORMAT, "%s: 'resample' = %lld is not a PIL filter (0..5)", j->origin, (long long)rs);
    c.resample = (kd_resample)rs;
    KD_TRY(kd_config_float_or(j, "rescale_factor", c.rescale_factor, &c.rescale_factor, e));
    KD_TRY(read_triple(j, "image_mean", c.image_mean, e));
    KD_TRY(read_triple(j, "image_std", c.image_std, e));
    for (int i = 0; i < 3; i++)
        if (c.image_std[i] == 0.0 || !isfinite((float)c.image_std[i]) || !isfinite((float)c.image_mean[i]))
            return kd_errf(e, KD_ERR_FORMAT, "%s: image_std[%d] = %g / image_mean[%d] = %g is unusable", j->origin, i,
                           c.image_std[i], i, c.image_mean[i]);

    int vals[8] = {0}, keys = 0;
    const cJSON *size = kd_config_get(j, "size");
    if (use_square) { /* CLIPImageProcessor.__init__: size = {height, width} = the class default 224 */
        c.size_kind = KD_CLIP_SIZE_HEIGHT_WIDTH;
        c.size_height = c.size_width = 224;
    } else if (present(size)) {
        KD_TRY(read_size(j, "size", size, square, vals, &keys, e));
        if (keys == 3) c.size_kind = KD_CLIP_SIZE_HEIGHT_WIDTH, c.size_height = vals[0], c.size_width = vals[1];
        else if (keys == 4) c.size_kind = KD_CLIP_SIZE_SHORTEST_EDGE, c.shortest_edge = vals[2];
        else if (keys == 12)
            c.size_kind = KD_CLIP_SIZE_SHORTEST_LONGEST, c.shortest_edge = vals[2], c.longest_edge = vals[3];
        else if (keys == 48)
            c.size_kind = KD_CLIP_SIZE_MAX_HEIGHT_WIDTH, c.size_height = vals[4], c.size_width = vals[5];
        else if (c.do_resize) /* {longest_edge} or {min_pixels, max_pixels}: PilBackend.resize raises */
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: CLIPImageProcessor cannot resize to this 'size' (%s)", j->origin,
                           keys == 8 ? "longest_edge alone" : "min_pixels / max_pixels");
    }
    const cJSON *crop = kd_config_get(j, "crop_size");
    if (present(crop)) {
        KD_TRY(read_size(j, "crop_size", crop, 1, vals, &keys, e));
        if (keys == 3) c.crop_height = vals[0], c.crop_width = vals[1];
        else if (c.do_center_crop)
            return kd_errf(e, KD_ERR_FORMAT, "%s: 'crop_size' must have the keys 'height' and 'width'", j->origin);
    }
    *cfg = c;
    return KD_OK;
}

kd_status kd_clip_preprocess_config_parse(const char *text, size_t len, const char *origin,
                                          kd_clip_preprocess_config *cfg, kd_err *e) {
    if (!text || !cfg) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_clip_preprocess_config_parse: NULL argument");
    kd_config j;
    KD_TRY(kd_config_parse(text, len, origin, &j, e));
    kd_status s = config_from(&j, cfg, e);
    kd_config_free(&j);
    return s;
}

kd_status kd_clip_preprocess_config_load(const char *path, kd_clip_preprocess_config *cfg, kd_err *e) {
    if (!path || !cfg) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_clip_preprocess_config_load: NULL argument");
    kd_config j;
    KD_TRY(kd_config_load(path, &j, e));
    kd_status s = config_from(&j, cfg, e);
    kd_config_free(&j);
    return s;
}

/* ---- sizes ----------------------------------------------------------------------------------- */

/* The resize target (transformers PilBackend.resize), or the input size without do_resize. */
static kd_status resized_size(const kd_clip_preprocess_config *c, int W, int H, int *nw, int *nh, kd_err *e) {
    int64_t w = W, h = H;
    if (c->do_resize) switch (c->size_kind) {
        case KD_CLIP_SIZE_SHORTEST_EDGE: { /* get_resize_output_image_size(default_to_square=False) */
            int64_t s = c->shortest_edge;
            if (W <= H) w = s, h = s * H / W; /* int(s * long / short): exact for these magnitudes */
            else h = s, w = s * W / H;
            break;
        }
        case KD_CLIP_SIZE_SHORTEST_LONGEST: { /* get_size_with_aspect_ratio */
            int64_t s = c->shortest_edge;
            double mn = W < H ? W : H, mx = W < H ? H : W, raw = 0;
            int have_raw = 0;
            if (mx / mn * (double)s > (double)c->longest_edge) {
                raw = (double)c->longest_edge * mn / mx;
                s = (int64_t)rint(raw); /* Python round(): half to even */
                have_raw = 1;
            }
            if ((H <= W && H == s) || (W <= H && W == s)) h = H, w = W;
            else if (W < H) w = s, h = have_raw ? (int64_t)(raw * H / W) : s * H / W;
            else h = s, w = have_raw ? (int64_t)(raw * W / H) : s * W / H;
            break;
        }
        case KD_CLIP_SIZE_HEIGHT_WIDTH:
            h = c->size_height, w = c->size_width;
            break;
        case KD_CLIP_SIZE_MAX_HEIGHT_WIDTH: { /* get_image_size_for_max_height_width */
            double hs = (double)c->size_height / H, ws = (double)c->size_width / W, m = hs < ws ? hs : ws;
            h = (int64_t)(H * m), w = (int64_t)(W * m);
            break;
        }
        default:
            return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: unknown size kind %d", (int)c->size_kind);
        }
    if (w < 1 || h < 1)
        return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: a %dx%d image would be resized to %lldx%lld", W, H,
                       (long long)w, (long long)h);
    if (w > KD_CLIP_MAX_SIDE || h > KD_CLIP_MAX_SIDE || w * h > KD_CLIP_MAX_RESIZED_PIXELS)
        return kd_errf(e, KD_ERR_UNSUPPORTED,
                       "clip preprocess: a %dx%d image would be resized to %lldx%lld, more than the %lld Mpx allowed", W,
                       H, (long long)w, (long long)h, KD_CLIP_MAX_RESIZED_PIXELS >> 20);
    *nw = (int)w, *nh = (int)h;
    return KD_OK;
}

static kd_status check_config(const kd_clip_preprocess_config *c, kd_err *e) {
    if (!c) return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: NULL config");
    if (c->do_resize) {
        if ((int)c->resample < 0 || (int)c->resample > 5)
            return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: resample %d is not a PIL filter", (int)c->resample);
        int bad = 0;
        switch (c->size_kind) {
        case KD_CLIP_SIZE_SHORTEST_EDGE: bad = c->shortest_edge < 1 || c->shortest_edge > KD_CLIP_MAX_SIDE; break;
        case KD_CLIP_SIZE_SHORTEST_LONGEST:
            bad = c->shortest_edge < 1 || c->longest_edge < 1 || c->shortest_edge > KD_CLIP_MAX_SIDE ||
                  c->longest_edge > KD_CLIP_MAX_SIDE;
            break;
        case KD_CLIP_SIZE_HEIGHT_WIDTH:
        case KD_CLIP_SIZE_MAX_HEIGHT_WIDTH:
            bad = c->size_height < 1 || c->size_width < 1 || c->size_height > KD_CLIP_MAX_SIDE ||
                  c->size_width > KD_CLIP_MAX_SIDE;
            break;
        default: bad = 1;
        }
        if (bad) return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: invalid resize size");
    }
    if (c->do_center_crop && (c->crop_height < 1 || c->crop_width < 1 || c->crop_height > KD_CLIP_MAX_SIDE ||
                              c->crop_width > KD_CLIP_MAX_SIDE ||
                              (int64_t)c->crop_height * c->crop_width > KD_CLIP_MAX_RESIZED_PIXELS))
        return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: invalid crop size %dx%d", c->crop_width, c->crop_height);
    if (c->do_rescale && !isfinite(c->rescale_factor))
        return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: rescale_factor is not finite");
    return KD_OK;
}

kd_status kd_clip_preprocess_output_size(const kd_clip_preprocess_config *cfg, int in_w, int in_h, int *out_w,
                                         int *out_h, kd_err *e) {
    if (!out_w || !out_h) return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: NULL output size");
    KD_TRY(check_config(cfg, e));
    if (in_w < 1 || in_h < 1 || in_w > KD_CLIP_MAX_SIDE || in_h > KD_CLIP_MAX_SIDE)
        return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: image size %dx%d", in_w, in_h);
    int w, h;
    KD_TRY(resized_size(cfg, in_w, in_h, &w, &h, e));
    if (cfg->do_center_crop) w = cfg->crop_width, h = cfg->crop_height;
    *out_w = w, *out_h = h;
    return KD_OK;
}

/* ---- the pixels ------------------------------------------------------------------------------ */

/* transformers convert_to_rgb on a PIL image: L → RGB replicates; RGBA (or LA, or P with
 * transparency, which kd_image holds as 4 channels) → alpha_composite over opaque white →
 * convert("RGB"). Pillow's integer blend reduces, for an opaque background, to
 * round_half_up((c·a + 255·(255 − a)) / 255) (verified for all 65536 (c, a) pairs). */
static kd_status to_rgb_white(const kd_image *in, kd_image *out, kd_err *e) {
    KD_TRY(kd_image_alloc(out, in->width, in->height, 3, e));
    size_t n = (size_t)in->width * in->height;
    const uint8_t *s = in->data;
    uint8_t *d = out->data;
    if (in->channels == 1) {
        for (size_t i = 0; i < n; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i];
    } else {
        for (size_t i = 0; i < n; i++) {
            unsigned a = s[4 * i + 3];
            for (int c = 0; c < 3; c++) {
                unsigned t = s[4 * i + c] * a + 255u * (255u - a);
                d[3 * i + c] = (uint8_t)((2u * t + 255u) / 510u);
            }
        }
    }
    return KD_OK;
}

kd_status kd_clip_preprocess(const kd_image *img, const kd_clip_preprocess_config *cfg, float *out, kd_err *e) {
    if (!img || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: NULL argument");
    if (!img->data || img->width < 1 || img->height < 1 ||
        (img->channels != 1 && img->channels != 3 && img->channels != 4))
        return kd_errf(e, KD_ERR_INVALID_ARG, "clip preprocess: invalid image (%dx%d, %d channels)", img->width,
                       img->height, img->channels);
    int ow, oh;
    KD_TRY(kd_clip_preprocess_output_size(cfg, img->width, img->height, &ow, &oh, e));
    if (img->channels != 3 && !cfg->do_convert_rgb)
        return kd_errf(e, KD_ERR_UNSUPPORTED,
                       "clip preprocess: a %d-channel image needs do_convert_rgb (the processor would keep %d channels "
                       "and fail to normalise them with 3 means)",
                       img->channels, img->channels);

    kd_image conv = {0}, rs = {0};
    const kd_image *cur = img;
    kd_status s = KD_OK;
    if (img->channels != 3) {
        s = to_rgb_white(img, &conv, e);
        cur = &conv;
    }
    if (s == KD_OK && cfg->do_resize) {
        int nw, nh;
        s = resized_size(cfg, cur->width, cur->height, &nw, &nh, e);
        /* Pillow's resize to the same size is a plain copy: use the pixels as they are */
        if (s == KD_OK && (nw != cur->width || nh != cur->height)) {
            s = kd_image_resize(cur, nw, nh, cfg->resample, 0.0, &rs, e);
            if (s == KD_OK) cur = &rs;
        }
    }
    if (s == KD_OK) {
        /* numpy center_crop: top = (H - ch) // 2 when the image is at least as large; otherwise the
         * image sits at offset ceil((ch - H) / 2) in zeros. Either way: source row = y + top. */
        int W = cur->width, H = cur->height;
        int top = 0, left = 0;
        if (cfg->do_center_crop) {
            top = H >= oh ? (H - oh) / 2 : -((oh - H + 1) / 2);
            left = W >= ow ? (W - ow) / 2 : -((ow - W + 1) / 2);
        }
        float mean[3], stdv[3];
        for (int c = 0; c < 3; c++) mean[c] = (float)cfg->image_mean[c], stdv[c] = (float)cfg->image_std[c];
        /* value of each byte per channel, computed once */
        float lut[3][256];
        for (int c = 0; c < 3; c++)
            for (int u = 0; u < 256; u++) {
                float v = cfg->do_rescale ? (float)((double)u * cfg->rescale_factor) : (float)u;
                if (cfg->do_normalize) v = (v - mean[c]) / stdv[c];
                lut[c][u] = v;
            }
        size_t plane = (size_t)ow * oh;
        for (int y = 0; y < oh; y++) {
            int sy = y + top;
            for (int x = 0; x < ow; x++) {
                int sx = x + left;
                int inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
                const uint8_t *p = inside ? cur->data + ((size_t)sy * W + sx) * 3 : NULL;
                for (int c = 0; c < 3; c++) out[c * plane + (size_t)y * ow + x] = lut[c][p ? p[c] : 0];
            }
        }
    }
    kd_image_free(&rs);
    kd_image_free(&conv);
    return s;
}

/* ---- public: one image → CLIP image embedding ---------------------------------------------- */

kd_status kd_clip_vision_embed_image(kd_ctx *ctx, kd_clip_vision *m, const char *preprocessor_config_json,
                                     const kd_image *rgb, float *image_embeds) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!m || !rgb || !image_embeds) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "clip image embed: NULL argument");
    kd_err *e = &ctx->err;
    kd_clip_preprocess_config cfg = kd_clip_preprocess_config_default();
    if (preprocessor_config_json) KD_TRY(kd_clip_preprocess_config_load(preprocessor_config_json, &cfg, e));
    int ow, oh, S = kd_clip_vision_image_size(m);
    kd_status s = kd_clip_preprocess_output_size(&cfg, rgb->width, rgb->height, &ow, &oh, e);
    if (s != KD_OK) return kd_err_prefix(e, "clip image embed");
    if (ow != S || oh != S)
        return kd_ctx_fail(ctx, KD_ERR_SHAPE,
                           "clip image embed: the preprocessor%s%s makes %dx%d images, the image encoder takes %dx%d",
                           preprocessor_config_json ? " " : " defaults",
                           preprocessor_config_json ? preprocessor_config_json : "", ow, oh, S, S);
    float *px = malloc((size_t)3 * S * S * sizeof(float));
    if (!px) return kd_ctx_fail(ctx, KD_ERR_OOM, "clip image embed: out of memory");
    s = kd_clip_preprocess(rgb, &cfg, px, e);
    if (s != KD_OK) kd_err_prefix(e, "clip image embed");
    else s = kd_clip_vision_forward(ctx, m, px, 1, image_embeds);
    free(px);
    return s;
}
