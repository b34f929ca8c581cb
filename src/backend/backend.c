/* The backend-independent parts of backend.h / ops.h. */
#include "backend/backend.h"

#include <string.h>

#include "backend/ops.h"

void kd_backend_free(kd_backend *be) {
    if (!be || !be->ops) return;
    be->ops->destroy(be);
    be->ops = NULL;
    be->impl = NULL;
}

void kd_backend_arena_init(kd_backend *be, kd_arena *a) {
    kd_arena_mem m = be->ops->arena_mem(be);
    kd_arena_init_mem(a, 0, &m);
}

kd_conv2d_params kd_conv2d_same(int k) {
    kd_conv2d_params p = {1, k / 2, k / 2, k / 2, k / 2};
    return p;
}

int64_t kd_conv2d_out_dim(int64_t in, int k, int stride, int pad_a, int pad_b) {
    int64_t span = in + pad_a + pad_b - k;
    if (span < 0 || stride <= 0) return 0;
    return span / stride + 1;
}
