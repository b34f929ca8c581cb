/* Times MoVQ encode and decode of a model folder at given sizes.
 *   bench_movq MODEL_DIR [--threads N] [--sizes 256,512] [--batch 1] [--reps 3] [--precision fp32|bf16] [--weights stored|q8] [--only encode|decode]
 * Prints one JSON line per (op, size) with the median time, then the process's peak RSS.
 * Inputs are deterministic pseudo-random values; the numbers are not checked here (test_movq
 * does that on tiny models). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "kandinsky.h"

static const char *g_label = "kandinsky.c"; /* bench_mode_label */

static void fill(float *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_movq MODEL_DIR [--threads N] [--sizes 256,512] [--batch B] [--reps R] [--only encode|decode]\n");
        return 2;
    }
    const char *model = argv[1], *sizes = "256,512", *only = "";
    int threads = 0, batch = 1, reps = 3;
    bench_mode mode = {0};
    for (int i = 2; i + 1 < argc; i += 2) {
        if (bench_mode_arg(&mode, argv[i], argv[i + 1])) continue;
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sizes")) sizes = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--only")) only = argv[i + 1];
    }
    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = threads;
    bench_mode_params(&mode, &cp);
    kd_ctx *ctx;
    if (kd_ctx_create(&cp, &ctx) != KD_OK) return 1;
    g_label = bench_mode_label(&mode, ctx);
    kd_movq *m;
    double t0 = now();
    if (kd_movq_load(ctx, model, &m) != KD_OK) {
        fprintf(stderr, "bench_movq: %s\n", kd_ctx_last_error(ctx));
        return 1;
    }
    fprintf(stderr, "loaded %s in %.2f s, %d threads\n", model, now() - t0, kd_ctx_threads(ctx));
    int f = kd_movq_downscale(m), C = kd_movq_latent_channels(m);
    char *list = strdup(sizes);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int px = atoi(tok), lat = px / f;
        size_t nimg = (size_t)batch * 3 * px * px, nlat = (size_t)batch * C * lat * lat;
        float *img = malloc(nimg * sizeof(float)), *z = malloc(nlat * sizeof(float));
        fill(img, nimg, 1);
        fill(z, nlat, 2);
        for (int op = 0; op < 2; op++) {
            const char *name = op ? "decode" : "encode";
            if (*only && strcmp(only, name)) continue;
            double t[64], first = 0;
            int n = reps < 1 ? 1 : reps > 64 ? 64 : reps;
            for (int r = -1; r < n; r++) { /* r = -1: warm-up (arena growth, page faults) */
                double s = now();
                kd_status st = op ? kd_movq_decode(ctx, m, z, batch, lat, lat, img)
                                  : kd_movq_encode(ctx, m, img, batch, px, px, z);
                if (st != KD_OK) {
                    fprintf(stderr, "bench_movq: %s\n", kd_ctx_last_error(ctx));
                    return 1;
                }
                if (r >= 0)
                    t[r] = now() - s;
                else
                    first = now() - s;
            }
            qsort(t, (size_t)n, sizeof *t, cmp_double);
            printf("{\"impl\": \"%s\", \"op\": \"%s\", \"size\": %d, \"batch\": %d, \"threads\": %d, \"median_ms\": %.1f, \"min_ms\": %.1f, \"first_ms\": %.1f}\n",
                   g_label, name, px, batch, kd_ctx_threads(ctx), t[n / 2] * 1e3, t[0] * 1e3, first * 1e3);
            fflush(stdout);
        }
        free(img);
        free(z);
    }
    free(list);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\": \"%s\", \"peak_rss_mb\": %.0f}\n", g_label, ru.ru_maxrss / 1024.0);
    kd_movq_free(m);
    kd_ctx_free(ctx);
    return 0;
}
