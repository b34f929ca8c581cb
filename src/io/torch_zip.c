/* torch.save zip checkpoints: ZIP container, restricted pickle VM, tensor views.
 *
 * Three layers, each validating before the next trusts it:
 *   1. zip: end record (+ ZIP64), central directory, local headers, overlap/duplicate/prefix
 *      checks, then entry access (a view into the buffer, or inflated into an owned copy);
 *   2. pickle: a small VM that knows only what torch.save emits for a state dict (opcode table
 *      below); other opcodes stop it with a message naming the opcode, globals outside the
 *      allow-list become placeholders that are never called and are refused, by name, wherever
 *      a state dict, tensor or storage type is expected;
 *   3. tensors: each (name, tensor) of the resulting dict is checked against its storage entry
 *      and becomes a view into the mapping or a contiguous copy.
 *
 * Opcodes accepted (pickle protocol 2, plus the protocol 4 forms a state dict can use):
 *   PROTO FRAME STOP MARK  EMPTY_DICT EMPTY_LIST EMPTY_TUPLE  NONE NEWTRUE NEWFALSE
 *   BININT BININT1 BININT2 LONG1 (<= 8 bytes)  BINFLOAT  BINUNICODE SHORT_BINUNICODE BINUNICODE8
 *   TUPLE TUPLE1 TUPLE2 TUPLE3  LIST APPEND APPENDS  DICT SETITEM SETITEMS
 *   BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET  GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID
 *   and, for what a Lightning checkpoint holds beside its weights (only ever placeholders):
 *   NEWOBJ NEWOBJ_EX EMPTY_SET ADDITEMS FROZENSET SHORT_BINBYTES BINBYTES BINBYTES8 POP POP_MARK
 * Everything else (INST, OBJ, PERSID, DUP, EXT*, text forms, out-of-band buffers, LONG4, ...) is
 * refused. No opcode reads outside the pickle, no pop goes
 * below the innermost open MARK, and nothing walks the object graph recursively, so cyclic or
 * deeply nested structures cost only their (bounded) size. */
#include "io/torch_zip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/config.h"
#include "io/file.h"

/* ---- limits ------------------------------------------------------------------------------ */

#define MAX_STACK (1u << 20)    /* values on the VM stack */
#define MAX_MARKS 256u          /* open MARKs; torch nests 3 deep */
#define MAX_OBJECTS (1u << 23)  /* values created (a tensor in a state dict costs ~15) */
#define MAX_CELLS (1u << 24)    /* items held by all tuples, lists and dicts together */
#define MAX_STRING (1u << 20)   /* bytes of one string */
#define MAX_GLOBAL 256u         /* bytes of a GLOBAL's module or name */
#define MAX_VERSION 10          /* highest <archive>/version torch 2.x writes or reads */
/* deflate emits at most one 258-byte match per ~2 bits: no stream inflates beyond ~1032:1. */
#define DEFLATE_MAX_RATIO 1032u

/* ---- small helpers ----------------------------------------------------------------------- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Bytes from a file as a printable C string for messages: non-printable bytes as \xNN, cut
 * with "..." past ~100 characters. */
static const char *shown(const uint8_t *s, size_t n, char *buf, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o + 8 >= cap || o > 100) {
            memcpy(buf + o, "...", 4);
            return buf;
        }
        if (s[i] >= 0x20 && s[i] < 0x7f) buf[o++] = (char)s[i];
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", s[i]);
    }
    buf[o] = '\0';
    return buf;
}

/* a * b and a + b without wrapping: 0 on overflow. */
static int mul_u64(uint64_t a, uint64_t b, uint64_t *r) {
    if (a && b > UINT64_MAX / a) return 0;
    *r = a * b;
    return 1;
}
static int add_u64(uint64_t a, uint64_t b, uint64_t *r) {
    if (b > UINT64_MAX - a) return 0;
    *r = a + b;
    return 1;
}

/* ---- dtypes -------------------------------------------------------------------------------- */

/* Storage classes and dtype names torch writes. kd < 0: a valid torch type this build cannot
 * use (reported as unsupported with the tensor's name). */
typedef struct tdtype {
    const char *storage;   /* torch.<storage> legacy class, or NULL */
    const char *names[2];  /* torch.<name> dtype objects */
    int kd;
    uint8_t size;
} tdtype;

enum { DT_UNTYPED = 0 };
static const tdtype dtypes[] = {
    {"UntypedStorage", {NULL, NULL}, -1, 1}, /* DT_UNTYPED: bytes; also torch.storage.UntypedStorage */
    {"FloatStorage", {"float32", "float"}, KD_F32, 4},
    {"HalfStorage", {"float16", "half"}, KD_F16, 2},
    {"BFloat16Storage", {"bfloat16", NULL}, KD_BF16, 2},
    {"LongStorage", {"int64", "long"}, KD_I64, 8},
    {"DoubleStorage", {"float64", "double"}, -1, 8},
    {"IntStorage", {"int32", "int"}, -1, 4},
    {"ShortStorage", {"int16", "short"}, -1, 2},
    {"CharStorage", {"int8", NULL}, -1, 1},
    {"ByteStorage", {"uint8", NULL}, -1, 1},
    {"BoolStorage", {"bool", NULL}, -1, 1},
    {"ComplexFloatStorage", {"complex64", "cfloat"}, -1, 8},
    {"ComplexDoubleStorage", {"complex128", "cdouble"}, -1, 16},
    {"QInt8Storage", {"qint8", NULL}, -1, 1},
    {"QUInt8Storage", {"quint8", NULL}, -1, 1},
    {"QInt32Storage", {"qint32", NULL}, -1, 4},
    {"QUInt4x2Storage", {"quint4x2", NULL}, -1, 1},
    {"QUInt2x4Storage", {"quint2x4", NULL}, -1, 1},
    {NULL, {"complex32", "chalf"}, -1, 4},
    {NULL, {"uint16", NULL}, -1, 2},
    {NULL, {"uint32", NULL}, -1, 4},
    {NULL, {"uint64", NULL}, -1, 8},
    {NULL, {"float8_e4m3fn", NULL}, -1, 1},
    {NULL, {"float8_e5m2", NULL}, -1, 1},
    {NULL, {"float8_e4m3fnuz", NULL}, -1, 1},
    {NULL, {"float8_e5m2fnuz", NULL}, -1, 1},
    {NULL, {"float8_e8m0fnu", NULL}, -1, 1},
    {NULL, {"float4_e2m1fn_x2", NULL}, -1, 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

static const char *dtype_label(int row) {
    const tdtype *d = &dtypes[row];
    return d->names[0] ? d->names[0] : "uint8 (untyped storage)";
}

/* ---- zip ----------------------------------------------------------------------------------- */

typedef struct zent {
    const uint8_t *name;
    uint32_t nlen;
    uint16_t flags, method;
    uint32_t crc;
    uint64_t csize, usize, lho, data;
} zent;


typedef struct tz_priv {
    int mapped;
    void **owned;
    size_t n_owned, cap_owned;
} tz_priv;

/* Everything of one parse; freed at the end except what the tensors keep (owned buffers). */
typedef struct tz {
    kd_tz_file *f;
    tz_priv *priv;
    kd_err *e;
    const char *path;
    const uint8_t *buf;
    uint64_t size;
    uint64_t max_inflated, max_copied, max_pickle;
    uint64_t inflated_bytes, copied_bytes;
    zent *ents;          /* central directory order */
    size_t n_ents;
    zent **by_name;      /* sorted by name */
    size_t prefix_len;   /* strlen("<archive>/") */
    int32_t *storage_of; /* per entry of ents: storage index or -1 */
} tz;

/* An entry's name for messages. */
static const char *ename(const zent *en, char *buf, size_t cap) { return shown(en->name, en->nlen, buf, cap); }

static kd_status oom(const tz *z) { return kd_errf(z->e, KD_ERR_OOM, "%s: out of memory", z->path); }

static kd_status keep_owned(tz *z, void *p) {
    tz_priv *pv = z->priv;
    if (pv->n_owned == pv->cap_owned) {
        size_t cap = pv->cap_owned ? 2 * pv->cap_owned : 16;
        void **o = realloc(pv->owned, cap * sizeof *o);
        if (!o) {
            free(p);
            return oom(z);
        }
        pv->owned = o;
        pv->cap_owned = cap;
    }
    pv->owned[pv->n_owned++] = p;
    return KD_OK;
}

/* Reserves n bytes of a budget (inflated entries, or copies of views). */
static kd_status charge(tz *z, uint64_t *used, uint64_t max, uint64_t n, const char *what) {
    if (n > max || *used > max - n)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s needs %llu more bytes of memory, beyond the limit of %llu bytes for %s",
                       z->path, what, (unsigned long long)n, (unsigned long long)max,
                       used == &z->inflated_bytes ? "inflated entries" : "copies of strided or misaligned tensors");
    *used += n;
    z->f->owned_bytes += n;
    return KD_OK;
}

/* The end of central directory record: last signature whose comment ends exactly at the end. */
static kd_status find_end(tz *z, uint64_t *at) {
    if (z->size < 22)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: %llu bytes, too short for a zip end record (truncated file?)", z->path,
                       (unsigned long long)z->size);
    uint64_t lo = z->size - 22 > 65535 ? z->size - 22 - 65535 : 0;
    for (uint64_t p = z->size - 22 + 1; p-- > lo;) {
        const uint8_t *q = z->buf + p;
        if (rd32(q) == 0x06054b50 && p + 22 + rd16(q + 20) == z->size) {
            *at = p;
            return KD_OK;
        }
    }
    return kd_errf(z->e, KD_ERR_FORMAT, "%s: no zip end-of-central-directory record at the end of the file (truncated file?)",
                   z->path);
}

typedef struct zdir {
    uint64_t n, cd_off, cd_size, cd_end; /* cd_end: where the central directory must end */
} zdir;

static kd_status read_zip64_end(tz *z, uint64_t end, zdir *d) {
    const uint8_t *loc = z->buf + end - 20;
    uint64_t rec = rd64(loc + 8);
    if (rd32(loc + 4) != 0 || rd32(loc + 16) > 1)
        return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: ZIP64 locator names disk %u of %u: multi-disk archives are not supported",
                       z->path, rd32(loc + 4), rd32(loc + 16));
    if (rec > end - 20 || end - 20 - rec < 56)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: ZIP64 locator points at offset %llu, not before the locator at %llu with room for a ZIP64 end record",
                       z->path, (unsigned long long)rec, (unsigned long long)(end - 20));
    const uint8_t *q = z->buf + rec;
    if (rd32(q) != 0x06064b50)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: no ZIP64 end record signature at offset %llu named by the locator", z->path,
                       (unsigned long long)rec);
    uint64_t recsize = rd64(q + 4);
    if (recsize < 44 || recsize != end - 20 - rec - 12)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: ZIP64 end record at %llu declares %llu bytes but %llu lie before the locator",
                       z->path, (unsigned long long)rec, (unsigned long long)recsize,
                       (unsigned long long)(end - 20 - rec - 12));
    if (rd32(q + 16) != 0 || rd32(q + 20) != 0 || rd64(q + 24) != rd64(q + 32))
        return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: ZIP64 end record describes a multi-disk archive (not supported)", z->path);
    d->n = rd64(q + 32);
    d->cd_size = rd64(q + 40);
    d->cd_off = rd64(q + 48);
    d->cd_end = rec;
    /* The classic record keeps either the escape value or the same number. */
    const uint8_t *c = z->buf + end;
    if ((rd16(c + 10) != 0xffff && rd16(c + 10) != d->n) || (rd32(c + 12) != 0xffffffffu && rd32(c + 12) != d->cd_size) ||
        (rd32(c + 16) != 0xffffffffu && rd32(c + 16) != d->cd_off))
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: the end record and the ZIP64 end record disagree on the entry count or the central directory",
                       z->path);
    return KD_OK;
}

static kd_status read_dir(tz *z, zdir *d) {
    uint64_t end = 0;
    KD_TRY(find_end(z, &end));
    const uint8_t *c = z->buf + end;
    if (end >= 20 && rd32(c - 20) == 0x07064b50) {
        KD_TRY(read_zip64_end(z, end, d));
    } else {
        if (rd16(c + 4) != 0 || rd16(c + 6) != 0 || rd16(c + 8) != rd16(c + 10))
            return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: the end record describes a multi-disk archive (not supported)", z->path);
        d->n = rd16(c + 10);
        d->cd_size = rd32(c + 12);
        d->cd_off = rd32(c + 16);
        d->cd_end = end;
    }
    if (d->cd_size > d->cd_end || d->cd_off != d->cd_end - d->cd_size)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: central directory at offset %llu with %llu bytes does not end where the end record begins (%llu): wrong offsets, or data inserted or cut",
                       z->path, (unsigned long long)d->cd_off, (unsigned long long)d->cd_size,
                       (unsigned long long)d->cd_end);
    if (d->n > d->cd_size / 46)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: the end record claims %llu entries but the central directory's %llu bytes hold at most %llu",
                       z->path, (unsigned long long)d->n, (unsigned long long)d->cd_size,
                       (unsigned long long)(d->cd_size / 46));
    if (d->n == 0) return kd_errf(z->e, KD_ERR_FORMAT, "%s: the zip archive is empty (no data.pkl)", z->path);
    return KD_OK;
}

/* ZIP64 extended information (header id 1): the 64-bit values of the fields set to all ones,
 * in the order usize, csize, local header offset, disk. */
static kd_status read_zip64_extra(tz *z, zent *en, const uint8_t *x, uint32_t xlen, int disk_escaped) {
    int need_u = en->usize == 0xffffffffu, need_c = en->csize == 0xffffffffu, need_o = en->lho == 0xffffffffu;
    if (!need_u && !need_c && !need_o && !disk_escaped) return KD_OK;
    char nm[128];
    for (uint32_t p = 0; p + 4 <= xlen;) {
        uint16_t id = rd16(x + p), len = rd16(x + p + 2);
        if ((uint32_t)len > xlen - p - 4) break; /* reported below as malformed */
        if (id == 1) {
            const uint8_t *v = x + p + 4;
            uint32_t want = 8u * (uint32_t)(need_u + need_c + need_o) + 4u * (uint32_t)disk_escaped;
            if (len < want)
                return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': ZIP64 extra field has %u bytes, %u needed", z->path,
                               ename(en, nm, sizeof nm), len, want);
            if (need_u) en->usize = rd64(v), v += 8;
            if (need_c) en->csize = rd64(v), v += 8;
            if (need_o) en->lho = rd64(v), v += 8;
            if (disk_escaped && rd32(v) != 0)
                return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: zip entry '%s' starts on disk %u (multi-disk archives are not supported)",
                               z->path, ename(en, nm, sizeof nm), rd32(v));
            return KD_OK;
        }
        p += 4u + len;
    }
    return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': sizes or offset are 0xffffffff but there is no ZIP64 extra field",
                   z->path, ename(en, nm, sizeof nm));
}

static kd_status read_central(tz *z, const zdir *d) {
    z->ents = calloc((size_t)d->n, sizeof *z->ents);
    if (!z->ents) return oom(z);
    uint64_t p = d->cd_off;
    char nm[128];
    for (uint64_t i = 0; i < d->n; i++) {
        if (d->cd_end - p < 46)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: central directory entry %llu of %llu runs past the directory's end", z->path,
                           (unsigned long long)i, (unsigned long long)d->n);
        const uint8_t *q = z->buf + p;
        if (rd32(q) != 0x02014b50)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: no central directory signature at offset %llu (entry %llu of %llu)", z->path,
                           (unsigned long long)p, (unsigned long long)i, (unsigned long long)d->n);
        zent *en = &z->ents[z->n_ents];
        en->flags = rd16(q + 8);
        en->method = rd16(q + 10);
        en->crc = rd32(q + 16);
        en->csize = rd32(q + 20);
        en->usize = rd32(q + 24);
        uint32_t nlen = rd16(q + 28), xlen = rd16(q + 30), clen = rd16(q + 32);
        uint16_t disk = rd16(q + 34);
        en->lho = rd32(q + 42);
        if (d->cd_end - p - 46 < (uint64_t)nlen + xlen + clen)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: central directory entry %llu: name, extra and comment run past the directory's end",
                           z->path, (unsigned long long)i);
        en->name = q + 46;
        en->nlen = nlen;
        z->n_ents++;
        if (!nlen) return kd_errf(z->e, KD_ERR_FORMAT, "%s: central directory entry %llu has an empty name", z->path, (unsigned long long)i);
        if (memchr(en->name, 0, nlen))
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': name contains a NUL byte", z->path, ename(en, nm, sizeof nm));
        if (disk != 0 && disk != 0xffff)
            return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: zip entry '%s' starts on disk %u (multi-disk archives are not supported)",
                           z->path, ename(en, nm, sizeof nm), disk);
        KD_TRY(read_zip64_extra(z, en, q + 46 + nlen, xlen, disk == 0xffff));
        if (en->flags & (1u | 1u << 6 | 1u << 13))
            return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: zip entry '%s' is encrypted (not supported)", z->path,
                           ename(en, nm, sizeof nm));
        if (en->method != 0 && en->method != 8)
            return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: zip entry '%s' uses compression method %u (only 0 stored and 8 deflate are supported)",
                           z->path, ename(en, nm, sizeof nm), en->method);
        if (en->method == 0 && en->csize != en->usize)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s' is stored but its sizes differ (%llu compressed, %llu uncompressed)",
                           z->path, ename(en, nm, sizeof nm), (unsigned long long)en->csize, (unsigned long long)en->usize);
        p += 46u + nlen + xlen + clen;
    }
    if (p != d->cd_end)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: %llu bytes follow the last of the %llu central directory entries (wrong entry count?)",
                       z->path, (unsigned long long)(d->cd_end - p), (unsigned long long)d->n);
    return KD_OK;
}

/* Local headers: where each entry's data begins, and that it agrees with the directory. */
static kd_status read_locals(tz *z, uint64_t cd_off) {
    char nm[128];
    for (size_t i = 0; i < z->n_ents; i++) {
        zent *en = &z->ents[i];
        if (en->lho > cd_off || cd_off - en->lho < 30)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': local header offset %llu is not before the central directory (%llu)",
                           z->path, ename(en, nm, sizeof nm), (unsigned long long)en->lho, (unsigned long long)cd_off);
        const uint8_t *q = z->buf + en->lho;
        if (rd32(q) != 0x04034b50)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': no local header signature at offset %llu (wrong offset?)",
                           z->path, ename(en, nm, sizeof nm), (unsigned long long)en->lho);
        uint32_t nlen = rd16(q + 26), xlen = rd16(q + 28);
        uint64_t data = en->lho + 30 + nlen + xlen;
        if (data > cd_off)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': local header runs into the central directory", z->path,
                           ename(en, nm, sizeof nm));
        if (nlen != en->nlen || memcmp(q + 30, en->name, nlen) != 0)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': the local header at %llu names another file", z->path,
                           ename(en, nm, sizeof nm), (unsigned long long)en->lho);
        if (rd16(q + 8) != en->method || (rd16(q + 6) & 1u))
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': local header disagrees with the central directory on method or encryption",
                           z->path, ename(en, nm, sizeof nm));
        if (en->csize > cd_off - data)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': %llu bytes of data at offset %llu run past the central directory at %llu (truncated or wrong size?)",
                           z->path, ename(en, nm, sizeof nm), (unsigned long long)en->csize, (unsigned long long)data,
                           (unsigned long long)cd_off);
        en->data = data;
    }
    return KD_OK;
}

static int cmp_lho(const void *a, const void *b) {
    const zent *x = *(const zent *const *)a, *y = *(const zent *const *)b;
    return x->lho < y->lho ? -1 : x->lho > y->lho;
}

static int cmp_bytes(const uint8_t *a, size_t an, const uint8_t *b, size_t bn) {
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int cmp_name(const void *a, const void *b) {
    const zent *x = *(const zent *const *)a, *y = *(const zent *const *)b;
    return cmp_bytes(x->name, x->nlen, y->name, y->nlen);
}

/* No two entries share bytes (overlapping entries are how "quoted" zip bombs multiply data),
 * names are unique, and every name lies in the archive folder. */
static kd_status check_entries(tz *z) {
    char nm[128], nm2[128];
    zent **order = malloc(z->n_ents * sizeof *order);
    if (!order) return oom(z);
    for (size_t i = 0; i < z->n_ents; i++) order[i] = &z->ents[i];
    qsort(order, z->n_ents, sizeof *order, cmp_lho);
    for (size_t i = 1; i < z->n_ents; i++) {
        const zent *a = order[i - 1], *b = order[i];
        if (a->data + a->csize > b->lho) {
            kd_status s = kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entries '%s' and '%s' overlap", z->path, ename(a, nm, sizeof nm),
                                  ename(b, nm2, sizeof nm2));
            free(order);
            return s;
        }
    }
    free(order);
    z->by_name = malloc(z->n_ents * sizeof *z->by_name);
    if (!z->by_name) return oom(z);
    for (size_t i = 0; i < z->n_ents; i++) z->by_name[i] = &z->ents[i];
    qsort(z->by_name, z->n_ents, sizeof *z->by_name, cmp_name);
    for (size_t i = 1; i < z->n_ents; i++)
        if (cmp_name(&z->by_name[i - 1], &z->by_name[i]) == 0)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: duplicate zip entry '%s'", z->path, ename(z->by_name[i], nm, sizeof nm));
    /* torch's reader takes the archive folder from the first entry */
    const zent *first = &z->ents[0];
    const uint8_t *slash = memchr(first->name, '/', first->nlen);
    if (!slash || slash == first->name)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: first zip entry '%s' is not inside an archive folder (not a torch.save archive)",
                       z->path, ename(first, nm, sizeof nm));
    z->prefix_len = (size_t)(slash - first->name) + 1;
    for (size_t i = 0; i < z->n_ents; i++) {
        const zent *en = &z->ents[i];
        if (en->nlen < z->prefix_len || memcmp(en->name, first->name, z->prefix_len) != 0)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s' is outside the archive folder '%s'", z->path,
                           ename(en, nm, sizeof nm), shown(first->name, z->prefix_len, nm2, sizeof nm2));
    }
    z->f->archive = malloc(z->prefix_len);
    if (!z->f->archive) return oom(z);
    memcpy(z->f->archive, first->name, z->prefix_len - 1);
    z->f->archive[z->prefix_len - 1] = '\0';
    return KD_OK;
}

/* "<archive>/<rel>" or NULL. */
static zent *find_entry(const tz *z, const uint8_t *rel, size_t rlen) {
    size_t lo = 0, hi = z->n_ents, P = z->prefix_len;
    const uint8_t *pre = z->ents[0].name;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const zent *en = z->by_name[mid];
        /* compare en->name with pre[0..P) + rel */
        int c = memcmp(en->name, pre, en->nlen < P ? en->nlen : P);
        if (!c) c = en->nlen < P ? -1 : cmp_bytes(en->name + P, en->nlen - P, rel, rlen);
        if (c == 0) return (zent *)en;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static zent *find_entry_str(const tz *z, const char *rel) { return find_entry(z, (const uint8_t *)rel, strlen(rel)); }

static kd_status check_crc(tz *z, const zent *en, const uint8_t *p, uint64_t n) {
    if (!en->crc) return KD_OK; /* torch with compute_crc32 off writes 0 */
    uLong c = crc32_z(0, p, (z_size_t)n);
    char nm[128];
    if ((uint32_t)c != en->crc)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s': CRC-32 is %08x but the directory records %08x (corrupt data)",
                       z->path, ename(en, nm, sizeof nm), (unsigned)c, (unsigned)en->crc);
    return KD_OK;
}

/* Inflates a deflated entry into exactly usize bytes (owned by z's file once returned). */
static kd_status inflate_entry(tz *z, const zent *en, uint8_t **out) {
    char nm[128];
    uint64_t ratio_cap;
    if (!mul_u64(en->csize, DEFLATE_MAX_RATIO, &ratio_cap) || !add_u64(ratio_cap, 64, &ratio_cap)) ratio_cap = UINT64_MAX;
    if (en->usize > ratio_cap)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s' declares %llu bytes from %llu deflated bytes, beyond deflate's maximum ratio (zip bomb?)",
                       z->path, ename(en, nm, sizeof nm), (unsigned long long)en->usize, (unsigned long long)en->csize);
    char what[200];
    snprintf(what, sizeof what, "inflating zip entry '%s'", ename(en, nm, sizeof nm));
    KD_TRY(charge(z, &z->inflated_bytes, z->max_inflated, en->usize, what));
    if (en->usize > SIZE_MAX) return oom(z);
    uint8_t *dst = malloc(en->usize ? (size_t)en->usize : 1);
    if (!dst) return oom(z);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
        free(dst);
        return oom(z);
    }
    const uint8_t *in = z->buf + en->data;
    uint64_t in_left = en->csize, out_left = en->usize;
    uint8_t *o = dst, spill[1];
    const char *why = NULL;
    int spilling = 0;
    for (;;) {
        if (!zs.avail_in && in_left) {
            uInt n = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            zs.next_in = (Bytef *)in;
            zs.avail_in = n;
            in += n;
            in_left -= n;
        }
        if (!zs.avail_out && out_left) {
            uInt n = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            zs.next_out = o;
            zs.avail_out = n;
            o += n;
            out_left -= n;
        } else if (!zs.avail_out) { /* declared size reached: one more byte means the stream is longer */
            zs.next_out = spill;
            zs.avail_out = 1;
            spilling = 1;
        }
        int rc = inflate(&zs, Z_NO_FLUSH);
        if (spilling && !zs.avail_out) {
            why = "inflates beyond its declared size (zip bomb or wrong size)";
            break;
        }
        if (rc == Z_STREAM_END) {
            if (out_left || (!spilling && zs.avail_out)) why = "inflates to fewer bytes than its declared size";
            else if (zs.avail_in || in_left) why = "has bytes after the end of its deflate stream";
            break;
        }
        if (rc == Z_BUF_ERROR && !zs.avail_in && !in_left) {
            why = "deflate stream ends before its last block (truncated)";
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            why = rc == Z_MEM_ERROR ? "out of memory" : "corrupt deflate data";
            break;
        }
    }
    inflateEnd(&zs);
    if (why) {
        free(dst);
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: zip entry '%s' (%llu bytes declared): %s", z->path, ename(en, nm, sizeof nm),
                       (unsigned long long)en->usize, why);
    }
    kd_status s = check_crc(z, en, dst, en->usize);
    if (s != KD_OK) {
        free(dst);
        return s;
    }
    *out = dst;
    return KD_OK;
}

/* An entry's bytes: a view for stored entries, else inflated into a buffer kept by the file. */
static kd_status entry_bytes(tz *z, const zent *en, int crc, const uint8_t **out) {
    if (en->method == 0) {
        *out = z->buf + en->data;
        return crc ? check_crc(z, en, *out, en->usize) : KD_OK;
    }
    uint8_t *p = NULL;
    KD_TRY(inflate_entry(z, en, &p));
    KD_TRY(keep_owned(z, p));
    *out = p;
    return KD_OK;
}

static kd_status read_zip(tz *z) {
    zdir d = {0};
    KD_TRY(read_dir(z, &d));
    KD_TRY(read_central(z, &d));
    KD_TRY(read_locals(z, d.cd_off));
    return check_entries(z);
}

/* byteorder and version records. */
static kd_status read_records(tz *z) {
    char nm[128];
    const zent *bo = find_entry_str(z, "byteorder");
    if (bo) {
        const uint8_t *p;
        if (bo->usize > 16)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: '%s/byteorder' has %llu bytes, expected \"little\"", z->path, z->f->archive,
                           (unsigned long long)bo->usize);
        KD_TRY(entry_bytes(z, bo, 1, &p));
        if (bo->usize == 3 && memcmp(p, "big", 3) == 0)
            return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: '%s/byteorder' is \"big\": big-endian checkpoints are not supported (re-save on a little-endian machine)",
                           z->path, z->f->archive);
        if (bo->usize != 6 || memcmp(p, "little", 6) != 0)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: '%s/byteorder' is \"%s\", expected \"little\"", z->path, z->f->archive,
                           shown(p, (size_t)bo->usize, nm, sizeof nm));
    }
    const zent *ve = find_entry_str(z, "version");
    if (!ve) ve = find_entry_str(z, ".data/version");
    if (!ve)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: no '%s/version' record (not a torch.save archive?)", z->path, z->f->archive);
    if (ve->usize > 16)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: '%s' has %llu bytes, expected a version number", z->path,
                       ename(ve, nm, sizeof nm), (unsigned long long)ve->usize);
    const uint8_t *p;
    KD_TRY(entry_bytes(z, ve, 1, &p));
    size_t n = (size_t)ve->usize, i = 0;
    int v = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9' && v < 100000) v = v * 10 + (p[i++] - '0');
    if (i < n && p[i] == '\n') i++;
    if (i == 0 || i != n || v < 1) {
        char val[128];
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: '%s' is \"%s\", expected a version number", z->path, ename(ve, nm, sizeof nm),
                       shown(p, n, val, sizeof val));
    }
    if (v > MAX_VERSION)
        return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: '%s' is %d: torch.save format versions above %d are not supported",
                       z->path, ename(ve, nm, sizeof nm), v, MAX_VERSION);
    z->f->version = v;
    return KD_OK;
}

/* ---- pickle VM ----------------------------------------------------------------------------- */

enum okind { K_NONE, K_BOOL, K_INT, K_FLOAT, K_STR, K_TUPLE, K_LIST, K_DICT, K_GLOBAL, K_STORAGE, K_TENSOR, K_OPAQUE };

static const char *const kind_names[] = {"None", "a bool", "an int", "a float", "a string", "a tuple", "a list",
                                         "a dict", "a class or function", "a storage", "a tensor",
                                         "an object the reader does not build"};

/* K_OPAQUE: what a checkpoint holds beside its tensors that the reader never builds — a global
 * outside the allow-list and whatever REDUCE / NEWOBJ / BUILD would make of it, sets, bytes.
 * Nothing is called: the placeholder only remembers the global's name (spans of the pickle) for
 * messages, and is refused wherever a state dict or a tensor is expected. */
enum opq { OPQ_GLOBAL, OPQ_SET, OPQ_BYTES };

enum gid { G_ORDERED_DICT, G_REBUILD_V2, G_REBUILD_V3, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE_TYPE, G_DTYPE };

typedef struct obj {
    uint8_t kind;
    uint8_t sub;     /* K_GLOBAL: gid */
    uint32_t n, cap; /* containers: items (a dict holds key, value, key, value, ...) */
    union {
        int64_t i;
        double f;
        struct {
            uint32_t off, len;
        } s;             /* K_STR: bytes of the pickle */
        uint32_t *items; /* containers */
        uint32_t ref;    /* K_GLOBAL: dtype row; K_STORAGE: storage; K_TENSOR: tensor */
    } u;                 /* K_OPAQUE (OPQ_GLOBAL): u.s = the module's span, n / cap = the name's offset / length */
} obj;

typedef struct storage {
    const zent *en;
    int row;             /* dtypes[] */
    uint64_t numel;
    const uint8_t *data; /* resolved on first use */
} storage;

typedef struct tensor_rec {
    uint32_t storage;
    int64_t offset;
    uint32_t size, stride; /* tuple objects */
    int row;               /* element type */
    int neg_conj;          /* metadata sets the neg or conj bit */
} tensor_rec;

typedef struct vm {
    tz *z;
    const uint8_t *p;
    size_t n, pos, op_pos;
    uint8_t op;
    obj *objs;
    size_t n_objs, cap_objs, n_cells;
    uint32_t *stack;
    size_t sp, cap_stack;
    size_t marks[MAX_MARKS];
    size_t n_marks;
    uint32_t *memo;
    size_t n_memo, cap_memo;
    storage *st;
    size_t n_st, cap_st;
    tensor_rec *tens;
    size_t n_tens, cap_tens;
    char pkl[300]; /* "<archive>/data.pkl" */
} vm;

enum { O_NONE = 0, O_TRUE = 1, O_FALSE = 2 }; /* preallocated singletons */

static const char *op_name(uint8_t op) {
    switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return NULL;
    }
}

/* A failure inside the pickle: "<file>: <archive>/data.pkl: byte N (OPCODE): rule". */
static kd_status vfail(vm *m, kd_status code, const char *fmt, ...) KD_PRINTF(3, 4);
static kd_status vfail(vm *m, kd_status code, const char *fmt, ...) {
    char rule[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rule, sizeof rule, fmt, ap);
    va_end(ap);
    const char *on = op_name(m->op);
    return kd_errf(m->z->e, code, "%s: %s: byte %zu (%s): %s", m->z->path, m->pkl, m->op_pos, on ? on : "?", rule);
}

static kd_status new_obj(vm *m, uint8_t kind, uint32_t *idx) {
    if (m->n_objs >= MAX_OBJECTS) return vfail(m, KD_ERR_FORMAT, "more than %u values (limit for a state dict)", MAX_OBJECTS);
    if (m->n_objs == m->cap_objs) {
        size_t cap = m->cap_objs ? 2 * m->cap_objs : 256;
        obj *o = realloc(m->objs, cap * sizeof *o);
        if (!o) return oom(m->z);
        m->objs = o;
        m->cap_objs = cap;
    }
    obj *o = &m->objs[m->n_objs];
    memset(o, 0, sizeof *o);
    o->kind = kind;
    *idx = (uint32_t)m->n_objs++;
    return KD_OK;
}

static kd_status push(vm *m, uint32_t idx) {
    if (m->sp >= MAX_STACK) return vfail(m, KD_ERR_FORMAT, "stack deeper than %u values", MAX_STACK);
    if (m->sp == m->cap_stack) {
        size_t cap = m->cap_stack ? 2 * m->cap_stack : 256;
        uint32_t *s = realloc(m->stack, cap * sizeof *s);
        if (!s) return oom(m->z);
        m->stack = s;
        m->cap_stack = cap;
    }
    m->stack[m->sp++] = idx;
    return KD_OK;
}

static kd_status push_new(vm *m, uint8_t kind, uint32_t *idx) {
    uint32_t i = 0;
    KD_TRY(new_obj(m, kind, &i));
    if (idx) *idx = i;
    return push(m, i);
}

/* Values above the innermost MARK (everything if none is open). */
static size_t avail(const vm *m) { return m->sp - (m->n_marks ? m->marks[m->n_marks - 1] : 0); }

static kd_status need_stack(vm *m, size_t k) {
    if (avail(m) < k)
        return vfail(m, KD_ERR_FORMAT, "needs %zu values on the stack but %zu are there%s", k, avail(m),
                     m->n_marks ? " above the open MARK" : "");
    return KD_OK;
}

static kd_status pop_mark(vm *m, size_t *at) {
    if (!m->n_marks) return vfail(m, KD_ERR_FORMAT, "no open MARK");
    *at = m->marks[--m->n_marks];
    return KD_OK;
}

static kd_status need_bytes(vm *m, size_t k) {
    if (m->n - m->pos < k)
        return vfail(m, KD_ERR_FORMAT, "needs %zu more bytes but the pickle ends after %zu (truncated)", k, m->n - m->pos);
    return KD_OK;
}

/* Appends k values to a container, within the cell budget. */
static kd_status add_items(vm *m, uint32_t c, const uint32_t *v, size_t k) {
    if (!k) return KD_OK;
    if (k > MAX_CELLS - m->n_cells) return vfail(m, KD_ERR_FORMAT, "containers hold more than %u values in all", MAX_CELLS);
    obj *o = &m->objs[c];
    if ((size_t)o->n + k > o->cap) {
        size_t cap = o->cap ? o->cap : 4;
        while (cap < (size_t)o->n + k) cap *= 2;
        uint32_t *it = realloc(o->u.items, cap * sizeof *it);
        if (!it) return oom(m->z);
        o->u.items = it;
        o->cap = (uint32_t)cap;
    }
    memcpy(o->u.items + o->n, v, k * sizeof *v);
    o->n += (uint32_t)k;
    m->n_cells += k;
    return KD_OK;
}

/* Replaces the values stack[from..sp) with one new container holding them. */
static kd_status collect(vm *m, uint8_t kind, size_t from) {
    uint32_t c = 0;
    KD_TRY(new_obj(m, kind, &c));
    KD_TRY(add_items(m, c, m->stack + from, m->sp - from));
    m->sp = from;
    return push(m, c);
}

static kd_status read_string(vm *m, size_t len) {
    if (len > MAX_STRING) return vfail(m, KD_ERR_FORMAT, "string of %zu bytes (limit %u)", len, MAX_STRING);
    KD_TRY(need_bytes(m, len));
    const char *why = NULL;
    size_t bad = kd_utf8_invalid_at(m->p + m->pos, len, &why);
    if (bad < len) return vfail(m, KD_ERR_FORMAT, "string is not valid UTF-8 at its byte %zu (%s)", bad, why ? why : "?");
    uint32_t i = 0;
    KD_TRY(push_new(m, K_STR, &i));
    m->objs[i].u.s.off = (uint32_t)m->pos;
    m->objs[i].u.s.len = (uint32_t)len;
    m->pos += len;
    return KD_OK;
}

static kd_status push_int(vm *m, int64_t v) {
    uint32_t i = 0;
    KD_TRY(push_new(m, K_INT, &i));
    m->objs[i].u.i = v;
    return KD_OK;
}

static int str_is(const vm *m, const obj *o, const char *s) {
    size_t n = strlen(s);
    return o->kind == K_STR && o->u.s.len == n && memcmp(m->p + o->u.s.off, s, n) == 0;
}

/* Resolves module.name against the allow-list. */
static kd_status push_global(vm *m, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl) {
#define IS(s, l, lit) ((l) == sizeof(lit) - 1 && memcmp((s), (lit), sizeof(lit) - 1) == 0)
    int gid = -1, row = 0;
    if (IS(mod, ml, "collections") && IS(name, nl, "OrderedDict")) gid = G_ORDERED_DICT;
    else if (IS(mod, ml, "torch._utils")) {
        if (IS(name, nl, "_rebuild_tensor_v2")) gid = G_REBUILD_V2;
        else if (IS(name, nl, "_rebuild_tensor_v3")) gid = G_REBUILD_V3;
        else if (IS(name, nl, "_rebuild_parameter")) gid = G_REBUILD_PARAM;
        else if (IS(name, nl, "_rebuild_parameter_with_state")) gid = G_REBUILD_PARAM_STATE;
    } else if ((IS(mod, ml, "torch.storage") || IS(mod, ml, "torch")) && IS(name, nl, "UntypedStorage")) {
        gid = G_STORAGE_TYPE;
        row = DT_UNTYPED;
    } else if (IS(mod, ml, "torch")) {
        for (size_t r = 1; r < N_DTYPES && gid < 0; r++) {
            const tdtype *d = &dtypes[r];
            if (d->storage && nl == strlen(d->storage) && memcmp(name, d->storage, nl) == 0) gid = G_STORAGE_TYPE, row = (int)r;
            for (int k = 0; k < 2 && gid < 0; k++)
                if (d->names[k] && nl == strlen(d->names[k]) && memcmp(name, d->names[k], nl) == 0) gid = G_DTYPE, row = (int)r;
        }
    }
#undef IS
    uint32_t i = 0;
    if (gid < 0) { /* never resolved: a placeholder that remembers the name */
        KD_TRY(push_new(m, K_OPAQUE, &i));
        obj *o = &m->objs[i];
        o->sub = OPQ_GLOBAL;
        o->u.s.off = (uint32_t)(mod - m->p);
        o->u.s.len = (uint32_t)ml;
        o->n = (uint32_t)(name - m->p);
        o->cap = (uint32_t)nl;
        return KD_OK;
    }
    KD_TRY(push_new(m, K_GLOBAL, &i));
    m->objs[i].sub = (uint8_t)gid;
    m->objs[i].u.ref = (uint32_t)row;
    return KD_OK;
}

/* "global 'os.system'" / "a set" / "bytes" for messages about a K_OPAQUE value */
static const char *opaque_name(const vm *m, const obj *o, char *buf, size_t cap) {
    if (o->sub == OPQ_SET) return "a set";
    if (o->sub == OPQ_BYTES) return "bytes";
    char a[128], b[128];
    snprintf(buf, cap, "global '%s.%s'", shown(m->p + o->u.s.off, o->u.s.len, a, sizeof a),
             shown(m->p + o->n, o->cap, b, sizeof b));
    return buf;
}

static int is_opaque_global(const obj *o) { return o->kind == K_OPAQUE && o->sub == OPQ_GLOBAL; }

/* REDUCE / NEWOBJ / NEWOBJ_EX of a placeholder global (below n_args values; the caller checked):
 * the result is a placeholder of the same global (the arguments are dropped, nothing is called). */
static kd_status opaque_call(vm *m, size_t n_args) {
    obj copy = m->objs[m->stack[m->sp - n_args - 1]];
    m->sp -= n_args + 1;
    uint32_t i = 0;
    KD_TRY(push_new(m, K_OPAQUE, &i));
    m->objs[i] = copy;
    return KD_OK;
}

static kd_status op_global(vm *m) {
    const uint8_t *s[2];
    size_t l[2];
    for (int k = 0; k < 2; k++) {
        size_t left = m->n - m->pos, lim = left < MAX_GLOBAL + 1 ? left : MAX_GLOBAL + 1;
        const uint8_t *nl = memchr(m->p + m->pos, '\n', lim);
        if (!nl)
            return vfail(m, KD_ERR_FORMAT, left <= MAX_GLOBAL ? "module or name runs to the end of the pickle"
                                                              : "module or name longer than %u bytes", MAX_GLOBAL);
        s[k] = m->p + m->pos;
        l[k] = (size_t)(nl - s[k]);
        m->pos += l[k] + 1;
    }
    return push_global(m, s[0], l[0], s[1], l[1]);
}

static kd_status op_stack_global(vm *m) {
    KD_TRY(need_stack(m, 2));
    const obj *mod = &m->objs[m->stack[m->sp - 2]], *name = &m->objs[m->stack[m->sp - 1]];
    if (mod->kind != K_STR || name->kind != K_STR) return vfail(m, KD_ERR_FORMAT, "module and name must be strings");
    m->sp -= 2;
    return push_global(m, m->p + mod->u.s.off, mod->u.s.len, m->p + name->u.s.off, name->u.s.len);
}

static kd_status memo_put(vm *m, uint64_t idx) {
    if (!avail(m)) return vfail(m, KD_ERR_FORMAT, "memoizes an empty stack");
    if (idx > m->n_memo)
        return vfail(m, KD_ERR_FORMAT, "memo index %llu skips ahead of the memo (%zu entries; indices are assigned in order)",
                     (unsigned long long)idx, m->n_memo);
    if (idx == m->n_memo) {
        if (m->n_memo >= MAX_OBJECTS) return vfail(m, KD_ERR_FORMAT, "memo larger than %u entries", MAX_OBJECTS);
        if (m->n_memo == m->cap_memo) {
            size_t cap = m->cap_memo ? 2 * m->cap_memo : 256;
            uint32_t *mm = realloc(m->memo, cap * sizeof *mm);
            if (!mm) return oom(m->z);
            m->memo = mm;
            m->cap_memo = cap;
        }
        m->n_memo++;
    }
    m->memo[idx] = m->stack[m->sp - 1];
    return KD_OK;
}

static kd_status memo_get(vm *m, uint64_t idx) {
    if (idx >= m->n_memo)
        return vfail(m, KD_ERR_FORMAT, "memo index %llu out of range (the memo has %zu entries)", (unsigned long long)idx,
                     m->n_memo);
    return push(m, m->memo[idx]);
}

/* BINPERSID: ('storage', <storage type>, key, location, numel) → a storage of entry data/<key>. */
static kd_status op_persid(vm *m) {
    KD_TRY(need_stack(m, 1));
    const obj *t = &m->objs[m->stack[m->sp - 1]];
    const uint32_t *it = t->kind == K_TUPLE ? t->u.items : NULL;
    if (it && t->n == 5 && m->objs[it[1]].kind == K_OPAQUE) {
        char g[300];
        return vfail(m, KD_ERR_FORMAT, "%s is not allowed as a storage type",
                     opaque_name(m, &m->objs[it[1]], g, sizeof g));
    }
    if (!it || t->n != 5 || !str_is(m, &m->objs[it[0]], "storage") || m->objs[it[1]].kind != K_GLOBAL ||
        m->objs[it[1]].sub != G_STORAGE_TYPE || m->objs[it[2]].kind != K_STR || m->objs[it[3]].kind != K_STR ||
        m->objs[it[4]].kind != K_INT)
        return vfail(m, KD_ERR_FORMAT, "persistent id is not ('storage', <storage type>, key, location, numel)");
    const obj *key = &m->objs[it[2]];
    int64_t numel = m->objs[it[4]].u.i;
    int row = (int)m->objs[it[1]].u.ref;
    char k[128], nm[128];
    shown(m->p + key->u.s.off, key->u.s.len, k, sizeof k);
    if (numel < 0) return vfail(m, KD_ERR_FORMAT, "storage '%s' has %lld elements", k, (long long)numel);
    /* "data/" + key */
    size_t kl = key->u.s.len;
    uint8_t *rel = malloc(kl + 5);
    if (!rel) return oom(m->z);
    memcpy(rel, "data/", 5);
    memcpy(rel + 5, m->p + key->u.s.off, kl);
    const zent *en = find_entry(m->z, rel, kl + 5);
    free(rel);
    if (!en) return vfail(m, KD_ERR_FORMAT, "storage key '%s' has no zip entry '%s/data/%s'", k, m->z->f->archive, k);
    uint64_t nbytes;
    if (!mul_u64((uint64_t)numel, dtypes[row].size, &nbytes) || en->usize != nbytes)
        return vfail(m, KD_ERR_FORMAT, "zip entry '%s' has %llu bytes but its storage of %lld %s elements needs %llu",
                     ename(en, nm, sizeof nm), (unsigned long long)en->usize, (long long)numel, dtype_label(row),
                     (unsigned long long)((uint64_t)numel * dtypes[row].size));
    size_t ei = (size_t)(en - m->z->ents);
    int32_t si = m->z->storage_of[ei];
    if (si >= 0) {
        if (m->st[si].row != row || m->st[si].numel != (uint64_t)numel)
            return vfail(m, KD_ERR_FORMAT, "storage '%s' appears as %s × %lld and as %s × %llu (torch never saves one storage with two types)",
                         k, dtype_label(m->st[si].row), (long long)m->st[si].numel, dtype_label(row), (unsigned long long)numel);
    } else {
        if (m->n_st == m->cap_st) {
            size_t cap = m->cap_st ? 2 * m->cap_st : 64;
            storage *s = realloc(m->st, cap * sizeof *s);
            if (!s) return oom(m->z);
            m->st = s;
            m->cap_st = cap;
        }
        si = (int32_t)m->n_st++;
        m->st[si] = (storage){.en = en, .row = row, .numel = (uint64_t)numel};
        m->z->storage_of[ei] = si;
    }
    m->sp--;
    uint32_t i = 0;
    KD_TRY(push_new(m, K_STORAGE, &i));
    m->objs[i].u.ref = (uint32_t)si;
    return KD_OK;
}

/* A value that can stand for "no flags": None, False, 0, or an empty or all-false dict. */
static int is_falsy(const vm *m, const obj *o) {
    switch (o->kind) {
    case K_NONE: return 1;
    case K_BOOL:
    case K_INT: return o->u.i == 0;
    case K_DICT:
        for (uint32_t k = 1; k < o->n; k += 2) {
            const obj *v = &m->objs[o->u.items[k]];
            if (!(v->kind == K_NONE || ((v->kind == K_BOOL || v->kind == K_INT) && v->u.i == 0))) return 0;
        }
        return 1;
    default: return 0;
    }
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) and
 * _rebuild_tensor_v3(..., hooks, dtype[, metadata]) → a tensor record (checked against its
 * storage once its name is known). */
static kd_status rebuild_tensor(vm *m, int v3, const obj *args) {
    const uint32_t *a = args->u.items;
    uint32_t n = args->n, base = v3 ? 7 : 6;
    const char *fn = v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2";
    if (n != base && n != base + 1)
        return vfail(m, KD_ERR_FORMAT, "%s takes %u or %u arguments, got %u", fn, base, base + 1, n);
    const obj *st = &m->objs[a[0]], *off = &m->objs[a[1]], *size = &m->objs[a[2]], *stride = &m->objs[a[3]],
              *rg = &m->objs[a[4]], *hooks = &m->objs[a[5]];
    if (st->kind != K_STORAGE || off->kind != K_INT || size->kind != K_TUPLE || stride->kind != K_TUPLE ||
        (rg->kind != K_BOOL && rg->kind != K_INT) || (hooks->kind != K_DICT && hooks->kind != K_NONE))
        return vfail(m, KD_ERR_FORMAT, "%s arguments are not (storage, int offset, size tuple, stride tuple, requires_grad, hooks dict)", fn);
    int row = m->st[st->u.ref].row;
    if (v3) {
        const obj *dt = &m->objs[a[6]];
        if (dt->kind != K_GLOBAL || dt->sub != G_DTYPE) return vfail(m, KD_ERR_FORMAT, "%s: argument 7 is not a torch dtype", fn);
        if (row != DT_UNTYPED)
            return vfail(m, KD_ERR_FORMAT, "%s needs an untyped storage, got torch.%s", fn, dtypes[row].storage);
        row = (int)dt->u.ref;
    }
    int neg_conj = n == base + 1 && !is_falsy(m, &m->objs[a[base]]);
    if (m->n_tens == m->cap_tens) {
        size_t cap = m->cap_tens ? 2 * m->cap_tens : 64;
        tensor_rec *t = realloc(m->tens, cap * sizeof *t);
        if (!t) return oom(m->z);
        m->tens = t;
        m->cap_tens = cap;
    }
    m->tens[m->n_tens] = (tensor_rec){.storage = st->u.ref, .offset = off->u.i, .size = a[2], .stride = a[3],
                                      .row = row, .neg_conj = neg_conj};
    uint32_t i = 0;
    KD_TRY(new_obj(m, K_TENSOR, &i));
    m->objs[i].u.ref = (uint32_t)m->n_tens++;
    return push(m, i);
}

static kd_status op_reduce(vm *m) {
    KD_TRY(need_stack(m, 2));
    if (is_opaque_global(&m->objs[m->stack[m->sp - 2]])) return opaque_call(m, 1);
    uint32_t fi = m->stack[m->sp - 2], ai = m->stack[m->sp - 1];
    const obj *fn = &m->objs[fi], *args = &m->objs[ai];
    if (fn->kind != K_GLOBAL) return vfail(m, KD_ERR_FORMAT, "calls %s, not an allowed function", kind_names[fn->kind]);
    if (args->kind != K_TUPLE) return vfail(m, KD_ERR_FORMAT, "arguments are %s, expected a tuple", kind_names[args->kind]);
    m->sp -= 2;
    switch (fn->sub) {
    case G_ORDERED_DICT:
        if (args->n) return vfail(m, KD_ERR_FORMAT, "collections.OrderedDict called with %u arguments, expected ()", args->n);
        return push_new(m, K_DICT, NULL);
    case G_REBUILD_V2: return rebuild_tensor(m, 0, args);
    case G_REBUILD_V3: return rebuild_tensor(m, 1, args);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE: {
        uint32_t want = fn->sub == G_REBUILD_PARAM ? 3 : 4;
        const uint32_t *a = args->u.items;
        if (args->n != want || m->objs[a[0]].kind != K_TENSOR ||
            (m->objs[a[1]].kind != K_BOOL && m->objs[a[1]].kind != K_INT) ||
            (m->objs[a[2]].kind != K_DICT && m->objs[a[2]].kind != K_NONE))
            return vfail(m, KD_ERR_FORMAT, "torch._utils.%s arguments are not (tensor, requires_grad, hooks dict%s)",
                         want == 3 ? "_rebuild_parameter" : "_rebuild_parameter_with_state", want == 3 ? "" : ", state");
        return push(m, a[0]); /* a Parameter is its tensor; requires_grad, hooks and state do not matter here */
    }
    default:
        return vfail(m, KD_ERR_FORMAT, "calls a torch %s, which only a persistent id or _rebuild_tensor_v3 may name",
                     fn->sub == G_DTYPE ? "dtype" : "storage type");
    }
}

static kd_status step(vm *m) {
    m->op_pos = m->pos;
    m->op = m->p[m->pos++];
    size_t at = 0;
    switch (m->op) {
    case 0x80: /* PROTO */
        KD_TRY(need_bytes(m, 1));
        if (m->p[m->pos] < 2 || m->p[m->pos] > 5)
            return vfail(m, KD_ERR_UNSUPPORTED, "pickle protocol %u (2 to 5 are supported)", m->p[m->pos]);
        m->pos++;
        return KD_OK;
    case 0x95: /* FRAME: a hint for buffered readers */
        KD_TRY(need_bytes(m, 8));
        if (rd64(m->p + m->pos) > m->n - m->pos - 8) return vfail(m, KD_ERR_FORMAT, "frame runs past the end of the pickle");
        m->pos += 8;
        return KD_OK;
    case '(':
        if (m->n_marks >= MAX_MARKS) return vfail(m, KD_ERR_FORMAT, "more than %u MARKs open (nesting too deep)", MAX_MARKS);
        m->marks[m->n_marks++] = m->sp;
        return KD_OK;
    case '}': return push_new(m, K_DICT, NULL);
    case ']': return push_new(m, K_LIST, NULL);
    case ')': return push_new(m, K_TUPLE, NULL);
    case 'N': return push(m, O_NONE);
    case 0x88: return push(m, O_TRUE);
    case 0x89: return push(m, O_FALSE);
    case 'K':
        KD_TRY(need_bytes(m, 1));
        m->pos++;
        return push_int(m, m->p[m->pos - 1]);
    case 'M':
        KD_TRY(need_bytes(m, 2));
        m->pos += 2;
        return push_int(m, rd16(m->p + m->pos - 2));
    case 'J':
        KD_TRY(need_bytes(m, 4));
        m->pos += 4;
        return push_int(m, (int32_t)rd32(m->p + m->pos - 4));
    case 0x8a: { /* LONG1: n-byte little-endian two's complement */
        KD_TRY(need_bytes(m, 1));
        size_t k = m->p[m->pos++];
        if (k > 8) return vfail(m, KD_ERR_FORMAT, "integer of %zu bytes does not fit in 64 bits", k);
        KD_TRY(need_bytes(m, k));
        uint64_t v = 0;
        for (size_t b = 0; b < k; b++) v |= (uint64_t)m->p[m->pos + b] << (8 * b);
        if (k && k < 8 && (m->p[m->pos + k - 1] & 0x80)) v |= ~UINT64_C(0) << (8 * k);
        m->pos += k;
        int64_t sv;
        memcpy(&sv, &v, sizeof sv);
        return push_int(m, sv);
    }
    case 'G': { /* BINFLOAT: big-endian double */
        KD_TRY(need_bytes(m, 8));
        uint64_t v = 0;
        for (int b = 0; b < 8; b++) v = v << 8 | m->p[m->pos + (size_t)b];
        m->pos += 8;
        uint32_t i = 0;
        KD_TRY(push_new(m, K_FLOAT, &i));
        memcpy(&m->objs[i].u.f, &v, sizeof v);
        return KD_OK;
    }
    case 'X':
        KD_TRY(need_bytes(m, 4));
        m->pos += 4;
        return read_string(m, rd32(m->p + m->pos - 4));
    case 0x8c:
        KD_TRY(need_bytes(m, 1));
        m->pos++;
        return read_string(m, m->p[m->pos - 1]);
    case 0x8d: {
        KD_TRY(need_bytes(m, 8));
        uint64_t len = rd64(m->p + m->pos);
        m->pos += 8;
        if (len > MAX_STRING) return vfail(m, KD_ERR_FORMAT, "string of %llu bytes (limit %u)", (unsigned long long)len, MAX_STRING);
        return read_string(m, (size_t)len);
    }
    case 't': KD_TRY(pop_mark(m, &at)); return collect(m, K_TUPLE, at);
    case 'l': KD_TRY(pop_mark(m, &at)); return collect(m, K_LIST, at);
    case 0x85:
    case 0x86:
    case 0x87: {
        size_t k = (size_t)(m->op - 0x84);
        KD_TRY(need_stack(m, k));
        return collect(m, K_TUPLE, m->sp - k);
    }
    case 'd':
        KD_TRY(pop_mark(m, &at));
        if ((m->sp - at) % 2) return vfail(m, KD_ERR_FORMAT, "odd number of values (%zu) for keys and values", m->sp - at);
        return collect(m, K_DICT, at);
    case 'a':
    case 's': { /* APPEND v / SETITEM k v */
        size_t k = m->op == 'a' ? 1 : 2;
        KD_TRY(need_stack(m, k + 1));
        uint32_t c = m->stack[m->sp - k - 1];
        uint8_t want = m->op == 'a' ? K_LIST : K_DICT;
        if (m->objs[c].kind != want)
            return vfail(m, KD_ERR_FORMAT, "target is %s, expected %s", kind_names[m->objs[c].kind], kind_names[want]);
        KD_TRY(add_items(m, c, m->stack + m->sp - k, k));
        m->sp -= k;
        return KD_OK;
    }
    case 'e':
    case 'u': { /* APPENDS / SETITEMS: values above the MARK go into the container below it */
        KD_TRY(pop_mark(m, &at));
        uint8_t want = m->op == 'e' ? K_LIST : K_DICT;
        size_t below = m->n_marks ? m->marks[m->n_marks - 1] : 0;
        if (at <= below) return vfail(m, KD_ERR_FORMAT, "no container below the MARK");
        uint32_t c = m->stack[at - 1];
        if (m->objs[c].kind != want)
            return vfail(m, KD_ERR_FORMAT, "target is %s, expected %s", kind_names[m->objs[c].kind], kind_names[want]);
        if (want == K_DICT && (m->sp - at) % 2)
            return vfail(m, KD_ERR_FORMAT, "odd number of values (%zu) for keys and values", m->sp - at);
        KD_TRY(add_items(m, c, m->stack + at, m->sp - at));
        m->sp = at;
        return KD_OK;
    }
    case 'q':
        KD_TRY(need_bytes(m, 1));
        m->pos++;
        return memo_put(m, m->p[m->pos - 1]);
    case 'r':
        KD_TRY(need_bytes(m, 4));
        m->pos += 4;
        return memo_put(m, rd32(m->p + m->pos - 4));
    case 0x94: return memo_put(m, m->n_memo);
    case 'h':
        KD_TRY(need_bytes(m, 1));
        m->pos++;
        return memo_get(m, m->p[m->pos - 1]);
    case 'j':
        KD_TRY(need_bytes(m, 4));
        m->pos += 4;
        return memo_get(m, rd32(m->p + m->pos - 4));
    case 0x81: /* NEWOBJ cls args / NEWOBJ_EX cls args kwargs: only of a placeholder */
    case 0x92: {
        size_t k = m->op == 0x81 ? 1 : 2;
        KD_TRY(need_stack(m, k + 1));
        if (is_opaque_global(&m->objs[m->stack[m->sp - k - 1]])) return opaque_call(m, k);
        return vfail(m, KD_ERR_FORMAT, "instantiates %s (only objects the reader does not build may be)",
                     kind_names[m->objs[m->stack[m->sp - k - 1]].kind]);
    }
    case 0x8f: { /* EMPTY_SET */
        uint32_t i = 0;
        KD_TRY(push_new(m, K_OPAQUE, &i));
        m->objs[i].sub = OPQ_SET;
        return KD_OK;
    }
    case 0x90: { /* ADDITEMS: the values above the MARK are dropped into the set below it */
        KD_TRY(pop_mark(m, &at));
        size_t below = m->n_marks ? m->marks[m->n_marks - 1] : 0;
        if (at <= below) return vfail(m, KD_ERR_FORMAT, "no set below the MARK");
        const obj *c = &m->objs[m->stack[at - 1]];
        if (c->kind != K_OPAQUE || c->sub != OPQ_SET)
            return vfail(m, KD_ERR_FORMAT, "target is %s, expected a set", kind_names[c->kind]);
        m->sp = at;
        return KD_OK;
    }
    case 0x91: { /* FROZENSET */
        KD_TRY(pop_mark(m, &at));
        m->sp = at;
        uint32_t i = 0;
        KD_TRY(push_new(m, K_OPAQUE, &i));
        m->objs[i].sub = OPQ_SET;
        return KD_OK;
    }
    case 'C':  /* SHORT_BINBYTES, BINBYTES, BINBYTES8: skipped */
    case 'B':
    case 0x8e: {
        size_t w = m->op == 'C' ? 1 : m->op == 'B' ? 4 : 8;
        KD_TRY(need_bytes(m, w));
        uint64_t len = w == 1 ? m->p[m->pos] : w == 4 ? rd32(m->p + m->pos) : rd64(m->p + m->pos);
        m->pos += w;
        if (len > m->n - m->pos) return vfail(m, KD_ERR_FORMAT, "bytes of %llu run past the end of the pickle",
                                              (unsigned long long)len);
        m->pos += (size_t)len;
        uint32_t i = 0;
        KD_TRY(push_new(m, K_OPAQUE, &i));
        m->objs[i].sub = OPQ_BYTES;
        return KD_OK;
    }
    case '0': /* POP */
        KD_TRY(need_stack(m, 1));
        m->sp--;
        return KD_OK;
    case '1': /* POP_MARK */
        KD_TRY(pop_mark(m, &at));
        m->sp = at;
        return KD_OK;
    case 'c': return op_global(m);
    case 0x93: return op_stack_global(m);
    case 'R': return op_reduce(m);
    case 'Q': return op_persid(m);
    case 'b': { /* BUILD: a dict's __dict__ (state_dict()._metadata) or a placeholder's state, ignored */
        KD_TRY(need_stack(m, 2));
        const obj *target = &m->objs[m->stack[m->sp - 2]];
        if (target->kind != K_DICT && target->kind != K_OPAQUE)
            return vfail(m, KD_ERR_FORMAT, "sets the state of %s (only a dict's attributes are accepted)", kind_names[target->kind]);
        m->sp--;
        return KD_OK;
    }
    default: {
        const char *on = op_name(m->op);
        if (on) return vfail(m, KD_ERR_FORMAT, "opcode %s is not allowed in a state dict", on);
        return vfail(m, KD_ERR_FORMAT, "unknown opcode 0x%02x", m->op);
    }
    }
}

static void vm_free(vm *m) {
    for (size_t i = 0; i < m->n_objs; i++)
        if (m->objs[i].kind == K_TUPLE || m->objs[i].kind == K_LIST || m->objs[i].kind == K_DICT) free(m->objs[i].u.items);
    free(m->objs);
    free(m->stack);
    free(m->memo);
    free(m->st);
    free(m->tens);
}

/* Runs the pickle to STOP; *result = the object it returns. */
static kd_status run_pickle(vm *m, uint32_t *result) {
    uint32_t i;
    KD_TRY(new_obj(m, K_NONE, &i));
    KD_TRY(new_obj(m, K_BOOL, &i));
    m->objs[O_TRUE].u.i = 1;
    KD_TRY(new_obj(m, K_BOOL, &i));
    while (m->pos < m->n) {
        if (m->p[m->pos] == '.') {
            m->op_pos = m->pos;
            m->op = '.';
            m->pos++;
            if (m->n_marks) return vfail(m, KD_ERR_FORMAT, "%zu MARKs still open", m->n_marks);
            if (m->sp != 1) return vfail(m, KD_ERR_FORMAT, "%zu values on the stack, expected exactly the result", m->sp);
            if (m->pos != m->n) return vfail(m, KD_ERR_FORMAT, "%zu bytes follow STOP", m->n - m->pos);
            *result = m->stack[0];
            return KD_OK;
        }
        KD_TRY(step(m));
    }
    m->op_pos = m->pos;
    m->op = 0;
    return kd_errf(m->z->e, KD_ERR_FORMAT, "%s: %s: ends after %zu bytes without STOP (truncated)", m->z->path, m->pkl, m->n);
}

/* ---- tensors ------------------------------------------------------------------------------- */

static kd_status storage_data(vm *m, storage *s) {
    if (!s->data) KD_TRY(entry_bytes(m->z, s->en, 0, &s->data));
    return KD_OK;
}

/* Copies the strided view into dst (contiguous, row-major): an odometer over all but the last
 * dim, the last dim as a run of elements. */
static void gather(uint8_t *dst, const uint8_t *src, const int64_t *size, const int64_t *stride, int ndim, size_t es) {
    if (ndim == 0) {
        memcpy(dst, src, es);
        return;
    }
    int64_t idx[KD_MAX_DIMS] = {0};
    uint64_t inner = (uint64_t)size[ndim - 1], st = (uint64_t)stride[ndim - 1];
    for (;;) {
        uint64_t off = 0;
        for (int d = 0; d < ndim - 1; d++) off += (uint64_t)idx[d] * (uint64_t)stride[d];
        const uint8_t *s = src + off * es;
        if (st == 1) {
            memcpy(dst, s, (size_t)(inner * es));
            dst += inner * es;
        } else {
            for (uint64_t k = 0; k < inner; k++, dst += es) memcpy(dst, s + k * st * es, es);
        }
        int d = ndim - 2;
        while (d >= 0 && ++idx[d] == size[d]) idx[d--] = 0;
        if (d < 0) return;
    }
}

/* Checks tensor rec against its storage and fills t (a view or a copy). */
static kd_status make_tensor(vm *m, const char *name, const tensor_rec *r, kd_st_tensor *t, unsigned char *copied) {
    tz *z = m->z;
    storage *s = &m->st[r->storage];
    const tdtype *dt = &dtypes[r->row];
    char nm[128];
    const char *ent = ename(s->en, nm, sizeof nm);
    if (dt->kd < 0)
        return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported (only float32, float16, bfloat16, int64)",
                       z->path, name, dtype_label(r->row));
    if (r->neg_conj)
        return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: tensor '%s' is saved with the negative or conjugate bit set (not supported)",
                       z->path, name);
    const obj *size = &m->objs[r->size], *stride = &m->objs[r->stride];
    if (size->n > KD_MAX_DIMS)
        return kd_errf(z->e, KD_ERR_UNSUPPORTED, "%s: tensor '%s': %u dimensions, at most %d are supported", z->path, name,
                       size->n, KD_MAX_DIMS);
    if (stride->n != size->n)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: tensor '%s': size has %u dimensions but stride has %u", z->path, name, size->n,
                       stride->n);
    int ndim = (int)size->n;
    int64_t sz[KD_MAX_DIMS], sd[KD_MAX_DIMS];
    uint64_t numel = 1, extent = 0; /* extent: offset of the last element from the first */
    for (int d = 0; d < ndim; d++) {
        const obj *a = &m->objs[size->u.items[d]], *b = &m->objs[stride->u.items[d]];
        if (a->kind != K_INT || b->kind != K_INT || a->u.i < 0 || b->u.i < 0)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: tensor '%s': size[%d] and stride[%d] must be non-negative integers", z->path,
                           name, d, d);
        sz[d] = a->u.i;
        sd[d] = b->u.i;
        uint64_t span;
        if (!mul_u64(numel, (uint64_t)sz[d], &numel) || numel > (uint64_t)INT64_MAX / 16)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: tensor '%s': element count overflows", z->path, name);
        if (sz[d] && (!mul_u64((uint64_t)(sz[d] - 1), (uint64_t)sd[d], &span) || !add_u64(extent, span, &extent)))
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: tensor '%s': stride %lld × size %lld overflows", z->path, name,
                           (long long)sd[d], (long long)sz[d]);
    }
    if (r->offset < 0)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: tensor '%s': negative storage offset %lld", z->path, name, (long long)r->offset);
    uint64_t off = (uint64_t)r->offset, last;
    size_t es = dt->size;
    /* In elements of the tensor's dtype (v3 storages are bytes). */
    uint64_t st_numel = r->row == s->row ? s->numel : s->numel * dtypes[s->row].size / es;
    if (numel == 0) {
        if (off > st_numel)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: tensor '%s': storage offset %llu is beyond the end of storage '%s' (%llu elements)",
                           z->path, name, (unsigned long long)off, ent, (unsigned long long)st_numel);
    } else if (!add_u64(off, extent, &last) || last >= st_numel) {
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: tensor '%s': storage offset %llu + extent %llu reaches element %llu but storage '%s' has %llu elements",
                       z->path, name, (unsigned long long)off, (unsigned long long)extent,
                       add_u64(off, extent, &last) ? (unsigned long long)last : ~0ull, ent, (unsigned long long)st_numel);
    }
    t->t.dtype = (kd_dtype)dt->kd;
    t->t.ndim = ndim;
    memcpy(t->t.shape, sz, (size_t)ndim * sizeof *sz);
    t->nbytes = numel * es;
    if (!numel) { /* never read; non-NULL (an empty tensor is not "absent") and aligned */
        static const uint64_t no_data[2];
        t->t.data = (void *)no_data;
        return KD_OK;
    }
    KD_TRY(storage_data(m, s));
    /* off + extent < st_numel: the whole view lies in the storage */
    const uint8_t *src = s->data + off * es;
    int contiguous = 1;
    int64_t expect = 1; /* product of later sizes <= numel: no overflow */
    for (int d = ndim - 1; d >= 0; d--) {
        if (sz[d] != 1 && sd[d] != expect) contiguous = 0;
        expect *= sz[d];
    }
    if (contiguous && (uintptr_t)src % es == 0) {
        t->t.data = (void *)src;
        if (s->en->method == 0) t->offset = (uint64_t)(src - z->buf);
        else *copied = 1; /* inside an inflated buffer the file already owns */
        return KD_OK;
    }
    char what[300];
    snprintf(what, sizeof what, "copying tensor '%.200s' (%s)", name, contiguous ? "misaligned" : "strided view");
    KD_TRY(charge(z, &z->copied_bytes, z->max_copied, t->nbytes, what));
    uint8_t *dst = malloc((size_t)t->nbytes);
    if (!dst) return oom(z);
    if (contiguous) memcpy(dst, src, (size_t)t->nbytes); /* misaligned start */
    else gather(dst, src, sz, sd, ndim, es);
    KD_TRY(keep_owned(z, dst));
    t->t.data = dst;
    *copied = 1;
    return KD_OK;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const kd_st_tensor *const *)a)->name, (*(const kd_st_tensor *const *)b)->name);
}

/* The pickle's result: a dict of unique names to tensors. */
/* A PyTorch Lightning checkpoint ({"epoch": .., "global_step": .., "state_dict": {..},
 * "optimizer_states": [..], "callbacks": {..}, ...}) holds the weights under "state_dict"; its other
 * entries are skipped (they were parsed as data, placeholders for anything else, never built). A
 * dict all of whose values are tensors is a state dict itself, whatever its keys. */
static const obj *lightning_state_dict(const vm *m, const obj *d) {
    const obj *sd = NULL;
    int all_tensors = 1;
    for (uint32_t i = 0; i + 1 < d->n; i += 2) {
        const obj *k = &m->objs[d->u.items[i]], *v = &m->objs[d->u.items[i + 1]];
        if (v->kind != K_TENSOR) all_tensors = 0;
        if (str_is(m, k, "state_dict") && v->kind == K_DICT) sd = v;
    }
    return sd && !all_tensors ? sd : d;
}

static kd_status build_tensors(vm *m, uint32_t result) {
    tz *z = m->z;
    kd_tz_file *f = z->f;
    char g[300];
    const obj *d = &m->objs[result];
    if (d->kind == K_OPAQUE)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s: %s is not allowed (never called) where a state dict is expected",
                       z->path, m->pkl, opaque_name(m, d, g, sizeof g));
    if (d->kind != K_DICT)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s holds %s, expected a state dict (a dict of names to tensors)", z->path, m->pkl,
                       kind_names[d->kind]);
    d = lightning_state_dict(m, d);
    size_t n = d->n / 2;
    f->st.tensors = calloc(n ? n : 1, sizeof *f->st.tensors);
    f->copied = calloc(n ? n : 1, 1);
    if (!f->st.tensors || !f->copied) return oom(z);
    for (size_t i = 0; i < n; i++) {
        const obj *k = &m->objs[d->u.items[2 * i]], *v = &m->objs[d->u.items[2 * i + 1]];
        if (k->kind != K_STR)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s: key %zu of the state dict is %s, expected a string", z->path, m->pkl, i,
                           kind_names[k->kind]);
        const uint8_t *kp = m->p + k->u.s.off;
        char nm[128];
        if (memchr(kp, 0, k->u.s.len))
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s: state dict key '%s' contains a NUL character", z->path, m->pkl,
                           shown(kp, k->u.s.len, nm, sizeof nm));
        kd_st_tensor *t = &f->st.tensors[f->st.n_tensors];
        t->name = malloc((size_t)k->u.s.len + 1);
        if (!t->name) return oom(z);
        memcpy(t->name, kp, k->u.s.len);
        t->name[k->u.s.len] = '\0';
        f->st.n_tensors++;
        if (v->kind == K_OPAQUE)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s: '%s': %s is not allowed (never called) where a tensor is expected",
                           z->path, m->pkl, t->name, opaque_name(m, v, g, sizeof g));
        if (v->kind != K_TENSOR)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s: '%s' is %s, expected a tensor", z->path, m->pkl, t->name,
                           kind_names[v->kind]);
        KD_TRY(make_tensor(m, t->name, &m->tens[v->u.ref], t, &f->copied[i]));
    }
    kd_st_tensor **idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return oom(z);
    for (size_t i = 0; i < n; i++) idx[i] = &f->st.tensors[i];
    qsort(idx, n, sizeof *idx, cmp_tensor_name);
    f->st.index = idx;
    for (size_t i = 1; i < n; i++)
        if (strcmp(idx[i - 1]->name, idx[i]->name) == 0)
            return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s: duplicate tensor name '%s'", z->path, m->pkl, idx[i]->name);
    return KD_OK;
}

/* ---- public -------------------------------------------------------------------------------- */

int kd_tz_is_zip(const uint8_t *buf, uint64_t size) {
    return buf && size >= 4 && buf[0] == 'P' && buf[1] == 'K' &&
           ((buf[2] == 3 && buf[3] == 4) || (buf[2] == 5 && buf[3] == 6));
}

static int memmem_lfs(const uint8_t *buf, uint64_t size) {
    static const char tag[] = "git-lfs";
    for (uint64_t i = 0; i + sizeof tag - 1 <= size; i++)
        if (memcmp(buf + i, tag, sizeof tag - 1) == 0) return 1;
    return 0;
}

/* Not a zip: say what it looks like. Every message says "not supported yet": these may be
 * accepted one day (the legacy pickle format is a sequence of pickles plus raw storages). */
static kd_status not_zip(const char *path, const uint8_t *buf, uint64_t size, kd_err *e) {
    if (size >= 2 && buf[0] == 0x80 && buf[1] >= 2)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: not a zip archive but a bare pickle (torch.save before 1.6, or _use_new_zipfile_serialization=False): "
                                              "legacy PyTorch pickles are not supported yet; re-save it with torch >= 1.6 or convert it to safetensors",
                       path);
    if (size >= 8 && memcmp(buf, "version ", 8) == 0 && size < 1024 && memmem_lfs(buf, size))
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: a Git LFS pointer, not the weights (fetch them with git lfs pull); PyTorch pickles are read only "
                                              "from torch.save zip archives", path);
    if (size >= 262 && memcmp(buf + 257, "ustar", 5) == 0)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: a tar archive (the torch.save format before 0.4.1): legacy PyTorch pickles are not supported yet; "
                                              "re-save it with torch >= 1.6 or convert it to safetensors", path);
    return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: not a zip archive (torch.save's format since 1.6) and not recognised; legacy PyTorch pickles are "
                                          "not supported yet", path);
}

static kd_status parse_into(tz *z) {
    KD_TRY(read_zip(z));
    z->storage_of = malloc(z->n_ents * sizeof *z->storage_of);
    if (!z->storage_of) return oom(z);
    for (size_t i = 0; i < z->n_ents; i++) z->storage_of[i] = -1;
    KD_TRY(read_records(z));
    const zent *pk = find_entry_str(z, "data.pkl");
    if (!pk) return kd_errf(z->e, KD_ERR_FORMAT, "%s: no '%s/data.pkl' entry (not a torch.save archive?)", z->path, z->f->archive);
    vm m;
    memset(&m, 0, sizeof m);
    m.z = z;
    snprintf(m.pkl, sizeof m.pkl, "%.200s/data.pkl", z->f->archive);
    if (pk->usize > z->max_pickle)
        return kd_errf(z->e, KD_ERR_FORMAT, "%s: %s has %llu bytes, more than the limit of %llu for a state dict's pickle", z->path,
                       m.pkl, (unsigned long long)pk->usize, (unsigned long long)z->max_pickle);
    uint8_t *inflated = NULL; /* a deflated pickle is needed only while the VM runs */
    if (pk->method == 0) {
        m.p = z->buf + pk->data;
        KD_TRY(check_crc(z, pk, m.p, pk->usize));
    } else {
        KD_TRY(inflate_entry(z, pk, &inflated));
        m.p = inflated;
    }
    m.n = (size_t)pk->usize;
    uint32_t result = 0;
    kd_status s = run_pickle(&m, &result);
    if (s == KD_OK) s = build_tensors(&m, result);
    vm_free(&m);
    if (inflated) {
        free(inflated);
        z->inflated_bytes -= pk->usize;
        z->f->owned_bytes -= pk->usize;
    }
    return s;
}

kd_status kd_tz_parse(const uint8_t *buf, uint64_t size, const char *name, const kd_tz_limits *lim, kd_tz_file **out,
                      kd_err *e) {
    if (!out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_tz_parse: NULL out");
    *out = NULL;
    if (!buf && size) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_tz_parse: NULL buffer");
    static const uint8_t empty[1];
    if (!buf) buf = empty;
    if (!name) name = "<memory>";
    if (!kd_tz_is_zip(buf, size)) return not_zip(name, buf, size, e);
    kd_tz_file *f = calloc(1, sizeof *f);
    tz_priv *pv = calloc(1, sizeof *pv);
    if (f) f->priv = pv;
    if (!f || !pv || !(f->st.path = dupstr(name))) {
        kd_tz_close(f);
        if (!f) free(pv);
        return kd_errf(e, KD_ERR_OOM, "out of memory");
    }
    f->st.base = buf;
    f->st.size = size;
    tz z;
    memset(&z, 0, sizeof z);
    z.f = f;
    z.priv = pv;
    z.e = e;
    z.path = f->st.path;
    z.buf = buf;
    z.size = size;
    z.max_pickle = lim && lim->max_pickle ? lim->max_pickle : KD_TZ_MAX_PICKLE;
    if (z.max_pickle > (UINT64_C(1) << 31)) z.max_pickle = UINT64_C(1) << 31; /* string offsets are 32-bit */
    z.max_inflated = lim && lim->max_inflated ? lim->max_inflated : KD_TZ_MAX_INFLATED;
    /* Copies of views are normally at most the file's size; a view that repeats its storage
     * (stride 0) could otherwise turn a small file into an allocation of any size. */
    if (lim && lim->max_copied) z.max_copied = lim->max_copied;
    else if (!mul_u64(size, 2, &z.max_copied) || !add_u64(z.max_copied, KD_TZ_COPY_SLACK, &z.max_copied))
        z.max_copied = UINT64_MAX;
    kd_status s = parse_into(&z);
    free(z.ents);
    free(z.by_name);
    free(z.storage_of);
    if (s != KD_OK) {
        kd_tz_close(f);
        return s;
    }
    *out = f;
    return KD_OK;
}

kd_status kd_tz_open(const char *path, kd_tz_file **out, kd_err *e) {
    if (!out || !path) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_tz_open: NULL argument");
    *out = NULL;
    int fd;
    uint64_t size;
    KD_TRY(kd_open_regular(path, &fd, &size, e));
    if (size < 22) { /* no zip is shorter; also avoids mmap of 0 bytes */
        uint8_t head[262] = {0};
        ssize_t got = size ? read(fd, head, (size_t)size) : 0;
        close(fd);
        if (got == (ssize_t)size && kd_tz_is_zip(head, size))
            return kd_errf(e, KD_ERR_FORMAT, "%s: %llu bytes, too short for a zip end record (truncated file?)", path,
                           (unsigned long long)size);
        return not_zip(path, head, got > 0 ? (uint64_t)got : 0, e);
    }
    void *map;
    KD_TRY(kd_map_fd(path, fd, size, &map, e));
    kd_status s = kd_tz_parse(map, size, path, NULL, out, e);
    if (s == KD_OK) ((tz_priv *)(*out)->priv)->mapped = 1;
    else munmap(map, (size_t)size);
    return s;
}

void kd_tz_close(kd_tz_file *f) {
    if (!f) return;
    tz_priv *pv = f->priv;
    for (size_t i = 0; i < f->st.n_tensors; i++) free(f->st.tensors[i].name);
    free(f->st.tensors);
    free(f->st.index);
    free(f->copied);
    free(f->archive);
    if (pv) {
        for (size_t i = 0; i < pv->n_owned; i++) free(pv->owned[i]);
        free(pv->owned);
        if (pv->mapped) munmap((void *)f->st.base, (size_t)f->st.size);
        free(pv);
    }
    free(f->st.path);
    free(f);
}

const kd_st_tensor *kd_tz_find(const kd_tz_file *f, const char *name) { return f ? kd_st_find(&f->st, name) : NULL; }
