/* XLM-RoBERTa SentencePiece tokenizer; the rules it mirrors are listed in xlmr_tokenizer.h and in
 * docs/NOTES.md ("XLM-R tokenizer"). */
#include "text/xlmr_tokenizer.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>

#include "io/config.h"
#include "io/file.h"

/* tokenizer.json of XLM-R is 17.1 MB, its .model 5 MB. */
#define MAX_FILE (512u << 20)
/* The tokenizers library treats a grapheme shorter than this as one unit for the charsmap. */
#define GRAPHEME_WHOLE 6
/* Unknown-character penalty of both sentencepiece and the tokenizers library. */
#define UNK_PENALTY 10.0
/* The Viterbi search tries to commit its settled prefix once this many bytes are pending. */
#define COMMIT_SPAN 4096
#define NO_MATCH SIZE_MAX
#define NOT_SEARCHED (SIZE_MAX - 1)

/* sentencepiece piece types */
enum { PT_NORMAL = 1, PT_UNKNOWN = 2, PT_CONTROL = 3, PT_USER = 4, PT_UNUSED = 5, PT_BYTE = 6 };

static const char META[] = "\xE2\x96\x81"; /* U+2581 */

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 and character classes                                                                  */

static size_t u8_len(uint8_t b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

/* The input is valid UTF-8 (checked by the caller). */
static uint32_t u8_dec(const uint8_t *s, size_t *len) {
    uint8_t b = s[0];
    if (b < 0x80) { *len = 1; return b; }
    if (b < 0xE0) { *len = 2; return ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F); }
    if (b < 0xF0) { *len = 3; return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F); }
    *len = 4;
    return ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
           (s[3] & 0x3F);
}

static size_t u8_enc(uint32_t c, uint8_t *o) {
    if (c < 0x80) { o[0] = (uint8_t)c; return 1; }
    if (c < 0x800) { o[0] = (uint8_t)(0xC0 | (c >> 6)); o[1] = (uint8_t)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (c >> 12)); o[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (c >> 18)); o[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F)); o[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Unicode White_Space: Rust's char::is_whitespace and the regex crate's \s. */
static int is_ws(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return 0;
    switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

/* Python's str.isspace (what str.rstrip() removes): White_Space plus U+001C..U+001F. */
static int py_space(uint32_t c) { return is_ws(c) || (c >= 0x1C && c <= 0x1F); }

/* \w of the regex crate (for single_word added tokens): letters, marks, decimal and letter
 * numbers, connector punctuation, ZWNJ / ZWJ. */
static int is_word(uint32_t c) {
    if (c == 0x200C || c == 0x200D) return 1;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

/* general category M* (StripAccents drops them all, as unicode-normalization's is_combining_mark) */
static int is_mark(uint32_t c) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC || k == UTF8PROC_CATEGORY_ME;
}

/* last code point of s[0..n) (valid UTF-8, n > 0) and its start */
static uint32_t u8_last(const uint8_t *s, size_t n, size_t *start) {
    size_t i = n - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    size_t l;
    *start = i;
    return u8_dec(s + i, &l);
}

/* ------------------------------------------------------------------------------------------ */
/* growable byte buffer                                                                         */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bbuf;

static int bb_reserve(bbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 1;
    size_t nc = b->cap ? b->cap : 256;
    while (nc < b->n + extra) {
        if (nc > SIZE_MAX / 2) return 0;
        nc *= 2;
    }
    uint8_t *np = realloc(b->p, nc);
    if (!np) return 0;
    b->p = np;
    b->cap = nc;
    return 1;
}

static int bb_put(bbuf *b, const void *s, size_t n) {
    if (!n) return 1;
    if (!bb_reserve(b, n)) return 0;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 1;
}

static void bb_free(bbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ------------------------------------------------------------------------------------------ */
/* string → id map (open addressing; re-inserting a key overwrites its id: the last wins, as in
 * the reference's HashMap)                                                                     */

typedef struct {
    uint32_t *slot; /* id + 1, 0 = empty */
    size_t cap;
} idmap;

static uint64_t fnv(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

typedef struct {
    uint32_t off, len;
    double score;   /* as the tokenizers library reads it (f64) */
    float score_f;  /* as sentencepiece stores it */
    uint8_t type;   /* sentencepiece piece type; PT_NORMAL for tokenizer.json pieces */
} piece;

struct kd_xlmr_tokenizer {
    unsigned flags;
    int spm;                 /* KD_XLMR_SENTENCEPIECE */
    char *origin;
    /* vocabulary in final id space */
    piece *pieces;
    int n_pieces;
    int n_model;             /* ids below this are the model's (Unigram) vocabulary */
    char *pool;              /* piece texts, each NUL-terminated */
    size_t pool_len;
    idmap map;               /* text → id */
    size_t max_piece_len;
    /* matching trie over the pieces the model may emit */
    struct tnode *trie;
    size_t n_trie;
    int unk_id, byte_fallback, has_all_bytes;
    int32_t byte_id[256];
    double min_score;        /* tokenizers: over the whole vocabulary */
    float min_score_f, max_score_f; /* sentencepiece: over NORMAL pieces */
    int bpe;                 /* sentencepiece BPE model (KD_XLMR_SENTENCEPIECE only) */
    /* normaliser */
    struct nop *nops;
    int n_nops;
    int stream_norm;         /* grapheme streaming possible (charsmap and char-local steps only) */
    struct charsmap *spm_cm; /* sentencepiece mode: the model's charsmap (or NULL) */
    int add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix;
    char **user_syms;        /* sentencepiece user-defined symbols (prefix matcher) */
    size_t *user_len;
    int n_user;
    /* pre-tokeniser */
    int ws_split, meta, meta_split, meta_scheme; /* scheme: 0 never, 1 always, 2 first */
    uint8_t meta_rep[4];
    size_t meta_rep_len;
    uint32_t meta_cp;
    /* added tokens */
    struct added *added;
    int n_added, n_added_norm;
    /* post-processor */
    int32_t prefix[8], suffix[8];
    int n_prefix, n_suffix;
    int pad_id, mask_id;
};

static int idmap_init(idmap *m, size_t n) {
    size_t cap = 64;
    while (cap < n * 2 + 2) cap *= 2;
    m->slot = calloc(cap, sizeof *m->slot);
    m->cap = m->slot ? cap : 0;
    return m->slot != NULL;
}

static const uint8_t *piece_text(const kd_xlmr_tokenizer *t, int id) { return (const uint8_t *)t->pool + t->pieces[id].off; }

static void idmap_put(kd_xlmr_tokenizer *t, int id) {
    const piece *p = &t->pieces[id];
    size_t j = fnv(piece_text(t, id), p->len) & (t->map.cap - 1);
    while (t->map.slot[j]) {
        const piece *q = &t->pieces[t->map.slot[j] - 1];
        if (q->len == p->len && memcmp(t->pool + q->off, t->pool + p->off, p->len) == 0) break;
        j = (j + 1) & (t->map.cap - 1);
    }
    t->map.slot[j] = (uint32_t)id + 1;
}

static int idmap_get(const kd_xlmr_tokenizer *t, const uint8_t *s, size_t n) {
    if (!t->map.cap) return -1;
    size_t j = fnv(s, n) & (t->map.cap - 1);
    while (t->map.slot[j]) {
        const piece *q = &t->pieces[t->map.slot[j] - 1];
        if (q->len == n && memcmp(t->pool + q->off, s, n) == 0) return (int)t->map.slot[j] - 1;
        j = (j + 1) & (t->map.cap - 1);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* matching trie: children of a node are contiguous and sorted by label                         */

struct tnode {
    uint32_t child;   /* index of the first child */
    uint16_t n_child;
    uint8_t label;
    int32_t id;       /* piece ending here, or -1 */
};

typedef struct {
    const char *s; /* into the pool */
    uint32_t len;
    int32_t id;
} tkey;

static int tkey_cmp(const void *a, const void *b) {
    const tkey *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Builds the trie over the pieces accepted by `keep`; for equal texts the highest id wins (the
 * tokenizers library's map keeps the last). */
static kd_status build_trie(kd_xlmr_tokenizer *t, int (*keep)(const kd_xlmr_tokenizer *, int), kd_err *e) {
    tkey *k = malloc((size_t)(t->n_pieces ? t->n_pieces : 1) * sizeof *k);
    if (!k) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    size_t nk = 0, total = 1;
    for (int i = 0; i < t->n_pieces; i++) {
        if (!keep(t, i) || t->pieces[i].len == 0) continue;
        k[nk].s = t->pool + t->pieces[i].off;
        k[nk].len = t->pieces[i].len;
        k[nk].id = i;
        total += t->pieces[i].len;
        nk++;
    }
    qsort(k, nk, sizeof *k, tkey_cmp);
    /* drop duplicates, keeping the last (highest id) */
    size_t w = 0;
    for (size_t i = 0; i < nk; i++) {
        if (w && k[w - 1].len == k[i].len && memcmp(k[w - 1].s, k[i].s, k[i].len) == 0)
            k[w - 1] = k[i];
        else
            k[w++] = k[i];
    }
    nk = w;
    t->trie = malloc(total * sizeof *t->trie);
    /* breadth-first: queue entries are (node, lo, hi, depth) over the sorted keys */
    typedef struct { uint32_t node, lo, hi, depth; } qent;
    qent *q = malloc(total * sizeof *q);
    if (!t->trie || !q || total > UINT32_MAX) {
        free(k);
        free(q);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    }
    size_t n_nodes = 1, qh = 0, qt = 0;
    t->trie[0] = (struct tnode){0, 0, 0, -1};
    q[qt++] = (qent){0, 0, (uint32_t)nk, 0};
    while (qh < qt) {
        qent c = q[qh++];
        uint32_t lo = c.lo;
        if (lo < c.hi && k[lo].len == c.depth) t->trie[c.node].id = k[lo++].id;
        /* children: one per distinct byte at depth */
        uint32_t first = (uint32_t)n_nodes, nc = 0;
        for (uint32_t i = lo; i < c.hi;) {
            uint8_t b = (uint8_t)k[i].s[c.depth];
            uint32_t j = i + 1;
            while (j < c.hi && (uint8_t)k[j].s[c.depth] == b) j++;
            t->trie[n_nodes] = (struct tnode){0, 0, b, -1};
            q[qt++] = (qent){(uint32_t)n_nodes, i, j, c.depth + 1};
            n_nodes++;
            nc++;
            i = j;
        }
        t->trie[c.node].child = first;
        t->trie[c.node].n_child = (uint16_t)nc;
    }
    t->n_trie = n_nodes;
    free(q);
    free(k);
    return KD_OK;
}

static int trie_step(const kd_xlmr_tokenizer *t, uint32_t node, uint8_t b) {
    const struct tnode *n = &t->trie[node];
    uint32_t lo = n->child, hi = n->child + n->n_child;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        uint8_t l = t->trie[mid].label;
        if (l == b) return (int)mid;
        if (l < b) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* precompiled charsmap: [u32 trie size][double-array units][NUL-separated replacements]        */

typedef struct charsmap {
    uint32_t *units;
    size_t n_units;
    uint8_t *norm;
    size_t norm_len;
} charsmap;

static void cm_free(charsmap *c) {
    if (!c) return;
    free(c->units);
    free(c->norm);
    free(c);
}

static kd_status cm_parse(const uint8_t *b, size_t n, const char *origin, charsmap **out, kd_err *e) {
    *out = NULL;
    if (n < 4) return kd_errf(e, KD_ERR_FORMAT, "%s: precompiled_charsmap of %zu bytes is truncated", origin, n);
    uint32_t ts = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    if ((size_t)ts > n - 4 || ts < 4)
        return kd_errf(e, KD_ERR_FORMAT, "%s: precompiled_charsmap: trie of %u bytes in a blob of %zu bytes", origin,
                       ts, n);
    charsmap *c = calloc(1, sizeof *c);
    if (!c) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
    c->n_units = ts / 4;
    c->norm_len = n - 4 - ts;
    c->units = malloc(c->n_units * sizeof *c->units);
    c->norm = malloc(c->norm_len + 1);
    if (!c->units || !c->norm) {
        cm_free(c);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
    }
    for (size_t i = 0; i < c->n_units; i++) {
        const uint8_t *p = b + 4 + 4 * i;
        c->units[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    memcpy(c->norm, b + 4 + ts, c->norm_len);
    c->norm[c->norm_len] = 0;
    const char *why = NULL;
    size_t bad = kd_utf8_invalid_at(c->norm, c->norm_len, &why);
    if (bad < c->norm_len) {
        cm_free(c);
        return kd_errf(e, KD_ERR_FORMAT, "%s: precompiled_charsmap: replacement text is not UTF-8 at byte %zu%s%s",
                       origin, bad, why ? ": " : "", why ? why : "");
    }
    *out = c;
    return KD_OK;
}

/* Double-array common-prefix search over key[0..n). With stop_at_nul the search ends at a 0 byte
 * (the tokenizers library's reading); sentencepiece passes the length. mode 0: first (shortest)
 * match, mode 1: longest. Returns the match length (0: none) and *value. A unit index outside the
 * array ends the search (a well-formed charsmap never points there). */
static size_t cm_search(const charsmap *c, const uint8_t *key, size_t n, int stop_at_nul, int longest,
                        uint32_t *value) {
    size_t pos = 0, found = 0;
    if (c->n_units == 0) return 0;
    uint32_t unit = c->units[0];
    pos ^= (size_t)((unit >> 10) << ((unit & (1u << 9)) >> 6));
    for (size_t i = 0; i < n; i++) {
        if (stop_at_nul && key[i] == 0) break;
        pos ^= key[i];
        if (pos >= c->n_units) break;
        unit = c->units[pos];
        if ((unit & ((1u << 31) | 0xFFu)) != key[i]) break;
        pos ^= (size_t)((unit >> 10) << ((unit & (1u << 9)) >> 6));
        if ((unit >> 8) & 1) {
            if (pos >= c->n_units) break;
            *value = c->units[pos] & ((1u << 31) - 1);
            found = i + 1;
            if (!longest) return found;
        }
    }
    return found;
}

/* The replacement text at value (up to its NUL); NULL if value is outside the blob or inside a
 * character. */
static const uint8_t *cm_text(const charsmap *c, uint32_t value, size_t *len) {
    if (value > c->norm_len) return NULL;
    const uint8_t *s = c->norm + value;
    if ((s[0] & 0xC0) == 0x80) return NULL;
    *len = strlen((const char *)s);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* normaliser steps (tokenizer.json)                                                            */

enum { NOP_CHARSMAP, NOP_NFC, NOP_NFD, NOP_NFKC, NOP_NFKD, NOP_LOWER, NOP_STRIP, NOP_STRIP_ACCENTS, NOP_REPLACE,
       NOP_REPLACE_RUN, NOP_PREPEND };

typedef struct nop {
    int kind;
    charsmap *cm;
    int strip_left, strip_right;
    uint8_t *pat, *content; /* REPLACE: literal pattern; PREPEND: content */
    size_t pat_len, content_len;
    uint32_t run_cp;        /* REPLACE_RUN: code point (0: any White_Space) ... */
    int run_min;            /* ... repeated at least run_min times */
} nop;

static void nops_free(nop *v, int n) {
    for (int i = 0; i < n; i++) {
        cm_free(v[i].cm);
        free(v[i].pat);
        free(v[i].content);
    }
    free(v);
}

/* Applies the tokenizers library's Precompiled normaliser to one grapheme g[0..n). */
static kd_status cm_grapheme(const charsmap *c, const uint8_t *g, size_t n, bbuf *out, const char *origin,
                             kd_err *e) {
    uint32_t v;
    size_t tl;
    const uint8_t *r;
    if (n < GRAPHEME_WHOLE && cm_search(c, g, n, 1, 0, &v)) {
        if (!(r = cm_text(c, v, &tl)))
            return kd_errf(e, KD_ERR_FORMAT, "%s: precompiled_charsmap entry %u is not a text", origin, v);
        return bb_put(out, r, tl) ? KD_OK : kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
    }
    for (size_t i = 0; i < n;) {
        size_t l = u8_len(g[i]);
        if (cm_search(c, g + i, l, 1, 0, &v)) {
            if (!(r = cm_text(c, v, &tl)))
                return kd_errf(e, KD_ERR_FORMAT, "%s: precompiled_charsmap entry %u is not a text", origin, v);
        } else {
            r = g + i;
            tl = l;
        }
        if (!bb_put(out, r, tl)) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
        i += l;
    }
    return KD_OK;
}

static kd_status lower_char(uint32_t cp, bbuf *out) {
    uint8_t u[8];
    size_t k;
    if (cp == 0x130) { /* full mapping: "i" + combining dot above */
        k = u8_enc('i', u);
        k += u8_enc(0x307, u + k);
    } else {
        k = u8_enc((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), u);
    }
    return bb_put(out, u, k) ? KD_OK : KD_ERR_OOM;
}

/* One step over a whole text. */
static kd_status nop_apply(const kd_xlmr_tokenizer *t, const nop *op, const uint8_t *s, size_t n, bbuf *out,
                           kd_err *e) {
    out->n = 0;
    switch (op->kind) {
    case NOP_CHARSMAP: {
        utf8proc_int32_t state = 0;
        size_t gs = 0, l;
        uint32_t prev = 0;
        for (size_t i = 0; i < n; i += l) {
            uint32_t cp = u8_dec(s + i, &l);
            if (i > 0 && utf8proc_grapheme_break_stateful((utf8proc_int32_t)prev, (utf8proc_int32_t)cp, &state)) {
                KD_TRY(cm_grapheme(op->cm, s + gs, i - gs, out, t->origin, e));
                gs = i;
            }
            prev = cp;
        }
        if (n > gs) KD_TRY(cm_grapheme(op->cm, s + gs, n - gs, out, t->origin, e));
        return KD_OK;
    }
    case NOP_NFC: case NOP_NFD: case NOP_NFKC: case NOP_NFKD: {
        int opt = UTF8PROC_STABLE;
        opt |= (op->kind == NOP_NFC || op->kind == NOP_NFKC) ? UTF8PROC_COMPOSE : UTF8PROC_DECOMPOSE;
        if (op->kind == NOP_NFKC || op->kind == NOP_NFKD) opt |= UTF8PROC_COMPAT;
        utf8proc_uint8_t *r = NULL;
        if (n == 0) return KD_OK;
        utf8proc_ssize_t m = utf8proc_map(s, (utf8proc_ssize_t)n, &r, (utf8proc_option_t)opt);
        if (m < 0) return kd_errf(e, KD_ERR_INTERNAL, "%s: utf8proc: %s", t->origin, utf8proc_errmsg(m));
        int ok = bb_put(out, r, (size_t)m);
        free(r);
        return ok ? KD_OK : kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    }
    case NOP_LOWER: case NOP_STRIP_ACCENTS: {
        size_t l;
        for (size_t i = 0; i < n; i += l) {
            uint32_t cp = u8_dec(s + i, &l);
            if (op->kind == NOP_LOWER) {
                if (lower_char(cp, out) != KD_OK) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
            } else if (!is_mark(cp)) {
                if (!bb_put(out, s + i, l)) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
            }
        }
        return KD_OK;
    }
    case NOP_STRIP: {
        size_t a = 0, b = n, l;
        if (op->strip_left)
            while (a < b && is_ws(u8_dec(s + a, &l))) a += l;
        if (op->strip_right) {
            while (b > a) {
                size_t st;
                if (!is_ws(u8_last(s, b, &st))) break;
                b = st;
            }
        }
        return bb_put(out, s + a, b - a) ? KD_OK : kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    }
    case NOP_REPLACE: {
        size_t i = 0;
        while (i < n) {
            if (op->pat_len && i + op->pat_len <= n && memcmp(s + i, op->pat, op->pat_len) == 0) {
                if (!bb_put(out, op->content, op->content_len)) goto oom;
                i += op->pat_len;
            } else {
                size_t l = u8_len(s[i]);
                if (!bb_put(out, s + i, l)) goto oom;
                i += l;
            }
        }
        return KD_OK;
    }
    case NOP_REPLACE_RUN: {
        size_t i = 0, l;
        while (i < n) {
            uint32_t cp = u8_dec(s + i, &l);
            int hit = op->run_cp ? cp == op->run_cp : is_ws(cp);
            if (!hit) {
                if (!bb_put(out, s + i, l)) goto oom;
                i += l;
                continue;
            }
            size_t j = i;
            int cnt = 0;
            while (j < n) {
                size_t l2;
                uint32_t c2 = u8_dec(s + j, &l2);
                if (!(op->run_cp ? c2 == op->run_cp : is_ws(c2))) break;
                j += l2;
                cnt++;
            }
            if (cnt >= op->run_min) {
                if (!bb_put(out, op->content, op->content_len)) goto oom;
            } else if (!bb_put(out, s + i, j - i)) {
                goto oom;
            }
            i = j;
        }
        return KD_OK;
    }
    case NOP_PREPEND:
        if (n && (!bb_put(out, op->content, op->content_len) || !bb_put(out, s, n))) goto oom;
        return KD_OK;
    default:
        return kd_errf(e, KD_ERR_INTERNAL, "%s: unknown normaliser step %d", t->origin, op->kind);
    }
oom:
    return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
}

/* ------------------------------------------------------------------------------------------ */
/* added tokens                                                                                 */

typedef struct added {
    uint8_t *text; /* as matched: the content, or its normalised form */
    size_t len;
    int32_t id;
    int normalized, lstrip, rstrip, single_word;
} added;

static void added_free(added *a, int n) {
    for (int i = 0; i < n; i++) free(a[i].text);
    free(a);
}

void kd_xlmr_tokenizer_free(kd_xlmr_tokenizer *t) {
    if (!t) return;
    free(t->origin);
    free(t->pieces);
    free(t->pool);
    free(t->map.slot);
    free(t->trie);
    nops_free(t->nops, t->n_nops);
    cm_free(t->spm_cm);
    for (int i = 0; i < t->n_user; i++) free(t->user_syms[i]);
    free(t->user_syms);
    free(t->user_len);
    added_free(t->added, t->n_added);
    free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* token output                                                                                 */

typedef struct {
    int32_t *ids;
    int count, limit;
} sink;

static int sink_full(const sink *s) { return s->count >= s->limit; }

static void sink_put(sink *s, int32_t id) {
    if (s->count < s->limit) s->ids[s->count++] = id;
}

/* Per Viterbi unit: consecutive unknown pieces fuse into one token whose text is looked up. */
typedef struct {
    const kd_xlmr_tokenizer *t;
    sink *out;
    bbuf unk;        /* the fused unknown text so far (at most max_piece_len + 4 bytes kept) */
    size_t unk_len;  /* its full length */
    int unk_open;
    int unk_emitted; /* already emitted (it cannot be a piece: too long) */
} emitter;

static void emit_bytes(emitter *m, const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n && !sink_full(m->out); i++) sink_put(m->out, m->t->byte_id[s[i]]);
}

static kd_status emit_flush(emitter *m, kd_err *e) {
    const kd_xlmr_tokenizer *t = m->t;
    if (!m->unk_open) return KD_OK;
    m->unk_open = 0;
    if (m->unk_emitted) return KD_OK;
    int id = -1;
    if (t->spm && t->byte_fallback) { /* sentencepiece splits every unknown piece into bytes */
        emit_bytes(m, m->unk.p, m->unk.n);
        return KD_OK;
    }
    if (m->unk_len == m->unk.n) id = idmap_get(t, m->unk.p, m->unk.n);
    if (id >= 0) {
        sink_put(m->out, id);
    } else if (t->byte_fallback && t->has_all_bytes) {
        emit_bytes(m, m->unk.p, m->unk.n);
    } else {
        sink_put(m->out, t->unk_id);
    }
    (void)e;
    return KD_OK;
}

static kd_status emit_piece(emitter *m, int id, const uint8_t *s, size_t n, kd_err *e) {
    const kd_xlmr_tokenizer *t = m->t;
    if (id != t->unk_id) {
        KD_TRY(emit_flush(m, e));
        sink_put(m->out, id);
        return KD_OK;
    }
    if (!m->unk_open) {
        m->unk_open = 1;
        m->unk_emitted = 0;
        m->unk.n = 0;
        m->unk_len = 0;
    }
    m->unk_len += n;
    if (m->unk_emitted) {
        if (t->byte_fallback) emit_bytes(m, s, n);
        return KD_OK;
    }
    if (!bb_put(&m->unk, s, n)) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    /* Longer than every piece: the fused token can only be <unk> or its bytes, so it can go out now
     * (sentencepiece's byte fallback never looks the text up). */
    int can_go = (t->spm && t->byte_fallback) || m->unk_len > t->max_piece_len;
    if (can_go && (!t->byte_fallback || t->has_all_bytes || t->spm)) {
        if (t->byte_fallback) emit_bytes(m, m->unk.p, m->unk.n);
        else sink_put(m->out, t->unk_id);
        m->unk_emitted = 1;
        m->unk.n = 0;
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Viterbi over one unit, fed incrementally                                                     */

typedef struct {
    double score;  /* sentencepiece: always a float value */
    int64_t start; /* -1: not reached */
    int32_t id;
} vnode;

typedef struct {
    const kd_xlmr_tokenizer *t;
    emitter em;
    bbuf text;      /* unit bytes from base */
    vnode *nodes;   /* nodes[i]: best path ending at base + i */
    size_t nodes_cap;
    size_t base;    /* absolute position of text.p[0] */
    size_t next;    /* next character start to expand (absolute) */
    size_t span_try;/* pending span at which the next commit is tried */
    uint8_t *mark;
    size_t mark_cap;
    int open;
} viterbi;

static kd_status vit_reserve_nodes(viterbi *v, size_t n, kd_err *e) {
    if (n <= v->nodes_cap) return KD_OK;
    size_t nc = v->nodes_cap ? v->nodes_cap : 1024;
    while (nc < n) nc *= 2;
    vnode *nn = realloc(v->nodes, nc * sizeof *nn);
    if (!nn) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", v->t->origin);
    v->nodes = nn;
    v->nodes_cap = nc;
    return KD_OK;
}

static kd_status vit_begin(viterbi *v, kd_err *e) {
    v->text.n = 0;
    v->base = 0;
    v->next = 0;
    v->span_try = COMMIT_SPAN;
    v->em.unk_open = 0;
    KD_TRY(vit_reserve_nodes(v, 1, e));
    v->nodes[0] = (vnode){0.0, -1, -1};
    v->open = 1;
    return KD_OK;
}

/* Relaxes every edge that starts at the character at absolute position s. */
static void vit_expand(viterbi *v, size_t s) {
    const kd_xlmr_tokenizer *t = v->t;
    const uint8_t *txt = v->text.p + (s - v->base);
    size_t avail = v->text.n - (s - v->base);
    size_t mblen = u8_len(txt[0]);
    const vnode *from = &v->nodes[s - v->base];
    int single = 0;
    uint32_t node = 0;
    for (size_t i = 0; i < avail; i++) {
        int c = trie_step(t, node, txt[i]);
        if (c < 0) break;
        node = (uint32_t)c;
        int id = t->trie[node].id;
        if (id < 0) continue;
        size_t len = i + 1;
        vnode *to = &v->nodes[s - v->base + len];
        if (t->spm) {
            if (t->pieces[id].type == PT_UNUSED) continue;
            /* sentencepiece's source adds in double and stores a float, but the released builds
             * (pip 0.2.x) behave as float arithmetic throughout: ties such as "s"+"ss" against
             * "ss"+"s" come out as in float (tests/data/xlmr_tokenizer, prompt "<sss>") */
            float term = t->pieces[id].type == PT_USER ? (float)((double)((float)len * t->max_score_f) - 0.1)
                                                       : t->pieces[id].score_f;
            float cand = term + (float)from->score;
            if (to->start < 0 || (double)cand > to->score) {
                to->score = (double)cand;
                to->start = (int64_t)s;
                to->id = id;
            }
        } else {
            double cand = t->pieces[id].score + from->score;
            if (to->start < 0 || cand > to->score) {
                to->score = cand;
                to->start = (int64_t)s;
                to->id = id;
            }
        }
        if (len == mblen) single = 1;
    }
    if (!single) {
        vnode *to = &v->nodes[s - v->base + mblen];
        double cand;
        if (t->spm) {
            float c = (t->min_score_f - (float)UNK_PENALTY) + (float)from->score;
            cand = (double)c;
        } else {
            cand = (t->min_score - UNK_PENALTY) + from->score;
        }
        if (to->start < 0 || cand > to->score) {
            to->score = cand;
            to->start = (int64_t)s;
            to->id = t->unk_id;
        }
    }
}

/* Emits the path from base to position c (absolute) and makes c the new base. */
static kd_status vit_commit(viterbi *v, size_t c, kd_err *e) {
    if (c <= v->base) return KD_OK;
    /* reverse the back links of the path in place: afterwards nodes[end].start holds the end of
     * the node that follows (-1 after c), then walk forward */
    size_t p = c;
    int64_t after = -1;
    while (p > v->base) {
        vnode *n = &v->nodes[p - v->base];
        size_t st = (size_t)n->start;
        n->start = after;
        after = (int64_t)p;
        p = st;
    }
    size_t s = v->base;
    while (after >= 0) {
        size_t end = (size_t)after;
        vnode *n = &v->nodes[end - v->base];
        KD_TRY(emit_piece(&v->em, n->id, v->text.p + (s - v->base), end - s, e));
        after = n->start;
        n->start = (int64_t)s; /* restore */
        s = end;
    }
    size_t drop = c - v->base;
    memmove(v->text.p, v->text.p + drop, v->text.n - drop);
    v->text.n -= drop;
    memmove(v->nodes, v->nodes + drop, (v->text.n + 1) * sizeof *v->nodes);
    v->base = c;
    return KD_OK;
}

/* Commits the prefix every surviving path shares: positions up to v->next are settled, and the
 * best final path passes through one of the character boundaries in (next - maxlen, next]; their
 * common ancestor (scanning down, following each marked position to its predecessor) is on it. */
static kd_status vit_try_commit(viterbi *v, kd_err *e) {
    const kd_xlmr_tokenizer *t = v->t;
    size_t span = v->next - v->base;
    if (span < v->span_try) return KD_OK;
    size_t win = t->max_piece_len > 4 ? t->max_piece_len : 4;
    if (v->mark_cap < span + 1) {
        uint8_t *m = realloc(v->mark, span + 1);
        if (!m) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
        v->mark = m;
        v->mark_cap = span + 1;
    }
    memset(v->mark, 0, span + 1);
    size_t active = 0;
    size_t lo = span > win ? span - win + 1 : 1;
    for (size_t i = lo; i <= span; i++)
        if (v->nodes[i].start >= 0) {
            v->mark[i] = 1;
            active++;
        }
    size_t lca = 0;
    for (size_t i = span; i > 0; i--) {
        if (!v->mark[i]) continue;
        if (active == 1) {
            lca = i;
            break;
        }
        v->mark[i] = 0;
        size_t par = (size_t)v->nodes[i].start - v->base;
        if (v->mark[par]) active--;
        else v->mark[par] = 1;
    }
    if (lca == 0) {
        v->span_try = span * 2; /* no convergence yet: try again when twice as much is pending */
        return KD_OK;
    }
    KD_TRY(vit_commit(v, v->base + lca, e));
    v->span_try = COMMIT_SPAN;
    return KD_OK;
}

static kd_status vit_run(viterbi *v, int final, kd_err *e) {
    const kd_xlmr_tokenizer *t = v->t;
    size_t end = v->base + v->text.n;
    while (v->next < end && (final || end - v->next >= t->max_piece_len)) {
        vit_expand(v, v->next);
        v->next += u8_len(v->text.p[v->next - v->base]);
        if (!final && v->next - v->base >= v->span_try) {
            KD_TRY(vit_try_commit(v, e));
            if (sink_full(v->em.out)) return KD_OK;
            end = v->base + v->text.n;
        }
    }
    return KD_OK;
}

static kd_status vit_push(viterbi *v, const uint8_t *s, size_t n, kd_err *e) {
    if (!n || sink_full(v->em.out)) return KD_OK;
    if (!bb_put(&v->text, s, n)) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", v->t->origin);
    size_t old = v->nodes_cap;
    KD_TRY(vit_reserve_nodes(v, v->text.n + 1, e));
    (void)old;
    /* new positions start unreached (position 0 of a fresh unit is the root, set by vit_begin) */
    for (size_t i = v->text.n - n + 1; i <= v->text.n; i++) v->nodes[i] = (vnode){0.0, -1, -1};
    return vit_run(v, 0, e);
}

static kd_status vit_end(viterbi *v, kd_err *e) {
    if (!v->open) return KD_OK;
    v->open = 0;
    if (sink_full(v->em.out)) return KD_OK;
    KD_TRY(vit_run(v, 1, e));
    if (sink_full(v->em.out)) return KD_OK;
    KD_TRY(vit_commit(v, v->base + v->text.n, e));
    return emit_flush(&v->em, e);
}

/* ------------------------------------------------------------------------------------------ */
/* sentencepiece BPE (KD_XLMR_SENTENCEPIECE, model_type BPE) over a whole normalised text        */

typedef struct {
    int left, right;
    float score;
    size_t size;
} bpe_pair;

typedef struct {
    int prev, next, freeze;
    size_t off, len;
} bpe_sym;

static int pair_before(const bpe_pair *a, const bpe_pair *b) {
    /* priority: higher score first, then lower left index */
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    bpe_pair *h;
    size_t n, cap;
} bpe_heap;

static int heap_push(bpe_heap *q, bpe_pair p) {
    if (q->n == q->cap) {
        size_t nc = q->cap ? q->cap * 2 : 256;
        bpe_pair *nh = realloc(q->h, nc * sizeof *nh);
        if (!nh) return 0;
        q->h = nh;
        q->cap = nc;
    }
    size_t i = q->n++;
    while (i > 0) {
        size_t par = (i - 1) / 2;
        if (!pair_before(&p, &q->h[par])) break;
        q->h[i] = q->h[par];
        i = par;
    }
    q->h[i] = p;
    return 1;
}

static bpe_pair heap_pop(bpe_heap *q) {
    bpe_pair top = q->h[0], last = q->h[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && pair_before(&q->h[c + 1], &q->h[c])) c++;
        if (!pair_before(&q->h[c], &last)) break;
        q->h[i] = q->h[c];
        i = c;
    }
    if (q->n) q->h[i] = last;
    return top;
}

/* longest user-defined symbol at s[0..n), 0 if none */
static size_t user_prefix(const kd_xlmr_tokenizer *t, const uint8_t *s, size_t n) {
    size_t best = 0;
    for (int i = 0; i < t->n_user; i++)
        if (t->user_len[i] <= n && t->user_len[i] > best && memcmp(s, t->user_syms[i], t->user_len[i]) == 0)
            best = t->user_len[i];
    return best;
}

/* sentencepiece's normal-piece lookup (normal, user-defined and unused pieces), -1 if none */
static int spm_piece(const kd_xlmr_tokenizer *t, const uint8_t *s, size_t n) {
    int id = idmap_get(t, s, n);
    if (id < 0) return -1;
    int ty = t->pieces[id].type;
    return (ty == PT_NORMAL || ty == PT_USER || ty == PT_UNUSED) ? id : -1;
}

/* sentencepiece's rev_merge: for an unused piece, the two symbols of the last pair queued that
 * would produce it (split back into them on output) */
typedef struct {
    int32_t id;
    uint32_t left_len;
} rev_merge;

typedef struct {
    rev_merge *r;
    size_t n, cap;
} rev_list;

static int rev_put(rev_list *l, int32_t id, size_t left_len) {
    for (size_t i = 0; i < l->n; i++)
        if (l->r[i].id == id) {
            l->r[i].left_len = (uint32_t)left_len;
            return 1;
        }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        rev_merge *nr = realloc(l->r, nc * sizeof *nr);
        if (!nr) return 0;
        l->r = nr;
        l->cap = nc;
    }
    l->r[l->n++] = (rev_merge){id, (uint32_t)left_len};
    return 1;
}

static kd_status bpe_resegment(const kd_xlmr_tokenizer *t, emitter *em, const rev_list *rev, const uint8_t *txt,
                               size_t off, size_t len, int depth, kd_err *e) {
    int id = idmap_get(t, txt + off, len);
    if (id >= 0 && t->pieces[id].type == PT_UNUSED && depth < 256) {
        for (size_t i = 0; i < rev->n; i++)
            if (rev->r[i].id == id) {
                size_t k = rev->r[i].left_len;
                KD_TRY(bpe_resegment(t, em, rev, txt, off, k, depth + 1, e));
                return bpe_resegment(t, em, rev, txt, off + k, len - k, depth + 1, e);
            }
    }
    /* transformers 4 maps the piece text: its id, or <unk> */
    return emit_piece(em, id >= 0 ? id : t->unk_id, txt + off, len, e);
}

static kd_status bpe_encode(const kd_xlmr_tokenizer *t, emitter *em, const uint8_t *txt, size_t n, kd_err *e) {
    kd_status st = KD_OK;
    bpe_sym *sym = NULL;
    bpe_heap q = {0};
    rev_list rev = {0};
    size_t ns = 0;
    if (!n) return KD_OK;
    sym = malloc(n * sizeof *sym);
    if (!sym) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    for (size_t i = 0; i < n;) {
        size_t l = user_prefix(t, txt + i, n - i);
        int fr = l > 0;
        if (!l) l = u8_len(txt[i]);
        sym[ns] = (bpe_sym){(int)ns - 1, i + l < n ? (int)ns + 1 : -1, fr, i, l};
        ns++;
        i += l;
    }
#define ADD_PAIR(L, R)                                                                               \
    do {                                                                                             \
        int l_ = (L), r_ = (R);                                                                      \
        if (l_ >= 0 && r_ >= 0 && !sym[l_].freeze && !sym[r_].freeze) {                              \
            size_t sz_ = sym[l_].len + sym[r_].len;                                                  \
            int id_ = spm_piece(t, txt + sym[l_].off, sz_);                                          \
            if (id_ >= 0 && (!heap_push(&q, (bpe_pair){l_, r_, t->pieces[id_].score_f, sz_}) ||      \
                             (t->pieces[id_].type == PT_UNUSED && !rev_put(&rev, id_, sym[l_].len)))) { \
                st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);                         \
                goto done;                                                                           \
            }                                                                                        \
        }                                                                                            \
    } while (0)
    for (size_t i = 1; i < ns; i++) ADD_PAIR((int)i - 1, (int)i);
    while (q.n) {
        bpe_pair top = heap_pop(&q);
        if (sym[top.left].len == 0 || sym[top.right].len == 0 || sym[top.left].len + sym[top.right].len != top.size)
            continue;
        sym[top.left].len += sym[top.right].len;
        sym[top.left].next = sym[top.right].next;
        if (sym[top.right].next >= 0) sym[sym[top.right].next].prev = top.left;
        sym[top.right].len = 0;
        ADD_PAIR(sym[top.left].prev, top.left);
        ADD_PAIR(top.left, sym[top.left].next);
    }
#undef ADD_PAIR
    for (int i = 0; i >= 0 && !sink_full(em->out); i = sym[i].next)
        if ((st = bpe_resegment(t, em, &rev, txt, sym[i].off, sym[i].len, 0, e)) != KD_OK) goto done;
    st = emit_flush(em, e);
done:
    free(sym);
    free(q.h);
    free(rev.r);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* pre-tokeniser (tokenizers pipeline): WhitespaceSplit and/or Metaspace as a state machine over
 * the normalised text of one split (the text between two added tokens)                         */

typedef struct {
    const kd_xlmr_tokenizer *t;
    viterbi *v;
    int in_word, word_start, word_origin;
    int split_origin; /* the split starts at byte 0 of the prompt (Metaspace "first") */
    int first_char;   /* no character of the split seen yet */
} pretok;

static kd_status unit_close(pretok *p, kd_err *e) {
    if (p->v->open) return vit_end(p->v, e);
    return KD_OK;
}

static kd_status unit_open(pretok *p, kd_err *e) {
    KD_TRY(unit_close(p, e));
    return vit_begin(p->v, e);
}

static void pt_begin(pretok *p, int origin) {
    p->in_word = 0;
    p->split_origin = origin;
    p->first_char = 1;
}

/* One character of normalised text. from_first: it comes from the first character of the prompt
 * (only that can make a word start at original offset 0). */
static kd_status pt_char(pretok *p, const uint8_t *c, size_t l, uint32_t cp, int from_first, kd_err *e) {
    const kd_xlmr_tokenizer *t = p->t;
    int first = p->first_char;
    p->first_char = 0;
    if (t->ws_split && is_ws(cp)) {
        if (p->in_word) {
            p->in_word = 0;
            KD_TRY(unit_close(p, e));
        }
        return KD_OK;
    }
    if (!p->in_word) {
        p->in_word = 1;
        p->word_start = 1;
        p->word_origin = t->ws_split ? (p->split_origin && from_first) : (p->split_origin && first && from_first);
    }
    if (!t->meta) {
        if (p->word_start) {
            p->word_start = 0;
            KD_TRY(unit_open(p, e));
        }
        return vit_push(p->v, c, l, e);
    }
    if (cp == ' ') {
        c = t->meta_rep;
        l = t->meta_rep_len;
        cp = t->meta_cp;
    }
    if (p->word_start) {
        p->word_start = 0;
        int prepend = cp != t->meta_cp && (t->meta_scheme == 1 || (t->meta_scheme == 2 && p->word_origin));
        if (prepend) {
            KD_TRY(unit_open(p, e));
            KD_TRY(vit_push(p->v, t->meta_rep, t->meta_rep_len, e));
        }
    }
    if (cp == t->meta_cp && t->meta_split) {
        KD_TRY(unit_open(p, e));
        return vit_push(p->v, c, l, e);
    }
    if (!p->v->open) KD_TRY(unit_open(p, e));
    return vit_push(p->v, c, l, e);
}

static kd_status pt_text(pretok *p, const uint8_t *s, size_t n, int from_first, kd_err *e) {
    size_t l;
    for (size_t i = 0; i < n && !sink_full(p->v->em.out); i += l) {
        uint32_t cp = u8_dec(s + i, &l);
        KD_TRY(pt_char(p, s + i, l, cp, from_first, e));
    }
    return KD_OK;
}

static kd_status pt_end(pretok *p, kd_err *e) {
    p->in_word = 0;
    return unit_close(p, e);
}

/* ------------------------------------------------------------------------------------------ */
/* tokenizers pipeline                                                                          */

typedef struct {
    const kd_xlmr_tokenizer *t;
    sink out;
    viterbi v;
    pretok pt;
    bbuf a, b, g;   /* scratch */
    size_t *next;      /* cached next occurrence per added token (raw text) */
    size_t *next_norm; /* (normalised text) */
} work;

/* leftmost-longest occurrence among the added tokens with normalized == want at or after pos */
static int find_added(const kd_xlmr_tokenizer *t, size_t *next, int want, const uint8_t *s, size_t n, size_t pos,
                      size_t *at) {
    int best = -1;
    size_t bs = NO_MATCH, bl = 0;
    for (int k = 0; k < t->n_added; k++) {
        const added *a = &t->added[k];
        if (a->normalized != want) continue;
        if (next[k] == NOT_SEARCHED || (next[k] != NO_MATCH && next[k] < pos)) {
            next[k] = NO_MATCH;
            if (a->len && a->len <= n) {
                const uint8_t *p = s + pos, *last = s + n - a->len;
                while (p <= last) {
                    p = memchr(p, a->text[0], (size_t)(last - p) + 1);
                    if (!p) break;
                    if (memcmp(p, a->text, a->len) == 0) {
                        next[k] = (size_t)(p - s);
                        break;
                    }
                    p++;
                }
            }
        }
        size_t st = next[k];
        if (st != NO_MATCH && (st < bs || (st == bs && a->len > bl))) {
            bs = st;
            bl = a->len;
            best = k;
        }
    }
    *at = bs;
    return best;
}

/* The tokenizers library's find_matches: added-token splits of s[0..n) with lstrip / rstrip /
 * single_word; calls seg() for the text between them and emits the tokens. */
typedef kd_status (*seg_fn)(work *w, const uint8_t *s, size_t n, size_t orig_off, kd_err *e);

static kd_status split_added(work *w, int want, const uint8_t *s, size_t n, size_t orig_off, seg_fn seg, kd_err *e) {
    const kd_xlmr_tokenizer *t = w->t;
    size_t *next = want ? w->next_norm : w->next;
    size_t start_off = 0, pos = 0;
    for (int k = 0; k < t->n_added; k++) next[k] = NOT_SEARCHED;
    while (pos < n && !sink_full(&w->out)) {
        size_t at;
        int k = find_added(t, next, want, s, n, pos, &at);
        if (k < 0) break;
        const added *a = &t->added[k];
        size_t start = at, stop = at + a->len;
        pos = stop; /* matches never overlap, whatever is done with this one */
        for (int j = 0; j < t->n_added; j++)
            if (next[j] != NO_MATCH && next[j] != NOT_SEARCHED && next[j] < pos) next[j] = NOT_SEARCHED;
        if (a->single_word) {
            size_t st, l;
            int sp = start == 0 || !is_word(u8_last(s, start, &st));
            int ep = stop == n || !is_word(u8_dec(s + stop, &l));
            if (!sp || !ep) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t st;
                if (!is_ws(u8_last(s, ns, &st))) break;
                ns = st;
            }
            start = ns > start_off ? ns : start_off;
        }
        if (a->rstrip) {
            size_t l;
            while (stop < n && is_ws(u8_dec(s + stop, &l))) stop += l;
        }
        if (start_off < start) KD_TRY(seg(w, s + start_off, start - start_off, orig_off + start_off, e));
        if (sink_full(&w->out)) return KD_OK;
        sink_put(&w->out, a->id);
        start_off = stop;
    }
    if (start_off < n && !sink_full(&w->out)) KD_TRY(seg(w, s + start_off, n - start_off, orig_off + start_off, e));
    return KD_OK;
}

/* normalised text between normalised added tokens → pre-tokeniser */
static kd_status seg_normalized(work *w, const uint8_t *s, size_t n, size_t orig_off, kd_err *e) {
    pt_begin(&w->pt, orig_off == 0);
    KD_TRY(pt_text(&w->pt, s, n, orig_off == 0, e));
    return pt_end(&w->pt, e);
}

/* raw text between raw added tokens: normalise, split normalised added tokens, pre-tokenise */
static kd_status seg_raw(work *w, const uint8_t *s, size_t n, size_t orig_off, kd_err *e) {
    const kd_xlmr_tokenizer *t = w->t;
    if (t->stream_norm && t->n_added_norm == 0) {
        /* grapheme by grapheme straight into the pre-tokeniser */
        const nop *cm = t->n_nops && t->nops[0].kind == NOP_CHARSMAP ? &t->nops[0] : NULL;
        utf8proc_int32_t state = 0;
        size_t gs = 0, l;
        uint32_t prev = 0;
        pt_begin(&w->pt, orig_off == 0);
        for (size_t i = 0; i <= n && !sink_full(&w->out); i += l) {
            uint32_t cp = 0;
            l = 1;
            if (i < n) cp = u8_dec(s + i, &l);
            if (i == n || (i > 0 && utf8proc_grapheme_break_stateful((utf8proc_int32_t)prev, (utf8proc_int32_t)cp,
                                                                       &state))) {
                if (i > gs) {
                    const uint8_t *g = s + gs;
                    size_t gl = i - gs;
                    if (cm) {
                        w->g.n = 0;
                        KD_TRY(cm_grapheme(cm->cm, g, gl, &w->g, t->origin, e));
                        g = w->g.p;
                        gl = w->g.n;
                    }
                    for (int k = cm ? 1 : 0; k < t->n_nops; k++) { /* char-local steps (Lowercase) */
                        KD_TRY(nop_apply(t, &t->nops[k], g, gl, &w->a, e));
                        bbuf tmp = w->a;
                        w->a = w->g;
                        w->g = tmp;
                        g = w->g.p;
                        gl = w->g.n;
                    }
                    KD_TRY(pt_text(&w->pt, g, gl, orig_off == 0 && gs == 0, e));
                }
                gs = i;
            }
            prev = cp;
        }
        return pt_end(&w->pt, e);
    }
    /* whole text through the normaliser steps */
    w->a.n = 0;
    if (!bb_put(&w->a, s, n)) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    for (int k = 0; k < t->n_nops; k++) {
        KD_TRY(nop_apply(t, &t->nops[k], w->a.p, w->a.n, &w->b, e));
        bbuf tmp = w->a;
        w->a = w->b;
        w->b = tmp;
    }
    if (w->a.n == 0) return KD_OK;
    /* w->a is reused by nothing below: split_added only reads it */
    bbuf text = w->a;
    memset(&w->a, 0, sizeof w->a);
    kd_status st = split_added(w, 1, text.p, text.n, orig_off, seg_normalized, e);
    bb_free(&text);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* sentencepiece pipeline                                                                       */

/* One step of sentencepiece's NormalizePrefix at s[0..n): *out, *out_len the replacement, returns
 * the bytes consumed. */
static size_t spm_prefix(const kd_xlmr_tokenizer *t, const uint8_t *s, size_t n, const uint8_t **out,
                         size_t *out_len) {
    size_t l = user_prefix(t, s, n);
    if (l) {
        *out = s;
        *out_len = l;
        return l;
    }
    if (t->spm_cm) {
        uint32_t v;
        l = cm_search(t->spm_cm, s, n, 0, 1, &v);
        size_t tl;
        const uint8_t *r;
        if (l && (r = cm_text(t->spm_cm, v, &tl))) {
            *out = r;
            *out_len = tl;
            return l;
        }
    }
    l = u8_len(s[0]);
    *out = s;
    *out_len = l;
    return l;
}

typedef kd_status (*byte_sink)(void *ctx, const uint8_t *s, size_t n, kd_err *e);

/* sentencepiece's Normalizer::Normalize, streamed: trailing space symbols are held back until
 * something else follows. */
typedef struct {
    const kd_xlmr_tokenizer *t;
    byte_sink put;
    void *ctx;
    size_t pending; /* held-back space symbols */
} spm_norm;

static kd_status sn_ws(spm_norm *z, kd_err *e) {
    (void)e;
    z->pending++;
    return KD_OK;
}

static kd_status sn_flush(spm_norm *z, kd_err *e) {
    const kd_xlmr_tokenizer *t = z->t;
    for (; z->pending; z->pending--)
        KD_TRY(z->put(z->ctx, t->escape_ws ? (const uint8_t *)META : (const uint8_t *)" ", t->escape_ws ? 3 : 1, e));
    return KD_OK;
}

static kd_status spm_normalize_stream(const kd_xlmr_tokenizer *t, const uint8_t *s, size_t n, byte_sink put, void *ctx,
                                      const sink *stop, kd_err *e) {
    spm_norm z = {t, put, ctx, 0};
    size_t pos = 0;
    const uint8_t *r;
    size_t rl;
    if (t->remove_extra_ws) {
        while (pos < n) {
            size_t c = spm_prefix(t, s + pos, n - pos, &r, &rl);
            if (!(rl == 1 && r[0] == ' ')) break;
            pos += c;
        }
    }
    if (pos == n) return KD_OK;
    if (!t->ws_suffix && t->add_dummy_prefix) KD_TRY(sn_ws(&z, e));
    int prev_space = t->remove_extra_ws;
    while (pos < n && !(stop && sink_full(stop))) {
        size_t c = spm_prefix(t, s + pos, n - pos, &r, &rl);
        while (prev_space && rl && r[0] == ' ') {
            r++;
            rl--;
        }
        if (rl) {
            size_t i = 0;
            while (i < rl) {
                /* a space, or (escaped) the space symbol itself, is a candidate for trailing removal */
                if (r[i] == ' ') {
                    if (t->escape_ws) KD_TRY(sn_ws(&z, e));
                    else KD_TRY(sn_ws(&z, e));
                    i++;
                } else if (t->escape_ws && i + 3 <= rl && memcmp(r + i, META, 3) == 0) {
                    KD_TRY(sn_ws(&z, e));
                    i += 3;
                } else {
                    size_t j = i + 1;
                    while (j < rl && r[j] != ' ' && !(t->escape_ws && j + 3 <= rl && memcmp(r + j, META, 3) == 0)) j++;
                    KD_TRY(sn_flush(&z, e));
                    KD_TRY(put(ctx, r + i, j - i, e));
                    i = j;
                }
            }
            prev_space = r[rl - 1] == ' ';
        }
        pos += c;
        if (!t->remove_extra_ws) prev_space = 0;
    }
    if (!t->remove_extra_ws) KD_TRY(sn_flush(&z, e));
    if (t->ws_suffix && t->add_dummy_prefix) KD_TRY(put(ctx, t->escape_ws ? (const uint8_t *)META : (const uint8_t *)" ",
                                                         t->escape_ws ? 3 : 1, e));
    return KD_OK;
}

static kd_status put_viterbi(void *ctx, const uint8_t *s, size_t n, kd_err *e) { return vit_push(ctx, s, n, e); }

static kd_status put_bbuf(void *ctx, const uint8_t *s, size_t n, kd_err *e) {
    bbuf *b = ctx;
    return bb_put(b, s, n) ? KD_OK : kd_errf(e, KD_ERR_OOM, "out of memory");
}

/* text between special tokens → sentencepiece encode */
static kd_status seg_spm(work *w, const uint8_t *s, size_t n, size_t orig_off, kd_err *e) {
    const kd_xlmr_tokenizer *t = w->t;
    (void)orig_off;
    if (t->bpe) {
        w->a.n = 0;
        KD_TRY(spm_normalize_stream(t, s, n, put_bbuf, &w->a, NULL, e));
        w->v.em.unk_open = 0;
        return bpe_encode(t, &w->v.em, w->a.p, w->a.n, e);
    }
    KD_TRY(vit_begin(&w->v, e));
    KD_TRY(spm_normalize_stream(t, s, n, put_viterbi, &w->v, &w->out, e));
    return vit_end(&w->v, e);
}

/* transformers 4's slow tokenize(): split on the added tokens (all of them special, matched on the
 * raw text), strip on the sides their flags say with Python's white space, encode the rest. */
static kd_status split_spm(work *w, const uint8_t *s, size_t n, kd_err *e) {
    const kd_xlmr_tokenizer *t = w->t;
    size_t pos = 0, chunk = 0;
    for (int k = 0; k < t->n_added; k++) w->next[k] = NOT_SEARCHED;
    int pending_rstrip = 0;
    while (!sink_full(&w->out)) {
        size_t at;
        int k = find_added(t, w->next, 0, s, n, pos, &at);
        size_t cend = k >= 0 ? at : n;
        size_t cs = chunk;
        if (pending_rstrip) { /* the previous token eats white space on its right */
            size_t l;
            while (cs < cend && py_space(u8_dec(s + cs, &l))) cs += l;
        }
        size_t ce = cend;
        if (k >= 0 && t->added[k].lstrip) {
            while (ce > cs) {
                size_t st;
                if (!py_space(u8_last(s + cs, ce - cs, &st))) break;
                ce = cs + st;
            }
        }
        if (ce > cs) KD_TRY(seg_spm(w, s + cs, ce - cs, cs, e));
        if (k < 0 || sink_full(&w->out)) break;
        sink_put(&w->out, t->added[k].id);
        pending_rstrip = t->added[k].rstrip;
        pos = chunk = at + t->added[k].len;
        for (int j = 0; j < t->n_added; j++)
            if (w->next[j] != NO_MATCH && w->next[j] != NOT_SEARCHED && w->next[j] < pos) w->next[j] = NOT_SEARCHED;
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* tokenize                                                                                     */

static void work_free(work *w) {
    bb_free(&w->a);
    bb_free(&w->b);
    bb_free(&w->g);
    bb_free(&w->v.text);
    bb_free(&w->v.em.unk);
    free(w->v.nodes);
    free(w->v.mark);
    free(w->next);
    free(w->next_norm);
}

kd_status kd_xlmr_tokenize(const kd_xlmr_tokenizer *t, const char *text, size_t len, int max_len, int32_t *ids,
                           int32_t *mask, int *n_real, kd_err *e) {
    if (!t || !ids || (!text && len))
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_xlmr_tokenize: NULL tokenizer, text or ids");
    int n_special = t->n_prefix + t->n_suffix;
    if (max_len < n_special || max_len < 1)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_xlmr_tokenize: max_len %d is less than the %d special tokens", max_len,
                       n_special);
    const char *why = NULL;
    size_t bad = len ? kd_utf8_invalid_at((const uint8_t *)text, len, &why) : len;
    if (bad < len)
        return kd_errf(e, KD_ERR_INVALID_ARG,
                       "XLM-R tokenizer: prompt is not valid UTF-8 at byte offset %zu (byte 0x%02X%s%s)", bad,
                       (unsigned)(uint8_t)text[bad], why ? ": " : "", why ? why : "");
    int32_t *tmp = malloc((size_t)max_len * sizeof *tmp);
    work w;
    memset(&w, 0, sizeof w);
    w.t = t;
    w.out.ids = tmp;
    w.out.limit = max_len - n_special;
    w.v.t = t;
    w.v.em.t = t;
    w.v.em.out = &w.out;
    w.pt.t = t;
    w.pt.v = &w.v;
    w.next = malloc((size_t)(t->n_added + 1) * sizeof *w.next);
    w.next_norm = malloc((size_t)(t->n_added + 1) * sizeof *w.next_norm);
    kd_status st = KD_OK;
    if (!tmp || !w.next || !w.next_norm) {
        st = kd_errf(e, KD_ERR_OOM, "XLM-R tokenizer: out of memory");
        goto done;
    }
    if (t->spm) st = split_spm(&w, (const uint8_t *)text, len, e);
    else st = split_added(&w, 0, (const uint8_t *)text, len, 0, seg_raw, e);
    if (st != KD_OK) goto done;
    int k = 0;
    for (int i = 0; i < t->n_prefix; i++) ids[k++] = t->prefix[i];
    for (int i = 0; i < w.out.count; i++) ids[k++] = tmp[i];
    for (int i = 0; i < t->n_suffix; i++) ids[k++] = t->suffix[i];
    int real = k;
    for (; k < max_len; k++) ids[k] = t->pad_id;
    if (mask)
        for (int i = 0; i < max_len; i++) mask[i] = i < real;
    if (n_real) *n_real = real;
done:
    work_free(&w);
    free(tmp);
    return st;
}

static kd_status norm_sink_bbuf(void *ctx, const uint8_t *s, size_t n, kd_err *e) { return put_bbuf(ctx, s, n, e); }

kd_status kd_xlmr_normalize(const kd_xlmr_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len,
                            kd_err *e) {
    bbuf a = {0}, b = {0};
    kd_status st = KD_OK;
    *out = NULL;
    *out_len = 0;
    if (t->spm) {
        st = spm_normalize_stream(t, (const uint8_t *)s, n, norm_sink_bbuf, &a, NULL, e);
    } else {
        if (!bb_put(&a, s, n)) st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
        for (int k = 0; k < t->n_nops && st == KD_OK; k++) {
            st = nop_apply(t, &t->nops[k], a.p, a.n, &b, e);
            bbuf tmp = a;
            a = b;
            b = tmp;
        }
    }
    bb_free(&b);
    if (st != KD_OK) {
        bb_free(&a);
        return st;
    }
    if (!a.p && !(a.p = malloc(1))) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    *out = (char *)a.p;
    *out_len = a.n;
    return KD_OK;
}

int kd_xlmr_tokenizer_vocab_size(const kd_xlmr_tokenizer *t) { return t ? t->n_pieces : 0; }
int kd_xlmr_tokenizer_pad_id(const kd_xlmr_tokenizer *t) { return t ? t->pad_id : -1; }
int kd_xlmr_tokenizer_bos_id(const kd_xlmr_tokenizer *t) { return t && t->n_prefix ? t->prefix[0] : -1; }
int kd_xlmr_tokenizer_eos_id(const kd_xlmr_tokenizer *t) { return t && t->n_suffix ? t->suffix[t->n_suffix - 1] : -1; }
int kd_xlmr_tokenizer_unk_id(const kd_xlmr_tokenizer *t) { return t ? t->unk_id : -1; }
int kd_xlmr_tokenizer_mask_id(const kd_xlmr_tokenizer *t) { return t ? t->mask_id : -1; }

const char *kd_xlmr_tokenizer_piece(const kd_xlmr_tokenizer *t, int id) {
    if (!t || id < 0 || id >= t->n_pieces) return NULL;
    return t->pool + t->pieces[id].off;
}

/* ------------------------------------------------------------------------------------------ */
/* loading: common                                                                              */

static kd_xlmr_tokenizer *tok_new(const char *origin, unsigned flags) {
    kd_xlmr_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->origin = strdup(origin ? origin : "(memory)");
    if (!t->origin) {
        free(t);
        return NULL;
    }
    t->flags = flags;
    t->spm = (flags & KD_XLMR_SENTENCEPIECE) != 0;
    t->mask_id = -1;
    t->pad_id = -1;
    t->unk_id = -1;
    return t;
}

typedef struct {
    bbuf pool;
    size_t cap;
} vbuild;

static kd_status add_piece(kd_xlmr_tokenizer *t, vbuild *b, const void *s, size_t n, double score, float score_f,
                           int type, kd_err *e) {
    if (t->n_pieces == INT_MAX - 1 || b->pool.n + n + 1 > UINT32_MAX)
        return kd_errf(e, KD_ERR_OOM, "%s: vocabulary too large", t->origin);
    if ((size_t)t->n_pieces == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 1024;
        piece *np = realloc(t->pieces, nc * sizeof *np);
        if (!np) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
        t->pieces = np;
        b->cap = nc;
    }
    piece *p = &t->pieces[t->n_pieces++];
    p->off = (uint32_t)b->pool.n;
    p->len = (uint32_t)n;
    p->score = score;
    p->score_f = score_f;
    p->type = (uint8_t)type;
    static const uint8_t zero = 0;
    if (!bb_put(&b->pool, s, n) || !bb_put(&b->pool, &zero, 1)) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    return KD_OK;
}

static kd_status add_added(kd_xlmr_tokenizer *t, const char *s, size_t n, int32_t id, int normalized, int lstrip,
                           int rstrip, int single_word, kd_err *e) {
    added *na = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *na);
    if (!na) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    t->added = na;
    added *a = &t->added[t->n_added];
    memset(a, 0, sizeof *a);
    if (!(a->text = malloc(n ? n : 1))) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    memcpy(a->text, s, n);
    a->len = n;
    a->id = id;
    a->normalized = normalized;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->single_word = single_word;
    t->n_added++;
    return KD_OK;
}

static int keep_all(const kd_xlmr_tokenizer *t, int id) { return id < t->n_model; }

static int keep_spm(const kd_xlmr_tokenizer *t, int id) {
    int ty = t->pieces[id].type;
    return ty == PT_NORMAL || ty == PT_USER || ty == PT_UNUSED;
}

static int find_text(const kd_xlmr_tokenizer *t, const char *s) {
    size_t n = strlen(s);
    for (int k = t->n_added - 1; k >= 0; k--)
        if (t->added[k].len == n && memcmp(t->added[k].text, s, n) == 0 && !t->added[k].normalized) return t->added[k].id;
    return idmap_get(t, (const uint8_t *)s, n);
}

/* Vocabulary built: map, trie, scores, byte pieces, streaming decision. */
static kd_status finish(kd_xlmr_tokenizer *t, vbuild *b, kd_err *e) {
    t->pool = (char *)b->pool.p;
    t->pool_len = b->pool.n;
    memset(&b->pool, 0, sizeof b->pool);
    if (!idmap_init(&t->map, (size_t)t->n_pieces)) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    t->min_score = INFINITY;
    t->min_score_f = FLT_MAX;
    t->max_score_f = FLT_MIN;
    for (int i = 0; i < t->n_model; i++) {
        const piece *p = &t->pieces[i];
        if (p->len) idmap_put(t, i);
        if (p->len > t->max_piece_len) t->max_piece_len = p->len;
        if (!t->spm && p->score < t->min_score) t->min_score = p->score;
        if (t->spm && p->type == PT_NORMAL) {
            if (p->score_f < t->min_score_f) t->min_score_f = p->score_f;
            if (p->score_f > t->max_score_f) t->max_score_f = p->score_f;
        }
    }
    if (t->max_piece_len < 4) t->max_piece_len = 4;
    KD_TRY(build_trie(t, t->spm ? keep_spm : keep_all, e));
    t->has_all_bytes = 1;
    for (int c = 0; c < 256; c++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", c);
        int id = idmap_get(t, (const uint8_t *)name, 6);
        if (t->spm && id >= 0 && t->pieces[id].type != PT_BYTE) id = -1;
        t->byte_id[c] = id;
        if (id < 0) t->has_all_bytes = 0;
    }
    if (t->spm && t->byte_fallback && !t->has_all_bytes)
        return kd_errf(e, KD_ERR_FORMAT, "%s: byte_fallback is set but the 256 byte pieces <0x00>..<0xFF> are not all there",
                       t->origin);
    if (t->pad_id < 0) t->pad_id = find_text(t, "<pad>");
    if (t->pad_id < 0) return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: no <pad> token to pad with", t->origin);
    if (t->mask_id < 0) t->mask_id = find_text(t, "<mask>");
    /* normaliser steps: whitespace-only rewrites at the end of the chain change no id when the
     * pre-tokeniser splits at white space first (and no normalised added token spans spaces) */
    int ws_added = 0;
    for (int k = 0; k < t->n_added; k++) {
        if (!t->added[k].normalized) continue;
        t->n_added_norm++;
        size_t l;
        for (size_t i = 0; i < t->added[k].len; i += l)
            if (is_ws(u8_dec(t->added[k].text + i, &l))) ws_added = 1;
    }
    if (t->ws_split && !ws_added) {
        int k = t->n_nops;
        while (k > 0) {
            const nop *op = &t->nops[k - 1];
            int ws_only = op->kind == NOP_STRIP;
            if (op->kind == NOP_REPLACE_RUN || op->kind == NOP_REPLACE) {
                int pat_ws = 1, con_ws = op->content_len > 0;
                size_t l;
                if (op->kind == NOP_REPLACE_RUN) pat_ws = op->run_cp == 0 || is_ws(op->run_cp);
                else
                    for (size_t i = 0; i < op->pat_len; i += l) pat_ws &= is_ws(u8_dec(op->pat + i, &l));
                for (size_t i = 0; i < op->content_len; i += l) con_ws &= is_ws(u8_dec(op->content + i, &l));
                ws_only = pat_ws && con_ws && (op->kind == NOP_REPLACE_RUN || op->pat_len > 0);
            }
            if (op->kind == NOP_LOWER || op->kind == NOP_STRIP_ACCENTS) {
                k--;
                continue;
            }
            if (!ws_only) break;
            nop dead = t->nops[k - 1];
            memmove(&t->nops[k - 1], &t->nops[k], (size_t)(t->n_nops - k) * sizeof *t->nops);
            t->n_nops--;
            cm_free(dead.cm);
            free(dead.pat);
            free(dead.content);
            k--;
        }
    }
    t->stream_norm = 1;
    for (int k = 0; k < t->n_nops; k++) {
        int kind = t->nops[k].kind;
        if (!(kind == NOP_LOWER || kind == NOP_STRIP_ACCENTS || (kind == NOP_CHARSMAP && k == 0))) t->stream_norm = 0;
    }
    /* normalised added tokens are matched in their normalised form */
    for (int k = 0; k < t->n_added; k++) {
        added *a = &t->added[k];
        if (!a->normalized || t->n_nops == 0) continue;
        char *o;
        size_t ol;
        KD_TRY(kd_xlmr_normalize(t, (const char *)a->text, a->len, &o, &ol, e));
        free(a->text);
        a->text = (uint8_t *)o;
        a->len = ol;
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* loading: SentencePiece .model (protobuf)                                                     */

typedef struct {
    const uint8_t *p, *beg, *end;
} pbr;

static int pb_varint(pbr *r, uint64_t *v) {
    uint64_t x = 0;
    for (int i = 0; i < 10; i++) {
        if (r->p >= r->end) return 0;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* next field: 1 ok, 0 end of message, -1 malformed (*why says what) */
static int pb_next(pbr *r, uint32_t *field, uint32_t *wire, const char **why) {
    if (r->p >= r->end) return 0;
    uint64_t key;
    if (!pb_varint(r, &key)) {
        *why = "truncated field key";
        return -1;
    }
    *field = (uint32_t)(key >> 3);
    *wire = (uint32_t)(key & 7);
    if (*field == 0) {
        *why = "field number 0";
        return -1;
    }
    return 1;
}

/* value of the current field: varint → *v; length-delimited → *d, *n; fixed → *v */
static int pb_value(pbr *r, uint32_t wire, uint64_t *v, const uint8_t **d, size_t *n, const char **why) {
    switch (wire) {
    case 0:
        if (!pb_varint(r, v)) {
            *why = "truncated varint";
            return 0;
        }
        return 1;
    case 1:
        if ((size_t)(r->end - r->p) < 8) {
            *why = "truncated 64-bit value";
            return 0;
        }
        *v = 0;
        for (int i = 0; i < 8; i++) *v |= (uint64_t)r->p[i] << (8 * i);
        r->p += 8;
        return 1;
    case 2: {
        uint64_t l;
        if (!pb_varint(r, &l)) {
            *why = "truncated length";
            return 0;
        }
        if (l > (uint64_t)(r->end - r->p)) {
            *why = "length runs past the end of the data";
            return 0;
        }
        *d = r->p;
        *n = (size_t)l;
        r->p += l;
        return 1;
    }
    case 5:
        if ((size_t)(r->end - r->p) < 4) {
            *why = "truncated 32-bit value";
            return 0;
        }
        *v = (uint64_t)r->p[0] | (uint64_t)r->p[1] << 8 | (uint64_t)r->p[2] << 16 | (uint64_t)r->p[3] << 24;
        r->p += 4;
        return 1;
    default:
        *why = "unsupported wire type (groups are not used by sentencepiece)";
        return 0;
    }
}

typedef struct {
    const uint8_t *s;
    size_t n;
    float score;
    int type;
} raw_piece;

typedef struct {
    raw_piece *pieces;
    size_t n, cap;
    int model_type, byte_fallback, ws_suffix;
    int64_t unk_id;
    const uint8_t *cm;
    size_t cm_len;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    const uint8_t *name;
    size_t name_len;
} model_proto;

#define PB_FAIL(r, why) kd_errf(e, KD_ERR_FORMAT, "%s: protobuf: %s at byte offset %zu", origin, why, (size_t)((r)->p - (r)->beg))

static kd_status parse_piece(const uint8_t *d, size_t n, const uint8_t *beg, raw_piece *out, const char *origin,
                             kd_err *e) {
    pbr r = {d, beg, d + n};
    uint32_t f, w;
    const char *why = NULL;
    int k;
    out->s = NULL;
    out->n = 0;
    out->score = 0.0f;
    out->type = PT_NORMAL;
    int has_piece = 0;
    while ((k = pb_next(&r, &f, &w, &why)) == 1) {
        uint64_t v = 0;
        const uint8_t *dd = NULL;
        size_t nn = 0;
        if (!pb_value(&r, w, &v, &dd, &nn, &why)) return PB_FAIL(&r, why);
        if (f == 1 && w == 2) {
            out->s = dd;
            out->n = nn;
            has_piece = 1;
        } else if (f == 2 && w == 5) {
            uint32_t u = (uint32_t)v;
            memcpy(&out->score, &u, 4);
        } else if (f == 3 && w == 0) {
            out->type = (int)(int32_t)v;
        }
    }
    if (k < 0) return PB_FAIL(&r, why);
    (void)has_piece;
    return KD_OK;
}

static kd_status parse_model_proto(const uint8_t *data, size_t n, model_proto *m, const char *origin, kd_err *e) {
    pbr r = {data, data, data + n};
    uint32_t f, w;
    const char *why = NULL;
    int k;
    memset(m, 0, sizeof *m);
    m->model_type = 1;
    m->add_dummy_prefix = m->remove_extra_ws = m->escape_ws = 1;
    while ((k = pb_next(&r, &f, &w, &why)) == 1) {
        uint64_t v = 0;
        const uint8_t *d = NULL;
        size_t dn = 0;
        if (!pb_value(&r, w, &v, &d, &dn, &why)) return PB_FAIL(&r, why);
        if (w != 2) continue;
        if (f == 1) {
            if (m->n == m->cap) {
                size_t nc = m->cap ? m->cap * 2 : 1024;
                raw_piece *np = realloc(m->pieces, nc * sizeof *np);
                if (!np) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
                m->pieces = np;
                m->cap = nc;
            }
            KD_TRY(parse_piece(d, dn, data, &m->pieces[m->n], origin, e));
            m->n++;
        } else if (f == 2 || f == 3) { /* trainer_spec / normalizer_spec (repeated ones merge) */
            pbr s = {d, data, d + dn};
            uint32_t f2, w2;
            int k2;
            while ((k2 = pb_next(&s, &f2, &w2, &why)) == 1) {
                uint64_t v2 = 0;
                const uint8_t *d2 = NULL;
                size_t n2 = 0;
                if (!pb_value(&s, w2, &v2, &d2, &n2, &why)) return PB_FAIL(&s, why);
                if (f == 2) {
                    if (f2 == 3 && w2 == 0) m->model_type = (int)(int32_t)v2;
                    else if (f2 == 35 && w2 == 0) m->byte_fallback = v2 != 0;
                    else if (f2 == 24 && w2 == 0) m->ws_suffix = v2 != 0;
                    else if (f2 == 40 && w2 == 0) m->unk_id = (int64_t)(int32_t)v2;
                } else {
                    if (f2 == 1 && w2 == 2) {
                        m->name = d2;
                        m->name_len = n2;
                    } else if (f2 == 2 && w2 == 2) {
                        m->cm = d2;
                        m->cm_len = n2;
                    } else if (f2 == 3 && w2 == 0) m->add_dummy_prefix = v2 != 0;
                    else if (f2 == 4 && w2 == 0) m->remove_extra_ws = v2 != 0;
                    else if (f2 == 5 && w2 == 0) m->escape_ws = v2 != 0;
                }
            }
            if (k2 < 0) return PB_FAIL(&s, why);
        }
    }
    if (k < 0) return PB_FAIL(&r, why);
    return KD_OK;
}

/* T5's layout: pieces 0, 1, 2 are <pad>, </s> (control) and <unk> (unknown, unk_id 2). */
static int t5_layout(const model_proto *m) {
    return m->unk_id == 2 && m->pieces[0].type == PT_CONTROL && m->pieces[1].type == PT_CONTROL &&
           m->pieces[2].type == PT_UNKNOWN;
}

static kd_status load_model_impl(const void *data, size_t n, unsigned flags, int extra_ids, const char *origin,
                                 kd_xlmr_tokenizer **out, kd_err *e);

kd_status kd_xlmr_tokenizer_load_model_mem(const void *data, size_t n, unsigned flags, const char *origin,
                                           kd_xlmr_tokenizer **out, kd_err *e) {
    return load_model_impl(data, n, flags, -1, origin, out, e);
}

/* T5Tokenizer's vocabulary (transformers 5): the pieces under their own ids, then the sentinels
 * <extra_id_{extra-1}> ... <extra_id_0> as special added tokens; <pad>, </s>, <unk> split out of the
 * raw text; "$A </s>". */
static kd_status t5_vocab(kd_xlmr_tokenizer *t, vbuild *b, const model_proto *m, int extra_ids, kd_err *e) {
    for (size_t i = 0; i < m->n; i++) {
        const raw_piece *p = &m->pieces[i];
        if (t->spm && i >= 3 && p->type == PT_UNKNOWN)
            return kd_errf(e, KD_ERR_FORMAT, "%s: piece %zu is a second unknown piece", t->origin, i);
        if (t->spm && p->type == PT_BYTE && !m->byte_fallback)
            return kd_errf(e, KD_ERR_FORMAT, "%s: byte piece %zu although byte_fallback is false", t->origin, i);
        KD_TRY(add_piece(t, b, p->s, p->n, (double)p->score, p->score, p->type, e));
    }
    t->n_model = t->n_pieces;
    for (int k = 0; k < extra_ids; k++) {
        char name[32];
        int len = snprintf(name, sizeof name, "<extra_id_%d>", extra_ids - 1 - k);
        KD_TRY(add_piece(t, b, name, (size_t)len, 0.0, 0.0f, PT_CONTROL, e));
    }
    t->unk_id = 2;
    t->n_prefix = 0;
    t->n_suffix = 1;
    t->suffix[0] = 1;
    t->pad_id = 0;
    t->mask_id = -1;
    for (int i = 0; i < 3 + extra_ids; i++) {
        int id = i < 3 ? i : t->n_model + i - 3;
        const piece *p = &t->pieces[id];
        KD_TRY(add_added(t, (const char *)b->pool.p + p->off, p->len, id, 0, 0, 0, 0, e));
    }
    return KD_OK;
}

static kd_status load_model_impl(const void *data, size_t n, unsigned flags, int extra_ids, const char *origin,
                                 kd_xlmr_tokenizer **out, kd_err *e) {
    if (!out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_xlmr_tokenizer_load_model_mem: NULL out");
    *out = NULL;
    if (!data && n) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_xlmr_tokenizer_load_model_mem: NULL data");
    if (!origin) origin = "(memory)";
    model_proto m;
    vbuild b = {0};
    kd_status st = parse_model_proto(data, n, &m, origin, e);
    kd_xlmr_tokenizer *t = NULL;
    if (st != KD_OK) goto fail;
    if (m.n < 3) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: %zu pieces; a SentencePiece model has at least <unk>, <s>, </s>%s", origin,
                     m.n, n == 0 ? " (empty file)" : "");
        goto fail;
    }
    for (size_t i = 0; i < m.n; i++) {
        const raw_piece *p = &m.pieces[i];
        const char *why = NULL;
        if (p->n == 0) {
            st = kd_errf(e, KD_ERR_FORMAT, "%s: piece %zu is empty", origin, i);
            goto fail;
        }
        if (kd_utf8_invalid_at(p->s, p->n, &why) < p->n) {
            st = kd_errf(e, KD_ERR_FORMAT, "%s: piece %zu is not valid UTF-8", origin, i);
            goto fail;
        }
        if (p->type < PT_NORMAL || p->type > PT_BYTE) {
            st = kd_errf(e, KD_ERR_FORMAT, "%s: piece %zu has unknown type %d", origin, i, p->type);
            goto fail;
        }
    }
    int t5 = (flags & KD_XLMR_T5) != 0;
    if (t5 && !t5_layout(&m)) {
        st = kd_errf(e, KD_ERR_UNSUPPORTED,
                     "%s: T5's id mapping needs pieces 0, 1, 2 to be <pad>, </s> (control) and <unk> (unknown); "
                     "here unk_id is %lld and their types are %d, %d, %d",
                     origin, (long long)m.unk_id, m.pieces[0].type, m.pieces[1].type, m.pieces[2].type);
        goto fail;
    }
    if (extra_ids < 0) extra_ids = 100; /* T5Tokenizer's default */
    if (extra_ids > 100000) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: %d extra ids (at most 100000)", origin, extra_ids);
        goto fail;
    }
    if (!t5 && (m.unk_id != 0 || m.pieces[0].type != PT_UNKNOWN || m.pieces[1].type != PT_CONTROL || m.pieces[2].type != PT_CONTROL)) {
        st = kd_errf(e, KD_ERR_UNSUPPORTED,
                     "%s: XLM-R's id mapping needs pieces 0, 1, 2 to be <unk> (unknown), <s>, </s> (control); "
                     "here unk_id is %lld and their types are %d, %d, %d",
                     origin, (long long)m.unk_id, m.pieces[0].type, m.pieces[1].type, m.pieces[2].type);
        goto fail;
    }
    if (!(t = tok_new(origin, flags))) {
        st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
        goto fail;
    }
    if (t->spm && m.model_type != 1 && m.model_type != 2) {
        st = kd_errf(e, KD_ERR_UNSUPPORTED, "%s: SentencePiece model_type %d (only UNIGRAM 1 and BPE 2)", origin,
                     m.model_type);
        goto fail;
    }
    if (t5) {
        if ((st = t5_vocab(t, &b, &m, extra_ids, e)) != KD_OK) goto fail;
        goto vocab_done;
    }
    /* <s> <pad> </s> <unk>, pieces 3.., <mask>: XLMRobertaConverter's vocabulary */
    static const char *const head[4] = {"<s>", "<pad>", "</s>", "<unk>"};
    static const int head_type[4] = {PT_CONTROL, PT_CONTROL, PT_CONTROL, PT_UNKNOWN};
    for (int i = 0; i < 4; i++)
        if ((st = add_piece(t, &b, head[i], strlen(head[i]), 0.0, 0.0f, head_type[i], e)) != KD_OK) goto fail;
    for (size_t i = 3; i < m.n; i++) {
        const raw_piece *p = &m.pieces[i];
        if (t->spm) {
            if (p->type == PT_UNKNOWN) {
                st = kd_errf(e, KD_ERR_FORMAT, "%s: piece %zu is a second unknown piece", origin, i);
                goto fail;
            }
            if (p->type == PT_BYTE && !m.byte_fallback) {
                st = kd_errf(e, KD_ERR_FORMAT, "%s: byte piece %zu although byte_fallback is false", origin, i);
                goto fail;
            }
        }
        if ((st = add_piece(t, &b, p->s, p->n, (double)p->score, p->score, p->type, e)) != KD_OK) goto fail;
    }
    if ((st = add_piece(t, &b, "<mask>", 6, 0.0, 0.0f, PT_CONTROL, e)) != KD_OK) goto fail;
    t->n_model = t->n_pieces;
    t->unk_id = 3;
    t->n_prefix = 1;
    t->prefix[0] = 0;
    t->n_suffix = 1;
    t->suffix[0] = 2;
    t->pad_id = 1;
    t->mask_id = t->n_pieces - 1;
    for (int i = 0; i < 5; i++) {
        const char *s = i < 4 ? head[i] : "<mask>";
        int32_t id = i < 4 ? i : t->mask_id;
        /* transformers 4 gave <mask> lstrip; transformers 5 does not, which changes no id there */
        if ((st = add_added(t, s, strlen(s), id, 0, t->spm && i == 4, 0, 0, e)) != KD_OK) goto fail;
    }
vocab_done:
    if (t->spm) {
        t->bpe = m.model_type == 2;
        t->byte_fallback = m.byte_fallback;
        t->add_dummy_prefix = m.add_dummy_prefix;
        t->remove_extra_ws = m.remove_extra_ws;
        t->escape_ws = m.escape_ws;
        t->ws_suffix = m.ws_suffix;
        if (m.cm_len && (st = cm_parse(m.cm, m.cm_len, origin, &t->spm_cm, e)) != KD_OK) goto fail;
        for (size_t i = 3; i < m.n; i++) {
            if (m.pieces[i].type != PT_USER) continue;
            char **nu = realloc(t->user_syms, (size_t)(t->n_user + 1) * sizeof *nu);
            size_t *nl = realloc(t->user_len, (size_t)(t->n_user + 1) * sizeof *nl);
            if (nu) t->user_syms = nu;
            if (nl) t->user_len = nl;
            if (!nu || !nl || !(t->user_syms[t->n_user] = malloc(m.pieces[i].n))) {
                st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
                goto fail;
            }
            memcpy(t->user_syms[t->n_user], m.pieces[i].s, m.pieces[i].n);
            t->user_len[t->n_user++] = m.pieces[i].n;
        }
        /* sentencepiece refuses a model with two pieces of the same text */
        if ((st = finish(t, &b, e)) != KD_OK) goto fail;
        int first = t5 ? 3 : 4, last = t5 ? t->n_model : t->n_pieces - 1;
        for (int i = first; i < last; i++) {
            int j = idmap_get(t, piece_text(t, i), t->pieces[i].len);
            if (j != i) {
                st = kd_errf(e, KD_ERR_FORMAT, "%s: piece %d (\"%s\") is defined twice", origin, t5 ? i : i - 1,
                             (const char *)piece_text(t, i));
                goto fail;
            }
        }
    } else {
        /* transformers 5's XLMRobertaTokenizer: Precompiled charsmap, WhitespaceSplit + Metaspace
         * ("▁", always, split), Unigram with unk_id 3 and byte fallback off, whatever the
         * model's own normaliser flags and model type say */
        if (m.cm_len) {
            t->nops = calloc(1, sizeof *t->nops);
            if (!t->nops) {
                st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
                goto fail;
            }
            t->n_nops = 1;
            t->nops[0].kind = NOP_CHARSMAP;
            if ((st = cm_parse(m.cm, m.cm_len, origin, &t->nops[0].cm, e)) != KD_OK) goto fail;
        }
        t->ws_split = 1;
        t->meta = 1;
        t->meta_split = 1;
        t->meta_scheme = 1;
        memcpy(t->meta_rep, META, 3);
        t->meta_rep_len = 3;
        t->meta_cp = 0x2581;
        if ((st = finish(t, &b, e)) != KD_OK) goto fail;
    }
    free(m.pieces);
    *out = t;
    return KD_OK;
fail:
    free(m.pieces);
    bb_free(&b.pool);
    kd_xlmr_tokenizer_free(t);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* loading: tokenizer.json                                                                      */

static int b64_val(int c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* standard alphabet with padding, as the tokenizers library decodes precompiled_charsmap */
static kd_status b64_decode(const char *s, uint8_t **out, size_t *out_len, const char *origin, kd_err *e) {
    size_t n = strlen(s);
    if (n % 4) return kd_errf(e, KD_ERR_FORMAT, "%s: precompiled_charsmap: base64 length %zu is not a multiple of 4", origin, n);
    uint8_t *o = malloc(n / 4 * 3 + 1);
    if (!o) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            char c = s[i + j];
            if (c == '=' && i + 4 == n && j >= 2 && (j == 3 || s[i + 3] == '=')) {
                v[j] = 0;
                pad++;
            } else if ((v[j] = b64_val((unsigned char)c)) < 0) {
                free(o);
                return kd_errf(e, KD_ERR_FORMAT, "%s: precompiled_charsmap: invalid base64 at character %zu", origin, i + j);
            }
        }
        uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        o[k++] = (uint8_t)(x >> 16);
        if (pad < 2) o[k++] = (uint8_t)(x >> 8);
        if (pad < 1) o[k++] = (uint8_t)x;
    }
    *out = o;
    *out_len = k;
    return KD_OK;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* bool member: absent → def; present and not a bool → -1 */
static int jbool(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return def;
    if (!cJSON_IsBool(v)) return -1;
    return cJSON_IsTrue(v);
}

static kd_status nop_push(kd_xlmr_tokenizer *t, nop op, kd_err *e) {
    nop *nv = realloc(t->nops, (size_t)(t->n_nops + 1) * sizeof *nv);
    if (!nv) {
        cm_free(op.cm);
        free(op.pat);
        free(op.content);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", t->origin);
    }
    t->nops = nv;
    t->nops[t->n_nops++] = op;
    return KD_OK;
}

static uint8_t *dup_bytes(const char *s, size_t *n) {
    *n = strlen(s);
    uint8_t *d = malloc(*n + 1);
    if (d) memcpy(d, s, *n + 1);
    return d;
}

/* A Replace regex of the forms the SentencePiece converters write: a literal text, or one atom
 * (a character or \s) with + or {n,}. 0 if not one of those. */
static int parse_regex(const char *r, nop *op) {
    static const char meta[] = ".^$*+?()[]{}|\\";
    if (!strpbrk(r, meta)) {
        op->kind = NOP_REPLACE;
        op->pat = dup_bytes(r, &op->pat_len);
        return op->pat != NULL;
    }
    const char *p = r;
    uint32_t cp;
    if (p[0] == '\\' && p[1] == 's') {
        cp = 0;
        p += 2;
    } else if (p[0] == '\\' && p[1] && strchr(meta, p[1])) {
        cp = (uint8_t)p[1];
        p += 2;
    } else if (p[0] && !strchr(meta, p[0])) {
        size_t l;
        if (kd_utf8_invalid_at((const uint8_t *)p, strlen(p), NULL) < strlen(p)) return 0;
        cp = u8_dec((const uint8_t *)p, &l);
        p += l;
    } else {
        return 0;
    }
    int min;
    if (strcmp(p, "+") == 0) {
        min = 1;
    } else {
        char *end;
        if (p[0] != '{') return 0;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || strcmp(end, ",}") != 0 || v < 1 || v > 1000) return 0;
        min = (int)v;
    }
    op->kind = NOP_REPLACE_RUN;
    op->run_cp = cp;
    op->run_min = min;
    return 1;
}

static kd_status parse_normalizer(kd_xlmr_tokenizer *t, const cJSON *j, int depth, kd_err *e) {
    const char *o = t->origin;
    if (!j || cJSON_IsNull(j)) return KD_OK;
    if (depth > 16 || !cJSON_IsObject(j)) return kd_errf(e, KD_ERR_FORMAT, "%s: normalizer is not an object", o);
    const char *type = jstr(j, "type");
    if (!type) return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: normalizer without a \"type\"", o);
    nop op;
    memset(&op, 0, sizeof op);
    if (!strcmp(type, "Sequence")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "normalizers"), *it;
        if (!cJSON_IsArray(v)) return kd_errf(e, KD_ERR_FORMAT, "%s: Sequence normalizer without \"normalizers\"", o);
        cJSON_ArrayForEach(it, v) KD_TRY(parse_normalizer(t, it, depth + 1, e));
        return KD_OK;
    }
    if (!strcmp(type, "Precompiled")) {
        const char *b = jstr(j, "precompiled_charsmap");
        if (!b) return kd_errf(e, KD_ERR_FORMAT, "%s: Precompiled normalizer without a precompiled_charsmap string", o);
        uint8_t *blob = NULL;
        size_t bl = 0;
        KD_TRY(b64_decode(b, &blob, &bl, o, e));
        kd_status st = cm_parse(blob, bl, o, &op.cm, e);
        free(blob);
        if (st != KD_OK) return st;
        op.kind = NOP_CHARSMAP;
        return nop_push(t, op, e);
    }
    if (!strcmp(type, "NFC")) op.kind = NOP_NFC;
    else if (!strcmp(type, "NFD")) op.kind = NOP_NFD;
    else if (!strcmp(type, "NFKC")) op.kind = NOP_NFKC;
    else if (!strcmp(type, "NFKD")) op.kind = NOP_NFKD;
    else if (!strcmp(type, "Lowercase")) op.kind = NOP_LOWER;
    else if (!strcmp(type, "StripAccents")) op.kind = NOP_STRIP_ACCENTS;
    else if (!strcmp(type, "Strip")) {
        op.kind = NOP_STRIP;
        op.strip_left = jbool(j, "strip_left", 1);
        op.strip_right = jbool(j, "strip_right", 1);
        if (op.strip_left < 0 || op.strip_right < 0) return kd_errf(e, KD_ERR_FORMAT, "%s: Strip flags are not booleans", o);
    } else if (!strcmp(type, "Prepend")) {
        const char *p = jstr(j, "prepend");
        if (!p) return kd_errf(e, KD_ERR_FORMAT, "%s: Prepend normalizer without \"prepend\"", o);
        op.kind = NOP_PREPEND;
        if (!(op.content = dup_bytes(p, &op.content_len))) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", o);
    } else if (!strcmp(type, "Replace")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(j, "pattern");
        const char *content = jstr(j, "content");
        const char *ps = pat ? jstr(pat, "String") : NULL, *pr = pat ? jstr(pat, "Regex") : NULL;
        if (!content || (!ps && !pr)) return kd_errf(e, KD_ERR_FORMAT, "%s: Replace normalizer needs pattern and content", o);
        if (ps) {
            op.kind = NOP_REPLACE;
            if (!(op.pat = dup_bytes(ps, &op.pat_len))) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", o);
        } else if (!parse_regex(pr, &op)) {
            free(op.pat);
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: Replace normalizer with regex \"%s\" (supported: a literal, or one "
                           "character or \\s followed by + or {n,})", o, pr);
        }
        if (!(op.content = dup_bytes(content, &op.content_len))) {
            free(op.pat);
            return kd_errf(e, KD_ERR_OOM, "%s: out of memory", o);
        }
    } else {
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported", o, type);
    }
    return nop_push(t, op, e);
}

static kd_status parse_pretok_one(kd_xlmr_tokenizer *t, const cJSON *j, int *seen_meta, kd_err *e) {
    const char *o = t->origin;
    const char *type = cJSON_IsObject(j) ? jstr(j, "type") : NULL;
    if (!type) return kd_errf(e, KD_ERR_FORMAT, "%s: pre_tokenizer without a \"type\"", o);
    if (!strcmp(type, "WhitespaceSplit")) {
        if (t->ws_split || *seen_meta)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: WhitespaceSplit after Metaspace or twice is not supported", o);
        t->ws_split = 1;
        return KD_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        if (*seen_meta) return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: two Metaspace pre-tokenizers", o);
        *seen_meta = 1;
        const char *rep = jstr(j, "replacement");
        size_t rl;
        if (!rep || (rl = strlen(rep)) == 0 || rl > 4 || kd_utf8_invalid_at((const uint8_t *)rep, rl, NULL) < rl ||
            u8_len((uint8_t)rep[0]) != rl)
            return kd_errf(e, KD_ERR_FORMAT, "%s: Metaspace replacement must be one character", o);
        t->meta = 1;
        memcpy(t->meta_rep, rep, rl);
        t->meta_rep_len = rl;
        size_t l;
        t->meta_cp = u8_dec((const uint8_t *)rep, &l);
        const char *scheme = jstr(j, "prepend_scheme");
        if (!scheme) t->meta_scheme = 1;
        else if (!strcmp(scheme, "always")) t->meta_scheme = 1;
        else if (!strcmp(scheme, "never")) t->meta_scheme = 0;
        else if (!strcmp(scheme, "first")) t->meta_scheme = 2;
        else return kd_errf(e, KD_ERR_FORMAT, "%s: Metaspace prepend_scheme \"%s\"", o, scheme);
        int aps = jbool(j, "add_prefix_space", -2);
        if (aps == -1) return kd_errf(e, KD_ERR_FORMAT, "%s: Metaspace add_prefix_space is not a boolean", o);
        if (aps == 0) {
            if (t->meta_scheme != 0)
                return kd_errf(e, KD_ERR_FORMAT, "%s: Metaspace add_prefix_space false does not match prepend_scheme", o);
        }
        int sp = jbool(j, "split", 1);
        if (sp < 0) return kd_errf(e, KD_ERR_FORMAT, "%s: Metaspace split is not a boolean", o);
        t->meta_split = sp;
        return KD_OK;
    }
    return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: pre_tokenizer type \"%s\" is not supported (WhitespaceSplit, Metaspace)", o,
                   type);
}

static kd_status parse_pretok(kd_xlmr_tokenizer *t, const cJSON *j, kd_err *e) {
    int seen_meta = 0;
    if (!j || cJSON_IsNull(j)) return KD_OK;
    const char *type = cJSON_IsObject(j) ? jstr(j, "type") : NULL;
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "pretokenizers"), *it;
        if (!cJSON_IsArray(v)) return kd_errf(e, KD_ERR_FORMAT, "%s: Sequence pre_tokenizer without \"pretokenizers\"", t->origin);
        cJSON_ArrayForEach(it, v) KD_TRY(parse_pretok_one(t, it, &seen_meta, e));
        return KD_OK;
    }
    return parse_pretok_one(t, j, &seen_meta, e);
}

static kd_status pair_id(const kd_xlmr_tokenizer *t, const cJSON *j, const char *key, int32_t *id, kd_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    int64_t x;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 || !kd_json_int(cJSON_GetArrayItem(v, 1), &x) || x < 0 ||
        x > INT32_MAX)
        return kd_errf(e, KD_ERR_FORMAT, "%s: post_processor \"%s\" must be [token, id]", t->origin, key);
    *id = (int32_t)x;
    return KD_OK;
}

static kd_status parse_post(kd_xlmr_tokenizer *t, const cJSON *j, int depth, kd_err *e) {
    const char *o = t->origin;
    if (!j || cJSON_IsNull(j)) return KD_OK;
    const char *type = cJSON_IsObject(j) ? jstr(j, "type") : NULL;
    if (!type || depth > 8) return kd_errf(e, KD_ERR_FORMAT, "%s: post_processor without a \"type\"", o);
    if (!strcmp(type, "Sequence")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "processors"), *it;
        if (!cJSON_IsArray(v)) return kd_errf(e, KD_ERR_FORMAT, "%s: Sequence post_processor without \"processors\"", o);
        cJSON_ArrayForEach(it, v) KD_TRY(parse_post(t, it, depth + 1, e));
        return KD_OK;
    }
    if (!strcmp(type, "ByteLevel")) return KD_OK; /* offsets only */
    if (t->n_prefix || t->n_suffix)
        return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: more than one post_processor adds special tokens", o);
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        KD_TRY(pair_id(t, j, "cls", &t->prefix[0], e));
        KD_TRY(pair_id(t, j, "sep", &t->suffix[0], e));
        t->n_prefix = t->n_suffix = 1;
        return KD_OK;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(j, "special_tokens"), *it;
        if (!cJSON_IsArray(single)) return kd_errf(e, KD_ERR_FORMAT, "%s: TemplateProcessing without \"single\"", o);
        int seen_a = 0;
        cJSON_ArrayForEach(it, single) {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
            const cJSON *q = cJSON_GetObjectItemCaseSensitive(it, "Sequence");
            if (q) {
                if (seen_a) return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: TemplateProcessing uses the sequence twice", o);
                seen_a = 1;
                continue;
            }
            const char *name = s ? jstr(s, "id") : NULL;
            const cJSON *def = name && cJSON_IsObject(sp) ? cJSON_GetObjectItemCaseSensitive(sp, name) : NULL;
            const cJSON *ids = def ? cJSON_GetObjectItemCaseSensitive(def, "ids") : NULL, *x;
            if (!cJSON_IsArray(ids))
                return kd_errf(e, KD_ERR_FORMAT, "%s: TemplateProcessing special token \"%s\" without ids", o,
                               name ? name : "?");
            cJSON_ArrayForEach(x, ids) {
                int64_t v;
                int *n = seen_a ? &t->n_suffix : &t->n_prefix;
                if (!kd_json_int(x, &v) || v < 0 || v > INT32_MAX || *n >= 8)
                    return kd_errf(e, KD_ERR_FORMAT, "%s: TemplateProcessing id of \"%s\" is not usable", o, name);
                (seen_a ? t->suffix : t->prefix)[(*n)++] = (int32_t)v;
            }
        }
        if (!seen_a) return kd_errf(e, KD_ERR_FORMAT, "%s: TemplateProcessing \"single\" has no $A", o);
        return KD_OK;
    }
    return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: post_processor type \"%s\" is not supported", o, type);
}

kd_status kd_xlmr_tokenizer_load_json_mem(const char *data, size_t n, unsigned flags, const char *origin,
                                          kd_xlmr_tokenizer **out, kd_err *e) {
    if (!out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_xlmr_tokenizer_load_json_mem: NULL out");
    *out = NULL;
    if (!origin) origin = "(memory)";
    if (flags & KD_XLMR_SENTENCEPIECE)
        return kd_errf(e, KD_ERR_UNSUPPORTED,
                       "%s: the sentencepiece mode needs the .model file (a tokenizer.json lacks the piece types)", origin);
    cJSON *root = NULL;
    KD_TRY(kd_json_parse(data, n, origin, &root, e));
    kd_status st = KD_OK;
    vbuild b = {0};
    kd_xlmr_tokenizer *t = tok_new(origin, flags);
    if (!t) {
        st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: top level is not an object", origin);
        goto fail;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: no \"model\" object", origin);
        goto fail;
    }
    const char *mtype = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if ((mtype && strcmp(mtype, "Unigram") != 0) || (!mtype && !cJSON_IsArray(vocab))) {
        st = kd_errf(e, KD_ERR_UNSUPPORTED, "%s: model type \"%s\" (only Unigram: XLM-R's SentencePiece model)", origin,
                     mtype ? mtype : "(none, vocab not a list)");
        goto fail;
    }
    if (!cJSON_IsArray(vocab) || cJSON_GetArraySize(vocab) == 0) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: model.vocab must be a non-empty list of [piece, score]", origin);
        goto fail;
    }
    const cJSON *it;
    int idx = 0;
    cJSON_ArrayForEach(it, vocab) {
        const cJSON *p = cJSON_GetArrayItem(it, 0), *s = cJSON_GetArrayItem(it, 1);
        if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 2 || !cJSON_IsString(p) || !cJSON_IsNumber(s)) {
            st = kd_errf(e, KD_ERR_FORMAT, "%s: model.vocab[%d] is not [piece, score]", origin, idx);
            goto fail;
        }
        if ((st = add_piece(t, &b, p->valuestring, strlen(p->valuestring), s->valuedouble, (float)s->valuedouble,
                            PT_NORMAL, e)) != KD_OK)
            goto fail;
        idx++;
    }
    t->n_model = t->n_pieces;
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_id");
    int64_t uid;
    if (!unk || cJSON_IsNull(unk)) {
        st = kd_errf(e, KD_ERR_UNSUPPORTED, "%s: model.unk_id is null (a Unigram model needs <unk>)", origin);
        goto fail;
    }
    if (!kd_json_int(unk, &uid) || uid < 0 || uid >= t->n_pieces) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: model.unk_id is not an id of the vocabulary", origin);
        goto fail;
    }
    t->unk_id = (int)uid;
    if ((t->byte_fallback = jbool(model, "byte_fallback", 0)) < 0) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: model.byte_fallback is not a boolean", origin);
        goto fail;
    }
    /* added tokens (ids past the model's vocabulary extend it) */
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (at && !cJSON_IsNull(at) && !cJSON_IsArray(at)) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: added_tokens is not a list", origin);
        goto fail;
    }
    int k = 0;
    cJSON_ArrayForEach(it, at) {
        int64_t id;
        const char *c = jstr(it, "content");
        int nz = jbool(it, "normalized", 1), ls = jbool(it, "lstrip", 0), rs = jbool(it, "rstrip", 0),
            sw = jbool(it, "single_word", 0);
        if (!c || !kd_json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &id) || id < 0 || id > INT32_MAX - 2 ||
            nz < 0 || ls < 0 || rs < 0 || sw < 0) {
            st = kd_errf(e, KD_ERR_FORMAT, "%s: added_tokens[%d] needs content, id and boolean flags", origin, k);
            goto fail;
        }
        if (id >= (int64_t)(INT32_MAX / 2)) {
            st = kd_errf(e, KD_ERR_UNSUPPORTED, "%s: added_tokens[%d] has id %lld", origin, k, (long long)id);
            goto fail;
        }
        if (id >= t->n_model) { /* not in the model: an id of its own, past the model's vocabulary */
            while (t->n_pieces < id)
                if ((st = add_piece(t, &b, "", 0, 0.0, 0.0f, PT_CONTROL, e)) != KD_OK) goto fail;
            if (t->n_pieces == id && (st = add_piece(t, &b, c, strlen(c), 0.0, 0.0f, PT_CONTROL, e)) != KD_OK) goto fail;
        }
        if (*c && (st = add_added(t, c, strlen(c), (int32_t)id, nz, ls, rs, sw, e)) != KD_OK) goto fail;
        k++;
    }
    if ((st = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), 0, e)) != KD_OK) goto fail;
    if ((st = parse_pretok(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), e)) != KD_OK) goto fail;
    if ((st = parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), 0, e)) != KD_OK) goto fail;
    if ((st = finish(t, &b, e)) != KD_OK) goto fail;
    for (int i = 0; i < t->n_prefix; i++)
        if (t->prefix[i] >= t->n_pieces) st = KD_ERR_FORMAT;
    for (int i = 0; i < t->n_suffix; i++)
        if (t->suffix[i] >= t->n_pieces) st = KD_ERR_FORMAT;
    if (st != KD_OK) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: post_processor names an id outside the vocabulary", origin);
        goto fail;
    }
    cJSON_Delete(root);
    *out = t;
    return KD_OK;
fail:
    cJSON_Delete(root);
    bb_free(&b.pool);
    kd_xlmr_tokenizer_free(t);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* loading: files and folders                                                                   */

static kd_status load_file(const char *path, unsigned flags, int extra_ids, kd_xlmr_tokenizer **out, kd_err *e) {
    char *data = NULL;
    size_t n = 0;
    KD_TRY(kd_read_file(path, MAX_FILE, &data, &n, e));
    size_t i = 0;
    while (i < n && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r')) i++;
    kd_status st;
    /* a serialized ModelProto starts with field 1 (0x0A): JSON is told by its '{' */
    if (i < n && data[i] == '{') st = kd_xlmr_tokenizer_load_json_mem(data, n, flags, path, out, e);
    else st = load_model_impl(data, n, flags, extra_ids, path, out, e);
    free(data);
    return st;
}

/* path/name into a malloc'd string (NULL when out of memory). */
static char *join_path(const char *path, const char *name) {
    size_t pl = strlen(path), nl = strlen(name);
    char *p = malloc(pl + nl + 2);
    if (p) snprintf(p, pl + nl + 2, "%s%s%s", path, pl && path[pl - 1] == '/' ? "" : "/", name);
    return p;
}

/* tokenizer_config.json's "extra_ids" (T5Tokenizer's argument); -1 (the default) when the file
 * or the key is absent. */
static kd_status t5_extra_ids(const char *folder, int *extra_ids, kd_err *e) {
    *extra_ids = -1;
    char *p = join_path(folder, "tokenizer_config.json");
    if (!p) return kd_errf(e, KD_ERR_OOM, "out of memory");
    struct stat sb;
    kd_status st = KD_OK;
    if (stat(p, &sb) == 0) {
        kd_config cfg = {0};
        int64_t v = -1;
        st = kd_config_load(p, &cfg, e);
        if (st == KD_OK) st = kd_config_int_or(&cfg, "extra_ids", -1, &v, e);
        if (st == KD_OK && (v < -1 || v > 100000)) st = kd_errf(e, KD_ERR_FORMAT, "%s: extra_ids %lld", p, (long long)v);
        if (st == KD_OK) *extra_ids = (int)v;
        kd_config_free(&cfg);
    }
    free(p);
    return st;
}

/* The first of names[0..n) that is a file in the folder, loaded. */
static kd_status load_first(const char *folder, const char *const *names, int n, unsigned flags, int extra_ids,
                            kd_xlmr_tokenizer **out, kd_err *e) {
    for (int k = 0; k < n; k++) {
        char *p = join_path(folder, names[k]);
        if (!p) return kd_errf(e, KD_ERR_OOM, "out of memory");
        struct stat sb;
        if (stat(p, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
            kd_status st = load_file(p, flags, extra_ids, out, e);
            free(p);
            return st;
        }
        free(p);
    }
    return kd_errf(e, KD_ERR_NOT_FOUND, "%s: folder holds neither %s nor %s", folder, names[0], names[1]);
}

static kd_status load_path(const char *path, unsigned flags, kd_xlmr_tokenizer **out, kd_err *e) {
    if (!out) return kd_errf(e, KD_ERR_INVALID_ARG, "tokenizer load: NULL out");
    *out = NULL;
    if (!path) return kd_errf(e, KD_ERR_INVALID_ARG, "tokenizer load: NULL path");
    if (flags & ~(KD_XLMR_SENTENCEPIECE | KD_XLMR_T5))
        return kd_errf(e, KD_ERR_INVALID_ARG, "tokenizer load: unknown flags 0x%x", flags);
    struct stat sb;
    if (stat(path, &sb) != 0) return kd_errf(e, KD_ERR_NOT_FOUND, "%s: no such file or folder", path);
    int t5 = (flags & KD_XLMR_T5) != 0, extra_ids = -1;
    if (!S_ISDIR(sb.st_mode)) return load_file(path, flags, -1, out, e);
    if (t5) KD_TRY(t5_extra_ids(path, &extra_ids, e));
    /* tokenizer.json first, as transformers prefers it; the .model first for sentencepiece */
    const char *model = t5 ? "spiece.model" : "sentencepiece.bpe.model";
    const char *names[2] = {"tokenizer.json", model};
    if (flags & KD_XLMR_SENTENCEPIECE) {
        names[0] = model;
        names[1] = "tokenizer.json";
    }
    return load_first(path, names, 2, flags, extra_ids, out, e);
}

kd_status kd_xlmr_tokenizer_load_ex(const char *path, unsigned flags, kd_xlmr_tokenizer **out, kd_err *e) {
    return load_path(path, flags, out, e);
}

kd_status kd_t5_tokenizer_load(const char *path, unsigned flags, kd_xlmr_tokenizer **out, kd_err *e) {
    if (flags & ~KD_XLMR_SENTENCEPIECE) {
        if (out) *out = NULL;
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_t5_tokenizer_load: unknown flags 0x%x", flags);
    }
    return load_path(path, flags | KD_XLMR_T5, out, e);
}

kd_status kd_xlmr_tokenizer_load(const char *path, kd_xlmr_tokenizer **out, kd_err *e) {
    return kd_xlmr_tokenizer_load_ex(path, 0, out, e);
}
