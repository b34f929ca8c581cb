/* Weight sets: single safetensors files and sharded checkpoints behind one sorted lookup. */
#define _DEFAULT_SOURCE /* madvise */
#include "io/weights.h"

#include "io/torch_zip.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct wentry {
    const kd_st_tensor *t;
    size_t file;   /* index into files */
    int used;
    float *f32;    /* converted copy, made on demand */
    int8_t *q8;    /* q8_0 copy (kd_weights_quantize_q8), with its scales */
    uint16_t *q8_scale;
} wentry;

struct kd_weights {
    char *path;
    kd_st_file **files;   /* a torch .bin file appears as its kd_st_file view (tz[i]->st) */
    kd_tz_file **tz;      /* per file: the torch zip reader behind it, or NULL for safetensors */
    size_t n_files;
    wentry *ents;  /* sorted by name */
    size_t n;
    kd_config index; /* root == NULL unless sharded */
    int want_q8;     /* kd_weights_set_q8 */
    kd_st_tensor **derived; /* kd_weights_derive's tensors (name, and data when gathered), owned */
    size_t n_derived;
};

/* Names tried in a component folder, in order (diffusers' own order, then its fp16 variant);
 * safetensors first, as diffusers prefers them, then PyTorch's torch.save zip files. */
static const char *const weight_names[] = {
    "diffusion_pytorch_model.safetensors",      "model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json", "model.safetensors.index.json",
    "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.safetensors.index.json", "model.fp16.safetensors.index.json",
    "diffusion_pytorch_model.bin", "pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json", "pytorch_model.bin.index.json",
    "diffusion_pytorch_model.fp16.bin", "pytorch_model.fp16.bin",
    "diffusion_pytorch_model.fp16.bin.index.json", "pytorch_model.fp16.bin.index.json", NULL};

/* ---- small helpers ----------------------------------------------------------------------- */

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *join_path(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    int slash = a && dir[a - 1] != '/';
    char *p = malloc(a + (size_t)slash + b + 1);
    if (!p) return NULL;
    memcpy(p, dir, a);
    if (slash) p[a] = '/';
    memcpy(p + a + slash, name, b + 1);
    return p;
}

/* Folder part of a file path ("." if none). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return dupstr(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Files read by the torch.save zip reader (everything else is read as safetensors). */
static int is_torch_path(const char *path) {
    return ends_with(path, ".bin") || ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".ckpt");
}

static int is_regular_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const wentry *)a)->t->name, ((const wentry *)b)->t->name);
}

static int cmp_key_entry(const void *key, const void *elem) {
    return strcmp((const char *)key, ((const wentry *)elem)->t->name);
}

static wentry *find_entry(const kd_weights *w, const char *name) {
    if (!w || !name || !w->n) return NULL;
    return bsearch(name, w->ents, w->n, sizeof *w->ents, cmp_key_entry);
}

/* ---- building the lookup ----------------------------------------------------------------- */

/* Takes f (a safetensors file) or t (a torch zip file): exactly one is set. */
static kd_status add_file(kd_weights *w, kd_st_file *f, kd_tz_file *t, kd_err *e) {
    kd_st_file **files = realloc(w->files, (w->n_files + 1) * sizeof *files);
    if (files) w->files = files;
    kd_tz_file **tz = files ? realloc(w->tz, (w->n_files + 1) * sizeof *tz) : NULL;
    if (tz) w->tz = tz;
    if (!files || !tz) {
        kd_st_close(f);
        kd_tz_close(t);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", w->path);
    }
    w->files[w->n_files] = t ? &t->st : f;
    w->tz[w->n_files] = t;
    w->n_files++;
    return KD_OK;
}

/* One weights file of either kind, by its extension. */
static kd_status open_file(kd_weights *w, const char *path, kd_err *e) {
    if (is_torch_path(path)) {
        kd_tz_file *t = NULL;
        KD_TRY(kd_tz_open(path, &t, e));
        return add_file(w, NULL, t, e);
    }
    kd_st_file *f = NULL;
    KD_TRY(kd_st_open(path, &f, e));
    return add_file(w, f, NULL, e);
}

/* Collects every tensor of every file and sorts; a name in two files is an error. */
static kd_status build_entries(kd_weights *w, kd_err *e) {
    size_t n = 0;
    for (size_t i = 0; i < w->n_files; i++) n += w->files[i]->n_tensors;
    w->ents = calloc(n ? n : 1, sizeof *w->ents);
    if (!w->ents) return kd_errf(e, KD_ERR_OOM, "%s: out of memory for %zu tensors", w->path, n);
    for (size_t i = 0; i < w->n_files; i++) {
        for (size_t k = 0; k < w->files[i]->n_tensors; k++) {
            w->ents[w->n].t = &w->files[i]->tensors[k];
            w->ents[w->n].file = i;
            w->n++;
        }
    }
    qsort(w->ents, w->n, sizeof *w->ents, cmp_entry);
    for (size_t i = 1; i < w->n; i++) {
        const wentry *a = &w->ents[i - 1], *b = &w->ents[i];
        if (strcmp(a->t->name, b->t->name) == 0)
            return kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s' is in two shards: %s and %s", w->path, a->t->name,
                           w->files[a->file]->path, w->files[b->file]->path);
    }
    return KD_OK;
}

static kd_status open_single(kd_weights *w, kd_err *e) {
    KD_TRY(open_file(w, w->path, e));
    return build_entries(w, e);
}

/* What makes a shard name unsafe or useless, or NULL: shards must be files inside the index's
 * folder. */
static const char *shard_problem(const char *s) {
    if (!*s) return "is empty";
    if (s[0] == '/') return "is an absolute path";
    if (strchr(s, '\\')) return "contains a backslash";
    if (s[strlen(s) - 1] == '/') return "names a folder";
    int has_name = 0;
    for (const char *p = s; *p;) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') return "has a '..' component";
        if (len && !(len == 1 && p[0] == '.')) has_name = 1;
        p += len + (slash != NULL);
    }
    return has_name ? NULL : "names no file";
}

/* Rewrites a safe shard name in place to its canonical form (no "." components, no repeated
 * '/'), so "./a.safetensors" and "a.safetensors" are one shard, opened once. */
static void normalize_shard(char *s) {
    char *dst = s;
    for (char *p = s; *p;) {
        char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len && !(len == 1 && p[0] == '.')) {
            if (dst != s) *dst++ = '/';
            memmove(dst, p, len);
            dst += len;
        }
        p += len + (slash != NULL);
    }
    *dst = '\0';
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* weight_map → sorted distinct shard names (pointers into the index tree). */
static kd_status collect_shards(const kd_weights *w, cJSON *map, const char ***out, size_t *n_out, kd_err *e) {
    size_t n = (size_t)cJSON_GetArraySize(map), k = 0;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", w->path);
    for (cJSON *c = map->child; c; c = c->next) {
        const char *why = cJSON_IsString(c) ? shard_problem(c->valuestring) : NULL;
        if (!cJSON_IsString(c) || why) {
            kd_status s = !cJSON_IsString(c)
                ? kd_errf(e, KD_ERR_FORMAT, "%s: weight_map value of '%s' is %s, expected a shard file name", w->path,
                          c->string, kd_json_kind(c))
                : kd_errf(e, KD_ERR_FORMAT, "%s: shard '%s' of tensor '%s' %s; shards must be files inside the model folder",
                          w->path, c->valuestring, c->string, why);
            free(names);
            return s;
        }
        normalize_shard(c->valuestring);
        names[k++] = c->valuestring;
    }
    qsort(names, k, sizeof *names, cmp_cstr);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (!u || strcmp(names[u - 1], names[i]) != 0) names[u++] = names[i];
    *out = names;
    *n_out = u;
    return KD_OK;
}

static kd_status open_shards(kd_weights *w, const char *const *shards, size_t n, kd_err *e) {
    char *dir = dir_of(w->path);
    if (!dir) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", w->path);
    kd_status s = KD_OK;
    for (size_t i = 0; i < n && s == KD_OK; i++) {
        char *p = join_path(dir, shards[i]);
        s = p ? open_file(w, p, e) : kd_errf(e, KD_ERR_OOM, "%s: out of memory", w->path);
        if (s != KD_OK && p) kd_err_prefix(e, "%s: shard '%s'", w->path, shards[i]);
        free(p);
    }
    free(dir);
    return s;
}

/* Every weight_map entry must be in the shard it names (files[i] was opened from shards[i]). */
static kd_status check_map(const kd_weights *w, const cJSON *map, const char *const *shards, size_t n_shards,
                           kd_err *e) {
    for (const cJSON *c = map->child; c; c = c->next) {
        const char *const *sh = bsearch(&c->valuestring, shards, n_shards, sizeof *shards, cmp_cstr);
        const wentry *en = find_entry(w, c->string);
        if (!sh || !en || en->file != (size_t)(sh - shards))
            return kd_errf(e, KD_ERR_FORMAT, "%s: weight_map puts tensor '%s' in shard '%s' but that shard does not contain it",
                           w->path, c->string, c->valuestring);
    }
    return KD_OK;
}

static kd_status open_index(kd_weights *w, kd_err *e) {
    KD_TRY(kd_config_load(w->path, &w->index, e));
    /* Not kd_config_get: shard names are normalized in place in this tree, which w owns. */
    cJSON *map = cJSON_GetObjectItemCaseSensitive(w->index.root, "weight_map");
    if (!map) return kd_errf(e, KD_ERR_FORMAT, "%s: no \"weight_map\" in the index", w->path);
    if (!cJSON_IsObject(map))
        return kd_errf(e, KD_ERR_FORMAT, "%s: \"weight_map\" is %s, expected an object", w->path, kd_json_kind(map));
    const char **shards = NULL;
    size_t n_shards = 0;
    KD_TRY(collect_shards(w, map, &shards, &n_shards, e));
    kd_status s = open_shards(w, shards, n_shards, e);
    if (s == KD_OK) s = build_entries(w, e);
    if (s == KD_OK) s = check_map(w, map, shards, n_shards, e);
    free(shards);
    return s;
}

/* ---- opening ----------------------------------------------------------------------------- */

kd_status kd_weights_locate(const char *dir, char **out, kd_err *e) {
    if (!dir || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_weights_locate: NULL argument");
    *out = NULL;
    for (int i = 0; weight_names[i]; i++) {
        char *p = join_path(dir, weight_names[i]);
        if (!p) return kd_errf(e, KD_ERR_OOM, "out of memory");
        if (is_regular_file(p)) {
            *out = p;
            return KD_OK;
        }
        free(p);
    }
    return kd_errf(e, KD_ERR_NOT_FOUND, "%s: no weights found (looked for diffusion_pytorch_model.safetensors, model.safetensors, their .bin "
                                        "(torch.save) forms and their .index.json)",
                   dir);
}

static kd_status open_path(kd_weights *w, const char *path, kd_err *e) {
    struct stat st;
    if (stat(path, &st) != 0)
        return kd_errf(e, errno == ENOENT ? KD_ERR_NOT_FOUND : KD_ERR_IO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) KD_TRY(kd_weights_locate(path, &w->path, e));
    else if (!(w->path = dupstr(path))) return kd_errf(e, KD_ERR_OOM, "out of memory");
    if (ends_with(w->path, ".index.json")) return open_index(w, e);
    /* .ckpt (a Lightning checkpoint: its "state_dict"), .pt and .pth are torch.save files like .bin;
     * whether their tensor names fit is for the model that binds them to say */
    return open_single(w, e);
}

kd_status kd_weights_open(const char *path, kd_weights **out, kd_err *e) {
    if (!path || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_weights_open: NULL argument");
    *out = NULL;
    kd_weights *w = calloc(1, sizeof *w);
    if (!w) return kd_errf(e, KD_ERR_OOM, "out of memory");
    kd_status s = open_path(w, path, e);
    if (s != KD_OK) {
        kd_weights_close(w);
        return s;
    }
    *out = w;
    return KD_OK;
}

void kd_weights_close(kd_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->ents[i].f32);
        free(w->ents[i].q8);
        free(w->ents[i].q8_scale);
    }
    for (size_t i = 0; i < w->n_files; i++) {
        if (w->tz[i]) kd_tz_close(w->tz[i]);
        else kd_st_close(w->files[i]);
    }
    for (size_t i = 0; i < w->n_derived; i++) {
        kd_st_tensor *t = w->derived[i];
        free(t->name);
        if (t->offset == UINT64_MAX) free(t->t.data); /* gathered rows (aliases point into the files) */
        free(t);
    }
    free(w->derived);
    free(w->ents);
    free(w->files);
    free(w->tz);
    kd_config_free(&w->index);
    free(w->path);
    free(w);
}

/* ---- derived tensors ---------------------------------------------------------------------- */

static kd_status derive_one(kd_weights *w, const kd_derive *d, wentry *out, kd_err *e) {
    const wentry *src = find_entry(w, d->src);
    if (!src) return kd_errf(e, KD_ERR_NOT_FOUND, "%s: tensor '%s' not found (wanted for '%s')", w->path, d->src, d->name);
    const kd_tensor *t = &src->t->t;
    int64_t rows = t->ndim ? t->shape[0] : 1, numel = kd_tensor_numel(t);
    int64_t row_len = rows ? numel / rows : 0, nb = d->n_blocks ? d->n_blocks : 1, len = d->n_blocks ? d->block_rows : rows;
    int ndim = d->ndim ? d->ndim : t->ndim; /* 0: the source's shape */
    const int64_t *shape = d->ndim ? d->shape : t->shape;
    int64_t want = 1;
    for (int i = 0; i < ndim; i++) want *= shape[i];
    int64_t last = d->row0 + (nb - 1) * d->block_stride + len;
    if (ndim < 0 || ndim > KD_MAX_DIMS || len < 0 || d->row0 < 0 || d->block_stride < 0 || last > rows ||
        want != nb * len * row_len)
        return kd_errf(e, KD_ERR_SHAPE, "%s: '%s' (%lld rows of %lld) cannot give '%s' (%lld values from %lld blocks of %lld rows)",
                       w->path, d->src, (long long)rows, (long long)row_len, d->name, (long long)want, (long long)nb,
                       (long long)len);
    kd_st_tensor *n = calloc(1, sizeof *n);
    if (!n || !(n->name = dupstr(d->name))) {
        free(n);
        return kd_errf(e, KD_ERR_OOM, "out of memory");
    }
    n->t = *t;
    n->t.ndim = ndim;
    for (int i = 0; i < ndim; i++) n->t.shape[i] = shape[i];
    size_t es = kd_dtype_size(t->dtype), row_bytes = (size_t)row_len * es;
    n->nbytes = (uint64_t)want * es;
    if (d->n_blocks == 0 || (nb == 1 && d->row0 == 0 && len == rows)) {
        n->offset = src->t->offset; /* an alias: the same bytes */
    } else {
        uint8_t *buf = malloc(n->nbytes ? n->nbytes : 1);
        if (!buf) {
            free(n->name);
            free(n);
            return kd_errf(e, KD_ERR_OOM, "%s: out of memory for '%s'", w->path, d->name);
        }
        for (int64_t b = 0; b < nb; b++)
            memcpy(buf + (size_t)(b * len) * row_bytes,
                   (const uint8_t *)t->data + (size_t)(d->row0 + b * d->block_stride) * row_bytes, (size_t)len * row_bytes);
        n->t.data = buf;
        n->offset = UINT64_MAX; /* marks owned data */
    }
    w->derived[w->n_derived++] = n;
    *out = (wentry){.t = n, .file = src->file};
    return KD_OK;
}

kd_status kd_weights_derive(kd_weights *w, const kd_derive *list, size_t n, kd_err *e) {
    if (!w || (n && !list)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_weights_derive: NULL argument");
    wentry *ents = realloc(w->ents, (w->n + n + 1) * sizeof *ents);
    if (ents) w->ents = ents;
    kd_st_tensor **dv = realloc(w->derived, (w->n_derived + n + 1) * sizeof *dv);
    if (dv) w->derived = dv;
    if (!ents || !dv) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", w->path);
    size_t base = w->n;
    wentry *fresh = malloc((n ? n : 1) * sizeof *fresh);
    if (!fresh) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", w->path);
    kd_status st = KD_OK;
    size_t k = 0;
    for (; k < n && st == KD_OK; k++) st = derive_one(w, &list[k], &fresh[k], e); /* lookups see the old set */
    if (st == KD_OK) {
        memcpy(w->ents + base, fresh, n * sizeof *fresh);
        w->n += n;
        qsort(w->ents, w->n, sizeof *w->ents, cmp_entry);
        for (size_t i = 1; i < w->n && st == KD_OK; i++)
            if (strcmp(w->ents[i - 1].t->name, w->ents[i].t->name) == 0)
                st = kd_errf(e, KD_ERR_FORMAT, "%s: tensor '%s' exists twice (in the file and derived)", w->path,
                             w->ents[i].t->name);
    }
    free(fresh);
    return st;
}

/* ---- queries ----------------------------------------------------------------------------- */

const char *kd_weights_path(const kd_weights *w) { return w ? w->path : NULL; }

const kd_st_tensor *kd_weights_get(const kd_weights *w, const char *name) {
    const wentry *en = find_entry(w, name);
    return en ? en->t : NULL;
}

const char *kd_weights_file_of(const kd_weights *w, const char *name) {
    const wentry *en = find_entry(w, name);
    return en ? w->files[en->file]->path : NULL;
}

size_t kd_weights_count(const kd_weights *w) { return w ? w->n : 0; }
const kd_st_tensor *kd_weights_at(const kd_weights *w, size_t i) { return w && i < w->n ? w->ents[i].t : NULL; }
int kd_weights_used_at(const kd_weights *w, size_t i) { return w && i < w->n ? w->ents[i].used : 0; }
size_t kd_weights_n_files(const kd_weights *w) { return w ? w->n_files : 0; }
const kd_st_file *kd_weights_file(const kd_weights *w, size_t i) { return w && i < w->n_files ? w->files[i] : NULL; }
const kd_config *kd_weights_index(const kd_weights *w) { return w && w->index.root ? &w->index : NULL; }

/* ---- binding ----------------------------------------------------------------------------- */

/* Models compute in floating point; an I64 buffer (position_ids) bound as a weight is a bug. */
static kd_status check_tensor(const kd_weights *w, const wentry *en, int ndim, const int64_t *shape, kd_err *e) {
    const kd_tensor *t = &en->t->t;
    const char *file = w->files[en->file]->path;
    if (t->dtype != KD_F32 && t->dtype != KD_F16 && t->dtype != KD_BF16 && t->dtype != KD_I8)
        return kd_errf(e, KD_ERR_SHAPE, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16", file, en->t->name,
                       kd_dtype_name(t->dtype));
    if (ndim < 0) return KD_OK;
    int ok = t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = shape[d] < 0 || shape[d] == t->shape[d];
    if (ok) return KD_OK;
    char got[160], want[160];
    return kd_errf(e, KD_ERR_SHAPE, "%s: '%s' has shape %s, expected %s", file, en->t->name,
                   kd_shape_str(t->shape, t->ndim, got, sizeof got),
                   kd_shape_str(shape, ndim > KD_MAX_DIMS ? KD_MAX_DIMS : ndim, want, sizeof want));
}

static kd_status to_f32(const kd_weights *w, wentry *en, float **out, kd_err *e) {
    en->used = 1;
    if (en->f32) {
        *out = en->f32;
        return KD_OK;
    }
    const kd_tensor *t = &en->t->t;
    size_t es = kd_dtype_size(t->dtype), n = (size_t)(en->t->nbytes / es);
    float *dst = malloc(n ? n * sizeof(float) : 1);
    if (!dst) return kd_errf(e, KD_ERR_OOM, "%s: out of memory converting '%s'", w->path, en->t->name);
    const void *src = t->data;
    void *aligned = NULL;
    if (t->dtype != KD_F32 && (uintptr_t)src % es) { /* 16-bit loads need 2-byte alignment */
        aligned = malloc(n * es);
        if (!aligned) {
            free(dst);
            return kd_errf(e, KD_ERR_OOM, "%s: out of memory converting '%s'", w->path, en->t->name);
        }
        memcpy(aligned, src, n * es);
        src = aligned;
    }
    kd_convert_to_f32(dst, src, t->dtype, n);
    free(aligned);
    en->f32 = dst;
    *out = dst;
    return KD_OK;
}

static kd_status missing(const kd_weights *w, const char *name, kd_err *e) {
    return kd_errf(e, KD_ERR_NOT_FOUND, "%s: missing tensor '%s'", w->path, name);
}

/* Elements per q8_0 row of t (all dims after the first); 0 if t cannot be q8_0. */
static int64_t q8_row_len(const kd_tensor *t) {
    if (t->ndim < 2 || t->shape[0] <= 0) return 0;
    int64_t k = 1;
    for (int d = 1; d < t->ndim; d++) k *= t->shape[d];
    return k > 0 && k % KD_Q8_BLOCK == 0 ? k : 0;
}

/* An I8 tensor of a converted (kandinsky convert --weights q8) file: its "<name>_scale" F16
 * [rows, row_len / 32] companion makes it a q8_0 view. */
static kd_status bind_q8(kd_weights *w, const char *full, wentry *en, kd_bind *b, kd_err *e) {
    const char *file = w->files[en->file]->path;
    if (!b->q8_ok)
        return kd_errf(e, KD_ERR_SHAPE, "%s: tensor '%s' is int8 (q8_0), but only Linear and conv weights may be quantised",
                       file, full);
    const kd_tensor *t = &en->t->t;
    int64_t k = q8_row_len(t);
    char sname[1100];
    snprintf(sname, sizeof sname, "%s_scale", full);
    wentry *se = find_entry(w, sname);
    if (!k) return kd_errf(e, KD_ERR_SHAPE, "%s: int8 tensor '%s' has rows that are not a multiple of %d values", file, full, KD_Q8_BLOCK);
    if (!se) return kd_errf(e, KD_ERR_NOT_FOUND, "%s: int8 tensor '%s' has no scales ('%s')", file, full, sname);
    const kd_tensor *st = &se->t->t;
    if (st->dtype != KD_F16 || st->ndim != 2 || st->shape[0] != t->shape[0] || st->shape[1] != k / KD_Q8_BLOCK ||
        (uintptr_t)st->data % 2)
        return kd_errf(e, KD_ERR_SHAPE, "%s: '%s' must be an aligned F16 tensor of shape [%lld, %lld]",
                       w->files[se->file]->path, sname, (long long)t->shape[0], (long long)(k / KD_Q8_BLOCK));
    if (b->f32) return kd_errf(e, KD_ERR_SHAPE, "%s: tensor '%s' is int8 (q8_0) where floats are needed", file, full);
    if (b->dst) {
        *b->dst = *t;
        b->dst->dtype = KD_Q8_0;
        b->dst->scale = (const uint16_t *)st->data;
    }
    en->used = se->used = 1;
    return KD_OK;
}

static kd_status bind_one(kd_weights *w, const char *full, kd_bind *b, kd_err *e) {
    wentry *en = find_entry(w, full);
    if (!en) {
        if (!b->optional) return missing(w, full, e);
        if (b->dst) memset(b->dst, 0, sizeof *b->dst);
        if (b->f32) *b->f32 = NULL;
        return KD_OK;
    }
    if (b->ndim > KD_MAX_DIMS) return kd_errf(e, KD_ERR_INVALID_ARG, "bind '%s': ndim %d > %d", full, b->ndim, KD_MAX_DIMS);
    KD_TRY(check_tensor(w, en, b->ndim, b->shape, e));
    if (en->t->t.dtype == KD_I8) return bind_q8(w, full, en, b, e);
    if (b->dst) *b->dst = en->t->t;
    en->used = 1;
    if (b->f32) KD_TRY(to_f32(w, en, b->f32, e));
    return KD_OK;
}

kd_status kd_weights_bind(kd_weights *w, const char *prefix, kd_bind *list, size_t n, kd_err *e) {
    if (!w || (n && !list)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_weights_bind: NULL argument");
    char full[1024];
    for (size_t i = 0; i < n; i++) {
        if (!list[i].name) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_weights_bind: entry %zu has no name", i);
        int len = snprintf(full, sizeof full, "%s%s", prefix ? prefix : "", list[i].name);
        if (len < 0 || (size_t)len >= sizeof full)
            return kd_errf(e, KD_ERR_INVALID_ARG, "kd_weights_bind: name '%s%s' is too long", prefix ? prefix : "",
                           list[i].name);
        KD_TRY(bind_one(w, full, &list[i], e));
    }
    return KD_OK;
}

kd_status kd_weights_f32(kd_weights *w, const char *name, int ndim, const int64_t *shape, float **out, kd_err *e) {
    if (!w || !name || !out || (ndim > 0 && !shape) || ndim > KD_MAX_DIMS)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_weights_f32: bad argument");
    wentry *en = find_entry(w, name);
    if (!en) return missing(w, name, e);
    KD_TRY(check_tensor(w, en, ndim, shape, e));
    if (en->t->t.dtype == KD_I8)
        return kd_errf(e, KD_ERR_SHAPE, "%s: tensor '%s' is int8 (q8_0) where floats are needed",
                       w->files[en->file]->path, name);
    return to_f32(w, en, out, e);
}

/* ---- q8_0 at load ------------------------------------------------------------------------- */

void kd_weights_set_q8(kd_weights *w, int on) {
    if (w) w->want_q8 = on != 0;
}

int kd_weights_wants_q8(const kd_weights *w) { return w && w->want_q8; }

/* Hands the mapped pages that lie wholly inside [p, p + n) back to the kernel: the file is mapped
 * read-only and private, so a later read (if any) faults them in again from the file. Without
 * this the F32 source of every quantised weight would stay in the resident set. */
static void release_source(const kd_st_file *f, const void *p, size_t n) {
    if (!f || !f->mapped || n == 0) return;
    const uint8_t *a = p, *lo = f->base, *hi = f->base + f->size;
    if (a < lo || a + n > hi) return; /* a copy (torch zip), not the mapping */
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t s0 = ((uintptr_t)a + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
    uintptr_t s1 = ((uintptr_t)a + n) / (uintptr_t)pg * (uintptr_t)pg;
    if (s1 > s0) (void)madvise((void *)s0, s1 - s0, MADV_DONTNEED);
}

kd_status kd_weights_quantize_q8(kd_weights *w, const char *name, kd_tensor *dst, kd_err *e) {
    wentry *en = find_entry(w, name);
    if (!en || !dst || !dst->data)
        return kd_errf(e, KD_ERR_INVALID_ARG, "quantize: '%s' is not a bound weight of %s", name, w ? w->path : "?");
    if (dst->dtype == KD_Q8_0) return KD_OK; /* stored quantised */
    int64_t k = q8_row_len(dst);
    if (!k || (dst->dtype != KD_F32 && dst->dtype != KD_F16 && dst->dtype != KD_BF16))
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: '%s' cannot be q8_0 (rows of a multiple of %d values needed)", w->path,
                       name, KD_Q8_BLOCK);
    size_t n = (size_t)kd_tensor_numel(dst);
    if (!en->q8) {
        int8_t *q = malloc(n);
        uint16_t *sc = malloc(n / KD_Q8_BLOCK * sizeof *sc);
        if (!q || !sc) {
            free(q);
            free(sc);
            return kd_errf(e, KD_ERR_OOM, "%s: out of memory quantising '%s'", w->path, name);
        }
        if (!kd_q8_quantize(q, sc, dst->data, dst->dtype, n)) {
            free(q);
            free(sc);
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: '%s' holds values q8_0 cannot represent (inf, NaN or > 8e6)",
                           w->path, name);
        }
        release_source(w->files[en->file], dst->data, n * kd_dtype_size(dst->dtype));
        en->q8 = q;
        en->q8_scale = sc;
    }
    dst->dtype = KD_Q8_0;
    dst->data = en->q8;
    dst->scale = en->q8_scale;
    return KD_OK;
}

int kd_weights_q8_at(const kd_weights *w, size_t i, const int8_t **q, const uint16_t **scale) {
    if (!w || i >= w->n || !w->ents[i].q8) return 0;
    *q = w->ents[i].q8;
    *scale = w->ents[i].q8_scale;
    return 1;
}
