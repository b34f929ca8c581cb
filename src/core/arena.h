/* Bump allocator for activations. A model allocates every intermediate of a forward pass from
 * an arena and resets it afterwards. The first pass may grow the arena through extra blocks;
 * kd_arena_reset then folds them into one block of the high-water size, so later passes of the
 * same shape never call malloc (the "no allocation inside the denoising loop" rule). */
#ifndef KD_CORE_ARENA_H
#define KD_CORE_ARENA_H

#include <stddef.h>

#include "core/err.h"

#define KD_ARENA_ALIGN 64

typedef struct kd_arena_block kd_arena_block;

/* Where an arena's blocks live. alloc == NULL: host memory (posix_memalign). A backend hands out
 * its own (kd_backend_arena_init) so that activations live in the memory its ops run on; the
 * bookkeeping (block headers, marks) always stays on the host. */
typedef struct kd_arena_mem {
    void *(*alloc)(void *user, size_t bytes);                           /* KD_ARENA_ALIGN-aligned, NULL = out of memory */
    void (*free)(void *user, void *p);
    void (*move)(void *user, void *dst, const void *src, size_t bytes); /* memmove inside that memory */
    void *user;
} kd_arena_mem;

typedef struct kd_arena {
    kd_arena_mem mem;
    kd_arena_block *head;   /* current block (blocks chain backwards) */
    size_t used_total;      /* bytes handed out since the last reset, all blocks */
    size_t high_water;      /* max used_total seen */
    size_t limit;           /* 0 = unlimited; otherwise allocations beyond it fail */
    size_t n_mallocs;       /* blocks allocated so far (for tests of the no-malloc rule) */
} kd_arena;

void kd_arena_init(kd_arena *a, size_t initial_bytes); /* host memory */
void kd_arena_init_mem(kd_arena *a, size_t initial_bytes, const kd_arena_mem *mem);
void kd_arena_free(kd_arena *a);

/* 64-byte aligned, uninitialised. Returns NULL (and sets e) on failure or limit. */
void *kd_arena_alloc(kd_arena *a, size_t bytes, kd_err *e);
/* Shorthand for n floats. */
float *kd_arena_floats(kd_arena *a, size_t n, kd_err *e);

/* Marks let a function free its temporaries on return while keeping earlier allocations. */
typedef struct kd_arena_mark {
    kd_arena_block *block;
    size_t offset;
    size_t used_total;
} kd_arena_mark;

kd_arena_mark kd_arena_get_mark(const kd_arena *a);
void kd_arena_release(kd_arena *a, kd_arena_mark m);

/* Moves `bytes` at src (the newest live allocation) down to the mark's position and frees
 * everything above it: a chain of layers can then keep only its current activation instead of
 * every intermediate. Returns the new address, or src unchanged when the mark lies in an earlier
 * block (first pass of a growing arena; later passes run in one block and always compact). */
void *kd_arena_compact(kd_arena *a, kd_arena_mark m, void *src, size_t bytes);

/* Blocks allocated by all arenas of the process so far: tests use it to check that a second
 * forward pass of the same shape allocates nothing. */
size_t kd_arena_block_allocs(void);

/* Frees everything handed out; consolidates into one block of the high-water size. */
void kd_arena_reset(kd_arena *a);

#endif
