/* kd_inspect: a human-readable description of a model file or folder (`kandinsky inspect`).
 * A folder inspection keeps going after a component fails, prints the failure in place, and
 * returns the first one, so one bad shard does not hide the rest of the pipeline. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/ctx.h"
#include "io/config.h"
#include "io/weights.h"

/* Config files a diffusers component folder may carry, printed in this order. */
static const char *const config_names[] = {"config.json", "scheduler_config.json", "preprocessor_config.json", NULL};

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

static int path_kind(const char *path) { /* 0 absent, 1 file, 2 folder */
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    return S_ISDIR(st.st_mode) ? 2 : 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *human_bytes(uint64_t n, char *buf, size_t cap) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0) snprintf(buf, cap, "%" PRIu64 " B", n);
    else snprintf(buf, cap, "%.2f %s", v, unit[u]);
    return buf;
}

/* Remembers the first failure of a folder walk and prints each where it happened. */
static void note_error(kd_err *first, const kd_err *e, FILE *out) {
    fprintf(out, "  error: %s\n", e->msg);
    if (first->code == KD_OK) *first = *e;
}

/* ---- weights ----------------------------------------------------------------------------- */

static void print_table(const kd_weights *w, FILE *out) {
    size_t n = kd_weights_count(w), width = 4;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(kd_weights_at(w, i)->name);
        if (len > width) width = len;
    }
    if (width > 96) width = 96; /* longer names push their row out instead of every row */
    fprintf(out, "  %-*s  %-5s  %-22s  %s\n", (int)width, "name", "dtype", "shape", "bytes");
    for (size_t i = 0; i < n; i++) {
        const kd_st_tensor *t = kd_weights_at(w, i);
        char sh[160];
        fprintf(out, "  %-*s  %-5s  %-22s  %" PRIu64 "\n", (int)width, t->name, kd_dtype_name(t->t.dtype),
                kd_shape_str(t->t.shape, t->t.ndim, sh, sizeof sh), t->nbytes);
    }
}

static void print_totals(const kd_weights *w, FILE *out) {
    uint64_t bytes[KD_DTYPE_COUNT] = {0}, count[KD_DTYPE_COUNT] = {0}, params = 0, other = 0, total = 0;
    size_t n = kd_weights_count(w);
    for (size_t i = 0; i < n; i++) {
        const kd_st_tensor *t = kd_weights_at(w, i);
        uint64_t numel = t->nbytes / kd_dtype_size(t->t.dtype);
        bytes[t->t.dtype] += t->nbytes;
        count[t->t.dtype]++;
        total += t->nbytes;
        if (t->t.dtype == KD_I64) other += numel; /* buffers such as position_ids, not parameters */
        else params += numel;
    }
    char hb[32];
    fprintf(out, "  total: %zu tensors, %" PRIu64 " parameters, %s", n, params, human_bytes(total, hb, sizeof hb));
    if (other) fprintf(out, " (plus %" PRIu64 " I64 buffer elements)", other);
    fputc('\n', out);
    for (int d = 0; d < KD_DTYPE_COUNT; d++)
        if (count[d])
            fprintf(out, "    %-5s %6" PRIu64 " tensors  %" PRIu64 " bytes (%s)\n", kd_dtype_name((kd_dtype)d), count[d],
                    bytes[d], human_bytes(bytes[d], hb, sizeof hb));
}

static void print_files(const kd_weights *w, FILE *out) {
    const kd_config *index = kd_weights_index(w);
    if (index) {
        const cJSON *meta = kd_config_get(index, "metadata");
        fprintf(out, "  sharded: %zu files\n", kd_weights_n_files(w));
        if (meta) {
            fputs("  index metadata: ", out);
            kd_json_print(meta, out, 2);
            fputc('\n', out);
        }
    }
    for (size_t i = 0; i < kd_weights_n_files(w); i++) {
        const kd_st_file *f = kd_weights_file(w, i);
        char hb[32];
        if (index) fprintf(out, "  shard %s: %zu tensors, %s\n", f->path, f->n_tensors, human_bytes(f->size, hb, sizeof hb));
        for (size_t k = 0; k < f->n_meta; k++) {
            fprintf(out, "  __metadata__ ");
            kd_json_print_string(f->meta[k].key, out);
            fputs(": ", out);
            kd_json_print_string(f->meta[k].value, out);
            fputc('\n', out);
        }
    }
}

static kd_status inspect_weights(const char *path, FILE *out, kd_err *e) {
    kd_weights *w;
    KD_TRY(kd_weights_open(path, &w, e));
    fprintf(out, "weights: %s\n", kd_weights_path(w));
    print_files(w, out);
    print_table(w, out);
    print_totals(w, out);
    kd_weights_close(w);
    return KD_OK;
}

static kd_status inspect_config(const char *path, FILE *out, kd_err *e) {
    kd_config cfg;
    KD_TRY(kd_config_load(path, &cfg, e));
    fprintf(out, "%s:\n", path);
    kd_config_print(&cfg, out);
    kd_config_free(&cfg);
    return KD_OK;
}

/* ---- folders ----------------------------------------------------------------------------- */

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted full paths of the visible entries of a folder (at most max); returns the count. */
static size_t list_dir(const char *dir, char **names, size_t max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0;
    for (struct dirent *de; n < max && (de = readdir(d));)
        if (de->d_name[0] != '.' && (names[n] = join_path(dir, de->d_name))) n++;
    closedir(d);
    qsort(names, n, sizeof *names, cmp_cstr);
    return n;
}

#define MAX_LISTED 1024

/* For folders with neither config nor weights (tokenizer/): what is in them. */
static void list_files(const char *dir, FILE *out) {
    char **names = malloc(MAX_LISTED * sizeof *names);
    size_t n = names ? list_dir(dir, names, MAX_LISTED) : 0;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        char hb[32];
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode))
            fprintf(out, "  file %s (%s)\n", names[i], human_bytes((uint64_t)st.st_size, hb, sizeof hb));
        free(names[i]);
    }
    free(names);
}

/* A folder without diffusers' weight names (a folder of fixtures, say): every safetensors file
 * and index in it. Returns how many were found. */
static int inspect_loose_weights(const char *dir, FILE *out, kd_err *first) {
    char **names = malloc(MAX_LISTED * sizeof *names);
    size_t n = names ? list_dir(dir, names, MAX_LISTED) : 0;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (path_kind(names[i]) == 1 &&
            (ends_with(names[i], ".safetensors") || ends_with(names[i], ".safetensors.index.json"))) {
            kd_err e = {0};
            found++;
            if (inspect_weights(names[i], out, &e) != KD_OK) note_error(first, &e, out);
        }
        free(names[i]);
    }
    free(names);
    return found;
}

/* Configs and weights of one folder. Returns 0 if it held neither. */
static int inspect_component(const char *dir, FILE *out, kd_err *first) {
    int found = 0;
    kd_err e = {0};
    fprintf(out, "== %s ==\n", dir);
    for (int i = 0; config_names[i]; i++) {
        char *p = join_path(dir, config_names[i]);
        if (p && path_kind(p) == 1) {
            found = 1;
            if (inspect_config(p, out, &e) != KD_OK) note_error(first, &e, out);
        }
        free(p);
    }
    char *wpath = NULL;
    kd_status s = kd_weights_locate(dir, &wpath, &e);
    if (s == KD_OK) {
        found = 1;
        if (inspect_weights(wpath, out, &e) != KD_OK) note_error(first, &e, out);
    } else if (s != KD_ERR_NOT_FOUND) {
        found = 1;
        note_error(first, &e, out);
    } else if (inspect_loose_weights(dir, out, first)) {
        found = 1;
    } else if (found) {
        fprintf(out, "weights: none\n");
    }
    free(wpath);
    if (!found) list_files(dir, out);
    return found;
}

/* A diffusers pipeline: model_index.json, then each component folder it names. */
static void inspect_pipeline(const char *dir, const char *index_path, FILE *out, kd_err *first) {
    kd_config idx;
    kd_err e = {0};
    if (kd_config_load(index_path, &idx, &e) != KD_OK) {
        note_error(first, &e, out);
        return;
    }
    fprintf(out, "%s:\n", index_path);
    kd_config_print(&idx, out);
    for (const cJSON *c = idx.root->child; c; c = c->next) {
        /* Keys name sibling folders; anything that could leave the pipeline folder is skipped. */
        if (c->string[0] == '_' || c->string[0] == '.' || strchr(c->string, '/')) continue;
        char *sub = join_path(dir, c->string);
        if (sub && path_kind(sub) == 2) {
            fputc('\n', out);
            inspect_component(sub, out, first);
        }
        free(sub);
    }
    kd_config_free(&idx);
}

static kd_status inspect_folder(const char *dir, FILE *out, kd_err *err) {
    kd_err first = {0};
    char *index = join_path(dir, "model_index.json");
    if (!index) return kd_errf(err, KD_ERR_OOM, "out of memory");
    if (path_kind(index) == 1) inspect_pipeline(dir, index, out, &first);
    else if (!inspect_component(dir, out, &first))
        kd_errf(&first, KD_ERR_NOT_FOUND, "%s: no model_index.json, config.json or safetensors weights in this folder", dir);
    free(index);
    if (first.code == KD_OK) return KD_OK;
    *err = first;
    return first.code;
}

kd_status kd_inspect(kd_ctx *ctx, const char *path, FILE *out) {
    if (!ctx) return KD_ERR_INVALID_ARG;
    if (!path || !out) return kd_ctx_fail(ctx, KD_ERR_INVALID_ARG, "inspect: NULL path or output stream");
    kd_err_clear(&ctx->err);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return kd_ctx_fail(ctx, KD_ERR_NOT_FOUND, "%s: no such file or folder", path);
        return kd_ctx_fail(ctx, KD_ERR_IO, "%s: %s", path, strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) return inspect_folder(path, out, &ctx->err);
    if (ends_with(path, ".json") && !ends_with(path, ".index.json")) return inspect_config(path, out, &ctx->err);
    return inspect_weights(path, out, &ctx->err);
}
