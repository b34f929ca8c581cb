/* safetensors: validation of the header against the format's rules, mmap, lookup, writing.
 *
 * Order of checks (each failure names the file, the tensor and the rule):
 *   1. lengths: 8-byte length field, N <= 100 MB, 8 + N <= file size;
 *   2. the header is strict JSON (kd_json_parse: UTF-8, grammar, no duplicate keys), top level an
 *      object;
 *   3. every entry: {dtype, shape, data_offsets} and nothing else, sizes overflow-checked;
 *   4. layout: sorted by offsets the tensors tile the data area from 0 to its end exactly.
 *
 * Tensor data pointers are only as aligned as the file makes them: the data area starts at
 * 8 + N (writers pad N to a multiple of 8, but nothing forces them to) and offsets are arbitrary.
 * Readers copy or convert (kd_convert_to_f32 handles any alignment for F32 via memmove; callers
 * with 2-byte types at odd addresses copy first). Never write through t.data: the mapping is
 * read-only. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/config.h"
#include "io/file.h"

#define MAX_EXACT (UINT64_C(1) << 53)

/* Valid safetensors dtypes this build cannot use: reported as unsupported, not malformed. */
static const char *const other_dtypes[] = {"BOOL", "U8",  "F8_E5M2", "F8_E4M3", "F8_E8M0",
                                           "I16",  "U16", "I32", "U32",     "U64",     "F64",
                                           "C64",  "F4",  "F6_E2M3", "F6_E3M2", NULL};

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static uint64_t read_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- header checks ----------------------------------------------------------------------- */

static kd_status check_lengths(const uint8_t *buf, uint64_t size, const char *name, uint64_t *hlen, kd_err *e) {
    if (size < 8)
        return kd_errf(e, KD_ERR_FORMAT, "%s: file is %llu bytes, too short for the 8-byte header length", name,
                       (unsigned long long)size);
    uint64_t n = read_le64(buf);
    if (n > KD_ST_MAX_HEADER)
        return kd_errf(e, KD_ERR_FORMAT, "%s: header length %llu exceeds the format's 100 MB limit", name,
                       (unsigned long long)n);
    if (n == 0) return kd_errf(e, KD_ERR_FORMAT, "%s: header length is 0 (a header is at least \"{}\")", name);
    if (n > size - 8)
        return kd_errf(e, KD_ERR_FORMAT, "%s: header length %llu but only %llu bytes follow the length field (truncated file?)",
                       name, (unsigned long long)n, (unsigned long long)(size - 8));
    *hlen = n;
    return KD_OK;
}

static kd_status read_dtype(const kd_st_file *f, const char *tname, const cJSON *it, kd_dtype *out, kd_err *e) {
    if (!cJSON_IsString(it))
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': dtype is %s, expected a string", f->path, tname,
                       kd_json_kind(it));
    if (kd_dtype_parse(it->valuestring, out) == 0) return KD_OK;
    for (int i = 0; other_dtypes[i]; i++)
        if (strcmp(it->valuestring, other_dtypes[i]) == 0)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (only F32, F16, BF16, I64, I8)",
                           f->path, tname, it->valuestring);
    return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': unknown dtype '%.40s'", f->path, tname, it->valuestring);
}

/* A non-negative integer within 2^53 (what every dim and offset must be), else a message. */
static kd_status read_uint(const kd_st_file *f, const char *tname, const char *what, int idx, const cJSON *it,
                           uint64_t *out, kd_err *e) {
    int64_t v = 0;
    if (kd_json_int(it, &v) && v >= 0) {
        *out = (uint64_t)v;
        return KD_OK;
    }
    if (cJSON_IsNumber(it) && (it->type & KD_JSON_INT))
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': %s[%d] is %lld, expected a non-negative integer", f->path,
                       tname, what, idx, (long long)v);
    if (cJSON_IsNumber(it) && (it->type & KD_JSON_BIGINT))
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': %s[%d] is larger than 2^53", f->path, tname, what, idx);
    return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': %s[%d] is %s, expected a non-negative integer", f->path, tname,
                   what, idx, kd_json_kind(it));
}

static kd_status read_shape(const kd_st_file *f, const char *tname, const cJSON *it, kd_tensor *t, uint64_t *nbytes,
                            kd_err *e) {
    if (!cJSON_IsArray(it))
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': shape is %s, expected an array", f->path, tname,
                       kd_json_kind(it));
    int ndim = cJSON_GetArraySize(it);
    if (ndim > KD_MAX_DIMS)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: tensor '%s': %d dimensions, at most %d are supported", f->path,
                       tname, ndim, KD_MAX_DIMS);
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *d = it->child; d; d = d->next, i++) {
        uint64_t v;
        KD_TRY(read_uint(f, tname, "shape", i, d, &v, e));
        /* Checked in order, as the reference does: [2^53, 2^53, 0] overflows before the 0. */
        if (v && numel > UINT64_MAX / v)
            return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': element count of the shape overflows 64 bits", f->path,
                           tname);
        numel *= v;
        t->shape[i] = (int64_t)v;
    }
    t->ndim = ndim;
    uint64_t es = kd_dtype_size(t->dtype);
    if (numel > (uint64_t)INT64_MAX || numel > UINT64_MAX / es)
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': byte size of the shape overflows 64 bits", f->path, tname);
    *nbytes = numel * es;
    return KD_OK;
}

static kd_status read_offsets(const kd_st_file *f, const char *tname, const cJSON *it, kd_st_tensor *t, kd_err *e) {
    int n = cJSON_IsArray(it) ? cJSON_GetArraySize(it) : -1;
    if (n != 2) {
        if (n < 0)
            return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': data_offsets is %s, expected [begin, end]", f->path,
                           tname, kd_json_kind(it));
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': data_offsets has %d elements, expected 2 [begin, end]",
                       f->path, tname, n);
    }
    uint64_t begin, end;
    KD_TRY(read_uint(f, tname, "data_offsets", 0, it->child, &begin, e));
    KD_TRY(read_uint(f, tname, "data_offsets", 1, it->child->next, &end, e));
    if (begin > end)
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] has begin > end", f->path, tname,
                       (unsigned long long)begin, (unsigned long long)end);
    if (end - begin != t->nbytes) {
        char sh[128];
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] span %llu bytes but %s %s needs %llu",
                       f->path, tname, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)(end - begin), kd_dtype_name(t->t.dtype),
                       kd_shape_str(t->t.shape, t->t.ndim, sh, sizeof sh), (unsigned long long)t->nbytes);
    }
    t->offset = begin;
    return KD_OK;
}

/* One tensor entry: exactly {dtype, shape, data_offsets}. (The Rust reader ignores other keys;
 * we reject them: no writer emits them, so one is more likely corruption than an extension.) */
static kd_status read_entry(const kd_st_file *f, const cJSON *item, kd_st_tensor *t, kd_err *e) {
    const char *tname = item->string;
    if (!cJSON_IsObject(item))
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s' is %s, expected an object {dtype, shape, data_offsets}",
                       f->path, tname, kd_json_kind(item));
    const cJSON *dtype = NULL, *shape = NULL, *offsets = NULL;
    for (const cJSON *c = item->child; c; c = c->next) {
        if (strcmp(c->string, "dtype") == 0) dtype = c;
        else if (strcmp(c->string, "shape") == 0) shape = c;
        else if (strcmp(c->string, "data_offsets") == 0) offsets = c;
        else
            return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': unknown key '%.60s' (an entry has only dtype, shape and data_offsets)",
                           f->path, tname, c->string);
    }
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offsets ? "data_offsets" : NULL;
    if (missing) return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s': missing key '%s'", f->path, tname, missing);
    KD_TRY(read_dtype(f, tname, dtype, &t->t.dtype, e));
    KD_TRY(read_shape(f, tname, shape, &t->t, &t->nbytes, e));
    KD_TRY(read_offsets(f, tname, offsets, t, e));
    t->name = dupstr(tname);
    if (!t->name) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", f->path);
    return KD_OK;
}

/* "__metadata__": string → string. null counts as absent, as in the reference (an Option). */
static kd_status read_metadata(kd_st_file *f, const cJSON *item, kd_err *e) {
    if (cJSON_IsNull(item)) return KD_OK;
    if (!cJSON_IsObject(item))
        return kd_errf(e, KD_ERR_FORMAT, "%s: __metadata__ is %s, expected an object of strings", f->path,
                       kd_json_kind(item));
    size_t n = (size_t)cJSON_GetArraySize(item);
    f->meta = calloc(n ? n : 1, sizeof *f->meta);
    if (!f->meta) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", f->path);
    for (const cJSON *c = item->child; c; c = c->next) {
        if (!cJSON_IsString(c))
            return kd_errf(e, KD_ERR_FORMAT, "%s: __metadata__ value of '%.60s' is %s, expected a string", f->path,
                           c->string, kd_json_kind(c));
        kd_st_kv *kv = &f->meta[f->n_meta++];
        kv->key = dupstr(c->string);
        kv->value = dupstr(c->valuestring);
        if (!kv->key || !kv->value) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", f->path);
    }
    return KD_OK;
}

static kd_status read_header(kd_st_file *f, const cJSON *root, kd_err *e) {
    if (!cJSON_IsObject(root))
        return kd_errf(e, KD_ERR_FORMAT, "%s: header is %s, expected a JSON object", f->path, kd_json_kind(root));
    size_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next) n += strcmp(c->string, "__metadata__") != 0;
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) return kd_errf(e, KD_ERR_OOM, "%s: out of memory for %zu tensors", f->path, n);
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) {
            KD_TRY(read_metadata(f, c, e));
            continue;
        }
        kd_st_tensor *t = &f->tensors[f->n_tensors];
        KD_TRY(read_entry(f, c, t, e));
        f->n_tensors++; /* only now: close() frees names of counted tensors */
        t->t.data = (void *)(f->data + t->offset);
    }
    return KD_OK;
}

/* ---- layout and index -------------------------------------------------------------------- */

static int cmp_offset(const void *a, const void *b) {
    const kd_st_tensor *x = *(const kd_st_tensor *const *)a, *y = *(const kd_st_tensor *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const kd_st_tensor *const *)a)->name, (*(const kd_st_tensor *const *)b)->name);
}

static kd_status layout_gap(const kd_st_file *f, const kd_st_tensor *prev, const kd_st_tensor *t, uint64_t at,
                            kd_err *e) {
    if (!prev)
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s' is the first in the data area but begins at byte %llu, not 0 (hole)",
                       f->path, t->name, (unsigned long long)t->offset);
    if (t->offset > at)
        return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s' begins at byte %llu but the previous tensor '%s' ends at %llu (hole)",
                       f->path, t->name, (unsigned long long)t->offset, prev->name, (unsigned long long)at);
    return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s' [%llu, %llu] overlaps tensor '%s' [%llu, %llu]", f->path, t->name,
                   (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes), prev->name,
                   (unsigned long long)prev->offset, (unsigned long long)at);
}

/* Sorted by (begin, end) the tensors must tile [0, data size) exactly. */
static kd_status check_layout(const kd_st_file *f, uint64_t data_size, kd_err *e) {
    size_t n = f->n_tensors;
    const kd_st_tensor **order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", f->path);
    for (size_t i = 0; i < n; i++) order[i] = &f->tensors[i];
    qsort(order, n, sizeof *order, cmp_offset);
    uint64_t at = 0;
    kd_status s = KD_OK;
    for (size_t i = 0; i < n && s == KD_OK; i++) {
        if (order[i]->offset != at) s = layout_gap(f, i ? order[i - 1] : NULL, order[i], at, e);
        at = order[i]->offset + order[i]->nbytes;
    }
    if (s == KD_OK && at < data_size)
        s = kd_errf(e, KD_ERR_FORMAT, "%s: tensors end at byte %llu of the data area but it has %llu bytes (%llu extra bytes at the end of the file)",
                    f->path, (unsigned long long)at, (unsigned long long)data_size, (unsigned long long)(data_size - at));
    if (s == KD_OK && at > data_size)
        s = kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s' ends at byte %llu but the data area has only %llu bytes (truncated file?)",
                    f->path, order[n - 1]->name, (unsigned long long)at, (unsigned long long)data_size);
    free(order);
    return s;
}

/* Sorted pointers for bsearch by name. Duplicates were already refused by the JSON layer. */
static kd_status build_index(kd_st_file *f, kd_err *e) {
    size_t n = f->n_tensors;
    kd_st_tensor **idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", f->path);
    for (size_t i = 0; i < n; i++) idx[i] = &f->tensors[i];
    qsort(idx, n, sizeof *idx, cmp_name);
    f->index = idx;
    for (size_t i = 1; i < n; i++)
        if (strcmp(idx[i - 1]->name, idx[i]->name) == 0)
            return kd_errf(e, KD_ERR_FORMAT, "%s: duplicate tensor name '%s'", f->path, idx[i]->name);
    return KD_OK;
}

/* ---- public ------------------------------------------------------------------------------ */

static kd_status parse_into(kd_st_file *f, kd_err *e) {
    uint64_t hlen = 0;
    KD_TRY(check_lengths(f->base, f->size, f->path, &hlen, e));
    f->data = f->base + 8 + hlen;
    size_t olen = strlen(f->path) + 16;
    char *origin = malloc(olen);
    if (!origin) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", f->path);
    snprintf(origin, olen, "%s: header", f->path);
    cJSON *root = NULL;
    kd_status s = kd_json_parse((const char *)f->base + 8, (size_t)hlen, origin, &root, e);
    free(origin);
    if (s == KD_OK) s = read_header(f, root, e);
    cJSON_Delete(root);
    if (s == KD_OK) s = check_layout(f, f->size - 8 - hlen, e);
    if (s == KD_OK) s = build_index(f, e);
    return s;
}

kd_status kd_st_parse(const uint8_t *buf, uint64_t size, const char *name, kd_st_file **out, kd_err *e) {
    if (!out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_parse: NULL out");
    *out = NULL;
    if (!buf && size) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_parse: NULL buffer");
    static const uint8_t empty[1];
    kd_st_file *f = calloc(1, sizeof *f);
    if (!f) return kd_errf(e, KD_ERR_OOM, "out of memory");
    f->path = dupstr(name ? name : "<memory>");
    if (!f->path) {
        free(f);
        return kd_errf(e, KD_ERR_OOM, "out of memory");
    }
    f->base = buf ? buf : empty;
    f->size = size;
    kd_status s = parse_into(f, e);
    if (s != KD_OK) {
        kd_st_close(f);
        return s;
    }
    *out = f;
    return KD_OK;
}

kd_status kd_st_open(const char *path, kd_st_file **out, kd_err *e) {
    if (!out || !path) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_open: NULL argument");
    *out = NULL;
    int fd;
    uint64_t size;
    KD_TRY(kd_open_regular(path, &fd, &size, e));
    if (size < 8) { /* also avoids mmap of 0 bytes, which is an error */
        close(fd);
        return kd_errf(e, KD_ERR_FORMAT, "%s: file is %llu bytes, too short for the 8-byte header length", path,
                       (unsigned long long)size);
    }
    void *map;
    KD_TRY(kd_map_fd(path, fd, size, &map, e));
    kd_status s = kd_st_parse(map, size, path, out, e);
    if (s == KD_OK) (*out)->mapped = 1;
    else munmap(map, (size_t)size);
    return s;
}

void kd_st_close(kd_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    for (size_t i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->tensors);
    free(f->meta);
    free(f->index);
    free(f->path);
    if (f->mapped) munmap((void *)f->base, (size_t)f->size);
    free(f);
}

static int cmp_key_tensor(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const kd_st_tensor *const *)elem)->name);
}

const kd_st_tensor *kd_st_find(const kd_st_file *f, const char *name) {
    if (!f || !name || !f->index || !f->n_tensors) return NULL;
    kd_st_tensor *const *hit = bsearch(name, f->index, f->n_tensors, sizeof(kd_st_tensor *), cmp_key_tensor);
    return hit ? *hit : NULL;
}

const char *kd_st_meta(const kd_st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->n_meta; i++) /* a handful of entries */
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

/* ---- writing ----------------------------------------------------------------------------- */

static kd_status check_write_name(const char *what, const char *s, kd_err *e) {
    if (!s) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: NULL %s", what);
    size_t n = strlen(s);
    if (kd_utf8_invalid_at((const uint8_t *)s, n, NULL) != n)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: %s '%s' is not valid UTF-8", what, s);
    return KD_OK;
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* *dup = a string that occurs twice among strs[0..n), or NULL. */
static kd_status find_duplicate(const char *const *strs, size_t n, const char **dup, kd_err *e) {
    *dup = NULL;
    if (n < 2) return KD_OK;
    const char **tmp = malloc(n * sizeof *tmp);
    if (!tmp) return kd_errf(e, KD_ERR_OOM, "kd_st_write: out of memory");
    memcpy(tmp, strs, n * sizeof *tmp);
    qsort(tmp, n, sizeof *tmp, cmp_cstr);
    for (size_t i = 1; i < n && !*dup; i++)
        if (strcmp(tmp[i - 1], tmp[i]) == 0) *dup = tmp[i]; /* a caller string: still valid after free(tmp) */
    free(tmp);
    return KD_OK;
}

/* Byte size of a tensor the caller wants written, with the reader's overflow rules. */
static kd_status write_nbytes(const char *name, const kd_tensor *t, uint64_t *nbytes, kd_err *e) {
    if ((unsigned)t->dtype >= KD_DTYPE_COUNT || t->ndim < 0 || t->ndim > KD_MAX_DIMS)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: tensor '%s' has a bad dtype or ndim", name);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t v = (uint64_t)t->shape[d];
        if (t->shape[d] < 0 || (v && numel > UINT64_MAX / v) || v > MAX_EXACT)
            return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: tensor '%s' has a bad shape", name);
        numel *= v;
    }
    uint64_t es = kd_dtype_size(t->dtype);
    if (numel > UINT64_MAX / es) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: tensor '%s' is too large", name);
    *nbytes = numel * es;
    if (*nbytes && !t->data) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: tensor '%s' has no data", name);
    return KD_OK;
}

static kd_status check_write_args(const char *const *names, const kd_tensor *tensors, size_t n, const kd_st_kv *meta,
                                  size_t n_meta, kd_err *e) {
    uint64_t nb;
    for (size_t i = 0; i < n; i++) {
        KD_TRY(check_write_name("tensor name", names[i], e));
        if (strcmp(names[i], "__metadata__") == 0)
            return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: '__metadata__' is reserved, not a tensor name");
        KD_TRY(write_nbytes(names[i], &tensors[i], &nb, e));
    }
    for (size_t i = 0; i < n_meta; i++) {
        KD_TRY(check_write_name("metadata key", meta[i].key, e));
        KD_TRY(check_write_name("metadata value", meta[i].value, e));
    }
    const char *dup;
    KD_TRY(find_duplicate(names, n, &dup, e));
    if (dup) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: duplicate tensor name '%s'", dup);
    for (size_t i = 0; i < n_meta; i++)
        for (size_t j = 0; j < i; j++) /* metadata is a handful of entries */
            if (strcmp(meta[i].key, meta[j].key) == 0)
                return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: duplicate metadata key '%s'", meta[i].key);
    return KD_OK;
}

static void write_shape(FILE *h, const kd_tensor *t) {
    fputc('[', h);
    for (int d = 0; d < t->ndim; d++) fprintf(h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    fputc(']', h);
}

/* The JSON header, padded with spaces to a multiple of 8 so the data area starts 8-aligned. */
static kd_status build_write_header(const char *const *names, const kd_tensor *tensors, size_t n,
                                    const kd_st_kv *meta, size_t n_meta, char **out, size_t *len, kd_err *e) {
    char *buf = NULL;
    size_t size = 0;
    FILE *h = open_memstream(&buf, &size);
    if (!h) return kd_errf(e, KD_ERR_OOM, "kd_st_write: out of memory");
    fputc('{', h);
    if (n_meta) {
        fputs("\"__metadata__\":{", h);
        for (size_t i = 0; i < n_meta; i++) {
            if (i) fputc(',', h);
            kd_json_print_string(meta[i].key, h);
            fputc(':', h);
            kd_json_print_string(meta[i].value, h);
        }
        fputc('}', h);
    }
    uint64_t offset = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        write_nbytes(names[i], &tensors[i], &nb, NULL); /* validated before */
        if (i || n_meta) fputc(',', h);
        kd_json_print_string(names[i], h);
        fprintf(h, ":{\"dtype\":\"%s\",\"shape\":", kd_dtype_name(tensors[i].dtype));
        write_shape(h, &tensors[i]);
        fprintf(h, ",\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset, (unsigned long long)(offset + nb));
        offset += nb;
    }
    fputc('}', h);
    while (ftell(h) % 8) fputc(' ', h);
    int bad = ferror(h);
    if (fclose(h) != 0 || bad) {
        free(buf);
        return kd_errf(e, KD_ERR_OOM, "kd_st_write: out of memory building the header");
    }
    *out = buf;
    *len = size;
    return KD_OK;
}

static kd_status write_all(FILE *fp, const char *const *names, const kd_tensor *tensors, size_t n, const char *hdr,
                           size_t hlen) {
    uint8_t lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    if (fwrite(lenbuf, 1, 8, fp) != 8 || fwrite(hdr, 1, hlen, fp) != hlen) return KD_ERR_IO;
    for (size_t i = 0; i < n; i++) {
        uint64_t nb = 0;
        write_nbytes(names[i], &tensors[i], &nb, NULL);
        if (nb && fwrite(tensors[i].data, 1, (size_t)nb, fp) != nb) return KD_ERR_IO;
    }
    return KD_OK;
}

/* Tensors are laid out in the order given (the reference writer sorts by dtype alignment first):
 * callers that want every tensor naturally aligned pass the 8-byte types first, then 4, then 2. */
kd_status kd_st_write(const char *path, const char *const *names, const kd_tensor *tensors, size_t n,
                      const kd_st_kv *meta, size_t n_meta, kd_err *e) {
    if (!path || (n && (!names || !tensors)) || (n_meta && !meta))
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_st_write: NULL argument");
    KD_TRY(check_write_args(names, tensors, n, meta, n_meta, e));
    char *hdr = NULL;
    size_t hlen = 0;
    KD_TRY(build_write_header(names, tensors, n, meta, n_meta, &hdr, &hlen, e));
    /* Write beside the target and rename, so a failed write never leaves a truncated model. */
    size_t plen = strlen(path) + 8;
    char *tmp = malloc(plen);
    if (!tmp) {
        free(hdr);
        return kd_errf(e, KD_ERR_OOM, "kd_st_write: out of memory");
    }
    snprintf(tmp, plen, "%s.tmp", path);
    kd_status s = KD_OK;
    FILE *fp = fopen(tmp, "wb");
    if (!fp) s = kd_errf(e, KD_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (fp) {
        s = write_all(fp, names, tensors, n, hdr, hlen);
        if (fclose(fp) != 0) s = KD_ERR_IO;
        if (s != KD_OK) kd_errf(e, KD_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        if (s == KD_OK && rename(tmp, path) != 0)
            s = kd_errf(e, KD_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        if (s != KD_OK) remove(tmp);
    }
    free(tmp);
    free(hdr);
    return s;
}
