/* The native JSON form of a request (docs/SERVER.md): diffusers' field names, images as base64. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/ctx.h"
#include "api/request.h"

static kd_status want_int(kd_ctx *ctx, kd_request *r, const cJSON *v, const char *name, long lo, long hi, int *out) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return kd_request_fail(ctx, r, name, "%s must be an integer in %ld..%ld", name, lo, hi);
    *out = (int)v->valuedouble;
    return KD_OK;
}

static kd_status want_float(kd_ctx *ctx, kd_request *r, const cJSON *v, const char *name, float *out) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e6)
        return kd_request_fail(ctx, r, name, "%s must be a number", name);
    *out = (float)v->valuedouble;
    return KD_OK;
}

static kd_status want_bool(kd_ctx *ctx, kd_request *r, const cJSON *v, const char *name, int *out) {
    if (cJSON_IsBool(v)) *out = cJSON_IsTrue(v);
    else if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) *out = (int)v->valuedouble;
    else return kd_request_fail(ctx, r, name, "%s must be true or false", name);
    return KD_OK;
}

/* A string kept by the request; null allowed when nullable (→ NULL). */
static kd_status want_str(kd_ctx *ctx, kd_request *r, const cJSON *v, const char *name, int nullable, const char **out) {
    if (nullable && cJSON_IsNull(v)) return *out = NULL, KD_OK;
    if (!cJSON_IsString(v)) return kd_request_fail(ctx, r, name, "%s must be a string%s", name, nullable ? " or null" : "");
    if (!(*out = kd_request_keep(r, v->valuestring))) return kd_ctx_fail(ctx, KD_ERR_OOM, "out of memory");
    return KD_OK;
}

/* Seeds: an integer 0..2^53 or -1 (random), or a decimal string 0..2^64-1. */
static kd_status want_seed(kd_ctx *ctx, kd_request *r, const cJSON *v) {
    if (cJSON_IsNumber(v) && v->valuedouble == -1) return r->seed_random = 1, KD_OK;
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0 &&
        v->valuedouble == floor(v->valuedouble)) {
        r->g.seed = (uint64_t)v->valuedouble;
        r->seed_random = 0;
        return KD_OK;
    }
    if (cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) <= 20 &&
        strspn(v->valuestring, "0123456789") == strlen(v->valuestring)) {
        errno = 0;
        unsigned long long x = strtoull(v->valuestring, NULL, 10);
        if (!errno) {
            r->g.seed = (uint64_t)x;
            r->seed_random = 0;
            return KD_OK;
        }
    }
    return kd_request_fail(ctx, r, "seed", "seed must be an integer in 0..2^53, -1 (random) or a decimal string in 0..2^64-1");
}

static kd_status want_image(kd_ctx *ctx, kd_request *r, const cJSON *v, kd_request_slot slot, uint64_t max_pixels) {
    if (cJSON_IsNull(v)) return KD_OK;
    const char *name = kd_request_slot_name(slot);
    if (!cJSON_IsString(v)) return kd_request_fail(ctx, r, name, "%s must be a base64 PNG or JPEG (or a data: URL)", name);
    return kd_request_image_base64(ctx, r, slot, v->valuestring, strlen(v->valuestring), "upload", max_pixels);
}

/* "mix": [{"prompt": "a cat", "weight": 0.7}, {"image": "<base64>", "weight": 0.3}] */
static kd_status want_mix(kd_ctx *ctx, kd_request *r, const cJSON *v, uint64_t max_pixels) {
    if (!cJSON_IsArray(v)) return kd_request_fail(ctx, r, "mix", "mix must be an array of {prompt|image, weight}");
    int i = 0;
    for (const cJSON *it = v->child; it; it = it->next, i++) {
        char field[32];
        snprintf(field, sizeof field, "mix[%d]", i);
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(it, "weight");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(it, "prompt"), *im = cJSON_GetObjectItemCaseSensitive(it, "image");
        if (!cJSON_IsObject(it) || !!t == !!im)
            return kd_request_fail(ctx, r, field, "%s must be an object with either prompt or image, and weight", field);
        for (const cJSON *f = it->child; f; f = f->next)
            if (strcmp(f->string, "weight") && strcmp(f->string, "prompt") && strcmp(f->string, "image"))
                return kd_request_fail(ctx, r, field, "%s: unknown field '%.64s'", field, f->string);
        float weight = 1.0f;
        if (w) {
            snprintf(field, sizeof field, "mix[%d].weight", i);
            KD_TRY(want_float(ctx, r, w, field, &weight));
        }
        if (t && !cJSON_IsString(t)) return kd_request_fail(ctx, r, field, "mix[%d].prompt must be a string", i);
        if (im && !cJSON_IsString(im)) return kd_request_fail(ctx, r, field, "mix[%d].image must be base64", i);
        KD_TRY(t ? kd_request_mix_text(ctx, r, t->valuestring, weight)
                 : kd_request_mix_image_base64(ctx, r, im->valuestring, strlen(im->valuestring), weight, max_pixels));
    }
    if (i == 0) return kd_request_fail(ctx, r, "mix", "mix is empty");
    return KD_OK;
}

static kd_status want_version(kd_ctx *ctx, kd_request *r, const cJSON *v) {
    if (!cJSON_IsString(v) || kd_model_version_parse(v->valuestring, &r->version))
        return kd_request_fail(ctx, r, "model_version", "model_version must be \"2.0\", \"2.1\" or \"2.2\"");
    return KD_OK;
}

static kd_status field(kd_ctx *ctx, kd_request *r, const cJSON *f, uint64_t max_pixels) {
    const char *k = f->string;
    kd_gen_params *g = &r->g;
    if (!strcmp(k, "prompt")) return want_str(ctx, r, f, k, 0, &g->prompt);
    if (!strcmp(k, "negative_prompt")) return want_str(ctx, r, f, k, 1, &g->negative_prompt);
    if (!strcmp(k, "width")) return want_int(ctx, r, f, k, 1, 1 << 20, &g->width);
    if (!strcmp(k, "height")) return want_int(ctx, r, f, k, 1, 1 << 20, &g->height);
    if (!strcmp(k, "num_inference_steps")) return r->steps_given = 1, want_int(ctx, r, f, k, 0, 1 << 20, &g->steps);
    if (!strcmp(k, "prior_num_inference_steps")) return want_int(ctx, r, f, k, 0, 1 << 20, &g->prior_steps);
    if (!strcmp(k, "guidance_scale")) return r->guidance_given = 1, want_float(ctx, r, f, k, &g->guidance_scale);
    if (!strcmp(k, "prior_guidance_scale")) return want_float(ctx, r, f, k, &g->prior_guidance_scale);
    if (!strcmp(k, "seed")) return want_seed(ctx, r, f);
    if (!strcmp(k, "num_images")) return want_int(ctx, r, f, k, 1, 1 << 20, &g->num_images);
    if (!strcmp(k, "sampler")) return want_str(ctx, r, f, k, 1, &g->sampler);
    if (!strcmp(k, "prior_sampler")) return want_str(ctx, r, f, k, 1, &g->prior_sampler);
    if (!strcmp(k, "eta")) return want_float(ctx, r, f, k, &g->eta);
    if (!strcmp(k, "strength")) return want_float(ctx, r, f, k, &g->strength);
    if (!strcmp(k, "prior_strength")) return want_float(ctx, r, f, k, &g->prior_strength);
    if (!strcmp(k, "invert_mask")) return want_bool(ctx, r, f, k, &g->invert_mask);
    if (!strcmp(k, "soft_mask")) return want_bool(ctx, r, f, k, &g->soft_mask);
    if (!strcmp(k, "init_image")) return want_image(ctx, r, f, KD_SLOT_INIT, max_pixels);
    if (!strcmp(k, "mask_image")) return want_image(ctx, r, f, KD_SLOT_MASK, max_pixels);
    if (!strcmp(k, "hint")) return want_image(ctx, r, f, KD_SLOT_HINT, max_pixels);
    if (!strcmp(k, "prior_image")) return want_image(ctx, r, f, KD_SLOT_PRIOR_IMAGE, max_pixels);
    if (!strcmp(k, "mix")) return want_mix(ctx, r, f, max_pixels);
    if (!strcmp(k, "model_version")) return want_version(ctx, r, f);
    if (!strcmp(k, "preview_every")) return want_int(ctx, r, f, k, 0, 1 << 20, &g->preview_every);
    if (!strcmp(k, "mode")) {
        if (!cJSON_IsString(f) || kd_mode_parse(f->valuestring, &r->mode))
            return kd_request_fail(ctx, r, k, "mode must be one of text2img, img2img, inpaint, controlnet, mix");
        return KD_OK;
    }
    if (!strcmp(k, "precision")) {
        if (!cJSON_IsString(f) || kd_precision_parse(f->valuestring, &r->precision))
            return kd_request_fail(ctx, r, k, "precision must be \"fp32\" or \"bf16\"");
        r->precision_given = 1;
        return KD_OK;
    }
    if (!strcmp(k, "preview")) {
        int on = 0;
        KD_TRY(want_bool(ctx, r, f, k, &on));
        if (on && !g->preview_every) g->preview_every = 5;
        if (!on) g->preview_every = 0;
        return KD_OK;
    }
    return kd_request_fail(ctx, r, k, "unknown field '%.64s' (docs/SERVER.md lists the request fields)", k);
}

kd_status kd_request_from_json(kd_ctx *ctx, const char *json, size_t len, uint64_t max_pixels, kd_request *r) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!json || !r) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "request: NULL argument");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return kd_request_fail(ctx, r, "", "the body is not valid JSON");
    kd_status s = cJSON_IsObject(root) ? KD_OK : kd_request_fail(ctx, r, "", "the body must be a JSON object");
    /* "preview" before "preview_every" would reset it: handle preview_every after the rest */
    const cJSON *every = NULL;
    for (const cJSON *f = root->child; s == KD_OK && f; f = f->next) {
        if (!strcmp(f->string, "preview_every")) every = f;
        else s = field(ctx, r, f, max_pixels);
    }
    if (s == KD_OK && every) {
        int on = r->g.preview_every > 0; /* previews only with "preview": true */
        s = field(ctx, r, every, max_pixels);
        if (!on) r->g.preview_every = 0;
    }
    cJSON_Delete(root);
    return s;
}
