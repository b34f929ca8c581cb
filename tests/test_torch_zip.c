/* torch.save zip reader (src/io/torch_zip.c) and .bin weight sets, on fixtures from
 * tools/reference/gen_torch_zip.py:
 *   - tiny.bin and its variants (protocol 4, deflated, ZIP64, unaligned) hold bit for bit the
 *     tensors of tiny.safetensors (F32/F16/BF16/I64, 0-d, empty, strided views, shared storage);
 *   - the same through kd_weights (file, folder, sharded .bin.index.json);
 *   - the ControlNet U-Net re-saved by diffusers as .bin gives exactly the output of our run on
 *     the safetensors original (and matches diffusers' reference);
 *   - every file of malformed/ is refused with the status and message listed in cases.txt;
 *   - archives built here: > 65535 entries (ZIP64 end record), limits, every truncation and
 *     every single-byte corruption of tiny.bin (no crash, every failure has a message). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/safetensors.h"
#include "io/torch_zip.h"
#include "io/weights.h"
#include "kandinsky.h"
#include "testutil.h"

static const char *const tiny_names[] = {"f32",        "f16",  "bf16",     "i64",      "scalar",   "empty",
                                         "transposed", "step", "expanded", "shared_a", "shared_b", "param"};
#define N_TINY (sizeof tiny_names / sizeof tiny_names[0])

static char *path_of(const char *rel) {
    const char *p = kt_data_path(rel);
    size_t n = strlen(p) + 1;
    char *d = malloc(n);
    memcpy(d, p, n);
    return d;
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static int write_all(const char *path, const void *p, size_t n) {
    if (!p) return 0;
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n;
}

/* Same name, dtype, shape and bytes as the safetensors twin. */
static int same_tensor(const kd_st_tensor *a, const kd_st_tensor *b) {
    if (!a || !b || a->t.dtype != b->t.dtype || a->t.ndim != b->t.ndim || a->nbytes != b->nbytes) return 0;
    for (int d = 0; d < a->t.ndim; d++)
        if (a->t.shape[d] != b->t.shape[d]) return 0;
    return a->nbytes == 0 || memcmp(a->t.data, b->t.data, (size_t)a->nbytes) == 0;
}

static void check_parity(const char *label, const kd_tz_file *f, const kd_st_file *ref) {
    TEST_CHECK(f->st.n_tensors == N_TINY && ref->n_tensors == N_TINY, "%s: %zu tensors", label, f->st.n_tensors);
    int all = 1;
    for (size_t i = 0; i < N_TINY; i++) {
        const kd_st_tensor *t = kd_tz_find(f, tiny_names[i]);
        int ok = same_tensor(t, kd_st_find(ref, tiny_names[i]));
        /* pickle dict order is kept */
        ok = ok && i < f->st.n_tensors && strcmp(f->st.tensors[i].name, tiny_names[i]) == 0;
        /* every view is aligned to its element size, and non-NULL even when empty */
        ok = ok && t->t.data && (uintptr_t)t->t.data % kd_dtype_size(t->t.dtype) == 0;
        TEST_CHECK(ok, "%s: tensor '%s' equals the safetensors twin", label, tiny_names[i]);
        all &= ok;
    }
    TEST_CHECK(kd_tz_find(f, "nope") == NULL && kd_st_find(&f->st, "f32") == kd_tz_find(f, "f32"), "%s: lookup", label);
    if (all) printf("  ok %-48s %zu tensors bit-exact\n", label, f->st.n_tensors);
}

static void test_tiny(void) {
    kd_err e = {0};
    kd_st_file *ref = NULL;
    char *rp = path_of("torch_zip/tiny.safetensors");
    TEST_CHECK(kd_st_open(rp, &ref, &e) == KD_OK, "open %s: %s", rp, e.msg);
    free(rp);
    if (!ref) return;
    const char *files[] = {"tiny.bin", "tiny_proto4.bin", "tiny_deflate.bin", "tiny_zip64.bin", "tiny_unaligned.bin"};
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        char rel[200];
        snprintf(rel, sizeof rel, "torch_zip/%s", files[k]);
        char *p = path_of(rel);
        kd_tz_file *f = NULL;
        kd_status s = kd_tz_open(p, &f, &e);
        TEST_CHECK(s == KD_OK, "open %s: %s", p, e.msg);
        if (s == KD_OK) {
            check_parity(files[k], f, ref);
            TEST_CHECK(f->version == 3 && strcmp(f->archive, k == 1 ? "tiny_proto4" : "tiny") == 0, "%s: archive '%s' version %d",
                       files[k], f->archive, f->version);
            /* which tensors are views into the mapping, which are copies */
            const kd_st_tensor *t0 = kd_tz_find(f, "f32"), *tt = kd_tz_find(f, "transposed"), *te = kd_tz_find(f, "expanded");
            size_t i0 = (size_t)(t0 - f->st.tensors), it = (size_t)(tt - f->st.tensors), ie = (size_t)(te - f->st.tensors);
            if (k == 2) TEST_CHECK(f->copied[i0] && f->owned_bytes > 0, "deflated: tensors live in inflated memory");
            else if (k == 4) TEST_CHECK(f->copied[it] && f->copied[ie], "unaligned: strided views copied");
            else
                TEST_CHECK(!f->copied[i0] && (const uint8_t *)t0->t.data >= f->st.base &&
                               (const uint8_t *)t0->t.data + t0->nbytes <= f->st.base + f->st.size && t0->offset % 64 == 0 &&
                               f->copied[it] && f->copied[ie],
                           "%s: contiguous tensor is a 64-byte aligned view into the mapping, strided ones are copies", files[k]);
            kd_tz_close(f);
        }
        /* the same image from memory */
        size_t n = 0;
        uint8_t *buf = read_all(p, &n);
        f = NULL;
        s = buf ? kd_tz_parse(buf, n, files[k], NULL, &f, &e) : KD_ERR_IO;
        TEST_CHECK(s == KD_OK, "parse %s from memory: %s", files[k], e.msg);
        if (s == KD_OK) {
            char label[100];
            snprintf(label, sizeof label, "%s (memory)", files[k]);
            check_parity(label, f, ref);
        }
        kd_tz_close(f);
        free(buf);
        free(p);
    }
    kd_st_close(ref);
}

/* A Lightning checkpoint (ldm's vae.ckpt): exactly the tensors of its "state_dict"; the optimizer
 * state, callbacks and hyper-parameters (user classes, Namespace, datetime, sets, bytes) skipped. */
static void test_lightning(void) {
    kd_err e = {0};
    kd_st_file *ref = NULL;
    char *rp = path_of("torch_zip/lightning_state_dict.safetensors"), *p = path_of("torch_zip/lightning.ckpt");
    kd_tz_file *f = NULL;
    TEST_CHECK(kd_st_open(rp, &ref, &e) == KD_OK, "open %s: %s", rp, e.msg);
    TEST_CHECK(kd_tz_open(p, &f, &e) == KD_OK, "open %s: %s", p, e.msg);
    if (f && ref) {
        TEST_CHECK(f->st.n_tensors == ref->n_tensors && ref->n_tensors == 3, "lightning.ckpt: %zu tensors, want %zu",
                   f->st.n_tensors, ref->n_tensors);
        for (size_t i = 0; i < ref->n_tensors; i++) {
            const char *name = ref->tensors[i].name;
            TEST_CHECK(same_tensor(kd_tz_find(f, name), &ref->tensors[i]), "lightning.ckpt: '%s'", name);
        }
        TEST_CHECK(!kd_tz_find(f, "exp_avg") && !kd_tz_find(f, "best_model_score"), "only state_dict's tensors");
    }
    kd_weights *w = NULL;
    TEST_CHECK(kd_weights_open(p, &w, &e) == KD_OK && w && kd_weights_get(w, "encoder.conv_in.weight"),
               "kd_weights on lightning.ckpt: %s", e.msg);
    kd_weights_close(w);
    kd_tz_close(f);
    kd_st_close(ref);
    free(rp);
    free(p);
}

/* kd_weights over .bin: a file, a folder, a sharded index; get/bind/f32 as for safetensors. */
static void test_weights(void) {
    kd_err e = {0};
    kd_st_file *ref = NULL;
    char *rp = path_of("torch_zip/tiny.safetensors"), *bin = path_of("torch_zip/tiny.bin");
    kd_st_open(rp, &ref, &e);
    kd_weights *w = NULL;
    kd_status s = kd_weights_open(bin, &w, &e);
    TEST_CHECK(s == KD_OK, "kd_weights_open(tiny.bin): %s", e.msg);
    if (s == KD_OK && ref) {
        TEST_CHECK(kd_weights_count(w) == N_TINY && kd_weights_n_files(w) == 1 && !kd_weights_index(w) &&
                       strcmp(kd_weights_file(w, 0)->path, bin) == 0 && kd_weights_file(w, 0)->n_tensors == N_TINY,
                   "tiny.bin: one file of %zu tensors", kd_weights_count(w));
        int same = 1;
        for (size_t i = 0; i < N_TINY; i++) same &= same_tensor(kd_weights_get(w, tiny_names[i]), kd_st_find(ref, tiny_names[i]));
        TEST_CHECK(same, "kd_weights_get over .bin equals safetensors");
        kd_tensor tw, tt;
        float *f16 = NULL;
        kd_bind list[] = {
            {.name = "f32", .dst = &tw, .ndim = 2, .shape = {2, 3}},
            {.name = "transposed", .dst = &tt, .ndim = 2, .shape = {4, -1}},
            {.name = "f16", .ndim = 1, .shape = {5}, .f32 = &f16},
            {.name = "missing", .ndim = -1, .optional = 1},
        };
        s = kd_weights_bind(w, NULL, list, 4, &e);
        TEST_CHECK(s == KD_OK && tw.dtype == KD_F32 && tt.shape[1] == 3 && f16, "bind .bin tensors: %s", e.msg);
        if (s == KD_OK) {
            const kd_st_tensor *h = kd_st_find(ref, "f16");
            float want[5];
            kd_convert_to_f32(want, h->t.data, KD_F16, 5);
            TEST_CHECK(memcmp(want, f16, sizeof want) == 0, "kd_weights_f32 of an F16 .bin tensor");
        }
        kd_bind bad = {.name = "i64", .ndim = -1};
        TEST_CHECK(kd_weights_bind(w, NULL, &bad, 1, &e) == KD_ERR_SHAPE && strstr(e.msg, "tiny.bin") && strstr(e.msg, "I64"),
                   "binding an I64 .bin tensor names the file: %s", e.msg);
        kd_bind wrong = {.name = "bf16", .ndim = 2, .shape = {2, 3}};
        TEST_CHECK(kd_weights_bind(w, NULL, &wrong, 1, &e) == KD_ERR_SHAPE && strstr(e.msg, "[2, 2]"), "shape mismatch: %s", e.msg);
    }
    kd_weights_close(w);

    /* sharded: pytorch_model.bin.index.json found in the folder */
    w = NULL;
    char *sh = path_of("torch_zip/sharded");
    s = kd_weights_open(sh, &w, &e);
    TEST_CHECK(s == KD_OK, "kd_weights_open(sharded .bin): %s", e.msg);
    if (s == KD_OK && ref) {
        int same = kd_weights_count(w) == N_TINY && kd_weights_n_files(w) == 2 && kd_weights_index(w) &&
                   strstr(kd_weights_path(w), "pytorch_model.bin.index.json");
        for (size_t i = 0; i < N_TINY; i++) same &= same_tensor(kd_weights_get(w, tiny_names[i]), kd_st_find(ref, tiny_names[i]));
        TEST_CHECK(same, "sharded .bin: 2 shards, tensors equal safetensors");
        TEST_CHECK(strstr(kd_weights_file_of(w, "param"), "00002-of-00002.bin") != NULL, "file_of names the shard");
    }
    kd_weights_close(w);
    free(sh);

    /* folders: only a .bin → it is used; safetensors beside it win; a .ckpt file opens like a .bin */
    const char *dir = kt_tmp_dir("torch_zip-folder");
    char p[1024];
    const char *leftovers[] = {"diffusion_pytorch_model.bin", "diffusion_pytorch_model.safetensors", "model.ckpt", "weights.pt"};
    for (size_t i = 0; i < sizeof leftovers / sizeof *leftovers; i++) { /* from an earlier run */
        snprintf(p, sizeof p, "%s/%s", dir, leftovers[i]);
        remove(p);
    }
    size_t n = 0;
    uint8_t *blob = read_all(bin, &n);
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.bin", dir);
    write_all(p, blob, n);
    char *loc = NULL;
    s = kd_weights_locate(dir, &loc, &e);
    TEST_CHECK(s == KD_OK && loc && strstr(loc, "diffusion_pytorch_model.bin"), "locate finds the .bin: %s", s ? e.msg : loc);
    free(loc);
    w = NULL;
    TEST_CHECK(kd_weights_open(dir, &w, &e) == KD_OK && kd_weights_count(w) == N_TINY, "folder with only .bin opens: %s", e.msg);
    kd_weights_close(w);
    size_t rn = 0;
    uint8_t *rb = read_all(rp, &rn);
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dir);
    write_all(p, rb, rn);
    w = NULL;
    TEST_CHECK(kd_weights_open(dir, &w, &e) == KD_OK && strstr(kd_weights_path(w), ".safetensors"), "safetensors win over .bin");
    kd_weights_close(w);
    snprintf(p, sizeof p, "%s/model.ckpt", dir);
    write_all(p, blob, n);
    w = NULL;
    TEST_CHECK(kd_weights_open(p, &w, &e) == KD_OK && kd_weights_count(w) == N_TINY, ".ckpt opens like .bin: %s", e.msg);
    kd_weights_close(w);
    snprintf(p, sizeof p, "%s/weights.pt", dir); /* .pt / .pth are read like .bin */
    write_all(p, blob, n);
    w = NULL;
    TEST_CHECK(kd_weights_open(p, &w, &e) == KD_OK && kd_weights_count(w) == N_TINY, ".pt opens: %s", e.msg);
    kd_weights_close(w);
    free(rb);
    free(blob);
    free(rp);
    free(bin);
    kd_st_close(ref);
}

static float *case_tensor(const kd_st_file *f, const char *name, int64_t *shape) {
    const kd_st_tensor *t = kd_st_find(f, name);
    if (!t) return NULL;
    float *p = malloc((size_t)t->nbytes);
    memcpy(p, t->t.data, (size_t)t->nbytes);
    if (shape)
        for (int i = 0; i < t->t.ndim; i++) shape[i] = t->t.shape[i];
    return p;
}

/* The ControlNet U-Net saved by diffusers as .bin runs exactly like our safetensors original. */
static void test_unet(void) {
    kd_ctx *ctx = NULL;
    if (kd_ctx_create(NULL, &ctx) != KD_OK) {
        TEST_CHECK(0, "kd_ctx_create");
        return;
    }
    char *bin_dir = path_of("torch_zip/unet_bin"), *st_dir = path_of("unet/v22_hint"),
         *cases = path_of("unet/v22_hint_cases.safetensors");
    kd_unet *ub = NULL, *us = NULL;
    kd_status s = kd_unet_load(ctx, bin_dir, &ub);
    TEST_CHECK(s == KD_OK, "kd_unet_load(%s): %s", bin_dir, kd_ctx_last_error(ctx));
    s = kd_unet_load(ctx, st_dir, &us);
    TEST_CHECK(s == KD_OK, "kd_unet_load(%s): %s", st_dir, kd_ctx_last_error(ctx));
    kd_st_file *f = NULL;
    kd_err e = {0};
    TEST_CHECK(kd_st_open(cases, &f, &e) == KD_OK, "open %s: %s", cases, e.msg);
    if (ub && us && f) {
        int64_t ssh[4] = {0}, osh[4] = {0};
        float *sample = case_tensor(f, "b1_8x8.sample", ssh), *img = case_tensor(f, "b1_8x8.image_embeds", NULL),
              *hint = case_tensor(f, "b1_8x8.hint", NULL), *ref = case_tensor(f, "b1_8x8.t999.out", osh);
        TEST_CHECK(sample && img && hint && ref, "case b1_8x8 present");
        if (sample && img && hint && ref) {
            float t999 = 999;
            kd_unet_cond c = {.timesteps = &t999, .image_embeds = img, .hint = hint};
            size_t n = (size_t)(osh[0] * osh[1] * osh[2] * osh[3]);
            float *ob = malloc(n * sizeof(float)), *os = malloc(n * sizeof(float));
            kd_status sb = kd_unet_forward(ctx, ub, sample, 1, (int)ssh[2], (int)ssh[3], &c, ob);
            TEST_CHECK(sb == KD_OK, ".bin U-Net forward: %s", kd_ctx_last_error(ctx));
            kd_status ss = kd_unet_forward(ctx, us, sample, 1, (int)ssh[2], (int)ssh[3], &c, os);
            TEST_CHECK(ss == KD_OK, "safetensors U-Net forward: %s", kd_ctx_last_error(ctx));
            if (sb == KD_OK && ss == KD_OK) {
                TEST_CHECK(memcmp(ob, os, n * sizeof(float)) == 0, "U-Net from .bin: output bit-identical to the safetensors run");
                kt_allclose("unet_bin b1_8x8 t999 vs diffusers", ob, ref, n, 1e-4 * kt_max_abs(ref, n), 1e-4);
            }
            free(ob);
            free(os);
        }
        free(sample);
        free(img);
        free(hint);
        free(ref);
    }
    kd_st_close(f);
    kd_unet_free(ub);
    kd_unet_free(us);
    kd_ctx_free(ctx);
    free(bin_dir);
    free(st_dir);
    free(cases);
}

static kd_status status_named(const char *s) {
    if (!strcmp(s, "FORMAT")) return KD_ERR_FORMAT;
    if (!strcmp(s, "UNSUPPORTED")) return KD_ERR_UNSUPPORTED;
    if (!strcmp(s, "NOT_FOUND")) return KD_ERR_NOT_FOUND;
    if (!strcmp(s, "IO")) return KD_ERR_IO;
    if (!strcmp(s, "OOM")) return KD_ERR_OOM;
    return KD_OK;
}

static void test_malformed(void) {
    char *dir = path_of("torch_zip/malformed");
    char p[1200];
    snprintf(p, sizeof p, "%s/cases.txt", dir);
    FILE *cf = fopen(p, "r");
    TEST_CHECK(cf != NULL, "open %s", p);
    if (!cf) {
        free(dir);
        return;
    }
    char line[512], listed[128][64];
    int n_listed = 0, n_ok = 0;
    while (fgets(line, sizeof line, cf)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = '\0';
        char file[64], status[32];
        int used = 0;
        if (sscanf(line, "%63s %31s %n", file, status, &used) < 2 || !used) {
            TEST_CHECK(0, "bad cases.txt line '%s'", line);
            continue;
        }
        const char *sub = line + used;
        if (n_listed < 128) snprintf(listed[n_listed++], sizeof listed[0], "%s", file);
        snprintf(p, sizeof p, "%s/%s", dir, file);
        kd_tz_file *f = NULL;
        kd_err e = {0};
        kd_status want = status_named(status), got = kd_tz_open(p, &f, &e);
        int ok = got == want && f == NULL && e.code == got && strstr(e.msg, sub) && strstr(e.msg, file);
        TEST_CHECK(ok, "%s: expected %s '%s', got %s: %s", file, status, sub, kd_status_str(got), e.msg);
        /* the same through kd_weights (a .bin path) */
        kd_weights *w = NULL;
        kd_err e2 = {0};
        got = kd_weights_open(p, &w, &e2);
        TEST_CHECK(got == want && !w && strstr(e2.msg, sub), "%s via kd_weights: %s", file, e2.msg);
        kd_weights_close(w);
        n_ok += ok;
    }
    fclose(cf);
    TEST_CHECK(n_listed >= 15, "%d malformed cases", n_listed);
    printf("  ok %-48s %d of %d refused with the expected message\n", "malformed/", n_ok, n_listed);
    /* every file in the folder is a listed case */
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.' || !strcmp(de->d_name, "cases.txt")) continue;
        int found = 0;
        for (int i = 0; i < n_listed && !found; i++) found = !strcmp(listed[i], de->d_name);
        TEST_CHECK(found, "malformed/%s is not listed in cases.txt", de->d_name);
    }
    if (d) closedir(d);
    free(dir);
}

/* ---- archives built here -------------------------------------------------------------------- */

typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void put16(buf *b, uint32_t v) { put(b, (uint8_t[]){(uint8_t)v, (uint8_t)(v >> 8)}, 2); }
static void put32(buf *b, uint32_t v) { put16(b, v & 0xffff), put16(b, v >> 16); }
static void put64(buf *b, uint64_t v) { put32(b, (uint32_t)v), put32(b, (uint32_t)(v >> 32)); }
static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* Pickle pieces. */
static void pk_str(buf *b, const char *s) {
    puts_(b, "X");
    put32(b, (uint32_t)strlen(s));
    puts_(b, s);
}
static void pk_int(buf *b, unsigned v) { put(b, (uint8_t[]){'K', (uint8_t)v}, 2); }

/* {name: FloatStorage key "0" of 6 elements viewed as [2, 3]}. */
static void state_dict_pickle(buf *b) {
    put(b, "\x80\x02}(", 4);
    pk_str(b, "w");
    puts_(b, "ctorch._utils\n_rebuild_tensor_v2\n((");
    pk_str(b, "storage");
    puts_(b, "ctorch\nFloatStorage\n");
    pk_str(b, "0");
    pk_str(b, "cpu");
    pk_int(b, 6);
    puts_(b, "tQ");
    pk_int(b, 0);
    pk_int(b, 2), pk_int(b, 3), put(b, "\x86", 1);
    pk_int(b, 3), pk_int(b, 1), put(b, "\x86", 1);
    puts_(b, "\x89}tRu.");
}

typedef struct zb {
    buf out, cd;
    size_t n;
} zb;

static void zb_add(zb *z, const char *name, const void *data, size_t len) {
    uint32_t crc = (uint32_t)crc32(0, data, (uInt)len), off = (uint32_t)z->out.n, nl = (uint32_t)strlen(name);
    put32(&z->out, 0x04034b50), put16(&z->out, 20), put16(&z->out, 0), put16(&z->out, 0), put32(&z->out, 0);
    put32(&z->out, crc), put32(&z->out, (uint32_t)len), put32(&z->out, (uint32_t)len), put16(&z->out, nl), put16(&z->out, 0);
    puts_(&z->out, name);
    put(&z->out, data, len);
    put32(&z->cd, 0x02014b50), put16(&z->cd, 20), put16(&z->cd, 20), put16(&z->cd, 0), put16(&z->cd, 0), put32(&z->cd, 0);
    put32(&z->cd, crc), put32(&z->cd, (uint32_t)len), put32(&z->cd, (uint32_t)len), put16(&z->cd, nl), put16(&z->cd, 0);
    put16(&z->cd, 0), put16(&z->cd, 0), put16(&z->cd, 0), put32(&z->cd, 0), put32(&z->cd, off);
    puts_(&z->cd, name);
    z->n++;
}

/* Appends the central directory and end records; zip64 adds the ZIP64 end record + locator. */
static void zb_finish(zb *z, int zip64) {
    uint64_t cd_off = z->out.n, cd_size = z->cd.n;
    put(&z->out, z->cd.p, z->cd.n);
    if (zip64) {
        uint64_t rec = z->out.n;
        put32(&z->out, 0x06064b50), put64(&z->out, 44), put16(&z->out, 45), put16(&z->out, 45), put32(&z->out, 0);
        put32(&z->out, 0), put64(&z->out, z->n), put64(&z->out, z->n), put64(&z->out, cd_size), put64(&z->out, cd_off);
        put32(&z->out, 0x07064b50), put32(&z->out, 0), put64(&z->out, rec), put32(&z->out, 1);
    }
    uint32_t n16 = zip64 && z->n > 0xffff ? 0xffff : (uint32_t)(z->n & 0xffff);
    put32(&z->out, 0x06054b50), put16(&z->out, 0), put16(&z->out, 0), put16(&z->out, n16), put16(&z->out, n16);
    put32(&z->out, (uint32_t)cd_size), put32(&z->out, (uint32_t)cd_off), put16(&z->out, 0);
    free(z->cd.p);
    z->cd.p = NULL;
}

static void build_archive(zb *z, size_t n_pad) {
    memset(z, 0, sizeof *z);
    buf pk = {0};
    state_dict_pickle(&pk);
    float six[6] = {0, 1, 2, 3, 4, 5};
    zb_add(z, "a/data.pkl", pk.p, pk.n);
    zb_add(z, "a/data/0", six, sizeof six);
    zb_add(z, "a/version", "3\n", 2);
    char name[64];
    for (size_t i = 0; i < n_pad; i++) {
        snprintf(name, sizeof name, "a/pad/%zu", i);
        zb_add(z, name, "", 0);
    }
    free(pk.p);
}

/* {w: FloatStorage of 1 element viewed as [2^28] with stride 0} */
static void zb_expand(zb *z) {
    memset(z, 0, sizeof *z);
    buf b = {0};
    put(&b, "\x80\x02}(", 4);
    pk_str(&b, "w");
    puts_(&b, "ctorch._utils\n_rebuild_tensor_v2\n((");
    pk_str(&b, "storage");
    puts_(&b, "ctorch\nFloatStorage\n");
    pk_str(&b, "0");
    pk_str(&b, "cpu");
    pk_int(&b, 1);
    puts_(&b, "tQ");
    pk_int(&b, 0);
    put(&b, "J\x00\x00\x00\x10\x85", 6); /* (2^28,) */
    pk_int(&b, 0);
    puts_(&b, "\x85\x89}tRu.");
    float one = 1;
    zb_add(z, "a/data.pkl", b.p, b.n);
    zb_add(z, "a/data/0", &one, sizeof one);
    zb_add(z, "a/version", "3\n", 2);
    zb_finish(z, 0);
    free(b.p);
}

static void test_built(void) {
    kd_err e = {0};
    kd_tz_file *f = NULL;
    zb z;
    /* > 65535 entries: the count lives only in the ZIP64 end record */
    build_archive(&z, 70000);
    zb_finish(&z, 1);
    kd_status s = kd_tz_parse(z.out.p, z.out.n, "many.bin", NULL, &f, &e);
    TEST_CHECK(s == KD_OK && f->st.n_tensors == 1 && ((const float *)f->st.tensors[0].t.data)[5] == 5.0f,
               "70003 entries with a ZIP64 end record: %s", e.msg);
    kd_tz_close(f);
    free(z.out.p);
    /* the same without ZIP64: the 16-bit count wraps, and the directory does not match it */
    build_archive(&z, 70000);
    zb_finish(&z, 0);
    f = NULL;
    s = kd_tz_parse(z.out.p, z.out.n, "many16.bin", NULL, &f, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "follow the last of the"), "wrapped 16-bit count: %s", e.msg);
    free(z.out.p);

    /* limits: pickle size, copies/inflation budget */
    build_archive(&z, 0);
    zb_finish(&z, 0);
    kd_tz_limits lim = {.max_pickle = 16};
    f = NULL;
    s = kd_tz_parse(z.out.p, z.out.n, "lim.bin", &lim, &f, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "more than the limit of 16"), "pickle size limit: %s", e.msg);
    free(z.out.p);
    char *dp = path_of("torch_zip/tiny_deflate.bin");
    size_t n = 0;
    uint8_t *b = read_all(dp, &n);
    lim = (kd_tz_limits){.max_inflated = 100};
    f = NULL;
    s = kd_tz_parse(b, n, "tiny_deflate.bin", &lim, &f, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "beyond the limit of 100 bytes for inflated entries"), "inflate budget: %s",
               e.msg);
    free(b);
    free(dp);
    dp = path_of("torch_zip/tiny.bin");
    b = read_all(dp, &n);
    lim = (kd_tz_limits){.max_copied = 40}; /* transposed (48 bytes) is the first strided view */
    f = NULL;
    s = kd_tz_parse(b, n, "tiny.bin", &lim, &f, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "copying tensor 'transposed' (strided view)") &&
                   strstr(e.msg, "limit of 40 bytes for copies"),
               "copy budget: %s", e.msg);
    free(b);
    free(dp);
    /* a stride-0 view repeating one float 2^28 times: refused by the default copy budget */
    zb_expand(&z);
    f = NULL;
    s = kd_tz_parse(z.out.p, z.out.n, "expand.bin", NULL, &f, &e);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(e.msg, "copying tensor 'w' (strided view) needs 1073741824 more bytes"),
               "expanded view beyond the copy budget: %s", e.msg);
    free(z.out.p);
}

/* Every prefix of tiny.bin is refused; every single-byte change is refused with a message or
 * yields a file whose tensors still lie inside the buffer. Run under ASan this is a small
 * deterministic fuzz. */
static void test_corruptions(void) {
    char *p = path_of("torch_zip/tiny.bin");
    size_t n = 0;
    uint8_t *orig = read_all(p, &n);
    free(p);
    TEST_CHECK(orig && n > 1000, "read tiny.bin");
    if (!orig) return;
    uint8_t *b = malloc(n);
    size_t bad_prefix = 0, no_msg = 0, accepted = 0, outside = 0;
    for (size_t len = 0; len < n; len++) {
        memcpy(b, orig, len);
        kd_tz_file *f = NULL;
        kd_err e = {0};
        kd_status s = kd_tz_parse(b, len, "cut", NULL, &f, &e);
        if (s == KD_OK) bad_prefix++;
        else if (!e.msg[0]) no_msg++;
        kd_tz_close(f);
    }
    for (size_t i = 0; i < n; i++) {
        for (int v = 0; v < 2; v++) {
            memcpy(b, orig, n);
            b[i] = v ? (uint8_t)(orig[i] ^ 0xff) : (uint8_t)(orig[i] + 1);
            kd_tz_file *f = NULL;
            kd_err e = {0};
            kd_status s = kd_tz_parse(b, n, "flip", NULL, &f, &e);
            if (s != KD_OK) {
                no_msg += !e.msg[0];
                continue;
            }
            accepted++;
            for (size_t k = 0; k < f->st.n_tensors; k++) {
                const kd_st_tensor *t = &f->st.tensors[k];
                const uint8_t *d = t->t.data;
                if (!f->copied[k] && t->nbytes && (d < b || d + t->nbytes > b + n)) outside++;
            }
            kd_tz_close(f);
        }
    }
    TEST_CHECK(bad_prefix == 0, "%zu truncations of tiny.bin accepted", bad_prefix);
    TEST_CHECK(no_msg == 0, "%zu failures without a message", no_msg);
    TEST_CHECK(outside == 0, "%zu tensors outside the buffer", outside);
    printf("  ok %-48s %zu cuts refused, %zu of %zu byte changes accepted (padding, data)\n", "corruptions of tiny.bin", n,
           accepted, 2 * n);
    free(b);
    free(orig);
}

int main(void) {
    test_tiny();
    test_lightning();
    test_weights();
    test_unet();
    test_malformed();
    test_built();
    test_corruptions();
    return kt_finish("test_torch_zip");
}
