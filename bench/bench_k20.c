/* Times Kandinsky 2.0's components at full size: one U-Net step (batch 2 = the CFG batch, latent
 * 64 = a 512² image; the original checkpoint layout, names mapped at load), mCLIP-XLMR and the mT5
 * encoder on batch 2 × 77 tokens.
 *   bench_k20 DIR [--threads N] [--reps R] [--latents 64] [--precision ..] [--weights ..]
 * DIR: a 2.0 folder from bench_k20.py make (Kandinsky-2-0.pt, text_encoder1/, text_encoder2/).
 * Same inputs as bench_k20.py (pseudo-random ids, the second sequence padded after 20 tokens;
 * pseudo-random states); one JSON line per op, as the other benches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "kandinsky.h"

static const char *g_label = "kandinsky.c";

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

typedef int (*call_fn)(void *arg);

static void time_op(const char *op, int size, int reps, call_fn fn, void *arg, kd_ctx *ctx) {
    double t[64];
    int nr = reps < 1 ? 1 : reps > 64 ? 64 : reps;
    for (int r = -1; r < nr; r++) {
        double s = now();
        if (fn(arg)) {
            fprintf(stderr, "bench_k20 %s: %s\n", op, kd_ctx_last_error(ctx));
            exit(1);
        }
        if (r >= 0) t[r] = now() - s;
        fprintf(stderr, "  %s rep %d: %.2f s\n", op, r, now() - s);
    }
    qsort(t, (size_t)nr, sizeof *t, cmp_double);
    printf("{\"impl\": \"%s\", \"op\": \"%s\", \"size\": %d, \"batch\": 2, \"threads\": %d, \"median_ms\": %.1f, "
           "\"min_ms\": %.1f, \"peak_rss_mb\": %.0f}\n",
           g_label, op, size, kd_ctx_threads(ctx), t[nr / 2] * 1e3, t[0] * 1e3, peak_rss_mb());
    fflush(stdout);
}

typedef struct {
    kd_ctx *ctx;
    kd_mclip *mclip;
    kd_mt5 *mt5;
    kd_unet *unet;
    int32_t ids[2 * 77], mask[2 * 77];
    float *pooled, *hidden1, *hidden2, *x, *out, ts[2];
    int lat;
} job;

static int run_mclip(void *a) {
    job *j = a;
    return kd_mclip_forward(j->ctx, j->mclip, j->ids, j->mask, 2, 77, j->pooled, j->hidden1) != KD_OK;
}
static int run_mt5(void *a) {
    job *j = a;
    return kd_mt5_forward(j->ctx, j->mt5, j->ids, j->mask, 2, 77, j->hidden2) != KD_OK;
}
static int run_unet(void *a) {
    job *j = a;
    kd_unet_cond c = {.timesteps = j->ts, .text_embeds = j->pooled, .encoder_hidden_states = j->hidden1, .text_len = 77,
                      .encoder_hidden_states2 = j->hidden2, .text_len2 = 77};
    return kd_unet_forward(j->ctx, j->unet, j->x, 2, j->lat, j->lat, &c, j->out) != KD_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_k20 DIR [--threads N] [--reps R] [--latents 64]\n");
        return 2;
    }
    int threads = 0, reps = 2, lat = 64;
    bench_mode mode = {0};
    for (int i = 2; i + 1 < argc; i += 2) {
        if (bench_mode_arg(&mode, argv[i], argv[i + 1])) continue;
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--latents")) lat = atoi(argv[i + 1]);
    }
    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = threads;
    bench_mode_params(&mode, &cp);
    job j = {.lat = lat};
    if (kd_ctx_create(&cp, &j.ctx) != KD_OK) return 1;
    g_label = bench_mode_label(&mode, j.ctx);
    char p1[4096], p2[4096], pu[4096];
    snprintf(p1, sizeof p1, "%s/text_encoder1", argv[1]);
    snprintf(p2, sizeof p2, "%s/text_encoder2", argv[1]);
    snprintf(pu, sizeof pu, "%s/Kandinsky-2-0.pt", argv[1]);
    unsigned seed = 1; /* bench_mclip's ids: LCG, the second sequence padded after 20 tokens */
    for (int i = 0; i < 2 * 77; i++) {
        seed = seed * 1664525u + 1013904223u;
        j.ids[i] = 4 + (int32_t)((seed >> 8) % 249996u);
        j.mask[i] = !(i >= 77 + 20);
        if (!j.mask[i]) j.ids[i] = 1;
    }
    double t0 = now();
    if (kd_mclip_load(j.ctx, p1, &j.mclip) != KD_OK) return fprintf(stderr, "bench_k20: %s\n", kd_ctx_last_error(j.ctx)), 1;
    fprintf(stderr, "loaded %s in %.2f s\n", p1, now() - t0);
    j.pooled = malloc(2 * 640 * sizeof(float));
    j.hidden1 = malloc(2 * 77 * 1024 * sizeof(float));
    time_op("k20_mclip", 77, reps, run_mclip, &j, j.ctx);
    kd_mclip_free(j.mclip);
    t0 = now();
    if (kd_mt5_load(j.ctx, p2, &j.mt5) != KD_OK) return fprintf(stderr, "bench_k20: %s\n", kd_ctx_last_error(j.ctx)), 1;
    fprintf(stderr, "loaded %s in %.2f s\n", p2, now() - t0);
    for (int i = 0; i < 2 * 77; i++) j.ids[i] = j.mask[i] ? j.ids[i] % 250100 : 0; /* mT5: pad 0 */
    j.hidden2 = malloc(2 * 77 * 512 * sizeof(float));
    time_op("k20_mt5", 77, reps, run_mt5, &j, j.ctx);
    kd_mt5_free(j.mt5);
    t0 = now();
    if (kd_unet_load_2_0(j.ctx, pu, 4, &j.unet) != KD_OK) return fprintf(stderr, "bench_k20: %s\n", kd_ctx_last_error(j.ctx)), 1;
    fprintf(stderr, "loaded %s in %.2f s, RSS %.0f MB\n", pu, now() - t0, peak_rss_mb());
    j.x = random_floats((size_t)2 * 4 * lat * lat, 1, 1.0f);
    j.out = malloc((size_t)2 * 8 * lat * lat * sizeof(float));
    j.ts[0] = j.ts[1] = 500.0f;
    time_op("k20_unet_step", lat, reps, run_unet, &j, j.ctx);
    kd_unet_free(j.unet);
    kd_ctx_free(j.ctx);
    return 0;
}
