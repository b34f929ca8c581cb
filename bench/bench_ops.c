/* bench_ops: times single CPU ops of kandinsky.c (backend/ops.h) on Kandinsky 2.2 shapes.
 *
 *   bench_ops [--threads N] [--quick] [--min-time S] [--list] [SPEC ...]
 *
 * A SPEC names one op and its shape; bench/bench_torch.py takes the same specs, and the spec text
 * is the key run_ops.sh joins the two result sets on:
 *   conv:B,Cin,Cout,H,W          conv2d 3×3, stride 1, pad 1, with bias     FLOP 2·B·Cout·Cin·9·H·W
 *   gemm:M,K,N                   kd_linear y[M,N] = x[M,K]·W[N,K]ᵀ + b, F32  FLOP 2·M·N·K
 *   gn:B,C,H,W,G                 kd_group_norm, eps 1e-5                     GB/s of 2·B·C·H·W floats
 *   gn_silu:B,C,H,W,G            kd_group_norm_silu                          same
 *   attn:B,H,d,Lq,Lkv,Lpre[,causal]  kd_attention, keys = Lpre pre tokens + Lkv, scale 1/√d
 *                                                                          FLOP 4·B·H·Lq·(Lpre+Lkv)·d
 * Timing: one warm-up call, then calls until at least 3 were made and at least --min-time seconds
 * (default 1, --quick 0.25) have passed; the median is reported.
 *
 * Output (stdout): tab-separated machine lines
 *   meta<TAB>key<TAB>value
 *   result<TAB>impl<TAB>op<TAB>spec<TAB>median_ms<TAB>min_ms<TAB>reps<TAB>rate<TAB>unit<TAB>other_cores
 * other_cores: how many cores other processes kept busy, on average, during the timed calls
 * (machine busy time from /proc/stat minus this process's own; -1 if unknown). Above ~0.15 the
 * numbers of that shape were disturbed.
 * then a human-readable table (lines not starting with "meta"/"result"). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/ops.h"
#include "bench_util.h"

enum { OP_CONV, OP_GEMM, OP_GN, OP_GN_SILU, OP_ATTN };
static const char *const op_names[] = {"conv", "gemm", "gn", "gn_silu", "attn"};
static const int op_nargs[] = {5, 3, 5, 5, 6};

typedef struct {
    int op;
    int64_t v[6];
    int causal;
    char text[128];
} spec_t;

typedef struct {
    spec_t s;
    double median_ms, min_ms, rate;
    double other_cores; /* cores other processes kept busy during the timed calls (-1 = unknown) */
    int reps;
    const char *unit;
} result_t;

/* Full run: the shapes of the Kandinsky 2.2 U-Net at 512² (latent 64², batch 2 = CFG), the prior
 * (81 tokens, 2048 wide, batch 2) and the MoVQ decoder's mid attention (64² latent = 4096 tokens).
 * Keep bench_torch.py's lists in step with these. */
static const char *const full_specs[] = {
    "conv:2,384,384,64,64",   "conv:2,768,768,32,32",   "conv:2,1152,1152,16,16", "conv:2,1536,1536,8,8",
    "conv:2,1152,384,64,64",  "conv:2,2688,1152,16,16", "conv:2,3072,1536,8,8",   "gemm:2048,768,768",
    "gemm:512,1152,1152",     "gemm:128,1536,1536",     "gemm:1536,1536,4096",    "gemm:768,3456,2048",
    "gemm:384,1024,3456",     "gemm:162,2048,2048",     "gemm:162,2048,8192",     "gemm:162,8192,2048",
    "gn:2,384,64,64,32",      "gn:2,1536,8,8,32",       "gn_silu:2,384,64,64,32", "attn:2,12,64,1024,1024,32",
    "attn:2,18,64,256,256,32", "attn:2,24,64,64,64,32", "attn:2,32,64,81,81,0,causal",
    "attn:1,1,512,4096,4096,0",
};
/* --quick: a smoke test, the whole run_ops.sh well under a minute. */
static const char *const quick_specs[] = {
    "conv:2,384,384,32,32",    "conv:2,1536,1536,8,8",        "gemm:512,1152,1152",      "gemm:162,2048,2048",
    "gn:2,384,64,64,32",       "attn:2,18,64,256,256,32",     "attn:2,32,64,81,81,0,causal",
    "attn:1,1,512,1024,1024,0",
};

static int parse_spec(const char *str, spec_t *s) {
    memset(s, 0, sizeof *s);
    if (strlen(str) >= sizeof s->text) return -1;
    strcpy(s->text, str);
    const char *colon = strchr(str, ':');
    if (!colon) return -1;
    size_t nl = (size_t)(colon - str);
    s->op = -1;
    for (int i = 0; i < 5; i++)
        if (strlen(op_names[i]) == nl && strncmp(str, op_names[i], nl) == 0) s->op = i;
    if (s->op < 0) return -1;
    const char *p = colon + 1;
    int n = op_nargs[s->op];
    for (int i = 0; i < n; i++) {
        char *end;
        long long x = strtoll(p, &end, 10);
        if (end == p || x < 0 || x > (1LL << 40)) return -1;
        s->v[i] = x;
        p = end;
        if (i + 1 < n) {
            if (*p != ',') return -1;
            p++;
        }
    }
    if (s->op == OP_ATTN && strcmp(p, ",causal") == 0) {
        s->causal = 1;
        p += strlen(p);
    }
    if (*p) return -1;
    for (int i = 0; i < n; i++)
        if (s->v[i] == 0 && !(s->op == OP_ATTN && i == 5)) return -1; /* only Lpre may be 0 */
    if ((s->op == OP_GN || s->op == OP_GN_SILU) && s->v[1] % s->v[4]) return -1;
    return 0;
}

/* Busy CPU-seconds of the whole machine (user nice system irq softirq steal from /proc/stat) and
 * of this process; their difference over the timed calls says what else ran meanwhile. */
static double machine_busy_s(void) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                   &v[6], &v[7]);
    fclose(f);
    if (n != 8) return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)(hz > 0 ? hz : 100);
}

static double own_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545F4914F6CDD1Dull;
    return (float)((double)(r >> 40) / (double)(1ull << 23) - 1.0);
}

static float *alloc_fill(int64_t n, float scale) {
    size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (!p) {
        fprintf(stderr, "bench_ops: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) p[i] = scale * frand();
    return p;
}

typedef struct {
    kd_backend *be;
    const spec_t *s;
    float *x, *y, *wdata, *b, *gamma, *beta, *kp, *vp, *k, *v;
    kd_tensor w;
    kd_attn_params ap;
} job_t;

static void job_setup(job_t *j, kd_backend *be, const spec_t *s) {
    memset(j, 0, sizeof *j);
    j->be = be;
    j->s = s;
    const int64_t *v = s->v;
    switch (s->op) {
    case OP_CONV: { /* B, Cin, Cout, H, W */
        int64_t K = v[1] * 9;
        j->x = alloc_fill(v[0] * v[1] * v[3] * v[4], 1.0f);
        j->y = alloc_fill(v[0] * v[2] * v[3] * v[4], 0.0f);
        j->wdata = alloc_fill(v[2] * K, 1.0f / sqrtf((float)K));
        j->b = alloc_fill(v[2], 0.1f);
        j->w = (kd_tensor){KD_F32, 4, {v[2], v[1], 3, 3}, j->wdata, NULL};
        break;
    }
    case OP_GEMM: /* M, K, N */
        j->x = alloc_fill(v[0] * v[1], 1.0f);
        j->y = alloc_fill(v[0] * v[2], 0.0f);
        j->wdata = alloc_fill(v[2] * v[1], 1.0f / sqrtf((float)v[1]));
        j->b = alloc_fill(v[2], 0.1f);
        j->w = (kd_tensor){KD_F32, 2, {v[2], v[1]}, j->wdata, NULL};
        break;
    case OP_GN:
    case OP_GN_SILU: /* B, C, H, W, G */
        j->x = alloc_fill(v[0] * v[1] * v[2] * v[3], 1.0f);
        j->y = alloc_fill(v[0] * v[1] * v[2] * v[3], 0.0f);
        j->gamma = alloc_fill(v[1], 1.0f);
        j->beta = alloc_fill(v[1], 0.1f);
        break;
    case OP_ATTN: { /* B, H, d, Lq, Lkv, Lpre; q, k, v as [B, L, H·d] (diffusers' layout) */
        int64_t B = v[0], C = v[1] * v[2], Lq = v[3], Lkv = v[4], Lpre = v[5];
        j->x = alloc_fill(B * Lq * C, 1.0f);
        j->k = alloc_fill(B * Lkv * C, 1.0f);
        j->v = alloc_fill(B * Lkv * C, 1.0f);
        if (Lpre) {
            j->kp = alloc_fill(B * Lpre * C, 1.0f);
            j->vp = alloc_fill(B * Lpre * C, 1.0f);
        }
        j->y = alloc_fill(B * Lq * C, 0.0f);
        j->ap = (kd_attn_params){.batch = B, .heads = v[1], .head_dim = v[2], .q_len = Lq, .kv_len = Lkv,
                                 .pre_len = Lpre, .q = j->x, .q_stride = C, .k = j->k, .v = j->v,
                                 .kv_stride = C, .k_pre = j->kp, .v_pre = j->vp, .pre_stride = C,
                                 .causal = s->causal, .scale = 1.0f / sqrtf((float)v[2])};
        break;
    }
    }
}

static void job_free(job_t *j) {
    float *bufs[] = {j->x, j->y, j->wdata, j->b, j->gamma, j->beta, j->kp, j->vp, j->k, j->v};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static kd_status job_run(job_t *j, kd_err *e) {
    const int64_t *v = j->s->v;
    switch (j->s->op) {
    case OP_CONV: {
        kd_conv2d_params p = kd_conv2d_same(3);
        return kd_conv2d(j->be, j->y, j->x, v[0], v[1], v[3], v[4], &j->w, j->b, &p, e);
    }
    case OP_GEMM:
        return kd_linear(j->be, j->y, j->x, v[0], &j->w, j->b, e);
    case OP_GN:
        return kd_group_norm(j->be, j->y, j->x, v[0], v[1], v[2] * v[3], (int)v[4], 1e-5f, j->gamma, j->beta, e);
    case OP_GN_SILU:
        return kd_group_norm_silu(j->be, j->y, j->x, v[0], v[1], v[2] * v[3], (int)v[4], 1e-5f, j->gamma, j->beta, e);
    case OP_ATTN:
        return kd_attention(j->be, j->y, &j->ap, e);
    }
    return KD_ERR_INTERNAL;
}

/* Work of one call: FLOP for matrix ops, bytes (one read + one write of the tensor) for norms. */
static double spec_work(const spec_t *s, const char **unit) {
    const int64_t *v = s->v;
    switch (s->op) {
    case OP_CONV:
        *unit = "GFLOP/s";
        return 2.0 * v[0] * v[2] * v[1] * 9.0 * v[3] * v[4];
    case OP_GEMM:
        *unit = "GFLOP/s";
        return 2.0 * v[0] * v[1] * v[2];
    case OP_GN:
    case OP_GN_SILU:
        *unit = "GB/s";
        return 2.0 * 4.0 * v[0] * v[1] * v[2] * v[3];
    case OP_ATTN:
        *unit = "GFLOP/s";
        return 4.0 * v[0] * v[1] * v[3] * (double)(v[4] + v[5]) * v[2];
    }
    *unit = "?";
    return 0;
}

static int bench_one(kd_backend *be, const spec_t *s, double min_time, result_t *r) {
    job_t j;
    kd_err e;
    kd_err_clear(&e);
    job_setup(&j, be, s);
    if (job_run(&j, &e) != KD_OK) { /* warm-up */
        fprintf(stderr, "bench_ops: %s: %s\n", s->text, e.msg);
        job_free(&j);
        return -1;
    }
    size_t cap = 64, n = 0;
    double *t = malloc(cap * sizeof *t);
    double busy0 = machine_busy_s(), own0 = own_cpu_s();
    double t_start = now();
    while (n < 3 || (now() - t_start < min_time && n < 100000)) {
        double t0 = now();
        job_run(&j, &e);
        double dt = now() - t0;
        if (n == cap) {
            cap *= 2;
            t = realloc(t, cap * sizeof *t);
        }
        t[n++] = dt;
    }
    qsort(t, n, sizeof *t, cmp_double);
    double med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    r->s = *s;
    r->median_ms = 1e3 * med;
    r->min_ms = 1e3 * t[0];
    r->reps = (int)n;
    double wall = now() - t_start, busy1 = machine_busy_s(), own1 = own_cpu_s();
    r->other_cores = busy0 < 0 || busy1 < 0 ? -1 : ((busy1 - busy0) - (own1 - own0)) / wall;
    if (r->other_cores < 0 && busy0 >= 0 && busy1 >= 0) r->other_cores = 0;
    r->rate = spec_work(s, &r->unit) / med * 1e-9;
    free(t);
    job_free(&j);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_ops [--threads N] [--quick] [--min-time S] [--list] [SPEC ...]\n"
            "  SPEC: conv:B,Cin,Cout,H,W | gemm:M,K,N | gn:B,C,H,W,G | gn_silu:B,C,H,W,G |\n"
            "        attn:B,H,d,Lq,Lkv,Lpre[,causal]\n"
            "  --threads N   pool threads (default: KD_THREADS or all cores)\n"
            "  --quick       short smoke-test list, --min-time 0.25\n"
            "  --list        print the specs that would run, one a line, and exit\n");
}

int main(int argc, char **argv) {
    int threads = 0, quick = 0, list = 0;
    double min_time = -1;
    int nspec = 0;
    spec_t *specs = calloc((size_t)argc + 64, sizeof *specs);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
            if (threads <= 0) {
                fprintf(stderr, "bench_ops: bad --threads\n");
                return 2;
            }
        } else if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--min-time") && i + 1 < argc) {
            min_time = atof(argv[++i]);
        } else if (!strcmp(a, "--list")) {
            list = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-') {
            usage(stderr);
            return 2;
        } else {
            if (parse_spec(a, &specs[nspec]) != 0) {
                fprintf(stderr, "bench_ops: bad spec '%s'\n", a);
                usage(stderr);
                return 2;
            }
            nspec++;
        }
    }
    if (nspec == 0) {
        const char *const *l = quick ? quick_specs : full_specs;
        int n = quick ? (int)(sizeof quick_specs / sizeof *quick_specs) : (int)(sizeof full_specs / sizeof *full_specs);
        specs = realloc(specs, (size_t)n * sizeof *specs);
        for (int i = 0; i < n; i++)
            if (parse_spec(l[i], &specs[nspec++]) != 0) return 3; /* built-in list is wrong */
    }
    if (list) {
        for (int i = 0; i < nspec; i++) printf("%s\n", specs[i].text);
        return 0;
    }
    if (min_time < 0) min_time = quick ? 0.25 : 1.0;

    kd_backend be;
    kd_err e;
    kd_err_clear(&e);
    if (kd_backend_cpu_init(&be, threads, &e) != KD_OK) {
        fprintf(stderr, "bench_ops: %s\n", e.msg);
        return 1;
    }
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("meta\timpl\tkandinsky.c\n");
    printf("meta\tthreads\t%d\n", kd_backend_threads(&be));
    printf("meta\tmin_time_s\t%g\n", min_time);
    printf("meta\tblas\t%s\n", openblas_get_config());
    printf("meta\tblas_core\t%s\n", openblas_get_corename());
    printf("meta\tOPENBLAS_CORETYPE\t%s\n", ct ? ct : "(unset)");
    printf("meta\tOPENBLAS_L2_SIZE\t%s\n", l2 ? l2 : "(unset)");
    const char *algo = getenv("KD_CONV_ALGO");
    printf("meta\tKD_CONV_ALGO\t%s\n", algo ? algo : "(unset)");
    fflush(stdout);

    result_t *res = calloc((size_t)nspec, sizeof *res);
    int nres = 0, failed = 0;
    for (int i = 0; i < nspec; i++) {
        if (bench_one(&be, &specs[i], min_time, &res[nres]) != 0) {
            failed++;
            continue;
        }
        result_t *r = &res[nres++];
        printf("result\tkd\t%s\t%s\t%.4f\t%.4f\t%d\t%.2f\t%s\t%.2f\n", op_names[r->s.op], r->s.text, r->median_ms,
               r->min_ms, r->reps, r->rate, r->unit, r->other_cores);
        fflush(stdout);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("meta\tpeak_rss_kb\t%ld\n", ru.ru_maxrss);
    printf("meta\tcpu_s\t%.3f\n", (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
                                        (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec);

    printf("\nkandinsky.c ops, %d threads, BLAS core %s\n", kd_backend_threads(&be), openblas_get_corename());
    printf("%-8s %-30s %11s %11s %5s %10s\n", "op", "shape", "median ms", "min ms", "reps", "rate");
    for (int i = 0; i < nres; i++) {
        const result_t *r = &res[i];
        printf("%-8s %-30s %11.3f %11.3f %5d %10.1f %s\n", op_names[r->s.op], strchr(r->s.text, ':') + 1,
               r->median_ms, r->min_ms, r->reps, r->rate, r->unit);
    }
    printf("peak RSS: %.1f MiB\n", ru.ru_maxrss / 1024.0);
    kd_backend_free(&be);
    free(res);
    free(specs);
    return failed ? 1 : 0;
}
