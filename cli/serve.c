/* kandinsky serve — the text-to-image pipeline behind a small HTTP/1.1 JSON API.
 *
 *   POST /generate  {"prompt": "a red cat", "seed": 42, ...}  →  200 image/png (X-Seed header)
 *   GET  /health                                              →  200 {"status": "ok", ...}
 *
 * The models are loaded once at start. Requests are served one at a time (a generation already
 * uses every core); each connection carries one request and is closed after the answer. Every
 * input is bounded: head 16 KB, body --max-body (1 MiB), socket reads/writes time out after
 * --timeout seconds, and a bad request gets a 4xx with a JSON {"error": ...} naming the problem. */
#define _GNU_SOURCE /* MSG_NOSIGNAL on older libcs, strcasecmp */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "kandinsky.h"
#include "serve.h"

typedef struct serve_opts {
    const char *prior, *decoder, *host, *decoder_sched, *version;
    int port, threads, low_memory, timeout_s, quiet, max_side, max_steps;
    size_t max_body;
    kd_precision precision; /* the default of requests that do not name one */
    kd_weight_mode weights;
} serve_opts;

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig, g_stop = 1; }

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void usage_serve(FILE *f) {
    fprintf(f, "usage: kandinsky serve [options]\n"
               "\n"
               "Serves text to image over HTTP (one request at a time, models loaded once):\n"
               "  POST /generate   JSON body, answers image/png (header X-Seed: the seed used)\n"
               "                   fields (diffusers' names): prompt (required), negative_prompt, width,\n"
               "                   height, num_inference_steps, prior_num_inference_steps, guidance_scale,\n"
               "                   prior_guidance_scale, seed (number or decimal string; random if absent),\n"
               "                   sampler, prior_sampler (names as for kandinsky generate --sampler),\n"
               "                   precision (\"fp32\" or \"bf16\"; default the server's --precision)\n"
               "  GET  /health     JSON status\n"
               "  e.g. curl -d '{\"prompt\": \"a red cat\", \"seed\": 42}' localhost:8080/generate -o cat.png\n"
               "\n"
               "      --prior DIR|ID         prior folder or Hub repo id (default: $KD_PRIOR, else " KD_CLI_DEFAULT_PRIOR ")\n"
               "      --decoder DIR|ID       decoder folder or Hub repo id (default: $KD_DECODER, else\n"
               "                             " KD_CLI_DEFAULT_DECODER ")\n"
               "      --model-version 2.2|2.1\n"
               "      --decoder-scheduler DIR  the decoder's scheduler from this subfolder\n"
               "      --host ADDR            IPv4 address to listen on (127.0.0.1; 0.0.0.0 = every interface)\n"
               "      --port N               TCP port (8080; 0 = any free port, printed)\n"
               "      --max-body BYTES       largest request body (1048576)\n"
               "      --max-size PX          largest width or height a request may ask for (1024)\n"
               "      --max-steps N          most decoder or prior steps a request may ask for (200)\n"
               "      --timeout S            seconds a request may take to arrive, and a send to progress (30)\n"
               "  -t, --threads N            CPU threads (default: KD_THREADS or all cores)\n"
               "      --precision fp32|bf16  default compute precision of requests (fp32)\n"
               "      --weights stored|q8    Linear/conv weights as stored, or quantised to 8 bits at load\n"
               "      --low-memory           load each stage only while it runs\n"
               "  -q, --quiet                no per-request log lines\n");
}

static int parse_opts(int argc, char **argv, serve_opts *o) {
    o->prior = getenv("KD_PRIOR");
    o->decoder = getenv("KD_DECODER");
    o->host = "127.0.0.1";
    o->port = 8080;
    o->timeout_s = 30;
    o->max_body = 1 << 20;
    o->max_side = 1024;
    o->max_steps = 200;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_serve(stdout);
            exit(0);
        }
        if (!strcmp(a, "--low-memory")) {
            o->low_memory = 1;
            continue;
        }
        if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o->quiet = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "kandinsky serve: %s needs a value (see --help)\n", a);
            return 1;
        }
        char *end = NULL;
        long n = 0;
        int numeric = !strcmp(a, "--port") || !strcmp(a, "-t") || !strcmp(a, "--threads") || !strcmp(a, "--timeout") ||
                      !strcmp(a, "--max-body") || !strcmp(a, "--max-size") || !strcmp(a, "--max-steps");
        if (numeric) {
            errno = 0;
            n = strtol(v, &end, 10);
            if (errno || end == v || *end || n < 0 || n > (1L << 30)) {
                fprintf(stderr, "kandinsky serve: %s: '%s' is not a number in 0..%ld\n", a, v, 1L << 30);
                return 1;
            }
        }
        if (!strcmp(a, "--prior")) o->prior = v;
        else if (!strcmp(a, "--decoder")) o->decoder = v;
        else if (!strcmp(a, "--model-version")) o->version = v;
        else if (!strcmp(a, "--decoder-scheduler")) o->decoder_sched = v;
        else if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--port") && n <= 65535) o->port = (int)n;
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) o->threads = (int)n;
        else if (!strcmp(a, "--timeout") && n >= 1) o->timeout_s = (int)n;
        else if (!strcmp(a, "--max-body") && n >= 64) o->max_body = (size_t)n;
        else if (!strcmp(a, "--max-size") && n >= 64) o->max_side = (int)n;
        else if (!strcmp(a, "--max-steps") && n >= 2) o->max_steps = (int)n;
        else if (!strcmp(a, "--precision") && kd_precision_parse(v, &o->precision) == 0) {
        } else if (!strcmp(a, "--weights") && kd_weight_mode_parse(v, &o->weights) == 0) {
        } else {
            fprintf(stderr, "kandinsky serve: bad option or value: %s %s (see --help)\n", a, v);
            return 1;
        }
        i++;
    }
    if (o->version && strcmp(o->version, "2.2") && strcmp(o->version, "2.1")) {
        fprintf(stderr, "kandinsky serve: --model-version must be 2.2 or 2.1\n");
        return 1;
    }
    int v21 = o->version && !strcmp(o->version, "2.1");
    if (!o->prior) o->prior = v21 ? KD_CLI_DEFAULT_PRIOR21 : KD_CLI_DEFAULT_PRIOR;
    if (!o->decoder) o->decoder = v21 ? KD_CLI_DEFAULT_DECODER21 : KD_CLI_DEFAULT_DECODER;
    return 0;
}

/* ---- socket I/O ---- */

static int send_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void respond(int fd, int status, const char *type, const char *extra_headers, const void *body, size_t len) {
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
                     "Server: kandinsky.c/%s\r\n%s\r\n",
                     status, http_reason(status), type, len, kd_version(), extra_headers ? extra_headers : "");
    if (n > 0 && (size_t)n < sizeof head && send_all(fd, head, (size_t)n) == 0 && len) send_all(fd, body, len);
}

/* {"error": msg} with msg JSON-escaped by cJSON. */
static void respond_error(int fd, int status, const char *extra_headers, const char *msg) {
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;
    if (o && cJSON_AddStringToObject(o, "error", msg)) s = cJSON_PrintUnformatted(o);
    if (s) respond(fd, status, "application/json", extra_headers, s, strlen(s));
    else respond(fd, status, "text/plain", extra_headers, http_reason(status), strlen(http_reason(status)));
    free(s);
    cJSON_Delete(o);
}

/* The whole request must arrive within --timeout seconds (not just each recv: a client sending
 * a byte now and then would otherwise hold the server forever). */
static double g_deadline;

static int past_deadline(void) { return now_s() > g_deadline; }

/* Reads until the head is complete (returns its length) or fails: -408 timeout / peer gone,
 * -431 head too large. Extra bytes already read (the start of the body) stay in buf[head..got). */
static long read_head(int fd, char *buf, size_t cap, size_t *got) {
    *got = 0;
    for (;;) {
        size_t h = http_head_length(buf, *got);
        if (h) return (long)h;
        if (*got == cap) return -431;
        if (past_deadline()) return -408;
        ssize_t n = recv(fd, buf + *got, cap - *got, 0);
        if (n < 0 && errno == EINTR && !g_stop) continue;
        if (n <= 0) return -408;
        *got += (size_t)n;
    }
}

static int read_exact(int fd, char *buf, size_t len) {
    while (len) {
        if (past_deadline()) return -1;
        ssize_t n = recv(fd, buf, len, 0);
        if (n < 0 && errno == EINTR && !g_stop) continue;
        if (n <= 0) return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- POST /generate ---- */

typedef struct server {
    serve_opts o;
    kd_ctx *ctx;
    kd_pipeline *p;
    const char *version;
    uint64_t seed_state;
} server;

static uint64_t next_seed(server *s) { /* splitmix64 over a time-based start */
    uint64_t z = (s->seed_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (z ^ (z >> 31)) & ((1ull << 53) - 1);
}

static int json_int(const cJSON *v, const char *name, long lo, long hi, int *out, char *msg, size_t cap) {
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi) {
        snprintf(msg, cap, "%s must be an integer in %ld..%ld", name, lo, hi);
        return -1;
    }
    *out = (int)v->valuedouble;
    return 0;
}

static int json_float(const cJSON *v, const char *name, float *out, char *msg, size_t cap) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e6) {
        snprintf(msg, cap, "%s must be a number", name);
        return -1;
    }
    *out = (float)v->valuedouble;
    return 0;
}

static int json_seed(const cJSON *v, uint64_t *out, char *msg, size_t cap) {
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 9007199254740992.0 &&
        v->valuedouble == floor(v->valuedouble)) {
        *out = (uint64_t)v->valuedouble;
        return 0;
    }
    if (cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) <= 20 &&
        strspn(v->valuestring, "0123456789") == strlen(v->valuestring)) {
        errno = 0;
        unsigned long long x = strtoull(v->valuestring, NULL, 10);
        if (!errno) {
            *out = (uint64_t)x;
            return 0;
        }
    }
    snprintf(msg, cap, "seed must be an integer in 0..2^53 or a decimal string in 0..2^64-1");
    return -1;
}

/* Fills g from the JSON object; strings point into the tree. Returns 0 or -1 with msg. */
static int parse_params(server *s, const cJSON *root, kd_gen_params *g, kd_precision *prec, char *msg, size_t cap) {
    *g = kd_gen_params_default();
    g->prompt = NULL;
    g->seed = next_seed(s);
    if (!cJSON_IsObject(root)) return snprintf(msg, cap, "the body must be a JSON object"), -1;
    for (const cJSON *f = root->child; f; f = f->next) {
        const char *k = f->string;
        int rc = 0;
        if (!strcmp(k, "prompt")) {
            if (!cJSON_IsString(f)) rc = -1, snprintf(msg, cap, "prompt must be a string");
            else g->prompt = f->valuestring;
        } else if (!strcmp(k, "negative_prompt")) {
            if (cJSON_IsString(f)) g->negative_prompt = f->valuestring;
            else if (!cJSON_IsNull(f)) rc = -1, snprintf(msg, cap, "negative_prompt must be a string or null");
        } else if (!strcmp(k, "width")) rc = json_int(f, k, 1, 1 << 20, &g->width, msg, cap);
        else if (!strcmp(k, "height")) rc = json_int(f, k, 1, 1 << 20, &g->height, msg, cap);
        else if (!strcmp(k, "num_inference_steps")) rc = json_int(f, k, 0, 1 << 20, &g->steps, msg, cap);
        else if (!strcmp(k, "prior_num_inference_steps")) rc = json_int(f, k, 0, 1 << 20, &g->prior_steps, msg, cap);
        else if (!strcmp(k, "guidance_scale")) rc = json_float(f, k, &g->guidance_scale, msg, cap);
        else if (!strcmp(k, "prior_guidance_scale")) rc = json_float(f, k, &g->prior_guidance_scale, msg, cap);
        else if (!strcmp(k, "seed")) rc = json_seed(f, &g->seed, msg, cap);
        else if (!strcmp(k, "sampler") || !strcmp(k, "prior_sampler")) {
            if (!cJSON_IsString(f) || !kd_sampler_exists(f->valuestring))
                rc = -1, snprintf(msg, cap, "%s must be one of: %s", k, kd_sampler_list());
            else if (!strcmp(k, "sampler")) g->sampler = f->valuestring;
            else g->prior_sampler = f->valuestring;
        } else if (!strcmp(k, "precision")) {
            if (!cJSON_IsString(f) || kd_precision_parse(f->valuestring, prec) != 0)
                rc = -1, snprintf(msg, cap, "precision must be \"fp32\" or \"bf16\"");
        }
        else rc = -1, snprintf(msg, cap, "unknown field '%.64s' (see kandinsky serve --help)", k);
        if (rc) return -1;
    }
    if (!g->prompt) return snprintf(msg, cap, "prompt is required"), -1;
    /* the server's own limits (a request must not be able to exhaust memory or hold the server
     * for hours); the library checks everything else */
    if (g->width > s->o.max_side || g->height > s->o.max_side)
        return snprintf(msg, cap, "%dx%d is larger than this server allows (--max-size %d)", g->width, g->height,
                        s->o.max_side), -1;
    if (g->steps > s->o.max_steps || g->prior_steps > s->o.max_steps)
        return snprintf(msg, cap, "%d decoder / %d prior steps: this server allows at most %d (--max-steps)", g->steps,
                        g->prior_steps, s->o.max_steps), -1;
    return 0;
}

static void handle_generate(server *s, int fd, const char *body, size_t len) {
    char msg[512] = "";
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) {
        respond_error(fd, 400, NULL, "the body is not valid JSON");
        return;
    }
    kd_gen_params g;
    kd_precision prec = s->o.precision;
    if (parse_params(s, root, &g, &prec, msg, sizeof msg)) {
        respond_error(fd, 400, NULL, msg);
        cJSON_Delete(root);
        return;
    }
    double t0 = now_s();
    kd_image img = {0};
    kd_status st = kd_ctx_set_precision(s->ctx, prec);
    if (st == KD_OK) st = kd_generate(s->ctx, s->p, &g, &img);
    if (st != KD_OK) {
        /* invalid parameters are the client's fault; everything else (memory, numerics) ours */
        respond_error(fd, st == KD_ERR_INVALID_ARG || st == KD_ERR_SHAPE ? 400 : 500, NULL, kd_ctx_last_error(s->ctx));
        if (!s->o.quiet) fprintf(stderr, "generate: %s\n", kd_ctx_last_error(s->ctx));
        cJSON_Delete(root);
        return;
    }
    double dt = now_s() - t0;
    char params[4096], headers[256];
    snprintf(params, sizeof params,
             "prompt: %s\nnegative prompt: %s\nsize: %dx%d\nsteps: %d\nprior steps: %d\nguidance: %g\n"
             "prior guidance: %g\nseed: %" PRIu64 "\nprior: %s\ndecoder: %s\nsampler: %s\nprior sampler: %s\n"
             "precision: %s\nweights: %s\nengine: kandinsky.c %s (serve)",
             g.prompt, g.negative_prompt ? g.negative_prompt : "(none)", img.width, img.height, g.steps,
             g.prior_steps, (double)g.guidance_scale, (double)g.prior_guidance_scale, g.seed, s->o.prior,
             s->o.decoder, g.sampler ? g.sampler : "(scheduler config)", g.prior_sampler ? g.prior_sampler : "unclip",
             kd_precision_name(kd_ctx_precision(s->ctx)), kd_weight_mode_name(s->o.weights), kd_version());
    const char *text[] = {"parameters", params, "Software", "kandinsky.c", NULL};
    uint8_t *png = NULL;
    size_t png_len = 0;
    if (kd_image_encode_png(s->ctx, &img, text, &png, &png_len) != KD_OK) {
        respond_error(fd, 500, NULL, kd_ctx_last_error(s->ctx));
    } else {
        snprintf(headers, sizeof headers, "X-Seed: %" PRIu64 "\r\nX-Generation-Seconds: %.3f\r\n", g.seed, dt);
        respond(fd, 200, "image/png", headers, png, png_len);
        if (!s->o.quiet)
            fprintf(stderr, "generated %dx%d, seed %" PRIu64 ", %.1f s: %.80s\n", img.width, img.height, g.seed, dt,
                    g.prompt);
    }
    free(png);
    kd_image_free(&img);
    cJSON_Delete(root);
}

/* ---- one connection ---- */

static void handle_connection(server *s, int fd) {
    char head[HTTP_MAX_HEAD], msg[256];
    size_t got;
    long hl = read_head(fd, head, sizeof head, &got);
    if (hl == -431) { respond_error(fd, 431, NULL, "request head larger than 16 KB"); return; }
    if (hl < 0) return; /* timed out or closed before a complete head: nobody to answer */
    http_request rq;
    int st = http_parse_head(head, (size_t)hl, s->o.max_body, &rq, msg, sizeof msg);
    if (st) { respond_error(fd, st, NULL, msg); return; }
    if (!strcmp(rq.path, "/health")) {
        if (strcmp(rq.method, "GET") && strcmp(rq.method, "HEAD"))
            { respond_error(fd, 405, "Allow: GET, HEAD\r\n", "use GET /health"); return; }
        char body[256];
        int n = snprintf(body, sizeof body, "{\"status\":\"ok\",\"engine\":\"kandinsky.c %s\",\"model_version\":\"%s\"}",
                         kd_version(), s->version);
        respond(fd, 200, "application/json", NULL, body, strcmp(rq.method, "HEAD") ? (size_t)n : 0);
        return;
    }
    if (strcmp(rq.path, "/generate")) { respond_error(fd, 404, NULL, "no such endpoint: use POST /generate or GET /health"); return; }
    if (strcmp(rq.method, "POST")) { respond_error(fd, 405, "Allow: POST\r\n", "use POST /generate with a JSON body"); return; }
    if (!rq.has_length) { respond_error(fd, 411, NULL, "POST /generate needs a Content-Length"); return; }
    char *body = malloc(rq.content_length + 1);
    if (!body) { respond_error(fd, 500, NULL, "out of memory"); return; }
    size_t have = got - (size_t)hl < rq.content_length ? got - (size_t)hl : rq.content_length;
    memcpy(body, head + hl, have);
    if (read_exact(fd, body + have, rq.content_length - have) != 0) {
        respond_error(fd, 408, NULL, "the body did not arrive in time");
    } else {
        body[rq.content_length] = 0;
        handle_generate(s, fd, body, rq.content_length);
    }
    free(body);
}

/* Half-close, then read and drop what the client still sends (the rest of a refused body) for a
 * moment: closing with unread input makes the kernel send a reset, which can destroy the answer
 * before the client has read it. */
static void finish_connection(int fd) {
    shutdown(fd, SHUT_WR);
    struct timeval tv = {0, 500000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char sink[16384];
    size_t total = 0;
    ssize_t n;
    while (total < ((size_t)64 << 20) && (n = recv(fd, sink, sizeof sink, 0)) > 0) total += (size_t)n;
    close(fd);
}

static int open_listener(const serve_opts *o, int *port_out) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1) {
        fprintf(stderr, "kandinsky serve: --host %s is not an IPv4 address\n", o->host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0) {
        fprintf(stderr, "kandinsky serve: cannot listen on %s:%d: %s\n", o->host, o->port, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    *port_out = ntohs(a.sin_port);
    return fd;
}

int kd_cli_serve(int argc, char **argv) {
    server s = {0};
    if (parse_opts(argc, argv, &s.o)) return 2;
    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = s.o.threads;
    cp.precision = s.o.precision;
    cp.weights = s.o.weights;
    if (kd_ctx_create(&cp, &s.ctx) != KD_OK) return 1;
    if (s.o.precision == KD_PRECISION_BF16 && kd_ctx_precision(s.ctx) != KD_PRECISION_BF16)
        fprintf(stderr, "kandinsky serve: --precision bf16: this CPU has no BF16 products (AVX512_BF16); computing in fp32\n");
    char *prior_dir = NULL, *decoder_dir = NULL;
    int rc = 1, lfd = -1, port = 0;
    if (kd_model_resolve(s.ctx, s.o.prior, "prior", NULL, NULL, &prior_dir) != KD_OK ||
        kd_model_resolve(s.ctx, s.o.decoder, "decoder", NULL, NULL, &decoder_dir) != KD_OK) {
        fprintf(stderr, "kandinsky serve: finding the models: %s\n", kd_ctx_last_error(s.ctx));
        goto done;
    }
    kd_model_version want = KD_MODEL_VERSION_AUTO, found;
    if (s.o.version) kd_model_version_parse(s.o.version, &want);
    if (want != KD_MODEL_VERSION_AUTO && kd_decoder_detect_version(s.ctx, decoder_dir, &found) == KD_OK && found != want) {
        fprintf(stderr, "kandinsky serve: --model-version %s, but the decoder %s is Kandinsky %s\n", s.o.version,
                s.o.decoder, kd_model_version_name(found));
        rc = 2;
        goto done;
    }
    if (kd_pipeline_load_version(s.ctx, prior_dir, decoder_dir, want, s.o.low_memory, &s.p) != KD_OK ||
        (s.o.decoder_sched && kd_pipeline_set_decoder_scheduler(s.ctx, s.p, s.o.decoder_sched) != KD_OK)) {
        fprintf(stderr, "kandinsky serve: loading the models: %s\n", kd_ctx_last_error(s.ctx));
        goto done;
    }
    s.version = kd_model_version_name(kd_pipeline_model_version(s.p));
    if ((lfd = open_listener(&s.o, &port)) < 0) goto done;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: accept() returns EINTR and the loop ends */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    s.seed_state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    fprintf(stderr, "kandinsky serve: Kandinsky %s, %d threads, listening on http://%s:%d\n", s.version,
            kd_ctx_threads(s.ctx), s.o.host, port);
    fflush(stderr);
    struct timeval tv = {s.o.timeout_s, 0};
    while (!g_stop) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE) { /* out of descriptors: wait instead of spinning */
                struct timespec pause = {0, 100000000};
                nanosleep(&pause, NULL);
                continue;
            }
            fprintf(stderr, "kandinsky serve: accept: %s\n", strerror(errno));
            break;
        }
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        g_deadline = now_s() + s.o.timeout_s;
        handle_connection(&s, fd);
        finish_connection(fd);
    }
    fprintf(stderr, "kandinsky serve: stopped\n");
    rc = 0;
done:
    if (lfd >= 0) close(lfd);
    kd_pipeline_free(s.p);
    free(prior_dir);
    free(decoder_dir);
    kd_ctx_free(s.ctx);
    return rc;
}
