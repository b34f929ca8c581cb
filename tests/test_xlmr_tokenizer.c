/* XLM-R SentencePiece tokenizer against transformers 5.24's XLMRobertaTokenizer and against
 * sentencepiece (transformers 4's slow tokenizer) (fixtures: tools/reference/gen_xlmr_tokenizer.py):
 * exact ids and attention mask for every corpus prompt with both trained models, loaded from the
 * .model, from tokenizer.json, from the folder and from the same file in the Hub's older schema;
 * the normaliser on every code point; the real XLM-R files' structure (250000 pieces, <mask> =
 * 250001) on files built here; truncated / malformed files, invalid UTF-8, missing files; 10 MB
 * prompts (their time is printed, not checked). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "io/config.h"
#include "testutil.h"
#include "text/xlmr_tokenizer.h"

#define MAX_LEN 77

static int write_all(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

typedef struct {
    int n;
    char **s;
    size_t *len;
} lines;

/* kind 0: JSON strings; 1: raw text lines */
static int read_lines(const char *path, lines *L, int raw) {
    size_t n;
    char *text = kt_read_file(path, &n);
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
        } else if (!kt_json_string(p, ll, &L->s[L->n], &L->len[L->n])) {
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

/* "-": prompt left out (len -1); "=": same as the row of `same` */
static int read_refs(const char *rel, refs *R, const refs *same) {
    lines L;
    memset(R, 0, sizeof *R);
    if (!read_lines(kt_data_path(rel), &L, 1)) return 0;
    R->n = L.n;
    R->ids = calloc((size_t)L.n, sizeof *R->ids);
    R->len = calloc((size_t)L.n, sizeof *R->len);
    for (int i = 0; i < L.n; i++) {
        char *p = L.s[i], *end;
        int k = 0;
        if (!strcmp(p, "-")) {
            R->len[i] = -1;
            continue;
        }
        if (!strcmp(p, "=") && same && i < same->n) {
            memcpy(R->ids[i], same->ids[i], sizeof R->ids[i]);
            R->len[i] = same->len[i];
            continue;
        }
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
    int ok_n = 0, shown = 0, total = 0;
    for (int i = 0; i < g_corpus.n; i++) {
        if (R->len[i] < 0) continue;
        total++;
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
    printf("%s: %d / %d prompts exact (ids and mask)\n", label, ok_n, total);
    TEST_CHECK(ok_n == total && total > 0, "%s: %d of %d prompts differ from the reference", label, total - ok_n, total);
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
    static const char *const models[4] = {"m4k", "m2k", "u1k", "bpe1k"};
    static const int sizes[4] = {4000, 2000, 1000, 1000};
    for (int m = 0; m < 4; m++) {
        char rel[256], path[512], label[160];
        refs fast, slow;
        snprintf(rel, sizeof rel, "xlmr_tokenizer/%s_fast.txt", models[m]);
        int okf = read_refs(rel, &fast, NULL);
        snprintf(rel, sizeof rel, "xlmr_tokenizer/%s_slow.txt", models[m]);
        int oks = okf && read_refs(rel, &slow, &fast);
        TEST_CHECK(okf && oks, "%s: cannot read the reference ids", models[m]);
        if (!okf || !oks) continue;
        /* the XLM-R-like models also have their tokenizer.json; the folder loads that one */
        const char *files[3] = {"sentencepiece.bpe.model", "tokenizer.json", ""};
        for (int f = 0; f < (m < 2 ? 3 : 1); f++) {
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
        snprintf(rel, sizeof rel, "xlmr_tokenizer/%s", models[m]);
        kd_xlmr_tokenizer *t = load(kt_data_path(rel), KD_XLMR_SENTENCEPIECE);
        if (t) {
            snprintf(label, sizeof label, "%s sentencepiece mode vs sentencepiece (slow)", models[m]);
            check_corpus(label, t, &slow);
            kd_xlmr_tokenizer_free(t);
        }
        int dis = 0, tot = 0;
        for (int i = 0; i < fast.n && i < slow.n; i++) {
            if (fast.len[i] < 0) continue;
            tot++;
            dis += fast.len[i] != slow.len[i] || memcmp(fast.ids[i], slow.ids[i], (size_t)fast.len[i] * 4) != 0;
        }
        printf("%s: the slow and fast references differ on %d of %d prompts\n", models[m], dis, tot);
        free_refs(&fast);
        free_refs(&slow);
    }
}

/* hex code points separated by spaces → UTF-8 */
static size_t hex_cps(const char *s, const char *end, char *o) {
    size_t k = 0;
    for (;;) {
        while (s < end && *s == ' ') s++;
        if (s >= end || !((*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'F'))) break;
        char *e2;
        unsigned long v = strtoul(s, &e2, 16);
        k += kt_put_utf8((uint32_t)v, o + k);
        s = e2;
    }
    return k;
}

/* Every code point alone through both normalisers, against the tokenizers library and
 * sentencepiece's normalize() (m4k's nmt_nfkc charsmap). */
static void test_unicode_table(void) {
    size_t n;
    char *text = kt_read_file(kt_data_path("xlmr_tokenizer/unicode.txt"), &n);
    if (!text) {
        TEST_CHECK(0, "cannot read xlmr_tokenizer/unicode.txt");
        return;
    }
    kd_xlmr_tokenizer *tf = load(kt_data_path("xlmr_tokenizer/m4k/tokenizer.json"), 0);
    kd_xlmr_tokenizer *ts = load(kt_data_path("xlmr_tokenizer/m4k/sentencepiece.bpe.model"), KD_XLMR_SENTENCEPIECE);
    if (!tf || !ts) {
        free(text);
        kd_xlmr_tokenizer_free(tf);
        kd_xlmr_tokenizer_free(ts);
        return;
    }
    /* expected outputs, indexed by code point (NULL: the code point itself) */
    char **fast = calloc(0x110000, sizeof *fast), **slow = calloc(0x110000, sizeof *slow);
    size_t *fl = calloc(0x110000, sizeof *fl), *sl = calloc(0x110000, sizeof *sl);
    int rows = 0;
    for (char *p = text; p < text + n;) {
        char *nl = memchr(p, '\n', (size_t)(text + n - p));
        if (!nl) nl = text + n;
        char *colon = memchr(p, ':', (size_t)(nl - p)), *bar = memchr(p, '|', (size_t)(nl - p));
        unsigned long cp = strtoul(p, NULL, 16);
        if (colon && bar && cp < 0x110000) {
            fast[cp] = malloc(4 * (size_t)(bar - colon) + 4);
            slow[cp] = malloc(4 * (size_t)(nl - bar) + 4);
            fl[cp] = hex_cps(colon + 1, bar, fast[cp]);
            sl[cp] = hex_cps(bar + 1, nl, slow[cp]);
            rows++;
        }
        p = nl + 1;
    }
    int bad_f = 0, bad_s = 0;
    for (uint32_t c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        char in[4];
        size_t il = kt_put_utf8(c, in);
        for (int which = 0; which < 2; which++) {
            const char *exp = which ? slow[c] : fast[c];
            size_t el = which ? sl[c] : fl[c];
            if (!exp) {
                exp = in;
                el = il;
            }
            char *out = NULL, *o2 = NULL;
            size_t ol = 0;
            kd_err e = {0};
            kd_status s = kd_xlmr_normalize(which ? ts : tf, in, il, &out, &ol, &e);
            /* sentencepiece's own output starts with the dummy prefix "▁" (dropped in the table) */
            const char *got = out;
            if (which && s == KD_OK && ol >= 3 && memcmp(out, "\xE2\x96\x81", 3) == 0) {
                got += 3;
                ol -= 3;
            }
            int ok = s == KD_OK && ol == el && memcmp(got, exp, el) == 0;
            if (!ok && (which ? bad_s : bad_f) < 5)
                fprintf(stderr, "  U+%04X: %s normaliser differs (%zu bytes, expected %zu)\n", c, which ? "sentencepiece" : "tokenizers", ol, el);
            if (!ok && which) bad_s++;
            if (!ok && !which) bad_f++;
            free(out);
            free(o2);
        }
    }
    printf("normaliser on every code point: %d differ (tokenizers), %d differ (sentencepiece); %d table rows\n", bad_f,
           bad_s, rows);
    TEST_CHECK(bad_f == 0 && bad_s == 0 && rows > 4000, "normaliser table: %d / %d code points differ", bad_f, bad_s);
    for (uint32_t c = 0; c < 0x110000; c++) {
        free(fast[c]);
        free(slow[c]);
    }
    free(fast);
    free(slow);
    free(fl);
    free(sl);
    free(text);
    kd_xlmr_tokenizer_free(tf);
    kd_xlmr_tokenizer_free(ts);
}


/* ---- the Hub's older tokenizer.json schema, built from m2k/tokenizer.json (gen_xlmr_tokenizer.py's
 * legacy_json() is the same edit and checks that the tokenizers library gives the same ids) ---- */

static cJSON *load_json(const char *path) {
    size_t n;
    char *text = kt_read_file(path, &n);
    cJSON *root = NULL;
    kd_err e = {0};
    if (!text || kd_json_parse(text, n, path, &root, &e) != KD_OK) root = NULL;
    free(text);
    return root;
}

static cJSON *legacy_from(cJSON *j) {
    cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "added_tokens")) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (cJSON_IsString(c) && !strcmp(c->valuestring, "<mask>"))
            cJSON_ReplaceItemInObjectCaseSensitive(it, "lstrip", cJSON_CreateTrue());
    }
    cJSON *pre = cJSON_DetachItemFromObjectCaseSensitive(j, "normalizer");
    cJSON *seq = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToArray(arr, pre);
    cJSON *rep = cJSON_Parse("{\"type\":\"Replace\",\"pattern\":{\"Regex\":\" {2,}\"},\"content\":\" \"}");
    cJSON_AddItemToArray(arr, rep);
    cJSON_AddItemToObject(seq, "normalizers", arr);
    cJSON_AddItemToObject(j, "normalizer", seq);
    cJSON_ReplaceItemInObjectCaseSensitive(j, "pre_tokenizer", cJSON_Parse(
        "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},{\"type\":\"Metaspace\","
        "\"replacement\":\"\xE2\x96\x81\",\"str_rep\":\"\xE2\x96\x81\",\"add_prefix_space\":true}]}"));
    cJSON_ReplaceItemInObjectCaseSensitive(j, "post_processor", cJSON_Parse(
        "{\"type\":\"RobertaProcessing\",\"sep\":[\"</s>\",2],\"cls\":[\"<s>\",0],\"trim_offsets\":true,"
        "\"add_prefix_space\":true}"));
    cJSON_ReplaceItemInObjectCaseSensitive(j, "decoder", cJSON_Parse(
        "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"str_rep\":\"\xE2\x96\x81\",\"add_prefix_space\":true}"));
    cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    cJSON_DeleteItemFromObjectCaseSensitive(model, "type");
    cJSON_DeleteItemFromObjectCaseSensitive(model, "byte_fallback");
    return j;
}

static kd_xlmr_tokenizer *load_json_tree(const cJSON *j, const char *name) {
    char *text = cJSON_PrintUnformatted(j);
    kd_xlmr_tokenizer *t = NULL;
    kd_err e = {0};
    kd_status s = text ? kd_xlmr_tokenizer_load_json_mem(text, strlen(text), 0, name, &t, &e) : KD_ERR_OOM;
    TEST_CHECK(s == KD_OK, "%s: %s", name, e.msg);
    free(text);
    return t;
}

static void test_legacy_schema(void) {
    cJSON *j = load_json(kt_data_path("xlmr_tokenizer/m2k/tokenizer.json"));
    refs fast;
    if (!j || !read_refs("xlmr_tokenizer/m2k_fast.txt", &fast, NULL)) {
        TEST_CHECK(0, "cannot read m2k/tokenizer.json or m2k_fast.txt");
        cJSON_Delete(j);
        return;
    }
    kd_xlmr_tokenizer *t = load_json_tree(legacy_from(j), "m2k legacy-schema tokenizer.json");
    if (t) {
        check_corpus("m2k from the Hub's older tokenizer.json schema", t, &fast);
        kd_xlmr_tokenizer_free(t);
    }
    cJSON_Delete(j);
    free_refs(&fast);
}


/* ---- tokenizer.json components XLM-R does not use: edits of m2k/tokenizer.json against the
 * tokenizers library on the edited file (variants.json, variants_ids.txt) ---- */

static void subst_charsmap(cJSON *x, const char *charsmap) {
    for (cJSON *c = x ? x->child : NULL; c; c = c->next) {
        if (cJSON_IsString(c) && !strcmp(c->valuestring, "$M2K")) cJSON_SetValuestring(c, charsmap);
        else subst_charsmap(c, charsmap);
    }
}

static void test_variants(void) {
    cJSON *base = load_json(kt_data_path("xlmr_tokenizer/m2k/tokenizer.json"));
    cJSON *vars = load_json(kt_data_path("xlmr_tokenizer/variants.json"));
    lines L;
    refs fast;
    if (!base || !vars || !read_lines(kt_data_path("xlmr_tokenizer/variants_ids.txt"), &L, 1) ||
        !read_refs("xlmr_tokenizer/m2k_fast.txt", &fast, NULL)) {
        TEST_CHECK(0, "cannot read the variant fixtures");
        cJSON_Delete(base);
        cJSON_Delete(vars);
        return;
    }
    const char *charsmap = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(base, "normalizer"),
                                                            "precompiled_charsmap")->valuestring;
    int n_var = 0, n_rows = 0, n_ok = 0;
    for (cJSON *v = vars->child; v; v = v->next, n_var++) {
        cJSON *j = cJSON_Duplicate(base, 1);
        for (cJSON *ed = v->child; ed; ed = ed->next) {
            if (cJSON_IsString(ed) && !strcmp(ed->valuestring, "$BYTES")) {
                cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
                cJSON_ReplaceItemInObjectCaseSensitive(model, "byte_fallback", cJSON_CreateTrue());
                cJSON *voc = cJSON_GetObjectItemCaseSensitive(model, "vocab");
                for (int b = 0; b < 256; b++) {
                    char name[8];
                    snprintf(name, sizeof name, "<0x%02X>", b);
                    cJSON *pair = cJSON_CreateArray();
                    cJSON_AddItemToArray(pair, cJSON_CreateString(name));
                    cJSON_AddItemToArray(pair, cJSON_CreateNumber(-30.0));
                    cJSON_AddItemToArray(voc, pair);
                }
                continue;
            }
            cJSON *val = cJSON_Duplicate(ed, 1);
            subst_charsmap(val, charsmap);
            if (cJSON_GetObjectItemCaseSensitive(j, ed->string)) cJSON_ReplaceItemInObjectCaseSensitive(j, ed->string, val);
            else cJSON_AddItemToObject(j, ed->string, val);
        }
        kd_xlmr_tokenizer *t = load_json_tree(j, v->string);
        cJSON_Delete(j);
        if (!t) continue;
        int rows = 0, ok_n = 0, shown = 0;
        for (int r = 0; r < L.n; r++) {
            size_t nl = strlen(v->string);
            if (strncmp(L.s[r], v->string, nl) != 0 || L.s[r][nl] != ' ') continue;
            char *p = L.s[r] + nl + 1, *end;
            int idx = (int)strtol(p, &end, 10);
            p = end;
            while (*p == ' ') p++;
            int32_t ref[MAX_LEN];
            int rl = 0;
            if (!strcmp(p, "=") && idx < fast.n) {
                memcpy(ref, fast.ids[idx], sizeof ref);
                rl = fast.len[idx];
            } else {
                for (;;) {
                    long x = strtol(p, &end, 10);
                    if (end == p) break;
                    if (rl < MAX_LEN) ref[rl] = (int32_t)x;
                    rl++;
                    p = end;
                }
            }
            rows++;
            if (idx < 0 || idx >= g_corpus.n) continue;
            int32_t ids[MAX_LEN], mask[MAX_LEN];
            int n_real = 0;
            kd_err e = {0};
            kd_status s = kd_xlmr_tokenize(t, g_corpus.s[idx], g_corpus.len[idx], MAX_LEN, ids, mask, &n_real, &e);
            int ok = s == KD_OK && n_real == rl;
            for (int k = 0; ok && k < MAX_LEN; k++)
                if (ids[k] != (k < rl ? ref[k] : 1) || mask[k] != (k < rl)) ok = 0;
            ok_n += ok;
            if (!ok && shown++ < 3) {
                fprintf(stderr, "  variant %s: prompt %d [%s] differs%s%s\n", v->string, idx, g_langs.s[idx], s ? ": " : "",
                        s ? e.msg : "");
                print_ids("got", ids, n_real < 40 ? n_real : 40);
                print_ids("ref", ref, rl < 40 ? rl : 40);
            }
        }
        TEST_CHECK(ok_n == rows && rows > 0, "variant %s: %d of %d prompts differ from the tokenizers library", v->string,
                   rows - ok_n, rows);
        n_rows += rows;
        n_ok += ok_n;
        kd_xlmr_tokenizer_free(t);
    }
    printf("tokenizer.json variants: %d variants, %d / %d prompt rows exact\n", n_var, n_ok, n_rows);
    cJSON_Delete(base);
    cJSON_Delete(vars);
    free_lines(&L);
    free_refs(&fast);
}

/* ---- a model with the published file's size: 250000 pieces (m4k's 4000, then fillers that no
 * prompt can match, scored at m4k's minimum so that the unknown penalty stays the same), written
 * as a .model and as a tokenizer.json in the Hub's schema ---- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} wbuf;

static void wb_put(wbuf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? b->cap * 2 : 1 << 16;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void wb_varint(wbuf *b, uint64_t v) {
    unsigned char t[10];
    int k = 0;
    do {
        t[k] = (unsigned char)(v & 0x7F);
        v >>= 7;
        if (v) t[k] |= 0x80;
        k++;
    } while (v);
    wb_put(b, t, (size_t)k);
}

static void wb_bytes(wbuf *b, unsigned field, const void *s, size_t n) {
    wb_varint(b, (uint64_t)field << 3 | 2);
    wb_varint(b, n);
    wb_put(b, s, n);
}

static void wb_piece(wbuf *b, const char *piece, float score, int type) {
    wbuf m = {0};
    wb_bytes(&m, 1, piece, strlen(piece));
    wb_varint(&m, 2 << 3 | 5);
    wb_put(&m, &score, 4);
    if (type != 1) {
        wb_varint(&m, 3 << 3 | 0);
        wb_varint(&m, (uint64_t)type);
    }
    wb_bytes(b, 1, m.p, m.n);
    free(m.p);
}

static void b64(wbuf *o, const unsigned char *s, size_t n) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) | (i + 2 < n ? s[i + 2] : 0);
        char q[4] = {al[v >> 18], al[(v >> 12) & 63], i + 1 < n ? al[(v >> 6) & 63] : '=', i + 2 < n ? al[v & 63] : '='};
        wb_put(o, q, 4);
    }
}

/* the charsmap (normalizer_spec field 2) of a .model */
static int find_charsmap(const unsigned char *d, size_t n, const unsigned char **cm, size_t *cl) {
    size_t i = 0;
    while (i < n) {
        uint64_t key = 0, len = 0;
        int sh = 0;
        while (i < n && (d[i] & 0x80)) key |= (uint64_t)(d[i++] & 0x7F) << (sh += 7, sh - 7);
        if (i >= n) return 0;
        key |= (uint64_t)d[i++] << sh;
        if ((key & 7) != 2) return 0;
        sh = 0;
        while (i < n && (d[i] & 0x80)) len |= (uint64_t)(d[i++] & 0x7F) << (sh += 7, sh - 7);
        if (i >= n) return 0;
        len |= (uint64_t)d[i++] << sh;
        if ((key >> 3) == 3) { /* normalizer_spec: look for field 2 inside */
            size_t j = i, end = i + len;
            while (j < end) {
                uint64_t k2 = d[j++], l2 = 0;
                if ((k2 & 7) == 0) {
                    while (d[j] & 0x80) j++;
                    j++;
                    continue;
                }
                sh = 0;
                while (d[j] & 0x80) l2 |= (uint64_t)(d[j++] & 0x7F) << (sh += 7, sh - 7);
                l2 |= (uint64_t)d[j++] << sh;
                if ((k2 >> 3) == 2) {
                    *cm = d + j;
                    *cl = l2;
                    return 1;
                }
                j += l2;
            }
        }
        i += len;
    }
    return 0;
}

static void test_published_size(void) {
    const char *dir = kt_tmp_dir("xlmr_published");
    size_t mn;
    char *model = kt_read_file(kt_data_path("xlmr_tokenizer/m4k/sentencepiece.bpe.model"), &mn);
    kd_xlmr_tokenizer *small = load(kt_data_path("xlmr_tokenizer/m4k/sentencepiece.bpe.model"), 0);
    const unsigned char *cm = NULL;
    size_t cl = 0;
    refs fast, slow;
    if (!model || !small || !find_charsmap((unsigned char *)model, mn, &cm, &cl) ||
        !read_refs("xlmr_tokenizer/m4k_fast.txt", &fast, NULL) || !read_refs("xlmr_tokenizer/m4k_slow.txt", &slow, &fast)) {
        TEST_CHECK(0, "published-size model: cannot read m4k");
        free(model);
        kd_xlmr_tokenizer_free(small);
        return;
    }
    /* scores: read back from the small model's json-free view: the .model pieces in order */
    const int n_pieces = 250000;
    wbuf pb = {0}, js = {0};
    /* pieces 0..2 as in XLM-R's file */
    wb_piece(&pb, "<unk>", 0.0f, 2);
    wb_piece(&pb, "<s>", 0.0f, 3);
    wb_piece(&pb, "</s>", 0.0f, 3);
    const char *head = "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[";
    wb_put(&js, head, strlen(head));
    const char *add = "{\"id\":0,\"special\":true,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false},"
                      "{\"id\":1,\"special\":true,\"content\":\"<pad>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false},"
                      "{\"id\":2,\"special\":true,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false},"
                      "{\"id\":3,\"special\":true,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false},"
                      "{\"id\":250001,\"special\":true,\"content\":\"<mask>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,\"normalized\":false}],"
                      "\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"";
    wb_put(&js, add, strlen(add));
    b64(&js, cm, cl);
    const char *mid = "\"},\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},"
                      "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"add_prefix_space\":true}]},"
                      "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                      "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},{\"SpecialToken\":{\"id\":\"</s>\",\"type_id\":0}}],"
                      "\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[0],\"tokens\":[\"<s>\"]},"
                      "\"</s>\":{\"id\":\"</s>\",\"ids\":[2],\"tokens\":[\"</s>\"]}}},"
                      "\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"add_prefix_space\":true},"
                      "\"model\":{\"unk_id\":3,\"vocab\":[[\"<s>\",0.0],[\"<pad>\",0.0],[\"</s>\",0.0],[\"<unk>\",0.0]";
    wb_put(&js, mid, strlen(mid));
    /* m4k's pieces 3.. through the public API: ids 4..4000 */
    double min_score = 0;
    float min_f = 0;
    size_t mnj;
    char *jtext = kt_read_file(kt_data_path("xlmr_tokenizer/m4k/tokenizer.json"), &mnj);
    cJSON *jroot = NULL;
    kd_err e = {0};
    kd_json_parse(jtext, mnj, "m4k", &jroot, &e);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(jroot, "model"), "vocab");
    int idx = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (idx >= 4 && idx <= 4000) {
            double sc = cJSON_GetArrayItem(it, 1)->valuedouble;
            if (sc < min_score) min_score = sc;
        }
        idx++;
    }
    min_f = (float)min_score;
    char buf[512];
    idx = 0;
    cJSON_ArrayForEach(it, vocab) {
        if (idx >= 4 && idx <= 4000) {
            const char *p = cJSON_GetArrayItem(it, 0)->valuestring;
            double sc = cJSON_GetArrayItem(it, 1)->valuedouble;
            wb_piece(&pb, p, (float)sc, 1);
            char *q = cJSON_PrintUnformatted(cJSON_GetArrayItem(it, 0));
            snprintf(buf, sizeof buf, ",[%s,%.17g]", q, sc);
            free(q);
            wb_put(&js, buf, strlen(buf));
        }
        idx++;
    }
    for (int i = 4000; i < n_pieces; i++) {
        char piece[32];
        snprintf(piece, sizeof piece, "\xF3\xBF\xBF\xBD%06d", i); /* U+FFFFD + digits */
        wb_piece(&pb, piece, min_f, 1);
        snprintf(buf, sizeof buf, ",[\"%s\",%.17g]", piece, (double)min_f);
        wb_put(&js, buf, strlen(buf));
    }
    const char *tail = ",[\"<mask>\",0.0]]}}";
    wb_put(&js, tail, strlen(tail));
    /* trainer_spec and normalizer_spec as XLM-R's file has them */
    wbuf ts = {0}, ns = {0};
    wb_varint(&ts, 3 << 3 | 0);
    wb_varint(&ts, 1);
    wb_varint(&ts, 4 << 3 | 0);
    wb_varint(&ts, (uint64_t)n_pieces);
    float cov = 0.9999f;
    wb_varint(&ts, 10 << 3 | 5);
    wb_put(&ts, &cov, 4);
    wb_varint(&ts, 43 << 3 | 0);
    wb_varint(&ts, (uint64_t)(int64_t)-1); /* pad_id -1: a 10-byte varint */
    wb_bytes(&ns, 1, "nmt_nfkc", 8);
    wb_bytes(&ns, 2, cm, cl);
    wb_varint(&ns, 3 << 3 | 0);
    wb_varint(&ns, 1);
    wb_bytes(&pb, 2, ts.p, ts.n);
    wb_bytes(&pb, 3, ns.p, ns.n);
    char mpath[512], jpath[512];
    snprintf(mpath, sizeof mpath, "%s/sentencepiece.bpe.model", dir);
    snprintf(jpath, sizeof jpath, "%s/tokenizer.json", dir);
    TEST_CHECK(write_all(mpath, pb.p, pb.n) && write_all(jpath, js.p, js.n), "cannot write %s", dir);
    for (int which = 0; which < 3; which++) {
        double t0 = kt_now();
        kd_xlmr_tokenizer *t = load(which == 1 ? jpath : mpath, which == 2 ? KD_XLMR_SENTENCEPIECE : 0);
        double t1 = kt_now();
        if (!t) continue;
        TEST_CHECK(kd_xlmr_tokenizer_vocab_size(t) == 250002 && kd_xlmr_tokenizer_mask_id(t) == 250001 &&
                       kd_xlmr_tokenizer_pad_id(t) == 1 && kd_xlmr_tokenizer_unk_id(t) == 3,
                   "published size: vocab %d, mask %d, pad %d", kd_xlmr_tokenizer_vocab_size(t),
                   kd_xlmr_tokenizer_mask_id(t), kd_xlmr_tokenizer_pad_id(t));
        const char *p = kd_xlmr_tokenizer_piece(t, 250000);
        TEST_CHECK(p && !strcmp(p, "\xF3\xBF\xBF\xBD" "249999"), "published size: piece 250000 is %s", p ? p : "NULL");
        /* the corpus gives m4k's ids, with <mask> at 250001 instead of 4001 */
        refs r = which == 2 ? slow : fast;
        refs m;
        m.n = r.n;
        m.len = r.len;
        m.ids = malloc((size_t)r.n * sizeof *m.ids);
        for (int i = 0; i < r.n; i++)
            for (int k = 0; k < MAX_LEN; k++) m.ids[i][k] = r.ids[i][k] == 4001 ? 250001 : r.ids[i][k];
        char label[128];
        snprintf(label, sizeof label, "250000-piece model from %s%s (load %.0f ms)", which == 1 ? "tokenizer.json" : ".model",
                 which == 2 ? ", sentencepiece mode" : "", 1e3 * (t1 - t0));
        check_corpus(label, t, &m);
        free(m.ids);
        kd_xlmr_tokenizer_free(t);
    }
    cJSON_Delete(jroot);
    free(jtext);
    free(pb.p);
    free(js.p);
    free(ts.p);
    free(ns.p);
    free(model);
    kd_xlmr_tokenizer_free(small);
    free_refs(&fast);
    free_refs(&slow);
}

/* ---- errors ---- */

static void expect_err(kd_status s, kd_status want, const kd_err *e, const char *must, const char *what) {
    TEST_CHECK(s == want && (!must || strstr(e->msg, must)), "%s: status %d (want %d), message \"%s\" (want \"%s\")", what,
               s, want, e->msg, must ? must : "");
}

static void test_errors(void) {
    kd_xlmr_tokenizer *t = NULL;
    kd_err e = {0};
    kd_status s = kd_xlmr_tokenizer_load("/nonexistent/xlmr", &t, &e);
    expect_err(s, KD_ERR_NOT_FOUND, &e, "/nonexistent/xlmr", "missing path");
    TEST_CHECK(t == NULL, "missing path: *out set");
    const char *empty = kt_tmp_dir("xlmr_empty_dir");
    s = kd_xlmr_tokenizer_load(empty, &t, &e);
    expect_err(s, KD_ERR_NOT_FOUND, &e, "neither tokenizer.json nor sentencepiece.bpe.model", "empty folder");

    size_t n;
    char *model = kt_read_file(kt_data_path("xlmr_tokenizer/m2k/sentencepiece.bpe.model"), &n);
    if (!model) {
        TEST_CHECK(0, "cannot read m2k model");
        return;
    }
    /* truncated protobuf: inside the first piece, in the middle, inside the normalizer spec */
    size_t cuts[4] = {3, n / 2 + 1, n - 7, n - 1};
    int n_fmt = 0;
    for (int i = 0; i < 4; i++) {
        s = kd_xlmr_tokenizer_load_model_mem(model, cuts[i], 0, "cut.model", &t, &e);
        if (s == KD_OK) {
            kd_xlmr_tokenizer_free(t);
            continue; /* a cut on a field boundary is a valid, shorter model */
        }
        n_fmt += s == KD_ERR_FORMAT && strstr(e.msg, "cut.model") && strstr(e.msg, "byte offset");
        if (i >= 2) expect_err(s, KD_ERR_FORMAT, &e, "protobuf", "protobuf cut inside the normalizer spec");
    }
    TEST_CHECK(n_fmt >= 3, "truncated protobuf: only %d of 4 cuts reported as KD_ERR_FORMAT with file and offset", n_fmt);
    s = kd_xlmr_tokenizer_load_model_mem(model, 0, 0, "empty.model", &t, &e);
    expect_err(s, KD_ERR_FORMAT, &e, "empty file", "empty .model");
    unsigned char junk[12] = {0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    s = kd_xlmr_tokenizer_load_model_mem(junk, sizeof junk, 0, "junk.model", &t, &e);
    expect_err(s, KD_ERR_FORMAT, &e, "junk.model: protobuf", "overlong varint");
    unsigned char grp[2] = {0x0B, 0x00};
    s = kd_xlmr_tokenizer_load_model_mem(grp, 2, 0, "group.model", &t, &e);
    expect_err(s, KD_ERR_FORMAT, &e, "wire type", "group wire type");
    /* pieces 0..2 not <unk>, <s>, </s> */
    wbuf w = {0};
    wb_piece(&w, "a", -1.0f, 1);
    wb_piece(&w, "<s>", 0.0f, 3);
    wb_piece(&w, "</s>", 0.0f, 3);
    s = kd_xlmr_tokenizer_load_model_mem(w.p, w.n, 0, "order.model", &t, &e);
    expect_err(s, KD_ERR_UNSUPPORTED, &e, "pieces 0, 1, 2", "pieces out of XLM-R's order");
    free(w.p);
    /* charsmap whose trie size runs past the blob */
    memset(&w, 0, sizeof w);
    wb_piece(&w, "<unk>", 0.0f, 2);
    wb_piece(&w, "<s>", 0.0f, 3);
    wb_piece(&w, "</s>", 0.0f, 3);
    wb_piece(&w, "a", -1.0f, 1);
    unsigned char badcm[8] = {0xFF, 0xFF, 0, 0, 1, 2, 3, 4};
    wbuf ns = {0};
    wb_bytes(&ns, 2, badcm, sizeof badcm);
    wb_bytes(&w, 3, ns.p, ns.n);
    s = kd_xlmr_tokenizer_load_model_mem(w.p, w.n, 0, "cm.model", &t, &e);
    expect_err(s, KD_ERR_FORMAT, &e, "precompiled_charsmap", "charsmap trie past the blob");
    free(w.p);
    free(ns.p);

    /* tokenizer.json */
    static const struct { const char *json; kd_status want; const char *msg; } bad[] = {
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", KD_ERR_UNSUPPORTED, "model type \"BPE\""},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0]],\"unk_id\":null}}", KD_ERR_UNSUPPORTED, "unk_id"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0],[\"<pad>\",0]],\"unk_id\":0},"
         "\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"@@@@\"}}", KD_ERR_FORMAT, "base64"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0],[\"<pad>\",0]],\"unk_id\":0},"
         "\"normalizer\":{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAEAAA==\"}}", KD_ERR_FORMAT, "precompiled_charsmap"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0],[\"<pad>\",0]],\"unk_id\":0},"
         "\"normalizer\":{\"type\":\"Bert\"}}", KD_ERR_UNSUPPORTED, "normalizer type \"Bert\""},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0],[\"<pad>\",0]],\"unk_id\":0},"
         "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"_\",\"add_prefix_space\":false}}", KD_ERR_FORMAT, "add_prefix_space"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0],[\"<pad>\",0]],\"unk_id\":0},"
         "\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"a|b\"},\"content\":\"\"}}", KD_ERR_UNSUPPORTED, "regex"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0]],\"unk_id\":0}}", KD_ERR_UNSUPPORTED, "<pad>"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"<unk>\",0.0],[\"<pad>\"]],\"unk_id\":0}}", KD_ERR_FORMAT, "vocab[1]"},
        {"{\"model\": {\"vocab\": [[\"<unk>\", 0.0], ", KD_ERR_FORMAT, "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = kd_xlmr_tokenizer_load_json_mem(bad[i].json, strlen(bad[i].json), 0, "bad.json", &t, &e);
        char what[64];
        snprintf(what, sizeof what, "bad tokenizer.json %zu", i);
        expect_err(s, bad[i].want, &e, bad[i].msg, what);
        if (s == KD_OK) kd_xlmr_tokenizer_free(t);
    }
    s = kd_xlmr_tokenizer_load_ex(kt_data_path("xlmr_tokenizer/m2k/tokenizer.json"), KD_XLMR_SENTENCEPIECE, &t, &e);
    expect_err(s, KD_ERR_UNSUPPORTED, &e, ".model", "sentencepiece mode from tokenizer.json");

    /* invalid UTF-8 and bad arguments */
    t = load(kt_data_path("xlmr_tokenizer/m2k"), 0);
    if (t) {
        static const struct { const char *s; size_t n, off; } utf[] = {
            {"\xff", 1, 0}, {"abc\xc3", 4, 3}, {"ok \xc0\xaf", 5, 3}, {"\xed\xa0\x80", 3, 0},
            {"x\xf4\x90\x80\x80", 5, 1}, {"<mask>\x80", 7, 6},
        };
        for (size_t i = 0; i < sizeof utf / sizeof utf[0]; i++) {
            int32_t ids[MAX_LEN], mask[MAX_LEN];
            for (int k = 0; k < MAX_LEN; k++) ids[k] = mask[k] = -7;
            s = kd_xlmr_tokenize(t, utf[i].s, utf[i].n, MAX_LEN, ids, mask, NULL, &e);
            char off[64];
            snprintf(off, sizeof off, "byte offset %zu", utf[i].off);
            expect_err(s, KD_ERR_INVALID_ARG, &e, off, "invalid UTF-8");
            TEST_CHECK(ids[0] == -7 && mask[0] == -7, "invalid UTF-8: ids written");
        }
        int32_t ids[MAX_LEN];
        s = kd_xlmr_tokenize(t, "a", 1, 1, ids, NULL, NULL, &e);
        expect_err(s, KD_ERR_INVALID_ARG, &e, "max_len", "max_len 1");
        int n_real = 0;
        s = kd_xlmr_tokenize(t, "", 0, 2, ids, NULL, &n_real, &e);
        TEST_CHECK(s == KD_OK && n_real == 2 && ids[0] == 0 && ids[1] == 2, "max_len 2: <s> </s>");
        s = kd_xlmr_tokenize(t, NULL, 0, MAX_LEN, ids, NULL, &n_real, &e);
        TEST_CHECK(s == KD_OK && n_real == 2, "NULL text of length 0");
        kd_xlmr_tokenizer_free(t);
    }
    free(model);
}

/* ---- long prompts ---- */

static void test_long(void) {
    kd_xlmr_tokenizer *tf = load(kt_data_path("xlmr_tokenizer/m4k"), 0);
    kd_xlmr_tokenizer *ts = load(kt_data_path("xlmr_tokenizer/m4k/sentencepiece.bpe.model"), KD_XLMR_SENTENCEPIECE);
    if (!tf || !ts) {
        kd_xlmr_tokenizer_free(tf);
        kd_xlmr_tokenizer_free(ts);
        return;
    }
    static const char *const units[4] = {"a red cat sitting on a windowsill, ", "一只红色的猫坐在窗台上",
                                         "\xF0\x9F\x98\x80", "<mask>"};
    static const char *const names[4] = {"words", "one CJK word", "one word of unknown emoji", "<mask> tokens"};
    const size_t big = 10u << 20;
    char *text = malloc(big + 64);
    for (int u = 0; u < 4; u++) {
        size_t ul = strlen(units[u]), n = 0;
        while (n + ul <= big) {
            memcpy(text + n, units[u], ul);
            n += ul;
        }
        size_t small = ul * (u == 0 ? 40 : u == 1 ? 700 : 200);
        for (int m = 0; m < 2; m++) {
            const kd_xlmr_tokenizer *t = m ? ts : tf;
            int32_t a[MAX_LEN], b[MAX_LEN];
            int na = 0, nb = 0;
            kd_err e = {0};
            double t0 = kt_now();
            kd_status s = kd_xlmr_tokenize(t, text, n, MAX_LEN, a, NULL, &na, &e);
            double t1 = kt_now();
            kd_status s2 = kd_xlmr_tokenize(t, text, small, MAX_LEN, b, NULL, &nb, &e);
            int same = s == KD_OK && s2 == KD_OK && na == nb && memcmp(a, b, sizeof a) == 0;
            printf("10 MB prompt (%s, %s): %.1f ms, %d tokens, %s its %zu-byte prefix\n", names[u],
                   m ? "sentencepiece mode" : "tokenizers", 1e3 * (t1 - t0), na, same ? "same ids as" : "DIFFERENT from", small);
            /* the emoji are one unknown run: <s> ▁ <unk> </s> */
            TEST_CHECK(same && na == (u == 2 ? 4 : MAX_LEN), "10 MB prompt (%s, mode %d): %s", names[u], m, e.msg);
            /* the time is reported above, never checked: it depends on the machine and the build
             * (a sanitizer build is many times slower) */
        }
    }
    free(text);
    kd_xlmr_tokenizer_free(tf);
    kd_xlmr_tokenizer_free(ts);
}

int main(void) {
    if (!read_lines(kt_data_path("xlmr_tokenizer/corpus.txt"), &g_corpus, 0) ||
        !read_lines(kt_data_path("xlmr_tokenizer/langs.txt"), &g_langs, 1) || g_corpus.n != g_langs.n) {
        TEST_CHECK(0, "cannot read xlmr_tokenizer/corpus.txt and langs.txt");
        return kt_finish("test_xlmr_tokenizer");
    }
    test_corpus();
    test_unicode_table();
    test_legacy_schema();
    test_variants();
    test_published_size();
    test_errors();
    test_long();
    free_lines(&g_corpus);
    free_lines(&g_langs);
    return kt_finish("test_xlmr_tokenizer");
}
