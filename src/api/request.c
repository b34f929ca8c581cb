/* The request model (kandinsky.h, "Requests"): one generation as the CLI, the server and programs
 * describe it — storage, validation against the decoder's configs, the run (one seed per image,
 * crop back to the size asked for) and the record written into each PNG. The native JSON form is
 * request_json.c. */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/ctx.h"
#include "api/request.h"
#include "io/config.h"
#include "io/image.h"
#include "pipeline/k20.h"

#define LIB_MAX_SIDE 8192
#define LIB_MAX_STEPS 1000
#define LIB_MAX_IMAGES 64
#define LATENT_GRID 64 /* sides are generated at multiples of this (MoVQ factor 8 × 8) */

/* ---- storage ---- */

struct kd_request_pool {
    struct kd_request_pool *next;
    char s[];
};

void kd_request_init(kd_request *r) {
    memset(r, 0, sizeof *r);
    r->g = kd_gen_params_default();
    r->g.prompt = NULL;
    r->seed_random = 1;
}

void kd_request_free(kd_request *r) {
    if (!r) return;
    for (int i = 0; i < KD_SLOT_COUNT; i++) kd_image_free(&r->image[i]);
    for (int i = 0; i < KD_REQUEST_MAX_MIX; i++) kd_image_free(&r->mix_image[i]);
    for (kd_request_pool *p = r->pool, *n; p; p = n) {
        n = p->next;
        free(p);
    }
    memset(r, 0, sizeof *r);
}

const char *kd_request_keep(kd_request *r, const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s);
    kd_request_pool *p = malloc(sizeof *p + n + 1);
    if (!p) return NULL;
    memcpy(p->s, s, n + 1);
    p->next = r->pool;
    r->pool = p;
    return p->s;
}

kd_status kd_request_fail(kd_ctx *ctx, kd_request *r, const char *field, const char *fmt, ...) {
    char msg[KD_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(r->field, sizeof r->field, "%s", field ? field : "");
    return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "%s", msg);
}

const char *kd_request_slot_name(kd_request_slot s) {
    static const char *const names[KD_SLOT_COUNT] = {"init_image", "mask_image", "hint", "prior_image"};
    return (unsigned)s < KD_SLOT_COUNT ? names[s] : "?";
}

static const char *const mode_names[] = {"auto", "text2img", "img2img", "inpaint", "controlnet", "mix"};

const char *kd_mode_name(kd_mode m) { return (unsigned)m < 6 ? mode_names[m] : "?"; }

int kd_mode_parse(const char *s, kd_mode *out) {
    for (int i = 0; s && i < 6; i++)
        if (!strcmp(s, mode_names[i])) return *out = (kd_mode)i, 0;
    return -1;
}

/* ---- image inputs ---- */

/* Decoded bytes → RGB (as diffusers' load_image + convert("RGB")), into *dst. */
static kd_status decode_rgb(kd_ctx *ctx, const uint8_t *bytes, size_t len, const char *name, uint64_t max_pixels,
                            kd_image *dst) {
    kd_image_limits lim = kd_image_limits_default();
    if (max_pixels) lim.max_pixels = max_pixels;
    kd_image raw = {0};
    KD_TRY(kd_image_decode(bytes, len, name, &lim, &raw, &ctx->err));
    kd_image rgb = {0};
    kd_status s = kd_image_to_rgb(&raw, &rgb, &ctx->err);
    kd_image_free(&raw);
    if (s != KD_OK) return s;
    kd_image_free(dst);
    *dst = rgb;
    return KD_OK;
}

kd_status kd_request_image_bytes(kd_ctx *ctx, kd_request *r, kd_request_slot slot, const uint8_t *bytes, size_t len,
                                 const char *name, uint64_t max_pixels) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!r || (unsigned)slot >= KD_SLOT_COUNT || !bytes) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "request image: bad argument");
    kd_status s = decode_rgb(ctx, bytes, len, name, max_pixels, &r->image[slot]);
    if (s != KD_OK) {
        snprintf(r->field, sizeof r->field, "%s", kd_request_slot_name(slot));
        return kd_err_prefix(&ctx->err, "%s", kd_request_slot_name(slot));
    }
    r->image_name[slot] = kd_request_keep(r, name ? name : "upload");
    return KD_OK;
}

kd_status kd_request_image_file(kd_ctx *ctx, kd_request *r, kd_request_slot slot, const char *path) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!r || (unsigned)slot >= KD_SLOT_COUNT || !path) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "request image: bad argument");
    kd_image img = {0};
    if (kd_image_read(ctx, path, &img) != KD_OK) {
        snprintf(r->field, sizeof r->field, "%s", kd_request_slot_name(slot));
        return ctx->err.code;
    }
    kd_image_free(&r->image[slot]);
    r->image[slot] = img;
    r->image_name[slot] = kd_request_keep(r, path);
    return KD_OK;
}

/* base64 (RFC 4648, padding optional, whitespace skipped) → a malloc'd buffer; -1 on bad input. */
static int b64_value(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

int kd_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len) {
    /* "data:image/png;base64,...." */
    if (len > 5 && !memcmp(in, "data:", 5)) {
        const char *comma = memchr(in, ',', len);
        if (!comma) return -1;
        len -= (size_t)(comma + 1 - in);
        in = comma + 1;
    }
    uint8_t *buf = malloc(len / 4 * 3 + 3);
    if (!buf) return -2;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)in[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c);
        if (v < 0 || pad) { /* a character after padding, or not base64 */
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (bits >= 6 || pad > 2) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = n;
    return 0;
}

kd_status kd_request_image_base64(kd_ctx *ctx, kd_request *r, kd_request_slot slot, const char *b64, size_t len,
                                  const char *name, uint64_t max_pixels) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!r || !b64) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "request image: bad argument");
    uint8_t *bytes = NULL;
    size_t n = 0;
    int rc = kd_base64_decode(b64, len, &bytes, &n);
    if (rc == -2) return kd_ctx_fail(ctx, KD_ERR_OOM, "%s: out of memory", kd_request_slot_name(slot));
    if (rc) return kd_request_fail(ctx, r, kd_request_slot_name(slot), "%s is not base64 (or a data: URL)",
                                   kd_request_slot_name(slot));
    kd_status s = kd_request_image_bytes(ctx, r, slot, bytes, n, name, max_pixels);
    free(bytes);
    return s;
}

static kd_status mix_slot(kd_ctx *ctx, kd_request *r, float weight, kd_mix_item **it) {
    if (r->n_mix >= KD_REQUEST_MAX_MIX)
        return kd_request_fail(ctx, r, "mix", "at most %d mix items", KD_REQUEST_MAX_MIX);
    if (!isfinite(weight) || fabsf(weight) > 1e4f)
        return kd_request_fail(ctx, r, "mix", "mix item %d: the weight must be a finite number", r->n_mix + 1);
    *it = &r->mix[r->n_mix];
    **it = (kd_mix_item){.weight = weight};
    return KD_OK;
}

kd_status kd_request_mix_text(kd_ctx *ctx, kd_request *r, const char *text, float weight) {
    kd_mix_item *it = NULL;
    KD_TRY(mix_slot(ctx, r, weight, &it));
    if (!(it->text = kd_request_keep(r, text ? text : ""))) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    r->mix_name[r->n_mix++] = it->text;
    return KD_OK;
}

/* Decodes into mix_image[n_mix] through slot storage (the prior-image slot's loaders). */
static kd_status mix_image_done(kd_ctx *ctx, kd_request *r, kd_mix_item *it, kd_image *img, const char *name) {
    int k = r->n_mix;
    kd_image_free(&r->mix_image[k]);
    r->mix_image[k] = *img;
    it->image = &r->mix_image[k];
    r->mix_name[k] = kd_request_keep(r, name);
    r->n_mix++;
    (void)ctx;
    return KD_OK;
}

kd_status kd_request_mix_image_file(kd_ctx *ctx, kd_request *r, const char *path, float weight) {
    kd_mix_item *it = NULL;
    KD_TRY(mix_slot(ctx, r, weight, &it));
    kd_image img = {0};
    if (kd_image_read(ctx, path, &img) != KD_OK) {
        snprintf(r->field, sizeof r->field, "mix[%d].image", r->n_mix);
        return ctx->err.code;
    }
    return mix_image_done(ctx, r, it, &img, path);
}

kd_status kd_request_mix_image_base64(kd_ctx *ctx, kd_request *r, const char *b64, size_t len, float weight,
                                      uint64_t max_pixels) {
    kd_mix_item *it = NULL;
    KD_TRY(mix_slot(ctx, r, weight, &it));
    uint8_t *bytes = NULL;
    size_t n = 0;
    char field[32];
    snprintf(field, sizeof field, "mix[%d].image", r->n_mix);
    int rc = kd_base64_decode(b64, len, &bytes, &n);
    if (rc == -2) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    if (rc) return kd_request_fail(ctx, r, field, "%s is not base64", field);
    kd_image img = {0};
    kd_status s = decode_rgb(ctx, bytes, n, field, max_pixels, &img);
    free(bytes);
    if (s != KD_OK) {
        snprintf(r->field, sizeof r->field, "%s", field);
        return s;
    }
    return mix_image_done(ctx, r, it, &img, "upload");
}

/* ---- what a decoder can do ---- */

static int file_exists(const char *dir, const char *name) {
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

kd_status kd_decoder_info_read(kd_ctx *ctx, const char *decoder_dir, kd_decoder_info *out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!decoder_dir || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "decoder info: NULL argument");
    *out = (kd_decoder_info){0};
    KD_TRY(kd_decoder_detect_version(ctx, decoder_dir, &out->version));
    if (out->version == KD_MODEL_VERSION_2_0) {
        out->text2img = file_exists(decoder_dir, KD_K20_UNET);
        out->inpaint = file_exists(decoder_dir, KD_K20_UNET_INPAINT);
        return KD_OK;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/unet/config.json", decoder_dir);
    kd_config cfg;
    KD_TRY(kd_config_load(path, &cfg, &ctx->err));
    int64_t in_ch = 4, out_ch = 8;
    const char *add = NULL;
    kd_status s = kd_config_int_or(&cfg, "in_channels", 4, &in_ch, &ctx->err);
    if (s == KD_OK) s = kd_config_int_or(&cfg, "out_channels", 8, &out_ch, &ctx->err);
    if (s == KD_OK) s = kd_config_str_or(&cfg, "addition_embed_type", NULL, &add, &ctx->err);
    if (s == KD_OK) {
        int latent = (int)(out_ch >= 8 ? out_ch / 2 : out_ch);
        out->inpaint = in_ch == 2 * latent + 1;
        out->text2img = !out->inpaint;
        out->controlnet = add && !strcmp(add, "image_hint");
    }
    kd_config_free(&cfg);
    if (s != KD_OK) kd_err_prefix(&ctx->err, "%s", path);
    return s;
}

/* ---- validation ---- */

static uint64_t random_seed(void) {
    uint64_t s = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&s, sizeof s, 1, f) != 1) s ^= 0x9e3779b97f4a7c15ull;
        fclose(f);
    }
    return s % 4294967296ull; /* a seed a user can type back; torch only uses the low 32 bits */
}

static const char *const samplers20[] = {"ddim_sampler", "p_sampler", "plms_sampler", "ddim", "p", "plms", NULL};

static int is_sampler20(const char *s) {
    for (int i = 0; samplers20[i]; i++)
        if (!strcmp(s, samplers20[i])) return 1;
    return 0;
}

/* The mode the inputs say, and whether an explicit one agrees. */
static kd_status check_mode(kd_ctx *ctx, kd_request *r) {
    const kd_image *im = r->image;
    int init = im[KD_SLOT_INIT].data != NULL, mask = im[KD_SLOT_MASK].data != NULL, hint = im[KD_SLOT_HINT].data != NULL;
    kd_mode m = r->n_mix > 0 ? KD_MODE_MIX : mask ? KD_MODE_INPAINT : hint ? KD_MODE_CONTROLNET
                                                     : init ? KD_MODE_IMG2IMG : KD_MODE_TEXT2IMG;
    if (mask && !init) return kd_request_fail(ctx, r, "mask_image", "a mask needs the picture to paint into (init_image)");
    if (r->mode == KD_MODE_AUTO || r->mode == m || (r->mode == KD_MODE_CONTROLNET && hint && !mask)) {
        if (r->mode == KD_MODE_AUTO) r->mode = m;
        return KD_OK;
    }
    static const char *const needs[] = {"", "no image inputs", "init_image", "init_image and mask_image", "hint",
                                        "mix items"};
    return kd_request_fail(ctx, r, "mode", "mode %s needs %s; the request's inputs make it %s", kd_mode_name(r->mode),
                           needs[r->mode], kd_mode_name(m));
}

/* The inputs against what the decoder can do. */
static kd_status check_decoder(kd_ctx *ctx, kd_request *r, const kd_decoder_info *d) {
    const char *v = kd_model_version_name(d->version);
    if (r->version != KD_MODEL_VERSION_AUTO && r->version != d->version)
        return kd_request_fail(ctx, r, "model_version", "model version %s was asked for, but the decoder is Kandinsky %s",
                               kd_model_version_name(r->version), v);
    int hint = r->image[KD_SLOT_HINT].data != NULL;
    if (r->mode == KD_MODE_INPAINT && !d->inpaint)
        return kd_request_fail(ctx, r, "mask_image", "inpainting (a mask) needs an inpainting decoder; this Kandinsky %s decoder is not one", v);
    if (r->mode != KD_MODE_INPAINT && !d->text2img)
        return kd_request_fail(ctx, r, "mask_image", "this Kandinsky %s decoder is an inpainting one: it needs init_image and mask_image", v);
    if (hint && !d->controlnet) return kd_request_fail(ctx, r, "hint", "a hint needs a ControlNet decoder; this Kandinsky %s decoder is not one", v);
    if (!hint && d->controlnet) return kd_request_fail(ctx, r, "hint", "this ControlNet decoder needs a hint (depth map)");
    if (d->version == KD_MODEL_VERSION_2_0) { /* no prior, no mixing, 2.0's own samplers */
        if (r->n_mix) return kd_request_fail(ctx, r, "mix", "Kandinsky 2.0 has no prior: image mixing is not available");
        if (r->image[KD_SLOT_PRIOR_IMAGE].data)
            return kd_request_fail(ctx, r, "prior_image", "Kandinsky 2.0 has no prior: prior_image is not available");
        if (r->g.prior_sampler) return kd_request_fail(ctx, r, "prior_sampler", "Kandinsky 2.0 has no prior sampler");
        if (r->g.sampler && !is_sampler20(r->g.sampler))
            return kd_request_fail(ctx, r, "sampler", "Kandinsky 2.0 samplers are ddim_sampler, p_sampler and plms_sampler (got '%.64s')", r->g.sampler);
        if (r->g.soft_mask) return kd_request_fail(ctx, r, "soft_mask", "soft_mask is not available for Kandinsky 2.0");
    } else {
        for (int k = 0; k < 2; k++) {
            const char *s = k ? r->g.prior_sampler : r->g.sampler;
            if (s && !kd_sampler_exists(s))
                return kd_request_fail(ctx, r, k ? "prior_sampler" : "sampler", "unknown %ssampler '%.64s' (one of: %s)",
                                       k ? "prior " : "", s, kd_sampler_list());
        }
        if (r->g.eta != 0.0f) return kd_request_fail(ctx, r, "eta", "eta is Kandinsky 2.0's ddim_sampler η; this decoder is %s", v);
    }
    return KD_OK;
}

static kd_status check_range(kd_ctx *ctx, kd_request *r, const kd_request_limits *lim) {
    kd_gen_params *g = &r->g;
    int side = lim && lim->max_side ? lim->max_side : LIB_MAX_SIDE;
    int steps = lim && lim->max_steps ? lim->max_steps : LIB_MAX_STEPS;
    int images = lim && lim->max_images ? lim->max_images : LIB_MAX_IMAGES;
    if (!g->prompt && r->n_mix == 0) return kd_request_fail(ctx, r, "prompt", "a prompt is required (or mix items)");
    if (g->width < 1 || g->width > side) return kd_request_fail(ctx, r, "width", "width %d is out of range 1..%d", g->width, side);
    if (g->height < 1 || g->height > side)
        return kd_request_fail(ctx, r, "height", "height %d is out of range 1..%d", g->height, side);
    if (g->steps < 1 || g->steps > steps)
        return kd_request_fail(ctx, r, "num_inference_steps", "%d decoder steps: must be 1..%d", g->steps, steps);
    int unclip = !g->prior_sampler || !strcmp(g->prior_sampler, "unclip");
    if (g->prior_steps < (unclip ? 2 : 1) || g->prior_steps > steps)
        return kd_request_fail(ctx, r, "prior_num_inference_steps", "%d prior steps: must be %d..%d%s", g->prior_steps,
                               unclip ? 2 : 1, steps, unclip ? " (the UnCLIP schedule divides by steps - 1)" : "");
    if (g->num_images < 1 || g->num_images > images)
        return kd_request_fail(ctx, r, "num_images", "%d images: must be 1..%d", g->num_images, images);
    if (!isfinite(g->guidance_scale) || fabsf(g->guidance_scale) > 1e4f)
        return kd_request_fail(ctx, r, "guidance_scale", "guidance_scale must be a finite number");
    if (!isfinite(g->prior_guidance_scale) || fabsf(g->prior_guidance_scale) > 1e4f)
        return kd_request_fail(ctx, r, "prior_guidance_scale", "prior_guidance_scale must be a finite number");
    if (r->image[KD_SLOT_INIT].data && !(g->strength > 0.0f && g->strength <= 1.0f))
        return kd_request_fail(ctx, r, "strength", "strength %g is outside (0, 1]", (double)g->strength);
    if (r->image[KD_SLOT_PRIOR_IMAGE].data && !(g->prior_strength > 0.0f && g->prior_strength <= 1.0f))
        return kd_request_fail(ctx, r, "prior_strength", "prior_strength %g is outside (0, 1]", (double)g->prior_strength);
    if (!(g->eta >= 0.0f && g->eta <= 1.0f)) return kd_request_fail(ctx, r, "eta", "eta %g is outside [0, 1]", (double)g->eta);
    if (g->preview_every < 0) return kd_request_fail(ctx, r, "preview_every", "preview_every must be >= 0");
    return KD_OK;
}

kd_status kd_request_check(kd_ctx *ctx, kd_request *r, const kd_decoder_info *decoder, const kd_request_limits *lim) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!r || !decoder) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "request check: NULL argument");
    r->field[0] = 0;
    if (decoder->version == KD_MODEL_VERSION_2_0 && !r->guidance_given) r->g.guidance_scale = 7.0f;
    KD_TRY(check_range(ctx, r, lim));
    KD_TRY(check_mode(ctx, r));
    KD_TRY(check_decoder(ctx, r, decoder));
    if (r->seed_random) {
        r->g.seed = random_seed();
        r->seed_random = 0;
    }
    kd_gen_params *g = &r->g;
    if (!g->prompt) g->prompt = "";
    g->init_image = r->image[KD_SLOT_INIT].data ? &r->image[KD_SLOT_INIT] : NULL;
    g->mask_image = r->image[KD_SLOT_MASK].data ? &r->image[KD_SLOT_MASK] : NULL;
    g->hint_image = r->image[KD_SLOT_HINT].data ? &r->image[KD_SLOT_HINT] : NULL;
    g->prior_image = r->image[KD_SLOT_PRIOR_IMAGE].data ? &r->image[KD_SLOT_PRIOR_IMAGE] : NULL;
    for (int i = 0; i < r->n_mix; i++)
        if (r->mix_image[i].data) r->mix[i].image = &r->mix_image[i];
    g->mix = r->n_mix ? r->mix : NULL;
    g->n_mix = r->n_mix;
    r->version = decoder->version;
    return KD_OK;
}

/* ---- the run ---- */

static int round_up(int v, int m) { return (v + m - 1) / m * m; }

/* The top-left w × h of img, in place. */
static void crop(kd_image *img, int w, int h) {
    if (img->width <= w && img->height <= h) return;
    int c = img->channels, nw = img->width < w ? img->width : w, nh = img->height < h ? img->height : h;
    for (int y = 0; y < nh; y++) memmove(img->data + (size_t)y * nw * c, img->data + (size_t)y * img->width * c, (size_t)nw * c);
    img->width = nw;
    img->height = nh;
}

kd_status kd_request_run(kd_ctx *ctx, kd_pipeline *p, kd_request *r, kd_request_image_fn on_image, void *user) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!p || !r) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "request run: NULL argument");
    if (r->seed_random) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "request run: the request was not checked (kd_request_check)");
    kd_gen_params g = r->g;
    g.num_images = 1;
    if (kd_pipeline_model_version(p) != KD_MODEL_VERSION_2_0) { /* 2.0 crops back itself */
        g.width = round_up(r->g.width, LATENT_GRID);
        g.height = round_up(r->g.height, LATENT_GRID);
    }
    for (int k = 0; k < r->g.num_images; k++) {
        g.seed = r->g.seed + (uint64_t)k;
        kd_image img = {0};
        KD_TRY(kd_generate(ctx, p, &g, &img));
        crop(&img, r->g.width, r->g.height);
        int stop = on_image ? on_image(user, k, g.seed, &img) : 0;
        kd_image_free(&img);
        if (stop) return kd_ctx_fail(ctx, KD_ERR_CANCELLED, "stopped after image %d of %d", k + 1, r->g.num_images);
    }
    return KD_OK;
}

/* ---- the record ---- */

typedef struct out_buf {
    char *p;
    size_t cap, len;
} out_buf;

static void put(out_buf *o, const char *fmt, ...) KD_PRINTF(2, 3);
static void put(out_buf *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->len < o->cap ? o->p + o->len : NULL, o->len < o->cap ? o->cap - o->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

size_t kd_request_describe(const kd_request *r, int index, const kd_request_record *rec, char *buf, size_t cap) {
    out_buf o = {buf, cap, 0};
    if (cap) buf[0] = 0;
    const kd_gen_params *g = &r->g;
    int v20 = r->version == KD_MODEL_VERSION_2_0;
    put(&o, "prompt: %s\nnegative prompt: %s\nmode: %s\n", g->prompt ? g->prompt : "",
        g->negative_prompt ? g->negative_prompt : "(none)", kd_mode_name(r->mode));
    put(&o, "size: %dx%d\nsteps: %d\n", rec && rec->width ? rec->width : g->width,
        rec && rec->height ? rec->height : g->height, g->steps);
    if (!v20) put(&o, "prior steps: %d\n", g->prior_steps);
    put(&o, "guidance: %g\n", (double)g->guidance_scale);
    if (!v20) put(&o, "prior guidance: %g\n", (double)g->prior_guidance_scale);
    put(&o, "seed: %" PRIu64 "\nbatch index: %d of %d (first seed %" PRIu64 ")\n", g->seed + (uint64_t)index, index,
        g->num_images, g->seed);
    put(&o, "sampler: %s\n", g->sampler ? g->sampler : v20 ? "ddim_sampler" : "(scheduler config)");
    if (!v20) put(&o, "prior sampler: %s\n", g->prior_sampler ? g->prior_sampler : "unclip");
    else put(&o, "eta: %g\n", (double)g->eta);
    put(&o, "init image: %s\n", r->image[KD_SLOT_INIT].data ? r->image_name[KD_SLOT_INIT] : "(none)");
    if (r->image[KD_SLOT_INIT].data) put(&o, "strength: %g\n", (double)g->strength);
    put(&o, "mask: %s\n", r->image[KD_SLOT_MASK].data ? r->image_name[KD_SLOT_MASK] : "(none)");
    if (r->image[KD_SLOT_MASK].data)
        put(&o, "invert mask: %s\nsoft mask: %s\n", g->invert_mask ? "yes" : "no", g->soft_mask ? "yes" : "no");
    put(&o, "hint: %s\n", r->image[KD_SLOT_HINT].data ? r->image_name[KD_SLOT_HINT] : "(none)");
    if (r->image[KD_SLOT_PRIOR_IMAGE].data)
        put(&o, "prior image: %s\nprior strength: %g\n", r->image_name[KD_SLOT_PRIOR_IMAGE], (double)g->prior_strength);
    put(&o, "mix items: %d\n", r->n_mix);
    for (int i = 0; i < r->n_mix; i++)
        put(&o, "mix %d: %s %s, weight %g\n", i + 1, r->mix[i].text ? "text" : "image", r->mix_name[i] ? r->mix_name[i] : "",
            (double)r->mix[i].weight);
    if (rec) {
        put(&o, "model version: %s\n", kd_model_version_name(r->version));
        if (!v20) put(&o, "prior: %s\n", rec->prior ? rec->prior : "");
        put(&o, "decoder: %s\n", rec->decoder ? rec->decoder : "");
        if (rec->decoder_scheduler) put(&o, "decoder scheduler: %s\n", rec->decoder_scheduler);
        put(&o, "precision: %s\nweights: %s\n", kd_precision_name(rec->precision), kd_weight_mode_name(rec->weights));
    }
    put(&o, "engine: kandinsky.c %s", kd_version());
    if (rec && rec->extra) put(&o, "\n%s", rec->extra);
    return o.len;
}
