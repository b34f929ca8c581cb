#include "testutil.h"


#include "io/file.h"
#include "io/safetensors.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int kt_passed = 0, kt_failed = 0, kt_skipped = 0;

void kt_check(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        kt_passed++;
        return;
    }
    kt_failed++;
    fprintf(stdout, "FAIL %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void kt_skip(const char *fmt, ...) {
    kt_skipped++;
    fputs("SKIP: ", stdout);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

int kt_allclose(const char *name, const float *got, const float *ref, size_t n, double atol, double rtol) {
    double max_abs = 0, max_rel = 0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i];
        double d = fabs(g - r);
        if (isnan(g) != isnan(r)) d = INFINITY;
        if (d > max_abs) max_abs = d;
        if (fabs(r) > 0 && d / fabs(r) > max_rel) max_rel = d / fabs(r);
        if (!(d <= atol + rtol * fabs(r))) {
            if (!bad) first_bad = i;
            bad++;
        }
    }
    if (bad) {
        kt_failed++;
        fprintf(stdout, "FAIL %s: %zu of %zu elements out of tolerance (atol %.1e rtol %.1e); first at %zu: got %.8g ref %.8g; max abs err %.3e\n",
                name, bad, n, atol, rtol, first_bad, got[first_bad], ref[first_bad], max_abs);
        return 0;
    }
    kt_passed++;
    printf("  ok %-48s n=%-9zu max_abs_err=%.3e max_rel_err=%.3e\n", name, n, max_abs, max_rel);
    return 1;
}

double kt_max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

static char path_buf[4096];

const char *kt_data_path(const char *rel) {
    const char *root = getenv("KD_TEST_DATA");
    snprintf(path_buf, sizeof path_buf, "%s/%s", root && *root ? root : "tests/data", rel);
    return path_buf;
}

const char *kt_shared_path(const char *rel) {
    const char *root = getenv("KD_SHARED");
    struct stat st;
    if (!root || !*root || stat(root, &st) != 0) return NULL;
    snprintf(path_buf, sizeof path_buf, "%s/%s", root, rel);
    return path_buf;
}

static void mkdir_p(char *p) {
    for (char *s = p + 1; *s; s++) {
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    }
    mkdir(p, 0755);
}

const char *kt_tmp_dir(const char *name) {
    static char buf[4096];
    const char *root = getenv("KD_BUILD_DIR");
    snprintf(buf, sizeof buf, "%s/test-tmp/%s", root && *root ? root : ".", name);
    mkdir_p(buf);
    return buf;
}

int kt_finish(const char *suite) {
    printf("%s: %d passed, %d failed, %d skipped\n", suite, kt_passed, kt_failed, kt_skipped);
    if (kt_failed) return 1;
    if (kt_passed == 0 && kt_skipped > 0) {
        printf("%s: SKIPPED: no check ran, every part was skipped (see the SKIP lines above)\n", suite);
        fflush(stdout);
        return KT_SKIP_CODE;
    }
    if (kt_passed == 0) {
        printf("FAIL %s: no check ran (a suite that verifies nothing does not pass)\n", suite);
        fflush(stdout);
        return 1;
    }
    if (kt_skipped) printf("%s: passed; %d part(s) skipped (see the SKIP lines above)\n", suite, kt_skipped);
    fflush(stdout);
    return 0;
}

uint64_t kt_rand_u64(uint64_t *s) {
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float kt_rand_uniform(uint64_t *s) { return (float)((kt_rand_u64(s) >> 40) * (1.0 / 8388608.0) - 1.0); }

char *kt_read_file(const char *path, size_t *len) {
    char *buf = NULL;
    size_t n = 0;
    kd_err e;
    if (kd_read_file(path, (size_t)1 << 30, &buf, &n, &e) != KD_OK) return NULL;
    if (len) *len = n;
    return buf;
}

char *kt_read_text(const char *path) { return kt_read_file(path, NULL); }

double kt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const float *kt_f32_tensor(const struct kd_st_file *f, const char *name, size_t *n) {
    const kd_st_tensor *t = f ? kd_st_find(f, name) : NULL;
    if (!t || t->t.dtype != KD_F32) return NULL;
    *n = (size_t)kd_tensor_numel(&t->t);
    return t->t.data;
}

const float *kt_case_tensor(const struct kd_st_file *f, int i, const char *what, size_t *n) {
    char name[64];
    snprintf(name, sizeof name, "case%d.%s", i, what);
    return kt_f32_tensor(f, name, n);
}

size_t kt_put_utf8(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* One JSON string literal (as json.dumps(ensure_ascii=True) writes it) → UTF-8 bytes; keeps
 * \u0000, which cJSON would cut. Returns 0 on a malformed line. */
int kt_json_string(const char *s, size_t n, char **out, size_t *out_len) {
    if (n < 2 || s[0] != '"' || s[n - 1] != '"') return 0;
    char *o = malloc(n * 3 + 1);
    size_t k = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        char c = s[i];
        if (c != '\\') { o[k++] = c; continue; }
        c = s[++i];
        switch (c) {
        case 'n': o[k++] = '\n'; break;
        case 't': o[k++] = '\t'; break;
        case 'r': o[k++] = '\r'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case '"': case '\\': case '/': o[k++] = c; break;
        case 'u': {
            unsigned u;
            if (i + 4 >= n || sscanf(s + i + 1, "%4x", &u) != 1) { free(o); return 0; }
            i += 4;
            if (u >= 0xD800 && u < 0xDC00 && i + 6 < n && s[i + 1] == '\\' && s[i + 2] == 'u') {
                unsigned v;
                if (sscanf(s + i + 3, "%4x", &v) != 1) { free(o); return 0; }
                u = 0x10000 + ((u - 0xD800) << 10) + (v - 0xDC00);
                i += 6;
            }
            k += kt_put_utf8(u, o + k);
            break;
        }
        default: free(o); return 0;
        }
    }
    *out = o;
    *out_len = k;
    return 1;
}

int kt_read_json_lines(const char *path, kt_lines *L) {
    size_t n;
    char *text = kt_read_file(path, &n);
    memset(L, 0, sizeof *L);
    if (!text) return 0;
    int cap = 0, ok = 1;
    for (char *p = text; p < text + n;) {
        char *nl = memchr(p, '\n', (size_t)(text + n - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + n - p);
        if (L->n == cap) {
            cap = cap ? cap * 2 : 256;
            L->s = realloc(L->s, (size_t)cap * sizeof *L->s);
            L->len = realloc(L->len, (size_t)cap * sizeof *L->len);
        }
        if (!kt_json_string(p, ll, &L->s[L->n], &L->len[L->n])) {
            fprintf(stderr, "%s: line %d is not a JSON string\n", path, L->n + 1);
            ok = 0;
            break;
        }
        L->n++;
        p = nl ? nl + 1 : text + n;
    }
    free(text);
    if (!ok) kt_free_lines(L);
    return ok;
}

void kt_free_lines(kt_lines *L) {
    for (int i = 0; i < L->n; i++) free(L->s[i]);
    free(L->s);
    free(L->len);
    memset(L, 0, sizeof *L);
}
