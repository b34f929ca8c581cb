/* Times MultilingualCLIP (XLM-R large) on batch 2 × 77 tokens, the 2.1 decoder's text encoder.
 *   bench_mclip MODEL_DIR [--threads N] [--reps R]
 * Same inputs as bench_mclip.py: pseudo-random ids, the second sequence padded after 20 tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "kandinsky.h"

static const char *g_label = "kandinsky.c"; /* bench_mode_label */

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_mclip MODEL_DIR [--threads N] [--reps R]\n");
        return 2;
    }
    int threads = 0, reps = 3;
    bench_mode mode = {0};
    for (int i = 2; i + 1 < argc; i += 2) {
        if (bench_mode_arg(&mode, argv[i], argv[i + 1])) continue;
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = threads;
    bench_mode_params(&mode, &cp);
    kd_ctx *ctx;
    kd_mclip *m;
    if (kd_ctx_create(&cp, &ctx) != KD_OK || kd_mclip_load(ctx, argv[1], &m) != KD_OK) {
        fprintf(stderr, "bench_mclip: %s\n", ctx ? kd_ctx_last_error(ctx) : "no context");
        return 1;
    }
    g_label = bench_mode_label(&mode, ctx);
    int32_t ids[2 * 77], mask[2 * 77];
    unsigned seed = 1;
    for (int i = 0; i < 2 * 77; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = 4 + (int32_t)((seed >> 8) % 249996u);
        mask[i] = !(i >= 77 + 20);
        if (!mask[i]) ids[i] = 1;
    }
    float emb[2 * 768], *hid = malloc((size_t)2 * 77 * kd_mclip_hidden_size(m) * sizeof(float));
    double t[64];
    int n = reps < 1 ? 1 : reps > 64 ? 64 : reps;
    for (int r = -1; r < n; r++) {
        double s = now();
        if (kd_mclip_forward(ctx, m, ids, mask, 2, 77, emb, hid) != KD_OK) {
            fprintf(stderr, "bench_mclip: %s\n", kd_ctx_last_error(ctx));
            return 1;
        }
        if (r >= 0) t[r] = now() - s;
    }
    qsort(t, (size_t)n, sizeof *t, cmp);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\": \"%s\", \"op\": \"mclip\", \"size\": 77, \"median_ms\": %.1f, \"peak_rss_mb\": %.0f}\n",
           g_label, t[n / 2] * 1e3, ru.ru_maxrss / 1024.0);
    free(hid);
    kd_mclip_free(m);
    kd_ctx_free(ctx);
    return 0;
}
