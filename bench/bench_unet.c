/* Times one decoder U-Net step (batch B, classifier-free guidance batch = 2) at given latent sizes.
 *   bench_unet MODEL_DIR [--threads N] [--latents 32,64] [--batch 2] [--reps 3] [--precision fp32|bf16] [--weights stored|q8]
 * Prints one JSON line per size (median time), then the peak RSS. Inputs are deterministic
 * pseudo-random values; correctness is test_unet's job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "kandinsky.h"

static const char *g_label = "kandinsky.c"; /* bench_mode_label */

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_unet MODEL_DIR [--threads N] [--latents 32,64] [--batch 2] [--reps 3]\n");
        return 2;
    }
    const char *model = argv[1], *sizes = "32,64";
    int threads = 0, batch = 2, reps = 3;
    bench_mode mode = {0};
    for (int i = 2; i + 1 < argc; i += 2) {
        if (bench_mode_arg(&mode, argv[i], argv[i + 1])) continue;
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--latents")) sizes = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = threads;
    bench_mode_params(&mode, &cp);
    kd_ctx *ctx;
    if (kd_ctx_create(&cp, &ctx) != KD_OK) return 1;
    g_label = bench_mode_label(&mode, ctx);
    kd_unet *u;
    double t0 = now();
    if (kd_unet_load(ctx, model, &u) != KD_OK) {
        fprintf(stderr, "bench_unet: %s\n", kd_ctx_last_error(ctx));
        return 1;
    }
    fprintf(stderr, "loaded %s in %.2f s, %d threads, RSS after load %.0f MB\n", model, now() - t0, kd_ctx_threads(ctx),
            peak_rss_mb());
    int C = kd_unet_sample_channels(u), D = kd_unet_image_embed_dim(u);
    float *img = random_floats((size_t)batch * D, 3, 1.0f);
    float ts[64];
    for (int i = 0; i < batch && i < 64; i++) ts[i] = 500.0f;
    char *list = strdup(sizes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int lat = atoi(tok);
        size_t n = (size_t)batch * C * lat * lat, no = (size_t)batch * kd_unet_out_channels(u) * lat * lat;
        float *x = random_floats(n, 1, 1.0f), *out = malloc(no * sizeof(float));
        float *hint = random_floats((size_t)batch * 3 * 64 * lat * lat, 5, 0.5f);
        float *txt = random_floats((size_t)batch * 4096, 7, 1.0f), *ehs = random_floats((size_t)batch * 77 * 1024, 9, 1.0f);
        kd_unet_cond c = {.timesteps = ts, .image_embeds = img, .text_embeds = txt, .encoder_hidden_states = ehs,
                          .text_len = 77, .hint = hint};
        double t[64];
        int nr = reps < 1 ? 1 : reps > 64 ? 64 : reps;
        for (int r = -1; r < nr; r++) { /* r = -1: warm-up (weights paged in, arena sized) */
            double s = now();
            if (kd_unet_forward(ctx, u, x, batch, lat, lat, &c, out) != KD_OK) {
                fprintf(stderr, "bench_unet: %s\n", kd_ctx_last_error(ctx));
                return 1;
            }
            if (r >= 0) t[r] = now() - s;
            fprintf(stderr, "  latent %d rep %d: %.2f s\n", lat, r, now() - s);
        }
        qsort(t, (size_t)nr, sizeof *t, cmp_double);
        printf("{\"impl\": \"%s\", \"op\": \"unet_step\", \"size\": %d, \"batch\": %d, \"threads\": %d, \"median_ms\": %.1f, \"min_ms\": %.1f, \"peak_rss_mb\": %.0f}\n",
               g_label, lat, batch, kd_ctx_threads(ctx), t[nr / 2] * 1e3, t[0] * 1e3, peak_rss_mb());
        fflush(stdout);
        free(x);
        free(out);
        free(hint);
        free(txt);
        free(ehs);
    }
    free(list);
    free(img);
    kd_unet_free(u);
    kd_ctx_free(ctx);
    return 0;
}
