/* Strict JSON (a validating scan in front of cJSON) and typed config.json getters.
 * See config.h for why cJSON is not trusted on its own. */
#include "io/config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- UTF-8 ------------------------------------------------------------------------------- */

/* Length of the sequence starting at s[0] (1..4), or 0 if invalid (reason in *why). */
static size_t utf8_seq(const uint8_t *s, size_t avail, const char **why) {
    uint8_t c = s[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1Fu; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0Fu; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07u; min = 0x10000; }
    else {
        *why = c == 0xC0 || c == 0xC1 ? "overlong encoding"
             : c >= 0xF8             ? "byte 0xF8-0xFF, never valid in UTF-8"
             : c >= 0xF5             ? "code point above U+10FFFF"
                                     : "unexpected continuation byte";
        return 0;
    }
    if (avail < len) {
        *why = "truncated multi-byte sequence";
        return 0;
    }
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) {
            *why = "truncated multi-byte sequence";
            return 0;
        }
        cp = (cp << 6) | (s[k] & 0x3Fu);
    }
    if (cp < min) *why = "overlong encoding";
    else if (cp >= 0xD800 && cp <= 0xDFFF) *why = "encoded UTF-16 surrogate";
    else if (cp > 0x10FFFF) *why = "code point above U+10FFFF";
    else return len;
    return 0;
}

size_t kd_utf8_invalid_at(const uint8_t *s, size_t n, const char **why) {
    const char *reason = NULL;
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_seq(s + i, n - i, &reason);
        if (!len) break;
        i += len;
    }
    if (why) *why = i < n ? reason : NULL;
    return i;
}

/* ---- strict scan ------------------------------------------------------------------------- */

/* Numbers that are not exact integers, by ordinal in document order (usually few or none). */
typedef struct jnum {
    size_t ordinal;
    int type_bits; /* 0 (fraction/exponent) or KD_JSON_BIGINT */
} jnum;

typedef struct jscan {
    const char *s;
    size_t n, i;
    size_t n_values, n_numbers;
    jnum *odd;
    size_t n_odd, cap_odd;
    kd_status code;
    char why[160];
} jscan;

static int scan_fail(jscan *js, kd_status code, const char *fmt, ...) KD_PRINTF(3, 4);
static int scan_fail(jscan *js, kd_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(js->why, sizeof js->why, fmt, ap);
    va_end(ap);
    js->code = code;
    return 0;
}

static int at_end(const jscan *js) { return js->i >= js->n; }
static char peek(const jscan *js) { return at_end(js) ? '\0' : js->s[js->i]; }

/* JSON whitespace is exactly these four; cJSON would also skip every other control byte. */
static void skip_ws(jscan *js) {
    while (!at_end(js)) {
        char c = js->s[js->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        js->i++;
    }
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                   : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                   : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                          : 16u;
        if (d == 16) return 0;
        v = v * 16 + d;
    }
    *out = v;
    return 1;
}

/* At the 'u' of "\uXXXX"; consumes the escape (and the low half of a surrogate pair). */
static int scan_u_escape(jscan *js) {
    unsigned cp, lo;
    if (js->n - js->i < 5 || !hex4(js->s + js->i + 1, &cp))
        return scan_fail(js, KD_ERR_FORMAT, "\\u must be followed by 4 hex digits");
    js->i += 5;
    /* cJSON would silently cut the string at U+0000; names with NUL cannot be C strings. */
    if (cp == 0) return scan_fail(js, KD_ERR_FORMAT, "\\u0000 in a string is not supported");
    if (cp >= 0xDC00 && cp <= 0xDFFF) return scan_fail(js, KD_ERR_FORMAT, "lone UTF-16 low surrogate \\u%04X", cp);
    if (cp < 0xD800 || cp > 0xDBFF) return 1;
    if (js->n - js->i < 6 || js->s[js->i] != '\\' || js->s[js->i + 1] != 'u' || !hex4(js->s + js->i + 2, &lo) ||
        lo < 0xDC00 || lo > 0xDFFF)
        return scan_fail(js, KD_ERR_FORMAT, "lone UTF-16 high surrogate \\u%04X", cp);
    js->i += 6;
    return 1;
}

static int scan_string(jscan *js) {
    js->i++; /* opening quote */
    for (;;) {
        if (at_end(js)) return scan_fail(js, KD_ERR_FORMAT, "unterminated string");
        unsigned char c = (unsigned char)js->s[js->i];
        if (c == '"') {
            js->i++;
            return 1;
        }
        if (c < 0x20) return scan_fail(js, KD_ERR_FORMAT, "raw control character 0x%02X in a string", c);
        if (c != '\\') {
            js->i++;
            continue;
        }
        js->i++;
        char x = peek(js);
        if (x == 'u') {
            if (!scan_u_escape(js)) return 0;
        } else if (x && strchr("\"\\/bfnrt", x)) {
            js->i++;
        } else {
            return scan_fail(js, KD_ERR_FORMAT, "invalid escape sequence in a string");
        }
    }
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int note_odd_number(jscan *js, int type_bits) {
    if (js->n_odd == js->cap_odd) {
        size_t cap = js->cap_odd ? js->cap_odd * 2 : 16;
        jnum *p = realloc(js->odd, cap * sizeof *p);
        if (!p) return scan_fail(js, KD_ERR_OOM, "out of memory");
        js->odd = p;
        js->cap_odd = cap;
    }
    js->odd[js->n_odd].ordinal = js->n_numbers;
    js->odd[js->n_odd].type_bits = type_bits;
    js->n_odd++;
    return 1;
}

/* 1 if the digits d[0..n) (no sign) are at most 2^53, so a double holds the value exactly. */
static int digits_fit_2p53(const char *d, size_t n) {
    if (n < 16) return 1;
    if (n > 16) return 0;
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) v = v * 10 + (uint64_t)(d[k] - '0');
    return v <= (UINT64_C(1) << 53);
}

static int scan_digits(jscan *js) {
    if (!is_digit(peek(js))) return 0;
    while (is_digit(peek(js))) js->i++;
    return 1;
}

static int scan_number(jscan *js) {
    size_t start = js->i;
    if (peek(js) == '-') js->i++;
    size_t int_start = js->i;
    if (peek(js) == '0') {
        js->i++;
        if (is_digit(peek(js))) return scan_fail(js, KD_ERR_FORMAT, "number with a leading zero");
    } else if (!scan_digits(js)) {
        return scan_fail(js, KD_ERR_FORMAT, "invalid number");
    }
    size_t int_len = js->i - int_start;
    int plain = 1;
    if (peek(js) == '.') {
        js->i++;
        plain = 0;
        if (!scan_digits(js)) return scan_fail(js, KD_ERR_FORMAT, "number needs digits after '.'");
    }
    if (peek(js) == 'e' || peek(js) == 'E') {
        js->i++;
        plain = 0;
        if (peek(js) == '+' || peek(js) == '-') js->i++;
        if (!scan_digits(js)) return scan_fail(js, KD_ERR_FORMAT, "number needs digits in its exponent");
    }
    if (js->i - start > KD_JSON_MAX_NUMBER_CHARS)
        return scan_fail(js, KD_ERR_FORMAT, "number literal longer than %d characters", KD_JSON_MAX_NUMBER_CHARS);
    int ok = 1;
    if (!plain) ok = note_odd_number(js, 0);
    else if (!digits_fit_2p53(js->s + int_start, int_len)) ok = note_odd_number(js, KD_JSON_BIGINT);
    js->n_numbers++;
    return ok;
}

static int scan_literal(jscan *js, const char *word) {
    size_t len = strlen(word);
    if (js->n - js->i < len || memcmp(js->s + js->i, word, len) != 0)
        return scan_fail(js, KD_ERR_FORMAT, "invalid literal (expected '%s')", word);
    js->i += len;
    return 1;
}

static int scan_scalar(jscan *js) {
    char c = peek(js);
    if (c == '"') return scan_string(js);
    if (c == '-' || is_digit(c)) return scan_number(js);
    if (c == 't') return scan_literal(js, "true");
    if (c == 'f') return scan_literal(js, "false");
    if (c == 'n') return scan_literal(js, "null");
    if (at_end(js)) return scan_fail(js, KD_ERR_FORMAT, "unexpected end of input, expected a value");
    if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7f)
        return scan_fail(js, KD_ERR_FORMAT, "unexpected character '%c', expected a value", c);
    return scan_fail(js, KD_ERR_FORMAT, "unexpected byte 0x%02X, expected a value", (unsigned char)c);
}

/* An object member's key and colon. */
static int scan_key(jscan *js) {
    skip_ws(js);
    if (peek(js) != '"') return scan_fail(js, KD_ERR_FORMAT, "expected a string key");
    if (!scan_string(js)) return 0;
    skip_ws(js);
    if (peek(js) != ':') return scan_fail(js, KD_ERR_FORMAT, "expected ':' after an object key");
    js->i++;
    return 1;
}

/* After a value: closes finished containers. Returns 1 when another value follows, 2 when the
 * document is complete, 0 on error. */
static int scan_after_value(jscan *js, const char *stack, int *depth) {
    for (;;) {
        skip_ws(js);
        if (*depth == 0) {
            if (at_end(js)) return 2;
            return scan_fail(js, KD_ERR_FORMAT, "unexpected data after the top-level value");
        }
        int in_obj = stack[*depth - 1] == '{';
        char c = peek(js);
        if (c == ',') {
            js->i++;
            return in_obj ? scan_key(js) : 1;
        }
        if (c == (in_obj ? '}' : ']')) {
            js->i++;
            (*depth)--;
            continue;
        }
        if (at_end(js)) return scan_fail(js, KD_ERR_FORMAT, "unexpected end of input inside an %s", in_obj ? "object" : "array");
        return scan_fail(js, KD_ERR_FORMAT, in_obj ? "expected ',' or '}' after an object member"
                                                   : "expected ',' or ']' after an array element");
    }
}

/* The whole document, iteratively (an explicit stack, so hostile nesting cannot overflow ours). */
static int scan_document(jscan *js) {
    char stack[KD_JSON_MAX_DEPTH];
    int depth = 0;
    for (;;) {
        skip_ws(js);
        if (++js->n_values > KD_JSON_MAX_VALUES)
            return scan_fail(js, KD_ERR_OOM, "more than %u values (limit)", (unsigned)KD_JSON_MAX_VALUES);
        char c = peek(js);
        if (c == '{' || c == '[') {
            if (depth == KD_JSON_MAX_DEPTH)
                return scan_fail(js, KD_ERR_FORMAT, "nesting deeper than %d levels", KD_JSON_MAX_DEPTH);
            stack[depth++] = c;
            js->i++;
            skip_ws(js);
            if (peek(js) == (c == '{' ? '}' : ']')) {
                js->i++;
                depth--;
            } else {
                if (c == '{' && !scan_key(js)) return 0;
                continue;
            }
        } else if (!scan_scalar(js)) {
            return 0;
        }
        int r = scan_after_value(js, stack, &depth);
        if (r != 1) return r == 2;
    }
}

/* ---- tree annotation --------------------------------------------------------------------- */

typedef struct jmark {
    const jnum *odd;
    size_t n_odd, k, ordinal;
    const char *origin;
    kd_err *e;
} jmark;

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate keys: cJSON keeps both and its lookup finds the first, Python's json keeps the last,
 * so a file with duplicates means different things to different readers. Reject. */
static kd_status check_duplicate_keys(const cJSON *obj, const char *where, const jmark *m) {
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    if (n < 2) return KD_OK;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys) return kd_errf(m->e, KD_ERR_OOM, "%s: out of memory checking keys", m->origin);
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next) keys[i++] = c->string;
    qsort(keys, n, sizeof *keys, cmp_str_ptr);
    kd_status s = KD_OK;
    for (i = 1; i < n && s == KD_OK; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            if (where) s = kd_errf(m->e, KD_ERR_FORMAT, "%s: duplicate key '%s' in object '%s'", m->origin, keys[i], where);
            else s = kd_errf(m->e, KD_ERR_FORMAT, "%s: duplicate key '%s' in the top-level object", m->origin, keys[i]);
        }
    }
    free(keys);
    return s;
}

/* Visits every item in document order, numbering the numbers as the scan did. */
static kd_status mark_tree(cJSON *item, const char *where, jmark *m) {
    if (cJSON_IsNumber(item)) {
        int bits = KD_JSON_INT;
        if (m->k < m->n_odd && m->odd[m->k].ordinal == m->ordinal) bits = m->odd[m->k++].type_bits;
        item->type |= bits;
        m->ordinal++;
        return KD_OK;
    }
    if (cJSON_IsObject(item)) KD_TRY(check_duplicate_keys(item, where, m));
    for (cJSON *c = item->child; c; c = c->next)
        KD_TRY(mark_tree(c, cJSON_IsObject(item) ? c->string : where, m));
    return KD_OK;
}

static void line_col(const char *s, size_t at, size_t *line, size_t *col) {
    *line = 1;
    size_t line_start = 0;
    for (size_t k = 0; k < at; k++) {
        if (s[k] == '\n') {
            (*line)++;
            line_start = k + 1;
        }
    }
    *col = at - line_start + 1;
}

static kd_status build_tree(const char *text, size_t len, const jscan *js, const char *origin, cJSON **out,
                            kd_err *e) {
    /* cJSON needs a NUL-terminated copy, and with require_null_terminated it only succeeds when
     * the length it is given includes that NUL. The scan has proved there is no NUL inside. */
    char *copy = malloc(len + 1);
    if (!copy) return kd_errf(e, KD_ERR_OOM, "%s: out of memory (%zu bytes of JSON)", origin, len);
    memcpy(copy, text, len);
    copy[len] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(copy, len + 1, &end, 1);
    size_t at = end ? (size_t)(end - copy) : 0;
    free(copy);
    if (!root) return kd_errf(e, KD_ERR_OOM, "%s: cJSON could not build the tree (byte %zu; out of memory?)", origin, at);
    jmark m = {js->odd, js->n_odd, 0, 0, origin, e};
    kd_status s = mark_tree(root, NULL, &m);
    if (s == KD_OK && m.ordinal != js->n_numbers)
        s = kd_errf(e, KD_ERR_INTERNAL, "%s: cJSON saw %zu numbers, the scan %zu", origin, m.ordinal, js->n_numbers);
    if (s != KD_OK) {
        cJSON_Delete(root);
        return s;
    }
    *out = root;
    return KD_OK;
}

kd_status kd_json_parse(const char *text, size_t len, const char *origin, cJSON **out, kd_err *e) {
    *out = NULL;
    if (!origin) origin = "<json>";
    if (!text && len) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: NULL text", origin);
    const char *why = NULL;
    size_t bad = kd_utf8_invalid_at((const uint8_t *)text, len, &why);
    if (bad < len) return kd_errf(e, KD_ERR_FORMAT, "%s: not valid UTF-8 at byte %zu (%s)", origin, bad, why);
    jscan js = {.s = text, .n = len};
    if (!scan_document(&js)) {
        size_t line, col;
        line_col(text, js.i, &line, &col);
        free(js.odd);
        return kd_errf(e, js.code, "%s: JSON error at line %zu, column %zu (byte %zu): %s", origin, line, col, js.i,
                       js.why);
    }
    kd_status s = build_tree(text, len, &js, origin, out, e);
    free(js.odd);
    return s;
}

/* ---- item helpers ------------------------------------------------------------------------ */

int kd_json_int(const cJSON *item, int64_t *out) {
    if (!cJSON_IsNumber(item) || !(item->type & KD_JSON_INT)) return 0;
    *out = (int64_t)item->valuedouble;
    return 1;
}

const char *kd_json_kind(const cJSON *item) {
    if (!item) return "absent";
    if (cJSON_IsNumber(item)) {
        if (item->type & KD_JSON_INT) return "an integer";
        if (item->type & KD_JSON_BIGINT) return "an integer beyond +-2^53";
        return "a floating-point number";
    }
    if (cJSON_IsBool(item)) return "a boolean";
    if (cJSON_IsNull(item)) return "null";
    if (cJSON_IsString(item)) return "a string";
    if (cJSON_IsArray(item)) return "an array";
    if (cJSON_IsObject(item)) return "an object";
    return "an invalid item";
}

/* ---- printing ---------------------------------------------------------------------------- */

void kd_json_print_string(const char *s, FILE *f) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* Shortest %g form that reads back to the same double, always with a '.' or exponent so a
 * float stays a float when the output is parsed again. */
static const char *format_double(double v, char *buf, size_t cap) {
    if (!isfinite(v)) {
        snprintf(buf, cap, "%s", v > 0 ? "1e999" : "-1e999"); /* what overflowed to inf when parsed */
        return buf;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eE") && strlen(buf) + 3 <= cap) strcat(buf, ".0");
    return buf;
}

static void print_number(const cJSON *item, FILE *f) {
    if (item->type & KD_JSON_INT) fprintf(f, "%" PRId64, (int64_t)item->valuedouble);
    else if (item->type & KD_JSON_BIGINT) fprintf(f, "%.0f", item->valuedouble);
    else {
        char buf[48];
        fputs(format_double(item->valuedouble, buf, sizeof buf), f);
    }
}

static void print_indent(FILE *f, int n) {
    for (int i = 0; i < n; i++) fputc(' ', f);
}

static int is_container(const cJSON *item) { return cJSON_IsArray(item) || cJSON_IsObject(item); }

/* Arrays of scalars go on one line ([320, 640, 1280, 1280] reads better than a column). */
static int flat_array(const cJSON *item) {
    if (!cJSON_IsArray(item)) return 0;
    for (const cJSON *c = item->child; c; c = c->next)
        if (is_container(c)) return 0;
    return 1;
}

void kd_json_print(const cJSON *item, FILE *f, int indent) {
    if (!item) return;
    if (cJSON_IsNumber(item)) print_number(item, f);
    else if (cJSON_IsString(item)) kd_json_print_string(item->valuestring, f);
    else if (cJSON_IsBool(item)) fputs(cJSON_IsTrue(item) ? "true" : "false", f);
    else if (cJSON_IsNull(item)) fputs("null", f);
    else if (!item->child) fputs(cJSON_IsArray(item) ? "[]" : "{}", f);
    else if (flat_array(item)) {
        fputc('[', f);
        for (const cJSON *c = item->child; c; c = c->next) {
            kd_json_print(c, f, indent);
            if (c->next) fputs(", ", f);
        }
        fputc(']', f);
    } else {
        int obj = cJSON_IsObject(item);
        fputs(obj ? "{\n" : "[\n", f);
        for (const cJSON *c = item->child; c; c = c->next) {
            print_indent(f, indent + 2);
            if (obj) {
                kd_json_print_string(c->string, f);
                fputs(": ", f);
            }
            kd_json_print(c, f, indent + 2);
            fputs(c->next ? ",\n" : "\n", f);
        }
        print_indent(f, indent);
        fputc(obj ? '}' : ']', f);
    }
}

/* ---- config ------------------------------------------------------------------------------ */

static kd_status read_small_file(const char *path, char **text, size_t *len, kd_err *e) {
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return kd_errf(e, errno == ENOENT ? KD_ERR_NOT_FOUND : KD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return kd_errf(e, KD_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > KD_CONFIG_MAX_BYTES) {
        fclose(fp);
        return kd_errf(e, KD_ERR_OOM, "%s: file is %lld bytes; JSON config files are limited to %u MB", path,
                       (long long)st.st_size, KD_CONFIG_MAX_BYTES >> 20);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n ? n : 1);
    if (!buf) {
        fclose(fp);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, n, fp);
    fclose(fp);
    if (got != n) {
        free(buf);
        return kd_errf(e, KD_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    *text = buf;
    *len = n;
    return KD_OK;
}

kd_status kd_config_load(const char *path, kd_config *cfg, kd_err *e) {
    if (!cfg || !path) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_config_load: NULL argument");
    memset(cfg, 0, sizeof *cfg);
    char *text = NULL;
    size_t len = 0;
    KD_TRY(read_small_file(path, &text, &len, e));
    kd_status s = kd_config_parse(text, len, path, cfg, e);
    free(text);
    return s;
}

kd_status kd_config_parse(const char *text, size_t len, const char *origin, kd_config *cfg, kd_err *e) {
    if (!cfg) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_config_parse: NULL config");
    memset(cfg, 0, sizeof *cfg);
    if (!origin) origin = "<config>";
    if (len > KD_CONFIG_MAX_BYTES)
        return kd_errf(e, KD_ERR_OOM, "%s: %zu bytes; JSON config files are limited to %u MB", origin, len,
                       KD_CONFIG_MAX_BYTES >> 20);
    cJSON *root;
    KD_TRY(kd_json_parse(text, len, origin, &root, e));
    if (!cJSON_IsObject(root)) {
        kd_status s = kd_errf(e, KD_ERR_FORMAT, "%s: top level is %s, expected an object", origin, kd_json_kind(root));
        cJSON_Delete(root);
        return s;
    }
    size_t olen = strlen(origin);
    cfg->origin = malloc(olen + 1);
    if (!cfg->origin) {
        cJSON_Delete(root);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
    }
    memcpy(cfg->origin, origin, olen + 1);
    cfg->root = root;
    return KD_OK;
}

void kd_config_free(kd_config *cfg) {
    if (!cfg) return;
    cJSON_Delete(cfg->root);
    free(cfg->origin);
    cfg->root = NULL;
    cfg->origin = NULL;
}

/* Tries the whole remaining path as a key, else descends at the first dot whose left part names
 * an object. No backtracking, so a lookup costs one pass over the path whatever the file holds;
 * the price is that "a.b.c" is not found under an object key "a.b" when an object "a" exists. */
static const cJSON *object_child(const cJSON *obj, const char *key, size_t klen) {
    for (const cJSON *c = obj->child; c; c = c->next)
        if (cJSON_IsObject(c) && strlen(c->string) == klen && memcmp(c->string, key, klen) == 0) return c;
    return NULL;
}

static const cJSON *lookup(const cJSON *obj, const char *path) {
    while (cJSON_IsObject(obj)) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, path);
        if (it) return it;
        const cJSON *next = NULL;
        const char *dot = strchr(path, '.');
        while (dot && !(next = object_child(obj, path, (size_t)(dot - path)))) dot = strchr(dot + 1, '.');
        if (!next) return NULL;
        obj = next;
        path = dot + 1;
    }
    return NULL;
}

const cJSON *kd_config_get(const kd_config *cfg, const char *key) {
    if (!cfg || !cfg->root || !key) return NULL;
    return lookup(cfg->root, key);
}

int kd_config_has(const kd_config *cfg, const char *key) {
    const cJSON *it = kd_config_get(cfg, key);
    return it && !cJSON_IsNull(it);
}

/* Converters shared by scalar and array getters: 1 on success. */
typedef int (*conv_fn)(const cJSON *it, void *out);

static int conv_int(const cJSON *it, void *out) { return kd_json_int(it, (int64_t *)out); }

static int conv_float(const cJSON *it, void *out) {
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) return 0;
    *(double *)out = it->valuedouble;
    return 1;
}

static int conv_bool(const cJSON *it, void *out) {
    if (!cJSON_IsBool(it)) return 0;
    *(int *)out = cJSON_IsTrue(it) ? 1 : 0;
    return 1;
}

static int conv_str(const cJSON *it, void *out) {
    if (!cJSON_IsString(it)) return 0;
    *(const char **)out = it->valuestring;
    return 1;
}

/* "a floating-point number (3.5)", "a string ("abc")": the kind, and the value when short. */
static const char *describe(const cJSON *it, char *buf, size_t cap) {
    char num[48];
    if (cJSON_IsNumber(it)) {
        if (it->type & (KD_JSON_INT | KD_JSON_BIGINT)) snprintf(num, sizeof num, "%.0f", it->valuedouble);
        else format_double(it->valuedouble, num, sizeof num);
        snprintf(buf, cap, "%s (%s)", kd_json_kind(it), num);
    } else if (cJSON_IsString(it)) {
        snprintf(buf, cap, "a string (\"%.40s%s\")", it->valuestring, strlen(it->valuestring) > 40 ? "..." : "");
    } else {
        snprintf(buf, cap, "%s", kd_json_kind(it));
    }
    return buf;
}

static kd_status wrong_type(const kd_config *cfg, const char *key, const cJSON *it, const char *expected, kd_err *e) {
    char d[96];
    return kd_errf(e, KD_ERR_FORMAT, "%s: key '%s' is %s, expected %s", cfg->origin, key, describe(it, d, sizeof d),
                   expected);
}

static kd_status get_scalar(const kd_config *cfg, const char *key, conv_fn conv, void *out, const char *expected,
                            int optional, kd_err *e) {
    if (!cfg || !cfg->root || !key || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "config getter: NULL argument");
    const cJSON *it = kd_config_get(cfg, key);
    if (optional && (!it || cJSON_IsNull(it))) return KD_ERR_NOT_FOUND; /* caller applies the default */
    if (!it) return kd_errf(e, KD_ERR_NOT_FOUND, "%s: missing key '%s'", cfg->origin, key);
    if (!conv(it, out)) return wrong_type(cfg, key, it, expected, e);
    return KD_OK;
}

kd_status kd_config_int(const kd_config *cfg, const char *key, int64_t *out, kd_err *e) {
    return get_scalar(cfg, key, conv_int, out, "an integer", 0, e);
}
kd_status kd_config_float(const kd_config *cfg, const char *key, double *out, kd_err *e) {
    return get_scalar(cfg, key, conv_float, out, "a finite number", 0, e);
}
kd_status kd_config_bool(const kd_config *cfg, const char *key, int *out, kd_err *e) {
    return get_scalar(cfg, key, conv_bool, out, "true or false", 0, e);
}
kd_status kd_config_str(const kd_config *cfg, const char *key, const char **out, kd_err *e) {
    return get_scalar(cfg, key, conv_str, out, "a string", 0, e);
}

kd_status kd_config_int_or(const kd_config *cfg, const char *key, int64_t def, int64_t *out, kd_err *e) {
    kd_status s = get_scalar(cfg, key, conv_int, out, "an integer", 1, e);
    if (s == KD_ERR_NOT_FOUND) *out = def;
    return s == KD_ERR_NOT_FOUND ? KD_OK : s;
}
kd_status kd_config_float_or(const kd_config *cfg, const char *key, double def, double *out, kd_err *e) {
    kd_status s = get_scalar(cfg, key, conv_float, out, "a finite number", 1, e);
    if (s == KD_ERR_NOT_FOUND) *out = def;
    return s == KD_ERR_NOT_FOUND ? KD_OK : s;
}
kd_status kd_config_bool_or(const kd_config *cfg, const char *key, int def, int *out, kd_err *e) {
    kd_status s = get_scalar(cfg, key, conv_bool, out, "true or false", 1, e);
    if (s == KD_ERR_NOT_FOUND) *out = def;
    return s == KD_ERR_NOT_FOUND ? KD_OK : s;
}
kd_status kd_config_str_or(const kd_config *cfg, const char *key, const char *def, const char **out, kd_err *e) {
    kd_status s = get_scalar(cfg, key, conv_str, out, "a string", 1, e);
    if (s == KD_ERR_NOT_FOUND) *out = def;
    return s == KD_ERR_NOT_FOUND ? KD_OK : s;
}

/* expected is the element kind ("an integer"), plural the array's ("integers"). */
static kd_status get_array(const kd_config *cfg, const char *key, conv_fn conv, void *out, size_t elem, int max,
                           int *n, const char *expected, const char *plural, kd_err *e) {
    if (!cfg || !cfg->root || !key || !out || !n || max < 0)
        return kd_errf(e, KD_ERR_INVALID_ARG, "config array getter: bad argument");
    *n = 0;
    const cJSON *arr = kd_config_get(cfg, key);
    if (!arr) return kd_errf(e, KD_ERR_NOT_FOUND, "%s: missing key '%s'", cfg->origin, key);
    if (!cJSON_IsArray(arr)) {
        char want[64];
        snprintf(want, sizeof want, "an array of %s", plural);
        return wrong_type(cfg, key, arr, want, e);
    }
    int count = cJSON_GetArraySize(arr);
    if (count > max)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: key '%s' has %d elements, at most %d are supported", cfg->origin,
                       key, count, max);
    int i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        if (!conv(c, (char *)out + (size_t)i * elem)) {
            char d[96];
            return kd_errf(e, KD_ERR_FORMAT, "%s: key '%s'[%d] is %s, expected %s", cfg->origin, key, i,
                           describe(c, d, sizeof d), expected);
        }
    }
    *n = count;
    return KD_OK;
}

kd_status kd_config_int_array(const kd_config *cfg, const char *key, int64_t *out, int max, int *n, kd_err *e) {
    return get_array(cfg, key, conv_int, out, sizeof *out, max, n, "an integer", "integers", e);
}
kd_status kd_config_float_array(const kd_config *cfg, const char *key, double *out, int max, int *n, kd_err *e) {
    return get_array(cfg, key, conv_float, out, sizeof *out, max, n, "a finite number", "numbers", e);
}
kd_status kd_config_str_array(const kd_config *cfg, const char *key, const char **out, int max, int *n,
                              kd_err *e) {
    return get_array(cfg, key, conv_str, (void *)out, sizeof *out, max, n, "a string", "strings", e);
}

void kd_config_print(const kd_config *cfg, FILE *f) {
    if (!cfg || !cfg->root) return;
    kd_json_print(cfg->root, f, 0);
    fputc('\n', f);
}
