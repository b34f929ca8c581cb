/* kandinsky — command-line front end. Includes only the public header.
 *
 *   kandinsky generate -p "a red cat" [options]     text to image (Kandinsky 2.2)
 *   kandinsky autoencode --model DIR IN OUT.png      MoVQ encode + decode round trip
 *   kandinsky decode --model DIR LATENTS OUT.png     MoVQ decode of saved latents
 *   kandinsky inspect PATH                           tensors and config of a checkpoint
 *   kandinsky serve [options]                        HTTP API (serve.c) */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kandinsky.h"
#include "serve.h"

#define EXIT_USAGE 2
#define EXIT_FAIL 1

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- argument parsing helpers ---- */

static int parse_int(const char *opt, const char *s, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "kandinsky: %s expects an integer in %ld..%ld, got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_float(const char *opt, const char *s, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || *end || end == s || !(v == v) || v > 1e4f || v < -1e4f) {
        fprintf(stderr, "kandinsky: %s expects a number, got '%s'\n", opt, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *opt, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-') { /* torch accepts negative seeds: two's complement */
        long long v = strtoll(s, &end, 10);
        if (errno || *end) goto bad;
        *out = (uint64_t)v;
        return 0;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s) goto bad;
    *out = v;
    return 0;
bad:
    fprintf(stderr, "kandinsky: %s expects an integer seed, got '%s'\n", opt, s);
    return -1;
}

/* Compute options every model-running command takes. */
typedef struct compute_opts {
    int threads;
    kd_precision precision;
    kd_weight_mode weights;
} compute_opts;

static kd_ctx *make_ctx_with(const compute_opts *c) {
    kd_ctx_params p = kd_ctx_params_default();
    p.n_threads = c->threads;
    p.precision = c->precision;
    p.weights = c->weights;
    kd_ctx *ctx = NULL;
    kd_status s = kd_ctx_create(&p, &ctx);
    if (s != KD_OK) fprintf(stderr, "kandinsky: cannot create a context: %s\n", kd_status_str(s));
    if (ctx && c->precision == KD_PRECISION_BF16 && kd_ctx_precision(ctx) != KD_PRECISION_BF16)
        fprintf(stderr, "kandinsky: --precision bf16: this CPU has no BF16 products (AVX512_BF16); computing in fp32\n");
    return ctx;
}

static kd_ctx *make_ctx(int threads) {
    compute_opts c = {threads, KD_PRECISION_FP32, KD_WEIGHTS_AS_STORED};
    return make_ctx_with(&c);
}

/* --precision / --weights (value v of option a); 0, or -1 after a message. */
static int parse_compute_opt(const char *a, const char *v, compute_opts *c) {
    if (!strcmp(a, "--precision") && kd_precision_parse(v, &c->precision) == 0) return 0;
    if (!strcmp(a, "--weights") && kd_weight_mode_parse(v, &c->weights) == 0) return 0;
    fprintf(stderr, "kandinsky: %s expects %s, got '%s'\n", a, !strcmp(a, "--precision") ? "fp32 or bf16" : "q8 or stored",
            v);
    return -1;
}

static int fail(kd_ctx *ctx, const char *what) {
    fprintf(stderr, "kandinsky: %s: %s\n", what, kd_ctx_last_error(ctx));
    return EXIT_FAIL;
}

/* ---- progress bar ---- */

typedef struct progress {
    int quiet;
    const char *stage;
    double t0, stage_t0;
    double stage_time[4];
    const char *stage_name[4];
    int n_stages;
} progress;

static void on_progress(void *user, const char *stage, int step, int total) {
    progress *p = user;
    double t = now_s();
    if (!p->stage || strcmp(p->stage, stage)) {
        if (p->stage && p->n_stages < 4) p->n_stages++;
        p->stage = stage;
        p->stage_t0 = p->t0;
        if (p->n_stages < 4) p->stage_name[p->n_stages] = stage;
    }
    double el = t - p->stage_t0;
    if (p->n_stages < 4) p->stage_time[p->n_stages] = el;
    if (p->quiet) return;
    int width = 30, fill = total ? step * width / total : width;
    double rate = el > 0 ? step / el : 0, eta = rate > 0 ? (total - step) / rate : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    if (rate >= 1)
        fprintf(stderr, "\r%-8s [%s] %4d/%-4d %6.2f it/s  ETA %5.0fs ", stage, bar, step, total, rate, eta);
    else
        fprintf(stderr, "\r%-8s [%s] %4d/%-4d %6.2f s/it  ETA %5.0fs ", stage, bar, step, total, rate > 0 ? 1 / rate : 0,
                eta);
    if (step == total) fputc('\n', stderr);
    fflush(stderr);
    if (step == total) p->t0 = t; /* the next stage starts now */
}

/* ---- generate ---- */

#define DEFAULT_PRIOR KD_CLI_DEFAULT_PRIOR
#define DEFAULT_DECODER KD_CLI_DEFAULT_DECODER
#define DEFAULT_PRIOR_21 KD_CLI_DEFAULT_PRIOR21
#define DEFAULT_DECODER_21 KD_CLI_DEFAULT_DECODER21
#define DEFAULT_MODEL_20 KD_CLI_DEFAULT_MODEL20

/* Download progress of Hub files (kd_model_resolve): one bar per file of 1 MB or more (configs
 * and tokenizer files flash by unannounced). */
typedef struct dl_progress {
    int quiet, ended;
    double t0;
    char file[256];
} dl_progress;

static void on_download(void *user, const char *file, uint64_t done, uint64_t total) {
    dl_progress *d = user;
    double t = now_s(), mb = 1024.0 * 1024.0;
    if (strcmp(d->file, file)) {
        snprintf(d->file, sizeof d->file, "%s", file);
        d->t0 = t;
        d->ended = 0;
    }
    if (d->quiet || d->ended || (total && total < 1024 * 1024)) return;
    double el = t - d->t0;
    int width = 30, fill = total ? (int)((double)done * width / (double)total) : 0;
    char bar[64], rate[32] = "";
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    if (el >= 0.2) snprintf(rate, sizeof rate, "%7.1f MB/s", (double)done / el / mb);
    fprintf(stderr, "\rdownload %-40.40s [%s] %9.1f/%.1f MB %s ", file, bar, (double)done / mb, (double)total / mb,
            rate);
    if (total && done >= total) {
        fputc('\n', stderr);
        d->ended = 1;
    }
    fflush(stderr);
}

static void usage_generate(FILE *f) {
    fprintf(f,
            "usage: kandinsky generate -p PROMPT [options]\n"
            "\n"
            "Kandinsky 2.2 text to image: prior (CLIP + PriorTransformer) then decoder (U-Net + MoVQ).\n"
            "The same seed gives the image diffusers' KandinskyV22CombinedPipeline gives.\n"
            "\n"
            "  -p, --prompt TEXT            what to draw (required)\n"
            "      --negative-prompt TEXT   what to avoid (prior negative prompt)\n"
            "      --prior DIR|ID           prior folder or Hub repo id (org/name[@revision]); default:\n"
            "                               $KD_PRIOR, else " DEFAULT_PRIOR "\n"
            "      --decoder DIR|ID         decoder folder or Hub repo id; default: $KD_DECODER,\n"
            "                               else " DEFAULT_DECODER "\n"
            "      --model-version 2.2|2.1|2.0\n"
            "                               2.1: default models kandinsky-2-1-prior / kandinsky-2-1 (the\n"
            "                               multilingual one); 2.0: the original " DEFAULT_MODEL_20 "\n"
            "                               folder (no prior; --decoder names it; guidance 7 by default;\n"
            "                               samplers ddim_sampler, p_sampler, plms_sampler); either way the\n"
            "                               decoder must be that version (default: what the decoder folder\n"
            "                               says: its 2.0 files, model_index.json, else its U-Net config)\n"
            "                               (repo ids use the Hugging Face cache, HF_HOME or HF_HUB_CACHE,\n"
            "                               and download what is missing; HF_HUB_OFFLINE=1: cache only;\n"
            "                               HF_TOKEN: token for gated repos; HF_ENDPOINT: mirror)\n"
            "  -W, --width N                image width  (512; rounded up to a multiple of 64)\n"
            "  -H, --height N               image height (512)\n"
            "      --steps N                decoder steps (100)\n"
            "      --prior-steps N          prior steps (25)\n"
            "  -g, --guidance F             decoder guidance scale (4; <= 1 turns guidance off)\n"
            "      --prior-guidance F       prior guidance scale (4)\n"
            "  -s, --seed N                 seed (random if not given; printed)\n"
            "  -n, --num-images N           images per prompt (1)\n"
            "  -o, --output FILE            output PNG/JPEG (output.png; -1, -2 ... added for N > 1)\n"
            "\n"
            "image editing (each needs the matching decoder, e.g. kandinsky-2-2-decoder-inpaint):\n"
            "  -i, --init-image FILE        image to image: start from this picture\n"
            "      --strength F             how much to change it, 0..1 (0.3)\n"
            "  -m, --mask FILE              inpainting (with --init-image): white = repaint, black = keep\n"
            "      --invert-mask            black = repaint instead\n"
            "      --soft-mask              blend the result into the original with the gray mask as weights\n"
            "                               (seamless edges; not in diffusers, off by default)\n"
            "      --hint FILE              ControlNet depth map (controlnet-depth decoder)\n"
            "      --prior-image FILE       prior emb2emb: start the prior from this image's CLIP embedding\n"
            "      --prior-strength F       how far the prior moves from it, 0..1 (0.3)\n"
            "      --mix KIND:VALUE:WEIGHT  mix prompts and images, e.g. --mix \"text:a cat:0.7\"\n"
            "                               --mix \"image:photo.png:0.3\" (repeatable; replaces -p)\n"
            "  -t, --threads N              CPU threads (default: KD_THREADS or all cores)\n"
            "      --precision fp32|bf16    matrix products in fp32 (default) or with bf16 operands and fp32\n"
            "                               accumulation (AVX512_BF16 CPUs: ~1.6x faster U-Net; others: fp32)\n"
            "      --weights stored|q8      keep Linear/conv weights as stored (default) or quantise them to\n"
            "                               8 bits at load (q8_0: ~1/4 of fp32 memory; see docs/QUANTIZATION.md)\n"
            "      --sampler NAME           decoder sampler (default: the decoder's scheduler_config.json,\n"
            "                               DDPM for 2.2 / DDIM for 2.1; dpm++2m at --steps 25 is 4x faster;\n"
            "                               2.0: ddim (default), p or plms, the original's samplers)\n"
            "      --prior-sampler NAME     prior sampler (default unclip)\n"
            "      --eta F                  2.0 ddim_sampler eta (0: what the original runs; it drops its\n"
            "                               ddim_eta argument)\n"
            "      --decoder-scheduler DIR  the decoder's scheduler config from this subfolder, e.g.\n"
            "                               ddpm_scheduler (kandinsky-2-1); default scheduler\n"
            "      --low-memory             load each stage only while it runs\n"
            "  -q, --quiet                  no progress bar\n"
            "\n"
            "samplers: %s\n",
            kd_sampler_list());
}

#define MAX_MIX 16

typedef struct gen_opts {
    kd_gen_params g;
    const char *prior, *decoder, *output, *decoder_sched, *version;
    const char *model_version; /* what the loaded pipeline is, for the PNG parameters */
    int low_memory, quiet, seed_given, guidance_given;
    compute_opts c;
    const char *init_path, *mask_path, *hint_path, *prior_image_path;
    const char *mix_spec[MAX_MIX];
    int n_mix;
} gen_opts;

static int parse_generate(int argc, char **argv, gen_opts *o) {
    o->g = kd_gen_params_default();
    o->g.prompt = NULL;
    o->prior = getenv("KD_PRIOR");
    o->decoder = getenv("KD_DECODER");
    o->output = "output.png";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        const char *v = has_val ? argv[i + 1] : NULL;
#define OPT(s, l) (!strcmp(a, s) || !strcmp(a, l))
#define NEED_VAL()                                                            \
    do {                                                                      \
        if (!has_val) {                                                       \
            fprintf(stderr, "kandinsky: %s needs a value\n", a);             \
            return -1;                                                        \
        }                                                                     \
        i++;                                                                  \
    } while (0)
        if (OPT("-h", "--help")) {
            usage_generate(stdout);
            exit(0);
        } else if (OPT("-p", "--prompt")) {
            NEED_VAL();
            o->g.prompt = v;
        } else if (!strcmp(a, "--negative-prompt")) {
            NEED_VAL();
            o->g.negative_prompt = v;
        } else if (!strcmp(a, "--prior")) {
            NEED_VAL();
            o->prior = v;
        } else if (!strcmp(a, "--decoder")) {
            NEED_VAL();
            o->decoder = v;
        } else if (OPT("-W", "--width")) {
            NEED_VAL();
            if (parse_int(a, v, 1, 8192, &o->g.width)) return -1;
        } else if (OPT("-H", "--height")) {
            NEED_VAL();
            if (parse_int(a, v, 1, 8192, &o->g.height)) return -1;
        } else if (!strcmp(a, "--steps")) {
            NEED_VAL();
            if (parse_int(a, v, 1, 1000, &o->g.steps)) return -1;
        } else if (!strcmp(a, "--prior-steps")) {
            NEED_VAL();
            if (parse_int(a, v, 2, 1000, &o->g.prior_steps)) return -1;
        } else if (OPT("-g", "--guidance")) {
            NEED_VAL();
            if (parse_float(a, v, &o->g.guidance_scale)) return -1;
            o->guidance_given = 1;
        } else if (!strcmp(a, "--prior-guidance")) {
            NEED_VAL();
            if (parse_float(a, v, &o->g.prior_guidance_scale)) return -1;
        } else if (OPT("-s", "--seed")) {
            NEED_VAL();
            if (parse_u64(a, v, &o->g.seed)) return -1;
            o->seed_given = 1;
        } else if (OPT("-n", "--num-images")) {
            NEED_VAL();
            if (parse_int(a, v, 1, 64, &o->g.num_images)) return -1;
        } else if (OPT("-o", "--output")) {
            NEED_VAL();
            o->output = v;
        } else if (OPT("-t", "--threads")) {
            NEED_VAL();
            if (parse_int(a, v, 1, 1024, &o->c.threads)) return -1;
        } else if (OPT("-i", "--init-image")) {
            NEED_VAL();
            o->init_path = v;
        } else if (!strcmp(a, "--strength")) {
            NEED_VAL();
            if (parse_float(a, v, &o->g.strength)) return -1;
        } else if (OPT("-m", "--mask")) {
            NEED_VAL();
            o->mask_path = v;
        } else if (!strcmp(a, "--invert-mask")) {
            o->g.invert_mask = 1;
        } else if (!strcmp(a, "--soft-mask")) {
            o->g.soft_mask = 1;
        } else if (!strcmp(a, "--prior-image")) {
            NEED_VAL();
            o->prior_image_path = v;
        } else if (!strcmp(a, "--prior-strength")) {
            NEED_VAL();
            if (parse_float(a, v, &o->g.prior_strength)) return -1;
        } else if (!strcmp(a, "--hint")) {
            NEED_VAL();
            o->hint_path = v;
        } else if (!strcmp(a, "--mix")) {
            NEED_VAL();
            if (o->n_mix == MAX_MIX) {
                fprintf(stderr, "kandinsky: at most %d --mix items\n", MAX_MIX);
                return -1;
            }
            o->mix_spec[o->n_mix++] = v;
        } else if (!strcmp(a, "--model-version")) {
            NEED_VAL();
            if (strcmp(v, "2.0") && strcmp(v, "2.1") && strcmp(v, "2.2")) {
                fprintf(stderr, "kandinsky: --model-version expects 2.0, 2.1 or 2.2, got '%s'\n", v);
                return -1;
            }
            o->version = v;
        } else if (!strcmp(a, "--eta")) {
            NEED_VAL();
            if (parse_float(a, v, &o->g.eta)) return -1;
            if (!(o->g.eta >= 0.0f && o->g.eta <= 1.0f)) {
                fprintf(stderr, "kandinsky: --eta must be in [0, 1], got %s\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--sampler") || !strcmp(a, "--prior-sampler")) {
            NEED_VAL();
            static const char *const s20[] = {"ddim_sampler", "p_sampler", "plms_sampler", "p", "plms", NULL};
            int is20 = 0;
            for (int k = 0; s20[k] && !strcmp(a, "--sampler"); k++) is20 |= !strcmp(v, s20[k]);
            if (!is20 && !kd_sampler_exists(v)) {
                fprintf(stderr, "kandinsky: %s: unknown sampler '%s' (one of: %s)\n", a, v, kd_sampler_list());
                return -1;
            }
            if (!strcmp(a, "--sampler")) o->g.sampler = v;
            else o->g.prior_sampler = v;
        } else if (!strcmp(a, "--precision") || !strcmp(a, "--weights")) {
            NEED_VAL();
            if (parse_compute_opt(a, v, &o->c)) return -1;
        } else if (!strcmp(a, "--decoder-scheduler")) {
            NEED_VAL();
            o->decoder_sched = v;
        } else if (!strcmp(a, "--low-memory")) {
            o->low_memory = 1;
        } else if (OPT("-q", "--quiet")) {
            o->quiet = 1;
        } else {
            fprintf(stderr, "kandinsky: unknown option '%s' (see kandinsky generate --help)\n", a);
            return -1;
        }
#undef OPT
#undef NEED_VAL
    }
    if (!o->g.prompt && o->n_mix == 0) {
        fprintf(stderr, "kandinsky: generate needs a prompt (-p \"...\") or --mix items\n");
        return -1;
    }
    if (!o->g.prompt) o->g.prompt = "";
    if (o->mask_path && !o->init_path) {
        fprintf(stderr, "kandinsky: --mask needs the image to paint into (--init-image)\n");
        return -1;
    }
    int v21 = o->version && !strcmp(o->version, "2.1"), v20 = o->version && !strcmp(o->version, "2.0");
    /* resolved (cache / download) in cmd_generate */
    if (!o->prior || !*o->prior) o->prior = v21 ? DEFAULT_PRIOR_21 : DEFAULT_PRIOR;
    if (!o->decoder || !*o->decoder) o->decoder = v20 ? DEFAULT_MODEL_20 : v21 ? DEFAULT_DECODER_21 : DEFAULT_DECODER;
    return 0;
}

static uint64_t random_seed(void) {
    uint64_t s = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&s, sizeof s, 1, f) != 1) s ^= 0x9e3779b97f4a7c15ull;
        fclose(f);
    }
    return s % 4294967296ull; /* a seed a user can type back; torch only uses the low 32 bits */
}

static void output_name(const char *base, int index, int count, char *buf, size_t cap) {
    if (count == 1) {
        snprintf(buf, cap, "%s", base);
        return;
    }
    const char *dot = strrchr(base, '.'), *slash = strrchr(base, '/');
    if (!dot || (slash && dot < slash)) dot = base + strlen(base);
    snprintf(buf, cap, "%.*s-%d%s", (int)(dot - base), base, index + 1, dot);
}

/* "text:a cat:0.7" / "image:photo.png:0.3": the weight is after the LAST colon, so prompts and
 * paths may contain colons. */
static int parse_mix(kd_ctx *ctx, const char *spec, kd_mix_item *it, kd_image *img, char **text) {
    const char *colon = strchr(spec, ':'), *last = strrchr(spec, ':');
    float w;
    if (!colon || colon == last || parse_float("--mix weight", last + 1, &w)) {
        fprintf(stderr, "kandinsky: --mix expects text:PROMPT:WEIGHT or image:FILE:WEIGHT, got '%s'\n", spec);
        return -1;
    }
    size_t n = (size_t)(last - colon - 1);
    *text = malloc(n + 1);
    if (!*text) return -1;
    memcpy(*text, colon + 1, n);
    (*text)[n] = 0;
    *it = (kd_mix_item){.weight = w};
    if (!strncmp(spec, "text:", 5)) {
        it->text = *text;
    } else if (!strncmp(spec, "image:", 6)) {
        if (kd_image_read(ctx, *text, img) != KD_OK) return fail(ctx, "--mix image"), -1;
        it->image = img;
    } else {
        fprintf(stderr, "kandinsky: --mix kind must be text or image, got '%s'\n", spec);
        return -1;
    }
    return 0;
}

/* Loads the editing inputs named on the command line. */
static int load_inputs(kd_ctx *ctx, gen_opts *o, kd_image imgs[4], kd_image *mix_imgs, kd_mix_item *mix,
                       char **mix_text) {
    const char *paths[4] = {o->init_path, o->mask_path, o->hint_path, o->prior_image_path};
    const char *what[4] = {"--init-image", "--mask", "--hint", "--prior-image"};
    for (int k = 0; k < 4; k++)
        if (paths[k] && kd_image_read(ctx, paths[k], &imgs[k]) != KD_OK) return fail(ctx, what[k]), -1;
    if (o->init_path) o->g.init_image = &imgs[0];
    if (o->mask_path) o->g.mask_image = &imgs[1];
    if (o->hint_path) o->g.hint_image = &imgs[2];
    if (o->prior_image_path) o->g.prior_image = &imgs[3];
    for (int k = 0; k < o->n_mix; k++)
        if (parse_mix(ctx, o->mix_spec[k], &mix[k], &mix_imgs[k], &mix_text[k])) return -1;
    o->g.mix = mix;
    o->g.n_mix = o->n_mix;
    return 0;
}

static void print_timings(const progress *pr, double t_load) {
    fprintf(stderr, "timings: load %.2fs", t_load);
    for (int i = 0; i <= pr->n_stages && i < 4; i++)
        if (pr->stage_name[i]) fprintf(stderr, ", %s %.2fs", pr->stage_name[i], pr->stage_time[i]);
    fprintf(stderr, "\n");
}

/* Writes the images with the parameters in a PNG text chunk; returns the exit code. */
static int write_images(kd_ctx *ctx, const gen_opts *o, kd_image *imgs) {
    char params[4096], seed[32], name[4096];
    snprintf(seed, sizeof seed, "%" PRIu64, o->g.seed);
    snprintf(params, sizeof params,
             "prompt: %s\nnegative prompt: %s\nsize: %dx%d\nsteps: %d\nprior steps: %d\nguidance: %g\n"
             "prior guidance: %g\nseed: %s\nprior: %s\ndecoder: %s\ndecoder scheduler: %s\nsampler: %s\nprior sampler: %s\n"
             "init image: %s\nstrength: %g\nmask: %s\nhint: %s\nmix items: %d\nprecision: %s\nweights: %s\n"
             "model version: %s\neta: %g\nengine: kandinsky.c %s",
             o->g.prompt, o->g.negative_prompt ? o->g.negative_prompt : "(none)", o->g.width, o->g.height, o->g.steps,
             o->g.prior_steps, (double)o->g.guidance_scale, (double)o->g.prior_guidance_scale, seed, o->prior,
             o->decoder, o->decoder_sched ? o->decoder_sched : "scheduler", o->g.sampler ? o->g.sampler : "(scheduler config)",
             o->g.prior_sampler ? o->g.prior_sampler : "unclip", o->init_path ? o->init_path : "(none)", (double)o->g.strength,
             o->mask_path ? o->mask_path : "(none)", o->hint_path ? o->hint_path : "(none)", o->n_mix,
             kd_precision_name(kd_ctx_precision(ctx)), kd_weight_mode_name(o->c.weights),
             o->model_version ? o->model_version : "auto", (double)o->g.eta, kd_version());
    const char *text[] = {"parameters", params, "Software", "kandinsky.c", NULL};
    int rc = 0;
    for (int i = 0; i < o->g.num_images; i++) {
        output_name(o->output, i, o->g.num_images, name, sizeof name);
        if (kd_image_write(ctx, name, &imgs[i], text) != KD_OK) rc = fail(ctx, "writing the image");
        else printf("%s\n", name);
    }
    return rc;
}

static int cmd_generate(int argc, char **argv) {
    gen_opts o = {0};
    if (parse_generate(argc, argv, &o)) return EXIT_USAGE;
    if (!o.seed_given) o.g.seed = random_seed();
    kd_ctx *ctx = make_ctx_with(&o.c);
    if (!ctx) return EXIT_FAIL;
    kd_image inputs[4] = {{0}}, mix_imgs[MAX_MIX] = {{0}}, imgs[64] = {{0}};
    kd_mix_item mix[MAX_MIX];
    char *mix_text[MAX_MIX] = {0};
    kd_pipeline *p = NULL;
    progress pr = {.quiet = o.quiet};
    dl_progress dp = {.quiet = o.quiet};
    char *prior_dir = NULL, *decoder_dir = NULL;
    int rc = 0;
    if (load_inputs(ctx, &o, inputs, mix_imgs, mix, mix_text)) {
        rc = EXIT_USAGE;
        goto done;
    }
    o.g.progress = on_progress;
    o.g.progress_user = &pr;
    fprintf(stderr, "seed %" PRIu64 ", %d threads, %s compute, %s weights\n", o.g.seed, kd_ctx_threads(ctx),
            kd_precision_name(kd_ctx_precision(ctx)), kd_weight_mode_name(o.c.weights));
    int v20 = o.version && !strcmp(o.version, "2.0");
    const char *dec_kind = v20 ? (o.mask_path ? "kandinsky2.0-inpaint" : "kandinsky2.0") : "decoder";
    if (kd_model_resolve(ctx, o.decoder, dec_kind, on_download, &dp, &decoder_dir) != KD_OK) {
        rc = fail(ctx, "finding the models");
        goto done;
    }
    kd_model_version dv;
    v20 = v20 || (kd_decoder_detect_version(ctx, decoder_dir, &dv) == KD_OK && dv == KD_MODEL_VERSION_2_0);
    if (v20 && !o.guidance_given) o.g.guidance_scale = 7.0f; /* the original generate_text2img's default */
    if (!v20 && kd_model_resolve(ctx, o.prior, "prior", on_download, &dp, &prior_dir) != KD_OK) {
        rc = fail(ctx, "finding the models");
        goto done;
    }
    kd_model_version want = KD_MODEL_VERSION_AUTO, found;
    if (o.version) kd_model_version_parse(o.version, &want);
    if (want != KD_MODEL_VERSION_AUTO && kd_decoder_detect_version(ctx, decoder_dir, &found) == KD_OK && found != want) {
        fprintf(stderr, "kandinsky: --model-version %s, but the decoder %s is Kandinsky %s\n", o.version, o.decoder,
                kd_model_version_name(found));
        rc = EXIT_USAGE;
        goto done;
    }
    double t0 = now_s();
    if (kd_pipeline_load_version(ctx, prior_dir, decoder_dir, want, o.low_memory, &p) != KD_OK) {
        rc = fail(ctx, "loading the models");
        goto done;
    }
    if (o.decoder_sched && kd_pipeline_set_decoder_scheduler(ctx, p, o.decoder_sched) != KD_OK) {
        rc = fail(ctx, "loading the decoder scheduler");
        goto done;
    }
    double t_load = now_s() - t0;
    o.model_version = kd_model_version_name(kd_pipeline_model_version(p));
    if (v20) o.prior = "(none: Kandinsky 2.0)";
    pr.t0 = now_s();
    if (kd_generate(ctx, p, &o.g, imgs) != KD_OK) {
        rc = fail(ctx, "generation failed");
        goto done;
    }
    rc = write_images(ctx, &o, imgs);
    print_timings(&pr, t_load);
done:
    for (int i = 0; i < 64; i++) kd_image_free(&imgs[i]);
    kd_pipeline_free(p);
    free(prior_dir);
    free(decoder_dir);
    for (int k = 0; k < 4; k++) kd_image_free(&inputs[k]);
    for (int k = 0; k < MAX_MIX; k++) kd_image_free(&mix_imgs[k]), free(mix_text[k]);
    kd_ctx_free(ctx);
    return rc;
}

/* ---- MoVQ round trips ---- */

/* --model DIR IN OUT [-t N] [--latents-out F] (the last only when lat_out is not NULL); 0 or EXIT_USAGE. */
static int parse_movq_args(int argc, char **argv, const char **model, const char **in, const char **out,
                           const char **lat_out, compute_opts *c, const char *usage_line) {
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) *model = argv[++i];
        else if (lat_out && !strcmp(argv[i], "--latents-out") && i + 1 < argc) *lat_out = argv[++i];
        else if ((!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) && i + 1 < argc) {
            if (parse_int(argv[i], argv[i + 1], 1, 1024, &c->threads)) return EXIT_USAGE;
            i++;
        } else if ((!strcmp(argv[i], "--precision") || !strcmp(argv[i], "--weights")) && i + 1 < argc) {
            if (parse_compute_opt(argv[i], argv[i + 1], c)) return EXIT_USAGE;
            i++;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "kandinsky: unknown option '%s'\n", argv[i]);
            return EXIT_USAGE;
        } else if (!*in) *in = argv[i];
        else if (!*out) *out = argv[i];
        else return fprintf(stderr, "kandinsky: too many arguments\n"), EXIT_USAGE;
    }
    if (!*model || !*in || !*out) {
        fprintf(stderr, "usage: %s\n", usage_line);
        return EXIT_USAGE;
    }
    return 0;
}

static int cmd_autoencode(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *out = NULL, *lat_out = NULL;
    compute_opts c = {0, KD_PRECISION_FP32, KD_WEIGHTS_AS_STORED};
    if (parse_movq_args(argc, argv, &model, &in, &out, &lat_out, &c,
                        "kandinsky autoencode --model MOVQ_DIR IN.(png|jpg) OUT.png [--latents-out F.safetensors]"))
        return EXIT_USAGE;
    kd_ctx *ctx = make_ctx_with(&c);
    if (!ctx) return EXIT_FAIL;
    int rc = kd_movq_autoencode_file(ctx, model, in, out, lat_out) == KD_OK ? 0 : fail(ctx, "autoencode");
    kd_ctx_free(ctx);
    return rc;
}

static int cmd_decode(int argc, char **argv) {
    const char *model = NULL, *in = NULL, *out = NULL;
    compute_opts c = {0, KD_PRECISION_FP32, KD_WEIGHTS_AS_STORED};
    if (parse_movq_args(argc, argv, &model, &in, &out, NULL, &c,
                        "kandinsky decode --model MOVQ_DIR LATENTS.safetensors OUT.png"))
        return EXIT_USAGE;
    kd_ctx *ctx = make_ctx_with(&c);
    if (!ctx) return EXIT_FAIL;
    int rc = kd_movq_decode_file(ctx, model, in, out) == KD_OK ? 0 : fail(ctx, "decode");
    kd_ctx_free(ctx);
    return rc;
}

static int cmd_inspect(int argc, char **argv) {
    if (argc != 1) {
        fprintf(stderr, "usage: kandinsky inspect MODEL_DIR_OR_FILE\n");
        return EXIT_USAGE;
    }
    kd_ctx *ctx = make_ctx(1);
    if (!ctx) return EXIT_FAIL;
    int rc = kd_inspect(ctx, argv[0], stdout) == KD_OK ? 0 : fail(ctx, "inspect");
    kd_ctx_free(ctx);
    return rc;
}

static void on_convert(void *user, const char *line) {
    (void)user;
    printf("%s\n", line);
}

static int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    compute_opts c = {0, KD_PRECISION_FP32, KD_WEIGHTS_AS_STORED};
    int have_weights = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: kandinsky convert --weights q8 IN_DIR OUT_DIR\n"
                   "  a copy of the model folder IN_DIR (a Hub repo folder or one component) whose Linear\n"
                   "  and conv weights are stored as q8_0 (docs/QUANTIZATION.md): it loads with no\n"
                   "  conversion cost, in about 1/4 of the fp32 size. Other files are copied.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--weights") && i + 1 < argc) {
            if (parse_compute_opt(argv[i], argv[i + 1], &c)) return EXIT_USAGE;
            have_weights = 1;
            i++;
        } else if ((!strcmp(argv[i], "-t") || !strcmp(argv[i], "--threads")) && i + 1 < argc) {
            if (parse_int(argv[i], argv[i + 1], 1, 1024, &c.threads)) return EXIT_USAGE;
            i++;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "kandinsky convert: unknown option '%s'\n", argv[i]);
            return EXIT_USAGE;
        } else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return fprintf(stderr, "kandinsky convert: too many arguments\n"), EXIT_USAGE;
    }
    if (!in || !out || !have_weights || c.weights != KD_WEIGHTS_Q8) {
        fprintf(stderr, "usage: kandinsky convert --weights q8 IN_DIR OUT_DIR\n");
        return EXIT_USAGE;
    }
    kd_ctx *ctx = make_ctx_with(&c);
    if (!ctx) return EXIT_FAIL;
    int rc = kd_convert_weights(ctx, in, out, c.weights, on_convert, NULL) == KD_OK ? 0 : fail(ctx, "convert");
    kd_ctx_free(ctx);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: kandinsky <command> [options]\n"
            "\n"
            "commands:\n"
            "  generate -p PROMPT ...   Kandinsky 2.2 text to image (see kandinsky generate --help)\n"
            "  autoencode --model DIR IN OUT.png [--latents-out F.safetensors]\n"
            "                           MoVQ encode + decode round trip of an image\n"
            "  decode --model DIR LATENTS.safetensors OUT.png\n"
            "                           MoVQ decode of latents ([1, C, h, w] tensor 'latents')\n"
            "  serve [options]          HTTP server: POST /generate with JSON → PNG (see kandinsky serve --help)\n"
            "  convert --weights q8 IN OUT  copy of a model folder with 8-bit (q8_0) Linear/conv weights\n"
            "  inspect PATH             tensors (name, dtype, shape) of a .safetensors file, a sharded\n"
            "                           *.safetensors.index.json, or a model folder, and its config.json\n"
            "  --version                print the version\n"
            "\n"
            "environment: KD_THREADS=N sets the number of CPU threads (default: all cores)\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("kandinsky %s\n", kd_version());
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 2, argv + 2);
    if (!strcmp(cmd, "autoencode")) return cmd_autoencode(argc - 2, argv + 2);
    if (!strcmp(cmd, "decode")) return cmd_decode(argc - 2, argv + 2);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 2, argv + 2);
    if (!strcmp(cmd, "serve")) return kd_cli_serve(argc - 2, argv + 2);
    fprintf(stderr, "kandinsky: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}
