/* safetensors reader. The file is mmapped; tensors point into the mapping. The header is checked
 * with the rules of the reference (Rust) reader before anything is trusted:
 *   8-byte little-endian header length N with N <= 100 MB and 8 + N <= file size; the header is
 *   valid UTF-8 JSON whose top level is an object; every entry other than "__metadata__" is an
 *   object {dtype, shape, data_offsets} with a known dtype, non-negative integer dims whose element
 *   count and byte size do not overflow, data_offsets [begin, end] with end - begin equal to
 *   numel × dtype size; the tensors sorted by offset cover the data area contiguously from 0 with
 *   no hole or overlap and end exactly at the end of the file; "__metadata__" maps strings to
 *   strings; duplicate names are rejected.
 * Each failure names the file, the tensor and the rule. */
#ifndef KD_IO_SAFETENSORS_H
#define KD_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/tensor.h"

#define KD_ST_MAX_HEADER (100u * 1000u * 1000u)

typedef struct kd_st_tensor {
    char *name;
    kd_tensor t;        /* t.data points into the mapping (or buffer) */
    uint64_t offset;    /* byte offset inside the data area */
    uint64_t nbytes;
} kd_st_tensor;

typedef struct kd_st_kv {
    char *key, *value;
} kd_st_kv;

typedef struct kd_st_file {
    char *path;                 /* as opened ("<memory>" for parsed buffers) */
    const uint8_t *base;        /* whole file */
    uint64_t size;
    const uint8_t *data;        /* data area = base + 8 + header length */
    size_t n_tensors;
    kd_st_tensor *tensors;      /* in header order */
    size_t n_meta;
    kd_st_kv *meta;             /* __metadata__ */
    int mapped;                 /* base is an mmap owned by this struct */
    void *index;                /* name → tensor lookup (private) */
} kd_st_file;

/* Opens and validates a file. */
kd_status kd_st_open(const char *path, kd_st_file **out, kd_err *e);
/* Validates a complete safetensors image held in memory (not copied: buf must outlive *out).
 * The entry point for the fuzzer and for tests of crafted files. name is used in messages. */
kd_status kd_st_parse(const uint8_t *buf, uint64_t size, const char *name, kd_st_file **out, kd_err *e);
void kd_st_close(kd_st_file *f);

/* NULL if absent. */
const kd_st_tensor *kd_st_find(const kd_st_file *f, const char *name);
/* NULL if absent. */
const char *kd_st_meta(const kd_st_file *f, const char *key);

/* Writes a safetensors file (tensors in the given order, data contiguous). For tests, tools and
 * `kandinsky autoencode --latents-out`. meta may be NULL. */
kd_status kd_st_write(const char *path, const char *const *names, const kd_tensor *tensors, size_t n,
                      const kd_st_kv *meta, size_t n_meta, kd_err *e);

#endif
