/* safetensors reader/writer and weight sets.
 *   - a malformed-file suite: one crafted file per rule, each rejected with the expected status
 *     and a message naming the rule (some go through kd_st_open on disk, the rest kd_st_parse);
 *   - every truncation of a small valid file;
 *   - round trips through kd_st_write for every dtype, empty and scalar tensors, metadata;
 *   - weight sets: sharded index, path escapes, duplicates across shards, bind and its messages,
 *     f32 conversion (also from an odd address), folder resolution, kd_inspect output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api/ctx.h"
#include "io/safetensors.h"
#include "io/weights.h"
#include "testutil.h"

/* ---- helpers ----------------------------------------------------------------------------- */

typedef struct image {
    uint8_t *p;
    size_t n;
} image;

/* 8-byte length (declared, or the real header length if declared == UINT64_MAX), header, and
 * data_len bytes of a counting pattern. */
static image mk_raw(uint64_t declared, const char *hdr, size_t hlen, size_t data_len) {
    image im;
    im.n = 8 + hlen + data_len;
    im.p = malloc(im.n ? im.n : 1);
    uint64_t len = declared == UINT64_MAX ? hlen : declared;
    for (int i = 0; i < 8; i++) im.p[i] = (uint8_t)(len >> (8 * i));
    memcpy(im.p + 8, hdr, hlen);
    for (size_t i = 0; i < data_len; i++) im.p[8 + hlen + i] = (uint8_t)(i * 7 + 1);
    return im;
}

static image mk(const char *hdr, size_t data_len) { return mk_raw(UINT64_MAX, hdr, strlen(hdr), data_len); }

static void expect_status(kd_status got, kd_status want, const kd_err *e, const char *sub, const char *label) {
    TEST_CHECK(got == want, "%s: status %s, expected %s (message: %s)", label, kd_status_str(got),
               kd_status_str(want), e->msg);
    TEST_CHECK(got != KD_OK && strstr(e->msg, sub) != NULL, "%s: message '%s' lacks '%s'", label, e->msg, sub);
}

static void expect_bad(image im, kd_status want, const char *sub, const char *label) {
    kd_st_file *f = (kd_st_file *)1;
    kd_err e = {0};
    kd_status s = kd_st_parse(im.p, im.n, "bad.safetensors", &f, &e);
    expect_status(s, want, &e, sub, label);
    TEST_CHECK(f == NULL, "%s: *out is NULL on failure", label);
    if (s == KD_OK) kd_st_close(f);
    free(im.p);
}

static const char *tmp_path(const char *dir, const char *name) {
    static char buf[8][8900];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    TEST_CHECK(f != NULL, "create %s", path);
    if (!f) return;
    if (n) fwrite(p, 1, n, f);
    fclose(f);
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

/* Same check through the file system and mmap. */
static void expect_bad_file(image im, kd_status want, const char *sub, const char *label) {
    const char *path = tmp_path(kt_tmp_dir("safetensors"), "bad.safetensors");
    write_bytes(path, im.p, im.n);
    kd_st_file *f = NULL;
    kd_err e = {0};
    kd_status s = kd_st_open(path, &f, &e);
    expect_status(s, want, &e, sub, label);
    TEST_CHECK(strstr(e.msg, "bad.safetensors") != NULL, "%s: message names the file: %s", label, e.msg);
    if (s == KD_OK) kd_st_close(f);
    free(im.p);
}

/* ---- malformed files --------------------------------------------------------------------- */

typedef struct bad_case {
    const char *label, *hdr;
    size_t data_len;
    kd_status want;
    const char *sub;
} bad_case;

#define T1 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"

static const bad_case bad_cases[] = {
    {"invalid UTF-8 in header", "{\"a\xff\":{}}", 0, KD_ERR_FORMAT, "not valid UTF-8 at byte 3 (byte 0xF8-0xFF"},
    {"stray continuation byte", "{\"a\x80\":{}}", 0, KD_ERR_FORMAT, "at byte 3 (unexpected continuation byte)"},
    {"4-byte lead above U+10FFFF", "{\"\xf5\x80\x80\x80\":{}}", 0, KD_ERR_FORMAT, "code point above U+10FFFF"},
    {"overlong UTF-8", "{\"\xc0\xaf\":{}}", 0, KD_ERR_FORMAT, "overlong encoding"},
    {"latin-1 tensor name", "{\"caf\xe9\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, KD_ERR_FORMAT,
     "not valid UTF-8"},
    {"UTF-8 surrogate", "{\"\xed\xb0\x80\":{}}", 0, KD_ERR_FORMAT, "encoded UTF-16 surrogate"},
    {"JSON array at top level", "[]", 0, KD_ERR_FORMAT, "header is an array, expected a JSON object"},
    {"JSON string at top level", "\"x\"", 0, KD_ERR_FORMAT, "header is a string"},
    {"trailing garbage", "{" T1 "}x", 8, KD_ERR_FORMAT, "unexpected data after the top-level value"},
    {"NUL padding", "{" T1 "}\0\0\0", 8, KD_ERR_FORMAT, "unexpected data after the top-level value"},
    {"not JSON", "{a}", 0, KD_ERR_FORMAT, "expected a string key"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "tensor 'a': unknown dtype 'F33'"},
    {"unsupported dtype F64", "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, KD_ERR_UNSUPPORTED,
     "tensor 'a': dtype F64 is not supported"},
    {"unsupported dtype I32", "{\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, KD_ERR_UNSUPPORTED,
     "dtype I32 is not supported"},
    {"unsupported dtype U8", "{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, KD_ERR_UNSUPPORTED,
     "dtype U8 is not supported"},
    {"unsupported dtype BOOL", "{\"a\":{\"dtype\":\"BOOL\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8,
     KD_ERR_UNSUPPORTED, "dtype BOOL is not supported"},
    {"lower-case dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "unknown dtype 'f32'"},
    {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "dtype is an integer, expected a string"},
    {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "tensor 'a': shape[0] is -1, expected a non-negative integer"},
    {"float dim 3.5", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,3.5],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "shape[1] is a floating-point number, expected a non-negative integer"},
    {"float dim 2.0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "shape[0] is a floating-point number"},
    {"exponent dim 2e0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "shape[0] is a floating-point number"},
    {"string dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "shape[0] is a string"},
    {"shape [2^32, 2^32] overflow",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "element count of the shape overflows 64 bits"},
    {"byte size overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,8]}}", 8,
     KD_ERR_FORMAT, "byte size of the shape overflows 64 bits"},
    {"overflow before a zero dim",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0, KD_ERR_FORMAT,
     "overflows 64 bits"},
    {"dim above 2^53", "{\"a\":{\"dtype\":\"F32\",\"shape\":[9007199254740993],\"data_offsets\":[0,8]}}", 8,
     KD_ERR_FORMAT, "shape[0] is larger than 2^53"},
    {"20-digit dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[18446744073709551617],\"data_offsets\":[0,8]}}", 8,
     KD_ERR_FORMAT, "shape[0] is larger than 2^53"},
    {"1e999 dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e999],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "shape[0] is a floating-point number"},
    {"70-digit number",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1111111111111111111111111111111111111111111111111111111111111111111111],"
     "\"data_offsets\":[0,8]}}",
     8, KD_ERR_FORMAT, "number literal longer than 63 characters"},
    {"9 dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
     KD_ERR_UNSUPPORTED, "tensor 'a': 9 dimensions, at most 8"},
    {"shape not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "shape is a string, expected an array"},
    {"data_offsets of length 1", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", 8, KD_ERR_FORMAT,
     "data_offsets has 1 elements, expected 2"},
    {"data_offsets of length 3", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8,
     KD_ERR_FORMAT, "data_offsets has 3 elements, expected 2"},
    {"data_offsets not an array", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{}}}", 8, KD_ERR_FORMAT,
     "data_offsets is an object, expected [begin, end]"},
    {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, KD_ERR_FORMAT,
     "data_offsets[0] is -8"},
    {"float offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8, KD_ERR_FORMAT,
     "data_offsets[1] is a floating-point number"},
    {"begin > end", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, KD_ERR_FORMAT,
     "data_offsets [8, 0] has begin > end"},
    {"size mismatch vs shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "data_offsets [0, 8] span 8 bytes but F32 [3] needs 12"},
    {"hole between tensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, KD_ERR_FORMAT, "tensor 'b' begins at byte 8 but the previous tensor 'a' ends at 4 (hole)"},
    {"overlap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, KD_ERR_FORMAT, "tensor 'b' [4, 8] overlaps tensor 'a' [0, 8]"},
    {"same range twice",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, KD_ERR_FORMAT, "overlaps"},
    {"empty tensor inside another",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
     8, KD_ERR_FORMAT, "overlaps"},
    {"not starting at 0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, KD_ERR_FORMAT,
     "tensor 'a' is the first in the data area but begins at byte 4, not 0 (hole)"},
    {"extra bytes at end", "{" T1 "}", 12, KD_ERR_FORMAT,
     "tensors end at byte 8 of the data area but it has 12 bytes (4 extra bytes at the end of the file)"},
    {"no tensors but data", "{}", 4, KD_ERR_FORMAT, "tensors end at byte 0 of the data area but it has 4 bytes"},
    {"data area too short", "{" T1 "}", 4, KD_ERR_FORMAT, "tensor 'a' ends at byte 8 but the data area has only 4 bytes"},
    {"duplicate tensor names", "{" T1 "," T1 "}", 8, KD_ERR_FORMAT, "duplicate key 'a' in the top-level object"},
    {"metadata non-string value", "{\"__metadata__\":{\"format\":\"pt\",\"n\":3}," T1 "}", 8, KD_ERR_FORMAT,
     "__metadata__ value of 'n' is an integer, expected a string"},
    {"metadata nested object", "{\"__metadata__\":{\"k\":{}}," T1 "}", 8, KD_ERR_FORMAT,
     "__metadata__ value of 'k' is an object"},
    {"metadata not an object", "{\"__metadata__\":[\"pt\"]," T1 "}", 8, KD_ERR_FORMAT,
     "__metadata__ is an array, expected an object of strings"},
    {"metadata a string", "{\"__metadata__\":\"pt\"," T1 "}", 8, KD_ERR_FORMAT, "__metadata__ is a string"},
    {"duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}," T1 "}", 8, KD_ERR_FORMAT,
     "duplicate key 'k' in object '__metadata__'"},
    {"two __metadata__", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, KD_ERR_FORMAT,
     "duplicate key '__metadata__'"},
    {"entry missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "tensor 'a': missing key 'dtype'"},
    {"entry missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, KD_ERR_FORMAT,
     "tensor 'a': missing key 'shape'"},
    {"entry missing data_offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, KD_ERR_FORMAT,
     "tensor 'a': missing key 'data_offsets'"},
    {"entry not an object", "{\"a\":[1,2]}", 0, KD_ERR_FORMAT,
     "tensor 'a' is an array, expected an object {dtype, shape, data_offsets}"},
    {"entry with an unknown key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8,
     KD_ERR_FORMAT, "tensor 'a': unknown key 'extra'"},
    {"entry with a duplicate key", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     8, KD_ERR_FORMAT, "duplicate key 'dtype' in object 'a'"},
    {"NUL in a tensor name", "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     KD_ERR_FORMAT, "\\u0000 in a string is not supported"},
    {"control character in header", "{\"a\":{\"dtype\":\"F32\",\x01\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
     KD_ERR_FORMAT, "expected a string key"},
    {"UTF-8 BOM", "\xef\xbb\xbf{}", 0, KD_ERR_FORMAT, "unexpected byte 0xEF"},
};

static void test_table(void) {
    size_t n = sizeof bad_cases / sizeof bad_cases[0];
    for (size_t i = 0; i < n; i++) {
        const bad_case *c = &bad_cases[i];
        /* "NUL padding" has bytes after its terminator: its header length is the literal's size. */
        size_t hlen = strcmp(c->label, "NUL padding") == 0 ? strlen(c->hdr) + 3 : strlen(c->hdr);
        image im = mk_raw(UINT64_MAX, c->hdr, hlen, c->data_len);
        if (i % 4 == 0) expect_bad_file(im, c->want, c->sub, c->label); /* a quarter through mmap */
        else expect_bad(im, c->want, c->sub, c->label);
    }
    printf("  malformed table: %zu crafted headers\n", n);
}

static void test_lengths(void) {
    expect_bad(mk_raw(1000, "{}", 2, 0), KD_ERR_FORMAT, "header length 1000 but only 2 bytes follow",
               "header length > file size");
    expect_bad(mk_raw(100000001, "{}", 2, 0), KD_ERR_FORMAT, "header length 100000001 exceeds the format's 100 MB limit",
               "header length > 100 MB");
    expect_bad(mk_raw(UINT64_MAX - 3, "{}", 2, 0), KD_ERR_FORMAT, "exceeds the format's 100 MB limit",
               "header length near 2^64 (8 + N would wrap)");
    expect_bad(mk_raw(0, "", 0, 0), KD_ERR_FORMAT, "header length is 0", "header length 0");
    expect_bad(mk_raw(0, "", 0, 8), KD_ERR_FORMAT, "header length is 0", "header length 0 with data");
    image five = {malloc(5), 5};
    memset(five.p, 2, 5);
    expect_bad(five, KD_ERR_FORMAT, "file is 5 bytes, too short for the 8-byte header length", "5-byte file");
    image empty = {malloc(1), 0};
    expect_bad(empty, KD_ERR_FORMAT, "file is 0 bytes", "empty buffer");
    image empty2 = {malloc(1), 0};
    expect_bad_file(empty2, KD_ERR_FORMAT, "file is 0 bytes", "empty file");
    image three = {malloc(3), 3};
    memset(three.p, 0, 3);
    expect_bad_file(three, KD_ERR_FORMAT, "file is 3 bytes", "3-byte file");
    expect_bad_file(mk_raw(64, "{}", 2, 0), KD_ERR_FORMAT, "truncated file?", "header length > file size (mmap)");
}

static void test_deep_nesting(void) {
    size_t depth = 10000;
    char *s = malloc(2 * depth + 16);
    size_t k = 0;
    s[k++] = '{';
    k += (size_t)sprintf(s + k, "\"a\":");
    for (size_t i = 0; i < depth; i++) s[k++] = '[';
    for (size_t i = 0; i < depth; i++) s[k++] = ']';
    s[k++] = '}';
    s[k] = '\0';
    expect_bad(mk(s, 0), KD_ERR_FORMAT, "nesting deeper than 512 levels", "10,000-deep nesting");
    free(s);
}

/* Every proper prefix of a valid file is invalid, and none may crash the reader. */
static void test_truncations(void) {
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
                      "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]}}";
    image full = mk(hdr, 20);
    kd_st_file *f;
    kd_err e = {0};
    TEST_CHECK(kd_st_parse(full.p, full.n, "full", &f, &e) == KD_OK, "the untruncated file is valid: %s", e.msg);
    kd_st_close(f);
    int bad = 0;
    for (size_t len = 0; len < full.n; len++) {
        uint8_t *copy = malloc(len ? len : 1); /* exact size, so ASan sees any read past the end */
        memcpy(copy, full.p, len);
        f = NULL;
        kd_status s = kd_st_parse(copy, len, "trunc", &f, &e);
        if (s != KD_ERR_FORMAT || f) bad++;
        if (f) kd_st_close(f);
        free(copy);
    }
    TEST_CHECK(bad == 0, "all %zu truncations rejected with KD_ERR_FORMAT (%d were not)", full.n, bad);
    /* and one byte more */
    uint8_t *longer = malloc(full.n + 1);
    memcpy(longer, full.p, full.n);
    longer[full.n] = 0;
    expect_bad((image){longer, full.n + 1}, KD_ERR_FORMAT, "1 extra bytes at the end", "one byte appended");
    free(full.p);
}

/* ---- valid files ------------------------------------------------------------------------- */

static void test_accepts(void) {
    const char *ok[] = {
        /* offsets in any header order; whitespace; null metadata (an Option in the reference) */
        "{ \"b\" : {\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},\n"
        "  \"a\" : {\"data_offsets\":[0,4],\"shape\":[],\"dtype\":\"F32\"}, \"__metadata__\": null }   ",
        /* zero-sized tensors at the start, middle and end; -0 is 0 */
        "{\"z0\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
        "\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
        "\"z1\":{\"dtype\":\"I64\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
        "\"b\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12]},"
        "\"z2\":{\"dtype\":\"F32\",\"shape\":[-0],\"data_offsets\":[12,12]}}",
        "{}",
        "{\"__metadata__\":{}}",
        "{\"\\u00e9\\ud83d\\ude00 \\\"q\\\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
    };
    const size_t data[] = {8, 12, 0, 0, 4};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        image im = mk(ok[i], data[i]);
        kd_st_file *f = NULL;
        kd_err e = {0};
        TEST_CHECK(kd_st_parse(im.p, im.n, "ok", &f, &e) == KD_OK, "valid header %zu accepted: %s", i, e.msg);
        for (size_t k = 0; f && k < f->n_tensors; k++)
            TEST_CHECK(kd_st_find(f, f->tensors[k].name) == &f->tensors[k], "find '%s'", f->tensors[k].name);
        if (f && i == 0) {
            TEST_CHECK(f->n_tensors == 2 && !strcmp(f->tensors[0].name, "b") && f->tensors[1].t.ndim == 0,
                       "header order kept, scalar shape");
            TEST_CHECK(f->tensors[0].t.data == (void *)(f->data + 4), "data pointer = data area + begin");
        }
        if (f && i == 4) TEST_CHECK(kd_st_find(f, "\xc3\xa9\xf0\x9f\x98\x80 \"q\"") != NULL, "escaped UTF-8 name");
        kd_st_close(f);
        free(im.p);
    }
}

static void test_roundtrip(void) {
    const char *dir = kt_tmp_dir("safetensors");
    const char *path = tmp_path(dir, "roundtrip.safetensors");
    float f32[6] = {1.5f, -2.25f, 0.0f, 3e-8f, 65504.0f, -1e30f};
    uint16_t f16[3], bf16[5];
    for (int i = 0; i < 3; i++) f16[i] = kd_f32_to_f16(f32[i]);
    for (int i = 0; i < 5; i++) bf16[i] = kd_f32_to_bf16(f32[i]);
    int64_t i64[2] = {-1, INT64_MAX};
    float scalar = 42.0f;
    kd_tensor t[6] = {
        {KD_F32, 2, {2, 3}, f32, NULL},   {KD_F16, 1, {3}, f16, NULL}, {KD_BF16, 3, {1, 5, 1}, bf16, NULL},
        {KD_I64, 1, {2}, i64, NULL},      {KD_F32, 2, {0, 7}, NULL, NULL}, {KD_F32, 0, {0}, &scalar, NULL},
    };
    const char *names[6] = {"w.f32", "w.f16", "w.bf16", "position_ids", "empty", "scalar"};
    kd_st_kv meta[2] = {{"format", "pt"}, {"note", "quote \" backslash \\ newline \n \xc3\xa9"}};
    kd_err e = {0};
    TEST_CHECK(kd_st_write(path, names, t, 6, meta, 2, &e) == KD_OK, "write: %s", e.msg);
    kd_st_file *f = NULL;
    TEST_CHECK(kd_st_open(path, &f, &e) == KD_OK, "open what we wrote: %s", e.msg);
    if (!f) return;
    TEST_CHECK(f->mapped && f->n_tensors == 6 && f->n_meta == 2, "6 tensors, 2 metadata entries, mapped");
    TEST_CHECK((f->data - f->base) % 8 == 0, "header padded to a multiple of 8");
    for (int i = 0; i < 6; i++) {
        const kd_st_tensor *st = kd_st_find(f, names[i]);
        TEST_CHECK(st && st->t.dtype == t[i].dtype && st->t.ndim == t[i].ndim, "'%s' dtype and rank", names[i]);
        if (!st) continue;
        TEST_CHECK(!memcmp(st->t.shape, t[i].shape, sizeof(int64_t) * (size_t)t[i].ndim), "'%s' shape", names[i]);
        TEST_CHECK(st->nbytes == kd_tensor_nbytes(&t[i]), "'%s' byte size", names[i]);
        TEST_CHECK(!st->nbytes || !memcmp(st->t.data, t[i].data, st->nbytes), "'%s' data", names[i]);
    }
    TEST_CHECK(kd_st_find(f, "nope") == NULL && kd_st_find(f, "") == NULL, "absent names");
    TEST_CHECK(kd_st_meta(f, "note") && !strcmp(kd_st_meta(f, "note"), meta[1].value), "metadata with escapes");
    TEST_CHECK(kd_st_meta(f, "nope") == NULL, "absent metadata key");
    kd_st_close(f);

    /* a file with no tensors and no metadata */
    TEST_CHECK(kd_st_write(path, NULL, NULL, 0, NULL, 0, &e) == KD_OK, "write empty: %s", e.msg);
    TEST_CHECK(kd_st_open(path, &f, &e) == KD_OK && f->n_tensors == 0, "open empty: %s", e.msg);
    kd_st_close(f);

    /* writer refuses what the reader would refuse */
    const char *dup[2] = {"x", "x"};
    kd_tensor two[2] = {{KD_F32, 0, {0}, &scalar, NULL}, {KD_F32, 0, {0}, &scalar, NULL}};
    expect_status(kd_st_write(path, dup, two, 2, NULL, 0, &e), KD_ERR_INVALID_ARG, &e, "duplicate tensor name 'x'",
                  "write duplicate");
    const char *reserved[1] = {"__metadata__"};
    expect_status(kd_st_write(path, reserved, two, 1, NULL, 0, &e), KD_ERR_INVALID_ARG, &e, "reserved", "write reserved");
    const char *latin1[1] = {"caf\xe9"};
    expect_status(kd_st_write(path, latin1, two, 1, NULL, 0, &e), KD_ERR_INVALID_ARG, &e, "not valid UTF-8",
                  "write bad UTF-8");
    kd_tensor neg = {KD_F32, 1, {-2}, &scalar, NULL};
    expect_status(kd_st_write(path, names, &neg, 1, NULL, 0, &e), KD_ERR_INVALID_ARG, &e, "bad shape", "write bad shape");
    expect_status(kd_st_write(tmp_path(dir, "no/such/dir/x.safetensors"), names, t, 1, NULL, 0, &e), KD_ERR_IO, &e,
                  "cannot create", "write to a missing folder");

    expect_status(kd_st_open(tmp_path(dir, "absent.safetensors"), &f, &e), KD_ERR_NOT_FOUND, &e, "cannot open",
                  "open a missing file");
    expect_status(kd_st_open(dir, &f, &e), KD_ERR_IO, &e, "not a regular file", "open a folder");
}

static void test_many_tensors(void) {
    enum { N = 1500 };
    static char namebuf[N][32];
    static const char *names[N];
    static kd_tensor t[N];
    static float vals[N];
    for (int i = 0; i < N; i++) {
        snprintf(namebuf[i], sizeof namebuf[i], "blocks.%d.weight", (i * 7919) % N);
        names[i] = namebuf[i];
        vals[i] = (float)i;
        t[i] = (kd_tensor){KD_F32, 1, {1}, &vals[i], NULL};
    }
    const char *path = tmp_path(kt_tmp_dir("safetensors"), "many.safetensors");
    kd_err e = {0};
    kd_st_file *f = NULL;
    TEST_CHECK(kd_st_write(path, names, t, N, NULL, 0, &e) == KD_OK, "write %d tensors: %s", N, e.msg);
    TEST_CHECK(kd_st_open(path, &f, &e) == KD_OK, "open: %s", e.msg);
    int wrong = 0;
    for (int i = 0; f && i < N; i++) {
        const kd_st_tensor *st = kd_st_find(f, names[i]);
        float v;
        if (!st) {
            wrong++;
            continue;
        }
        memcpy(&v, st->t.data, 4);
        wrong += v != (float)i;
    }
    TEST_CHECK(wrong == 0, "every one of %d tensors found with its value (%d wrong)", N, wrong);
    kd_st_close(f);
}

/* ---- weight sets ------------------------------------------------------------------------- */

static void write_st(const char *path, int n, const char *const *names, const kd_tensor *t) {
    kd_err e = {0};
    TEST_CHECK(kd_st_write(path, names, t, (size_t)n, NULL, 0, &e) == KD_OK, "write %s: %s", path, e.msg);
}

static float w_vals[6] = {0.5f, -1.0f, 2.0f, -0.0078125f, 3.0f, 1024.0f};
static uint16_t h_vals[3], b_vals[4];
static int64_t ids[4] = {0, 1, 2, 3};

/* folder/: a.safetensors {x.weight F32 [2,3], x.bias F16 [3]}, sub/b.safetensors
 * {y.weight BF16 [4], position_ids I64 [1,4]}, model.safetensors.index.json */
static const char *make_sharded(const char *name, const char *map_extra) {
    const char *dir = kt_tmp_dir(name);
    char sub[4400];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(sub, 0755);
    for (int i = 0; i < 3; i++) h_vals[i] = kd_f32_to_f16(w_vals[i]);
    for (int i = 0; i < 4; i++) b_vals[i] = kd_f32_to_bf16(w_vals[i + 2]);
    const char *na[2] = {"x.weight", "x.bias"}, *nb[2] = {"y.weight", "position_ids"};
    kd_tensor ta[2] = {{KD_F32, 2, {2, 3}, w_vals, NULL}, {KD_F16, 1, {3}, h_vals, NULL}};
    kd_tensor tb[2] = {{KD_BF16, 1, {4}, b_vals, NULL}, {KD_I64, 2, {1, 4}, ids, NULL}};
    write_st(tmp_path(dir, "a.safetensors"), 2, na, ta);
    write_st(tmp_path(dir, "sub/b.safetensors"), 2, nb, tb);
    char idx[2048];
    snprintf(idx, sizeof idx,
             "{\"metadata\": {\"total_size\": 72}, \"weight_map\": {\"x.weight\": \"a.safetensors\", "
             "\"x.bias\": \"a.safetensors\", \"y.weight\": \"sub/b.safetensors\", \"position_ids\": "
             "\"./sub/b.safetensors\"%s}}",
             map_extra);
    write_text(tmp_path(dir, "model.safetensors.index.json"), idx);
    return dir;
}

static void test_sharded_bind(void) {
    const char *dir = make_sharded("weights-ok", "");
    kd_weights *w = NULL;
    kd_err e = {0};
    TEST_CHECK(kd_weights_open(dir, &w, &e) == KD_OK, "open sharded folder: %s", e.msg);
    if (!w) return;
    TEST_CHECK(strstr(kd_weights_path(w), "model.safetensors.index.json") != NULL, "folder resolves to the index");
    TEST_CHECK(kd_weights_count(w) == 4 && kd_weights_n_files(w) == 2 && kd_weights_index(w), "4 tensors in 2 shards");
    TEST_CHECK(kd_weights_get(w, "y.weight") && strstr(kd_weights_file_of(w, "y.weight"), "sub/b.safetensors"),
               "tensor of the second shard and its file");
    TEST_CHECK(!strcmp(kd_weights_at(w, 0)->name, "position_ids") && !strcmp(kd_weights_at(w, 3)->name, "y.weight"),
               "listing sorted by name");

    kd_tensor wt, bt, opt;
    float *bias = NULL;
    kd_bind ok[] = {
        {"weight", &wt, 2, {2, 3}, 0, NULL, 0},
        {"bias", &bt, 1, {-1}, 0, &bias, 0},
        {"missing_but_optional", &opt, 1, {3}, 1, NULL, 0},
    };
    opt.data = (void *)1;
    TEST_CHECK(kd_weights_bind(w, "x.", ok, 3, &e) == KD_OK, "bind: %s", e.msg);
    TEST_CHECK(wt.dtype == KD_F32 && wt.ndim == 2 && wt.shape[1] == 3 && !memcmp(wt.data, w_vals, 24), "bound F32 view");
    TEST_CHECK(bt.dtype == KD_F16 && bias && bias[0] == 0.5f && bias[1] == -1.0f && bias[2] == 2.0f,
               "F16 bias converted to f32");
    TEST_CHECK(opt.data == NULL, "optional absent tensor leaves data NULL");
    TEST_CHECK(kd_weights_used_at(w, 1) && kd_weights_used_at(w, 2) && !kd_weights_used_at(w, 3),
               "used flags: x.bias, x.weight used; y.weight not");

    float *y = NULL;
    TEST_CHECK(kd_weights_f32(w, "y.weight", 1, (int64_t[]){4}, &y, &e) == KD_OK, "BF16 to f32: %s", e.msg);
    TEST_CHECK(y && y[0] == 2.0f && y[1] == -0.0078125f && y[2] == 3.0f && y[3] == 1024.0f, "BF16 values");
    float *y2 = NULL;
    kd_weights_f32(w, "y.weight", -1, NULL, &y2, &e);
    TEST_CHECK(y2 == y, "the f32 copy is made once");

    kd_bind missing[] = {{"conv1.weight", &wt, 2, {2, 3}, 0, NULL, 0}};
    expect_status(kd_weights_bind(w, "down_blocks.1.resnets.0.", missing, 1, &e), KD_ERR_NOT_FOUND, &e,
                  "model.safetensors.index.json: missing tensor 'down_blocks.1.resnets.0.conv1.weight'", "bind missing");
    kd_bind shape[] = {{"weight", &wt, 2, {2, 4}, 0, NULL, 0}};
    expect_status(kd_weights_bind(w, "x.", shape, 1, &e), KD_ERR_SHAPE, &e,
                  "a.safetensors: 'x.weight' has shape [2, 3], expected [2, 4]", "bind wrong shape");
    kd_bind rank[] = {{"x.weight", &wt, 4, {2, 3, 1, 1}, 0, NULL, 0}};
    expect_status(kd_weights_bind(w, NULL, rank, 1, &e), KD_ERR_SHAPE, &e, "has shape [2, 3], expected [2, 3, 1, 1]",
                  "bind wrong rank");
    kd_bind i64[] = {{"position_ids", &wt, 2, {1, 4}, 0, NULL, 0}};
    expect_status(kd_weights_bind(w, "", i64, 1, &e), KD_ERR_SHAPE, &e, "'position_ids' has dtype I64", "bind I64");
    expect_status(kd_weights_f32(w, "nope", -1, NULL, &y, &e), KD_ERR_NOT_FOUND, &e, "missing tensor 'nope'",
                  "f32 of a missing tensor");
    kd_weights_close(w);
}

static void expect_open_fails(const char *path, kd_status want, const char *sub, const char *label) {
    kd_weights *w = (kd_weights *)1;
    kd_err e = {0};
    expect_status(kd_weights_open(path, &w, &e), want, &e, sub, label);
    TEST_CHECK(w == NULL, "%s: *out NULL on failure", label);
}

static void test_sharded_errors(void) {
    const char *dir;
    dir = make_sharded("weights-dotdot", ", \"evil\": \"../x.safetensors\"");
    expect_open_fails(dir, KD_ERR_FORMAT, "shard '../x.safetensors' of tensor 'evil' has a '..' component", "../ shard");
    dir = make_sharded("weights-abs", ", \"evil\": \"/etc/passwd\"");
    expect_open_fails(dir, KD_ERR_FORMAT, "shard '/etc/passwd' of tensor 'evil' is an absolute path", "absolute shard");
    dir = make_sharded("weights-inner-dotdot", ", \"evil\": \"sub/../../x.safetensors\"");
    expect_open_fails(dir, KD_ERR_FORMAT, "has a '..' component", "inner .. shard");
    dir = make_sharded("weights-backslash", ", \"evil\": \"..\\\\x.safetensors\"");
    expect_open_fails(dir, KD_ERR_FORMAT, "contains a backslash", "backslash shard");
    dir = make_sharded("weights-nonstring", ", \"evil\": 3");
    expect_open_fails(dir, KD_ERR_FORMAT, "weight_map value of 'evil' is an integer", "non-string shard");
    dir = make_sharded("weights-absent-tensor", ", \"ghost\": \"a.safetensors\"");
    expect_open_fails(dir, KD_ERR_FORMAT, "weight_map puts tensor 'ghost' in shard 'a.safetensors' but that shard does not contain it",
                      "tensor missing from its shard");
    dir = make_sharded("weights-wrong-shard", ", \"x.weight\": \"sub/b.safetensors\"");
    expect_open_fails(dir, KD_ERR_FORMAT, "duplicate key 'x.weight' in object 'weight_map'", "duplicate weight_map key");
    dir = make_sharded("weights-missing-shard", ", \"ghost\": \"c.safetensors\"");
    expect_open_fails(dir, KD_ERR_NOT_FOUND, "shard 'c.safetensors'", "missing shard file");

    /* the same tensor in two shards */
    dir = kt_tmp_dir("weights-dup");
    float v = 1;
    const char *nx[1] = {"x"};
    kd_tensor tx = {KD_F32, 0, {0}, &v, NULL};
    write_st(tmp_path(dir, "s1.safetensors"), 1, nx, &tx);
    write_st(tmp_path(dir, "s2.safetensors"), 1, nx, &tx);
    write_text(tmp_path(dir, "diffusion_pytorch_model.safetensors.index.json"),
               "{\"weight_map\": {\"x\": \"s1.safetensors\", \"y\": \"s2.safetensors\"}}");
    expect_open_fails(dir, KD_ERR_FORMAT, "tensor 'x' is in two shards", "duplicate across shards");

    dir = kt_tmp_dir("weights-nomap");
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"metadata\": {}}");
    expect_open_fails(dir, KD_ERR_FORMAT, "no \"weight_map\"", "index without weight_map");
    write_text(tmp_path(dir, "model.safetensors.index.json"), "{\"weight_map\": []}");
    expect_open_fails(dir, KD_ERR_FORMAT, "\"weight_map\" is an array", "weight_map not an object");
}

static void test_folders(void) {
    kd_err e = {0};
    const char *dir = kt_tmp_dir("weights-pickle");
    write_text(tmp_path(dir, "diffusion_pytorch_model.bin"), "not really a pickle");
    expect_open_fails(dir, KD_ERR_UNSUPPORTED, "PyTorch pickles are not supported yet", "pickle-only folder");
    expect_open_fails(tmp_path(dir, "diffusion_pytorch_model.bin"), KD_ERR_UNSUPPORTED, "not supported yet", ".bin file");
    expect_open_fails(kt_tmp_dir("weights-empty"), KD_ERR_NOT_FOUND, "no weights found", "empty folder");
    expect_open_fails(tmp_path(dir, "nope"), KD_ERR_NOT_FOUND, "nope", "nonexistent path");

    /* diffusion_pytorch_model.safetensors wins over model.safetensors */
    dir = kt_tmp_dir("weights-order");
    float v = 1;
    const char *n1[1] = {"first"}, *n2[1] = {"second"};
    kd_tensor t = {KD_F32, 0, {0}, &v, NULL};
    write_st(tmp_path(dir, "model.safetensors"), 1, n2, &t);
    write_st(tmp_path(dir, "diffusion_pytorch_model.safetensors"), 1, n1, &t);
    kd_weights *w = NULL;
    TEST_CHECK(kd_weights_open(dir, &w, &e) == KD_OK && kd_weights_get(w, "first"), "diffusers name first: %s", e.msg);
    kd_weights_close(w);

    /* F16 data at an odd address: header length 61, so the data area starts at byte 69 */
    char hdr[62];
    snprintf(hdr, sizeof hdr, "%-61s", "{\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}");
    image im = mk_raw(UINT64_MAX, hdr, 61, 6);
    uint16_t hv[3] = {kd_f32_to_f16(1.0f), kd_f32_to_f16(-3.5f), kd_f32_to_f16(0.25f)};
    memcpy(im.p + 69, hv, 6);
    write_bytes(tmp_path(dir, "odd.safetensors"), im.p, im.n);
    free(im.p);
    w = NULL;
    float *out = NULL;
    TEST_CHECK(kd_weights_open(tmp_path(dir, "odd.safetensors"), &w, &e) == KD_OK, "open odd file: %s", e.msg);
    TEST_CHECK(w && kd_weights_f32(w, "h", 1, (int64_t[]){3}, &out, &e) == KD_OK && out[0] == 1.0f && out[1] == -3.5f &&
                   out[2] == 0.25f, "F16 from an odd address converts: %s", e.msg);
    kd_weights_close(w);
}

static void test_inspect(void) {
    const char *dir = make_sharded("inspect", "");
    write_text(tmp_path(dir, "config.json"), "{\"_class_name\": \"UNet2DConditionModel\", \"in_channels\": 4}");
    kd_ctx *ctx = NULL;
    kd_ctx_params p = kd_ctx_params_default();
    p.n_threads = 1;
    TEST_CHECK(kd_ctx_create(&p, &ctx) == KD_OK, "context");
    if (!ctx) return;
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    kd_status s = kd_inspect(ctx, dir, f);
    fclose(f);
    TEST_CHECK(s == KD_OK, "inspect a component folder: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(buf && strstr(buf, "\"in_channels\": 4") && strstr(buf, "x.weight") && strstr(buf, "[2, 3]") &&
                   strstr(buf, "total: 4 tensors, 13 parameters") && strstr(buf, "sharded: 2 files"),
               "inspect output has config, table, totals:\n%s", buf ? buf : "");
    free(buf);
    f = open_memstream(&buf, &size);
    s = kd_inspect(ctx, tmp_path(dir, "nope"), f);
    fclose(f);
    TEST_CHECK(s == KD_ERR_NOT_FOUND && strstr(kd_ctx_last_error(ctx), "no such file or folder"),
               "inspect a missing path: %s", kd_ctx_last_error(ctx));
    free(buf);

    /* a pipeline folder: model_index.json names unet/ (sharded weights), scheduler/ (config only)
     * and movq/ (absent); "../x" keys are not followed */
    char pipe[4300], unet[4400], sched[4400]; /* kt_tmp_dir's buffer is reused by the next call */
    snprintf(pipe, sizeof pipe, "%s", kt_tmp_dir("inspect-pipeline"));
    snprintf(unet, sizeof unet, "%s/unet", pipe);
    snprintf(sched, sizeof sched, "%s/scheduler", pipe);
    mkdir(unet, 0755);
    mkdir(sched, 0755);
    write_text(tmp_path(pipe, "model_index.json"),
               "{\"_class_name\": \"KandinskyV22Pipeline\", \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], "
               "\"scheduler\": [\"diffusers\", \"DDPMScheduler\"], \"movq\": [\"diffusers\", \"VQModel\"], "
               "\"..\": [\"x\", \"y\"]}");
    write_text(tmp_path(sched, "scheduler_config.json"), "{\"num_train_timesteps\": 1000}");
    float v = 2;
    const char *nm[1] = {"conv_in.weight"};
    kd_tensor tv = {KD_F32, 4, {1, 1, 1, 1}, &v, NULL};
    write_st(tmp_path(unet, "diffusion_pytorch_model.safetensors"), 1, nm, &tv);
    f = open_memstream(&buf, &size);
    s = kd_inspect(ctx, pipe, f);
    fclose(f);
    TEST_CHECK(s == KD_OK, "inspect a pipeline folder: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(buf && strstr(buf, "\"_class_name\": \"KandinskyV22Pipeline\"") && strstr(buf, "inspect-pipeline/unet ==") &&
                   strstr(buf, "conv_in.weight") && strstr(buf, "\"num_train_timesteps\": 1000") && !strstr(buf, "movq =="),
               "pipeline output:\n%s", buf ? buf : "");
    free(buf);

    /* a folder of loose safetensors files (fixtures): each one is listed */
    const char *loose = kt_tmp_dir("inspect-loose");
    const char *nl[1] = {"case.out"};
    write_st(tmp_path(loose, "one_cases.safetensors"), 1, nl, &tv);
    write_st(tmp_path(loose, "two_cases.safetensors"), 1, nl, &tv);
    f = open_memstream(&buf, &size);
    s = kd_inspect(ctx, loose, f);
    fclose(f);
    TEST_CHECK(s == KD_OK && buf && strstr(buf, "one_cases.safetensors\n") && strstr(buf, "two_cases.safetensors\n"),
               "loose files inspected (%s):\n%s", kd_ctx_last_error(ctx), buf ? buf : "");
    free(buf);

    /* a malformed shard is reported, and the walk goes on */
    write_text(tmp_path(unet, "diffusion_pytorch_model.safetensors"), "garbage!garbage!");
    f = open_memstream(&buf, &size);
    s = kd_inspect(ctx, pipe, f);
    fclose(f);
    TEST_CHECK(s == KD_ERR_FORMAT && strstr(kd_ctx_last_error(ctx), "diffusion_pytorch_model.safetensors: header length"),
               "bad shard status and message: %s", kd_ctx_last_error(ctx));
    TEST_CHECK(buf && strstr(buf, "error: ") && strstr(buf, "num_train_timesteps"), "error printed in place, walk continued");
    free(buf);
    kd_ctx_free(ctx);
}

int main(void) {
    test_table();
    test_lengths();
    test_deep_nesting();
    test_truncations();
    test_accepts();
    test_roundtrip();
    test_many_tensors();
    test_sharded_bind();
    test_sharded_errors();
    test_folders();
    test_inspect();
    return kt_finish("test_safetensors");
}
