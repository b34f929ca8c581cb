/* Kandinsky 2.0: the original code's Kandinsky2 (kandinsky2_model.py) on our models. Spec §3.8;
 * the original code is the definition where the spec is silent. What happens, in its order:
 *
 *   texts   [prompt × B ; "" × B] through both tokenizers (max 77, padded) and both encoders:
 *           full1 = XLM-R states, pooled1 = mCLIP's projection, full2 = mT5 states
 *   latents (h, w) = ceil(side / 64) · 8; the sampler's own randn(2B, 4, h, w), first half used
 *           img2img: z = encode(image).sample()·0.0512 (noise: randn(1, 4, h, w)), then q_sample
 *           at timestep_map[start − 1] (noise: randn_like), start = int(T·(1 − strength₀)) with
 *           the original's strength₀ = 1 − strength (its strength is the share KEPT);
 *           inpainting: z as img2img; the mask (1 = keep) nearest-resized to the latents and
 *           eroded by prepare_mask; the U-Net gets [x, z·m·m, m]
 *   model   eps = uncond + g·(cond − uncond) on the [cond ; uncond] batch (cond FIRST)
 *   decode  decode(x / 0.0512) cropped to (height, width); pixels round((x + 1)·127.5) clamped. */
#include "pipeline/k20.h"
#include "pipeline/pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/ops.h"
#include "io/config.h"
#include "io/image.h"
#include "models/mclip.h"
#include "models/movq.h"
#include "models/mt5.h"
#include "models/unet.h"
#include "sched/guided.h"
#include "text/xlmr_tokenizer.h"

#define K20_TEXT_LEN 77
#define K20_CONFIG "kandinsky2_config.json"

struct kd_k20 {
    char *dir;
    int low_memory;
    kd_unet20_config unet_cfg;
    kd_ldm_kl_config vae_cfg;
    float scale; /* image_enc_params.scale */
    kd_xlmr_tokenizer *tok1, *tok2;
    kd_mclip *mclip;
    kd_mt5 *mt5;
    kd_movq *vae;
    kd_unet *unet;
    int unet_inpaint; /* which file unet holds */
};

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int is_file(const char *dir, const char *name) {
    char *p = join(dir, name);
    struct stat st;
    int ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

int kd_k20_is_folder(const char *dir) {
    return dir && is_file(dir, KD_K20_VAE) && (is_file(dir, KD_K20_UNET) || is_file(dir, KD_K20_UNET_INPAINT));
}

/* ---- configuration: the published one, or the folder's kandinsky2_config.json in the shape of
 * the original code's CONFIG_2_0 (model_config, image_enc_params) for other 2.0 models ---- */

static kd_status parse_int_list(const char *s, int *out, int max, int *n, const char *key, kd_err *e) {
    *n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || *n == max || v < 1 || v > 100000) return kd_errf(e, KD_ERR_FORMAT, "%s: bad list \"%s\"", key, s);
        out[(*n)++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return kd_errf(e, KD_ERR_FORMAT, "%s: bad list", key);
    }
    return KD_OK;
}

static kd_status int_key(const kd_config *c, const char *key, int def, int *out, kd_err *e) {
    int64_t v;
    KD_TRY(kd_config_int_or(c, key, def, &v, e));
    if (v < -1 || v > (1 << 20)) return kd_errf(e, KD_ERR_FORMAT, "%s = %lld is out of range", key, (long long)v);
    *out = (int)v;
    return KD_OK;
}

static kd_status read_unet_config(const kd_config *c, kd_unet20_config *u, kd_err *e) {
    const char *mult, *attn;
    int image_size, n;
    KD_TRY(int_key(c, "model_config.num_channels", u->model_channels, &u->model_channels, e));
    KD_TRY(int_key(c, "model_config.num_res_blocks", u->num_res_blocks, &u->num_res_blocks, e));
    KD_TRY(int_key(c, "model_config.num_head_channels", u->head_channels, &u->head_channels, e));
    KD_TRY(int_key(c, "model_config.model_dim", u->model_dim, &u->model_dim, e));
    KD_TRY(int_key(c, "model_config.text_encoder_in_dim1", u->in_dim1, &u->in_dim1, e));
    KD_TRY(int_key(c, "model_config.text_encoder_in_dim2", u->in_dim2, &u->in_dim2, e));
    KD_TRY(int_key(c, "model_config.out_channels", u->out_channels, &u->out_channels, e));
    KD_TRY(int_key(c, "model_config.image_size", 64, &image_size, e));
    KD_TRY(kd_config_str_or(c, "model_config.channel_mult", "", &mult, e));
    KD_TRY(kd_config_str_or(c, "model_config.attention_resolutions", "32,16,8", &attn, e));
    const char *pooling;
    KD_TRY(kd_config_str_or(c, "model_config.pooling_type", "from_model", &pooling, e));
    if (strcmp(pooling, "from_model"))
        return kd_errf(e, KD_ERR_UNSUPPORTED, "model_config.pooling_type '%s' (only \"from_model\", as published)", pooling);
    if (*mult) {
        KD_TRY(parse_int_list(mult, u->channel_mult, 8, &u->n_levels, "model_config.channel_mult", e));
    } else { /* create_model's defaults by image size */
        static const int m64[] = {1, 2, 3, 4}, m128[] = {1, 1, 2, 3, 4}, m256[] = {1, 1, 2, 2, 4, 4};
        const int *m = image_size == 64 ? m64 : image_size == 128 ? m128 : image_size == 256 ? m256 : NULL;
        if (!m) return kd_errf(e, KD_ERR_FORMAT, "model_config.image_size %d has no default channel_mult", image_size);
        u->n_levels = image_size == 64 ? 4 : image_size == 128 ? 5 : 6;
        memcpy(u->channel_mult, m, (size_t)u->n_levels * sizeof(int));
    }
    int res[8];
    KD_TRY(parse_int_list(attn, res, 8, &n, "model_config.attention_resolutions", e));
    u->n_attn = n;
    for (int i = 0; i < n; i++) u->attention_ds[i] = image_size / res[i]; /* create_model: image_size // res */
    return KD_OK;
}

static kd_status read_vae_config(const kd_config *c, kd_ldm_kl_config *v, float *scale, kd_err *e) {
    int64_t a[8];
    int n = 0;
    double s;
    KD_TRY(int_key(c, "image_enc_params.params.ddconfig.ch", v->ch, &v->ch, e));
    KD_TRY(int_key(c, "image_enc_params.params.ddconfig.num_res_blocks", v->num_res_blocks, &v->num_res_blocks, e));
    KD_TRY(int_key(c, "image_enc_params.params.ddconfig.resolution", v->resolution, &v->resolution, e));
    KD_TRY(int_key(c, "image_enc_params.params.ddconfig.z_channels", v->z_channels, &v->z_channels, e));
    KD_TRY(int_key(c, "image_enc_params.params.embed_dim", v->embed_dim, &v->embed_dim, e));
    KD_TRY(kd_config_float_or(c, "image_enc_params.scale", *scale, &s, e));
    if (!(s > 0 && s < 1e3)) return kd_errf(e, KD_ERR_FORMAT, "image_enc_params.scale %g", s);
    *scale = (float)s;
    if (kd_config_has(c, "image_enc_params.params.ddconfig.ch_mult")) {
        KD_TRY(kd_config_int_array(c, "image_enc_params.params.ddconfig.ch_mult", a, 8, &n, e));
        v->n_levels = n;
        for (int i = 0; i < n; i++) v->ch_mult[i] = (int)a[i];
    }
    if (kd_config_has(c, "image_enc_params.params.ddconfig.attn_resolutions")) {
        KD_TRY(kd_config_int_array(c, "image_enc_params.params.ddconfig.attn_resolutions", a, 8, &n, e));
        v->n_attn = n;
        for (int i = 0; i < n; i++) v->attn_resolutions[i] = (int)a[i];
    }
    return KD_OK;
}

static kd_status read_config(kd_k20 *k, kd_err *e) {
    k->unet_cfg = kd_unet20_config_published;
    k->vae_cfg = kd_ldm_kl_config_2_0;
    k->scale = 0.0512f;
    if (!is_file(k->dir, K20_CONFIG)) return KD_OK;
    char *p = join(k->dir, K20_CONFIG);
    if (!p) return kd_errf(e, KD_ERR_OOM, "out of memory");
    kd_config c;
    kd_status s = kd_config_load(p, &c, e);
    if (s == KD_OK) s = read_unet_config(&c, &k->unet_cfg, e);
    if (s == KD_OK) s = read_vae_config(&c, &k->vae_cfg, &k->scale, e);
    if (s != KD_OK) kd_err_prefix(e, "%s", p);
    kd_config_free(&c);
    free(p);
    return s;
}

/* ---- loading ---- */

static kd_status load_texts(kd_ctx *ctx, kd_k20 *k) {
    kd_err *e = &ctx->err;
    char *t1 = join(k->dir, "text_encoder1"), *t2 = join(k->dir, "text_encoder2");
    kd_status s = t1 && t2 ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    if (s == KD_OK && !k->tok1 && (s = kd_xlmr_tokenizer_load(t1, &k->tok1, e)) != KD_OK) kd_err_prefix(e, "text_encoder1 tokenizer");
    if (s == KD_OK && !k->tok2 && (s = kd_t5_tokenizer_load(t2, 0, &k->tok2, e)) != KD_OK) kd_err_prefix(e, "text_encoder2 tokenizer");
    if (s == KD_OK && !k->mclip) s = kd_mclip_load(ctx, t1, &k->mclip);
    if (s == KD_OK && !k->mt5) s = kd_mt5_load(ctx, t2, &k->mt5);
    free(t1);
    free(t2);
    return s;
}

static kd_status load_vae(kd_ctx *ctx, kd_k20 *k) {
    if (k->vae) return KD_OK;
    char *p = join(k->dir, KD_K20_VAE);
    kd_status s = p ? kd_vae_kl_load_ldm(ctx, p, &k->vae_cfg, &k->vae) : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    free(p);
    return s;
}

static kd_status load_unet(kd_ctx *ctx, kd_k20 *k, int inpaint) {
    if (k->unet && k->unet_inpaint == inpaint) return KD_OK;
    kd_unet_free(k->unet);
    k->unet = NULL;
    const char *name = inpaint ? KD_K20_UNET_INPAINT : KD_K20_UNET;
    if (!is_file(k->dir, name))
        return kd_ctx_fail(ctx, KD_ERR_NOT_FOUND, "%s: no %s (needed for %s)", k->dir, name,
                           inpaint ? "inpainting" : "text-to-image and image-to-image");
    char *p = join(k->dir, name);
    kd_unet20_config c = k->unet_cfg;
    c.in_channels = inpaint ? 2 * c.in_channels + 1 : c.in_channels; /* InpaintText2ImUNet: x, masked image, mask */
    kd_status s = p ? kd_unet_load_2_0_cfg(ctx, p, &c, &k->unet) : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    free(p);
    k->unet_inpaint = inpaint;
    return s;
}

static void free_models(kd_k20 *k) {
    kd_xlmr_tokenizer_free(k->tok1);
    kd_xlmr_tokenizer_free(k->tok2);
    kd_mclip_free(k->mclip);
    kd_mt5_free(k->mt5);
    kd_movq_free(k->vae);
    kd_unet_free(k->unet);
    k->tok1 = k->tok2 = NULL;
    k->mclip = NULL;
    k->mt5 = NULL;
    k->vae = NULL;
    k->unet = NULL;
}

kd_status kd_k20_load(kd_ctx *ctx, const char *dir, int low_memory, kd_k20 **out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!dir || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "kandinsky 2.0: NULL argument");
    *out = NULL;
    if (!kd_k20_is_folder(dir))
        return kd_ctx_fail(ctx, KD_ERR_NOT_FOUND, "%s is not a Kandinsky 2.0 folder (%s and %s or %s)", dir, KD_K20_VAE,
                           KD_K20_UNET, KD_K20_UNET_INPAINT);
    kd_k20 *k = calloc(1, sizeof *k);
    if (!k || !(k->dir = strdup(dir))) {
        free(k);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    }
    k->low_memory = low_memory;
    kd_status s = read_config(k, &ctx->err);
    if (s == KD_OK && !low_memory) s = load_texts(ctx, k);
    if (s == KD_OK && !low_memory) s = load_vae(ctx, k);
    if (s == KD_OK && !low_memory) s = load_unet(ctx, k, !is_file(dir, KD_K20_UNET));
    if (s != KD_OK) {
        kd_k20_free(k);
        return s;
    }
    *out = k;
    return KD_OK;
}

void kd_k20_free(kd_k20 *k) {
    if (!k) return;
    free_models(k);
    free(k->dir);
    free(k);
}

/* ---- text conditioning ---- */

typedef struct k20_text {
    int rows;                           /* 2B: [prompt × B ; "" × B] */
    float *full1, *pooled1, *full2;     /* [rows, 77, H1], [rows, P], [rows, 77, 512] */
} k20_text;

static void text_free(k20_text *t) {
    free(t->full1);
    free(t->pooled1);
    free(t->full2);
}

static kd_status encode_texts(kd_ctx *ctx, kd_k20 *k, const char *prompt, int B, k20_text *t) {
    int rows = 2 * B, L = K20_TEXT_LEN;
    int H1 = kd_mclip_hidden_size(k->mclip), P = kd_mclip_embed_dim(k->mclip), H2 = kd_mt5_hidden_size(k->mt5);
    int32_t *ids = malloc((size_t)rows * L * 2 * sizeof(int32_t));
    t->rows = rows;
    t->full1 = malloc((size_t)rows * L * H1 * sizeof(float));
    t->pooled1 = malloc((size_t)rows * P * sizeof(float));
    t->full2 = malloc((size_t)rows * L * H2 * sizeof(float));
    if (!ids || !t->full1 || !t->pooled1 || !t->full2) {
        free(ids);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "kandinsky 2.0: out of memory for the text states");
    }
    int32_t *mask = ids + rows * L;
    kd_status s = KD_OK;
    for (int pass = 0; pass < 2 && s == KD_OK; pass++) {
        const kd_xlmr_tokenizer *tok = pass ? k->tok2 : k->tok1;
        for (int r = 0; r < rows && s == KD_OK; r++) {
            const char *text = r < B ? prompt : "";
            s = kd_xlmr_tokenize(tok, text, strlen(text), L, ids + r * L, mask + r * L, NULL, &ctx->err);
            if (s != KD_OK) kd_err_prefix(&ctx->err, "prompt (text_encoder%d tokenizer)", pass + 1);
        }
        if (s == KD_OK && pass == 0) s = kd_mclip_forward(ctx, k->mclip, ids, mask, rows, L, t->pooled1, t->full1);
        if (s == KD_OK && pass == 1) s = kd_mt5_forward(ctx, k->mt5, ids, mask, rows, L, t->full2);
    }
    free(ids);
    return s;
}

/* ---- the model the sampler calls ---- */

typedef struct k20_model {
    kd_ctx *ctx;
    kd_k20 *k;
    const k20_text *text;
    int B;
    int64_t h, w;
    float guidance;
    const float *inpaint_image, *inpaint_mask; /* [B, 4, h, w] (image·mask), [B, 1, h, w]; NULL: text-to-image */
    const float *init_latents;                 /* inpainting denoised_fn */
    float *sample, *out, *ts;                  /* [2B, Cin, h, w], [2B, 8, h, w], [2B] */
    kd_progress_fn progress;
    void *progress_user;
    const volatile int *cancel;
    int step, total;
} k20_model;

static kd_status model_eval(void *ctx_, const float *x, float t, float *eps, float *var, kd_err *e) {
    k20_model *m = ctx_;
    int B = m->B, Cin = kd_unet_sample_channels(m->k->unet);
    int64_t hw = m->h * m->w;
    /* [x ; x] (with the inpainting channels [x, image·mask·mask, mask] per sample) */
    for (int r = 0; r < 2 * B; r++) {
        float *dst = m->sample + (size_t)r * Cin * hw;
        int b = r % B;
        memcpy(dst, x + (size_t)b * 4 * hw, (size_t)4 * hw * sizeof(float));
        if (m->inpaint_image) {
            const float *img = m->inpaint_image + (size_t)b * 4 * hw, *mk = m->inpaint_mask + (size_t)b * hw;
            for (int c = 0; c < 4; c++)
                for (int64_t i = 0; i < hw; i++) dst[(4 + c) * hw + i] = img[c * hw + i] * mk[i];
            memcpy(dst + 8 * hw, mk, (size_t)hw * sizeof(float));
        }
        m->ts[r] = t;
    }
    kd_unet_cond c = {.timesteps = m->ts, .text_embeds = m->text->pooled1, .encoder_hidden_states = m->text->full1,
                      .text_len = K20_TEXT_LEN, .encoder_hidden_states2 = m->text->full2, .text_len2 = K20_TEXT_LEN};
    kd_status s = kd_unet_forward(m->ctx, m->k->unet, m->sample, 2 * B, (int)m->h, (int)m->w, &c, m->out);
    if (s != KD_OK) {
        if (e != &m->ctx->err) *e = m->ctx->err;
        return s;
    }
    int oc = kd_unet_out_channels(m->k->unet);
    for (int b = 0; b < B; b++) {
        const float *cond = m->out + (size_t)b * oc * hw, *unc = m->out + (size_t)(B + b) * oc * hw;
        for (int64_t i = 0; i < 4 * hw; i++) eps[(size_t)b * 4 * hw + i] = unc[i] + m->guidance * (cond[i] - unc[i]);
        if (var) memcpy(var + (size_t)b * 4 * hw, cond + 4 * hw, (size_t)4 * hw * sizeof(float));
    }
    kd_progress pr = {m->progress, m->progress_user, m->cancel};
    return kd_progress_report(&pr, e, "decoder", ++m->step, m->total);
}

/* Inpainting's denoised_fn (p_sampler only): the dynamic threshold, then the known region back. */
static void inpaint_denoise(void *ctx_, float *x0, int64_t B, int64_t C, int64_t HW) {
    const k20_model *m = ctx_;
    kd_g20_dynamic_threshold(x0, B, C * HW, 99.5);
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < HW; i++) {
                float mk = m->inpaint_mask[b * HW + i];
                size_t j = (size_t)((b * C + c) * HW + i);
                x0[j] = x0[j] * (1.0f - mk) + m->init_latents[j] * mk;
            }
}

/* ---- images ---- */

/* prepare_image: PIL bicubic (reducing_gap 1) to w × h, /127.5 − 1, NCHW */
static kd_status prepare_image(kd_ctx *ctx, const kd_image *img, int w, int h, float *out) {
    kd_image rgb = {0}, rs = {0};
    kd_status s = kd_image_to_rgb(img, &rgb, &ctx->err);
    if (s == KD_OK) s = kd_image_resize(&rgb, w, h, KD_RESAMPLE_BICUBIC, 1.0, &rs, &ctx->err);
    for (int c = 0; s == KD_OK && c < 3; c++)
        for (int i = 0; i < w * h; i++) out[(size_t)c * w * h + i] = (float)rs.data[(size_t)i * 3 + c] / 127.5f - 1.0f;
    kd_image_free(&rgb);
    kd_image_free(&rs);
    return s;
}

/* The user's mask (white = repaint unless inverted) → the original's (1 = keep) at the latent size:
 * thresholded at 50 %, F.interpolate(nearest) then prepare_mask's erosion. */
static kd_status prepare_mask(kd_ctx *ctx, const kd_image *mask, int invert, int64_t h, int64_t w, float *out) {
    kd_image gray = {0};
    KD_TRY(kd_image_to_gray(mask, &gray, &ctx->err));
    int H = gray.height, W = gray.width;
    float *m = malloc((size_t)h * w * sizeof(float));
    if (!m) {
        kd_image_free(&gray);
        return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    }
    for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w; j++) { /* nearest: src = floor(dst · in / out) */
            int64_t si = (int64_t)floor((double)i * ((double)H / (double)h)), sj = (int64_t)floor((double)j * ((double)W / (double)w));
            if (si >= H) si = H - 1;
            if (sj >= W) sj = W - 1;
            int repaint = gray.data[si * W + sj] >= 128;
            m[i * w + j] = (float)(invert ? repaint : !repaint);
        }
    kd_image_free(&gray);
    /* prepare_mask: every 0 clears its up, left, up-left, down, right and down-right neighbours */
    memcpy(out, m, (size_t)h * w * sizeof(float));
    for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w; j++) {
            if (m[i * w + j] == 1.0f) continue;
            if (i) out[(i - 1) * w + j] = 0;
            if (j) out[i * w + j - 1] = 0;
            if (i && j) out[(i - 1) * w + j - 1] = 0;
            if (i < h - 1) out[(i + 1) * w + j] = 0;
            if (j < w - 1) out[i * w + j + 1] = 0;
            if (i < h - 1 && j < w - 1) out[(i + 1) * w + j + 1] = 0;
        }
    free(m);
    return KD_OK;
}

/* process_images: round((x + 1)·127.5) clamped to [0, 255], cropped to width × height. */
static kd_status to_image(kd_ctx *ctx, const float *x, int W, int H, int width, int height, kd_image *out) {
    KD_TRY(kd_image_alloc(out, width, height, 3, &ctx->err));
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < height; i++)
            for (int j = 0; j < width; j++) {
                float v = nearbyintf((x[((size_t)c * H + i) * W + j] + 1.0f) * 127.5f);
                out->data[((size_t)i * width + j) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return KD_OK;
}

/* ---- one request ---- */

static kd_status sampler_kind(kd_ctx *ctx, const char *name, kd_g20_kind *out) {
    if (!name || !strcmp(name, "ddim_sampler") || !strcmp(name, "ddim")) *out = KD_G20_DDIM;
    else if (!strcmp(name, "p_sampler") || !strcmp(name, "p")) *out = KD_G20_P;
    else if (!strcmp(name, "plms_sampler") || !strcmp(name, "plms")) *out = KD_G20_PLMS;
    else
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG,
                           "sampler '%.100s' is not a Kandinsky 2.0 sampler (ddim_sampler, p_sampler, plms_sampler)", name);
    return KD_OK;
}

/* A float parameter as the decimal the user wrote (0.05f → 0.05): the original computes with
 * Python floats, and its samplers round their tables to float32, where 0.05f's extra 7e-10
 * changes σ's last bit. */
static double as_decimal(float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)v);
    return strtod(buf, NULL);
}

/* The original's start_step = int(T·(1 − strength)) where ITS strength is the share of the image
 * kept (0.7 keeps much), the opposite of ours (diffusers': the share of noise): theirs = 1 − ours. */
static int start_step(int T, float strength) {
    double original = 1.0 - as_decimal(strength);
    return (int)((double)T * (1.0 - original));
}

typedef struct k20_run {
    int B;
    int64_t h, w;          /* latent size */
    float *x;              /* [B, 4, h, w] */
    float *image_latents;  /* img2img / inpainting: [1, 4, h, w] z·scale */
    float *mask;           /* inpainting [1, 1, h, w] */
} k20_run;

/* z = encode(image).sample()·scale, the posterior's noise drawn first from rng */
static kd_status encode_image(kd_ctx *ctx, kd_k20 *k, const kd_image *img, int width, int height, kd_rng *rng,
                              k20_run *r) {
    int64_t hw = r->h * r->w;
    float *pix = malloc((size_t)3 * width * height * sizeof(float)), *mom = malloc((size_t)8 * hw * sizeof(float));
    float *noise = malloc((size_t)4 * hw * sizeof(float));
    r->image_latents = malloc((size_t)4 * hw * sizeof(float));
    kd_status s = pix && mom && noise && r->image_latents ? KD_OK : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    if (s == KD_OK) s = prepare_image(ctx, img, width, height, pix);
    if (s == KD_OK) s = kd_vae_kl_moments_be(k->vae, &ctx->be, pix, 1, height, width, mom, &ctx->err);
    if (s == KD_OK) {
        kd_rng_randn(rng, noise, (size_t)4 * hw);
        kd_vae_kl_sample(mom, 1, 4, hw, noise, r->image_latents);
        for (int64_t i = 0; i < 4 * hw; i++) r->image_latents[i] *= k->scale;
    }
    free(pix);
    free(mom);
    free(noise);
    return s;
}

static kd_status run_one(kd_ctx *ctx, kd_k20 *k, const kd_gen_params *g, const k20_text *text, int B, kd_rng *rng,
                         kd_image *images) {
    kd_g20_kind kind = KD_G20_DDIM;
    KD_TRY(sampler_kind(ctx, g->sampler, &kind));
    int inpaint = g->mask_image != NULL, img2img = g->init_image && !inpaint;
    k20_run r = {.B = B, .h = (g->height + 63) / 64 * 8, .w = (g->width + 63) / 64 * 8};
    int64_t hw = r.h * r.w, n = (int64_t)B * 4 * hw;
    int T = kind == KD_G20_P ? g->steps : KD_G20_T, init_step = -1;
    kd_status s = KD_OK;
    if (img2img) {
        init_step = start_step(T, g->strength);
        if (init_step < 1) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "strength %g leaves no step of %d", (double)g->strength, T);
    }
    kd_g20 sch;
    if ((s = kd_g20_init(&sch, kind, g->steps, kind == KD_G20_DDIM ? as_decimal(g->eta) : 0.0, init_step, &ctx->err)) != KD_OK)
        return s;
    r.x = malloc((size_t)2 * n * sizeof(float));
    if (!r.x) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    k20_model m = {.ctx = ctx, .k = k, .text = text, .B = B, .h = r.h, .w = r.w, .guidance = g->guidance_scale,
                   .progress = g->progress, .progress_user = g->progress_user, .cancel = g->cancel,
                   .total = sch.n + (kind == KD_G20_PLMS ? 1 : 0)};
    float *inpaint_image = NULL;
    if (img2img || inpaint) s = encode_image(ctx, k, g->init_image, g->width, g->height, rng, &r);
    if (s == KD_OK && img2img) {
        /* q_sample(z, timestep_map[start − 1]) with randn_like(z), then [z_t ; z_t] */
        double ac[KD_G20_T];
        kd_g20_alphas_cumprod(ac);
        int64_t t = kd_g20_img2img_t(&sch, init_step);
        float a = (float)sqrt(ac[t]), b = (float)sqrt(1.0 - ac[t]);
        kd_rng_randn(rng, r.x + n, (size_t)n);
        for (int64_t i = 0; i < n; i++) r.x[i] = a * r.image_latents[i] + b * r.x[n + i];
    } else if (s == KD_OK) {
        kd_rng_randn(rng, r.x, (size_t)(2 * n)); /* the sampler's own randn(2B, 4, h, w): first half */
    }
    if (s == KD_OK && inpaint) {
        r.mask = malloc((size_t)hw * sizeof(float));
        inpaint_image = malloc((size_t)4 * hw * sizeof(float));
        s = r.mask && inpaint_image ? prepare_mask(ctx, g->mask_image, g->invert_mask, r.h, r.w, r.mask)
                                    : kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
        for (int64_t c = 0; s == KD_OK && c < 4; c++)
            for (int64_t i = 0; i < hw; i++) inpaint_image[c * hw + i] = r.image_latents[c * hw + i] * r.mask[i];
        m.inpaint_image = inpaint_image;
        m.inpaint_mask = r.mask;
        m.init_latents = r.image_latents;
    }
    int cin = kd_unet_sample_channels(k->unet), oc = kd_unet_out_channels(k->unet);
    m.sample = malloc((size_t)2 * B * cin * hw * sizeof(float));
    m.out = malloc((size_t)2 * B * oc * hw * sizeof(float));
    m.ts = malloc((size_t)2 * B * sizeof(float));
    if (s == KD_OK && (!m.sample || !m.out || !m.ts)) s = kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory for the U-Net batch");
    if (s == KD_OK)
        s = kd_g20_run(&sch, model_eval, inpaint && kind == KD_G20_P ? inpaint_denoise : NULL, &m, r.x, B, 4, hw, rng,
                       &ctx->err);
    /* decode(x / scale) and the picture */
    int H = (int)r.h * kd_movq_downscale(k->vae), W = (int)r.w * kd_movq_downscale(k->vae);
    float *pix = s == KD_OK ? malloc((size_t)B * 3 * H * W * sizeof(float)) : NULL;
    if (s == KD_OK && !pix) s = kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory for the decoded images");
    for (int64_t i = 0; s == KD_OK && i < n; i++) r.x[i] = r.x[i] / k->scale;
    if (s == KD_OK) s = kd_movq_decode(ctx, k->vae, r.x, B, (int)r.h, (int)r.w, pix);
    if (s == KD_OK && g->progress) g->progress(g->progress_user, "decode", 1, 1);
    for (int b = 0; s == KD_OK && b < B; b++)
        s = to_image(ctx, pix + (size_t)b * 3 * H * W, W, H, g->width < W ? g->width : W, g->height < H ? g->height : H,
                     &images[b]);
    free(pix);
    free(m.sample);
    free(m.out);
    free(m.ts);
    free(inpaint_image);
    free(r.x);
    free(r.image_latents);
    free(r.mask);
    return s;
}

kd_status kd_k20_generate(kd_ctx *ctx, kd_k20 *k, const kd_gen_params *g, kd_image *images) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!k || !g || !images) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "NULL argument");
    for (int i = 0; i < g->num_images && i < 1024; i++) images[i] = (kd_image){0};
    int edit = g->init_image != NULL;
    if (g->n_mix > 0 || g->hint_image || g->prior_image)
        return kd_ctx_fail(ctx, KD_ERR_UNSUPPORTED, "Kandinsky 2.0 has no prior: image mixing, emb2emb and ControlNet hints are 2.1 / 2.2 features");
    if (g->negative_prompt)
        return kd_ctx_fail(ctx, KD_ERR_UNSUPPORTED, "Kandinsky 2.0's unconditional half is the empty prompt (the original has no negative prompt)");
    if (edit && (g->width % 64 || g->height % 64))
        return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG,
                           "Kandinsky 2.0 image-to-image and inpainting need a width and height that are multiples of 64 (got %dx%d)",
                           g->width, g->height);
    kd_rng rng;
    kd_rng_seed(&rng, g->seed);
    kd_status s = load_texts(ctx, k);
    if (s == KD_OK) s = load_vae(ctx, k);
    if (s == KD_OK) s = load_unet(ctx, k, g->mask_image != NULL);
    /* text-to-image: one batch of n; editing: the original's batch 1, n times on one generator */
    int batch = edit ? 1 : g->num_images;
    k20_text text = {0};
    if (s == KD_OK) s = encode_texts(ctx, k, g->prompt, batch, &text);
    for (int i = 0; s == KD_OK && i < g->num_images; i += batch) s = run_one(ctx, k, g, &text, batch, &rng, images + i);
    text_free(&text);
    if (s != KD_OK)
        for (int i = 0; i < g->num_images; i++) kd_image_free(&images[i]);
    if (k->low_memory) free_models(k);
    return s;
}
