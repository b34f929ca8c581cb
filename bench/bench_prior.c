/* Times the 2.2 prior stage's three networks on the shapes the pipeline runs:
 *   clip_text   CLIP ViT-bigG text encoder, batch 2 × 77 tokens (text_embeds + last_hidden_state)
 *   clip_vision CLIP ViT-bigG vision encoder, one 224² image
 *   prior_step  one PriorTransformer call at batch 2 (classifier-free guidance), with a text mask
 *   bench_prior PRIOR_DIR [--threads N] [--ops clip_text,clip_vision,prior_step] [--reps 3] [--precision fp32|bf16] [--weights stored|q8]
 * PRIOR_DIR is a kandinsky-2-2-prior folder (text_encoder/, image_encoder/, prior/). One JSON line
 * per op (median of reps after one warm-up call, load time, peak RSS of the process so far). The
 * inputs equal bench_prior.py's (same ids, mask and pseudo-random numbers). Run one op per process
 * to get each network's own peak RSS (run_prior.sh does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bench_util.h"
#include "kandinsky.h"

static const char *g_label = "kandinsky.c"; /* bench_mode_label */

/* bench_prior.py's token_ids: <start>, 12 + 18·b word ids, <end>, <end> padding; mask on the real ones. */
static void token_ids(int batch, int seq, int32_t *ids, int32_t *mask) {
    for (int b = 0; b < batch; b++) {
        int n = 12 + 18 * b, len = 0;
        int32_t *row = ids + (size_t)b * seq;
        row[len++] = 49406;
        for (int t = 1; t <= n && len < seq; t++) row[len++] = (int32_t)(((long long)t * 7919 + (long long)b * 104729) % 49000 + 100);
        if (len < seq) row[len++] = 49407;
        for (int t = 0; t < seq; t++) {
            if (t >= len) row[t] = 49407;
            if (mask) mask[(size_t)b * seq + t] = t < len;
        }
    }
}

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

typedef kd_status (*call_fn)(kd_ctx *ctx, void *state);

static int timeit(kd_ctx *ctx, const char *op, int size, int batch, int reps, double load_s, call_fn fn, void *state) {
    double t[64];
    int nr = reps < 1 ? 1 : reps > 64 ? 64 : reps;
    for (int r = -1; r < nr; r++) { /* r = -1: warm-up (weights paged in, arena sized) */
        double s = now();
        if (fn(ctx, state) != KD_OK) {
            fprintf(stderr, "bench_prior: %s: %s\n", op, kd_ctx_last_error(ctx));
            return 1;
        }
        double dt = now() - s;
        if (r >= 0) t[r] = dt;
        fprintf(stderr, "  %s rep %d: %.3f s\n", op, r, dt);
    }
    qsort(t, (size_t)nr, sizeof *t, cmp_double);
    printf("{\"impl\": \"%s\", \"op\": \"%s\", \"size\": %d, \"batch\": %d, \"threads\": %d, \"median_ms\": %.1f, "
           "\"min_ms\": %.1f, \"load_s\": %.2f, \"peak_rss_mb\": %.0f}\n",
           g_label, op, size, batch, kd_ctx_threads(ctx), t[nr / 2] * 1e3, t[0] * 1e3, load_s, peak_rss_mb());
    fflush(stdout);
    return 0;
}

typedef struct {
    kd_clip_text *m;
    int32_t *ids;
    int batch, seq;
    float *embeds, *hidden;
} text_state;

static kd_status text_call(kd_ctx *ctx, void *st) {
    text_state *s = st;
    return kd_clip_text_forward(ctx, s->m, s->ids, s->batch, s->seq, s->embeds, s->hidden);
}

typedef struct {
    kd_clip_vision *m;
    float *pixels, *embeds;
} vision_state;

static kd_status vision_call(kd_ctx *ctx, void *st) {
    vision_state *s = st;
    return kd_clip_vision_forward(ctx, s->m, s->pixels, 1, s->embeds);
}

typedef struct {
    kd_prior *m;
    float *x, *ts, *proj, *hidden, *out;
    int32_t *mask;
    int batch;
} prior_state;

static kd_status prior_call(kd_ctx *ctx, void *st) {
    prior_state *s = st;
    return kd_prior_forward(ctx, s->m, s->x, s->ts, s->proj, s->hidden, s->mask, s->batch, s->out);
}

static char *join(const char *dir, const char *sub) {
    size_t n = strlen(dir) + strlen(sub) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, sub);
    return p;
}

static int has_op(const char *ops, const char *op) {
    size_t n = strlen(op);
    for (const char *p = ops; (p = strstr(p, op)) != NULL; p += n)
        if ((p == ops || p[-1] == ',') && (p[n] == ',' || p[n] == 0)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_prior PRIOR_DIR [--threads N] [--ops clip_text,clip_vision,prior_step] [--reps 3]\n");
        return 2;
    }
    const char *dir = argv[1], *ops = "clip_text,clip_vision,prior_step";
    int threads = 0, reps = 3, rc = 0;
    bench_mode mode = {0};
    for (int i = 2; i + 1 < argc; i += 2) {
        if (bench_mode_arg(&mode, argv[i], argv[i + 1])) continue;
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--ops")) ops = argv[i + 1];
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
    }
    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = threads;
    bench_mode_params(&mode, &cp);
    kd_ctx *ctx;
    if (kd_ctx_create(&cp, &ctx) != KD_OK) return 1;
    g_label = bench_mode_label(&mode, ctx);

    if (!rc && has_op(ops, "clip_text")) {
        char *path = join(dir, "text_encoder");
        text_state s = {.batch = 2};
        double t0 = now();
        if (kd_clip_text_load(ctx, path, &s.m) != KD_OK) {
            fprintf(stderr, "bench_prior: %s\n", kd_ctx_last_error(ctx));
            rc = 1;
        } else {
            double load_s = now() - t0;
            fprintf(stderr, "loaded %s in %.2f s, RSS %.0f MB\n", path, load_s, peak_rss_mb());
            s.seq = kd_clip_text_max_len(s.m);
            s.ids = malloc((size_t)s.batch * s.seq * sizeof(int32_t));
            s.embeds = malloc((size_t)s.batch * kd_clip_text_embed_dim(s.m) * sizeof(float));
            s.hidden = malloc((size_t)s.batch * s.seq * kd_clip_text_hidden_size(s.m) * sizeof(float));
            token_ids(s.batch, s.seq, s.ids, NULL);
            rc = timeit(ctx, "clip_text", s.seq, s.batch, reps, load_s, text_call, &s);
            free(s.ids);
            free(s.embeds);
            free(s.hidden);
            kd_clip_text_free(s.m);
        }
        free(path);
    }
    if (!rc && has_op(ops, "clip_vision")) {
        char *path = join(dir, "image_encoder");
        vision_state s = {0};
        double t0 = now();
        if (kd_clip_vision_load(ctx, path, &s.m) != KD_OK) {
            fprintf(stderr, "bench_prior: %s\n", kd_ctx_last_error(ctx));
            rc = 1;
        } else {
            double load_s = now() - t0;
            fprintf(stderr, "loaded %s in %.2f s, RSS %.0f MB\n", path, load_s, peak_rss_mb());
            int S = kd_clip_vision_image_size(s.m);
            s.pixels = random_floats((size_t)3 * S * S, 11, 1.0f);
            s.embeds = malloc((size_t)kd_clip_vision_embed_dim(s.m) * sizeof(float));
            rc = timeit(ctx, "clip_vision", S, 1, reps, load_s, vision_call, &s);
            free(s.pixels);
            free(s.embeds);
            kd_clip_vision_free(s.m);
        }
        free(path);
    }
    if (!rc && has_op(ops, "prior_step")) {
        char *path = join(dir, "prior");
        prior_state s = {.batch = 2};
        double t0 = now();
        if (kd_prior_load(ctx, path, &s.m) != KD_OK) {
            fprintf(stderr, "bench_prior: %s\n", kd_ctx_last_error(ctx));
            rc = 1;
        } else {
            double load_s = now() - t0;
            fprintf(stderr, "loaded %s in %.2f s, RSS %.0f MB\n", path, load_s, peak_rss_mb());
            int E = kd_prior_embed_dim(s.m), L = kd_prior_text_len(s.m), B = s.batch;
            s.x = random_floats((size_t)B * E, 1, 1.0f);
            s.proj = random_floats((size_t)B * E, 3, 1.0f);
            s.hidden = random_floats((size_t)B * L * E, 5, 1.0f);
            s.out = malloc((size_t)B * E * sizeof(float));
            s.ts = malloc((size_t)B * sizeof(float));
            s.mask = malloc((size_t)B * L * sizeof(int32_t));
            int32_t *ids = malloc((size_t)B * L * sizeof(int32_t));
            token_ids(B, L, ids, s.mask);
            for (int b = 0; b < B; b++) s.ts[b] = 500.0f;
            rc = timeit(ctx, "prior_step", L + 4, B, reps, load_s, prior_call, &s);
            free(ids);
            free(s.x);
            free(s.proj);
            free(s.hidden);
            free(s.out);
            free(s.ts);
            free(s.mask);
            kd_prior_free(s.m);
        }
        free(path);
    }
    kd_ctx_free(ctx);
    return rc;
}
