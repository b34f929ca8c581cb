/* A fixed pthread pool for the CPU kernels. kd_pool_run(pool, n, fn, arg) calls fn(arg, i, tid)
 * for every i in [0, n) spread over the pool's threads (the calling thread takes part) and returns
 * when all are done. Tasks are handed out one index at a time through an atomic counter, so make
 * each index a chunk of work worth at least a few microseconds. Not reentrant: a task must not
 * call kd_pool_run on the same pool (nested calls run serially on the caller instead). */
#ifndef KD_CORE_POOL_H
#define KD_CORE_POOL_H

#include <stdint.h>

typedef struct kd_pool kd_pool;
typedef void (*kd_task_fn)(void *arg, int64_t index, int thread_id);

/* n_threads >= 1 (1 = no worker threads). Returns NULL if threads cannot be created. */
kd_pool *kd_pool_create(int n_threads);
void kd_pool_free(kd_pool *p);
int kd_pool_threads(const kd_pool *p);
void kd_pool_run(kd_pool *p, int64_t n_tasks, kd_task_fn fn, void *arg);

/* Threads to use when the caller asked for `requested` (0 = KD_THREADS env or the cores this
 * process may run on). */
int kd_threads_resolve(int requested);

#endif
