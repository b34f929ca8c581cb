/* MoVQ parity with diffusers VQModel (tools/reference/gen_movq.py): encode and decode on two tiny
 * configs (published structure scaled down with F16 weights; 2 levels / 1 layer / 16 groups /
 * 3 latent channels / no mid attention with F32 weights), 64×64 batch 1 and 48×80 batch 2.
 * Tolerance: |got - ref| <= 1e-4 · max|ref| + 1e-4 · |ref| — rtol 1e-4 of the output range, as
 * the issue states; the deepest path is ~30 convolutions and norms of f32 arithmetic in a
 * different order than PyTorch's. Also the error paths of loading and calling. */
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "kandinsky.h"
#include "testutil.h"

static float *copy_tensor(const kd_st_file *f, const char *name, int64_t *shape) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t || t->t.dtype != KD_F32) return NULL;
    size_t n = (size_t)kd_tensor_numel(&t->t);
    float *p = malloc(n * sizeof(float) + 1);
    memcpy(p, t->t.data, n * sizeof(float));
    for (int i = 0; i < 4; i++) shape[i] = t->t.shape[i];
    return p;
}

static void run_case(kd_ctx *ctx, kd_movq *m, const kd_st_file *cases, const char *cfg, const char *tag) {
    char name[128], label[160];
    int64_t ish[4], lsh[4], esh[4], dsh[4];
    snprintf(name, sizeof name, "%s.image", tag);
    float *img = copy_tensor(cases, name, ish);
    snprintf(name, sizeof name, "%s.encoded", tag);
    float *enc_ref = copy_tensor(cases, name, esh);
    snprintf(name, sizeof name, "%s.latents", tag);
    float *lat = copy_tensor(cases, name, lsh);
    snprintf(name, sizeof name, "%s.decoded", tag);
    float *dec_ref = copy_tensor(cases, name, dsh);
    TEST_CHECK(img && enc_ref && lat && dec_ref, "%s: case tensors present", tag);
    if (img && enc_ref && lat && dec_ref) {
        int lh, lw;
        kd_movq_latent_size(m, (int)ish[2], (int)ish[3], &lh, &lw);
        TEST_CHECK(lh == esh[2] && lw == esh[3] && kd_movq_latent_channels(m) == esh[1],
                   "%s/%s: latent size %dx%d, reference %lldx%lld", cfg, tag, lh, lw, (long long)esh[2], (long long)esh[3]);
        size_t ne = (size_t)(esh[0] * esh[1] * esh[2] * esh[3]), nd = (size_t)(dsh[0] * dsh[1] * dsh[2] * dsh[3]);
        float *enc = malloc(ne * sizeof(float)), *dec = malloc(nd * sizeof(float));
        kd_status s = kd_movq_encode(ctx, m, img, (int)ish[0], (int)ish[2], (int)ish[3], enc);
        TEST_CHECK(s == KD_OK, "%s/%s encode: %s", cfg, tag, kd_ctx_last_error(ctx));
        snprintf(label, sizeof label, "%s encode %s", cfg, tag);
        if (s == KD_OK) kt_allclose(label, enc, enc_ref, ne, 1e-4 * kt_max_abs(enc_ref, ne), 1e-4);
        TEST_CHECK(dsh[2] == lsh[2] * kd_movq_downscale(m), "%s: decoded size", tag);
        s = kd_movq_decode(ctx, m, lat, (int)lsh[0], (int)lsh[2], (int)lsh[3], dec);
        TEST_CHECK(s == KD_OK, "%s/%s decode: %s", cfg, tag, kd_ctx_last_error(ctx));
        snprintf(label, sizeof label, "%s decode %s", cfg, tag);
        if (s == KD_OK) kt_allclose(label, dec, dec_ref, nd, 1e-4 * kt_max_abs(dec_ref, nd), 1e-4);
        free(enc);
        free(dec);
    }
    free(img);
    free(enc_ref);
    free(lat);
    free(dec_ref);
}

static void run_config(kd_ctx *ctx, const char *cfg, int downscale, int latent_ch) {
    char path[512];
    snprintf(path, sizeof path, "%s", kt_data_path("movq"));
    char model[600], cases_path[600];
    snprintf(model, sizeof model, "%s/%s", path, cfg);
    snprintf(cases_path, sizeof cases_path, "%s/%s_cases.safetensors", path, cfg);
    kd_movq *m = NULL;
    kd_status s = kd_movq_load(ctx, model, &m);
    TEST_CHECK(s == KD_OK, "load %s: %s", model, kd_ctx_last_error(ctx));
    if (s != KD_OK) return;
    TEST_CHECK(kd_movq_downscale(m) == downscale, "%s downscale %d", cfg, kd_movq_downscale(m));
    TEST_CHECK(kd_movq_latent_channels(m) == latent_ch, "%s latent channels %d", cfg, kd_movq_latent_channels(m));
    kd_st_file *cases = NULL;
    kd_err e;
    s = kd_st_open(cases_path, &cases, &e);
    TEST_CHECK(s == KD_OK, "open %s: %s", cases_path, e.msg);
    if (s == KD_OK) {
        run_case(ctx, m, cases, cfg, "b1_64x64");
        run_case(ctx, m, cases, cfg, "b2_48x80");
        /* a second run of the same call reuses the arena and must give the same numbers */
        run_case(ctx, m, cases, cfg, "b1_64x64");
        kd_st_close(cases);
    }
    /* bad calls */
    float buf[16];
    TEST_CHECK(kd_movq_decode(ctx, m, buf, 0, 2, 2, buf) == KD_ERR_INVALID_ARG && strstr(kd_ctx_last_error(ctx), "batch"),
               "batch 0 rejected: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(kd_movq_decode(ctx, m, buf, 1, 60000, 60000, buf) == KD_ERR_INVALID_ARG, "huge latents rejected: %s",
               kd_ctx_last_error(ctx));
    TEST_CHECK(kd_movq_encode(ctx, m, NULL, 1, 8, 8, buf) == KD_ERR_INVALID_ARG, "NULL image rejected");
    kd_movq_free(m);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_load_errors(kd_ctx *ctx) {
    kd_movq *m = NULL;
    TEST_CHECK(kd_movq_load(ctx, "/nonexistent/movq", &m) != KD_OK && m == NULL, "missing folder: %s",
               kd_ctx_last_error(ctx));
    TEST_CHECK(strstr(kd_ctx_last_error(ctx), "config.json") != NULL, "message names config.json");

    /* config of another norm type */
    const char *dir = kt_tmp_dir("movq_bad");
    char p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, "{\"block_out_channels\": [32, 64], \"norm_type\": \"group\", \"latent_channels\": 4,"
                  "\"down_block_types\": [\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\"],"
                  "\"up_block_types\": [\"AttnUpDecoderBlock2D\", \"UpDecoderBlock2D\"]}");
    TEST_CHECK(kd_movq_load(ctx, dir, &m) == KD_ERR_UNSUPPORTED && strstr(kd_ctx_last_error(ctx), "norm_type"),
               "group norm_type rejected: %s", kd_ctx_last_error(ctx));
    write_file(p, "{\"block_out_channels\": [32, 48], \"norm_type\": \"spatial\"}");
    TEST_CHECK(kd_movq_load(ctx, dir, &m) == KD_ERR_UNSUPPORTED && strstr(kd_ctx_last_error(ctx), "block_out_channels[1]"),
               "48 channels rejected: %s", kd_ctx_last_error(ctx));
    write_file(p, "{\"block_out_channels\": [32, 64], \"norm_type\": \"spatial\", \"layers_per_block\": \"two\"}");
    TEST_CHECK(kd_movq_load(ctx, dir, &m) == KD_ERR_FORMAT && strstr(kd_ctx_last_error(ctx), "layers_per_block"),
               "mistyped key rejected: %s", kd_ctx_last_error(ctx));

    /* right config, weights of the other model: first mismatching tensor is named */
    char src[1024], cmd[3000];
    snprintf(src, sizeof src, "%s/two_level/diffusion_pytorch_model.safetensors", kt_data_path("movq"));
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/diffusion_pytorch_model.safetensors'", src, dir);
    TEST_CHECK(system(cmd) == 0, "copy weights");
    write_file(p, "{\"block_out_channels\": [32, 64], \"norm_type\": \"spatial\", \"latent_channels\": 4,"
                  "\"vq_embed_dim\": 4, \"layers_per_block\": 1, \"norm_num_groups\": 16, \"mid_block_add_attention\": false,"
                  "\"down_block_types\": [\"DownEncoderBlock2D\", \"AttnDownEncoderBlock2D\"],"
                  "\"up_block_types\": [\"AttnUpDecoderBlock2D\", \"UpDecoderBlock2D\"]}");
    kd_status s = kd_movq_load(ctx, dir, &m);
    TEST_CHECK(s == KD_ERR_SHAPE && strstr(kd_ctx_last_error(ctx), "encoder.conv_out.weight"),
               "latent channel mismatch names the tensor: %s", kd_ctx_last_error(ctx));
}

int main(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) return 1;
    run_config(ctx, "kandinsky_small", 8, 4);
    run_config(ctx, "two_level", 2, 3);
    test_load_errors(ctx);
    kd_ctx_free(ctx);
    return kt_finish("test_movq");
}
