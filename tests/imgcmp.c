/* kt_imgcmp: pixel checks for tests/test_cli.sh (CI has no Python; PNGs are compressed, so bash and
 * coreutils alone cannot read pixels). Not a test itself: test_cli.sh gets its path as argument 2.
 *
 *   kt_imgcmp same A B MAXDIFF          A and B (PNG/JPEG) have the same size and every channel value
 *                                       differs by at most MAXDIFF (0..255)
 *   kt_imgcmp psnr A B MIN_DB           A and B have the same size and a PSNR (8-bit peak) of at least
 *                                       MIN_DB decibels (identical images: inf)
 *   kt_imgcmp varied IMG MINRANGE       IMG is not a constant image: some channel's values span at
 *                                       least MINRANGE levels (max - min), and not every pixel is the same
 *   kt_imgcmp ref IMG FILE NAME MAXDIFF IMG equals tensor NAME ([1, 3, H, W] F32 in [-1, 1]) of the
 *                                       safetensors FILE, turned into 8-bit pixels the way diffusers'
 *                                       postprocess does it ((x/2 + 0.5).clamp(0, 1) · 255, rounded half
 *                                       to even as numpy.round), within MAXDIFF per channel value
 *   kt_imgcmp extract FILE NAME OUT     writes tensor NAME of FILE as the only tensor "latents" of OUT
 *
 * Prints what it measured; exit 0 when the check holds, 1 when it does not, 2 on bad usage or an
 * unreadable input. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "kandinsky.h"

static kd_ctx *g_ctx;

static int load(const char *path, kd_image *img) {
    if (kd_image_read(g_ctx, path, img) != KD_OK) {
        fprintf(stderr, "kt_imgcmp: %s: %s\n", path, kd_ctx_last_error(g_ctx));
        return 0;
    }
    return 1;
}

static int parse_level(const char *s, int *v) {
    char *end;
    long x = strtol(s, &end, 10);
    if (end == s || *end || x < 0 || x > 255) {
        fprintf(stderr, "kt_imgcmp: '%s' is not a level in 0..255\n", s);
        return 0;
    }
    *v = (int)x;
    return 1;
}

/* Max and mean |a - b| over the channel values; returns the max. */
static int diff_stats(const uint8_t *a, const uint8_t *b, size_t n, double *mean) {
    int maxd = 0;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > maxd) maxd = d;
        sum += d;
    }
    *mean = n ? sum / (double)n : 0;
    return maxd;
}

static int cmd_same(const char *pa, const char *pb, const char *lim) {
    int maxdiff;
    kd_image a = {0}, b = {0};
    if (!parse_level(lim, &maxdiff) || !load(pa, &a) || !load(pb, &b)) {
        kd_image_free(&a);
        return 2;
    }
    int rc = 1;
    if (a.width != b.width || a.height != b.height) {
        printf("sizes differ: %dx%d vs %dx%d\n", a.width, a.height, b.width, b.height);
    } else {
        double mean;
        int maxd = diff_stats(a.data, b.data, (size_t)a.width * a.height * 3, &mean);
        printf("%dx%d, max difference %d/255 (allowed %d), mean %.4f\n", a.width, a.height, maxd, maxdiff, mean);
        rc = maxd <= maxdiff ? 0 : 1;
    }
    kd_image_free(&a);
    kd_image_free(&b);
    return rc;
}

static int cmd_psnr(const char *pa, const char *pb, const char *lim) {
    char *end;
    double min_db = strtod(lim, &end);
    kd_image a = {0}, b = {0};
    if (*end || end == lim || !load(pa, &a) || !load(pb, &b)) {
        kd_image_free(&a);
        return 2;
    }
    int rc = 1;
    if (a.width != b.width || a.height != b.height) {
        printf("sizes differ: %dx%d vs %dx%d\n", a.width, a.height, b.width, b.height);
    } else {
        size_t n = (size_t)a.width * a.height * 3;
        double se = 0;
        for (size_t i = 0; i < n; i++) se += ((double)a.data[i] - b.data[i]) * ((double)a.data[i] - b.data[i]);
        double psnr = se > 0 ? 10.0 * log10(255.0 * 255.0 / (se / (double)n)) : INFINITY;
        printf("%dx%d, PSNR %.2f dB (at least %.2f)\n", a.width, a.height, psnr, min_db);
        rc = psnr >= min_db ? 0 : 1;
    }
    kd_image_free(&a);
    kd_image_free(&b);
    return rc;
}

static int cmd_varied(const char *path, const char *lim) {
    int minrange;
    kd_image a = {0};
    if (!parse_level(lim, &minrange) || !load(path, &a)) return 2;
    size_t np = (size_t)a.width * a.height;
    int lo[3] = {255, 255, 255}, hi[3] = {0, 0, 0}, range = 0;
    size_t differing = 0; /* pixels unlike the first one */
    for (size_t i = 0; i < np; i++) {
        int other = 0;
        for (int c = 0; c < 3; c++) {
            int v = a.data[i * 3 + c];
            if (v < lo[c]) lo[c] = v;
            if (v > hi[c]) hi[c] = v;
            other |= v != a.data[c];
        }
        differing += other;
    }
    for (int c = 0; c < 3; c++)
        if (hi[c] - lo[c] > range) range = hi[c] - lo[c];
    printf("%dx%d, channel ranges R %d..%d G %d..%d B %d..%d, %zu of %zu pixels unlike the first\n", a.width, a.height,
           lo[0], hi[0], lo[1], hi[1], lo[2], hi[2], differing, np);
    kd_image_free(&a);
    return range >= minrange && differing > 0 ? 0 : 1;
}

static const kd_st_tensor *find_tensor(const char *file, const char *name, kd_st_file **f) {
    kd_err e = {0};
    if (kd_st_open(file, f, &e) != KD_OK) {
        fprintf(stderr, "kt_imgcmp: %s\n", e.msg);
        return NULL;
    }
    const kd_st_tensor *t = kd_st_find(*f, name);
    if (!t || t->t.dtype != KD_F32) fprintf(stderr, "kt_imgcmp: %s: no F32 tensor '%s'\n", file, name);
    return t && t->t.dtype == KD_F32 ? t : NULL;
}

static int cmd_ref(const char *path, const char *file, const char *name, const char *lim) {
    int maxdiff;
    kd_image a = {0};
    kd_st_file *f = NULL;
    const kd_st_tensor *t = NULL;
    if (!parse_level(lim, &maxdiff) || !load(path, &a) || !(t = find_tensor(file, name, &f))) {
        kd_image_free(&a);
        kd_st_close(f);
        return 2;
    }
    int rc = 1;
    if (t->t.ndim != 4 || t->t.shape[0] != 1 || t->t.shape[1] != 3) {
        printf("%s: tensor %s is not [1, 3, H, W]\n", file, name);
    } else if (t->t.shape[2] != a.height || t->t.shape[3] != a.width) {
        printf("%dx%d image, reference %lldx%lld\n", a.width, a.height, (long long)t->t.shape[3],
               (long long)t->t.shape[2]);
    } else {
        size_t hw = (size_t)a.width * a.height;
        uint8_t *ref = malloc(hw * 3);
        const float *x = t->t.data;
        for (size_t i = 0; i < hw; i++)
            for (int c = 0; c < 3; c++) {
                float v = x[(size_t)c * hw + i] * 0.5f + 0.5f;
                v = isnan(v) ? 0.0f : v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                ref[i * 3 + c] = (uint8_t)nearbyintf(v * 255.0f);
            }
        double mean;
        int maxd = diff_stats(a.data, ref, hw * 3, &mean);
        printf("%dx%d against %s, max difference %d/255 (allowed %d), mean %.4f\n", a.width, a.height, name, maxd,
               maxdiff, mean);
        rc = maxd <= maxdiff ? 0 : 1;
        free(ref);
    }
    kd_image_free(&a);
    kd_st_close(f);
    return rc;
}

static int cmd_extract(const char *file, const char *name, const char *out) {
    kd_st_file *f = NULL;
    const kd_st_tensor *t = find_tensor(file, name, &f);
    if (!t) {
        kd_st_close(f);
        return 2;
    }
    const char *names[] = {"latents"};
    kd_err e = {0};
    int rc = kd_st_write(out, names, &t->t, 1, NULL, 0, &e) == KD_OK ? 0 : 2;
    if (rc) fprintf(stderr, "kt_imgcmp: %s\n", e.msg);
    kd_st_close(f);
    return rc;
}

int main(int argc, char **argv) {
    if (kd_ctx_create(NULL, &g_ctx) != KD_OK) return 2;
    int rc = 2;
    if (argc == 5 && !strcmp(argv[1], "same")) rc = cmd_same(argv[2], argv[3], argv[4]);
    else if (argc == 5 && !strcmp(argv[1], "psnr")) rc = cmd_psnr(argv[2], argv[3], argv[4]);
    else if (argc == 4 && !strcmp(argv[1], "varied")) rc = cmd_varied(argv[2], argv[3]);
    else if (argc == 6 && !strcmp(argv[1], "ref")) rc = cmd_ref(argv[2], argv[3], argv[4], argv[5]);
    else if (argc == 5 && !strcmp(argv[1], "extract")) rc = cmd_extract(argv[2], argv[3], argv[4]);
    else
        fprintf(stderr, "usage: kt_imgcmp same A B MAXDIFF | psnr A B MIN_DB | varied IMG MINRANGE | ref IMG FILE NAME MAXDIFF |"
                        " extract FILE NAME OUT\n");
    kd_ctx_free(g_ctx);
    return rc;
}
