/* Image editing end to end against diffusers — Kandinsky 2.1 (tools/reference/gen_pipeline21.py:
 * KandinskyImg2ImgPipeline with its own 1e-4..0.02 noising, KandinskyInpaintPipeline without the
 * per-step blend; Russian/Chinese/English prompts; guidance kept at 1–2 because the tiny random 2.1
 * decoders are chaotic under CFG 4: diffusers itself differs by up to 67/255 between 1 and 2 torch
 * threads there) and Kandinsky 2.2 (tools/reference/gen_pipeline_variants.py):
 * img2img (strengths 0.3 / 0.6 / 1.0, two images, non-square with diffusers' width/height swap
 * undone in the reference), inpainting (gray and RGB masks of another size than the image), ControlNet
 * depth (hints of the exact size), image mixing (text + image items, negative and zero weights,
 * a prior negative prompt), prior emb2emb (strength 0.5 / 0.8, two images, negative prompt). Prior and decoder share one generator per case, as the diffusers
 * combined pipelines do. Embeddings: rtol 1e-4 of the range; images: max pixel difference <= 2/255.
 * Plus the bad inputs of the issue: strength outside [0, 1], a mask without an image, the wrong
 * decoder for a mask or a hint, an empty mix, a mix item with both text and image. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "kandinsky.h"
#include "testutil.h"

static int load_input(kd_ctx *ctx, const char *name, kd_image *img) {
    char p[700];
    snprintf(p, sizeof p, "%s/inputs/%s", kt_data_path("pipeline22"), name); /* shared by 2.1 and 2.2 */
    int ok = kd_image_read(ctx, p, img) == KD_OK;
    TEST_CHECK(ok, "read the committed input %s: %s", p, kd_ctx_last_error(ctx));
    return ok;
}

static const char *str(const cJSON *c, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(c, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}
static double num(const cJSON *c, const char *k) { return cJSON_GetObjectItem(c, k)->valuedouble; }

static void run_case(kd_ctx *ctx, kd_pipeline *p, const kd_st_file *f, int i, const cJSON *c) {
    kd_gen_params g = kd_gen_params_default();
    kd_image init = {0}, mask = {0}, hint = {0}, mix_img[8] = {{0}};
    kd_mix_item mix[8];
    const char *kind = str(c, "kind");
    g.prompt = str(c, "prompt");
    g.negative_prompt = str(c, "negative");
    g.width = (int)num(c, "w"), g.height = (int)num(c, "h");
    g.steps = (int)num(c, "steps"), g.prior_steps = (int)num(c, "psteps");
    g.guidance_scale = (float)num(c, "g"), g.prior_guidance_scale = (float)num(c, "pg");
    g.num_images = (int)num(c, "n");
    g.seed = (uint64_t)num(c, "seed");
    int ok = 1;
    if (!strcmp(kind, "img2img") || !strcmp(kind, "inpaint") || !strcmp(kind, "controlnet_img2img")) {
        ok &= load_input(ctx, "init_97x61.png", &init);
        g.init_image = &init;
        if (cJSON_GetObjectItem(c, "strength")) g.strength = (float)num(c, "strength");
    }
    if (!strcmp(kind, "inpaint")) {
        ok &= load_input(ctx, str(c, "mask"), &mask);
        g.mask_image = &mask;
    }
    if (!strncmp(kind, "controlnet", 10)) {
        ok &= load_input(ctx, str(c, "hint"), &hint);
        g.hint_image = &hint;
    }
    if (!strcmp(kind, "emb2emb")) {
        ok &= load_input(ctx, str(c, "prior_image"), &init);
        g.prior_image = &init;
        g.prior_strength = (float)num(c, "prior_strength");
    }
    if (!strcmp(kind, "mix")) {
        const cJSON *items = cJSON_GetObjectItem(c, "mix");
        g.n_mix = cJSON_GetArraySize(items);
        for (int k = 0; k < g.n_mix && k < 8; k++) {
            const cJSON *it = cJSON_GetArrayItem(items, k);
            const char *type = cJSON_GetArrayItem(it, 0)->valuestring, *val = cJSON_GetArrayItem(it, 1)->valuestring;
            mix[k] = (kd_mix_item){.weight = (float)cJSON_GetArrayItem(it, 2)->valuedouble};
            if (!strcmp(type, "text")) {
                mix[k].text = val;
            } else {
                ok &= load_input(ctx, val, &mix_img[k]);
                mix[k].image = &mix_img[k];
            }
        }
        g.mix = mix;
    }
    TEST_CHECK(ok, "case %d: inputs load: %s", i, kd_ctx_last_error(ctx));
    size_t ne = 0, nn = 0, ni = 0;
    const float *eref = kt_case_tensor(f, i, "image_embeds", &ne), *nref = kt_case_tensor(f, i, "negative_image_embeds", &nn);
    const float *iref = kt_case_tensor(f, i, "image", &ni);
    char label[96];
    TEST_CHECK(!ok || (eref && nref && iref),
               "case %d (%s): reference tensors case%d.image_embeds / negative_image_embeds / image in the fixture", i,
               kind, i);
    if (ok && eref && nref && iref) {
        float *emb = malloc(ne * sizeof(float)), *nemb = malloc(nn * sizeof(float));
        kd_status s = kd_generate_embeds(ctx, p, &g, emb, nemb);
        TEST_CHECK(s == KD_OK, "case %d (%s) prior: %s", i, kind, kd_ctx_last_error(ctx));
        if (s == KD_OK) {
            snprintf(label, sizeof label, "case %d %s image_embeds", i, kind);
            kt_allclose(label, emb, eref, ne, 1e-4 * kt_max_abs(eref, ne), 1e-4);
            snprintf(label, sizeof label, "case %d %s negative_image_embeds", i, kind);
            kt_allclose(label, nemb, nref, nn, 1e-4 * kt_max_abs(nref, nn), 1e-4);
        }
        kd_image out[4];
        s = kd_generate(ctx, p, &g, out);
        TEST_CHECK(s == KD_OK, "case %d (%s) generate: %s", i, kind, kd_ctx_last_error(ctx));
        if (s == KD_OK) {
            size_t per = (size_t)out[0].width * out[0].height * 3;
            int maxd = per * (size_t)g.num_images == ni ? 0 : 999;
            for (int k = 0; k < g.num_images && maxd < 999; k++)
                for (size_t j = 0; j < per; j++) {
                    int d = abs((int)out[k].data[j] - (int)iref[k * per + j]);
                    if (d > maxd) maxd = d;
                }
            TEST_CHECK(maxd <= 2, "case %d (%s) %dx%d: max pixel difference %d/255", i, kind, out[0].width,
                       out[0].height, maxd);
            printf("  ok case %d %-10s %dx%d x%d: max pixel difference %d/255\n", i, kind, out[0].width, out[0].height,
                   g.num_images, maxd);
            for (int k = 0; k < g.num_images; k++) kd_image_free(&out[k]);
        }
        free(emb);
        free(nemb);
    }
    kd_image_free(&init);
    kd_image_free(&mask);
    kd_image_free(&hint);
    for (int k = 0; k < 8; k++) kd_image_free(&mix_img[k]);
}

/* Soft mask: where the mask is black the output is the (resized) original, where it is white the
 * generated pixel, in between a weighted mix; the default output stays diffusers'. */
static void test_soft_mask(kd_ctx *ctx, kd_pipeline *inpaint) {
    kd_image init = {0}, mask = {0}, plain[1], soft[1];
    if (!load_input(ctx, "init_97x61.png", &init) || !load_input(ctx, "mask_50x40.png", &mask)) {
        kd_image_free(&init); /* load_input failed a check: committed inputs are not optional */
        return;
    }
    kd_gen_params g = kd_gen_params_default();
    g.prompt = "a ball";
    g.width = g.height = 32;
    g.steps = 3, g.prior_steps = 2;
    g.init_image = &init;
    g.mask_image = &mask;
    int ok = kd_generate(ctx, inpaint, &g, plain) == KD_OK;
    g.soft_mask = 1;
    ok = ok && kd_generate(ctx, inpaint, &g, soft) == KD_OK;
    TEST_CHECK(ok, "soft mask runs: %s", kd_ctx_last_error(ctx));
    if (!ok) return;
    /* mask_50x40: white rectangle [12..35] × [8..27] scaled to 32×32 → x 8..22, y 6..22 */
    int inside = (16 * 32 + 16) * 3, corner = (1 * 32 + 1) * 3, same_inside = 1;
    for (int c = 0; c < 3; c++) same_inside &= soft[0].data[inside + c] == plain[0].data[inside + c];
    TEST_CHECK(same_inside, "soft mask keeps the generated pixel where the mask is white");
    int differs = 0;
    for (int c = 0; c < 3; c++) differs |= soft[0].data[corner + c] != plain[0].data[corner + c];
    TEST_CHECK(differs, "soft mask puts the original back where the mask is black");
    kd_image_free(&plain[0]);
    kd_image_free(&soft[0]);
    kd_image_free(&init);
    kd_image_free(&mask);
}

static void test_bad_inputs(kd_ctx *ctx, kd_pipeline *base, kd_pipeline *inpaint) {
    kd_image init = {0}, out[2];
    if (!load_input(ctx, "init_97x61.png", &init)) return; /* load_input failed a check */
    kd_gen_params g = kd_gen_params_default();
    g.prompt = "x";
    g.width = g.height = 32;
    g.steps = 4, g.prior_steps = 2;
    g.init_image = &init;
    g.strength = 1.5f;
    TEST_CHECK(kd_generate(ctx, base, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "strength"),
               "strength 1.5: %s", kd_ctx_last_error(ctx));
    g.strength = 0.1f; /* int(4 × 0.1) = 0 steps left */
    TEST_CHECK(kd_generate(ctx, base, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "strength"),
               "strength too low for the steps: %s", kd_ctx_last_error(ctx));
    g.strength = 0.5f;
    g.mask_image = &init;
    TEST_CHECK(kd_generate(ctx, base, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "inpainting"),
               "mask with the text2img decoder: %s", kd_ctx_last_error(ctx));
    g.init_image = NULL;
    TEST_CHECK(kd_generate(ctx, inpaint, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "mask"),
               "mask without an image: %s", kd_ctx_last_error(ctx));
    g.init_image = &init;
    g.width = 30; /* not a multiple of f² = 4 */
    TEST_CHECK(kd_generate(ctx, inpaint, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "multiples"),
               "inpaint size 30: %s", kd_ctx_last_error(ctx));
    g = kd_gen_params_default();
    g.prompt = "x";
    g.width = g.height = 32;
    g.steps = 2, g.prior_steps = 2;
    g.hint_image = &init;
    TEST_CHECK(kd_generate(ctx, base, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "ControlNet"),
               "hint with the text2img decoder: %s", kd_ctx_last_error(ctx));
    g.hint_image = NULL;
    kd_mix_item both = {.text = "a", .image = &init, .weight = 1};
    g.mix = &both;
    g.n_mix = 1;
    TEST_CHECK(kd_generate(ctx, base, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "exactly one"),
               "mix item with text and image: %s", kd_ctx_last_error(ctx));
    g.mix = NULL;
    TEST_CHECK(kd_generate(ctx, base, &g, out) == KD_ERR_INVALID_ARG, "mix count without a list: %s",
               kd_ctx_last_error(ctx));
    kd_image_free(&init);
}

/* Kind "ddpm": text-to-image with the decoder's scheduler taken from ddpm_scheduler/ (set on a
 * low-memory pipeline, so the stage loads it from there when it runs), on decoder_ddpm/ (see
 * gen_pipeline21.py: a random U-Net's variance channels make learned_range diverge); bad subfolders
 * fail politely. */
static void run_ddpm_case(kd_ctx *ctx, const char *prior, const char *decoder, kd_st_file *f, int i, const cJSON *c) {
    kd_pipeline *p = NULL;
    TEST_CHECK(kd_pipeline_load(ctx, prior, decoder, 1, &p) == KD_OK, "load %s: %s", decoder, kd_ctx_last_error(ctx));
    if (!p) return;
    TEST_CHECK(kd_pipeline_set_decoder_scheduler(ctx, p, "no_such_scheduler") != KD_OK &&
                   strstr(kd_ctx_last_error(ctx), "no_such_scheduler/scheduler_config.json"),
               "missing scheduler subfolder: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(kd_pipeline_set_decoder_scheduler(ctx, p, "../scheduler") == KD_ERR_INVALID_ARG,
               "a path is not a subfolder name: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(kd_pipeline_set_decoder_scheduler(ctx, p, "ddpm_scheduler") == KD_OK, "ddpm_scheduler: %s",
               kd_ctx_last_error(ctx));
    run_case(ctx, p, f, i, c);
    kd_pipeline_free(p);
}

/* One version's cases; decoders[3] = text2img/img2img, inpainting, ControlNet folder (NULL: none). */
static void run_version(kd_ctx *ctx, const char *dir, const char *const decoders[3], int extras) {
    char prior[600], dec[3][600], cases[600], json[600];
    snprintf(prior, sizeof prior, "%s/prior", kt_data_path(dir));
    snprintf(cases, sizeof cases, "%s/variants.safetensors", kt_data_path(dir));
    snprintf(json, sizeof json, "%s/variants.json", kt_data_path(dir));
    printf("%s\n", dir);
    kd_pipeline *p[3] = {0};
    for (int k = 0; k < 3; k++) {
        if (!decoders[k]) continue;
        snprintf(dec[k], sizeof dec[k], "%s/%s", kt_data_path(dir), decoders[k]);
        TEST_CHECK(kd_pipeline_load(ctx, prior, dec[k], 0, &p[k]) == KD_OK, "load %s: %s", dec[k], kd_ctx_last_error(ctx));
    }
    kd_st_file *f = NULL;
    kd_err e;
    TEST_CHECK(kd_st_open(cases, &f, &e) == KD_OK, "open %s: %s", cases, e.msg);
    char *text = kt_read_text(json);
    cJSON *list = text ? cJSON_Parse(text) : NULL;
    TEST_CHECK(cJSON_IsArray(list), "read %s", json);
    if (p[0] && p[1] && f && list) {
        for (int i = 0; i < cJSON_GetArraySize(list); i++) {
            const cJSON *c = cJSON_GetArrayItem(list, i);
            const char *kind = str(c, "kind");
            kd_pipeline *pp = !strcmp(kind, "inpaint") ? p[1] : !strncmp(kind, "controlnet", 10) ? p[2] : p[0];
            TEST_CHECK(pp != NULL, "case %d: a decoder for %s", i, kind);
            if (!strcmp(kind, "ddpm")) {
                char ddpm_dir[600];
                snprintf(ddpm_dir, sizeof ddpm_dir, "%s/decoder_ddpm", kt_data_path(dir));
                run_ddpm_case(ctx, prior, ddpm_dir, f, i, c);
            } else if (pp) {
                run_case(ctx, pp, f, i, c);
            }
        }
        if (extras) {
            test_bad_inputs(ctx, p[0], p[1]);
            test_soft_mask(ctx, p[1]);
        }
    }
    cJSON_Delete(list);
    free(text);
    kd_st_close(f);
    for (int k = 0; k < 3; k++) kd_pipeline_free(p[k]);
}

int main(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    const char *const v22[3] = {"decoder", "decoder_inpaint", "decoder_controlnet"};
    const char *const v21[3] = {"decoder", "decoder_inpaint", NULL};
    run_version(ctx, "pipeline22", v22, 1);
    run_version(ctx, "pipeline21", v21, 0);
    kd_ctx_free(ctx);
    return kt_finish("test_pipeline_variants");
}
