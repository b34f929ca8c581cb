/* Times one full Kandinsky 2.2 text-to-image run (kd_pipeline_load + kd_generate) with per-stage
 * times taken from the progress callback.
 *   bench_pipeline PRIOR_DIR DECODER_DIR [--threads N] [--low-memory 0|1] [--size 256] [--steps 10]
 *                  [--prior-steps 10] [--guidance 4] [--prior-guidance 4] [--seed 42] [--prompt TEXT]
 *                  [--out image.png] [--impl NAME] [--sampler NAME] [--prior-sampler NAME]
 * One JSON line per stage ("median_ms" = the time of the one run, for bench/compare.py), then one
 * with the peak RSS. Stages, identical in bench_pipeline.py:
 *   load       kd_pipeline_load (with --low-memory 1 nothing is loaded there: loads happen inside the run)
 *   prior      start of kd_generate → last prior step (tokenize, CLIP text, the prior steps)
 *   decoder    last prior step → last decoder step (zero-image CLIP embedding, stage switch — with
 *              --low-memory 1 that includes freeing the prior stage and loading the U-Net and MoVQ —,
 *              latent init, the U-Net steps)
 *   decode     last decoder step → MoVQ decode done
 *   generate   the whole kd_generate call (includes the conversion to 8-bit)
 *   prior_step, decoder_step  median interval between consecutive step callbacks (steps 2..n)
 *   total      load + generate */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "kandinsky.h"

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

#define MAX_STEPS 1024

typedef struct {
    double start, prior[MAX_STEPS], decoder[MAX_STEPS], decode;
    int n_prior, n_decoder;
} stamps;

static void on_progress(void *user, const char *stage, int step, int total) {
    stamps *s = user;
    double t = now();
    if (!strcmp(stage, "prior") && s->n_prior < MAX_STEPS) s->prior[s->n_prior++] = t;
    else if (!strcmp(stage, "decoder") && s->n_decoder < MAX_STEPS) s->decoder[s->n_decoder++] = t;
    else if (!strcmp(stage, "decode")) s->decode = t;
    fprintf(stderr, "  %8.2f s  %s %d/%d  RSS peak %.0f MB\n", t - s->start, stage, step, total, peak_rss_mb());
}

static double median_interval(const double *t, int n) {
    if (n < 2) return 0.0;
    double d[MAX_STEPS];
    for (int i = 1; i < n; i++) d[i - 1] = t[i] - t[i - 1];
    qsort(d, (size_t)n - 1, sizeof *d, cmp_double);
    return d[(n - 1) / 2];
}

static const char *impl = "kandinsky.c";
static int size_key = 256;

static void row(const char *op, double seconds) {
    printf("{\"impl\": \"%s\", \"op\": \"%s\", \"size\": %d, \"median_ms\": %.1f}\n", impl, op, size_key, seconds * 1e3);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_pipeline PRIOR_DIR DECODER_DIR [--threads N] [--low-memory 0|1] [--size 256] "
                        "[--steps 10] [--prior-steps 10] [--guidance 4] [--prior-guidance 4] [--seed 42] "
                        "[--prompt TEXT] [--out image.png] [--impl NAME] [--sampler NAME] [--prior-sampler NAME]\n"
                        "       [--precision fp32|bf16] [--weights stored|q8]\n");
        return 2;
    }
    const char *prior_dir = argv[1], *dec_dir = argv[2], *out = NULL;
    int threads = 0, low_memory = 0;
    kd_gen_params g = kd_gen_params_default();
    g.prompt = "a red cat sitting on a chair, oil painting";
    g.width = g.height = 256;
    g.steps = 10;
    g.prior_steps = 10;
    g.guidance_scale = 4.0f;
    g.prior_guidance_scale = 4.0f;
    g.seed = 42;
    bench_mode mode = {0};
    int impl_given = 0;
    for (int i = 3; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (bench_mode_arg(&mode, k, v)) continue;
        if (!strcmp(k, "--threads")) threads = atoi(v);
        else if (!strcmp(k, "--low-memory")) low_memory = atoi(v);
        else if (!strcmp(k, "--size")) g.width = g.height = atoi(v);
        else if (!strcmp(k, "--steps")) g.steps = atoi(v);
        else if (!strcmp(k, "--prior-steps")) g.prior_steps = atoi(v);
        else if (!strcmp(k, "--guidance")) g.guidance_scale = (float)atof(v);
        else if (!strcmp(k, "--prior-guidance")) g.prior_guidance_scale = (float)atof(v);
        else if (!strcmp(k, "--seed")) g.seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--prompt")) g.prompt = v;
        else if (!strcmp(k, "--out")) out = v;
        else if (!strcmp(k, "--impl")) impl = v, impl_given = 1;
        else if (!strcmp(k, "--sampler")) g.sampler = v;
        else if (!strcmp(k, "--prior-sampler")) g.prior_sampler = v;
        else {
            fprintf(stderr, "bench_pipeline: unknown option %s\n", k);
            return 2;
        }
    }
    size_key = g.width;
    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = threads;
    bench_mode_params(&mode, &cp);
    kd_ctx *ctx;
    if (kd_ctx_create(&cp, &ctx) != KD_OK) return 1;
    if (!impl_given) impl = bench_mode_label(&mode, ctx);
    kd_pipeline *p;
    double t0 = now();
    if (kd_pipeline_load(ctx, prior_dir, dec_dir, low_memory, &p) != KD_OK) {
        fprintf(stderr, "bench_pipeline: %s\n", kd_ctx_last_error(ctx));
        return 1;
    }
    double load_s = now() - t0;
    fprintf(stderr, "loaded (low_memory %d) in %.2f s, %d threads, RSS peak %.0f MB\n", low_memory, load_s,
            kd_ctx_threads(ctx), peak_rss_mb());
    stamps *st = calloc(1, sizeof *st);
    g.progress = on_progress;
    g.progress_user = st;
    kd_image img = {0};
    double g0 = now();
    st->start = g0;
    if (kd_generate(ctx, p, &g, &img) != KD_OK) {
        fprintf(stderr, "bench_pipeline: %s\n", kd_ctx_last_error(ctx));
        return 1;
    }
    double g1 = now();
    if (st->n_prior < 1 || st->n_decoder < 1 || st->decode == 0.0) {
        fprintf(stderr, "bench_pipeline: missing progress callbacks (%d prior, %d decoder)\n", st->n_prior,
                st->n_decoder);
        return 1;
    }
    double last_prior = st->prior[st->n_prior - 1], last_dec = st->decoder[st->n_decoder - 1];
    row("load", load_s);
    row("prior", last_prior - g0);
    row("decoder", last_dec - last_prior);
    row("decode", st->decode - last_dec);
    row("generate", g1 - g0);
    row("prior_step", median_interval(st->prior, st->n_prior));
    row("decoder_step", median_interval(st->decoder, st->n_decoder));
    row("total", load_s + g1 - g0);
    printf("{\"impl\": \"%s\", \"low_memory\": %d, \"threads\": %d, \"width\": %d, \"height\": %d, \"steps\": %d, "
           "\"prior_steps\": %d, \"seed\": %llu, \"peak_rss_mb\": %.0f}\n",
           impl, low_memory, kd_ctx_threads(ctx), img.width, img.height, g.steps, g.prior_steps,
           (unsigned long long)g.seed, peak_rss_mb());
    fflush(stdout);
    if (out && kd_image_write(ctx, out, &img, NULL) != KD_OK) {
        fprintf(stderr, "bench_pipeline: %s\n", kd_ctx_last_error(ctx));
        return 1;
    }
    kd_image_free(&img);
    free(st);
    kd_pipeline_free(p);
    kd_ctx_free(ctx);
    return 0;
}
