/* Samplers end to end against diffusers (tools/reference/gen_pipeline_samplers.py): each sampler
 * swapped into KandinskyV22Pipeline, KandinskyV22Img2ImgPipeline, KandinskyV22InpaintPipeline and
 * the 2.1 KandinskyPipeline with Class.from_config(pipe.scheduler.config, **overrides), the U-Net
 * input scaled by scale_model_input (diffusers' Kandinsky pipelines skip it; the reference adds it),
 * on the tiny models; prior (UnCLIP) and decoder share one generator per case. Only
 * well-conditioned cases are in the fixture (conditioning.py). Embeddings: rtol 1e-4 of the range;
 * images: max pixel difference <= 2/255. Also: an unknown sampler name is refused with the list. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "kandinsky.h"
#include "testutil.h"

static const char *str(const cJSON *c, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(c, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *c, const char *k) {
    const cJSON *v = cJSON_GetObjectItem(c, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static int load_input(kd_ctx *ctx, const char *name, kd_image *img) {
    char p[700];
    snprintf(p, sizeof p, "%s/inputs/%s", kt_data_path("pipeline22"), name);
    int ok = kd_image_read(ctx, p, img) == KD_OK;
    TEST_CHECK(ok, "read the committed input %s: %s", p, kd_ctx_last_error(ctx));
    return ok;
}

static int max_pixel_diff(const kd_image *out, int n, const float *ref, size_t nref) {
    size_t per = (size_t)out[0].width * out[0].height * 3;
    if (per * (size_t)n != nref) return 999;
    int maxd = 0;
    for (int k = 0; k < n; k++)
        for (size_t j = 0; j < per; j++) {
            int d = abs((int)out[k].data[j] - (int)ref[k * per + j]);
            if (d > maxd) maxd = d;
        }
    return maxd;
}

static void run_case(kd_ctx *ctx, kd_pipeline *p, const kd_st_file *f, int i, const cJSON *c) {
    kd_gen_params g = kd_gen_params_default();
    kd_image init = {0}, mask = {0};
    const char *kind = str(c, "kind"), *sampler = str(c, "sampler");
    g.prompt = str(c, "prompt");
    g.negative_prompt = str(c, "negative");
    g.width = (int)num(c, "w"), g.height = (int)num(c, "h");
    g.steps = (int)num(c, "steps"), g.prior_steps = (int)num(c, "psteps");
    g.guidance_scale = (float)num(c, "g"), g.prior_guidance_scale = (float)num(c, "pg");
    g.num_images = (int)num(c, "n");
    g.seed = (uint64_t)num(c, "seed");
    g.sampler = sampler;
    int ok = 1;
    if (!strcmp(kind, "img2img") || !strcmp(kind, "inpaint")) {
        ok &= load_input(ctx, "init_97x61.png", &init);
        g.init_image = &init;
        if (cJSON_GetObjectItem(c, "strength")) g.strength = (float)num(c, "strength");
    }
    if (!strcmp(kind, "inpaint")) {
        ok &= load_input(ctx, str(c, "mask"), &mask);
        g.mask_image = &mask;
    }
    size_t ne = 0, nn = 0, ni = 0;
    const float *eref = kt_case_tensor(f, i, "image_embeds", &ne), *nref = kt_case_tensor(f, i, "negative_image_embeds", &nn);
    const float *iref = kt_case_tensor(f, i, "image", &ni);
    TEST_CHECK(eref && nref && iref, "case %d: reference tensors in the fixture", i);
    if (ok && eref && nref && iref) {
        char label[128];
        float *emb = malloc(ne * sizeof(float)), *nemb = malloc(nn * sizeof(float));
        kd_status s = kd_generate_embeds(ctx, p, &g, emb, nemb);
        TEST_CHECK(s == KD_OK, "case %d (%s %s) prior: %s", i, kind, sampler, kd_ctx_last_error(ctx));
        if (s == KD_OK) {
            snprintf(label, sizeof label, "case %d %s %s image_embeds", i, kind, sampler);
            kt_allclose(label, emb, eref, ne, 1e-4 * kt_max_abs(eref, ne), 1e-4);
            snprintf(label, sizeof label, "case %d %s %s negative_image_embeds", i, kind, sampler);
            kt_allclose(label, nemb, nref, nn, 1e-4 * kt_max_abs(nref, nn), 1e-4);
        }
        kd_image out[4];
        s = kd_generate(ctx, p, &g, out);
        TEST_CHECK(s == KD_OK, "case %d (%s %s) generate: %s", i, kind, sampler, kd_ctx_last_error(ctx));
        if (s == KD_OK) {
            int maxd = max_pixel_diff(out, g.num_images, iref, ni);
            TEST_CHECK(maxd <= 2, "case %d (%s %s) %dx%d: max pixel difference %d/255", i, kind, sampler,
                       out[0].width, out[0].height, maxd);
            printf("  case %d %-8s %-15s %dx%d x%d: max pixel difference %d/255\n", i, kind, sampler, out[0].width,
                   out[0].height, g.num_images, maxd);
            for (int k = 0; k < g.num_images; k++) kd_image_free(&out[k]);
        }
        free(emb);
        free(nemb);
    }
    kd_image_free(&init);
    kd_image_free(&mask);
}

/* A pipeline per (version, decoder folder), loaded on first use. */
typedef struct pipes {
    kd_pipeline *p[3]; /* 2.2 decoder, 2.2 decoder_inpaint, 2.1 decoder */
} pipes;

static kd_pipeline *pipe_for(kd_ctx *ctx, pipes *ps, int v, const char *kind) {
    int k = v == 21 ? 2 : !strcmp(kind, "inpaint") ? 1 : 0;
    if (!ps->p[k]) {
        static const char *const dirs[3][2] = {
            {"pipeline22", "decoder"}, {"pipeline22", "decoder_inpaint"}, {"pipeline21", "decoder"}};
        char prior[600], dec[600];
        snprintf(prior, sizeof prior, "%s/prior", kt_data_path(dirs[k][0]));
        snprintf(dec, sizeof dec, "%s/%s", kt_data_path(dirs[k][0]), dirs[k][1]);
        TEST_CHECK(kd_pipeline_load(ctx, prior, dec, 0, &ps->p[k]) == KD_OK, "load %s: %s", dec,
                   kd_ctx_last_error(ctx));
    }
    return ps->p[k];
}

static void test_bad_names(kd_ctx *ctx, kd_pipeline *p) {
    kd_gen_params g = kd_gen_params_default();
    g.prompt = "x";
    g.width = g.height = 32;
    g.steps = 2, g.prior_steps = 2;
    kd_image out[1];
    g.sampler = "dpm++9m";
    TEST_CHECK(kd_generate(ctx, p, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "dpm++9m") &&
                   strstr(kd_ctx_last_error(ctx), "euler-a"),
               "unknown sampler: %s", kd_ctx_last_error(ctx));
    g.sampler = NULL;
    g.prior_sampler = "";
    TEST_CHECK(kd_generate(ctx, p, &g, out) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "prior sampler"),
               "empty prior sampler name: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(kd_sampler_exists("dpm++2m") && kd_sampler_exists("ddpm") && !kd_sampler_exists("DPM++2M"),
               "kd_sampler_exists");
}

int main(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    char cases[600], json[600];
    snprintf(cases, sizeof cases, "%s/cases.safetensors", kt_data_path("samplers/pipeline"));
    snprintf(json, sizeof json, "%s/cases.json", kt_data_path("samplers/pipeline"));
    kd_st_file *f = NULL;
    kd_err e;
    TEST_CHECK(kd_st_open(cases, &f, &e) == KD_OK, "open %s: %s", cases, e.msg);
    char *text = kt_read_text(json);
    cJSON *list = text ? cJSON_Parse(text) : NULL;
    TEST_CHECK(cJSON_IsArray(list), "read %s", json);
    pipes ps = {{0}};
    for (int i = 0; f && list && i < cJSON_GetArraySize(list); i++) {
        const cJSON *c = cJSON_GetArrayItem(list, i);
        kd_pipeline *p = pipe_for(ctx, &ps, (int)num(c, "v"), str(c, "kind"));
        if (p) run_case(ctx, p, f, i, c);
    }
    kd_pipeline *base = pipe_for(ctx, &ps, 22, "text2img");
    if (base) test_bad_names(ctx, base);
    cJSON_Delete(list);
    free(text);
    kd_st_close(f);
    for (int k = 0; k < 3; k++) kd_pipeline_free(ps.p[k]);
    kd_ctx_free(ctx);
    return kt_finish("test_pipeline_samplers");
}
