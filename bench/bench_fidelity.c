/* What BF16 compute and q8_0 weights cost in fidelity on full-size models: the relative L2 error
 * ‖y − y_fp32‖ / ‖y_fp32‖ of one forward of each network, against the same network in F32 with
 * its weights as stored, on the same deterministic inputs.
 *   bench_fidelity [--decoder DIR] [--prior DIR] [--threads N] [--latents 64]
 *   --decoder  a kandinsky-2-2-decoder folder (unet/, movq/): one U-Net step at batch 2 (t = 500)
 *              and one MoVQ decode of [1, 4, L, L] latents (an 8L × 8L image)
 *   --prior    a kandinsky-2-2-prior folder (prior/, text_encoder/, image_encoder/): one prior
 *              step at batch 2, CLIP text (text_embeds and last_hidden_state of 2 × 77 tokens), CLIP
 *              vision (image_embeds of one 224² image)
 * Each network is loaded twice (weights as stored, then --weights q8) and run in fp32 and bf16 on
 * each; one JSON line per network and mode: {"net", "mode", "rel_l2", "max_abs", "ref_rms"}. bf16
 * lines are skipped (and say so) where the CPU has no BF16 products. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kandinsky.h"

typedef struct net net;
struct net {
    const char *name, *sub; /* label, subfolder */
    size_t out_n;           /* floats of output written by run */
    kd_status (*load)(kd_ctx *, const char *, void **);
    void (*free_model)(void *);
    kd_status (*run)(kd_ctx *, void *, const net *, float *out);
    int lat; /* latent side (U-Net, MoVQ) */
};

/* ---- inputs (deterministic, as the bench_*.c timing programs make them) ---- */

static void token_ids(int32_t *ids, int32_t *mask) { /* 2 × 77: 12 and 30 words, <end> padding */
    for (int b = 0; b < 2; b++) {
        int n = 12 + 18 * b, len = 0;
        int32_t *row = ids + b * 77;
        row[len++] = 49406;
        for (int t = 1; t <= n; t++) row[len++] = (int32_t)(((long long)t * 7919 + (long long)b * 104729) % 49000 + 100);
        row[len++] = 49407;
        for (int t = 0; t < 77; t++) {
            if (t >= len) row[t] = 49407;
            if (mask) mask[b * 77 + t] = t < len;
        }
    }
}

static kd_status run_unet(kd_ctx *ctx, void *m, const net *n, float *out) {
    kd_unet *u = m;
    int L = n->lat, C = kd_unet_sample_channels(u), D = kd_unet_image_embed_dim(u);
    float *x = random_floats((size_t)2 * C * L * L, 1, 1.0f), *img = random_floats((size_t)2 * D, 3, 1.0f);
    float ts[2] = {500.0f, 500.0f};
    kd_unet_cond c = {.timesteps = ts, .image_embeds = img};
    kd_status s = kd_unet_forward(ctx, u, x, 2, L, L, &c, out);
    free(x), free(img);
    return s;
}

static kd_status run_movq(kd_ctx *ctx, void *m, const net *n, float *out) {
    int L = n->lat, C = kd_movq_latent_channels(m);
    float *z = random_floats((size_t)C * L * L, 13, 1.0f);
    kd_status s = kd_movq_decode(ctx, m, z, 1, L, L, out);
    free(z);
    return s;
}

static kd_status run_prior(kd_ctx *ctx, void *m, const net *n, float *out) {
    int E = kd_prior_embed_dim(m);
    float *x = random_floats((size_t)2 * E, 1, 1.0f), *proj = random_floats((size_t)2 * E, 2, 1.0f);
    float *hid = random_floats((size_t)2 * 77 * E, 3, 1.0f), ts[2] = {500.0f, 500.0f};
    int32_t ids[2 * 77], mask[2 * 77];
    token_ids(ids, mask);
    kd_status s = kd_prior_forward(ctx, m, x, ts, proj, hid, mask, 2, out);
    free(x), free(proj), free(hid);
    return s;
}

/* out = text_embeds [2, E] then last_hidden_state [2, 77, H] */
static kd_status run_text(kd_ctx *ctx, void *m, const net *n, float *out) {
    int32_t ids[2 * 77];
    token_ids(ids, NULL);
    return kd_clip_text_forward(ctx, m, ids, 2, 77, out, out + 2 * kd_clip_text_embed_dim(m));
}

static kd_status run_vision(kd_ctx *ctx, void *m, const net *n, float *out) {
    int S = kd_clip_vision_image_size(m);
    float *px = random_floats((size_t)3 * S * S, 11, 1.0f);
    kd_status s = kd_clip_vision_forward(ctx, m, px, 1, out);
    free(px);
    return s;
}

#define LOADER(fn, type)                                                                    \
    static kd_status load_##fn(kd_ctx *ctx, const char *p, void **m) { return fn(ctx, p, (type **)m); }
LOADER(kd_unet_load, kd_unet)
LOADER(kd_movq_load, kd_movq)
LOADER(kd_prior_load, kd_prior)
LOADER(kd_clip_text_load, kd_clip_text)
LOADER(kd_clip_vision_load, kd_clip_vision)
static void free_unet(void *m) { kd_unet_free(m); }
static void free_movq(void *m) { kd_movq_free(m); }
static void free_prior(void *m) { kd_prior_free(m); }
static void free_text(void *m) { kd_clip_text_free(m); }
static void free_vision(void *m) { kd_clip_vision_free(m); }

static void report(const char *name, const char *mode, const float *y, const float *ref, size_t n) {
    double num = 0, den = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        mx = fabs(d) > mx ? fabs(d) : mx;
    }
    printf("{\"net\": \"%s\", \"mode\": \"%s\", \"rel_l2\": %.3e, \"max_abs\": %.3e, \"ref_rms\": %.3e}\n", name, mode,
           sqrt(num / (den > 0 ? den : 1)), mx, sqrt(den / (double)n));
    fflush(stdout);
}

/* The reference (stored weights, fp32), then bf16; q8 weights in fp32, then bf16. */
static int measure(const net *n, const char *root, int threads) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", root, n->sub);
    float *ref = malloc(n->out_n * sizeof(float)), *y = malloc(n->out_n * sizeof(float));
    int rc = 0;
    for (int q8 = 0; q8 < 2 && !rc; q8++) {
        kd_ctx_params cp = kd_ctx_params_default();
        cp.n_threads = threads;
        cp.weights = q8 ? KD_WEIGHTS_Q8 : KD_WEIGHTS_AS_STORED;
        kd_ctx *ctx = NULL;
        void *m = NULL;
        double t0 = now();
        if (kd_ctx_create(&cp, &ctx) != KD_OK || n->load(ctx, path, &m) != KD_OK) {
            fprintf(stderr, "bench_fidelity: %s: %s\n", path, ctx ? kd_ctx_last_error(ctx) : "no context");
            kd_ctx_free(ctx);
            rc = 1;
            break;
        }
        fprintf(stderr, "%s: loaded %s weights in %.1f s\n", n->name, q8 ? "q8" : "stored", now() - t0);
        for (int bf = 0; bf < 2 && !rc; bf++) {
            kd_ctx_set_precision(ctx, bf ? KD_PRECISION_BF16 : KD_PRECISION_FP32);
            if (bf && kd_ctx_precision(ctx) != KD_PRECISION_BF16) {
                fprintf(stderr, "%s: bf16 skipped (no BF16 products on this CPU)\n", n->name);
                continue;
            }
            float *dst = !q8 && !bf ? ref : y;
            t0 = now();
            if (n->run(ctx, m, n, dst) != KD_OK) {
                fprintf(stderr, "bench_fidelity: %s: %s\n", n->name, kd_ctx_last_error(ctx));
                rc = 1;
                break;
            }
            fprintf(stderr, "%s: %s%s forward %.1f s\n", n->name, bf ? "bf16" : "fp32", q8 ? "-q8" : "", now() - t0);
            if (q8 || bf) report(n->name, bf ? (q8 ? "bf16-q8" : "bf16") : "q8", y, ref, n->out_n);
        }
        n->free_model(m);
        kd_ctx_free(ctx);
    }
    free(ref), free(y);
    return rc;
}

int main(int argc, char **argv) {
    const char *decoder = NULL, *prior = NULL;
    int threads = 0, lat = 64;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_fidelity: %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--decoder")) decoder = argv[++i];
        else if (!strcmp(argv[i], "--prior")) prior = argv[++i];
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--latents")) lat = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_fidelity [--decoder DIR] [--prior DIR] [--threads N] [--latents 64]\n");
            return 2;
        }
    }
    if (!decoder && !prior) {
        fprintf(stderr, "usage: bench_fidelity [--decoder DIR] [--prior DIR] [--threads N] [--latents 64]\n");
        return 2;
    }
    int rc = 0;
    if (decoder) {
        net u = {"unet_step", "unet", (size_t)2 * 8 * lat * lat, load_kd_unet_load, free_unet, run_unet, lat};
        net m = {"movq_decode", "movq", (size_t)3 * 8 * lat * 8 * lat, load_kd_movq_load, free_movq, run_movq, lat};
        rc |= measure(&u, decoder, threads) | measure(&m, decoder, threads);
    }
    if (prior) {
        /* 2.2: E = 1280, text hidden 1280 */
        net p = {"prior_step", "prior", (size_t)2 * 1280, load_kd_prior_load, free_prior, run_prior, 0};
        net t = {"clip_text", "text_encoder", (size_t)2 * 1280 + (size_t)2 * 77 * 1280, load_kd_clip_text_load,
                 free_text, run_text, 0};
        net v = {"clip_vision", "image_encoder", 1280, load_kd_clip_vision_load, free_vision, run_vision, 0};
        rc |= measure(&p, prior, threads) | measure(&t, prior, threads) | measure(&v, prior, threads);
    }
    return rc;
}
