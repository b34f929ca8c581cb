/* libFuzzer target: kd_tz_parse (torch.save zip + restricted pickle VM) on arbitrary bytes.
 *
 * Three views of each input, so that mutations reach the pickle VM and not only the zip layer:
 *   - the bytes as given;
 *   - if they look like a zip: the same with every central-directory CRC set to 0 ("not
 *     computed"), so a mutated data.pkl is not stopped by its checksum;
 *   - if they do not: the bytes taken as a data.pkl and wrapped here into a valid archive with
 *     storages data/0 .. data/7 of 64 bytes each (and data/8 of 0, data/9 of 7 bytes).
 * Beyond "no crash, no leak, no UB" it checks what a successful parse promises: every tensor is
 * found by its name, its byte size matches dtype × shape, it is aligned to its element size, and
 * a tensor that is not a copy lies inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/torch_zip.h"

static void check(const kd_tz_file *f, const uint8_t *buf, size_t size) {
    for (size_t i = 0; i < f->st.n_tensors; i++) {
        const kd_st_tensor *t = &f->st.tensors[i];
        const uint8_t *p = t->t.data;
        if (kd_tz_find(f, t->name) != t) __builtin_trap();
        if ((uint64_t)kd_tensor_nbytes(&t->t) != t->nbytes || !p) __builtin_trap();
        if ((uintptr_t)p % kd_dtype_size(t->t.dtype)) __builtin_trap();
        if (!f->copied[i] && t->nbytes && (p < buf || t->nbytes > size || (size_t)(p - buf) > size - t->nbytes))
            __builtin_trap();
        if (t->nbytes) { /* ASan sees an out-of-bounds view or copy */
            volatile uint8_t sink = p[0];
            sink = p[t->nbytes - 1];
            (void)sink;
        }
    }
    if (kd_tz_find(f, "\x01not-a-name") != NULL) __builtin_trap();
}

static void parse(const uint8_t *buf, size_t size) {
    kd_tz_file *f = NULL;
    kd_err e = {0};
    kd_tz_limits lim = {.max_pickle = 1u << 20, .max_inflated = 64u << 20, .max_copied = 64u << 20};
    kd_status s = kd_tz_parse(buf, size, "fuzz", &lim, &f, &e);
    if (s != KD_OK) {
        if (f || e.code != s || !e.msg[0]) __builtin_trap(); /* every failure carries a message */
        return;
    }
    check(f, buf, size);
    kd_tz_close(f);
}

/* ---- a minimal zip writer for the wrapped-pickle view ---- */

typedef struct out {
    uint8_t *p;
    size_t n;
} out;

static void put(out *o, const void *s, size_t n) {
    memcpy(o->p + o->n, s, n);
    o->n += n;
}
static void put16(out *o, uint32_t v) { put(o, (uint8_t[]){(uint8_t)v, (uint8_t)(v >> 8)}, 2); }
static void put32(out *o, uint32_t v) { put16(o, v & 0xffff), put16(o, v >> 16); }

static void header(out *o, uint32_t sig, const char *name, size_t len, uint32_t lho) {
    size_t nl = strlen(name);
    put32(o, sig);
    if (sig == 0x02014b50) put16(o, 20);
    put16(o, 20), put16(o, 0), put16(o, 0), put32(o, 0), put32(o, 0); /* version, flags, method, time, crc 0 */
    put32(o, (uint32_t)len), put32(o, (uint32_t)len), put16(o, (uint32_t)nl), put16(o, 0);
    if (sig == 0x02014b50) put16(o, 0), put16(o, 0), put16(o, 0), put32(o, 0), put32(o, lho);
    put(o, name, nl);
}

static void wrap_pickle(const uint8_t *pkl, size_t size) {
    static const uint8_t zeros[64];
    const char *names[13] = {"a/data.pkl", "a/byteorder", "a/version", "a/data/0", "a/data/1", "a/data/2",
                             "a/data/3", "a/data/4", "a/data/5", "a/data/6", "a/data/7", "a/data/8", "a/data/9"};
    const void *data[13] = {pkl, "little", "3\n"};
    size_t lens[13] = {size, 6, 2, 64, 64, 64, 64, 64, 64, 64, 64, 0, 7};
    for (int i = 3; i < 13; i++) data[i] = zeros;
    out o = {malloc(size + 13 * (46 + 30 + 2 * 16 + 64) + 64), 0};
    if (!o.p) return;
    uint32_t lho[13];
    for (int i = 0; i < 13; i++) {
        lho[i] = (uint32_t)o.n;
        header(&o, 0x04034b50, names[i], lens[i], 0);
        put(&o, data[i], lens[i]);
    }
    size_t cd = o.n;
    for (int i = 0; i < 13; i++) header(&o, 0x02014b50, names[i], lens[i], lho[i]);
    put32(&o, 0x06054b50), put16(&o, 0), put16(&o, 0), put16(&o, 13), put16(&o, 13);
    put32(&o, (uint32_t)(o.n - cd)), put32(&o, (uint32_t)cd), put16(&o, 0);
    parse(o.p, o.n);
    free(o.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    parse(data, size);
    if (kd_tz_is_zip(data, size)) {
        uint8_t *copy = malloc(size ? size : 1);
        if (!copy) return 0;
        memcpy(copy, data, size);
        int changed = 0;
        for (size_t i = 0; i + 20 <= size; i++)
            if (copy[i] == 'P' && copy[i + 1] == 'K' && copy[i + 2] == 1 && copy[i + 3] == 2) {
                changed |= copy[i + 16] | copy[i + 17] | copy[i + 18] | copy[i + 19];
                memset(copy + i + 16, 0, 4);
            }
        if (changed) parse(copy, size);
        free(copy);
    } else if (size <= (1u << 20)) {
        wrap_pickle(data, size);
    }
    return 0;
}
