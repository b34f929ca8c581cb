#include "core/arena.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct kd_arena_block {
    kd_arena_block *prev;
    size_t cap;
    size_t off;
    unsigned char *base; /* aligned start of the usable bytes */
    void *raw;
};

static atomic_size_t total_block_allocs;

size_t kd_arena_block_allocs(void) { return atomic_load(&total_block_allocs); }

static void *mem_alloc(const kd_arena_mem *m, size_t bytes) {
    if (m->alloc) return m->alloc(m->user, bytes);
    void *p = NULL;
    return posix_memalign(&p, KD_ARENA_ALIGN, bytes) == 0 ? p : NULL;
}

static void mem_free(const kd_arena_mem *m, void *p) {
    if (m->alloc) m->free(m->user, p);
    else free(p);
}

static kd_arena_block *block_new(const kd_arena_mem *m, size_t cap) {
    atomic_fetch_add(&total_block_allocs, 1);
    kd_arena_block *b = malloc(sizeof *b);
    if (!b) return NULL;
    b->raw = mem_alloc(m, cap ? cap : KD_ARENA_ALIGN);
    if (!b->raw) {
        free(b);
        return NULL;
    }
    b->base = b->raw;
    b->cap = cap;
    b->off = 0;
    b->prev = NULL;
    return b;
}

static void blocks_free(const kd_arena_mem *m, kd_arena_block *b) {
    while (b) {
        kd_arena_block *p = b->prev;
        mem_free(m, b->raw);
        free(b);
        b = p;
    }
}

void kd_arena_init(kd_arena *a, size_t initial_bytes) { kd_arena_init_mem(a, initial_bytes, NULL); }

void kd_arena_init_mem(kd_arena *a, size_t initial_bytes, const kd_arena_mem *mem) {
    a->mem = mem ? *mem : (kd_arena_mem){0};
    a->head = NULL;
    a->used_total = 0;
    a->high_water = 0;
    a->limit = 0;
    a->n_mallocs = 0;
    if (initial_bytes) {
        a->head = block_new(&a->mem, initial_bytes);
        if (a->head) a->n_mallocs++;
    }
}

void kd_arena_free(kd_arena *a) {
    blocks_free(&a->mem, a->head);
    a->head = NULL;
    a->used_total = a->high_water = 0;
}

void *kd_arena_alloc(kd_arena *a, size_t bytes, kd_err *e) {
    size_t need = (bytes + KD_ARENA_ALIGN - 1) & ~(size_t)(KD_ARENA_ALIGN - 1);
    if (need < bytes) {
        kd_errf(e, KD_ERR_OOM, "arena: allocation of %zu bytes overflows", bytes);
        return NULL;
    }
    if (a->limit && a->used_total + need > a->limit) {
        kd_errf(e, KD_ERR_OOM, "arena: %zu bytes requested, %zu of the %zu-byte limit in use", bytes,
                a->used_total, a->limit);
        return NULL;
    }
    kd_arena_block *b = a->head;
    if (!b || b->cap - b->off < need) {
        size_t cap = need;
        if (b && cap < b->cap * 2) cap = b->cap * 2; /* geometric growth during the first pass */
        if (cap < ((size_t)1 << 20)) cap = (size_t)1 << 20;
        kd_arena_block *nb = block_new(&a->mem, cap);
        if (!nb) {
            kd_errf(e, KD_ERR_OOM, "arena: out of memory allocating a %zu-byte block", cap);
            return NULL;
        }
        a->n_mallocs++;
        nb->prev = b;
        a->head = b = nb;
    }
    void *p = b->base + b->off;
    b->off += need;
    a->used_total += need;
    if (a->used_total > a->high_water) a->high_water = a->used_total;
    return p;
}

float *kd_arena_floats(kd_arena *a, size_t n, kd_err *e) {
    if (n > SIZE_MAX / sizeof(float)) {
        kd_errf(e, KD_ERR_OOM, "arena: %zu floats overflow size_t", n);
        return NULL;
    }
    return kd_arena_alloc(a, n * sizeof(float), e);
}

kd_arena_mark kd_arena_get_mark(const kd_arena *a) {
    kd_arena_mark m = {a->head, a->head ? a->head->off : 0, a->used_total};
    return m;
}

void kd_arena_release(kd_arena *a, kd_arena_mark m) {
    /* Drop blocks created after the mark; they will be folded in at the next reset via high_water. */
    while (a->head && a->head != m.block) {
        kd_arena_block *p = a->head->prev;
        mem_free(&a->mem, a->head->raw);
        free(a->head);
        a->head = p;
    }
    if (a->head) a->head->off = m.offset;
    a->used_total = m.used_total;
    /* Back to empty: fold any growth into one block now, so the next user of a scratch arena
     * that is never reset explicitly finds room without calling malloc. */
    if (a->used_total == 0) kd_arena_reset(a);
}

void *kd_arena_compact(kd_arena *a, kd_arena_mark m, void *src, size_t bytes) {
    kd_arena_block *b = a->head;
    if (!b || b != m.block) return src;
    unsigned char *dst = b->base + m.offset;
    if ((unsigned char *)src < dst || (unsigned char *)src + bytes > b->base + b->off) return src;
    size_t need = (bytes + KD_ARENA_ALIGN - 1) & ~(size_t)(KD_ARENA_ALIGN - 1);
    if (a->mem.alloc) a->mem.move(a->mem.user, dst, src, bytes);
    else memmove(dst, src, bytes);
    b->off = m.offset + need;
    a->used_total = m.used_total + need;
    return dst;
}

void kd_arena_reset(kd_arena *a) {
    int fragmented = a->head ? (a->head->prev != NULL || a->head->cap < a->high_water) : a->high_water > 0;
    if (fragmented) {
        /* More than one block was needed: replace them all by one block of the high-water size. */
        blocks_free(&a->mem, a->head);
        a->head = block_new(&a->mem, a->high_water);
        if (a->head) a->n_mallocs++;
    }
    if (a->head) a->head->off = 0;
    a->used_total = 0;
}
