/* CLIP image preprocessing parity with the pinned transformers CLIPImageProcessor (the PIL backend
 * the pinned stack falls back to without torchvision) and one-image CLIP embeddings end to end.
 * Fixtures: tools/reference/gen_clip_preprocess.py → tests/data/clip_preprocess/.
 *
 * Per case: the PNG is decoded as stored (kd_image_load: gray 1 channel, RGBA / LA / palette with
 * tRNS 4 channels), as PIL.Image.open gives it to the processor, or through convert("RGB") for the
 * load_image cases; the config file is read by kd_clip_preprocess_config_load; the output must
 * match pixel_values. The bound is one 8-bit level before normalisation, i.e.
 * |got − ref| <= unit_c = (rescale ? rescale_factor : 1) / (normalize ? std_c : 1); we report the
 * largest |got − ref| / unit_c over all cases and the number of bit-identical values (the goal:
 * all, and the test requires it). Embeddings: rtol 1e-4. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "io/config.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "kandinsky.h"
#include "models/clip_preprocess.h"
#include "testutil.h"

/* TEST_CHECK that also yields the condition */
static int chk_ok;
#define CHK(cond, ...) (chk_ok = !!(cond), kt_check(chk_ok, __FILE__, __LINE__, __VA_ARGS__), chk_ok)

static double worst_units = 0.0; /* max |got - ref| / unit over every case */
static size_t n_values = 0, n_exact = 0;

static const char *dpath(const char *rel) {
    static char buf[4][1024];
    static int k = 0;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", kt_data_path("clip_preprocess"), rel);
    return buf[k];
}

/* pixel_values [3, h, w] rebuilt from <name>.values F32 [3, K] + <name>.index F16 [3, h, w]. */
static float *ref_pixels(const kd_st_file *f, const char *name, int *h, int *w) {
    char vn[200], in[200];
    snprintf(vn, sizeof vn, "%s.values", name);
    snprintf(in, sizeof in, "%s.index", name);
    const kd_st_tensor *v = kd_st_find(f, vn), *ix = kd_st_find(f, in);
    if (!v || !ix || v->t.dtype != KD_F32 || ix->t.dtype != KD_F16 || v->t.ndim != 2 || ix->t.ndim != 3 ||
        v->t.shape[0] != 3 || ix->t.shape[0] != 3)
        return NULL;
    int64_t K = v->t.shape[1];
    *h = (int)ix->t.shape[1], *w = (int)ix->t.shape[2];
    size_t plane = (size_t)*h * *w;
    float *out = malloc(3 * plane * sizeof(float));
    const float *vals = v->t.data;
    const uint16_t *idx = ix->t.data;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++) {
            int64_t k = (int64_t)kd_f16_to_f32(idx[c * plane + i]);
            out[c * plane + i] = k >= 0 && k < K ? vals[c * K + k] : NAN;
        }
    return out;
}

static const float *ref_tensor(const kd_st_file *f, const char *name, const char *what, size_t *n) {
    char tn[200];
    snprintf(tn, sizeof tn, "%s.%s", name, what);
    const kd_st_tensor *t = kd_st_find(f, tn);
    if (!t || t->t.dtype != KD_F32) return NULL;
    *n = (size_t)kd_tensor_numel(&t->t);
    return t->t.data;
}

static int mode_channels(const char *mode) {
    if (!strcmp(mode, "L")) return 1;
    if (!strcmp(mode, "RGB")) return 3;
    return 4; /* RGBA, LA, P with transparency */
}

/* Compares got against ref; returns the max |diff| in 8-bit units. */
static double compare(const char *name, const float *got, const float *ref, int h, int w,
                      const kd_clip_preprocess_config *cfg) {
    size_t plane = (size_t)h * w, exact = 0;
    double worst = 0.0, worst_abs = 0.0;
    for (int c = 0; c < 3; c++) {
        double unit = (cfg->do_rescale ? cfg->rescale_factor : 1.0) / (cfg->do_normalize ? (float)cfg->image_std[c] : 1.0);
        for (size_t i = 0; i < plane; i++) {
            float g = got[c * plane + i], r = ref[c * plane + i];
            if (memcmp(&g, &r, sizeof g) == 0) exact++;
            double d = fabs((double)g - (double)r);
            if (!(d == d)) d = INFINITY;
            if (d > worst_abs) worst_abs = d;
            if (d / fabs(unit) > worst) worst = d / fabs(unit);
        }
    }
    n_values += 3 * plane;
    n_exact += exact;
    if (worst > worst_units) worst_units = worst;
    TEST_CHECK(worst <= 1.0 + 1e-9, "%s: max |diff| %.3g = %.4f levels (bound 1 level)", name, worst_abs, worst);
    /* we reach bit-identical values (same float32 operations as numpy): keep it that way */
    TEST_CHECK(exact == 3 * plane, "%s: %zu of %zu values bit-identical", name, exact, 3 * plane);
    if (exact != 3 * plane)
        printf("  %-40s %zu/%zu values bit-identical, max |diff| %.3g (%.4f levels)\n", name, exact, 3 * plane,
               worst_abs, worst);
    return worst;
}

static void run_cases(kd_ctx *ctx) {
    kd_err e;
    kd_config cases;
    if (!CHK(kd_config_load(dpath("cases.json"), &cases, &e) == KD_OK, "cases.json: %s", e.msg)) return;
    kd_st_file *f = NULL;
    TEST_CHECK(kd_st_open(dpath("cases.safetensors"), &f, &e) == KD_OK, "cases.safetensors: %s", e.msg);
    kd_clip_vision *model = NULL;
    char mp[1024];
    snprintf(mp, sizeof mp, "%s/clip_vision", kt_data_path("prior"));
    TEST_CHECK(kd_clip_vision_load(ctx, mp, &model) == KD_OK, "load %s: %s", mp, kd_ctx_last_error(ctx));
    const cJSON *arr = kd_config_get(&cases, "cases");
    int n = cJSON_GetArraySize(arr), n_ok = 0, n_err = 0, n_embed = 0;
    TEST_CHECK(f && model && n >= 20, "%d cases", n);
    for (int i = 0; f && model && i < n; i++) {
        const cJSON *c = cJSON_GetArrayItem(arr, i);
        const char *name = cJSON_GetObjectItem(c, "name")->valuestring;
        const char *image = cJSON_GetObjectItem(c, "image")->valuestring;
        const char *config = cJSON_GetObjectItem(c, "config")->valuestring;
        const char *loader = cJSON_GetObjectItem(c, "loader")->valuestring;
        const char *mode = cJSON_GetObjectItem(c, "mode")->valuestring;
        const cJSON *error = cJSON_GetObjectItem(c, "error"), *emodel = cJSON_GetObjectItem(c, "model");
        char rel[300], cfgpath[1024];
        snprintf(rel, sizeof rel, "images/%s", image);
        kd_image img = {0}, rgb = {0};
        if (!CHK(kd_image_load(dpath(rel), NULL, &img, &e) == KD_OK, "%s: %s", name, e.msg)) continue;
        const kd_image *in = &img;
        if (!strcmp(loader, "load_image")) {
            TEST_CHECK(kd_image_to_rgb(&img, &rgb, &e) == KD_OK, "%s: to rgb: %s", name, e.msg);
            in = &rgb;
        }
        TEST_CHECK(in->channels == mode_channels(mode), "%s: %d channels for PIL mode %s", name, in->channels, mode);
        snprintf(rel, sizeof rel, "configs/%s.json", config);
        snprintf(cfgpath, sizeof cfgpath, "%s", dpath(rel));
        kd_clip_preprocess_config cfg;
        if (!CHK(kd_clip_preprocess_config_load(cfgpath, &cfg, &e) == KD_OK, "%s: %s", name, e.msg)) goto next;
        int ow = 0, oh = 0;
        kd_status s = kd_clip_preprocess_output_size(&cfg, in->width, in->height, &ow, &oh, &e);
        if (error) {
            float dummy[3 * 64 * 64];
            kd_status s2 = s == KD_OK ? kd_clip_preprocess(in, &cfg, dummy, &e) : s;
            TEST_CHECK(s2 != KD_OK, "%s: the reference fails (%s), we did not", name, error->valuestring);
            n_err++;
            goto next;
        }
        int rh = 0, rw = 0;
        float *ref = ref_pixels(f, name, &rh, &rw);
        if (!CHK(ref != NULL, "%s: reference tensors missing", name)) goto next;
        if (CHK(s == KD_OK && ow == rw && oh == rh, "%s: output %dx%d (%s), reference %dx%d", name, ow, oh,
                       s == KD_OK ? "ok" : e.msg, rw, rh)) {
            float *got = malloc((size_t)3 * ow * oh * sizeof(float));
            s = kd_clip_preprocess(in, &cfg, got, &e);
            if (CHK(s == KD_OK, "%s: %s", name, e.msg)) {
                compare(name, got, ref, oh, ow, &cfg);
                n_ok++;
            }
            free(got);
        }
        free(ref);
        if (emodel) {
            size_t ne = 0;
            const float *eref = ref_tensor(f, name, "image_embeds", &ne);
            if (CHK(eref && (int)ne == kd_clip_vision_embed_dim(model), "%s: embeds reference", name)) {
                float *emb = malloc(ne * sizeof(float));
                s = kd_clip_vision_embed_image(ctx, model, cfgpath, in, emb);
                if (CHK(s == KD_OK, "%s: embed: %s", name, kd_ctx_last_error(ctx))) {
                    char l[200];
                    snprintf(l, sizeof l, "%s image_embeds", name);
                    kt_allclose(l, emb, eref, ne, 1e-5 * kt_max_abs(eref, ne), 1e-4);
                }
                free(emb);
                n_embed++;
            }
        }
    next:
        kd_image_free(&img);
        kd_image_free(&rgb);
    }
    printf("clip preprocess: %d cases compared, %d reference errors reproduced, %d embeddings; "
           "%zu/%zu values bit-identical, max |diff| %.4g 8-bit levels\n",
           n_ok, n_err, n_embed, n_exact, n_values, worst_units);
    TEST_CHECK(n_embed >= 1 && n_err >= 1 && n_ok >= 20, "case counts");

    /* the embedding API's own errors */
    if (model) {
        kd_image img = {0};
        float emb[64];
        if (kd_image_load(dpath("images/rgb_300x200.png"), NULL, &img, &e) == KD_OK) {
            /* NULL config = CLIPImageProcessor defaults (224 px): the 56-px model cannot take it */
            TEST_CHECK(kd_clip_vision_embed_image(ctx, model, NULL, &img, emb) == KD_ERR_SHAPE &&
                           strstr(kd_ctx_last_error(ctx), "224x224") && strstr(kd_ctx_last_error(ctx), "56x56"),
                       "default 224 config vs 56-px model: %s", kd_ctx_last_error(ctx));
            TEST_CHECK(kd_clip_vision_embed_image(ctx, model, dpath("configs/missing.json"), &img, emb) != KD_OK &&
                           strstr(kd_ctx_last_error(ctx), "missing.json"),
                       "missing config: %s", kd_ctx_last_error(ctx));
            TEST_CHECK(kd_clip_vision_embed_image(ctx, model, NULL, NULL, emb) == KD_ERR_INVALID_ARG, "NULL image");
            TEST_CHECK(kd_clip_vision_embed_image(NULL, model, NULL, &img, emb) == KD_ERR_INVALID_ARG, "NULL ctx");
        }
        kd_image_free(&img);
    }
    kd_clip_vision_free(model);
    kd_st_close(f);
    kd_config_free(&cases);
}

static kd_status parse(const char *json, kd_clip_preprocess_config *cfg, kd_err *e) {
    return kd_clip_preprocess_config_parse(json, strlen(json), "test.json", cfg, e);
}

static void test_config(void) {
    kd_err e;
    kd_clip_preprocess_config d = kd_clip_preprocess_config_default(), c;
    /* the published 2.2 prior config is exactly the class defaults */
    TEST_CHECK(kd_clip_preprocess_config_load(dpath("configs/kandinsky22.json"), &c, &e) == KD_OK, "%s", e.msg);
    TEST_CHECK(!memcmp(&c, &d, sizeof c), "kandinsky22.json == CLIPImageProcessor defaults");
    TEST_CHECK(parse("{}", &c, &e) == KD_OK && !memcmp(&c, &d, sizeof c), "{} gives the defaults");
    TEST_CHECK(parse("{\"size\": null, \"crop_size\": null, \"resample\": null}", &c, &e) == KD_OK &&
                   !memcmp(&c, &d, sizeof c),
               "nulls keep the defaults");
    TEST_CHECK(parse("{\"size\": 300, \"default_to_square\": true}", &c, &e) == KD_OK &&
                   c.size_kind == KD_CLIP_SIZE_HEIGHT_WIDTH && c.size_height == 300 && c.size_width == 300,
               "int size with default_to_square");
    TEST_CHECK(parse("{\"use_square_size\": true, \"size\": 100}", &c, &e) == KD_OK &&
                   c.size_kind == KD_CLIP_SIZE_HEIGHT_WIDTH && c.size_height == 224 && c.size_width == 224,
               "use_square_size");
    TEST_CHECK(parse("{\"size\": {\"longest_edge\": 5}, \"do_resize\": false}", &c, &e) == KD_OK,
               "an unusable size is fine without resize");
    struct {
        const char *json;
        kd_status want;
        const char *msg;
    } bad[] = {
        {"{\"size\": {\"shortest\": 224}}", KD_ERR_FORMAT, "unknown key 'shortest'"},
        {"{\"size\": {\"height\": 224}}", KD_ERR_FORMAT, "must have the keys"},
        {"{\"size\": {\"longest_edge\": 224}}", KD_ERR_UNSUPPORTED, "longest_edge"},
        {"{\"size\": 0}", KD_ERR_FORMAT, "out of range"},
        {"{\"size\": 224.5}", KD_ERR_FORMAT, "expected an integer"},
        {"{\"size\": [224]}", KD_ERR_FORMAT, "[height, width]"},
        {"{\"crop_size\": {\"shortest_edge\": 224}}", KD_ERR_FORMAT, "'height' and 'width'"},
        {"{\"resample\": 6}", KD_ERR_FORMAT, "PIL filter"},
        {"{\"image_mean\": [0.5, 0.5]}", KD_ERR_FORMAT, "expected 3"},
        {"{\"image_std\": [0.5, 0, 0.5]}", KD_ERR_FORMAT, "image_std[1]"},
        {"{\"do_resize\": 1}", KD_ERR_FORMAT, "do_resize"},
        {"{\"size\": 1", KD_ERR_FORMAT, "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kd_status s = parse(bad[i].json, &c, &e);
        TEST_CHECK(s == bad[i].want && strstr(e.msg, bad[i].msg) && strstr(e.msg, "test.json"),
                   "%s -> %s (%s), want %s containing \"%s\"", bad[i].json, kd_status_str(s),
                   s == KD_OK ? "" : e.msg, kd_status_str(bad[i].want), bad[i].msg);
    }
    TEST_CHECK(kd_clip_preprocess_config_load(dpath("configs/none.json"), &c, &e) != KD_OK, "missing file");
}

static void test_sizes_and_errors(void) {
    kd_err e;
    kd_clip_preprocess_config c = kd_clip_preprocess_config_default();
    int w, h;
    /* int(224 * long / short): 641x480 → 299x224 (299.13), 7x5 → 313x224 (313.6), 17x1000 → 224x13176 */
    c.do_center_crop = 0;
    TEST_CHECK(kd_clip_preprocess_output_size(&c, 641, 480, &w, &h, &e) == KD_OK && w == 299 && h == 224, "641x480: %dx%d", w, h);
    TEST_CHECK(kd_clip_preprocess_output_size(&c, 7, 5, &w, &h, &e) == KD_OK && w == 313 && h == 224, "7x5: %dx%d", w, h);
    TEST_CHECK(kd_clip_preprocess_output_size(&c, 5, 7, &w, &h, &e) == KD_OK && w == 224 && h == 313, "5x7: %dx%d", w, h);
    TEST_CHECK(kd_clip_preprocess_output_size(&c, 17, 1000, &w, &h, &e) == KD_OK && w == 224 && h == 13176,
               "17x1000: %dx%d", w, h);
    TEST_CHECK(kd_clip_preprocess_output_size(&c, 224, 224, &w, &h, &e) == KD_OK && w == 224 && h == 224, "224");
    /* a resized image beyond 64 Mpx is refused, not attempted */
    TEST_CHECK(kd_clip_preprocess_output_size(&c, 1, 8192, &w, &h, &e) == KD_ERR_UNSUPPORTED, "1x8192: %s", e.msg);
    c.do_center_crop = 1;
    TEST_CHECK(kd_clip_preprocess_output_size(&c, 641, 480, &w, &h, &e) == KD_OK && w == 224 && h == 224, "crop");
    TEST_CHECK(kd_clip_preprocess_output_size(&c, 0, 5, &w, &h, &e) == KD_ERR_INVALID_ARG, "0 width");

    uint8_t px[4 * 6] = {0};
    kd_image img = {.width = 3, .height = 2, .channels = 4, .data = px};
    float out[3 * 224 * 224];
    c.do_convert_rgb = 0;
    TEST_CHECK(kd_clip_preprocess(&img, &c, out, &e) == KD_ERR_UNSUPPORTED && strstr(e.msg, "do_convert_rgb"),
               "RGBA without do_convert_rgb: %s", e.msg);
    c.do_convert_rgb = 1;
    img.channels = 2;
    TEST_CHECK(kd_clip_preprocess(&img, &c, out, &e) == KD_ERR_INVALID_ARG, "2 channels: %s", e.msg);
    img.channels = 4;
    TEST_CHECK(kd_clip_preprocess(&img, &c, out, &e) == KD_OK, "tiny RGBA: %s", e.msg);
    TEST_CHECK(kd_clip_preprocess(NULL, &c, out, &e) == KD_ERR_INVALID_ARG, "NULL image");
    TEST_CHECK(kd_clip_preprocess(&img, NULL, out, &e) == KD_ERR_INVALID_ARG, "NULL config");
    c.resample = (kd_resample)9;
    TEST_CHECK(kd_clip_preprocess(&img, &c, out, &e) == KD_ERR_INVALID_ARG, "bad filter: %s", e.msg);
}

int main(void) {
    kd_ctx *ctx = NULL;
    kd_ctx_params p = kd_ctx_params_default();
    p.n_threads = 2;
    if (kd_ctx_create(&p, &ctx) != KD_OK) {
        TEST_CHECK(0, "context");
        return kt_finish("test_clip_preprocess");
    }
    test_config();
    test_sizes_and_errors();
    run_cases(ctx);
    kd_ctx_free(ctx);
    return kt_finish("test_clip_preprocess");
}
