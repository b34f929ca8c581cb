/* Image codecs, Pillow-identical resizing and diffusers' float conversions against the fixtures of
 * tools/reference/gen_images.py (Pillow 13.0.0). Every pixel comparison is exact: the goal is
 * bit-identical output to Pillow, so any difference is a failure. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"
#include "io/safetensors.h"
#include "testutil.h"

#define IMG(rel) kt_data_path("images/" rel)

static char pathbuf[4096];
static const char *img_path(const char *rel) {
    snprintf(pathbuf, sizeof pathbuf, "%s", kt_data_path("images/"));
    size_t l = strlen(pathbuf);
    snprintf(pathbuf + l, sizeof pathbuf - l, "%s", rel);
    return pathbuf;
}

/* Reads tensor `name` of a reference file as float; NULL if absent. *n gets the element count. */
static float *ref_tensor(kd_st_file *f, const char *name, int64_t *shape, int *ndim, size_t *n) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t) return NULL;
    size_t cnt = (size_t)kd_tensor_numel(&t->t);
    float *out = malloc(cnt * sizeof(float) + 1);
    if (!out) return NULL;
    kd_convert_to_f32(out, t->t.data, t->t.dtype, cnt);
    if (shape) memcpy(shape, t->t.shape, sizeof(int64_t) * (size_t)t->t.ndim);
    if (ndim) *ndim = t->t.ndim;
    if (n) *n = cnt;
    return out;
}

/* Exact comparison of u8 pixels against a float reference; one check. */
static int same_pixels(const char *what, const kd_image *im, const float *ref, const int64_t *shape, int ndim) {
    int64_t h = shape[0], w = shape[1], c = ndim == 3 ? shape[2] : 1;
    if (im->height != h || im->width != w || im->channels != c) {
        TEST_CHECK(0, "%s: got %dx%dx%d, reference %lldx%lldx%lld", what, im->width, im->height, im->channels,
                   (long long)w, (long long)h, (long long)c);
        return 0;
    }
    size_t n = (size_t)(h * w * c), bad = 0, first = 0;
    int maxd = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)im->data[i] - (int)ref[i]);
        if (d) {
            if (!bad) first = i;
            bad++;
            if (d > maxd) maxd = d;
        }
    }
    TEST_CHECK(bad == 0, "%s: %zu of %zu values differ from Pillow (max diff %d; first at %zu: got %d ref %g)", what,
               bad, n, maxd, first, bad ? im->data[first] : 0, bad ? ref[first] : 0);
    return bad == 0;
}

static int g_exact_decodes = 0, g_exact_resizes = 0;

static void test_decode_corpus(void) {
    FILE *fp = fopen(img_path("decode_cases.txt"), "r");
    TEST_CHECK(fp != NULL, "cannot open decode_cases.txt");
    if (!fp) return;
    char name[256];
    int ch;
    int ncases = 0;
    while (fscanf(fp, "%255s %d", name, &ch) == 2) {
        ncases++;
        char full[4096], refp[4096];
        snprintf(full, sizeof full, "%s", img_path(name));
        snprintf(refp, sizeof refp, "%s", img_path("ref/"));
        strncat(refp, name, sizeof refp - strlen(refp) - 1);
        strncat(refp, ".safetensors", sizeof refp - strlen(refp) - 1);
        kd_st_file *rf = NULL;
        kd_err e = {0};
        if (kd_st_open(refp, &rf, &e) != KD_OK) {
            TEST_CHECK(0, "%s: %s", name, e.msg);
            continue;
        }
        kd_image im = {0};
        kd_status s = kd_image_load(full, NULL, &im, &e);
        TEST_CHECK(s == KD_OK, "%s: load failed: %s", name, e.msg);
        if (s != KD_OK) {
            kd_st_close(rf);
            continue;
        }
        TEST_CHECK(im.channels == ch, "%s: %d channels, expected %d", name, im.channels, ch);
        int64_t shape[8];
        int nd;
        int ok = 1;
        char what[512];
        float *native = ref_tensor(rf, "native", shape, &nd, NULL);
        if (native) {
            snprintf(what, sizeof what, "%s native", name);
            ok &= same_pixels(what, &im, native, shape, nd);
            free(native);
        }
        float *rgbref = ref_tensor(rf, "rgb", shape, &nd, NULL);
        kd_image rgb = {0}, gray = {0};
        TEST_CHECK(kd_image_to_rgb(&im, &rgb, &e) == KD_OK, "%s: to_rgb: %s", name, e.msg);
        if (rgbref) {
            snprintf(what, sizeof what, "%s convert(RGB)", name);
            ok &= same_pixels(what, &rgb, rgbref, shape, nd);
            free(rgbref);
        }
        float *grayref = ref_tensor(rf, "gray", shape, &nd, NULL);
        if (grayref) {
            TEST_CHECK(kd_image_to_gray(&rgb, &gray, &e) == KD_OK, "%s: to_gray: %s", name, e.msg);
            snprintf(what, sizeof what, "%s convert(RGB).convert(L)", name);
            ok &= same_pixels(what, &gray, grayref, shape, nd);
            kd_image_free(&gray);
            /* Pillow's RGBA -> L ignores alpha exactly like RGB -> L */
            TEST_CHECK(kd_image_to_gray(&im, &gray, &e) == KD_OK, "%s: to_gray (native): %s", name, e.msg);
            snprintf(what, sizeof what, "%s native convert(L)", name);
            ok &= same_pixels(what, &gray, grayref, shape, nd);
            kd_image_free(&gray);
            free(grayref);
        }
        float *raw = ref_tensor(rf, "raw_rgb", shape, &nd, NULL);
        if (raw) {
            kd_image_limits lim = kd_image_limits_default();
            lim.apply_exif_orientation = 0;
            kd_image im2 = {0}, rgb2 = {0};
            TEST_CHECK(kd_image_load(full, &lim, &im2, &e) == KD_OK, "%s: load without orientation: %s", name, e.msg);
            TEST_CHECK(kd_image_to_rgb(&im2, &rgb2, &e) == KD_OK, "%s: to_rgb", name);
            snprintf(what, sizeof what, "%s without exif_transpose", name);
            ok &= same_pixels(what, &rgb2, raw, shape, nd);
            kd_image_free(&im2);
            kd_image_free(&rgb2);
            free(raw);
        }
        g_exact_decodes += ok;
        kd_image_free(&rgb);
        kd_image_free(&im);
        kd_st_close(rf);
    }
    fclose(fp);
    TEST_CHECK(ncases >= 60, "only %d decode cases", ncases);
    printf("  decode: %d files, %d bit-exact against Pillow\n", ncases, g_exact_decodes);
}

static int parse_filter(const char *s, kd_resample *f) {
    static const struct { const char *n; kd_resample f; } t[] = {
        {"nearest", KD_RESAMPLE_NEAREST}, {"box", KD_RESAMPLE_BOX}, {"bilinear", KD_RESAMPLE_BILINEAR},
        {"hamming", KD_RESAMPLE_HAMMING}, {"bicubic", KD_RESAMPLE_BICUBIC}, {"lanczos", KD_RESAMPLE_LANCZOS}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(s, t[i].n) == 0) {
            *f = t[i].f;
            return 1;
        }
    return 0;
}

static void test_resize(void) {
    FILE *fp = fopen(img_path("resize_cases.txt"), "r");
    TEST_CHECK(fp != NULL, "cannot open resize_cases.txt");
    if (!fp) return;
    char name[256], src[256], filt[32];
    int w, h, ncases = 0;
    double gap;
    while (fscanf(fp, "%255s %255s %d %d %31s %lf", name, src, &w, &h, filt, &gap) == 6) {
        ncases++;
        kd_resample f = KD_RESAMPLE_NEAREST;
        TEST_CHECK(parse_filter(filt, &f), "%s: unknown filter %s", name, filt);
        char full[4096], refp[4096];
        snprintf(full, sizeof full, "%s", img_path(src));
        snprintf(refp, sizeof refp, "%s", img_path("resize/"));
        strncat(refp, name, sizeof refp - strlen(refp) - 1);
        strncat(refp, ".safetensors", sizeof refp - strlen(refp) - 1);
        kd_err e = {0};
        kd_image in = {0}, out = {0};
        kd_st_file *rf = NULL;
        if (kd_image_load(full, NULL, &in, &e) != KD_OK || kd_st_open(refp, &rf, &e) != KD_OK) {
            TEST_CHECK(0, "%s: %s", name, e.msg);
            kd_image_free(&in);
            continue;
        }
        kd_status s = kd_image_resize(&in, w, h, f, gap, &out, &e);
        TEST_CHECK(s == KD_OK, "%s: resize failed: %s", name, e.msg);
        int64_t shape[8];
        int nd;
        float *ref = ref_tensor(rf, "out", shape, &nd, NULL);
        if (s == KD_OK && ref) g_exact_resizes += same_pixels(name, &out, ref, shape, nd);
        free(ref);
        kd_image_free(&out);
        kd_image_free(&in);
        kd_st_close(rf);
    }
    fclose(fp);
    TEST_CHECK(ncases >= 30, "only %d resize cases", ncases);
    printf("  resize: %d cases, %d bit-exact against Pillow\n", ncases, g_exact_resizes);
}

static void test_resize_sweep(void) {
    kd_err e = {0};
    kd_st_file *rf = NULL;
    if (kd_st_open(img_path("resize/sweep.safetensors"), &rf, &e) != KD_OK) {
        TEST_CHECK(0, "%s", e.msg);
        return;
    }
    const char *ns = kd_st_meta(rf, "n");
    int n = ns ? atoi(ns) : 0, exact = 0;
    TEST_CHECK(n >= 100, "sweep: %d cases", n);
    for (int i = 0; i < n; i++) {
        char key[64], filt[32];
        snprintf(key, sizeof key, "case_%d", i);
        const char *m = kd_st_meta(rf, key);
        int w, h;
        double gap;
        kd_resample f = KD_RESAMPLE_NEAREST;
        if (!m || sscanf(m, "%d %d %31s %lf", &w, &h, filt, &gap) != 4 || !parse_filter(filt, &f)) {
            TEST_CHECK(0, "sweep: bad metadata %s", key);
            continue;
        }
        int64_t ishape[8], oshape[8];
        int ind, ond;
        snprintf(key, sizeof key, "in_%d", i);
        float *in = ref_tensor(rf, key, ishape, &ind, NULL);
        snprintf(key, sizeof key, "out_%d", i);
        float *ref = ref_tensor(rf, key, oshape, &ond, NULL);
        kd_image a = {0}, out = {0};
        if (in && ref && kd_image_alloc(&a, (int)ishape[1], (int)ishape[0], (int)ishape[2], &e) == KD_OK) {
            for (size_t k = 0; k < (size_t)(ishape[0] * ishape[1] * ishape[2]); k++) a.data[k] = (uint8_t)in[k];
            char what[128];
            snprintf(what, sizeof what, "sweep %d: %dx%dx%d -> %dx%d %s gap %g", i, a.width, a.height, a.channels, w,
                     h, filt, gap);
            kd_status s = kd_image_resize(&a, w, h, f, gap, &out, &e);
            TEST_CHECK(s == KD_OK, "%s: %s", what, e.msg);
            if (s == KD_OK) exact += same_pixels(what, &out, ref, oshape, ond);
        } else {
            TEST_CHECK(0, "sweep %d: missing tensors", i);
        }
        kd_image_free(&a);
        kd_image_free(&out);
        free(in);
        free(ref);
    }
    kd_st_close(rf);
    printf("  resize sweep: %d random cases, %d bit-exact against Pillow\n", n, exact);
}

static void test_vae(void) {
    kd_err e = {0};
    kd_st_file *rf = NULL;
    kd_image src = {0}, rs = {0};
    if (kd_st_open(img_path("vae/pre.safetensors"), &rf, &e) != KD_OK) {
        TEST_CHECK(0, "%s", e.msg);
        return;
    }
    TEST_CHECK(kd_image_load(img_path("src_300x200.png"), NULL, &src, &e) == KD_OK, "%s", e.msg);
    /* preprocess(img, height=77, width=104): height floored to a multiple of 8 -> 72 */
    TEST_CHECK(kd_image_resize(&src, 104, 72, KD_RESAMPLE_BICUBIC, 1.0, &rs, &e) == KD_OK, "%s", e.msg);
    int64_t shape[8];
    int nd;
    size_t n;
    float *pv = ref_tensor(rf, "pixel_values", shape, &nd, &n);
    TEST_CHECK(pv && nd == 4 && shape[1] == 3 && shape[2] == 72 && shape[3] == 104, "pixel_values shape");
    if (pv && rs.data && n == (size_t)3 * 72 * 104) {
        float *got = malloc(n * sizeof(float));
        TEST_CHECK(kd_image_to_tensor(&rs, got, &e) == KD_OK, "%s", e.msg);
        TEST_CHECK(memcmp(got, pv, n * sizeof(float)) == 0, "VaeImageProcessor.preprocess: not bit-identical");
        kt_allclose("vae preprocess (resize + to_tensor)", got, pv, n, 0, 0);
        free(got);
    }
    free(pv);
    float *ramp = ref_tensor(rf, "ramp", NULL, NULL, &n);
    if (ramp && n == 256) {
        kd_image r = {0};
        kd_image_alloc(&r, 256, 1, 3, &e);
        for (int i = 0; i < 256; i++) r.data[3 * i] = r.data[3 * i + 1] = r.data[3 * i + 2] = (uint8_t)i;
        float got[3 * 256];
        kd_image_to_tensor(&r, got, &e);
        TEST_CHECK(memcmp(got, ramp, sizeof(float) * 256) == 0 && memcmp(got + 256, ramp, sizeof(float) * 256) == 0,
                   "to_tensor of 0..255 is not bit-identical to numpy/torch");
        kt_allclose("to_tensor 0..255", got + 512, ramp, 256, 0, 0);
        kd_image_free(&r);
    }
    free(ramp);
    kd_st_close(rf);
    kd_image_free(&rs);
    kd_image_free(&src);

    if (kd_st_open(img_path("vae/post.safetensors"), &rf, &e) != KD_OK) {
        TEST_CHECK(0, "%s", e.msg);
        return;
    }
    float *x = ref_tensor(rf, "x", shape, &nd, &n);
    int64_t ushape[8];
    int und;
    float *u8 = ref_tensor(rf, "u8", ushape, &und, NULL);
    if (x && u8 && nd == 3) {
        kd_image out = {0};
        TEST_CHECK(kd_tensor_to_image(x, (int)shape[2], (int)shape[1], &out, &e) == KD_OK, "%s", e.msg);
        same_pixels("numpy_to_pil post-processing (with .5 ties)", &out, u8, ushape, und);
        kd_image_free(&out);
    } else {
        TEST_CHECK(0, "vae/post.safetensors: missing x or u8");
    }
    free(x);
    free(u8);
    kd_st_close(rf);
    /* NaN (not in the reference: numpy's NaN -> uint8 cast is undefined) gives 0 */
    float nan3[3] = {NAN, -INFINITY, INFINITY};
    kd_image o = {0};
    TEST_CHECK(kd_tensor_to_image(nan3, 1, 1, &o, &e) == KD_OK && o.data[0] == 0 && o.data[1] == 0 && o.data[2] == 255,
               "NaN/inf handling in kd_tensor_to_image");
    kd_image_free(&o);
}

static kd_status status_parse(const char *s) {
    for (int i = 0; i <= KD_ERR_INTERNAL; i++)
        if (strcmp(s, kd_status_str((kd_status)i)) == 0) return (kd_status)i;
    return (kd_status)-1;
}

static void test_bad(void) {
    FILE *fp = fopen(img_path("bad/cases.txt"), "r");
    TEST_CHECK(fp != NULL, "cannot open bad/cases.txt");
    if (!fp) return;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        char file[256], st[64];
        int off = 0;
        if (sscanf(line, "%255s %63s %n", file, st, &off) < 2) continue;
        char *sub = line + off;
        sub[strcspn(sub, "\r\n")] = 0;
        n++;
        char rel[300];
        snprintf(rel, sizeof rel, "bad/%s", file);
        char full[4096];
        snprintf(full, sizeof full, "%s", img_path(rel));
        kd_image im;
        memset(&im, 0x5a, sizeof im);
        kd_err e = {0};
        kd_status s = kd_image_load(full, NULL, &im, &e);
        kd_status want = status_parse(st);
        TEST_CHECK(s == want, "%s: got %s, expected %s (%s)", file, kd_status_str(s), st, e.msg);
        TEST_CHECK(strstr(e.msg, sub) != NULL, "%s: message '%s' lacks '%s'", file, e.msg, sub);
        TEST_CHECK(strncmp(e.msg, full, strlen(full)) == 0, "%s: message does not start with the path: %s", file,
                   e.msg);
        TEST_CHECK(im.data == NULL && im.width == 0, "%s: output not zeroed on failure", file);
        if (s == KD_OK) kd_image_free(&im);
        printf("  ok %-28s %-20s %s\n", file, kd_status_str(s), e.msg + strlen(full));
    }
    fclose(fp);
    TEST_CHECK(n >= 25, "only %d malformed cases", n);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long l = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l + 1);
    if (b && fread(b, 1, (size_t)l, fp) != (size_t)l) {
        free(b);
        b = NULL;
    }
    fclose(fp);
    *n = (size_t)l;
    return b;
}

/* Every proper prefix of a valid file must fail (truncation is never silent), without crashing. */
static void test_all_prefixes(const char *rel) {
    size_t n;
    uint8_t *b = slurp(img_path(rel), &n);
    TEST_CHECK(b != NULL, "cannot read %s", rel);
    if (!b) return;
    size_t accepted = 0, first = 0;
    for (size_t k = 0; k < n; k++) {
        kd_image im = {0};
        kd_err e = {0};
        if (kd_image_decode(b, k, rel, NULL, &im, &e) == KD_OK) {
            if (!accepted) first = k;
            accepted++;
            kd_image_free(&im);
        } else if (!e.msg[0]) {
            accepted += 1000000; /* a failure without a message is a bug too */
        }
    }
    kd_image full = {0};
    kd_err e = {0};
    TEST_CHECK(kd_image_decode(b, n, rel, NULL, &full, &e) == KD_OK, "%s: full file fails: %s", rel, e.msg);
    kd_image_free(&full);
    TEST_CHECK(accepted == 0, "%s: %zu truncated prefixes were accepted (first: %zu of %zu bytes)", rel, accepted, first,
               n);
    printf("  ok all %zu prefixes of %s rejected\n", n, rel);
    free(b);
}

static void test_limits(void) {
    kd_err e = {0};
    kd_image im = {0};
    kd_image_limits lim = kd_image_limits_default();
    TEST_CHECK(lim.max_width == 8192 && lim.max_height == 8192 && lim.max_pixels == 67108864ull &&
                   lim.max_jpeg_scans == 1000 && lim.apply_exif_orientation == 1,
               "default limits");
    const char *png = "src_64x48.png";
    struct { int mw, mh; uint64_t mp; kd_status want; } cases[] = {
        {63, 8192, 1 << 26, KD_ERR_OOM}, {64, 47, 1 << 26, KD_ERR_OOM}, {64, 48, 64 * 48 - 1, KD_ERR_OOM},
        {64, 48, 64 * 48, KD_OK}};
    const char *files[] = {png, "j_420_64x48.jpg", "j_prog.jpg", "rgb8_i.png"};
    for (size_t f = 0; f < 4; f++) {
        for (size_t i = 0; i < 4; i++) {
            lim = kd_image_limits_default();
            int w = f == 3 ? 37 : 64, h = f == 3 ? 23 : 48;
            lim.max_width = cases[i].mw - 64 + w;
            lim.max_height = cases[i].mh == 8192 ? 8192 : cases[i].mh - 48 + h;
            lim.max_pixels = cases[i].mp == (1 << 26) ? cases[i].mp : cases[i].mp - 64 * 48 + (uint64_t)w * h;
            kd_status s = kd_image_load(img_path(files[f]), &lim, &im, &e);
            TEST_CHECK(s == cases[i].want, "%s with limits %dx%d/%llu: %s (%s)", files[f], lim.max_width,
                       lim.max_height, (unsigned long long)lim.max_pixels, kd_status_str(s), e.msg);
            if (s != KD_OK) TEST_CHECK(strstr(e.msg, "over the limit") != NULL, "limit message: %s", e.msg);
            kd_image_free(&im);
        }
    }
    /* The limit is checked before any row is decoded: a file whose IDAT is garbage reports the
     * limit, not the corrupt data, once the limit is below its size. */
    TEST_CHECK(kd_image_load(img_path("bad/limit_bad_zlib.png"), NULL, &im, &e) == KD_ERR_FORMAT, "corrupt IDAT: %s",
               e.msg);
    lim = kd_image_limits_default();
    lim.max_width = 63;
    TEST_CHECK(kd_image_load(img_path("bad/limit_bad_zlib.png"), &lim, &im, &e) == KD_ERR_OOM,
               "limit before rows: %s", e.msg);
    /* progressive scan limit */
    TEST_CHECK(kd_image_load(img_path("j_scans2000.jpg"), NULL, &im, &e) == KD_ERR_OOM && strstr(e.msg, "scans"),
               "2000 scans: %s", e.msg);
    lim = kd_image_limits_default();
    lim.max_jpeg_scans = 2000;
    kd_status s = kd_image_load(img_path("j_scans2000.jpg"), &lim, &im, &e);
    TEST_CHECK(s == KD_OK && im.width == 8 && im.height == 8 && im.channels == 1 && im.data[0] == 128 &&
                   im.data[63] == 128,
               "2000 scans with max_jpeg_scans 2000: %s", s == KD_OK ? "wrong pixels" : e.msg);
    kd_image_free(&im);
    lim.max_jpeg_scans = 1999;
    TEST_CHECK(kd_image_load(img_path("j_scans2000.jpg"), &lim, &im, &e) == KD_ERR_OOM, "1999 scans limit: %s", e.msg);
    /* 40 zTXt chunks inflating to 2.5 MB each: text over the chunk cap is dropped, not decoded */
    s = kd_image_load(img_path("meta_bomb.png"), NULL, &im, &e);
    TEST_CHECK(s == KD_OK && im.width == 1 && im.height == 1 && im.data[0] == 77, "metadata bomb: %s", e.msg);
    kd_image_free(&im);
    lim = kd_image_limits_default();
    lim.max_file_bytes = 100;
    TEST_CHECK(kd_image_load(img_path(png), &lim, &im, &e) == KD_ERR_OOM && strstr(e.msg, "max_file_bytes"),
               "file size limit: %s", e.msg);
    lim = kd_image_limits_default();
    lim.max_pixels = 0;
    TEST_CHECK(kd_image_load(img_path(png), &lim, &im, &e) == KD_ERR_INVALID_ARG, "zero limit: %s", e.msg);
    TEST_CHECK(kd_image_load(img_path("does-not-exist.png"), NULL, &im, &e) == KD_ERR_NOT_FOUND, "missing file: %s",
               e.msg);
    TEST_CHECK(kd_image_decode(NULL, 0, "x", NULL, &im, &e) == KD_ERR_FORMAT, "NULL buffer");
}

static void fill_random(kd_image *im, uint64_t *st) {
    for (size_t i = 0; i < (size_t)im->width * im->height * im->channels; i++) im->data[i] = (uint8_t)kt_rand_u64(st);
}

static void test_roundtrip(void) {
    const char *dir = kt_tmp_dir("test_image");
    char path[4096];
    uint64_t st = 12345;
    kd_err e = {0};
    for (int c = 1; c <= 4; c++) {
        if (c == 2) continue;
        kd_image a = {0}, b = {0};
        kd_image_alloc(&a, 33, 17, c, &e);
        fill_random(&a, &st);
        snprintf(path, sizeof path, "%s/rt%d.png", dir, c);
        TEST_CHECK(kd_image_save_png(path, &a, &e) == KD_OK, "save_png %d ch: %s", c, e.msg);
        TEST_CHECK(kd_image_load(path, NULL, &b, &e) == KD_OK, "reload %d ch: %s", c, e.msg);
        TEST_CHECK(b.width == 33 && b.height == 17 && b.channels == c && memcmp(a.data, b.data, 33 * 17 * c) == 0,
                   "PNG round trip with %d channels is not exact", c);
        kd_image_free(&b);
        { /* the in-memory encoder (kandinsky serve) writes the same bytes as the file writer */
            const char *text[] = {"parameters", "seed: 1", NULL};
            uint8_t *mem = NULL;
            size_t mem_len = 0;
            char *file = NULL;
            size_t file_len = 0;
            TEST_CHECK(kd_image_save_png_text(path, &a, text, &e) == KD_OK &&
                           kd_image_encode_png_mem(&a, text, &mem, &mem_len, &e) == KD_OK,
                       "encode %d ch: %s", c, e.msg);
            FILE *f = fopen(path, "rb");
            if (f) {
                file = malloc(1 << 16);
                file_len = fread(file, 1, 1 << 16, f);
                fclose(f);
            }
            TEST_CHECK(mem && file && mem_len == file_len && memcmp(mem, file, mem_len) == 0,
                       "PNG in memory (%zu bytes) equals the file (%zu bytes), %d ch", mem_len, file_len, c);
            free(mem);
            free(file);
        }
        /* JPEG: lossy; smooth content must come back close */
        kd_image sm = {0};
        kd_image_alloc(&sm, 40, 24, c, &e);
        for (int y = 0; y < 24; y++)
            for (int x = 0; x < 40; x++)
                for (int k = 0; k < c; k++) sm.data[(y * 40 + x) * c + k] = (uint8_t)(x * 4 + y * 3 + k * 20);
        snprintf(path, sizeof path, "%s/rt%d.jpg", dir, c);
        TEST_CHECK(kd_image_save_jpeg(path, &sm, 95, &e) == KD_OK, "save_jpeg %d ch: %s", c, e.msg);
        TEST_CHECK(kd_image_load(path, NULL, &b, &e) == KD_OK, "reload jpeg %d ch: %s", c, e.msg);
        int want_c = c == 1 ? 1 : 3;
        double sum = 0;
        if (b.data && b.channels == want_c && b.width == 40 && b.height == 24) {
            for (int i = 0; i < 40 * 24; i++)
                for (int k = 0; k < want_c; k++) sum += fabs((double)b.data[i * want_c + k] - sm.data[i * c + k]);
            sum /= 40.0 * 24 * want_c;
            TEST_CHECK(sum < 2.0, "JPEG round trip %d ch: mean abs diff %.2f", c, sum);
        } else {
            TEST_CHECK(0, "JPEG round trip %d ch: wrong shape", c);
        }
        kd_image_free(&b);
        kd_image_free(&sm);
        kd_image_free(&a);
    }
    kd_image a = {0};
    kd_image_alloc(&a, 4, 4, 3, &e);
    fill_random(&a, &st);
    TEST_CHECK(kd_image_save_png("/nonexistent-dir/x.png", &a, &e) == KD_ERR_IO, "save to a missing dir: %s", e.msg);
    uint8_t *mem = (uint8_t *)1;
    size_t mem_len = 1;
    kd_image bad = {0};
    TEST_CHECK(kd_image_encode_png_mem(&bad, NULL, &mem, &mem_len, &e) == KD_ERR_INVALID_ARG && !mem && !mem_len,
               "encoding an empty image is refused: %s", e.msg);
    TEST_CHECK(kd_image_save_jpeg("/nonexistent-dir/x.jpg", &a, 90, &e) == KD_ERR_IO, "jpeg to a missing dir");
    snprintf(path, sizeof path, "%s/q.jpg", dir);
    TEST_CHECK(kd_image_save_jpeg(path, &a, 0, &e) == KD_ERR_INVALID_ARG, "quality 0");
    kd_image_free(&a);
}

static void test_api(void) {
    kd_err e = {0};
    const uint8_t pngsig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const uint8_t jpg[3] = {0xFF, 0xD8, 0xFF};
    TEST_CHECK(kd_image_detect(pngsig, 8) == KD_IMAGE_PNG && kd_image_detect(jpg, 3) == KD_IMAGE_JPEG &&
                   kd_image_detect((const uint8_t *)"GIF89a", 6) == KD_IMAGE_GIF &&
                   kd_image_detect(pngsig, 7) == KD_IMAGE_UNKNOWN,
               "kd_image_detect");
    kd_image a = {0}, b = {0};
    kd_image_alloc(&a, 5, 3, 3, &e);
    for (int i = 0; i < 45; i++) a.data[i] = (uint8_t)(i * 5);
    TEST_CHECK(kd_image_resize(&a, 0, 3, KD_RESAMPLE_BICUBIC, 0, &b, &e) == KD_ERR_INVALID_ARG, "zero width");
    TEST_CHECK(kd_image_resize(&a, 3, 3, KD_RESAMPLE_BICUBIC, 0.5, &b, &e) == KD_ERR_INVALID_ARG, "gap 0.5");
    TEST_CHECK(kd_image_resize(&a, 3, 3, (kd_resample)42, 0, &b, &e) == KD_ERR_INVALID_ARG, "bad filter");
    TEST_CHECK(kd_image_resize(&a, 5, 3, KD_RESAMPLE_LANCZOS, 1, &b, &e) == KD_OK && memcmp(a.data, b.data, 45) == 0,
               "same-size resize copies");
    kd_image_free(&b);
    /* orientation: 8 then 6 is the identity (90° ccw then 90° cw) */
    kd_image c = {0};
    kd_image_orient(&a, 8, &b, &e);
    kd_image_orient(&b, 6, &c, &e);
    TEST_CHECK(b.width == 3 && b.height == 5 && c.width == 5 && memcmp(c.data, a.data, 45) == 0, "orient 8 then 6");
    kd_image_free(&b);
    kd_image_free(&c);
    /* reduce: exact mean with Pillow's rounding on a constant block */
    kd_image_reduce(&a, 5, 3, &b, &e);
    TEST_CHECK(b.width == 1 && b.height == 1, "reduce to 1x1");
    kd_image_free(&b);
    float t[45];
    TEST_CHECK(kd_image_to_tensor(&a, t, &e) == KD_OK && t[0] == -1.0f, "to_tensor");
    kd_image g = {0};
    kd_image_to_gray(&a, &g, &e);
    TEST_CHECK(kd_image_to_tensor(&g, t, &e) == KD_ERR_INVALID_ARG, "to_tensor needs RGB");
    kd_image_free(&g);
    kd_image_free(&a);
    kd_image_free(&a); /* double free of a zeroed image is safe */
}

int main(void) {
    test_decode_corpus();
    test_resize();
    test_resize_sweep();
    test_vae();
    test_bad();
    test_limits();
    test_all_prefixes("src_64x48.png");
    test_all_prefixes("rgba16_i.png");
    test_all_prefixes("j_420_64x48.jpg");
    test_all_prefixes("j_prog.jpg");
    test_all_prefixes("j_cmyk.jpg");
    test_roundtrip();
    test_api();
    return kt_finish("test_image");
}
