/* Hub cache and downloads (src/io/hub.c) against a local Hub-like HTTP/1.1 server run by this
 * test on 127.0.0.1 (one thread, one connection at a time, stops by itself):
 *   GET|HEAD /{org}/{name}/resolve/{main|commit}/{path}
 *       regular files: 200, ETag "<40 hex>" (a stand-in for the git blob sha1), X-Repo-Commit
 *       *.safetensors (LFS): 302 to /cdn/{org}/{name}/{path}, X-Linked-Etag "<sha256>",
 *       X-Linked-Size, X-Repo-Commit, as the Hub answers for LFS files
 *       missing: 404 X-Error-Code EntryNotFound (+ X-Repo-Commit); unknown revision: 404
 *       RevisionNotFound; unknown repo: 401 RepositoryNotFound; optional token check: 401
 *   GET|HEAD /cdn/...: the content, with Range (206/416) support
 * Modes: drop the connection half way (n times), serve a corrupted LFS body, require a token.
 * Every request is logged (method, file, range start) so the tests can count and inspect them.
 *
 * Covers: sha256 vectors; repo id syntax; cold download of the tiny 2.2 prior and decoder (the
 * decoder's movq served sharded: index + shard) and the cache layout huggingface_hub writes
 * (refs/main, relative snapshot symlinks, blobs named by etag, .no_exist markers, commit pinning);
 * warm resolution making no request (server running, and server stopped with and without
 * HF_HUB_OFFLINE); offline errors; resume after dropped connections (within one call, and across
 * calls from the .incomplete file); sha256 mismatch; 401 without token / success with HF_TOKEN or
 * the token file; 404 messages; shard names with ".." or absolute paths refused; revision pinning
 * org/name@commit; the JSON size cap; connection failure message; and finally loading the resolved
 * folders with kd_pipeline_load + kd_generate_embeds (2 prior steps), equal to the source folders. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "io/hub.h"
#include "io/safetensors.h"
#include "kandinsky.h"
#include "testutil.h"

#define PRIOR_ID "test-org/kd22-prior"
#define DECODER_ID "test-org/kd22-decoder"
#define EVIL_ID "test-org/evil"
#define BIG_ID "test-org/big"
#define BIN_ID "test-org/kd22-controlnet-bin"
#define BIN_COMMIT "00000000000000000000000000000000000000c2"
#define V21_ID "test-org/kd21-decoder"
#define V21_COMMIT "00000000000000000000000000000000000000d3"
#define PRIOR_COMMIT "0123456789abcdef0123456789abcdef01234567"
#define DECODER_COMMIT "fedcba9876543210fedcba9876543210fedcba98"
#define EVIL_COMMIT "00000000000000000000000000000000000000e1"
#define BIG_COMMIT "00000000000000000000000000000000000000b1"
#define MAX_LOG 4096

/* ---- file helpers ---- */

static int rm_rf(const char *path, int depth) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode) && depth < 32) {
        DIR *d = opendir(path);
        if (!d) return -1;
        struct dirent *de;
        char sub[4096];
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rm_rf(sub, depth + 1);
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

static void mkdirs(const char *path) {
    char p[8192];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static void parent_dirs(const char *path) {
    char p[8192];
    snprintf(p, sizeof p, "%s", path);
    char *s = strrchr(p, '/');
    if (s) {
        *s = 0;
        mkdirs(p);
    }
}

static int write_text(const char *path, const char *text) {
    parent_dirs(path);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    fclose(f);
    *n = len;
    return buf;
}

static int file_sha256(const char *path, char hex[65]) {
    size_t n;
    unsigned char *b = read_all(path, &n);
    if (!b) return -1;
    kd_sha256_hex(b, n, hex);
    free(b);
    return 0;
}

static int is_link(const char *p) {
    struct stat st;
    return lstat(p, &st) == 0 && S_ISLNK(st.st_mode);
}

static int exists(const char *p) {
    struct stat st;
    return lstat(p, &st) == 0;
}

static long long fsize(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

static int link_target(const char *p, char *buf, size_t cap) {
    ssize_t n = readlink(p, buf, cap - 1);
    if (n < 0) return -1;
    buf[n] = 0;
    return 0;
}

/* Number of directory entries whose name ends with suffix. */
static int count_suffix(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int c = 0;
    struct dirent *de;
    size_t m = strlen(suffix);
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n >= m && !strcmp(de->d_name + n - m, suffix)) c++;
    }
    closedir(d);
    return c;
}

/* ---- the server ---- */

typedef struct srv_repo {
    const char *id, *commit;
    char root[2400];
} srv_repo;

typedef struct req_log {
    char method[16];
    char file[512];   /* repo path, for /resolve/ and /cdn/ */
    char rev[64];     /* revision in /resolve/ URLs ("" for /cdn/) */
    int cdn;
    long long range;  /* -1: no Range */
    int status;
} req_log;

typedef struct server {
    int fd, port;
    pthread_t th;
    pthread_mutex_t mu;
    int stop;
    srv_repo repos[8];
    int n_repos;
    /* modes */
    char token[64];
    char drop_file[512];
    int drop_count;
    char corrupt_file[512];
    int no_range; /* answer Range requests with the whole file (200) */
    /* log */
    req_log log[MAX_LOG];
    int n_log;
} server;

static server S;

static int send_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

static void send_head(int fd, int code, const char *reason, const char *extra, long long len) {
    char h[4096];
    int n = snprintf(h, sizeof h, "HTTP/1.1 %d %s\r\n%sContent-Length: %lld\r\nConnection: close\r\n\r\n", code, reason,
                     extra, len);
    send_all(fd, h, (size_t)n);
}

static void send_error(int fd, int code, const char *reason, const char *extra, int is_head) {
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", code, reason);
    send_head(fd, code, reason, extra, n);
    if (!is_head) send_all(fd, body, (size_t)n);
}

static const char *find_header(const char *req, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    for (const char *p = strstr(req, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
        const char *line = p + 2;
        if (!strncasecmp(line, name, nl) && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (*v == ' ') v++;
            const char *end = strstr(v, "\r\n");
            size_t n = end ? (size_t)(end - v) : strlen(v);
            if (n >= cap) n = cap - 1;
            memcpy(out, v, n);
            out[n] = 0;
            return out;
        }
    }
    return NULL;
}

static void log_req(const char *method, const char *file, const char *rev, int cdn, long long range, int status) {
    pthread_mutex_lock(&S.mu);
    if (S.n_log < MAX_LOG) {
        req_log *l = &S.log[S.n_log++];
        snprintf(l->method, sizeof l->method, "%s", method);
        snprintf(l->file, sizeof l->file, "%s", file);
        snprintf(l->rev, sizeof l->rev, "%s", rev);
        l->cdn = cdn, l->range = range, l->status = status;
    }
    pthread_mutex_unlock(&S.mu);
}

/* Serves file content (cdn or a regular file), honouring Range and the drop / corrupt modes. */
static void serve_body(int fd, const char *method, const char *file, const char *rev, int cdn, const unsigned char *data,
                       size_t size, const char *req, const char *extra) {
    int is_head = !strcmp(method, "HEAD");
    char range[128];
    long long from = -1;
    if (find_header(req, "Range", range, sizeof range) && sscanf(range, "bytes=%lld-", &from) != 1) from = -1;
    long long asked = from;
    pthread_mutex_lock(&S.mu);
    if (S.no_range) from = -1;
    int drop = !is_head && S.drop_count > 0 && !strcmp(S.drop_file, file);
    if (drop) S.drop_count--;
    int corrupt = !strcmp(S.corrupt_file, file);
    pthread_mutex_unlock(&S.mu);
    if (from >= 0 && (size_t)from >= size && size > 0) {
        char x[1024];
        snprintf(x, sizeof x, "%sContent-Range: bytes */%zu\r\n", extra, size);
        log_req(method, file, rev, cdn, from, 416);
        send_error(fd, 416, "Range Not Satisfiable", x, is_head);
        return;
    }
    size_t start = from > 0 ? (size_t)from : 0, len = size - start;
    char x[1024];
    if (from >= 0) snprintf(x, sizeof x, "%sAccept-Ranges: bytes\r\nContent-Range: bytes %zu-%zu/%zu\r\n", extra, start,
                            size ? size - 1 : 0, size);
    else snprintf(x, sizeof x, "%sAccept-Ranges: bytes\r\n", extra);
    int code = from >= 0 ? 206 : 200;
    log_req(method, file, rev, cdn, asked, code);
    send_head(fd, code, code == 206 ? "Partial Content" : "OK", x, (long long)len);
    if (is_head) return;
    unsigned char *body = malloc(len ? len : 1);
    if (!body) return;
    memcpy(body, data + start, len);
    if (corrupt && len > 10) body[len / 2] ^= 0x5a;
    send_all(fd, body, drop ? len / 2 : len);
    free(body);
}

static void handle(int fd) {
    char req[16384];
    size_t n = 0;
    while (n < sizeof req - 1) {
        ssize_t k = recv(fd, req + n, sizeof req - 1 - n, 0);
        if (k <= 0) return;
        n += (size_t)k;
        req[n] = 0;
        if (strstr(req, "\r\n\r\n")) break;
    }
    char method[16], target[2048];
    if (sscanf(req, "%15s %2047s", method, target) != 2) return;
    int is_head = !strcmp(method, "HEAD");
    /* /cdn/{org}/{name}/{file} or /{org}/{name}/resolve/{rev}/{file} */
    int cdn = !strncmp(target, "/cdn/", 5);
    const char *p = target + (cdn ? 5 : 1);
    const char *s1 = strchr(p, '/');
    const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
    if (!s1 || !s2) {
        send_error(fd, 404, "Not Found", "", is_head);
        return;
    }
    char id[256];
    snprintf(id, sizeof id, "%.*s", (int)(s2 - p), p);
    srv_repo *repo = NULL;
    for (int i = 0; i < S.n_repos; i++)
        if (!strcmp(S.repos[i].id, id)) repo = &S.repos[i];
    const char *file;
    char rev[128] = "";
    if (cdn) file = s2 + 1;
    else {
        if (strncmp(s2, "/resolve/", 9)) {
            send_error(fd, 404, "Not Found", "", is_head);
            return;
        }
        const char *r = s2 + 9, *s3 = strchr(r, '/');
        if (!s3) {
            send_error(fd, 404, "Not Found", "", is_head);
            return;
        }
        snprintf(rev, sizeof rev, "%.*s", (int)(s3 - r), r);
        file = s3 + 1;
    }
    if (!repo) {
        log_req(method, file, rev, cdn, -1, 401);
        send_error(fd, 401, "Unauthorized", "X-Error-Code: RepositoryNotFound\r\n", is_head);
        return;
    }
    char xc[128];
    snprintf(xc, sizeof xc, "X-Repo-Commit: %s\r\n", repo->commit);
    if (!cdn) {
        char auth[256], want[128];
        pthread_mutex_lock(&S.mu);
        snprintf(want, sizeof want, "Bearer %s", S.token);
        int need = S.token[0] != 0;
        pthread_mutex_unlock(&S.mu);
        if (need && (!find_header(req, "Authorization", auth, sizeof auth) || strcmp(auth, want))) {
            log_req(method, file, rev, cdn, -1, 401);
            send_error(fd, 401, "Unauthorized", "X-Error-Code: GatedRepo\r\nX-Error-Message: Access to model "
                                                "test-org is restricted. You must be authenticated.\r\n",
                       is_head);
            return;
        }
        if (strcmp(rev, "main") && strcmp(rev, repo->commit)) {
            log_req(method, file, rev, cdn, -1, 404);
            send_error(fd, 404, "Not Found", "X-Error-Code: RevisionNotFound\r\n", is_head);
            return;
        }
    }
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", repo->root, file);
    struct stat st;
    size_t size = 0;
    unsigned char *data = NULL;
    if (strstr(file, "..") || stat(path, &st) != 0 || !S_ISREG(st.st_mode) || !(data = read_all(path, &size))) {
        char x[256];
        snprintf(x, sizeof x, "X-Error-Code: EntryNotFound\r\n%s", xc);
        log_req(method, file, rev, cdn, -1, 404);
        send_error(fd, 404, "Not Found", x, is_head);
        free(data);
        return;
    }
    char sha[65];
    kd_sha256_hex(data, size, sha);
    size_t fn = strlen(file);
    int lfs = fn > 12 && !strcmp(file + fn - 12, ".safetensors");
    if (!cdn && lfs) {
        char x[2048];
        snprintf(x, sizeof x,
                 "%sX-Linked-Etag: \"%s\"\r\nX-Linked-Size: %zu\r\nETag: \"%.40s\"\r\nLocation: /cdn/%s/%s\r\n", xc,
                 sha, size, sha + 10, repo->id, file);
        log_req(method, file, rev, cdn, -1, 302);
        send_head(fd, 302, "Found", x, 0);
    } else if (!cdn) {
        char x[512];
        snprintf(x, sizeof x, "%sETag: \"%.40s\"\r\n", xc, sha);
        serve_body(fd, method, file, rev, cdn, data, size, req, x);
    } else {
        serve_body(fd, method, file, rev, cdn, data, size, req, "");
    }
    free(data);
}

static void *server_main(void *arg) {
    (void)arg;
    time_t deadline = time(NULL) + 600; /* stops by itself even if the test forgets to */
    for (int i = 0; i < 200000 && time(NULL) < deadline; i++) {
        pthread_mutex_lock(&S.mu);
        int stop = S.stop;
        pthread_mutex_unlock(&S.mu);
        if (stop) break;
        struct pollfd pfd = {S.fd, POLLIN, 0};
        if (poll(&pfd, 1, 50) <= 0) continue;
        int c = accept(S.fd, NULL, NULL);
        if (c < 0) continue;
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        handle(c);
        shutdown(c, SHUT_RDWR);
        close(c);
    }
    return NULL;
}

static int server_start(void) {
    S.fd = socket(AF_INET, SOCK_STREAM, 0);
    if (S.fd < 0) return -1;
    int one = 1;
    setsockopt(S.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t al = sizeof a;
    if (bind(S.fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(S.fd, 16) != 0 ||
        getsockname(S.fd, (struct sockaddr *)&a, &al) != 0) {
        close(S.fd);
        return -1;
    }
    S.port = ntohs(a.sin_port);
    S.stop = 0;
    if (pthread_create(&S.th, NULL, server_main, NULL) != 0) {
        close(S.fd);
        return -1;
    }
    return 0;
}

static void server_stop(void) {
    pthread_mutex_lock(&S.mu);
    S.stop = 1;
    pthread_mutex_unlock(&S.mu);
    pthread_join(S.th, NULL);
    close(S.fd);
}

static int log_count(void) {
    pthread_mutex_lock(&S.mu);
    int n = S.n_log;
    pthread_mutex_unlock(&S.mu);
    return n;
}

/* ---- test setup ---- */

static char tmp_root[2048], data_abs[2048];

/* A fresh HF_HOME (its hub/ folder is the cache) with the Hub variables reset. */
static const char *fresh_home(const char *name) {
    static char buf[4200];
    snprintf(buf, sizeof buf, "%s/%s", tmp_root, name);
    rm_rf(buf, 0);
    mkdirs(buf);
    setenv("HF_HOME", buf, 1);
    unsetenv("HF_HUB_CACHE");
    unsetenv("HUGGINGFACE_HUB_CACHE");
    unsetenv("HF_TOKEN");
    unsetenv("HUGGING_FACE_HUB_TOKEN");
    unsetenv("HF_TOKEN_PATH");
    unsetenv("HF_HUB_OFFLINE");
    return buf;
}

static kd_hub_opts fast_opts(void) {
    kd_hub_opts o = kd_hub_opts_default();
    o.retry_wait_ms = 10;
    o.connect_timeout_s = 5;
    o.low_speed_time_s = 10;
    return o;
}

static void symlink_abs(const char *target, const char *link) {
    parent_dirs(link);
    if (symlink(target, link) != 0) printf("symlink %s -> %s failed: %s\n", link, target, strerror(errno));
}

/* The served decoder: the fixture's files as symlinks, movq sharded (index + one shard). */
static int build_decoder_tree(const char *root) {
    char src[8192], dst[8192];
    const char *plain[] = {"model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                           "unet/diffusion_pytorch_model.safetensors", "movq/config.json", NULL};
    for (int i = 0; plain[i]; i++) {
        snprintf(src, sizeof src, "%s/pipeline22/decoder/%s", data_abs, plain[i]);
        snprintf(dst, sizeof dst, "%s/%s", root, plain[i]);
        symlink_abs(src, dst);
    }
    snprintf(src, sizeof src, "%s/pipeline22/decoder/movq/diffusion_pytorch_model.safetensors", data_abs);
    snprintf(dst, sizeof dst, "%s/movq/diffusion_pytorch_model-00001-of-00001.safetensors", root);
    symlink_abs(src, dst);
    kd_st_file *f;
    kd_err e = {0};
    if (kd_st_open(src, &f, &e) != KD_OK) {
        printf("cannot open %s: %s\n", src, e.msg);
        return -1;
    }
    size_t cap = 256 + f->n_tensors * 160;
    char *idx = malloc(cap);
    size_t n = (size_t)snprintf(idx, cap, "{\"metadata\": {}, \"weight_map\": {");
    for (size_t i = 0; i < f->n_tensors; i++)
        n += (size_t)snprintf(idx + n, cap - n, "%s\"%s\": \"diffusion_pytorch_model-00001-of-00001.safetensors\"",
                              i ? ", " : "", f->tensors[i].name);
    snprintf(idx + n, cap - n, "}}\n");
    kd_st_close(f);
    snprintf(dst, sizeof dst, "%s/movq/diffusion_pytorch_model.safetensors.index.json", root);
    int rc = write_text(dst, idx);
    free(idx);
    return rc;
}

/* A decoder whose U-Net exists only as a PyTorch .bin, like kandinsky-2-2-controlnet-depth. */
static int build_bin_tree(const char *root) {
    char src[8192], dst[8192];
    const char *from_decoder[] = {"model_index.json", "scheduler/scheduler_config.json", "movq/config.json",
                                  "movq/diffusion_pytorch_model.safetensors", NULL};
    for (int i = 0; from_decoder[i]; i++) {
        snprintf(src, sizeof src, "%s/pipeline22/decoder/%s", data_abs, from_decoder[i]);
        snprintf(dst, sizeof dst, "%s/%s", root, from_decoder[i]);
        symlink_abs(src, dst);
    }
    const char *from_bin[] = {"config.json", "diffusion_pytorch_model.bin", NULL};
    for (int i = 0; from_bin[i]; i++) {
        snprintf(src, sizeof src, "%s/torch_zip/unet_bin/%s", data_abs, from_bin[i]);
        snprintf(dst, sizeof dst, "%s/unet/%s", root, from_bin[i]);
        symlink_abs(src, dst);
    }
    return 0;
}

/* A Kandinsky 2.1 decoder: its model_index.json names a text_encoder, so the resolver also fetches
 * text_encoder/, the XLM-R tokenizer and the optional ddpm_scheduler/; the result loads as a 2.1
 * pipeline. (Optional files the repo lacks: see the tokenizer configs of the prior.) */
static int build_v21_tree(const char *root) {
    char src[8192], dst[8192];
    const char *files[] = {"model_index.json", "scheduler/scheduler_config.json",
                           "ddpm_scheduler/scheduler_config.json", "unet/config.json",
                           "unet/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                           "text_encoder/model.safetensors", "tokenizer/sentencepiece.bpe.model", "movq/config.json",
                           "movq/diffusion_pytorch_model.safetensors", NULL};
    for (int i = 0; files[i]; i++) {
        snprintf(src, sizeof src, "%s/pipeline21/decoder/%s", data_abs, files[i]);
        snprintf(dst, sizeof dst, "%s/%s", root, files[i]);
        symlink_abs(src, dst);
    }
    return 0;
}

static void test_v21_decoder(kd_ctx *ctx) {
    fresh_home("v21");
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    kd_status s = kd_hub_resolve_pipeline(V21_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK, "2.1 decoder resolves: %s", e.msg);
    if (s != KD_OK) return;
    char p[4600], prior[4600];
    snprintf(p, sizeof p, "%s/tokenizer/sentencepiece.bpe.model", d);
    TEST_CHECK(access(p, R_OK) == 0, "XLM-R tokenizer fetched");
    snprintf(p, sizeof p, "%s/text_encoder/model.safetensors", d);
    TEST_CHECK(access(p, R_OK) == 0, "text encoder fetched");
    snprintf(prior, sizeof prior, "%s/pipeline21/prior", data_abs);
    kd_pipeline *pl = NULL;
    s = kd_pipeline_load(ctx, prior, d, 0, &pl);
    TEST_CHECK(s == KD_OK, "the resolved 2.1 decoder loads: %s", kd_ctx_last_error(ctx));
    /* (back to DDIM: this random U-Net makes learned_range DDPM diverge, see gen_pipeline21.py) */
    if (pl)
        TEST_CHECK(kd_pipeline_set_decoder_scheduler(ctx, pl, "ddpm_scheduler") == KD_OK &&
                       kd_pipeline_set_decoder_scheduler(ctx, pl, "scheduler") == KD_OK,
                   "the fetched ddpm_scheduler/ loads: %s", kd_ctx_last_error(ctx));
    kd_gen_params g = kd_gen_params_default();
    g.prompt = "дом";
    g.width = g.height = 32;
    g.steps = 2, g.prior_steps = 2;
    kd_image img[1];
    if (pl) TEST_CHECK(kd_generate(ctx, pl, &g, img) == KD_OK, "2.1 generate: %s", kd_ctx_last_error(ctx));
    if (pl) kd_image_free(&img[0]);
    kd_pipeline_free(pl);
    free(d);
    int before = log_count();
    s = kd_hub_resolve_pipeline(V21_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK && log_count() == before, "warm 2.1 resolution makes no request (%d)", log_count() - before);
    free(d);
}

/* .bin-only weights are fetched when no safetensors form exists, found again without requests,
 * and load. */
static void test_bin_weights(kd_ctx *ctx) {
    fresh_home("bin");
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    kd_status s = kd_hub_resolve_pipeline(BIN_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK, "decoder with a .bin U-Net resolves: %s", e.msg);
    if (s != KD_OK) return;
    char p[4600];
    snprintf(p, sizeof p, "%s/unet/diffusion_pytorch_model.bin", d);
    TEST_CHECK(access(p, R_OK) == 0, ".bin fetched into the snapshot");
    kd_unet *u = NULL;
    snprintf(p, sizeof p, "%s/unet", d);
    TEST_CHECK(kd_unet_load(ctx, p, &u) == KD_OK && kd_unet_has_hint(u), "the fetched .bin U-Net loads: %s",
               kd_ctx_last_error(ctx));
    kd_unet_free(u);
    free(d);
    int before = log_count();
    s = kd_hub_resolve_pipeline(BIN_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK && log_count() == before, "warm .bin resolution makes no request (%d)", log_count() - before);
    free(d);
}

static int build_evil_tree(const char *root) {
    char p[8192];
    snprintf(p, sizeof p, "%s/model_index.json", root);
    write_text(p, "{\"_class_name\": \"KandinskyV22Pipeline\"}\n");
    const char *comps[] = {"unet", "movq", NULL};
    const char *shard[] = {"../evil.safetensors", "/etc/passwd", NULL};
    for (int i = 0; comps[i]; i++) {
        snprintf(p, sizeof p, "%s/%s/config.json", root, comps[i]);
        write_text(p, "{}\n");
        snprintf(p, sizeof p, "%s/%s/diffusion_pytorch_model.safetensors.index.json", root, comps[i]);
        char idx[256];
        snprintf(idx, sizeof idx, "{\"weight_map\": {\"a.weight\": \"%s\"}}\n", shard[i]);
        write_text(p, idx);
    }
    snprintf(p, sizeof p, "%s/evil.safetensors", root); /* what "../evil.safetensors" would reach */
    return write_text(p, "not weights");
}

static int build_big_tree(const char *root) {
    char p[8192];
    snprintf(p, sizeof p, "%s/big/config.json", root);
    parent_dirs(p);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    int rc = ftruncate(fd, (off_t)17 << 20); /* sparse: 17 MB of zeros */
    close(fd);
    return rc;
}

/* ---- progress ---- */

typedef struct prog {
    int calls;
    unsigned long long last_done, last_total;
    char last_file[256];
    int saw_unet_end;
} prog;

static void on_progress(void *user, const char *file, uint64_t done, uint64_t total) {
    prog *p = user;
    p->calls++;
    p->last_done = done;
    p->last_total = total;
    snprintf(p->last_file, sizeof p->last_file, "%s", file);
    if (!strcmp(file, "unet/diffusion_pytorch_model.safetensors") && done == total && total > 0) p->saw_unet_end = 1;
}

/* ---- tests ---- */

static void test_sha256(void) {
    char hex[65];
    kd_sha256_hex("", 0, hex);
    TEST_CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "sha256('') = %s", hex);
    kd_sha256_hex("abc", 3, hex);
    TEST_CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), "sha256(abc) = %s", hex);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    kd_sha256_hex(m, strlen(m), hex);
    TEST_CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"), "sha256(448 bits) = %s",
               hex);
    /* one million 'a', fed in uneven pieces */
    kd_sha256 c;
    kd_sha256_init(&c);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    for (size_t k = 1; left; k = k % 990 + 7) {
        size_t t = k < left ? k : left;
        kd_sha256_update(&c, a, t);
        left -= t;
    }
    uint8_t d[32];
    kd_sha256_final(&c, d);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) hex[2 * i] = hx[d[i] >> 4], hex[2 * i + 1] = hx[d[i] & 15];
    hex[64] = 0;
    TEST_CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"), "sha256(1M a) = %s",
               hex);
}

static void test_repo_ids(void) {
    TEST_CHECK(kd_hub_is_repo_id("kandinsky-community/kandinsky-2-2-prior"), "plain id");
    TEST_CHECK(kd_hub_is_repo_id("org/name@main"), "id@branch");
    TEST_CHECK(kd_hub_is_repo_id("org/name@" PRIOR_COMMIT), "id@commit");
    TEST_CHECK(kd_hub_is_repo_id("org/name@refs/pr/1"), "id@refs/pr/1");
    const char *bad[] = {"name", "/abs/path", "./rel/dir", "a/b/c", "org/", "/name", "org/na me", "org/..",
                         "org/name@", "org/name@../x", "org/-x", "org/a--b", "~/models", "org/name@a//b", NULL};
    for (int i = 0; bad[i]; i++) TEST_CHECK(!kd_hub_is_repo_id(bad[i]), "'%s' must not be a repo id", bad[i]);
}

static char prior_dir[4096], decoder_dir[4096], cold_home[4200];

static void test_cold(kd_ctx *ctx) {
    snprintf(cold_home, sizeof cold_home, "%s", fresh_home("cold"));
    prog pr = {0};
    char *pd = NULL, *dd = NULL;
    int n0 = log_count();
    kd_status s = kd_model_resolve(ctx, PRIOR_ID, "prior", on_progress, &pr, &pd);
    TEST_CHECK(s == KD_OK, "cold prior: %s", kd_ctx_last_error(ctx));
    s = kd_model_resolve(ctx, DECODER_ID, "decoder", on_progress, &pr, &dd);
    TEST_CHECK(s == KD_OK, "cold decoder: %s", kd_ctx_last_error(ctx));
    if (!pd || !dd) {
        free(pd);
        free(dd);
        return;
    }
    char want[8192];
    snprintf(want, sizeof want, "%s/hub/models--test-org--kd22-prior/snapshots/%s", cold_home, PRIOR_COMMIT);
    TEST_CHECK(!strcmp(pd, want), "prior dir %s, want %s", pd, want);
    snprintf(want, sizeof want, "%s/hub/models--test-org--kd22-decoder/snapshots/%s", cold_home, DECODER_COMMIT);
    TEST_CHECK(!strcmp(dd, want), "decoder dir %s, want %s", dd, want);
    snprintf(prior_dir, sizeof prior_dir, "%s", pd);
    snprintf(decoder_dir, sizeof decoder_dir, "%s", dd);
    TEST_CHECK(pr.calls > 0 && pr.saw_unet_end, "progress callback: %d calls, unet end %d", pr.calls, pr.saw_unet_end);
    int n_cold = log_count() - n0;
    printf("  cold download: %d requests\n", n_cold);

    /* refs/main holds the commit, exactly (no newline), as huggingface_hub writes it */
    char p[8192], t[4096], sha[65];
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/refs/main", cold_home);
    size_t n;
    unsigned char *ref = read_all(p, &n);
    TEST_CHECK(ref && n == 40 && !memcmp(ref, PRIOR_COMMIT, 40), "refs/main = '%.*s'", ref ? (int)n : 0,
               ref ? (char *)ref : "");
    free(ref);

    /* snapshot entries are relative symlinks into blobs/, named by the etag */
    snprintf(p, sizeof p, "%s/model_index.json", pd);
    TEST_CHECK(is_link(p), "model_index.json is a symlink");
    file_sha256(p, sha);
    snprintf(want, sizeof want, "../../blobs/%.40s", sha);
    TEST_CHECK(!link_target(p, t, sizeof t) && !strcmp(t, want), "model_index.json -> %s, want %s", t, want);
    snprintf(p, sizeof p, "%s/prior/diffusion_pytorch_model.safetensors", pd);
    file_sha256(p, sha);
    snprintf(want, sizeof want, "../../../blobs/%s", sha);
    TEST_CHECK(is_link(p) && !link_target(p, t, sizeof t) && !strcmp(t, want), "prior weights -> %s, want %s", t, want);
    char src_sha[65];
    file_sha256(kt_data_path("pipeline22/prior/prior/diffusion_pytorch_model.safetensors"), src_sha);
    TEST_CHECK(!strcmp(sha, src_sha), "prior weights content equals the source");
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/blobs/%s", cold_home, sha);
    TEST_CHECK(exists(p) && !is_link(p), "blob %s is a plain file", p);
    const char *prior_files[] = {"tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
                                 "tokenizer/special_tokens_map.json", "text_encoder/config.json",
                                 "text_encoder/model.safetensors", "image_encoder/config.json",
                                 "image_encoder/model.safetensors", "prior/config.json", "scheduler/scheduler_config.json",
                                 NULL};
    for (int i = 0; prior_files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", pd, prior_files[i]);
        TEST_CHECK(is_link(p) && fsize(p) > 0, "prior snapshot has %s", prior_files[i]);
    }
    snprintf(p, sizeof p, "%s/image_processor", pd);
    TEST_CHECK(!exists(p), "image_processor/ was not fetched (not needed)");
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/blobs", cold_home);
    TEST_CHECK(count_suffix(p, ".incomplete") == 0, "no .incomplete left");
    snprintf(p, sizeof p, "%s/hub/.locks/models--test-org--kd22-prior", cold_home);
    TEST_CHECK(count_suffix(p, ".lock") > 0, "lock files under .locks/models--test-org--kd22-prior");

    /* the decoder's movq came as index + shard; the missing single file is remembered in .no_exist */
    snprintf(p, sizeof p, "%s/movq/diffusion_pytorch_model.safetensors.index.json", dd);
    TEST_CHECK(is_link(p), "movq index fetched");
    snprintf(p, sizeof p, "%s/movq/diffusion_pytorch_model-00001-of-00001.safetensors", dd);
    TEST_CHECK(is_link(p) && fsize(p) > 0, "movq shard fetched");
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-decoder/.no_exist/%s/movq/diffusion_pytorch_model.safetensors",
             cold_home, DECODER_COMMIT);
    TEST_CHECK(exists(p), ".no_exist marker %s", p);

    /* the first request named the revision, every later one the pinned commit */
    pthread_mutex_lock(&S.mu);
    int main_reqs = 0, commit_reqs = 0;
    for (int i = n0; i < S.n_log; i++) {
        if (S.log[i].cdn) continue;
        if (!strcmp(S.log[i].rev, "main")) main_reqs++;
        else if (!strcmp(S.log[i].rev, PRIOR_COMMIT) || !strcmp(S.log[i].rev, DECODER_COMMIT)) commit_reqs++;
    }
    pthread_mutex_unlock(&S.mu);
    if (main_reqs != 2)
        for (int i = n0; i < S.n_log; i++)
            printf("    %s %s @%s cdn=%d range=%lld -> %d\n", S.log[i].method, S.log[i].file, S.log[i].rev, S.log[i].cdn,
                   S.log[i].range, S.log[i].status);
    TEST_CHECK(main_reqs == 2 && commit_reqs > 10, "requests at 'main': %d (want 2, one per repo), at the commit: %d",
               main_reqs, commit_reqs);
    free(pd);
    free(dd);

    /* warm: the server is up, but nothing is asked */
    kd_hub_opts o = fast_opts();
    char *w = NULL;
    int n1 = log_count();
    s = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &w, NULL);
    TEST_CHECK(s == KD_OK && w && !strcmp(w, prior_dir), "warm prior");
    free(w);
    w = NULL;
    s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &w, NULL);
    TEST_CHECK(s == KD_OK && w && !strcmp(w, decoder_dir), "warm decoder");
    free(w);
    TEST_CHECK(o.n_requests == 0 && log_count() == n1, "warm resolution made %lu requests (server saw %d)",
               o.n_requests, log_count() - n1);

    /* a link removed from the snapshot: offline names it; online relinks from the blob (HEAD only) */
    snprintf(p, sizeof p, "%s/unet/config.json", decoder_dir);
    unlink(p);
    setenv("HF_HUB_OFFLINE", "1", 1);
    kd_err e = {0};
    w = NULL;
    s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &w, &e);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(e.msg, "unet/config.json") && strstr(e.msg, "HF_HUB_OFFLINE"),
               "offline, one file missing: %s", e.msg);
    free(w);
    unsetenv("HF_HUB_OFFLINE");
    int n2 = log_count();
    w = NULL;
    s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &w, &e);
    TEST_CHECK(s == KD_OK && is_link(p), "relinked unet/config.json: %s", s ? e.msg : "ok");
    pthread_mutex_lock(&S.mu);
    int gets = 0, heads = 0;
    for (int i = n2; i < S.n_log; i++) gets += !strcmp(S.log[i].method, "GET"), heads += !strcmp(S.log[i].method, "HEAD");
    pthread_mutex_unlock(&S.mu);
    TEST_CHECK(gets == 0 && heads == 1, "relink: %d GET, %d HEAD (want 0, 1)", gets, heads);
    free(w);
}

static void test_offline_cold(void) {
    fresh_home("offline");
    setenv("HF_HUB_OFFLINE", "1", 1);
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    int n0 = log_count();
    kd_status s = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(e.msg, "offline") && strstr(e.msg, "HF_HUB_OFFLINE=1") &&
                   strstr(e.msg, "model_index.json") && strstr(e.msg, "refs/main"),
               "offline, empty cache: %s", e.msg);
    TEST_CHECK(!d && o.n_requests == 0 && log_count() == n0, "offline made no request");
    unsetenv("HF_HUB_OFFLINE");
}

/* First GET of file (at or after log index from): its Range start (-1 none, -2 no GET). */
static long long first_get_range(int from, const char *file, int nth) {
    long long r = -2;
    pthread_mutex_lock(&S.mu);
    for (int i = from; i < S.n_log; i++)
        if (!strcmp(S.log[i].method, "GET") && !strcmp(S.log[i].file, file) && nth-- == 0) {
            r = S.log[i].range;
            break;
        }
    pthread_mutex_unlock(&S.mu);
    return r;
}

static void test_resume(void) {
    const char *file = "text_encoder/model.safetensors";
    char src_sha[65], p[8192];
    file_sha256(kt_data_path("pipeline22/prior/text_encoder/model.safetensors"), src_sha);
    long long full = fsize(kt_data_path("pipeline22/prior/text_encoder/model.safetensors"));

    /* 1. dropped once: the same call retries with a Range request and completes */
    const char *home = fresh_home("resume1");
    pthread_mutex_lock(&S.mu);
    snprintf(S.drop_file, sizeof S.drop_file, "%s", file);
    S.drop_count = 1;
    pthread_mutex_unlock(&S.mu);
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    int n0 = log_count();
    kd_status s = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &d, &e);
    TEST_CHECK(s == KD_OK, "resolve with one dropped connection: %s", e.msg);
    long long r0 = first_get_range(n0, file, 0), r1 = first_get_range(n0, file, 1);
    TEST_CHECK(r0 == -1 && r1 == full / 2, "GETs of %s: range %lld then %lld (want none, then %lld)", file, r0, r1,
               full / 2);
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/blobs/%s", home, src_sha);
    TEST_CHECK(fsize(p) == full, "resumed blob complete (%lld of %lld bytes)", fsize(p), full);
    free(d);

    /* 2. dropped every time: the call fails, keeps the .incomplete, the next call resumes from it */
    home = fresh_home("resume2");
    pthread_mutex_lock(&S.mu);
    S.drop_count = 1000;
    pthread_mutex_unlock(&S.mu);
    o = fast_opts();
    o.max_attempts = 2;
    d = NULL;
    s = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_IO && strstr(e.msg, file) && strstr(e.msg, "resumes next time"),
               "always dropped: %s", e.msg);
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/blobs/%s.incomplete", home, src_sha);
    long long part = fsize(p);
    TEST_CHECK(part > 0 && part < full, ".incomplete kept with %lld of %lld bytes", part, full);
    pthread_mutex_lock(&S.mu);
    S.drop_count = 0;
    pthread_mutex_unlock(&S.mu);
    o = fast_opts();
    n0 = log_count();
    s = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &d, &e);
    TEST_CHECK(s == KD_OK, "resume in a new call: %s", e.msg);
    r0 = first_get_range(n0, file, 0);
    TEST_CHECK(r0 == part, "the new call asked from byte %lld (want %lld)", r0, part);
    TEST_CHECK(!exists(p), ".incomplete renamed away");
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/blobs/%s", home, src_sha);
    char got[65] = "";
    file_sha256(p, got);
    TEST_CHECK(!strcmp(got, src_sha), "resumed blob has the right sha256");
    free(d);
    pthread_mutex_lock(&S.mu);
    S.drop_file[0] = 0;
    pthread_mutex_unlock(&S.mu);

    /* 3. a stale .incomplete (garbage) and a server that ignores Range: the 200 restarts the file */
    home = fresh_home("resume3");
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/blobs/%s.incomplete", home, src_sha);
    char junk[1001];
    memset(junk, 'x', 1000);
    junk[1000] = 0;
    write_text(p, junk);
    pthread_mutex_lock(&S.mu);
    S.no_range = 1;
    pthread_mutex_unlock(&S.mu);
    o = fast_opts();
    n0 = log_count();
    d = NULL;
    s = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &d, &e);
    TEST_CHECK(s == KD_OK, "Range ignored by the server: %s", s ? e.msg : "ok");
    r0 = first_get_range(n0, file, 0);
    TEST_CHECK(r0 == 1000, "asked from byte %lld (want 1000)", r0);
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/blobs/%s", home, src_sha);
    got[0] = 0;
    file_sha256(p, got);
    TEST_CHECK(!strcmp(got, src_sha) && fsize(p) == full, "whole file after a 200 to a Range request");
    free(d);
    pthread_mutex_lock(&S.mu);
    S.no_range = 0;
    pthread_mutex_unlock(&S.mu);

    /* 4. a complete .incomplete (interrupted before the rename): verified and kept, no GET */
    home = fresh_home("resume4");
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-prior/blobs/%s.incomplete", home, src_sha);
    parent_dirs(p);
    size_t nb = 0;
    unsigned char *whole = read_all(kt_data_path("pipeline22/prior/text_encoder/model.safetensors"), &nb);
    FILE *f = fopen(p, "wb");
    if (f && whole) fwrite(whole, 1, nb, f);
    if (f) fclose(f);
    free(whole);
    o = fast_opts();
    n0 = log_count();
    d = NULL;
    s = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &d, &e);
    TEST_CHECK(s == KD_OK && first_get_range(n0, file, 0) == -2, "complete .incomplete used without a GET: %s",
               s ? e.msg : "ok");
    TEST_CHECK(!exists(p), "and renamed to the blob");
    free(d);
}

static void test_sha_mismatch(void) {
    const char *home = fresh_home("corrupt");
    const char *file = "unet/diffusion_pytorch_model.safetensors";
    pthread_mutex_lock(&S.mu);
    snprintf(S.corrupt_file, sizeof S.corrupt_file, "%s", file);
    pthread_mutex_unlock(&S.mu);
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    kd_status s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "sha256 mismatch") && strstr(e.msg, file), "corrupt LFS file: %s",
               e.msg);
    char sha[65], p[8192];
    file_sha256(kt_data_path("pipeline22/decoder/unet/diffusion_pytorch_model.safetensors"), sha);
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-decoder/blobs/%s", home, sha);
    TEST_CHECK(!exists(p), "no blob kept for the corrupt download");
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-decoder/blobs", home);
    TEST_CHECK(count_suffix(p, ".incomplete") == 0, "the corrupt .incomplete was deleted");
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-decoder/snapshots/%s/%s", home, DECODER_COMMIT, file);
    TEST_CHECK(!exists(p), "no snapshot link for the corrupt file");
    pthread_mutex_lock(&S.mu);
    S.corrupt_file[0] = 0;
    pthread_mutex_unlock(&S.mu);
    s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK && is_link(p), "clean download after the mismatch: %s", s ? e.msg : "ok");
    free(d);
}

static void test_auth(void) {
    const char *home = fresh_home("auth");
    pthread_mutex_lock(&S.mu);
    snprintf(S.token, sizeof S.token, "hf_secret123");
    pthread_mutex_unlock(&S.mu);
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    kd_status s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_IO && strstr(e.msg, "401") && strstr(e.msg, "HF_TOKEN") && strstr(e.msg, "terms"),
               "no token: %s", e.msg);
    setenv("HF_TOKEN", "wrong", 1);
    s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_IO && strstr(e.msg, "401") && strstr(e.msg, "a token was sent"), "wrong token: %s", e.msg);
    setenv("HF_TOKEN", "hf_secret123", 1);
    s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK, "HF_TOKEN: %s", s ? e.msg : "ok");
    free(d);
    d = NULL;
    /* the token file $HF_HOME/token (what `hf auth login` writes), into another cache */
    unsetenv("HF_TOKEN");
    char p[8192];
    snprintf(p, sizeof p, "%s/token", home);
    write_text(p, "hf_secret123\n");
    snprintf(p, sizeof p, "%s/cache2", home);
    setenv("HF_HUB_CACHE", p, 1);
    s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK && d && !strncmp(d, p, strlen(p)), "token file + HF_HUB_CACHE: %s (%s)", s ? e.msg : "ok",
               d ? d : "");
    free(d);
    unsetenv("HF_HUB_CACHE");
    pthread_mutex_lock(&S.mu);
    S.token[0] = 0;
    pthread_mutex_unlock(&S.mu);
}

static void test_not_found(void) {
    fresh_home("notfound");
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    const char *need[] = {"model_index.json", "nope/config.json", NULL};
    kd_status s = kd_hub_resolve(DECODER_ID, need, &o, &d, &e);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(e.msg, "404") && strstr(e.msg, "nope/config.json") &&
                   strstr(e.msg, DECODER_ID),
               "missing file: %s", e.msg);
    const char *need2[] = {"unet/config.json", NULL};
    s = kd_hub_resolve(DECODER_ID, need2, &o, &d, &e);
    TEST_CHECK(s == KD_OK && d, "kd_hub_resolve of one file: %s", s ? e.msg : "ok");
    free(d);
    d = NULL;
    s = kd_hub_resolve("test-org/no-such-repo", need2, &o, &d, &e);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(e.msg, "not found") && strstr(e.msg, "no-such-repo"), "unknown repo: %s",
               e.msg);
    s = kd_hub_resolve(DECODER_ID "@v9", need2, &o, &d, &e);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(e.msg, "revision 'v9'"), "unknown revision: %s", e.msg);
    const char *bad[] = {"../x.json", NULL};
    s = kd_hub_resolve(DECODER_ID, bad, &o, &d, &e);
    TEST_CHECK(s == KD_ERR_INVALID_ARG && strstr(e.msg, ".."), "'..' in a needed file: %s", e.msg);
    TEST_CHECK(!d, "no folder on failure");
}

static void test_evil_shards(void) {
    const char *home = fresh_home("evil");
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    int n0 = log_count();
    kd_status s = kd_hub_resolve_pipeline(EVIL_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "../evil.safetensors") && strstr(e.msg, "'..'"),
               "'..' shard: %s", e.msg);
    kd_hub_repo *r = NULL;
    s = kd_hub_repo_open(EVIL_ID, &o, &r, &e);
    TEST_CHECK(s == KD_OK, "open: %s", e.msg);
    if (r) {
        s = kd_hub_fetch_component(r, "movq", KD_HUB_DIFFUSERS, &e);
        TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "/etc/passwd") && strstr(e.msg, "absolute"),
                   "absolute shard: %s", e.msg);
        kd_hub_repo_close(r);
    }
    pthread_mutex_lock(&S.mu);
    int evil_reqs = 0;
    for (int i = n0; i < S.n_log; i++) evil_reqs += strstr(S.log[i].file, "evil.safetensors") != NULL ||
                                                    strstr(S.log[i].file, "passwd") != NULL;
    pthread_mutex_unlock(&S.mu);
    TEST_CHECK(evil_reqs == 0, "no request for a refused shard (%d)", evil_reqs);
    char p[8192];
    snprintf(p, sizeof p, "%s/hub/models--test-org--evil/snapshots/evil.safetensors", home);
    TEST_CHECK(!exists(p), "nothing written outside the snapshot");
    free(d);
    TEST_CHECK(kd_hub_resolve_pipeline(EVIL_ID, "upscaler", &o, &d, &e) == KD_ERR_INVALID_ARG, "unknown kind refused");
}

static void test_pinning(void) {
    const char *home = fresh_home("pin");
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    int n0 = log_count();
    kd_status s = kd_hub_resolve_pipeline(DECODER_ID "@" DECODER_COMMIT, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK, "pinned decoder: %s", s ? e.msg : "ok");
    char want[8192], p[8192];
    snprintf(want, sizeof want, "%s/hub/models--test-org--kd22-decoder/snapshots/%s", home, DECODER_COMMIT);
    TEST_CHECK(d && !strcmp(d, want), "pinned dir %s", d ? d : "");
    free(d);
    d = NULL;
    snprintf(p, sizeof p, "%s/hub/models--test-org--kd22-decoder/refs", home);
    TEST_CHECK(!exists(p), "no refs written for a commit revision");
    pthread_mutex_lock(&S.mu);
    int other = 0;
    for (int i = n0; i < S.n_log; i++) other += !S.log[i].cdn && strcmp(S.log[i].rev, DECODER_COMMIT);
    pthread_mutex_unlock(&S.mu);
    TEST_CHECK(other == 0, "every request named the commit (%d did not)", other);
    /* warm and pinned: no request even online */
    o = fast_opts();
    s = kd_hub_resolve_pipeline(DECODER_ID "@" DECODER_COMMIT, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_OK && o.n_requests == 0, "warm pinned: %lu requests", o.n_requests);
    free(d);
    d = NULL;
    /* 'main' is not cached here (no refs/main), even though the same commit is */
    setenv("HF_HUB_OFFLINE", "1", 1);
    s = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(e.msg, "refs/main"), "main unknown offline: %s", e.msg);
    unsetenv("HF_HUB_OFFLINE");
    s = kd_hub_resolve_pipeline(DECODER_ID "@0000000000000000000000000000000000000000", "decoder", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(e.msg, "404"), "unknown commit: %s", e.msg);
}

static void test_json_cap(void) {
    fresh_home("big");
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    const char *need[] = {"big/config.json", NULL};
    int n0 = log_count();
    kd_status s = kd_hub_resolve(BIG_ID, need, &o, &d, &e);
    TEST_CHECK(s == KD_ERR_OOM && strstr(e.msg, "16 MB"), "17 MB config.json: %s", e.msg);
    TEST_CHECK(first_get_range(n0, "big/config.json", 0) == -2, "refused before any GET");
    free(d);
}

static void test_local(kd_ctx *ctx) {
    char *d = NULL;
    const char *src = kt_data_path("pipeline22/prior");
    char keep[4096];
    snprintf(keep, sizeof keep, "%s", src);
    kd_status s = kd_model_resolve(ctx, keep, "prior", NULL, NULL, &d);
    TEST_CHECK(s == KD_OK && d && !strcmp(d, keep), "a local folder is returned as is");
    free(d);
    d = NULL;
    s = kd_model_resolve(ctx, "/nonexistent/prior", "prior", NULL, NULL, &d);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(kd_ctx_last_error(ctx), "/nonexistent/prior"), "missing folder: %s",
               kd_ctx_last_error(ctx));
    s = kd_model_resolve(ctx, keep, "upscaler", NULL, NULL, &d);
    TEST_CHECK(s == KD_ERR_INVALID_ARG, "unknown kind: %s", kd_ctx_last_error(ctx));
}

/* The CLI with repo ids: downloads into a fresh cache with a progress bar, then generates. */
static void test_cli_download(void) {
    const char *bd = getenv("KD_BUILD_DIR");
    char bin[2200], out[2200], log[2200];
    snprintf(bin, sizeof bin, "%s/kandinsky", bd && *bd ? bd : ".");
    if (access(bin, X_OK) != 0) {
        kt_skip("CLI download check (no executable %s: build the kandinsky target)", bin);
        return;
    }
    const char *home = fresh_home("cli");
    snprintf(out, sizeof out, "%s/cat.png", home);
    snprintf(log, sizeof log, "%s/stderr.txt", home);
    unsetenv("KD_PRIOR");
    unsetenv("KD_DECODER");
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2), dup2(fd, 1);
        execl(bin, "kandinsky", "generate", "-p", "a cat", "--prior", PRIOR_ID, "--decoder", DECODER_ID, "-W", "32",
              "-H", "32", "--steps", "2", "--prior-steps", "2", "-s", "1", "-t", "2", "-o", out, (char *)NULL);
        _exit(127);
    }
    int status = -1, done = 0;
    for (int i = 0; i < 1200 && pid > 0; i++) { /* at most 120 s */
        if (waitpid(pid, &status, WNOHANG) == pid) {
            done = 1;
            break;
        }
        struct timespec t = {0, 100000000L};
        nanosleep(&t, NULL);
    }
    if (pid > 0 && !done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    size_t n = 0;
    unsigned char *text = read_all(log, &n);
    char *t = text ? realloc(text, n + 1) : NULL;
    if (t) t[n] = 0;
    TEST_CHECK(done && WIFEXITED(status) && WEXITSTATUS(status) == 0, "CLI with repo ids: exit %d, output: %.600s",
               done && WIFEXITED(status) ? WEXITSTATUS(status) : -1, t ? t : "");
    TEST_CHECK(t && strstr(t, "download text_encoder/model.safetensors") && strstr(t, "1.5/1.5 MB") &&
                   !strstr(t, "download model_index.json"),
               "CLI drew a bar for the 1.5 MB file only");
    TEST_CHECK(fsize(out) > 0, "CLI wrote %s", out);
    free(t);
}

/* Server stopped: warm resolution still works (offline or not); a cold one fails clearly. */
static void test_after_stop(void) {
    setenv("HF_HOME", cold_home, 1);
    for (int off = 0; off < 2; off++) {
        if (off) setenv("HF_HUB_OFFLINE", "1", 1);
        else unsetenv("HF_HUB_OFFLINE");
        kd_hub_opts o = fast_opts();
        kd_err e = {0};
        char *a = NULL, *b = NULL;
        kd_status s1 = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &a, &e);
        kd_status s2 = kd_hub_resolve_pipeline(DECODER_ID, "decoder", &o, &b, &e);
        TEST_CHECK(s1 == KD_OK && s2 == KD_OK && a && b && !strcmp(a, prior_dir) && !strcmp(b, decoder_dir),
                   "warm, server stopped, offline=%d: %s", off, e.msg);
        TEST_CHECK(o.n_requests == 0, "warm, offline=%d: %lu requests", off, o.n_requests);
        free(a);
        free(b);
    }
    unsetenv("HF_HUB_OFFLINE");
    fresh_home("down");
    kd_hub_opts o = fast_opts();
    kd_err e = {0};
    char *d = NULL;
    kd_status s = kd_hub_resolve_pipeline(PRIOR_ID, "prior", &o, &d, &e);
    TEST_CHECK(s == KD_ERR_IO && strstr(e.msg, "cannot reach") && strstr(e.msg, "HF_HUB_OFFLINE") &&
                   strstr(e.msg, "by hand"),
               "server down: %s", e.msg);
    free(d);
}

static void test_pipeline(kd_ctx *ctx) {
    if (!prior_dir[0] || !decoder_dir[0]) {
        TEST_CHECK(0, "no resolved folders to load");
        return;
    }
    char src_p[4096], src_d[4096];
    snprintf(src_p, sizeof src_p, "%s", kt_data_path("pipeline22/prior"));
    snprintf(src_d, sizeof src_d, "%s", kt_data_path("pipeline22/decoder"));
    kd_pipeline *hub = NULL, *ref = NULL;
    kd_status s = kd_pipeline_load(ctx, prior_dir, decoder_dir, 0, &hub);
    TEST_CHECK(s == KD_OK, "kd_pipeline_load of the cache snapshots: %s", kd_ctx_last_error(ctx));
    s = kd_pipeline_load(ctx, src_p, src_d, 0, &ref);
    TEST_CHECK(s == KD_OK, "kd_pipeline_load of the fixture: %s", kd_ctx_last_error(ctx));
    if (hub && ref) {
        int E = kd_pipeline_embed_dim(ctx, hub);
        TEST_CHECK(E > 0 && E == kd_pipeline_embed_dim(ctx, ref), "embed dim %d", E);
        kd_gen_params g = kd_gen_params_default();
        g.prompt = "a red cat";
        g.prior_steps = 2;
        g.seed = 7;
        float *a = calloc((size_t)4 * E, sizeof(float)), *b = a + 2 * E;
        s = kd_generate_embeds(ctx, hub, &g, a, a + E);
        TEST_CHECK(s == KD_OK, "embeds from the cache: %s", kd_ctx_last_error(ctx));
        s = kd_generate_embeds(ctx, ref, &g, b, b + E);
        TEST_CHECK(s == KD_OK, "embeds from the fixture: %s", kd_ctx_last_error(ctx));
        TEST_CHECK(!memcmp(a, b, (size_t)2 * E * sizeof(float)) && kt_max_abs(a, (size_t)E) > 0,
                   "same embeddings from the resolved folders as from the fixture");
        free(a);
    }
    kd_pipeline_free(hub);
    kd_pipeline_free(ref);
}

int main(void) {
    const char *data = kt_data_path("");
    if (data[0] == '/') snprintf(data_abs, sizeof data_abs, "%s", data);
    else {
        char cwd[1024];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        snprintf(data_abs, sizeof data_abs, "%s/%.1000s", cwd, data);
    }
    size_t dl = strlen(data_abs);
    while (dl && data_abs[dl - 1] == '/') data_abs[--dl] = 0;
    snprintf(tmp_root, sizeof tmp_root, "%s", kt_tmp_dir("test_hub"));
    char served[2200];
    snprintf(served, sizeof served, "%s/served", tmp_root);
    rm_rf(served, 0);
    pthread_mutex_init(&S.mu, NULL);
    S.repos[0].id = PRIOR_ID, S.repos[0].commit = PRIOR_COMMIT;
    snprintf(S.repos[0].root, sizeof S.repos[0].root, "%s/pipeline22/prior", data_abs);
    S.repos[1].id = DECODER_ID, S.repos[1].commit = DECODER_COMMIT;
    snprintf(S.repos[1].root, sizeof S.repos[1].root, "%s/decoder", served);
    S.repos[2].id = EVIL_ID, S.repos[2].commit = EVIL_COMMIT;
    snprintf(S.repos[2].root, sizeof S.repos[2].root, "%s/evil/repo", served);
    S.repos[3].id = BIG_ID, S.repos[3].commit = BIG_COMMIT;
    snprintf(S.repos[3].root, sizeof S.repos[3].root, "%s/big", served);
    S.repos[4].id = BIN_ID, S.repos[4].commit = BIN_COMMIT;
    snprintf(S.repos[4].root, sizeof S.repos[4].root, "%s/bin", served);
    S.repos[5].id = V21_ID, S.repos[5].commit = V21_COMMIT;
    snprintf(S.repos[5].root, sizeof S.repos[5].root, "%s/v21", served);
    S.n_repos = 6;
    TEST_CHECK(build_decoder_tree(S.repos[1].root) == 0, "served decoder tree");
    TEST_CHECK(build_evil_tree(S.repos[2].root) == 0, "served evil tree");
    TEST_CHECK(build_big_tree(S.repos[3].root) == 0, "served big tree");
    TEST_CHECK(build_bin_tree(S.repos[4].root) == 0, "served .bin tree");
    TEST_CHECK(build_v21_tree(S.repos[5].root) == 0, "served 2.1 decoder tree");
    if (server_start() != 0) {
        TEST_CHECK(0, "cannot start the local HTTP server: %s", strerror(errno));
        return kt_finish("test_hub");
    }
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", S.port);
    setenv("HF_ENDPOINT", ep, 1);
    unsetenv("XDG_CACHE_HOME");
    printf("  server on %s\n", ep);

    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = 2;
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(&cp, &ctx) != KD_OK) {
        server_stop();
        TEST_CHECK(0, "context");
        return kt_finish("test_hub");
    }
    test_sha256();
    test_repo_ids();
    test_local(ctx);
    test_cold(ctx);
    test_offline_cold();
    test_resume();
    test_sha_mismatch();
    test_auth();
    test_not_found();
    test_evil_shards();
    test_pinning();
    test_json_cap();
    test_bin_weights(ctx);
    test_v21_decoder(ctx);
    test_cli_download();
    printf("  server handled %d requests\n", log_count());
    server_stop();
    test_after_stop();
    test_pipeline(ctx);
    kd_ctx_free(ctx);
    pthread_mutex_destroy(&S.mu);
    return kt_finish("test_hub");
}
