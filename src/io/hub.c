/* Model locations: local folders and the Hugging Face Hub cache (see hub.h for the layout). */
#include "io/hub.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "api/ctx.h"
#include "io/config.h"

#ifndef KD_VERSION_STRING
#define KD_VERSION_STRING "0.1.0"
#endif

#define DEFAULT_ENDPOINT "https://huggingface.co"
#define MAX_HOPS 5         /* HEAD redirects without metadata (renamed repos) */
#define MAX_RELPATH 1024
#define MAX_SHARDS 10000

/* ---- SHA-256 (FIPS 180-4) ---------------------------------------------------------------------- */

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void kd_sha256_init(kd_sha256 *c) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(c->h, h0, sizeof h0);
    c->len = 0;
    c->n = 0;
}

void kd_sha256_update(kd_sha256 *c, const void *data, size_t n) {
    const uint8_t *p = data;
    c->len += n;
    if (c->n) {
        size_t take = 64 - c->n < n ? 64 - c->n : n;
        memcpy(c->buf + c->n, p, take);
        c->n += take, p += take, n -= take;
        if (c->n < 64) return;
        sha_block(c->h, c->buf);
        c->n = 0;
    }
    for (; n >= 64; p += 64, n -= 64) sha_block(c->h, p);
    memcpy(c->buf, p, n);
    c->n = n;
}

void kd_sha256_final(kd_sha256 *c, uint8_t out[32]) {
    uint64_t bits = c->len * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    kd_sha256_update(c, &pad, 1);
    while (c->n != 56) kd_sha256_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    kd_sha256_update(c, len, 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++) out[4 * i + j] = (uint8_t)(c->h[i] >> (24 - 8 * j));
}

static void to_hex(const uint8_t *d, size_t n, char *out) {
    static const char hx[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) out[2 * i] = hx[d[i] >> 4], out[2 * i + 1] = hx[d[i] & 15];
    out[2 * n] = 0;
}

void kd_sha256_hex(const void *data, size_t n, char out[65]) {
    kd_sha256 c;
    uint8_t d[32];
    kd_sha256_init(&c);
    kd_sha256_update(&c, data, n);
    kd_sha256_final(&c, d);
    to_hex(d, 32, out);
}

/* ---- small helpers ------------------------------------------------------------------------------ */

static char *fmt_alloc(const char *fmt, ...) KD_PRINTF(1, 2);
static char *fmt_alloc(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static int is_file(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* mkdir -p of path (its last component included). */
static kd_status mkdir_p(const char *path, kd_err *e) {
    char *p = dupstr(path);
    if (!p) return kd_errf(e, KD_ERR_OOM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                kd_status st = kd_errf(e, KD_ERR_IO, "cannot create folder %s: %s", p, strerror(errno));
                free(p);
                return st;
            }
            *s = c;
            if (!c) break;
        }
    }
    int ok = is_dir(p);
    free(p);
    return ok ? KD_OK : kd_errf(e, KD_ERR_IO, "%s exists and is not a folder", path);
}

static kd_status mkdir_parent(const char *path, kd_err *e) {
    char *p = dupstr(path);
    if (!p) return kd_errf(e, KD_ERR_OOM, "out of memory");
    char *slash = strrchr(p, '/');
    kd_status s = KD_OK;
    if (slash && slash != p) {
        *slash = 0;
        s = mkdir_p(p, e);
    }
    free(p);
    return s;
}

/* Reads a small text file (<= cap bytes) with surrounding white space trimmed; NULL if absent. */
static char *read_small(const char *path, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(cap + 1);
    size_t n = buf ? fread(buf, 1, cap + 1, f) : 0;
    fclose(f);
    if (!buf || n > cap) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    while (n && (buf[n - 1] == ' ' || buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == '\t')) buf[--n] = 0;
    size_t lead = strspn(buf, " \t\r\n");
    memmove(buf, buf + lead, n - lead + 1);
    return buf;
}

/* Writes text to path through a temporary file and rename (readers never see half a file). */
static kd_status write_atomic(const char *path, const char *text, kd_err *e) {
    KD_TRY(mkdir_parent(path, e));
    char *tmp = fmt_alloc("%s.tmp.%ld", path, (long)getpid());
    if (!tmp) return kd_errf(e, KD_ERR_OOM, "out of memory");
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(text, 1, strlen(text), f) == strlen(text);
    if (f && fclose(f) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        kd_status s = kd_errf(e, KD_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        remove(tmp);
        free(tmp);
        return s;
    }
    free(tmp);
    return KD_OK;
}

/* NULL if p is a safe relative path inside a repo, else the reason. */
static const char *bad_relpath(const char *p) {
    size_t n = strlen(p);
    if (!n) return "is empty";
    if (n > MAX_RELPATH) return "is too long";
    if (p[0] == '/') return "is absolute";
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\') return "contains a backslash";
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f) return "contains a control character";
    }
    for (const char *s = p;;) {
        const char *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        if (len == 0) return "has an empty component";
        if (len == 1 && s[0] == '.') return "has a '.' component";
        if (len == 2 && s[0] == '.' && s[1] == '.') return "has a '..' component (it would leave the repo folder)";
        if (!end) break;
        s = end + 1;
    }
    return NULL;
}

/* ---- environment --------------------------------------------------------------------------------- */

static int env_true(const char *name) {
    const char *v = getenv(name);
    return v && (!strcasecmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") || !strcasecmp(v, "true"));
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* "~/x" → "$HOME/x" (Python's expanduser for the forms that matter). */
static char *expand_home(const char *p) {
    if (p[0] == '~' && (p[1] == '/' || p[1] == 0)) {
        const char *home = env_nonempty("HOME");
        if (!home) return NULL;
        return fmt_alloc("%s%s", home, p + 1);
    }
    return dupstr(p);
}

/* $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (as huggingface_hub). */
static char *hf_home(void) {
    const char *v;
    if ((v = env_nonempty("HF_HOME"))) return expand_home(v);
    if ((v = env_nonempty("XDG_CACHE_HOME"))) {
        char *x = expand_home(v), *r = x ? fmt_alloc("%s/huggingface", x) : NULL;
        free(x);
        return r;
    }
    const char *home = env_nonempty("HOME");
    return home ? fmt_alloc("%s/.cache/huggingface", home) : NULL;
}

static char *hub_cache_dir(const kd_hub_opts *o) {
    const char *v;
    if (o && o->cache_dir) return dupstr(o->cache_dir);
    if ((v = env_nonempty("HF_HUB_CACHE"))) return expand_home(v);
    if ((v = env_nonempty("HUGGINGFACE_HUB_CACHE"))) return expand_home(v); /* older name */
    char *home = hf_home(), *r = home ? fmt_alloc("%s/hub", home) : NULL;
    free(home);
    return r;
}

/* The token, or NULL for none; *bad set when one is present but unusable in a header. */
static char *find_token(const kd_hub_opts *o, int *bad) {
    *bad = 0;
    char *t = NULL;
    const char *v;
    if (o && o->token) t = *o->token ? dupstr(o->token) : NULL;
    else if ((v = env_nonempty("HF_TOKEN")) || (v = env_nonempty("HUGGING_FACE_HUB_TOKEN"))) {
        t = dupstr(v);
    } else {
        char *path = NULL;
        if ((v = env_nonempty("HF_TOKEN_PATH"))) path = expand_home(v);
        else {
            char *home = hf_home();
            path = home ? fmt_alloc("%s/token", home) : NULL;
            free(home);
        }
        if (path) t = read_small(path, 4096);
        free(path);
    }
    if (t) { /* trim, and refuse anything that could break the header */
        size_t n = strlen(t);
        while (n && (t[n - 1] == ' ' || t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == '\t')) t[--n] = 0;
        if (!n) {
            free(t);
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f) *bad = 1;
    }
    return t;
}

kd_hub_opts kd_hub_opts_default(void) {
    kd_hub_opts o = {0};
    o.offline = -1;
    return o;
}

/* ---- repo ids ------------------------------------------------------------------------------------ */

/* One part of "org/name": 1..96 of [A-Za-z0-9_.-], not starting or ending with '-' or '.', no "--"
 * or ".." (the Hub's own rules). */
static int valid_part(const char *s, size_t n) {
    if (n < 1 || n > 96) return 0;
    if (s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                 c == '.';
        if (!ok) return 0;
        if (i && (c == '-' || c == '.') && s[i - 1] == c) return 0;
    }
    return 1;
}

/* A revision: 1..255 of [A-Za-z0-9_.-/], no "..", no empty path component. */
static int valid_revision(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 255 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "..") || strstr(s, "//")) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.' || c == '/'))
            return 0;
    }
    return 1;
}

int kd_hub_is_repo_id(const char *s) {
    if (!s) return 0;
    const char *slash = strchr(s, '/');
    if (!slash) return 0;
    const char *at = strchr(slash, '@');
    size_t name_len = at ? (size_t)(at - slash - 1) : strlen(slash + 1);
    if (!valid_part(s, (size_t)(slash - s)) || !valid_part(slash + 1, name_len)) return 0;
    if (memchr(slash + 1, '/', name_len)) return 0;
    return !at || valid_revision(at + 1);
}

/* ---- the repo handle ----------------------------------------------------------------------------- */

typedef struct file_meta {
    long status;     /* 200 = the file exists (also for a 3xx metadata answer), 404 = it does not */
    char etag[160];
    char commit[160];
    int64_t size;    /* -1 unknown */
    char *location;  /* download URL */
} file_meta;

struct kd_hub_repo {
    kd_hub_opts *opts;
    char *repo_id;   /* org/name */
    char *revision;  /* as asked ("main" by default) */
    int rev_is_commit;
    char *cache, *repo_dir, *endpoint, *token;
    int token_bad;
    int offline;
    char *commit, *snapshot;
    int pinned;      /* the commit came from the server (or was asked for by hash) */
    char *pin_path;  /* metadata of the request that pinned the commit, reused for that file */
    file_meta pin_meta;
    CURL *curl;
    char ua[96];
};

static kd_status set_commit(kd_hub_repo *r, const char *commit, kd_err *e) {
    char *c = dupstr(commit), *s = fmt_alloc("%s/snapshots/%s", r->repo_dir, commit);
    if (!c || !s) {
        free(c);
        free(s);
        return kd_errf(e, KD_ERR_OOM, "out of memory");
    }
    free(r->commit);
    free(r->snapshot);
    r->commit = c;
    r->snapshot = s;
    return KD_OK;
}

kd_status kd_hub_repo_open(const char *repo_id, kd_hub_opts *opts, kd_hub_repo **out, kd_err *e) {
    if (!repo_id || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_hub_repo_open: NULL argument");
    *out = NULL;
    if (!kd_hub_is_repo_id(repo_id))
        return kd_errf(e, KD_ERR_INVALID_ARG, "'%s' is not a Hub repo id (org/name or org/name@revision)", repo_id);
    kd_hub_repo *r = calloc(1, sizeof *r);
    if (!r) return kd_errf(e, KD_ERR_OOM, "out of memory");
    r->opts = opts;
    r->pin_meta.size = -1;
    const char *at = strchr(repo_id, '@');
    r->repo_id = at ? fmt_alloc("%.*s", (int)(at - repo_id), repo_id) : dupstr(repo_id);
    r->revision = dupstr(at ? at + 1 : "main");
    r->cache = hub_cache_dir(opts);
    const char *ep = opts && opts->endpoint ? opts->endpoint : env_nonempty("HF_ENDPOINT");
    r->endpoint = dupstr(ep ? ep : DEFAULT_ENDPOINT);
    r->offline = opts && opts->offline >= 0 ? opts->offline : env_true("HF_HUB_OFFLINE");
    r->token = find_token(opts, &r->token_bad);
    kd_status s = KD_OK;
    if (!r->repo_id || !r->revision || !r->endpoint) s = kd_errf(e, KD_ERR_OOM, "out of memory");
    else if (!r->cache)
        s = kd_errf(e, KD_ERR_INVALID_ARG, "%s: cannot place the Hub cache: HOME is not set (set HF_HOME or HF_HUB_CACHE)",
                    repo_id);
    if (s == KD_OK) {
        size_t n = strlen(r->endpoint);
        while (n && r->endpoint[n - 1] == '/') r->endpoint[--n] = 0;
        if (strncmp(r->endpoint, "http://", 7) && strncmp(r->endpoint, "https://", 8))
            s = kd_errf(e, KD_ERR_INVALID_ARG, "HF_ENDPOINT '%s' is not an http:// or https:// URL", r->endpoint);
    }
    if (s == KD_OK) {
        char folder[256];
        snprintf(folder, sizeof folder, "models--%s", r->repo_id);
        char *slash = strchr(folder, '/');
        memmove(slash + 2, slash + 1, strlen(slash + 1) + 1); /* "org/name" → "org--name" */
        slash[0] = slash[1] = '-';
        r->repo_dir = fmt_alloc("%s/%s", r->cache, folder);
        if (!r->repo_dir) s = kd_errf(e, KD_ERR_OOM, "out of memory");
    }
    if (s == KD_OK) {
        r->rev_is_commit = is_hex(r->revision, 40);
        if (r->rev_is_commit) {
            s = set_commit(r, r->revision, e);
            r->pinned = 1;
        } else {
            char *ref = fmt_alloc("%s/refs/%s", r->repo_dir, r->revision);
            char *c = ref ? read_small(ref, 256) : NULL;
            if (c && (is_hex(c, 40) || is_hex(c, 64))) s = set_commit(r, c, e);
            free(c);
            free(ref);
        }
    }
    snprintf(r->ua, sizeof r->ua, "kandinsky.c/%s; %s", KD_VERSION_STRING, "libcurl");
    if (s != KD_OK) {
        kd_hub_repo_close(r);
        return s;
    }
    *out = r;
    return KD_OK;
}

void kd_hub_repo_close(kd_hub_repo *r) {
    if (!r) return;
    if (r->curl) curl_easy_cleanup(r->curl);
    free(r->repo_id);
    free(r->revision);
    free(r->cache);
    free(r->repo_dir);
    free(r->endpoint);
    free(r->token);
    free(r->commit);
    free(r->snapshot);
    free(r->pin_path);
    free(r->pin_meta.location);
    free(r);
}

const char *kd_hub_repo_snapshot(const kd_hub_repo *r) { return r ? r->snapshot : NULL; }
const char *kd_hub_repo_dir(const kd_hub_repo *r) { return r ? r->repo_dir : NULL; }

static char *snap_path(const kd_hub_repo *r, const char *rel) {
    return r->snapshot ? fmt_alloc("%s/%s", r->snapshot, rel) : NULL;
}

static int present(const kd_hub_repo *r, const char *rel) {
    char *p = snap_path(r, rel);
    int ok = is_file(p);
    free(p);
    return ok;
}

static char *no_exist_path(const kd_hub_repo *r, const char *rel) {
    return r->commit ? fmt_alloc("%s/.no_exist/%s/%s", r->repo_dir, r->commit, rel) : NULL;
}

static int known_absent(const kd_hub_repo *r, const char *rel) {
    char *p = no_exist_path(r, rel);
    int ok = is_file(p);
    free(p);
    return ok;
}

static kd_status offline_error(const kd_hub_repo *r, const char *missing, kd_err *e) {
    if (!r->commit)
        return kd_errf(e, KD_ERR_NOT_FOUND,
                       "%s: not in the local cache and offline mode is on (HF_HUB_OFFLINE=1): %s/refs/%s does not exist, "
                       "so no snapshot is known (first file needed: %s). Unset HF_HUB_OFFLINE to download, or place the "
                       "files by hand in %s/snapshots/<commit>/ and write <commit> to refs/%s",
                       r->repo_id, r->repo_dir, r->revision, missing, r->repo_dir, r->revision);
    return kd_errf(e, KD_ERR_NOT_FOUND,
                   "%s: %s is not in the cached snapshot %s and offline mode is on (HF_HUB_OFFLINE=1); unset "
                   "HF_HUB_OFFLINE to download it, or place it there by hand",
                   r->repo_id, missing, r->snapshot);
}

/* ---- HTTP ---------------------------------------------------------------------------------------- */

typedef struct http_resp {
    long status;
    char etag[160], linked_etag[160], commit[160], error_code[80], error_msg[200], content_range[120];
    int64_t content_length, linked_size;
    char body[1024];
    size_t body_n;
} http_resp;

static void resp_reset(http_resp *h) {
    memset(h, 0, sizeof *h);
    h->content_length = h->linked_size = -1;
}

static void copy_value(char *dst, size_t cap, const char *v, size_t n) {
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = 0;
}

static size_t on_header(char *line, size_t sz, size_t nitems, void *user) {
    http_resp *h = user;
    size_t n = sz * nitems, len = n;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
    if (len >= 5 && !strncmp(line, "HTTP/", 5)) { /* a new response of a redirect chain */
        resp_reset(h);
        return n;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon) return n;
    size_t name_len = (size_t)(colon - line);
    const char *v = colon + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    size_t vn = (size_t)(end - v);
#define HDR(s) (name_len == strlen(s) && !strncasecmp(line, s, name_len))
    if (HDR("ETag")) copy_value(h->etag, sizeof h->etag, v, vn);
    else if (HDR("X-Linked-Etag")) copy_value(h->linked_etag, sizeof h->linked_etag, v, vn);
    else if (HDR("X-Repo-Commit")) copy_value(h->commit, sizeof h->commit, v, vn);
    else if (HDR("X-Error-Code")) copy_value(h->error_code, sizeof h->error_code, v, vn);
    else if (HDR("X-Error-Message")) copy_value(h->error_msg, sizeof h->error_msg, v, vn);
    else if (HDR("Content-Range")) copy_value(h->content_range, sizeof h->content_range, v, vn);
    else if (HDR("Content-Length") || HDR("X-Linked-Size")) {
        char num[32];
        copy_value(num, sizeof num, v, vn);
        char *e;
        long long x = strtoll(num, &e, 10);
        if (e != num && !*e && x >= 0) {
            if (HDR("Content-Length")) h->content_length = x;
            else h->linked_size = x;
        }
    }
#undef HDR
    return n;
}

/* A download in progress into blobs/<etag>.incomplete. */
typedef struct dl_sink {
    kd_hub_repo *r;
    const char *path;
    CURL *h;
    http_resp *resp;
    FILE *f;
    kd_sha256 sha;
    uint64_t offset;   /* bytes in the file before this request */
    uint64_t written;  /* bytes written by this request */
    uint64_t cap;
    int64_t expect;
    int decided, to_file;
    int abort_why;     /* 1 too big, 2 wrong Content-Range, 3 write error */
    double last_cb;
} dl_sink;

static int sink_decide(dl_sink *s) {
    s->decided = 1;
    long code = 0;
    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &code);
    if (code == 206) {
        unsigned long long a = 0;
        if (sscanf(s->resp->content_range, "bytes %llu-", &a) != 1 || a != s->offset) {
            s->abort_why = 2;
            return 0;
        }
        s->to_file = 1;
    } else if (code == 200) {
        if (s->offset) { /* the server sent the whole file: start over */
            if (fflush(s->f) != 0 || ftruncate(fileno(s->f), 0) != 0 || fseek(s->f, 0, SEEK_SET) != 0) {
                s->abort_why = 3;
                return 0;
            }
            s->offset = 0;
            kd_sha256_init(&s->sha);
        }
        s->to_file = 1;
    }
    return 1;
}

static size_t on_body(char *p, size_t sz, size_t nitems, void *user) {
    dl_sink *s = user;
    size_t n = sz * nitems;
    if (!s->decided && !sink_decide(s)) return 0;
    if (!s->to_file) { /* an error page: keep its start for the message */
        size_t room = sizeof s->resp->body - 1 - s->resp->body_n;
        size_t take = n < room ? n : room;
        memcpy(s->resp->body + s->resp->body_n, p, take);
        s->resp->body_n += take;
        s->resp->body[s->resp->body_n] = 0;
        return n;
    }
    if (s->offset + s->written + n > s->cap) {
        s->abort_why = 1;
        return 0;
    }
    if (fwrite(p, 1, n, s->f) != n) {
        s->abort_why = 3;
        return 0;
    }
    kd_sha256_update(&s->sha, p, n);
    s->written += n;
    return n;
}

static int on_xfer(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    dl_sink *s = user;
    kd_hub_opts *o = s->r->opts;
    if (!o || !o->progress || !s->to_file) return 0;
    double t = now_s();
    if (t - s->last_cb < 0.1) return 0;
    s->last_cb = t;
    o->progress(o->progress_user, s->path, s->offset + s->written, s->expect >= 0 ? (uint64_t)s->expect : 0);
    return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* The token goes only to the endpoint itself (a CDN location gets none). */
static int same_origin(const kd_hub_repo *r, const char *url) {
    size_t n = strlen(r->endpoint);
    return !strncmp(url, r->endpoint, n) && (url[n] == '/' || url[n] == 0);
}

/* One request. Returns the curl result; the HTTP status is in resp->status. For GET, sink gets the
 * body (redirects followed); HEAD follows nothing (*redirect = the Location, absolute). */
static CURLcode http_request(kd_hub_repo *r, int head, const char *url, uint64_t range_from, dl_sink *sink,
                             http_resp *resp, char **redirect, char errbuf[CURL_ERROR_SIZE], kd_err *e) {
    errbuf[0] = 0;
    resp_reset(resp);
    if (redirect) *redirect = NULL;
    if (!r->curl) {
        pthread_once(&curl_once, curl_init);
        if (curl_init_rc != CURLE_OK || !(r->curl = curl_easy_init())) {
            snprintf(errbuf, CURL_ERROR_SIZE, "libcurl could not be initialised");
            return CURLE_FAILED_INIT;
        }
    }
    (void)e;
    CURL *h = r->curl;
    const kd_hub_opts *o = r->opts;
    long ct = o && o->connect_timeout_s > 0 ? o->connect_timeout_s : 30;
    long lst = o && o->low_speed_time_s > 0 ? o->low_speed_time_s : 60;
    long lsb = o && o->low_speed_bytes > 0 ? o->low_speed_bytes : 1024;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, ct);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, lsb);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, lst);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_USERAGENT, r->ua);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Accept-Encoding: identity");
    char *auth = NULL;
    if (r->token && same_origin(r, url)) {
        auth = fmt_alloc("Authorization: Bearer %s", r->token);
        if (auth) hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    char range[48];
    if (head) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, ct + lst);
    } else {
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xfer);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, sink);
        if (range_from) {
            snprintf(range, sizeof range, "%llu-", (unsigned long long)range_from);
            curl_easy_setopt(h, CURLOPT_RANGE, range);
        }
    }
    if (r->opts) r->opts->n_requests++;
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (cc == CURLE_OK && redirect && resp->status >= 300 && resp->status < 400) {
        char *loc = NULL;
        if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc) *redirect = dupstr(loc);
    }
    curl_slist_free_all(hdrs);
    free(auth);
    if (cc != CURLE_OK && !errbuf[0]) snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
    return cc;
}

static kd_status net_error(const kd_hub_repo *r, const char *url, const char *why, kd_err *e) {
    return kd_errf(e, KD_ERR_IO,
                   "cannot reach %s (%s). Check the network, the proxy (HTTPS_PROXY) and HF_ENDPOINT. To work without "
                   "the network set HF_HUB_OFFLINE=1: the files can be placed in the cache by hand "
                   "(%s/snapshots/<commit>/, with refs/%s holding <commit>), or pass a local folder instead",
                   url, why, r->repo_dir, r->revision);
}

static kd_status http_error(const kd_hub_repo *r, const char *path, const char *url, const http_resp *h, kd_err *e) {
    char server[260] = "";
    if (h->error_msg[0]) snprintf(server, sizeof server, " (server: %s)", h->error_msg);
    long st = h->status;
    if (st == 401 || st == 403 || (st == 404 && !strcmp(h->error_code, "RepositoryNotFound"))) {
        const char *tok = r->token ? "a token was sent" : "no token: HF_TOKEN is not set and there is no token file";
        if (!strcmp(h->error_code, "RepositoryNotFound"))
            return kd_errf(e, KD_ERR_NOT_FOUND,
                           "HTTP %ld for %s: repository %s not found, or private (%s); check the name, or set HF_TOKEN "
                           "to a token that can read it%s",
                           st, url, r->repo_id, tok, server);
        return kd_errf(e, KD_ERR_IO,
                       "HTTP %ld %s for %s (%s): the model is gated or private. Set HF_TOKEN to a token of an account "
                       "that has accepted the model's terms on %s/%s%s",
                       st, st == 401 ? "Unauthorized" : "Forbidden", url, tok, r->endpoint, r->repo_id, server);
    }
    if (st == 404) {
        if (!strcmp(h->error_code, "RevisionNotFound"))
            return kd_errf(e, KD_ERR_NOT_FOUND, "HTTP 404 for %s: repo %s has no revision '%s'%s", url, r->repo_id,
                           r->revision, server);
        return kd_errf(e, KD_ERR_NOT_FOUND, "HTTP 404 for %s: %s is not in repo %s at revision %s%s", url, path,
                       r->repo_id, r->commit && r->pinned ? r->commit : r->revision, server);
    }
    if (st == 429)
        return kd_errf(e, KD_ERR_IO, "HTTP 429 for %s: rate limited by the Hub; wait and try again (a token, HF_TOKEN, "
                       "raises the limit)%s", url, server);
    if (st >= 500)
        return kd_errf(e, KD_ERR_IO, "HTTP %ld server error for %s; the Hub may be down, try again later%s", st, url,
                       server);
    return kd_errf(e, KD_ERR_IO, "HTTP %ld for %s%s", st, url, server);
}

/* Percent-encodes everything but unreserved characters (and '/' when keep_slash). */
static char *url_escape(const char *s, int keep_slash) {
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~' || (keep_slash && c == '/'))
            *o++ = (char)c;
        else o += sprintf(o, "%%%02X", c);
    }
    *o = 0;
    return out;
}

static char *resolve_url(const kd_hub_repo *r, const char *revision, const char *path) {
    char *rev = url_escape(revision, 0), *p = url_escape(path, 1);
    char *url = rev && p ? fmt_alloc("%s/%s/resolve/%s/%s", r->endpoint, r->repo_id, rev, p) : NULL;
    free(rev);
    free(p);
    return url;
}

/* "W/\"abc\"" → "abc" */
static void normalize_etag(const char *in, char *out, size_t cap) {
    if (!strncmp(in, "W/", 2)) in += 2;
    size_t n = strlen(in);
    while (n && *in == '"') in++, n--;
    while (n && in[n - 1] == '"') n--;
    copy_value(out, cap, in, n);
}

static int safe_name(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 128 || s[0] == '.') return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.'))
            return 0;
    }
    return 1;
}

static void meta_free(file_meta *m) {
    free(m->location);
    m->location = NULL;
}

/* HEAD of a file at a revision: *m gets status 200 (with etag, commit, size, location) or 404.
 * Other answers are errors. */
static kd_status head_meta(kd_hub_repo *r, const char *path, const char *revision, file_meta *m, kd_err *e) {
    memset(m, 0, sizeof *m);
    m->size = -1;
    if (r->token_bad)
        return kd_errf(e, KD_ERR_INVALID_ARG, "the Hub token (HF_TOKEN or the token file) contains white space or "
                       "control characters");
    char *url = resolve_url(r, revision, path);
    if (!url) return kd_errf(e, KD_ERR_OOM, "out of memory");
    http_resp h;
    char errbuf[CURL_ERROR_SIZE];
    kd_status s = KD_OK;
    for (int hop = 0;; hop++) {
        char *loc = NULL;
        CURLcode cc = http_request(r, 1, url, 0, NULL, &h, &loc, errbuf, e);
        if (cc != CURLE_OK) {
            s = net_error(r, url, errbuf, e);
            break;
        }
        if (h.status >= 300 && h.status < 400 && !h.commit[0]) { /* e.g. a renamed repo: follow */
            if (!loc || hop >= MAX_HOPS) {
                free(loc);
                s = kd_errf(e, KD_ERR_IO, "HTTP %ld for %s: %s", h.status, url,
                            loc ? "too many redirects" : "redirect without a Location");
                break;
            }
            free(url);
            url = loc;
            continue;
        }
        if (h.status == 200 || (h.status >= 300 && h.status < 400)) {
            m->status = 200;
            m->location = loc ? loc : dupstr(url);
            normalize_etag(h.linked_etag[0] ? h.linked_etag : h.etag, m->etag, sizeof m->etag);
            copy_value(m->commit, sizeof m->commit, h.commit, strlen(h.commit));
            m->size = h.linked_size >= 0 ? h.linked_size : h.content_length;
            if (!m->location) s = kd_errf(e, KD_ERR_OOM, "out of memory");
            else if (!m->commit[0] || !m->etag[0])
                s = kd_errf(e, KD_ERR_FORMAT,
                            "%s answered without %s: the endpoint (HF_ENDPOINT=%s) does not look like a Hugging Face Hub",
                            url, !m->commit[0] ? "X-Repo-Commit" : "an ETag", r->endpoint);
            else if (!safe_name(m->etag))
                s = kd_errf(e, KD_ERR_FORMAT, "%s: the ETag '%s' cannot name a cache file", url, m->etag);
            else if (!is_hex(m->commit, 40) && !is_hex(m->commit, 64))
                s = kd_errf(e, KD_ERR_FORMAT, "%s: X-Repo-Commit '%s' is not a commit hash", url, m->commit);
            break;
        }
        free(loc);
        if (h.status == 404 && strcmp(h.error_code, "RepositoryNotFound") && strcmp(h.error_code, "RevisionNotFound")) {
            m->status = 404;
            if (is_hex(h.commit, 40) || is_hex(h.commit, 64)) copy_value(m->commit, sizeof m->commit, h.commit, strlen(h.commit));
            break;
        }
        s = http_error(r, path, url, &h, e);
        break;
    }
    free(url);
    if (s != KD_OK) meta_free(m);
    return s;
}

/* Pins the commit for the rest of this resolution with a HEAD of path at the asked revision. */
static kd_status pin(kd_hub_repo *r, const char *path, kd_err *e) {
    if (r->pinned) return KD_OK;
    file_meta m;
    KD_TRY(head_meta(r, path, r->revision, &m, e));
    if (!m.commit[0]) {
        char *url = resolve_url(r, r->revision, path);
        kd_status s = kd_errf(e, KD_ERR_NOT_FOUND, "HTTP 404 for %s: %s is not in repo %s at revision %s",
                              url ? url : path, path, r->repo_id, r->revision);
        free(url);
        meta_free(&m);
        return s;
    }
    kd_status s = set_commit(r, m.commit, e);
    if (s == KD_OK && !r->rev_is_commit) {
        char *ref = fmt_alloc("%s/refs/%s", r->repo_dir, r->revision);
        s = ref ? write_atomic(ref, m.commit, e) : kd_errf(e, KD_ERR_OOM, "out of memory");
        free(ref);
    }
    if (s != KD_OK) {
        meta_free(&m);
        return s;
    }
    r->pinned = 1;
    /* a direct answer (no redirect) is fetched at the commit too, not at the moving revision */
    char *rev_url = resolve_url(r, r->revision, path);
    if (rev_url && !strcmp(rev_url, m.location)) {
        char *c_url = resolve_url(r, r->commit, path);
        if (c_url) {
            free(m.location);
            m.location = c_url;
        }
    }
    free(rev_url);
    free(r->pin_path);
    meta_free(&r->pin_meta);
    r->pin_path = dupstr(path);
    r->pin_meta = m;
    return KD_OK;
}

/* snapshots/<commit>/<path> → relative symlink to blobs/<etag> (through a temporary name, so an
 * old or dangling link is replaced in one step). */
static kd_status link_snapshot(kd_hub_repo *r, const char *path, const char *etag, kd_err *e) {
    char *dst = snap_path(r, path);
    if (!dst) return kd_errf(e, KD_ERR_OOM, "out of memory");
    kd_status s = mkdir_parent(dst, e);
    int depth = 2;
    for (const char *c = path; *c; c++) depth += *c == '/';
    size_t n = (size_t)depth * 3 + strlen("blobs/") + strlen(etag) + 1;
    char *rel = malloc(n), *tmp = fmt_alloc("%s.kdlink.%ld", dst, (long)getpid());
    if (s == KD_OK && (!rel || !tmp)) s = kd_errf(e, KD_ERR_OOM, "out of memory");
    if (s == KD_OK) {
        rel[0] = 0;
        for (int i = 0; i < depth; i++) strcat(rel, "../");
        strcat(rel, "blobs/");
        strcat(rel, etag);
        remove(tmp);
        if (symlink(rel, tmp) != 0) {
            /* no symlinks on this file system: a hard link still shares the blob */
            char *blob = fmt_alloc("%s/blobs/%s", r->repo_dir, etag);
            int ok = blob && link(blob, tmp) == 0;
            free(blob);
            if (!ok) s = kd_errf(e, KD_ERR_IO, "cannot link %s to the blob %s: %s", dst, rel, strerror(errno));
        }
        if (s == KD_OK && rename(tmp, dst) != 0) {
            s = kd_errf(e, KD_ERR_IO, "cannot create %s: %s", dst, strerror(errno));
            remove(tmp);
        }
    }
    free(dst);
    free(rel);
    free(tmp);
    return s;
}

static kd_status hash_prefix(const char *path, uint64_t n, kd_sha256 *c, kd_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return kd_errf(e, KD_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    static const size_t chunk = 1 << 16;
    uint8_t *buf = malloc(chunk);
    kd_status s = buf ? KD_OK : kd_errf(e, KD_ERR_OOM, "out of memory");
    while (s == KD_OK && n) {
        size_t want = n < chunk ? (size_t)n : chunk;
        if (fread(buf, 1, want, f) != want) s = kd_errf(e, KD_ERR_IO, "cannot read %s", path);
        else kd_sha256_update(c, buf, want), n -= want;
    }
    free(buf);
    fclose(f);
    return s;
}

/* Transfer failures worth another try (the next one resumes). */
static int retryable(CURLcode cc) {
    switch (cc) {
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_COULDNT_CONNECT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* Downloads m->location into blobs/<etag> (through .incomplete, resumed and verified). */
static kd_status download_blob(kd_hub_repo *r, const char *path, const file_meta *m, const char *blob, kd_err *e) {
    const kd_hub_opts *o = r->opts;
    char *lockdir = fmt_alloc("%s/.locks/%s", r->cache, strrchr(r->repo_dir, '/') + 1);
    char *lockpath = lockdir ? fmt_alloc("%s/%s.lock", lockdir, m->etag) : NULL;
    char *inc = fmt_alloc("%s.incomplete", blob);
    if (!lockdir || !lockpath || !inc) {
        free(lockdir);
        free(lockpath);
        free(inc);
        return kd_errf(e, KD_ERR_OOM, "out of memory");
    }
    int lockfd = -1, ok = 0;
    int max_attempts = o && o->max_attempts > 0 ? o->max_attempts : 5;
    long wait_ms = o && o->retry_wait_ms > 0 ? o->retry_wait_ms : 500;
    uint64_t cap = ends_with(path, ".json") ? KD_HUB_MAX_JSON_BYTES : UINT64_MAX;
    http_resp h;
    dl_sink sk;
    char errbuf[CURL_ERROR_SIZE];
    memset(&sk, 0, sizeof sk);
    kd_status s = mkdir_p(lockdir, e);
    if (s == KD_OK) s = mkdir_parent(blob, e);
    if (s == KD_OK) {
        lockfd = open(lockpath, O_RDWR | O_CREAT, 0644);
        if (lockfd < 0) s = kd_errf(e, KD_ERR_IO, "cannot create the lock file %s: %s", lockpath, strerror(errno));
        else
            while (flock(lockfd, LOCK_EX) != 0) /* another process may be downloading the same blob */
                if (errno != EINTR) {
                    s = kd_errf(e, KD_ERR_IO, "cannot lock %s: %s", lockpath, strerror(errno));
                    break;
                }
    }
    if (s != KD_OK || is_file(blob)) goto done; /* done by another process meanwhile */
    if (m->size >= 0 && (uint64_t)m->size > cap) {
        s = kd_errf(e, KD_ERR_OOM, "%s: the server announces %lld bytes; JSON files over %u MB are refused", path,
                    (long long)m->size, KD_HUB_MAX_JSON_BYTES >> 20);
        goto done;
    }
    for (int attempt = 1; attempt <= max_attempts && !ok; attempt++) {
        if (attempt > 1) {
            sleep_ms(wait_ms);
            wait_ms = wait_ms * 2 > 8000 ? 8000 : wait_ms * 2;
        }
        struct stat st;
        uint64_t offset = stat(inc, &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
        if (m->size >= 0 && offset > (uint64_t)m->size) {
            remove(inc);
            offset = 0;
        }
        memset(&sk, 0, sizeof sk);
        sk.r = r, sk.path = path, sk.h = NULL, sk.resp = &h, sk.offset = offset, sk.cap = cap, sk.expect = m->size;
        kd_sha256_init(&sk.sha);
        if (offset && (s = hash_prefix(inc, offset, &sk.sha, e)) != KD_OK) goto done;
        if (m->size >= 0 && offset == (uint64_t)m->size && offset > 0) { /* complete already */
            ok = 1;
            break;
        }
        sk.f = fopen(inc, offset ? "ab" : "wb");
        if (!sk.f) {
            s = kd_errf(e, KD_ERR_IO, "cannot write %s: %s", inc, strerror(errno));
            goto done;
        }
        if (!r->curl) { /* http_request creates the handle; the sink needs it for the status */
            pthread_once(&curl_once, curl_init);
            if (curl_init_rc == CURLE_OK) r->curl = curl_easy_init();
            if (!r->curl) {
                fclose(sk.f);
                s = kd_errf(e, KD_ERR_IO, "libcurl could not be initialised");
                goto done;
            }
        }
        sk.h = r->curl;
        CURLcode cc = http_request(r, 0, m->location, offset, &sk, &h, NULL, errbuf, e);
        if (cc == CURLE_OK && !sk.decided && (h.status == 200 || h.status == 206)) sink_decide(&sk); /* empty body */
        int close_err = fclose(sk.f) != 0;
        if (cc == CURLE_WRITE_ERROR && sk.abort_why) {
            if (sk.abort_why == 1) {
                s = kd_errf(e, KD_ERR_OOM, "%s: more than %u MB; JSON files that large are refused", m->location,
                            KD_HUB_MAX_JSON_BYTES >> 20);
                remove(inc);
                goto done;
            }
            if (sk.abort_why == 2) {
                s = kd_errf(e, KD_ERR_IO, "%s: the server answered a range request from byte %llu with '%s'",
                            m->location, (unsigned long long)offset, h.content_range);
                remove(inc); /* start over */
                continue;
            }
            s = kd_errf(e, KD_ERR_IO, "cannot write %s: %s", inc, strerror(errno));
            goto done;
        }
        if (close_err) {
            s = kd_errf(e, KD_ERR_IO, "cannot write %s: %s", inc, strerror(errno));
            goto done;
        }
        if (cc != CURLE_OK) {
            s = net_error(r, m->location, errbuf, e);
            if (!retryable(cc)) goto done;
            continue;
        }
        if (h.status == 200 || h.status == 206) {
            ok = 1;
        } else if (h.status == 416 && m->size >= 0 && offset == (uint64_t)m->size) {
            ok = 1;
        } else if (h.status == 416) {
            s = kd_errf(e, KD_ERR_IO, "HTTP 416 for %s from byte %llu", m->location, (unsigned long long)offset);
            remove(inc);
        } else {
            s = http_error(r, path, m->location, &h, e);
            if (h.status < 500 && h.status != 429 && h.status != 408) goto done;
        }
    }
    if (!ok) {
        if (is_file(inc))
            kd_err_prefix(e, "%s: download failed after %d tries (the part downloaded is kept in %s and resumes next "
                          "time)", path, max_attempts, inc);
        else kd_err_prefix(e, "%s: download failed after %d tries", path, max_attempts);
        goto done;
    }
    s = KD_OK;
    {
        struct stat st;
        uint64_t got = stat(inc, &st) == 0 ? (uint64_t)st.st_size : 0;
        if (m->size >= 0 && got != (uint64_t)m->size) {
            remove(inc);
            s = kd_errf(e, KD_ERR_IO, "%s: got %llu bytes, the server announced %lld; the file was deleted, try again",
                        m->location, (unsigned long long)got, (long long)m->size);
            goto done;
        }
        if (is_hex(m->etag, 64)) {
            uint8_t d[32];
            char hex[65];
            kd_sha256_final(&sk.sha, d);
            to_hex(d, 32, hex);
            if (strcmp(hex, m->etag)) {
                remove(inc);
                s = kd_errf(e, KD_ERR_FORMAT,
                            "%s: sha256 mismatch for %s: expected %s, got %s; the download was deleted, try again",
                            path, m->location, m->etag, hex);
                goto done;
            }
        }
        if (rename(inc, blob) != 0) {
            s = kd_errf(e, KD_ERR_IO, "cannot rename %s to %s: %s", inc, blob, strerror(errno));
            goto done;
        }
        if (o && o->progress) o->progress(o->progress_user, path, got, got);
    }
done:
    if (lockfd >= 0) close(lockfd); /* releases the flock */
    free(lockdir);
    free(lockpath);
    free(inc);
    return s;
}

/* Makes <snapshot>/<path> present (the commit is pinned or we are offline). */
static kd_status fetch_one(kd_hub_repo *r, const char *path, int optional, int *found, kd_err *e) {
    if (found) *found = 0;
    const char *why = bad_relpath(path);
    if (why) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: file name '%s' %s", r->repo_id, path, why);
    if (present(r, path)) {
        if (found) *found = 1;
        return KD_OK;
    }
    if (optional && known_absent(r, path)) return KD_OK;
    if (r->offline) return offline_error(r, path, e);
    if (!r->pinned) KD_TRY(pin(r, path, e));
    if (present(r, path)) { /* already in the pinned commit's snapshot */
        if (found) *found = 1;
        return KD_OK;
    }
    file_meta m;
    if (r->pin_path && !strcmp(r->pin_path, path)) { /* the pinning request was for this file */
        m = r->pin_meta;
        r->pin_meta.location = NULL;
        free(r->pin_path);
        r->pin_path = NULL;
    } else {
        KD_TRY(head_meta(r, path, r->commit, &m, e));
    }
    kd_status s = KD_OK;
    if (m.status == 404) {
        if (optional) {
            char *ne = no_exist_path(r, path);
            if (ne && mkdir_parent(ne, NULL) == KD_OK) {
                FILE *f = fopen(ne, "wb");
                if (f) fclose(f);
            }
            free(ne);
        } else {
            char *url = resolve_url(r, r->commit, path);
            s = kd_errf(e, KD_ERR_NOT_FOUND, "HTTP 404 for %s: %s is not in repo %s at revision %s (commit %s)",
                        url ? url : path, path, r->repo_id, r->revision, r->commit);
            free(url);
        }
        meta_free(&m);
        return s;
    }
    char *blob = fmt_alloc("%s/blobs/%s", r->repo_dir, m.etag);
    if (!blob) s = kd_errf(e, KD_ERR_OOM, "out of memory");
    if (s == KD_OK && !is_file(blob) && (s = download_blob(r, path, &m, blob, e)) != KD_OK)
        kd_err_prefix(e, "%s", r->repo_id);
    if (s == KD_OK) s = link_snapshot(r, path, m.etag, e);
    if (s == KD_OK && found) *found = 1;
    free(blob);
    meta_free(&m);
    return s;
}

kd_status kd_hub_fetch_file(kd_hub_repo *r, const char *path, int optional, int *found, kd_err *e) {
    if (!r || !path) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_hub_fetch_file: NULL argument");
    return fetch_one(r, path, optional, found, e);
}

/* ---- components ---------------------------------------------------------------------------------- */

typedef struct spec_file {
    const char *name;
    int optional;
} spec_file;

static const spec_file files_model[] = {{"config.json", 0}, {NULL, 0}};
static const spec_file files_scheduler[] = {{"scheduler_config.json", 0}, {NULL, 0}};
static const spec_file files_scheduler_optional[] = {{"scheduler_config.json", 1}, {NULL, 0}};
/* What kd_clip_tokenizer_load_hf reads; the two configs change tokenisation when present. */
static const spec_file files_tokenizer[] = {
    {"vocab.json", 0}, {"merges.txt", 0}, {"tokenizer_config.json", 1}, {"special_tokens_map.json", 1}, {NULL, 0}};

/* What kd_xlmr_tokenizer_load reads (either file suffices; the loader names what is missing). */
static const spec_file files_xlmr[] = {{"tokenizer.json", 1},
                                       {"sentencepiece.bpe.model", 1},
                                       {"tokenizer_config.json", 1},
                                       {"special_tokens_map.json", 1},
                                       {NULL, 0}};

static const spec_file *kind_files(kd_hub_kind k) {
    switch (k) {
    case KD_HUB_DIFFUSERS:
    case KD_HUB_TRANSFORMERS: return files_model;
    case KD_HUB_SCHEDULER: return files_scheduler;
    case KD_HUB_SCHEDULER_OPTIONAL: return files_scheduler_optional;
    case KD_HUB_CLIP_TOKENIZER: return files_tokenizer;
    case KD_HUB_XLMR_TOKENIZER: return files_xlmr;
    }
    return NULL;
}

/* The single weights file of a kind (NULL: no weights); its index is the name + ".index.json". The
 * one place that decides which weights a component is fetched with. */
static const char *kind_weights(kd_hub_kind k) {
    return k == KD_HUB_DIFFUSERS ? "diffusion_pytorch_model.safetensors"
           : k == KD_HUB_TRANSFORMERS ? "model.safetensors"
                                      : NULL;
}

/* PyTorch pickle weights some published components ship instead (the ControlNet-depth U-Net has
 * only diffusion_pytorch_model.bin); fetched when neither safetensors form exists. */
static const char *kind_bin(kd_hub_kind k) {
    return k == KD_HUB_DIFFUSERS ? "diffusion_pytorch_model.bin" : k == KD_HUB_TRANSFORMERS ? "pytorch_model.bin" : NULL;
}

typedef struct str_list {
    char **v;
    size_t n;
} str_list;

static void list_free(str_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* The shard files a (present) index names, as repo paths "<component>/<shard>", each once. */
static kd_status read_shards(kd_hub_repo *r, const char *component, const char *index_rel, str_list *out, kd_err *e) {
    out->v = NULL;
    out->n = 0;
    char *p = snap_path(r, index_rel);
    if (!p) return kd_errf(e, KD_ERR_OOM, "out of memory");
    kd_config cfg = {0};
    kd_status s = kd_config_load(p, &cfg, e);
    const cJSON *map = s == KD_OK ? kd_config_get(&cfg, "weight_map") : NULL;
    if (s == KD_OK && !cJSON_IsObject(map))
        s = kd_errf(e, KD_ERR_FORMAT, "%s: 'weight_map' is missing or not an object", p);
    const cJSON *it = NULL;
    if (s == KD_OK) {
        cJSON_ArrayForEach(it, map) {
            if (!cJSON_IsString(it)) {
                s = kd_errf(e, KD_ERR_FORMAT, "%s: weight_map['%s'] is not a string", p, it->string ? it->string : "?");
                break;
            }
            const char *why = bad_relpath(it->valuestring);
            if (why) {
                s = kd_errf(e, KD_ERR_FORMAT, "%s: shard name '%s' %s; refused", p, it->valuestring, why);
                break;
            }
            char *full = fmt_alloc("%s/%s", component, it->valuestring);
            if (!full) {
                s = kd_errf(e, KD_ERR_OOM, "out of memory");
                break;
            }
            int dup = 0;
            for (size_t i = 0; i < out->n && !dup; i++) dup = !strcmp(out->v[i], full);
            if (dup) {
                free(full);
                continue;
            }
            if (out->n >= MAX_SHARDS) {
                free(full);
                s = kd_errf(e, KD_ERR_FORMAT, "%s: more than %d shards", p, MAX_SHARDS);
                break;
            }
            char **v = realloc(out->v, (out->n + 1) * sizeof *v);
            if (!v) {
                free(full);
                s = kd_errf(e, KD_ERR_OOM, "out of memory");
                break;
            }
            out->v = v;
            out->v[out->n++] = full;
        }
    }
    if (s == KD_OK && out->n == 0) s = kd_errf(e, KD_ERR_FORMAT, "%s: weight_map names no shard", p);
    if (s != KD_OK) list_free(out);
    kd_config_free(&cfg);
    free(p);
    return s;
}

/* First file of the component missing from the snapshot (*missing malloc'd), or NULL if complete. */
static kd_status component_missing(kd_hub_repo *r, const char *comp, kd_hub_kind kind, char **missing, kd_err *e) {
    *missing = NULL;
    char buf[MAX_RELPATH + 128];
    for (const spec_file *f = kind_files(kind); f && f->name; f++) {
        snprintf(buf, sizeof buf, "%s/%s", comp, f->name);
        if (!present(r, buf) && !(f->optional && known_absent(r, buf))) {
            *missing = dupstr(buf);
            return *missing ? KD_OK : kd_errf(e, KD_ERR_OOM, "out of memory");
        }
    }
    const char *w = kind_weights(kind);
    if (!w) return KD_OK;
    snprintf(buf, sizeof buf, "%s/%s", comp, w);
    if (present(r, buf)) return KD_OK;
    snprintf(buf, sizeof buf, "%s/%s", comp, kind_bin(kind));
    if (present(r, buf)) return KD_OK;
    snprintf(buf, sizeof buf, "%s/%s.index.json", comp, w);
    if (!present(r, buf)) {
        snprintf(buf, sizeof buf, "%s/%s", comp, w);
        *missing = dupstr(buf);
        return *missing ? KD_OK : kd_errf(e, KD_ERR_OOM, "out of memory");
    }
    str_list shards;
    KD_TRY(read_shards(r, comp, buf, &shards, e));
    kd_status s = KD_OK;
    for (size_t i = 0; i < shards.n && !*missing && s == KD_OK; i++)
        if (!present(r, shards.v[i]) && !(*missing = dupstr(shards.v[i]))) s = kd_errf(e, KD_ERR_OOM, "out of memory");
    list_free(&shards);
    return s;
}

static kd_status check_component_name(const kd_hub_repo *r, const char *comp, kd_err *e) {
    const char *why = bad_relpath(comp);
    if (why || strlen(comp) > MAX_RELPATH - 64)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s: component folder '%s' %s", r->repo_id, comp, why ? why : "is too long");
    return KD_OK;
}

/* Fetches what is missing of a component (local check done by the caller or not). */
static kd_status fetch_component(kd_hub_repo *r, const char *comp, kd_hub_kind kind, kd_err *e) {
    char *missing = NULL;
    KD_TRY(component_missing(r, comp, kind, &missing, e));
    if (!missing) return KD_OK;
    kd_status s = KD_OK;
    if (r->offline) s = offline_error(r, missing, e);
    else if (!r->pinned) s = pin(r, missing, e);
    free(missing);
    KD_TRY(s);
    char buf[MAX_RELPATH + 128];
    for (const spec_file *f = kind_files(kind); f && f->name; f++) {
        snprintf(buf, sizeof buf, "%s/%s", comp, f->name);
        KD_TRY(fetch_one(r, buf, f->optional, NULL, e));
    }
    const char *w = kind_weights(kind);
    if (!w) return KD_OK;
    char single[MAX_RELPATH + 128], index[MAX_RELPATH + 160];
    snprintf(single, sizeof single, "%s/%s", comp, w);
    snprintf(index, sizeof index, "%s/%s.index.json", comp, w);
    if (!present(r, index)) {
        int found = 0;
        KD_TRY(fetch_one(r, single, 1, &found, e));
        if (found) return KD_OK;
        KD_TRY(fetch_one(r, index, 1, &found, e));
        if (!found) {
            char bin[MAX_RELPATH + 128];
            snprintf(bin, sizeof bin, "%s/%s", comp, kind_bin(kind));
            KD_TRY(fetch_one(r, bin, 1, &found, e));
            if (found) return KD_OK;
            return kd_errf(e, KD_ERR_NOT_FOUND, "%s (commit %s) has none of %s, %s, %s", r->repo_id, r->commit, single,
                           index, bin);
        }
    }
    str_list shards;
    KD_TRY(read_shards(r, comp, index, &shards, e));
    for (size_t i = 0; i < shards.n && s == KD_OK; i++) s = fetch_one(r, shards.v[i], 0, NULL, e);
    list_free(&shards);
    return s;
}

kd_status kd_hub_fetch_component(kd_hub_repo *r, const char *component, kd_hub_kind kind, kd_err *e) {
    if (!r || !component) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_hub_fetch_component: NULL argument");
    if (!kind_files(kind)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_hub_fetch_component: unknown kind %d", (int)kind);
    KD_TRY(check_component_name(r, component, e));
    return fetch_component(r, component, kind, e);
}

/* ---- resolution ---------------------------------------------------------------------------------- */

/* A folder on disk, or a reason why id_or_path cannot be a repo id (then *handled = 1). */
static kd_status resolve_local(const char *id_or_path, char **out_dir, int *handled, kd_err *e) {
    *handled = 1;
    if (is_dir(id_or_path)) {
        *out_dir = dupstr(id_or_path);
        return *out_dir ? KD_OK : kd_errf(e, KD_ERR_OOM, "out of memory");
    }
    if (kd_hub_is_repo_id(id_or_path)) {
        *handled = 0;
        return KD_OK;
    }
    struct stat st;
    if (stat(id_or_path, &st) == 0)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s is a file; a model folder or a Hub repo id (org/name) is needed",
                       id_or_path);
    return kd_errf(e, KD_ERR_NOT_FOUND,
                   "%s: no such folder, and not a Hub repo id either (org/name or org/name@revision)", id_or_path);
}

kd_status kd_hub_resolve(const char *id_or_path, const char *const *needed_files, kd_hub_opts *opts, char **out_dir,
                         kd_err *e) {
    if (!id_or_path || !out_dir) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_hub_resolve: NULL argument");
    *out_dir = NULL;
    int handled;
    kd_status s = resolve_local(id_or_path, out_dir, &handled, e);
    if (handled) return s;
    for (size_t i = 0; needed_files && needed_files[i]; i++) {
        const char *why = bad_relpath(needed_files[i]);
        if (why) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: file name '%s' %s", id_or_path, needed_files[i], why);
    }
    kd_hub_repo *r;
    KD_TRY(kd_hub_repo_open(id_or_path, opts, &r, e));
    const char *missing = NULL;
    for (size_t i = 0; needed_files && needed_files[i] && !missing; i++)
        if (!present(r, needed_files[i])) missing = needed_files[i];
    if (missing && r->offline) s = offline_error(r, missing, e);
    else if (missing) s = pin(r, missing, e);
    for (size_t i = 0; s == KD_OK && missing && needed_files[i]; i++) s = fetch_one(r, needed_files[i], 0, NULL, e);
    if (s == KD_OK && !r->snapshot) /* no file asked for, and no commit known for the revision */
        s = kd_errf(e, KD_ERR_NOT_FOUND, "%s: no snapshot is cached for revision %s (%s/refs/%s)", r->repo_id,
                    r->revision, r->repo_dir, r->revision);
    if (s == KD_OK && !(*out_dir = dupstr(r->snapshot))) s = kd_errf(e, KD_ERR_OOM, "out of memory");
    kd_hub_repo_close(r);
    return s;
}

typedef struct comp_spec {
    const char *name;
    kd_hub_kind kind;
} comp_spec;

static const comp_spec prior_components[] = {{"tokenizer", KD_HUB_CLIP_TOKENIZER},
                                             {"text_encoder", KD_HUB_TRANSFORMERS},
                                             {"image_encoder", KD_HUB_TRANSFORMERS},
                                             {"prior", KD_HUB_DIFFUSERS},
                                             {"scheduler", KD_HUB_SCHEDULER},
                                             {NULL, 0}};
static const comp_spec decoder_components[] = {
    {"unet", KD_HUB_DIFFUSERS}, {"movq", KD_HUB_DIFFUSERS}, {"scheduler", KD_HUB_SCHEDULER}, {NULL, 0}};
/* Kandinsky 2.1 decoders also read the prompt: their model_index.json lists a text_encoder. The
 * published one also ships ddpm_scheduler/ (kd_pipeline_set_decoder_scheduler), fetched if present. */
static const comp_spec decoder21_components[] = {{"unet", KD_HUB_DIFFUSERS},
                                                 {"movq", KD_HUB_DIFFUSERS},
                                                 {"scheduler", KD_HUB_SCHEDULER},
                                                 {"ddpm_scheduler", KD_HUB_SCHEDULER_OPTIONAL},
                                                 {"text_encoder", KD_HUB_TRANSFORMERS},
                                                 {"tokenizer", KD_HUB_XLMR_TOKENIZER},
                                                 {NULL, 0}};

/* The decoder's components, from the snapshot's model_index.json (2.1 when it names a text_encoder). */
static const comp_spec *decoder_list(const kd_hub_repo *r) {
    char *p = snap_path(r, "model_index.json");
    kd_config cfg = {0};
    int v21 = p && kd_config_load(p, &cfg, NULL) == KD_OK && kd_config_has(&cfg, "text_encoder");
    kd_config_free(&cfg);
    free(p);
    return v21 ? decoder21_components : decoder_components;
}

/* Kandinsky 2.0 (sberbank-ai/Kandinsky_2.0, the original layout): the files the original
 * get_kandinsky2_0 downloads, with the U-Net of the task. */
#define K20_TEXT_FILES                                                                                                 \
    "vae.ckpt", "text_encoder1/config.json", "text_encoder1/pytorch_model.bin", "text_encoder1/sentencepiece.bpe.model", \
        "text_encoder1/special_tokens_map.json", "text_encoder1/tokenizer.json", "text_encoder1/tokenizer_config.json",  \
        "text_encoder2/config.json", "text_encoder2/pytorch_model.bin", "text_encoder2/spiece.model",                    \
        "text_encoder2/special_tokens_map.json", "text_encoder2/tokenizer_config.json"
static const char *const k20_files[] = {"Kandinsky-2-0.pt", K20_TEXT_FILES, NULL};
static const char *const k20_inpaint_files[] = {"Kandinsky-2-0-inpainting.pt", K20_TEXT_FILES, NULL};

kd_status kd_hub_resolve_pipeline(const char *id_or_path, const char *kind, kd_hub_opts *opts, char **out_dir,
                                  kd_err *e) {
    if (!id_or_path || !kind || !out_dir) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_hub_resolve_pipeline: NULL argument");
    *out_dir = NULL;
    if (!strcmp(kind, "kandinsky2.0") || !strcmp(kind, "kandinsky2.0-inpaint")) {
        kd_status s = kd_hub_resolve(id_or_path, kind[12] ? k20_inpaint_files : k20_files, opts, out_dir, e);
        if (s != KD_OK) kd_err_prefix(e, "%s model", kind);
        return s;
    }
    const comp_spec *comps = !strcmp(kind, "prior") ? prior_components
                             : !strcmp(kind, "decoder") ? decoder_components
                                                        : NULL;
    if (!comps)
        return kd_errf(e, KD_ERR_INVALID_ARG,
                       "model kind '%s': expected \"prior\", \"decoder\", \"kandinsky2.0\" or \"kandinsky2.0-inpaint\"", kind);
    int handled;
    kd_status s = resolve_local(id_or_path, out_dir, &handled, e);
    if (handled) return s;
    kd_hub_repo *r;
    KD_TRY(kd_hub_repo_open(id_or_path, opts, &r, e));
    int is_decoder = comps == decoder_components;
    /* 1. everything already in the snapshot of the known commit: no network at all */
    char *missing = NULL;
    if (!present(r, "model_index.json") && !(missing = dupstr("model_index.json"))) s = kd_errf(e, KD_ERR_OOM, "out of memory");
    if (is_decoder && !missing) comps = decoder_list(r);
    for (const comp_spec *c = comps; s == KD_OK && !missing && c->name; c++)
        s = component_missing(r, c->name, c->kind, &missing, e);
    /* 2. else pin the commit once and fetch what that snapshot lacks */
    if (s == KD_OK && missing) {
        s = r->offline ? offline_error(r, missing, e) : pin(r, missing, e);
        if (s == KD_OK) s = fetch_one(r, "model_index.json", 0, NULL, e);
        if (s == KD_OK && is_decoder) comps = decoder_list(r);
        for (const comp_spec *c = comps; s == KD_OK && c->name; c++) s = fetch_component(r, c->name, c->kind, e);
    }
    free(missing);
    if (s == KD_OK && !(*out_dir = dupstr(r->snapshot))) s = kd_errf(e, KD_ERR_OOM, "out of memory");
    if (s != KD_OK) kd_err_prefix(e, "%s model", kind); /* the messages name the repo already */
    kd_hub_repo_close(r);
    return s;
}

/* ---- public ---------------------------------------------------------------------------------------- */

kd_status kd_model_resolve(kd_ctx *ctx, const char *id_or_path, const char *kind, kd_download_progress_fn cb,
                           void *user, char **out_dir) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!id_or_path || !kind || !out_dir) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "kd_model_resolve: NULL argument");
    kd_hub_opts o = kd_hub_opts_default();
    o.progress = cb;
    o.progress_user = user;
    return kd_hub_resolve_pipeline(id_or_path, kind, &o, out_dir, &ctx->err);
}
