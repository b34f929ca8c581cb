/* Core pieces: thread pool, arena (incl. the no-malloc-after-first-pass rule), thread count
 * resolution, f16/bf16 conversion (exhaustive round trips), errors. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/arena.h"
#include "core/err.h"
#include "core/pool.h"
#include "core/tensor.h"
#include "kandinsky.h"
#include "testutil.h"

typedef struct {
    atomic_int *hits;
    kd_pool *pool;
    atomic_int nested_total;
} pool_arg;

static void count_task(void *arg, int64_t i, int tid) {
    pool_arg *a = arg;
    atomic_fetch_add(&a->hits[i], 1);
}

static void nested_inner(void *arg, int64_t i, int tid) { atomic_fetch_add((atomic_int *)arg, 1); }

static void nested_task(void *arg, int64_t i, int tid) {
    pool_arg *a = arg;
    atomic_int local;
    atomic_init(&local, 0);
    kd_pool_run(a->pool, 7, nested_inner, &local); /* must run serially, not deadlock */
    atomic_fetch_add(&a->nested_total, atomic_load(&local));
}

static void test_pool(int threads) {
    kd_pool *p = kd_pool_create(threads);
    TEST_CHECK(p != NULL, "pool with %d threads", threads);
    if (!p) return;
    TEST_CHECK(kd_pool_threads(p) == threads, "thread count %d", kd_pool_threads(p));
    enum { N = 10007 };
    atomic_int *hits = calloc(N, sizeof *hits);
    pool_arg a = {.hits = hits, .pool = p};
    for (int rep = 0; rep < 50; rep++) kd_pool_run(p, N, count_task, &a);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += atomic_load(&hits[i]) != 50;
    TEST_CHECK(bad == 0, "%d threads: %d of %d tasks not run exactly 50 times", threads, bad, N);
    kd_pool_run(p, 0, count_task, &a); /* no tasks: returns at once */
    atomic_init(&a.nested_total, 0);
    kd_pool_run(p, 5, nested_task, &a);
    TEST_CHECK(atomic_load(&a.nested_total) == 35, "nested pool runs: %d of 35 inner tasks", atomic_load(&a.nested_total));
    free(hits);
    kd_pool_free(p);
}

static void test_threads_resolve(void) {
    TEST_CHECK(kd_threads_resolve(3) == 3, "explicit count wins");
    setenv("KD_THREADS", "5", 1);
    TEST_CHECK(kd_threads_resolve(0) == 5, "KD_THREADS=5 -> %d", kd_threads_resolve(0));
    setenv("KD_THREADS", "banana", 1);
    TEST_CHECK(kd_threads_resolve(0) >= 1, "bad KD_THREADS falls back to cores");
    setenv("KD_THREADS", "-2", 1);
    TEST_CHECK(kd_threads_resolve(0) >= 1, "negative KD_THREADS falls back to cores");
    unsetenv("KD_THREADS");
    TEST_CHECK(kd_threads_resolve(0) >= 1, "default is the core count");

    kd_ctx_params cp = kd_ctx_params_default();
    cp.n_threads = 2;
    kd_ctx *ctx = NULL;
    TEST_CHECK(kd_ctx_create(&cp, &ctx) == KD_OK && kd_ctx_threads(ctx) == 2, "context with 2 threads");
    TEST_CHECK(strcmp(kd_ctx_last_error(ctx), "") == 0, "fresh context has no error");
    kd_ctx_free(ctx);
    cp.n_threads = -1;
    TEST_CHECK(kd_ctx_create(&cp, &ctx) == KD_ERR_INVALID_ARG && ctx == NULL, "negative thread count rejected");
}

static void test_arena(void) {
    kd_arena a;
    kd_arena_init(&a, 0);
    kd_err e;
    /* a "pass" of mixed allocations, some larger than the 1 MB default block */
    size_t sizes[] = {100, 5 << 20, 3, 2 << 20, 64, 12 << 20, 1};
    for (int pass = 0; pass < 4; pass++) {
        size_t before = a.n_mallocs;
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            unsigned char *p = kd_arena_alloc(&a, sizes[i], &e);
            TEST_CHECK(p != NULL && ((uintptr_t)p % KD_ARENA_ALIGN) == 0, "aligned allocation of %zu", sizes[i]);
            if (p) memset(p, 0xab, sizes[i]); /* ASan checks the bounds */
        }
        kd_arena_mark m = kd_arena_get_mark(&a);
        float *tmp = kd_arena_floats(&a, 1 << 20, &e);
        TEST_CHECK(tmp != NULL, "temporary after mark");
        kd_arena_release(&a, m);
        TEST_CHECK(a.used_total == m.used_total, "release restores usage");
        if (pass >= 2) TEST_CHECK(a.n_mallocs == before, "pass %d allocated %zu blocks (expected none)", pass, a.n_mallocs - before);
        kd_arena_reset(&a);
    }
    a.limit = 1 << 20;
    TEST_CHECK(kd_arena_alloc(&a, 2 << 20, &e) == NULL && e.code == KD_ERR_OOM && strstr(e.msg, "limit"),
               "limit enforced: %s", e.msg);
    TEST_CHECK(kd_arena_alloc(&a, SIZE_MAX - 3, &e) == NULL && e.code == KD_ERR_OOM, "overflowing size rejected");
    kd_arena_free(&a);

    /* a scratch arena that is only marked/released (never reset) stops allocating too */
    kd_arena s;
    kd_arena_init(&s, 0);
    size_t after_first = 0;
    for (int rep = 0; rep < 3; rep++) {
        kd_arena_mark m = kd_arena_get_mark(&s);
        TEST_CHECK(kd_arena_alloc(&s, 3 << 20, &e) && kd_arena_alloc(&s, 7 << 20, &e), "scratch allocs");
        kd_arena_release(&s, m);
        if (rep == 0) after_first = s.n_mallocs;
    }
    TEST_CHECK(s.n_mallocs == after_first, "scratch arena: %zu mallocs after the first use", s.n_mallocs - after_first);
    kd_arena_free(&s);
}

static void test_half(void) {
    int bad16 = 0, bad_bf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kd_f16_to_f32((uint16_t)h);
        uint16_t back = kd_f32_to_f16(f);
        int is_nan = ((h & 0x7c00) == 0x7c00) && (h & 0x3ff);
        if (is_nan ? !isnan(f) : back != h) bad16++;
        float g = kd_bf16_to_f32((uint16_t)h);
        uint16_t bb = kd_f32_to_bf16(g);
        int bnan = ((h & 0x7f80) == 0x7f80) && (h & 0x7f);
        if (bnan ? !isnan(g) : bb != h) bad_bf++;
    }
    TEST_CHECK(bad16 == 0, "f16 -> f32 -> f16 round trip: %d of 65536 differ", bad16);
    TEST_CHECK(bad_bf == 0, "bf16 -> f32 -> bf16 round trip: %d of 65536 differ", bad_bf);
    /* rounding: ties to even, overflow to inf, subnormals */
    TEST_CHECK(kd_f32_to_f16(65504.0f) == 0x7bff && kd_f32_to_f16(65520.0f) == 0x7c00, "f16 overflow boundary");
    TEST_CHECK(kd_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie rounds to even (down)");
    TEST_CHECK(kd_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie rounds to even (up)");
    TEST_CHECK(kd_f32_to_f16(0x1p-24f) == 0x0001 && kd_f32_to_f16(0x1p-25f) == 0x0000, "smallest subnormal, tie to zero");
    TEST_CHECK(kd_f32_to_f16(-0.0f) == 0x8000, "negative zero");
    TEST_CHECK(kd_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80 && kd_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "bf16 ties to even");
    /* bulk conversion (vector path) agrees with the scalar one */
    uint16_t hs[1000];
    float out[1000];
    for (int i = 0; i < 1000; i++) hs[i] = (uint16_t)(i * 65 + 7);
    kd_convert_to_f32(out, hs, KD_F16, 1000);
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        float r = kd_f16_to_f32(hs[i]);
        bad += !(out[i] == r || (isnan(out[i]) && isnan(r)));
    }
    TEST_CHECK(bad == 0, "bulk f16 conversion: %d mismatches", bad);
}

static void test_err(void) {
    kd_err e;
    kd_err_clear(&e);
    TEST_CHECK(kd_errf(&e, KD_ERR_SHAPE, "tensor '%s' bad", "x") == KD_ERR_SHAPE && !strcmp(e.msg, "tensor 'x' bad"), "errf");
    kd_err_prefix(&e, "unet/%s", "model.safetensors");
    TEST_CHECK(!strcmp(e.msg, "unet/model.safetensors: tensor 'x' bad"), "prefix: %s", e.msg);
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    kd_errf(&e, KD_ERR_IO, "%s", big);
    kd_err_prefix(&e, "%s", big);
    TEST_CHECK(strlen(e.msg) < KD_ERR_MSG_MAX, "long messages are truncated safely");
    TEST_CHECK(kd_errf(NULL, KD_ERR_IO, "no sink") == KD_ERR_IO, "NULL error sink");
    TEST_CHECK(!strcmp(kd_status_str(KD_ERR_FORMAT), "KD_ERR_FORMAT"), "status names");
}

int main(void) {
    test_pool(1);
    test_pool(2);
    test_pool(5);
    test_threads_resolve();
    test_arena();
    test_half();
    test_err();
    return kt_finish("test_core");
}
