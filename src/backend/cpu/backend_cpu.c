#include <cblas.h>

#include "backend/backend.h"

kd_status kd_backend_init(kd_backend *be, int n_threads, kd_err *e) {
    be->n_threads = kd_threads_resolve(n_threads);
    be->pool = kd_pool_create(be->n_threads);
    if (!be->pool) return kd_errf(e, KD_ERR_OOM, "could not start %d threads", be->n_threads);
    kd_arena_init(&be->scratch, 0);
    /* Our pool splits the work; each BLAS call runs on the thread that makes it. */
    openblas_set_num_threads(1);
    return KD_OK;
}

void kd_backend_free(kd_backend *be) {
    kd_pool_free(be->pool);
    be->pool = NULL;
    kd_arena_free(&be->scratch);
}
