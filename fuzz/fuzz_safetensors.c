/* libFuzzer target: kd_st_parse on arbitrary bytes. Beyond "no crash, no leak, no UB" it checks
 * what a successful parse promises: every tensor lies inside the buffer, is found by its name,
 * and its byte size matches dtype × shape; metadata is found by key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

static void check_tensor(const kd_st_file *f, const kd_st_tensor *t) {
    const uint8_t *p = t->t.data;
    if (kd_st_find(f, t->name) != t) __builtin_trap();
    if (p < f->data || t->offset + t->nbytes > f->size - (uint64_t)(f->data - f->base)) __builtin_trap();
    if ((uint64_t)kd_tensor_nbytes(&t->t) != t->nbytes) __builtin_trap();
    /* Touch the first and last byte so ASan sees any out-of-bounds view. */
    if (t->nbytes) {
        volatile uint8_t sink = p[0];
        sink = p[t->nbytes - 1];
        (void)sink;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kd_st_file *f = NULL;
    kd_err e = {0};
    kd_status s = kd_st_parse(data, size, "fuzz", &f, &e);
    if (s != KD_OK) {
        if (f || e.code != s || !e.msg[0]) __builtin_trap(); /* every failure carries a message */
        return 0;
    }
    for (size_t i = 0; i < f->n_tensors; i++) check_tensor(f, &f->tensors[i]);
    for (size_t i = 0; i < f->n_meta; i++)
        if (kd_st_meta(f, f->meta[i].key) == NULL) __builtin_trap();
    if (kd_st_find(f, "\x01not-a-name") != NULL) __builtin_trap();
    kd_st_close(f);
    return 0;
}
