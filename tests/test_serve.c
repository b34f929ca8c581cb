/* `kandinsky serve` end to end: starts the built binary on a free port with the tiny 2.2 pipeline
 * (tests/data/pipeline22), talks raw HTTP to it over sockets and checks
 *   - GET /health, POST /generate → a PNG whose pixels equal kd_generate's in this process for
 *     the same parameters and seed (X-Seed echoed), a random seed when none is given;
 *   - every bad request gets its status and a JSON error naming the problem: invalid JSON, wrong
 *     types, unknown fields, missing prompt, sizes and steps over the server's --max-size /
 *     --max-steps, steps = 0 (the library's checks),
 *     a 2 MB body (413), no Content-Length (411), chunked (501), unknown path (404), wrong method
 *     (405), garbage request line (400), HTTP/2.0 (505), a 20 KB head (431), duplicate or
 *     non-numeric Content-Length (400), a body that stops arriving (408 after --timeout 1);
 *   - a client that connects and leaves does not stop it, one that dribbles a byte every 0.4 s is
 *     cut off by the overall --timeout; SIGTERM ends it with exit code 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kandinsky.h"
#include "testutil.h"

static int g_port;

typedef struct reply {
    int status;
    char *data; /* whole response */
    size_t len;
    const char *body;
    size_t body_len;
} reply;

static void reply_free(reply *r) { free(r->data); }

/* Sends raw bytes (optionally half of them, then a pause), reads until the server closes. */
/* 1 when the reply (headers + a binary body) contains s. */
static int has_bytes(const reply *r, const char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; r->data && i + n <= r->len; i++)
        if (!memcmp(r->data + i, s, n)) return 1;
    return 0;
}

static reply exchange(const char *req, size_t len) {
    reply r = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)g_port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct timeval tv = {20, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return r;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) break; /* the server may answer (413, 431) before reading everything */
        off += (size_t)n;
    }
    size_t cap = 1 << 16;
    r.data = malloc(cap + 1);
    for (;;) {
        if (r.len == cap) r.data = realloc(r.data, (cap *= 2) + 1);
        ssize_t n = recv(fd, r.data + r.len, cap - r.len, 0);
        if (n <= 0) break;
        r.len += (size_t)n;
    }
    r.data[r.len] = 0;
    close(fd);
    if (r.len > 12 && !memcmp(r.data, "HTTP/1.1 ", 9)) r.status = atoi(r.data + 9);
    const char *sep = strstr(r.data, "\r\n\r\n");
    if (sep) {
        r.body = sep + 4;
        r.body_len = r.len - (size_t)(r.body - r.data);
    }
    return r;
}

static reply post(const char *path, const char *json) {
    size_t n = strlen(json);
    char *req = malloc(n + 256);
    int h = snprintf(req, 256, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     path, n);
    memcpy(req + h, json, n);
    reply r = exchange(req, (size_t)h + n);
    free(req);
    return r;
}

static void expect(const char *label, reply r, int status, const char *needle) {
    int ok = r.status == status && (!needle || (r.body && strstr(r.body, needle)));
    TEST_CHECK(ok, "%s: status %d (want %d), body %.200s", label, r.status, status, r.body ? r.body : "(none)");
    if (ok) printf("  ok %-44s %d %.90s\n", label, r.status, needle ? r.body : "");
    reply_free(&r);
}

static pid_t start_server(const char *bin) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]);
        char prior[1024], decoder[1024];
        snprintf(prior, sizeof prior, "%s", kt_data_path("pipeline22/prior"));
        snprintf(decoder, sizeof decoder, "%s", kt_data_path("pipeline22/decoder"));
        execl(bin, bin, "serve", "--prior", prior, "--decoder", decoder, "--port", "0", "--timeout", "1", "--threads",
              "2", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        fputs(line, stdout);
        const char *p = strstr(line, "http://127.0.0.1:");
        if (p) {
            g_port = atoi(p + 17);
            break;
        }
    }
    /* keep draining the server's log in the background so it never blocks on a full pipe */
    if (f && fork() == 0) {
        while (fgets(line, sizeof line, f)) fprintf(stdout, "  server: %s", line);
        _exit(0);
    }
    if (f) fclose(f);
    return pid;
}

/* The PNG from the server has the pixels kd_generate gives here. */
static void check_image(reply r, const char *label) {
    TEST_CHECK(r.status == 200 && r.body_len > 8 && !memcmp(r.body, "\x89PNG", 4), "%s: a PNG (status %d)", label,
               r.status);
    TEST_CHECK(strstr(r.data, "X-Seed: 42\r\n") != NULL, "%s: X-Seed header", label);
    if (r.status != 200) {
        reply_free(&r);
        return;
    }
    const char *tmp = kt_tmp_dir("serve");
    char path[1200];
    snprintf(path, sizeof path, "%s/served.png", tmp);
    FILE *f = fopen(path, "wb");
    fwrite(r.body, 1, r.body_len, f);
    fclose(f);
    kd_ctx *ctx = NULL;
    kd_pipeline *p = NULL;
    kd_image got = {0}, want = {0};
    kd_ctx_create(NULL, &ctx);
    TEST_CHECK(kd_image_read(ctx, path, &got) == KD_OK, "%s: decode the served PNG: %s", label, kd_ctx_last_error(ctx));
    char prior[1024], decoder[1024];
    snprintf(prior, sizeof prior, "%s", kt_data_path("pipeline22/prior"));
    snprintf(decoder, sizeof decoder, "%s", kt_data_path("pipeline22/decoder"));
    kd_gen_params g = kd_gen_params_default();
    g.prompt = "a red cat";
    g.negative_prompt = "blurry";
    g.width = 32, g.height = 48, g.steps = 3, g.prior_steps = 3, g.guidance_scale = 3.0f, g.seed = 42;
    TEST_CHECK(kd_pipeline_load(ctx, prior, decoder, 0, &p) == KD_OK && kd_generate(ctx, p, &g, &want) == KD_OK,
               "%s: in-process generation: %s", label, kd_ctx_last_error(ctx));
    int same = got.data && want.data && got.width == want.width && got.height == want.height &&
               !memcmp(got.data, want.data, (size_t)want.width * want.height * 3);
    TEST_CHECK(same, "%s: served pixels equal kd_generate's (%dx%d vs %dx%d)", label, got.width, got.height, want.width,
               want.height);
    if (same) printf("  ok %-44s %dx%d, pixels equal to kd_generate's\n", label, got.width, got.height);
    kd_image_free(&got);
    kd_image_free(&want);
    kd_pipeline_free(p);
    kd_ctx_free(ctx);
    reply_free(&r);
}

int main(void) {
    const char *bdir = getenv("KD_BUILD_DIR");
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/kandinsky", bdir ? bdir : "build");
    if (access(bin, X_OK) != 0) {
        TEST_CHECK(0, "the kandinsky binary %s exists", bin);
        return kt_finish("test_serve");
    }
    pid_t pid = start_server(bin);
    TEST_CHECK(pid > 0 && g_port > 0, "server started (port %d)", g_port);
    if (g_port <= 0) {
        if (pid > 0) kill(pid, SIGKILL);
        return kt_finish("test_serve");
    }
    const char *get_health = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    expect("GET /health", exchange(get_health, strlen(get_health)), 200, "\"status\":\"ok\"");

    check_image(post("/generate", "{\"prompt\": \"a red cat\", \"negative_prompt\": \"blurry\", \"width\": 32, "
                                  "\"height\": 48, \"num_inference_steps\": 3, \"prior_num_inference_steps\": 3, "
                                  "\"guidance_scale\": 3, \"seed\": 42}"),
                "POST /generate seed 42");
    reply r = post("/generate", "{\"prompt\": \"x\", \"width\": 32, \"height\": 32, \"num_inference_steps\": 2, "
                                "\"prior_num_inference_steps\": 2, \"seed\": \"18446744073709551615\"}");
    TEST_CHECK(r.status == 200 && strstr(r.data, "X-Seed: 18446744073709551615\r\n"), "seed as a 64-bit string: %d",
               r.status);
    reply_free(&r);
    r = post("/generate", "{\"prompt\": \"x\", \"width\": 32, \"height\": 32, \"num_inference_steps\": 2, "
                          "\"prior_num_inference_steps\": 2}");
    TEST_CHECK(r.status == 200 && strstr(r.data, "X-Seed: "), "no seed: a random one is used and reported (%d)", r.status);
    reply_free(&r);
    r = post("/generate", "{\"prompt\": \"x\", \"width\": 32, \"height\": 32, \"num_inference_steps\": 3, "
                          "\"prior_num_inference_steps\": 2, \"sampler\": \"dpm++2m\", \"prior_sampler\": \"unipc\", \"seed\": 1}");
    TEST_CHECK(r.status == 200 && has_bytes(&r, "\nsampler: dpm++2m\n") && has_bytes(&r, "\nprior sampler: unipc\n"),
               "samplers by name, recorded in the PNG parameters (%d)", r.status);
    reply_free(&r);
    r = post("/generate", "{\"prompt\": \"x\", \"width\": 32, \"height\": 32, \"num_inference_steps\": 2, "
                          "\"prior_num_inference_steps\": 2, \"precision\": \"bf16\", \"seed\": 1}");
    TEST_CHECK(r.status == 200 && has_bytes(&r, kd_cpu_has_bf16() ? "\nprecision: bf16\n" : "\nprecision: fp32\n"),
               "precision per request, recorded as it ran (%d)", r.status);
    reply_free(&r);
    r = post("/generate", "{\"prompt\": \"x\", \"width\": 32, \"height\": 32, \"num_inference_steps\": 2, "
                          "\"prior_num_inference_steps\": 2, \"seed\": 1}");
    TEST_CHECK(r.status == 200 && has_bytes(&r, "\nprecision: fp32\n"), "the next request is back to the default (%d)",
               r.status);
    reply_free(&r);
    expect("bad precision", post("/generate", "{\"prompt\": \"x\", \"precision\": \"int4\"}"), 400,
           "precision must be");

    expect("invalid JSON", post("/generate", "{\"prompt\": "), 400, "not valid JSON");
    expect("not an object", post("/generate", "[1, 2]"), 400, "JSON object");
    expect("prompt missing", post("/generate", "{\"seed\": 1}"), 400, "prompt is required");
    expect("prompt not a string", post("/generate", "{\"prompt\": 5}"), 400, "prompt must be a string");
    expect("unknown field", post("/generate", "{\"prompt\": \"x\", \"stpes\": 5}"), 400, "unknown field 'stpes'");
    expect("unknown sampler", post("/generate", "{\"prompt\": \"x\", \"sampler\": \"dpm++9m\"}"), 400,
           "sampler must be one of: ddpm, ddim, unclip, dpm++2m");
    expect("width 60000", post("/generate", "{\"prompt\": \"x\", \"width\": 60000}"), 400, "--max-size");
    expect("width 2048 (over --max-size)", post("/generate", "{\"prompt\": \"x\", \"height\": 2048}"), 400,
           "--max-size 1024");
    expect("500 steps (over --max-steps)", post("/generate", "{\"prompt\": \"x\", \"num_inference_steps\": 500}"), 400,
           "--max-steps");
    expect("width 1.5", post("/generate", "{\"prompt\": \"x\", \"width\": 1.5}"), 400, "width must be an integer");
    expect("steps 0", post("/generate", "{\"prompt\": \"x\", \"num_inference_steps\": 0}"), 400, "steps = 0");
    expect("negative seed", post("/generate", "{\"prompt\": \"x\", \"seed\": -1}"), 400, "seed must be");
    expect("guidance not a number", post("/generate", "{\"prompt\": \"x\", \"guidance_scale\": \"4\"}"), 400,
           "guidance_scale must be a number");

    size_t big = 2 << 20; /* a 2 MB prompt: refused by size before reading it */
    char *huge = malloc(big + 32);
    memcpy(huge, "{\"prompt\": \"", 12);
    memset(huge + 12, 'a', big);
    memcpy(huge + 12 + big, "\"}", 3);
    expect("2 MB body", post("/generate", huge), 413, "larger than 1048576");
    free(huge);

    const char *raw[][3] = {
        {"POST without Content-Length", "POST /generate HTTP/1.1\r\nHost: x\r\n\r\n", "411"},
        {"chunked body", "POST /generate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "501"},
        {"unknown path", "GET /nope HTTP/1.1\r\n\r\n", "404"},
        {"GET /generate", "GET /generate HTTP/1.1\r\n\r\n", "405"},
        {"DELETE /health", "DELETE /health HTTP/1.1\r\n\r\n", "405"},
        {"garbage request line", "HELLO\r\n\r\n", "400"},
        {"HTTP/2.0", "GET /health HTTP/2.0\r\n\r\n", "505"},
        {"two Content-Lengths", "POST /generate HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}", "400"},
        {"Content-Length not a number", "POST /generate HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", "400"},
        {"header without colon", "GET /health HTTP/1.1\r\nbroken\r\n\r\n", "400"},
        {"body stops arriving (408)", "POST /generate HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"prompt\"", "408"},
    };
    for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++)
        expect(raw[i][0], exchange(raw[i][1], strlen(raw[i][1])), atoi(raw[i][2]), "error");

    char *head = malloc(21000);
    int n = snprintf(head, 64, "GET /health HTTP/1.1\r\nX-Big: ");
    memset(head + n, 'b', 20000);
    memcpy(head + n + 20000, "\r\n\r\n", 5);
    expect("20 KB head", exchange(head, strlen(head)), 431, "16 KB");
    free(head);

    expect("a client that leaves", exchange("", 0), 0, NULL); /* connects, sends nothing, closes: no reply */
    { /* a head dribbled a byte at a time, 0.4 s apart: each recv is quick, the whole is too slow (--timeout 1) */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)g_port);
        inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
        int cut = 0;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            const char *slow = "GET /health HTTP/1.1\r\n";
            for (const char *c = slow; *c && !cut; c++) {
                if (send(fd, c, 1, MSG_NOSIGNAL) != 1) cut = 1;
                struct timespec pause = {0, 400000000};
                nanosleep(&pause, NULL);
                char tmp[256];
                struct timeval tv0 = {0, 1000};
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv0, sizeof tv0);
                if (recv(fd, tmp, sizeof tmp, 0) >= 0) cut = 1; /* the server answered or closed */
            }
        }
        close(fd);
        TEST_CHECK(cut, "a slowly dribbled request is cut off by the overall --timeout");
        if (cut) printf("  ok %-44s cut off\n", "slow dribbling client");
    }
    expect("GET /health after all that", exchange(get_health, strlen(get_health)), 200, "\"status\":\"ok\"");

    kill(pid, SIGTERM);
    int wst = 0;
    waitpid(pid, &wst, 0);
    TEST_CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "SIGTERM: the server exits with 0 (status %d)", wst);
    return kt_finish("test_serve");
}
