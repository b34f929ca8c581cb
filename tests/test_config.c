/* Strict JSON and config.json getters: values, messages for missing and mistyped keys,
 * integer-vs-float, arrays, dotted paths, malformed documents, and print → parse round trips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/config.h"
#include "testutil.h"

#define ORIGIN "movq/config.json"

static const char *doc =
    "{\"_class_name\": \"VQModel\", \"latent_channels\": 4, \"scale\": 0.18215, \"flag\": true,\n"
    " \"name\": \"movq\", \"block_out_channels\": [128, 256, 256, 512], \"names\": [\"a\", \"b\"],\n"
    " \"floats\": [0.5, 1, 2e-3], \"null_key\": null, \"as_float\": 4.0, \"exp_int\": 1e3,\n"
    " \"big\": 9007199254740993, \"edge\": 9007199254740992, \"neg\": -7, \"zero\": -0,\n"
    " \"vision_config\": {\"hidden_size\": 1024, \"nested\": {\"deep\": 3}}, \"dotted.key\": 5,\n"
    " \"str_num\": \"4\", \"mixed\": [1, \"x\"], \"esc\": \"a\\u00e9\\n\\\"b\\ud83d\\ude00\", \"empty\": [],\n"
    " \"obj_list\": [{\"a\": 1}, {\"a\": 2.5}]}";

static void expect_err(kd_status got, kd_status want, const kd_err *e, const char *sub, const char *label) {
    TEST_CHECK(got == want, "%s: status %s, expected %s (message: %s)", label, kd_status_str(got),
               kd_status_str(want), e->msg);
    TEST_CHECK(got != KD_OK && strstr(e->msg, sub) != NULL, "%s: message '%s' lacks '%s'", label, e->msg, sub);
}

static void test_scalars(const kd_config *c) {
    kd_err e = {0};
    int64_t i = 0;
    double d = 0;
    int b = -1;
    const char *s = NULL;
    TEST_CHECK(kd_config_int(c, "latent_channels", &i, &e) == KD_OK && i == 4, "int: %lld %s", (long long)i, e.msg);
    TEST_CHECK(kd_config_int(c, "neg", &i, &e) == KD_OK && i == -7, "negative int");
    TEST_CHECK(kd_config_int(c, "zero", &i, &e) == KD_OK && i == 0, "-0 is the integer 0");
    TEST_CHECK(kd_config_int(c, "edge", &i, &e) == KD_OK && i == 9007199254740992LL, "2^53 is exact");
    TEST_CHECK(kd_config_float(c, "scale", &d, &e) == KD_OK && d == 0.18215, "float");
    TEST_CHECK(kd_config_float(c, "latent_channels", &d, &e) == KD_OK && d == 4.0, "an integer is a valid float");
    TEST_CHECK(kd_config_bool(c, "flag", &b, &e) == KD_OK && b == 1, "bool");
    TEST_CHECK(kd_config_str(c, "name", &s, &e) == KD_OK && s && !strcmp(s, "movq"), "string");
    TEST_CHECK(kd_config_str(c, "esc", &s, &e) == KD_OK && !strcmp(s, "a\xc3\xa9\n\"b\xf0\x9f\x98\x80"),
               "escapes and surrogate pair decode to UTF-8");
}

static void test_scalar_errors(const kd_config *c) {
    kd_err e = {0};
    int64_t i;
    double d;
    int b;
    const char *s;
    expect_err(kd_config_int(c, "nope", &i, &e), KD_ERR_NOT_FOUND, &e, ORIGIN ": missing key 'nope'", "missing int");
    expect_err(kd_config_int(c, "name", &i, &e), KD_ERR_FORMAT, &e,
               ORIGIN ": key 'name' is a string (\"movq\"), expected an integer", "int from string");
    expect_err(kd_config_int(c, "as_float", &i, &e), KD_ERR_FORMAT, &e,
               "key 'as_float' is a floating-point number (4.0), expected an integer", "4.0 is not an int");
    expect_err(kd_config_int(c, "scale", &i, &e), KD_ERR_FORMAT, &e, "floating-point number (0.18215)", "0.18215 int");
    expect_err(kd_config_int(c, "exp_int", &i, &e), KD_ERR_FORMAT, &e, "floating-point number (1000.0)", "1e3 int");
    expect_err(kd_config_int(c, "big", &i, &e), KD_ERR_FORMAT, &e, "beyond +-2^53", "2^53+1 int");
    expect_err(kd_config_int(c, "null_key", &i, &e), KD_ERR_FORMAT, &e, "key 'null_key' is null", "null int");
    expect_err(kd_config_int(c, "vision_config", &i, &e), KD_ERR_FORMAT, &e, "is an object", "object int");
    expect_err(kd_config_float(c, "str_num", &d, &e), KD_ERR_FORMAT, &e, "expected a finite number", "float str");
    expect_err(kd_config_bool(c, "latent_channels", &b, &e), KD_ERR_FORMAT, &e, "expected true or false", "bool int");
    expect_err(kd_config_str(c, "latent_channels", &s, &e), KD_ERR_FORMAT, &e, "is an integer (4), expected a string",
               "str int");
    expect_err(kd_config_str(c, "block_out_channels", &s, &e), KD_ERR_FORMAT, &e, "is an array", "str array");
}

static void test_defaults(const kd_config *c) {
    kd_err e = {0};
    int64_t i = 0;
    double d = 0;
    int b = 0;
    const char *s = NULL;
    TEST_CHECK(kd_config_int_or(c, "nope", 7, &i, &e) == KD_OK && i == 7, "int default when absent");
    TEST_CHECK(kd_config_int_or(c, "null_key", 8, &i, &e) == KD_OK && i == 8, "int default when null");
    TEST_CHECK(kd_config_int_or(c, "latent_channels", 8, &i, &e) == KD_OK && i == 4, "int_or present");
    TEST_CHECK(kd_config_float_or(c, "nope", 0.5, &d, &e) == KD_OK && d == 0.5, "float default");
    TEST_CHECK(kd_config_bool_or(c, "nope", 1, &b, &e) == KD_OK && b == 1, "bool default");
    TEST_CHECK(kd_config_str_or(c, "nope", NULL, &s, &e) == KD_OK && s == NULL, "NULL string default");
    TEST_CHECK(kd_config_str_or(c, "name", "x", &s, &e) == KD_OK && !strcmp(s, "movq"), "str_or present");
    expect_err(kd_config_int_or(c, "scale", 1, &i, &e), KD_ERR_FORMAT, &e, "expected an integer", "int_or wrong type");
    expect_err(kd_config_bool_or(c, "name", 1, &b, &e), KD_ERR_FORMAT, &e, "is a string", "bool_or wrong type");
    TEST_CHECK(kd_config_has(c, "latent_channels") && !kd_config_has(c, "null_key") && !kd_config_has(c, "nope"),
               "kd_config_has: present / null / absent");
}

static void test_arrays(const kd_config *c) {
    kd_err e = {0};
    int64_t iv[8];
    double dv[8];
    const char *sv[8];
    int n = -1;
    TEST_CHECK(kd_config_int_array(c, "block_out_channels", iv, 8, &n, &e) == KD_OK && n == 4 && iv[0] == 128 &&
                   iv[3] == 512, "int array");
    TEST_CHECK(kd_config_int_array(c, "empty", iv, 8, &n, &e) == KD_OK && n == 0, "empty array");
    TEST_CHECK(kd_config_float_array(c, "floats", dv, 8, &n, &e) == KD_OK && n == 3 && dv[1] == 1.0 && dv[2] == 2e-3,
               "float array with an integer element");
    TEST_CHECK(kd_config_str_array(c, "names", sv, 8, &n, &e) == KD_OK && n == 2 && !strcmp(sv[1], "b"), "str array");
    expect_err(kd_config_int_array(c, "block_out_channels", iv, 2, &n, &e), KD_ERR_UNSUPPORTED, &e,
               "key 'block_out_channels' has 4 elements, at most 2", "array too long");
    expect_err(kd_config_int_array(c, "mixed", iv, 8, &n, &e), KD_ERR_FORMAT, &e,
               "key 'mixed'[1] is a string (\"x\"), expected an integer", "mixed array");
    expect_err(kd_config_int_array(c, "floats", iv, 8, &n, &e), KD_ERR_FORMAT, &e, "key 'floats'[0] is a floating-point",
               "floats as ints");
    expect_err(kd_config_int_array(c, "latent_channels", iv, 8, &n, &e), KD_ERR_FORMAT, &e,
               "expected an array of integers", "scalar as array");
    expect_err(kd_config_str_array(c, "nope", sv, 8, &n, &e), KD_ERR_NOT_FOUND, &e, "missing key 'nope'", "absent array");
}

static void test_paths(const kd_config *c) {
    kd_err e = {0};
    int64_t i = 0;
    TEST_CHECK(kd_config_int(c, "vision_config.hidden_size", &i, &e) == KD_OK && i == 1024, "dotted path");
    TEST_CHECK(kd_config_int(c, "vision_config.nested.deep", &i, &e) == KD_OK && i == 3, "two levels");
    TEST_CHECK(kd_config_int(c, "dotted.key", &i, &e) == KD_OK && i == 5, "key containing a dot");
    expect_err(kd_config_int(c, "vision_config.nope", &i, &e), KD_ERR_NOT_FOUND, &e,
               "missing key 'vision_config.nope'", "absent nested key");
    expect_err(kd_config_int(c, "name.x", &i, &e), KD_ERR_NOT_FOUND, &e, "missing key 'name.x'", "path through a string");
    const cJSON *it = kd_config_get(c, "obj_list");
    TEST_CHECK(cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2, "raw item access");
}

typedef struct bad_doc {
    const char *label, *text;
    size_t len; /* 0 = strlen */
    kd_status want;
    const char *sub;
} bad_doc;

static char *deep_nesting(int depth, int objects) {
    size_t per = objects ? 5 : 1;
    char *s = malloc((size_t)depth * (per + 1) + 8);
    size_t k = 0;
    for (int i = 0; i < depth; i++) {
        if (objects) k += (size_t)sprintf(s + k, "{\"a\":");
        else s[k++] = '[';
    }
    s[k++] = '1';
    for (int i = 0; i < depth; i++) s[k++] = objects ? '}' : ']';
    s[k] = '\0';
    return s;
}

static void test_bad_documents(void) {
    char *deep_arr = deep_nesting(10000, 0), *deep_obj = deep_nesting(10000, 1), *ok_deep = deep_nesting(512, 0);
    char longnum[80];
    memset(longnum, '1', 70);
    longnum[70] = '\0';
    char longdoc[100];
    snprintf(longdoc, sizeof longdoc, "{\"a\": %s}", longnum);
    const bad_doc docs[] = {
        {"array top level", "[1, 2]", 0, KD_ERR_FORMAT, ORIGIN ": top level is an array, expected an object"},
        {"number top level", "3", 0, KD_ERR_FORMAT, "top level is an integer"},
        {"empty text", "", 0, KD_ERR_FORMAT, "unexpected end of input"},
        {"whitespace only", " \n ", 0, KD_ERR_FORMAT, "expected a value"},
        {"10000-deep arrays", deep_arr, 0, KD_ERR_FORMAT, "nesting deeper than 512 levels"},
        {"10000-deep objects", deep_obj, 0, KD_ERR_FORMAT, "nesting deeper than 512 levels"},
        {"trailing comma", "{\"a\": 1,}", 0, KD_ERR_FORMAT, "expected a string key"},
        {"trailing comma in array", "{\"a\": [1,]}", 0, KD_ERR_FORMAT, "expected a value"},
        {"leading zero", "{\"a\": 01}", 0, KD_ERR_FORMAT, "leading zero"},
        {"bare dot", "{\"a\": 1.}", 0, KD_ERR_FORMAT, "digits after '.'"},
        {"plus sign", "{\"a\": +1}", 0, KD_ERR_FORMAT, "unexpected character '+'"},
        {"NaN", "{\"a\": NaN}", 0, KD_ERR_FORMAT, "unexpected character 'N'"},
        {"single quotes", "{'a': 1}", 0, KD_ERR_FORMAT, "expected a string key"},
        {"comment", "{\"a\": 1} // c", 0, KD_ERR_FORMAT, "unexpected data after the top-level value"},
        {"trailing garbage", "{\"a\": 1}x", 0, KD_ERR_FORMAT, "unexpected data after the top-level value"},
        {"two documents", "{} {}", 0, KD_ERR_FORMAT, "unexpected data after the top-level value"},
        {"BOM", "\xef\xbb\xbf{}", 0, KD_ERR_FORMAT, "unexpected byte 0xEF"},
        {"control char outside strings", "{\x01}", 0, KD_ERR_FORMAT, "expected a string key"},
        {"raw newline in string", "{\"a\": \"x\ny\"}", 0, KD_ERR_FORMAT, "raw control character 0x0A in a string"},
        {"embedded NUL", "{}\0{}", 5, KD_ERR_FORMAT, "unexpected data after the top-level value"},
        {"invalid UTF-8", "{\"a\": \"\xff\"}", 0, KD_ERR_FORMAT, "not valid UTF-8 at byte 7"},
        {"overlong UTF-8", "{\"a\": \"\xc0\xaf\"}", 0, KD_ERR_FORMAT, "overlong encoding"},
        {"overlong 3-byte", "{\"a\": \"\xe0\x80\xaf\"}", 0, KD_ERR_FORMAT, "overlong encoding"},
        {"encoded surrogate", "{\"a\": \"\xed\xa0\x80\"}", 0, KD_ERR_FORMAT, "encoded UTF-16 surrogate"},
        {"above U+10FFFF", "{\"a\": \"\xf4\x90\x80\x80\"}", 0, KD_ERR_FORMAT, "above U+10FFFF"},
        {"truncated UTF-8", "{\"a\": \"\xe2\x82\"}", 0, KD_ERR_FORMAT, "truncated multi-byte sequence"},
        {"\\u0000", "{\"a\": \"x\\u0000y\"}", 0, KD_ERR_FORMAT, "\\u0000 in a string is not supported"},
        {"lone high surrogate", "{\"a\": \"\\ud800\"}", 0, KD_ERR_FORMAT, "lone UTF-16 high surrogate"},
        {"lone low surrogate", "{\"a\": \"\\udc00\"}", 0, KD_ERR_FORMAT, "lone UTF-16 low surrogate"},
        {"bad escape", "{\"a\": \"\\x\"}", 0, KD_ERR_FORMAT, "invalid escape"},
        {"short \\u", "{\"a\": \"\\u12\"}", 0, KD_ERR_FORMAT, "4 hex digits"},
        {"unterminated string", "{\"a\": \"abc", 0, KD_ERR_FORMAT, "unterminated string"},
        {"unterminated object", "{\"a\": 1", 0, KD_ERR_FORMAT, "unexpected end of input inside an object"},
        {"missing colon", "{\"a\" 1}", 0, KD_ERR_FORMAT, "expected ':'"},
        {"bad literal", "{\"a\": tru}", 0, KD_ERR_FORMAT, "expected 'true'"},
        {"duplicate key", "{\"a\": 1, \"b\": 2, \"a\": 3}", 0, KD_ERR_FORMAT, "duplicate key 'a' in the top-level object"},
        {"nested duplicate", "{\"vision_config\": {\"x\": 1, \"x\": 1}}", 0, KD_ERR_FORMAT,
         "duplicate key 'x' in object 'vision_config'"},
        {"64-char number", longdoc, 0, KD_ERR_FORMAT, "number literal longer than 63 characters"},
        {"line and column", "{\n  \"a\": 1,\n  \"b\": }", 0, KD_ERR_FORMAT, "line 3, column 8"},
    };
    for (size_t k = 0; k < sizeof docs / sizeof docs[0]; k++) {
        kd_config c;
        kd_err e = {0};
        size_t len = docs[k].len ? docs[k].len : strlen(docs[k].text);
        kd_status s = kd_config_parse(docs[k].text, len, ORIGIN, &c, &e);
        expect_err(s, docs[k].want, &e, docs[k].sub, docs[k].label);
        TEST_CHECK(c.root == NULL, "%s: no tree on failure", docs[k].label);
        kd_config_free(&c);
    }
    /* 512 levels is the limit, not beyond it: accepted as JSON, refused only as a top-level array. */
    cJSON *j = NULL;
    kd_err e = {0};
    TEST_CHECK(kd_json_parse(ok_deep, strlen(ok_deep), "deep", &j, &e) == KD_OK, "512 levels parse: %s", e.msg);
    cJSON_Delete(j);
    free(deep_arr);
    free(deep_obj);
    free(ok_deep);
}

static void test_value_limit(void) {
    size_t n = (size_t)KD_JSON_MAX_VALUES + 1, k = 0;
    char *s = malloc(2 * n + 16);
    k += (size_t)sprintf(s, "{\"a\":[");
    for (size_t i = 0; i < n; i++) {
        s[k++] = '0';
        s[k++] = ',';
    }
    s[k - 1] = ']';
    s[k++] = '}';
    kd_config c;
    kd_err e = {0};
    expect_err(kd_config_parse(s, k, ORIGIN, &c, &e), KD_ERR_OOM, &e, "values (limit)", "value count limit");
    free(s);
}

static void test_print_roundtrip(const kd_config *c) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    kd_config_print(c, f);
    fclose(f);
    TEST_CHECK(strstr(buf, "\"as_float\": 4.0") != NULL, "a float keeps its '.0' when printed");
    TEST_CHECK(strstr(buf, "\"block_out_channels\": [128, 256, 256, 512]") != NULL, "flat arrays on one line");
    kd_config c2;
    kd_err e = {0};
    TEST_CHECK(kd_config_parse(buf, size, "printed", &c2, &e) == KD_OK, "printed config parses again: %s", e.msg);
    int64_t i = 0;
    double d = 0;
    const char *s = NULL;
    TEST_CHECK(kd_config_int(&c2, "vision_config.nested.deep", &i, &e) == KD_OK && i == 3, "nested int survives");
    TEST_CHECK(kd_config_float(&c2, "scale", &d, &e) == KD_OK && d == 0.18215, "float survives exactly");
    TEST_CHECK(kd_config_int(&c2, "as_float", &i, &e) == KD_ERR_FORMAT, "4.0 is still a float after printing");
    TEST_CHECK(kd_config_str(&c2, "esc", &s, &e) == KD_OK && !strcmp(s, "a\xc3\xa9\n\"b\xf0\x9f\x98\x80"),
               "escaped string survives");
    kd_config_free(&c2);
    free(buf);
}

static void test_files(void) {
    const char *dir = kt_tmp_dir("config");
    char path[4200], big[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "wb");
    fputs("{\"latent_channels\": 4}", f);
    fclose(f);
    kd_config c;
    kd_err e = {0};
    int64_t i = 0;
    TEST_CHECK(kd_config_load(path, &c, &e) == KD_OK, "load: %s", e.msg);
    TEST_CHECK(kd_config_int(&c, "latent_channels", &i, &e) == KD_OK && i == 4, "loaded value");
    expect_err(kd_config_str(&c, "latent_channels", NULL, &e), KD_ERR_INVALID_ARG, &e, "NULL argument", "NULL out");
    expect_err(kd_config_int(&c, "x", &i, &e), KD_ERR_NOT_FOUND, &e, "config/config.json: missing key 'x'",
               "origin is the path");
    kd_config_free(&c);
    snprintf(big, sizeof big, "%s/nope.json", dir);
    expect_err(kd_config_load(big, &c, &e), KD_ERR_NOT_FOUND, &e, "cannot open", "missing file");
    expect_err(kd_config_load(dir, &c, &e), KD_ERR_IO, &e, "not a regular file", "folder");
    snprintf(big, sizeof big, "%s/big.json", dir);
    f = fopen(big, "wb");
    fputs("{}", f);
    fclose(f);
    TEST_CHECK(truncate(big, (off_t)KD_CONFIG_MAX_BYTES + 1) == 0, "make a sparse 16 MB + 1 file");
    expect_err(kd_config_load(big, &c, &e), KD_ERR_OOM, &e, "limited to 16 MB", "size limit");
    remove(big);
}

int main(void) {
    kd_config c;
    kd_err e = {0};
    kd_status s = kd_config_parse(doc, strlen(doc), ORIGIN, &c, &e);
    TEST_CHECK(s == KD_OK, "parse the test document: %s", e.msg);
    if (s == KD_OK) {
        test_scalars(&c);
        test_scalar_errors(&c);
        test_defaults(&c);
        test_arrays(&c);
        test_paths(&c);
        test_print_roundtrip(&c);
        kd_config_free(&c);
    }
    test_bad_documents();
    test_value_limit();
    test_files();
    return kt_finish("test_config");
}
