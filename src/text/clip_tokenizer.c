/* CLIP byte-level BPE tokenizer; the rules it mirrors are listed in clip_tokenizer.h and in
 * docs/NOTES.md ("CLIP tokenizer"). */
#include "text/clip_tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <utf8proc.h>
#include <zlib.h>

#include "io/config.h"
#include "io/file.h"

/* simple_tokenizer.py keeps merges[1 : 49152 - 256 - 2 + 1] of the OpenAI file. */
#define OPENAI_N_MERGES 48894
#define OPENAI_CONTEXT 77
/* Normalisation works on chunks of at least this many bytes that end before white space. */
#define CHUNK_MIN 4096
/* vocab.json is ~1 MB, merges.txt ~0.5 MB, the gzip'd OpenAI file ~1.7 MB once inflated. */
#define MAX_TEXT_FILE (256u << 20)
/* Cached next occurrence of an added token: not searched yet / none left. */
#define NOT_SEARCHED (SIZE_MAX - 1)
#define NO_MATCH SIZE_MAX

/* ------------------------------------------------------------------------------------------ */
/* hash maps                                                                                    */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* string → id; keys live in one pool. Inserting an existing key overwrites its id (the JSON
 * readers of the reference keep the last of duplicate keys). */
typedef struct {
    uint32_t off, len;
    int32_t id; /* -1: empty slot */
} smap_slot;

typedef struct {
    smap_slot *slots;
    size_t cap, n; /* cap is a power of two */
    char *pool;
    size_t pool_len, pool_cap;
} smap;

static void smap_free(smap *m) {
    free(m->slots);
    free(m->pool);
    memset(m, 0, sizeof *m);
}

static int smap_grow(smap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 1024;
    smap_slot *ns = malloc(ncap * sizeof *ns);
    if (!ns) return 0;
    for (size_t i = 0; i < ncap; i++) ns[i].id = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].id < 0) continue;
        size_t j = hash_bytes(m->pool + m->slots[i].off, m->slots[i].len) & (ncap - 1);
        while (ns[j].id >= 0) j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 1;
}

static int32_t smap_get(const smap *m, const char *s, size_t n) {
    if (!m->cap) return -1;
    size_t j = hash_bytes(s, n) & (m->cap - 1);
    while (m->slots[j].id >= 0) {
        if (m->slots[j].len == n && memcmp(m->pool + m->slots[j].off, s, n) == 0) return m->slots[j].id;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

/* 0 on allocation failure. */
static int smap_put(smap *m, const char *s, size_t n, int32_t id) {
    if ((m->n + 1) * 2 > m->cap && !smap_grow(m)) return 0;
    size_t j = hash_bytes(s, n) & (m->cap - 1);
    while (m->slots[j].id >= 0) {
        if (m->slots[j].len == n && memcmp(m->pool + m->slots[j].off, s, n) == 0) {
            m->slots[j].id = id;
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (n > UINT32_MAX || m->pool_len + n > UINT32_MAX) return 0;
    if (m->pool_len + n > m->pool_cap) {
        size_t nc = m->pool_cap ? m->pool_cap : 4096;
        while (nc < m->pool_len + n) nc *= 2;
        char *np = realloc(m->pool, nc);
        if (!np) return 0;
        m->pool = np;
        m->pool_cap = nc;
    }
    memcpy(m->pool + m->pool_len, s, n);
    m->slots[j].off = (uint32_t)m->pool_len;
    m->slots[j].len = (uint32_t)n;
    m->slots[j].id = id;
    m->pool_len += n;
    m->n++;
    return 1;
}

/* (left id, right id) → (rank, merged id). Later merges of the same pair overwrite earlier ones,
 * as the reference's HashMap does. */
typedef struct {
    uint64_t key; /* UINT64_MAX: empty */
    int32_t rank, new_id;
} pmap_slot;

typedef struct {
    pmap_slot *slots;
    size_t cap, n;
} pmap;

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static int pmap_init(pmap *m, size_t expected) {
    size_t cap = 1024;
    while (cap < expected * 2) cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return 0;
    for (size_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
    m->cap = cap;
    m->n = 0;
    return 1;
}

static void pmap_put(pmap *m, uint64_t key, int32_t rank, int32_t new_id) {
    size_t j = mix64(key) & (m->cap - 1);
    while (m->slots[j].key != UINT64_MAX && m->slots[j].key != key) j = (j + 1) & (m->cap - 1);
    if (m->slots[j].key == UINT64_MAX) m->n++;
    m->slots[j].key = key;
    m->slots[j].rank = rank;
    m->slots[j].new_id = new_id;
}

static const pmap_slot *pmap_get(const pmap *m, uint64_t key) {
    size_t j = mix64(key) & (m->cap - 1);
    while (m->slots[j].key != UINT64_MAX) {
        if (m->slots[j].key == key) return &m->slots[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Unicode                                                                                      */

/* \s of the reference's regex engine (Oniguruma, Unicode) = the White_Space property. */
static int is_ws(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D);
    if (c < 0x85) return 0;
    switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

/* Letters and numbers of Unicode 16.0 that the reference's regex tables know and that utf8proc 2.8
 * (Unicode 15.0) reports as unassigned. Consulted only for code points utf8proc calls Cn, so a
 * newer utf8proc gives the same answers. Every code point is checked by test_clip_tokenizer. */
static const struct { uint32_t lo, hi; char cls; } k_new_classes[] = {
    {0x1C89, 0x1C8A, 'L'},   {0xA7CB, 0xA7CD, 'L'},   {0xA7DA, 0xA7DC, 'L'},   {0x105C0, 0x105F3, 'L'},
    {0x10D40, 0x10D49, 'N'}, {0x10D4A, 0x10D65, 'L'}, {0x10D6F, 0x10D85, 'L'}, {0x10EC2, 0x10EC4, 'L'},
    {0x11380, 0x11389, 'L'}, {0x1138B, 0x1138B, 'L'}, {0x1138E, 0x1138E, 'L'}, {0x11390, 0x113B5, 'L'},
    {0x113B7, 0x113B7, 'L'}, {0x113D1, 0x113D1, 'L'}, {0x113D3, 0x113D3, 'L'}, {0x116D0, 0x116E3, 'N'},
    {0x11BC0, 0x11BE0, 'L'}, {0x11BF0, 0x11BF9, 'N'}, {0x13460, 0x143FA, 'L'}, {0x16100, 0x1611D, 'L'},
    {0x16130, 0x16139, 'N'}, {0x16D40, 0x16D6C, 'L'}, {0x16D70, 0x16D79, 'N'}, {0x18CFF, 0x18CFF, 'L'},
    {0x1CCF0, 0x1CCF9, 'N'}, {0x1E5D0, 0x1E5ED, 'L'}, {0x1E5F0, 0x1E5F0, 'L'}, {0x1E5F1, 0x1E5FA, 'N'},
    {0x2EBF0, 0x2EE5D, 'L'},
};

/* Lowercase mappings the reference (Rust's char::to_lowercase, Unicode 16/17) has and utf8proc 2.8
 * lacks; applied only where utf8proc maps the code point to itself. delta is added over the range
 * (to = lo + delta for a single code point). */
static const struct { uint32_t lo, hi; int32_t delta; } k_new_lower[] = {
    {0x1C89, 0x1C89, 1},      {0xA7CB, 0xA7CB, 0x264 - 0xA7CB}, {0xA7CC, 0xA7CC, 1},
    {0xA7CE, 0xA7CE, 1},      {0xA7D2, 0xA7D2, 1},              {0xA7D4, 0xA7D4, 1},
    {0xA7DA, 0xA7DA, 1},      {0xA7DC, 0xA7DC, 0x19B - 0xA7DC}, {0x10D50, 0x10D65, 0x20},
    {0x16EA0, 0x16EB8, 0x1B},
};

int kd_clip_char_class(uint32_t cp) {
    if (is_ws(cp)) return 'S';
    if (cp > 0x10FFFF) return 'O';
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return 'L';
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return 'N';
    case UTF8PROC_CATEGORY_CN:
        for (size_t i = 0; i < sizeof k_new_classes / sizeof k_new_classes[0]; i++)
            if (cp >= k_new_classes[i].lo && cp <= k_new_classes[i].hi) return k_new_classes[i].cls;
        return 'O';
    default:
        return 'O';
    }
}

/* Full lowercase mapping, code point by code point: 1 or 2 code points into out. */
static int lower_cp(uint32_t cp, uint32_t out[2]) {
    if (cp == 0x130) { /* the one unconditional multi-code-point lowercase mapping */
        out[0] = 0x69;
        out[1] = 0x307;
        return 2;
    }
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    uint32_t l = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
    if (l == cp) {
        for (size_t i = 0; i < sizeof k_new_lower / sizeof k_new_lower[0]; i++)
            if (cp >= k_new_lower[i].lo && cp <= k_new_lower[i].hi) {
                l = (uint32_t)((int32_t)cp + k_new_lower[i].delta);
                break;
            }
    }
    out[0] = l;
    return 1;
}

static size_t utf8_encode(uint32_t c, uint8_t *o) {
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

/* Decodes one code point of already-validated UTF-8. */
static uint32_t utf8_decode(const uint8_t *s, size_t *len) {
    uint8_t b = s[0];
    if (b < 0x80) { *len = 1; return b; }
    if (b < 0xE0) { *len = 2; return ((uint32_t)(b & 0x1F) << 6) | (s[1] & 0x3F); }
    if (b < 0xF0) {
        *len = 3;
        return ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
           (s[3] & 0x3F);
}

/* GPT-2's byte → symbol map: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * take the code points 256, 257, ... in byte order. */
static void byte_symbols(uint32_t map[256]) {
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        map[b] = printable ? (uint32_t)b : 256 + n++;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the tokenizer                                                                                */

typedef struct {
    char *bytes; /* raw tokens: content as UTF-8 */
    size_t len;
    uint32_t *cps; /* normalized tokens: normalised content as code points */
    size_t ncp;
    int32_t id;
} added_tok;

struct kd_clip_tokenizer {
    smap vocab;
    int n_vocab; /* largest id + 1 */
    pmap merges;
    int32_t byte_id[256], byte_id_eow[256]; /* symbol id of a byte, alone / with "</w>" */
    int32_t unk_id, bos_id, eos_id, pad_id;
    int model_max_length;
    added_tok *raw, *norm;
    int n_raw, n_norm;
    int chunked; /* normalise in chunks that end before white space */
};

/* Per-call scratch buffers. */
typedef struct {
    utf8proc_int32_t *nfc;
    size_t nfc_cap;
    uint32_t *cp;     /* normalised text */
    uint8_t *cls;     /* its regex classes */
    size_t cp_cap, n_cp;
    uint8_t *word;
    size_t word_cap;
    int32_t *sym, *prev, *next;
    size_t sym_cap;
    uint64_t *heap;
    size_t heap_cap, heap_n;
    size_t *raw_next; /* cached next occurrence of each raw added token (SIZE_MAX: none) */
    size_t *norm_next;
    /* output */
    int32_t *ids;
    int count, limit;
} work;

static void work_free(work *w) {
    free(w->nfc); free(w->cp); free(w->cls); free(w->word);
    free(w->sym); free(w->prev); free(w->next); free(w->heap);
    free(w->raw_next); free(w->norm_next);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem) return 0;
        nc *= 2;
    }
    void *np = realloc(*p, nc * elem);
    if (!np) return 0;
    *p = np;
    *cap = nc;
    return 1;
}

static int full(const work *w) { return w->count >= w->limit; }

static void emit(work *w, int32_t id) {
    if (w->count < w->limit) w->ids[w->count++] = id;
}

/* NFC → white space runs to " " → lowercase, into w->cp / w->cls. */
static kd_status normalize_span(work *w, const char *s, size_t n, kd_err *e) {
    const utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    w->n_cp = 0;
    if (n == 0) return KD_OK;
    utf8proc_ssize_t r;
    size_t ascii = 0;
    while (ascii < n && (uint8_t)s[ascii] < 0x80) ascii++;
    if (ascii == n) { /* ASCII text is its own NFC: skip utf8proc */
        size_t cap = w->nfc_cap;
        if (!grow((void **)&w->nfc, &cap, n, sizeof *w->nfc))
            return kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory normalising %zu bytes", n);
        w->nfc_cap = cap;
        for (size_t i = 0; i < n; i++) w->nfc[i] = (uint8_t)s[i];
        r = (utf8proc_ssize_t)n;
    } else {
        for (;;) {
            r = utf8proc_decompose_custom((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, w->nfc,
                                          (utf8proc_ssize_t)w->nfc_cap, opt, NULL, NULL);
            if (r < 0) return kd_errf(e, KD_ERR_INTERNAL, "CLIP tokenizer: utf8proc: %s", utf8proc_errmsg(r));
            if ((size_t)r <= w->nfc_cap) break;
            size_t cap = w->nfc_cap;
            if (!grow((void **)&w->nfc, &cap, (size_t)r, sizeof *w->nfc))
                return kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory normalising %zu bytes", n);
            w->nfc_cap = cap;
        }
        r = utf8proc_normalize_utf32(w->nfc, r, opt);
        if (r < 0) return kd_errf(e, KD_ERR_INTERNAL, "CLIP tokenizer: utf8proc: %s", utf8proc_errmsg(r));
    }
    size_t cap = w->cp_cap, cap2 = w->cp_cap;
    if (!grow((void **)&w->cp, &cap, 2 * (size_t)r, sizeof *w->cp) ||
        !grow((void **)&w->cls, &cap2, cap, 1))
        return kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory normalising %zu bytes", n);
    w->cp_cap = cap < cap2 ? cap : cap2;
    size_t k = 0;
    int prev_ws = 0;
    for (utf8proc_ssize_t i = 0; i < r; i++) {
        uint32_t c = (uint32_t)w->nfc[i];
        if (is_ws(c)) {
            if (!prev_ws) { w->cp[k] = ' '; w->cls[k++] = 'S'; }
            prev_ws = 1;
            continue;
        }
        prev_ws = 0;
        uint32_t lo[2];
        int m = lower_cp(c, lo);
        for (int j = 0; j < m; j++) {
            w->cp[k] = lo[j];
            w->cls[k++] = (uint8_t)kd_clip_char_class(lo[j]);
        }
    }
    w->n_cp = k;
    return KD_OK;
}

kd_status kd_clip_normalize(const char *s, size_t n, char **out, size_t *out_len, kd_err *e) {
    work w;
    memset(&w, 0, sizeof w);
    kd_status st = normalize_span(&w, s, n, e);
    if (st == KD_OK) {
        char *o = malloc(w.n_cp * 4 + 1);
        if (!o) {
            st = kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory");
        } else {
            size_t k = 0;
            for (size_t i = 0; i < w.n_cp; i++) k += utf8_encode(w.cp[i], (uint8_t *)o + k);
            *out = o;
            *out_len = k;
        }
    }
    work_free(&w);
    return st;
}

/* ---- BPE ---- */

static void heap_push(work *w, uint64_t v) {
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (w->heap[p] <= v) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = v;
}

static uint64_t heap_pop(work *w) {
    uint64_t top = w->heap[0], v = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && w->heap[c + 1] < w->heap[c]) c++;
        if (w->heap[c] >= v) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = v;
    return top;
}

static void push_pair(const kd_clip_tokenizer *t, work *w, int32_t pos) {
    int32_t nx = w->next[pos];
    if (nx < 0) return;
    const pmap_slot *m = pmap_get(&t->merges, pair_key(w->sym[pos], w->sym[nx]));
    /* (rank, position): lowest rank first, leftmost among equal ranks. */
    if (m) heap_push(w, ((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)pos);
}

/* One pre-tokenised word (UTF-8 bytes) → BPE ids. */
static kd_status bpe_word(const kd_clip_tokenizer *t, work *w, const uint8_t *b, size_t n, kd_err *e) {
    if (n == 0 || full(w)) return KD_OK;
    if (n > INT32_MAX - 1) return kd_errf(e, KD_ERR_UNSUPPORTED, "CLIP tokenizer: a word of %zu bytes", n);
    size_t c1 = w->sym_cap, c2 = w->sym_cap, c3 = w->sym_cap, ch = w->heap_cap;
    if (!grow((void **)&w->sym, &c1, n, sizeof *w->sym) || !grow((void **)&w->prev, &c2, n, sizeof *w->prev) ||
        !grow((void **)&w->next, &c3, n, sizeof *w->next) || !grow((void **)&w->heap, &ch, 3 * n, sizeof *w->heap))
        return kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory for a word of %zu bytes", n);
    w->sym_cap = c1 < c2 ? (c1 < c3 ? c1 : c3) : (c2 < c3 ? c2 : c3);
    w->heap_cap = ch;
    for (size_t i = 0; i < n; i++) {
        int32_t id = i + 1 == n ? t->byte_id_eow[b[i]] : t->byte_id[b[i]];
        w->sym[i] = id >= 0 ? id : t->unk_id;
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, w, (int32_t)i);
    while (w->heap_n) {
        uint64_t top = heap_pop(w);
        int32_t pos = (int32_t)(uint32_t)top, rank = (int32_t)(top >> 32);
        int32_t nx = w->next[pos];
        if (w->sym[pos] < 0 || nx < 0) continue;
        /* A stale entry: the pair at pos changed since it was queued (ranks are unique per pair). */
        const pmap_slot *m = pmap_get(&t->merges, pair_key(w->sym[pos], w->sym[nx]));
        if (!m || m->rank != rank) continue;
        w->sym[pos] = m->new_id;
        w->sym[nx] = -1;
        w->next[pos] = w->next[nx];
        if (w->next[nx] >= 0) w->prev[w->next[nx]] = pos;
        if (w->prev[pos] >= 0) push_pair(t, w, w->prev[pos]);
        push_pair(t, w, pos);
    }
    for (int32_t i = 0; i >= 0 && !full(w); i = w->next[i]) emit(w, w->sym[i]);
    return KD_OK;
}

static kd_status bpe_cps(const kd_clip_tokenizer *t, work *w, const uint32_t *cp, size_t n, kd_err *e) {
    size_t cap = w->word_cap;
    if (!grow((void **)&w->word, &cap, 4 * n, 1))
        return kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory for a word of %zu code points", n);
    w->word_cap = cap;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += utf8_encode(cp[i], w->word + k);
    return bpe_word(t, w, w->word, k, e);
}

static int cps_eq_ascii(const uint32_t *cp, size_t n, const char *lit) {
    size_t m = strlen(lit);
    if (m > n) return 0;
    for (size_t i = 0; i < m; i++)
        if (cp[i] != (uint8_t)lit[i]) return 0;
    return 1;
}

/* The pre-tokeniser regex over w->cp[a..b), each match BPE'd as a word. */
static kd_status pretokenize(const kd_clip_tokenizer *t, work *w, size_t a, size_t b, kd_err *e) {
    const uint32_t *cp = w->cp;
    const uint8_t *cls = w->cls;
    size_t i = a;
    while (i < b && !full(w)) {
        uint32_t c = cp[i];
        if (c == '<') {
            static const char *const lits[2] = {"<|startoftext|>", "<|endoftext|>"};
            int hit = 0;
            for (int k = 0; k < 2 && !hit; k++) {
                if (!cps_eq_ascii(cp + i, b - i, lits[k])) continue;
                /* The byte-level pre-tokeniser's GPT-2 regex splits this piece again. */
                size_t m = strlen(lits[k]);
                KD_TRY(bpe_cps(t, w, cp + i, 2, e));
                KD_TRY(bpe_cps(t, w, cp + i + 2, m - 4, e));
                KD_TRY(bpe_cps(t, w, cp + i + m - 2, 2, e));
                i += m;
                hit = 1;
            }
            if (hit) continue;
        }
        if (c == '\'' && i + 1 < b) {
            uint32_t d = cp[i + 1];
            size_t m = 0;
            if (d == 's' || d == 't' || d == 'm' || d == 'd') m = 2;
            else if (i + 2 < b && ((d == 'r' && cp[i + 2] == 'e') || (d == 'v' && cp[i + 2] == 'e') ||
                                   (d == 'l' && cp[i + 2] == 'l')))
                m = 3;
            if (m) {
                KD_TRY(bpe_cps(t, w, cp + i, m, e));
                i += m;
                continue;
            }
        }
        uint8_t k = cls[i];
        if (k == 'S') {
            i++;
            continue;
        }
        size_t j = i + 1;
        if (k != 'N')
            while (j < b && cls[j] == k) j++; /* [\p{L}]+ or [^\s\p{L}\p{N}]+; numbers go one by one */
        KD_TRY(bpe_cps(t, w, cp + i, j - i, e));
        i = j;
    }
    return KD_OK;
}

/* Leftmost-longest match among the normalized added tokens in w->cp[from..n), using and updating
 * the cached next occurrence of each token. Returns 0 if none. */
static int find_norm(const kd_clip_tokenizer *t, work *w, size_t from, size_t n, size_t *ms, size_t *me,
                     int32_t *id) {
    int best = -1;
    size_t bs = NO_MATCH, bl = 0;
    for (int k = 0; k < t->n_norm; k++) {
        const added_tok *a = &t->norm[k];
        if (w->norm_next[k] == NOT_SEARCHED || (w->norm_next[k] != NO_MATCH && w->norm_next[k] < from)) {
            size_t p = from, hit = NO_MATCH;
            for (; p + a->ncp <= n; p++)
                if (w->cp[p] == a->cps[0] && memcmp(w->cp + p, a->cps, a->ncp * sizeof(uint32_t)) == 0) {
                    hit = p;
                    break;
                }
            w->norm_next[k] = hit;
        }
        size_t s = w->norm_next[k];
        if (s == NO_MATCH) continue;
        if (s < bs || (s == bs && a->ncp > bl)) {
            bs = s;
            bl = a->ncp;
            best = k;
        }
    }
    if (best < 0) return 0;
    *ms = bs;
    *me = bs + bl;
    *id = t->norm[best].id;
    return 1;
}

/* End of the chunk that starts at p: the first white space at or after p + CHUNK_MIN that follows
 * a non-white-space character, or n. Cutting there is safe: NFC never combines across white space
 * (a starter that composes with nothing), no regex match contains white space, and the run of
 * white space stays whole for the " " replacement. */
static size_t chunk_end(const uint8_t *s, size_t n, size_t p) {
    if (n - p <= CHUNK_MIN) return n;
    size_t q = p + CHUNK_MIN;
    while (q < n && (s[q] & 0xC0) == 0x80) q++;
    if (q >= n) return n;
    size_t r = q, len;
    do r--; while ((s[r] & 0xC0) == 0x80);
    int prev_ws = is_ws(utf8_decode(s + r, &len));
    while (q < n) {
        int ws = is_ws(utf8_decode(s + q, &len));
        if (ws && !prev_ws) return q;
        prev_ws = ws;
        q += len;
    }
    return n;
}

/* A piece of the prompt between raw added tokens: normalise (chunk by chunk), split out the
 * normalized added tokens, pre-tokenise and BPE the rest. */
static kd_status process_segment(const kd_clip_tokenizer *t, work *w, const char *s, size_t n, kd_err *e) {
    size_t p = 0;
    while (p < n && !full(w)) {
        size_t end = t->chunked ? chunk_end((const uint8_t *)s, n, p) : n;
        KD_TRY(normalize_span(w, s + p, end - p, e));
        for (int k = 0; k < t->n_norm; k++) w->norm_next[k] = NOT_SEARCHED;
        size_t i = 0, N = w->n_cp;
        while (i < N && !full(w)) {
            size_t ms = N, me = N;
            int32_t id = -1;
            int hit = t->n_norm ? find_norm(t, w, i, N, &ms, &me, &id) : 0;
            KD_TRY(pretokenize(t, w, i, hit ? ms : N, e));
            if (!hit) break;
            emit(w, id);
            i = me;
        }
        p = end;
    }
    return KD_OK;
}

static size_t find_bytes(const char *s, size_t n, size_t from, const char *pat, size_t m) {
    if (m == 0 || m > n || from > n - m) return NO_MATCH;
    const char *p = s + from, *last = s + n - m;
    while (p <= last) {
        p = memchr(p, pat[0], (size_t)(last - p) + 1);
        if (!p) return NO_MATCH;
        if (memcmp(p, pat, m) == 0) return (size_t)(p - s);
        p++;
    }
    return NO_MATCH;
}

kd_status kd_clip_tokenize(const kd_clip_tokenizer *t, const char *text, size_t len, int max_len,
                           int32_t *ids, int32_t *mask, int *n_real, kd_err *e) {
    if (!t || !ids || (!text && len))
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_clip_tokenize: NULL tokenizer, text or ids");
    if (max_len < 2) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_clip_tokenize: max_len %d < 2", max_len);
    const char *why = NULL;
    size_t bad = len ? kd_utf8_invalid_at((const uint8_t *)text, len, &why) : len;
    if (bad < len)
        return kd_errf(e, KD_ERR_INVALID_ARG, "CLIP tokenizer: prompt is not valid UTF-8 at byte offset %zu (byte 0x%02X%s%s)",
                       bad, (unsigned)(uint8_t)text[bad], why ? ": " : "", why ? why : "");
    work w;
    memset(&w, 0, sizeof w);
    w.ids = ids + 1;
    w.limit = max_len - 2;
    kd_status st = KD_OK;
    if ((t->n_raw && !(w.raw_next = malloc((size_t)t->n_raw * sizeof *w.raw_next))) ||
        (t->n_norm && !(w.norm_next = malloc((size_t)t->n_norm * sizeof *w.norm_next)))) {
        st = kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory");
        goto done;
    }
    for (int k = 0; k < t->n_raw; k++) w.raw_next[k] = NOT_SEARCHED;
    size_t pos = 0;
    while (pos < len && !full(&w)) {
        /* leftmost-longest raw added token at or after pos (occurrences cached per token) */
        int best = -1;
        size_t bs = NO_MATCH, bl = 0;
        for (int k = 0; k < t->n_raw; k++) {
            if (w.raw_next[k] == NOT_SEARCHED || (w.raw_next[k] != NO_MATCH && w.raw_next[k] < pos))
                w.raw_next[k] = find_bytes(text, len, pos, t->raw[k].bytes, t->raw[k].len);
            size_t s = w.raw_next[k];
            if (s != NO_MATCH && (s < bs || (s == bs && t->raw[k].len > bl))) {
                bs = s;
                bl = t->raw[k].len;
                best = k;
            }
        }
        size_t seg_end = best >= 0 ? bs : len;
        st = process_segment(t, &w, text + pos, seg_end - pos, e);
        if (st != KD_OK) goto done;
        if (best < 0) break;
        emit(&w, t->raw[best].id);
        pos = bs + bl;
    }
    ids[0] = t->bos_id;
    ids[w.count + 1] = t->eos_id;
    for (int i = w.count + 2; i < max_len; i++) ids[i] = t->pad_id;
    if (mask)
        for (int i = 0; i < max_len; i++) mask[i] = i < w.count + 2;
    if (n_real) *n_real = w.count + 2;
done:
    work_free(&w);
    return st;
}

int kd_clip_tokenizer_pad_id(const kd_clip_tokenizer *t) { return t->pad_id; }
int kd_clip_tokenizer_bos_id(const kd_clip_tokenizer *t) { return t->bos_id; }
int kd_clip_tokenizer_eos_id(const kd_clip_tokenizer *t) { return t->eos_id; }
int kd_clip_tokenizer_vocab_size(const kd_clip_tokenizer *t) { return t->n_vocab; }
int kd_clip_tokenizer_model_max_length(const kd_clip_tokenizer *t) { return t->model_max_length; }

void kd_clip_tokenizer_free(kd_clip_tokenizer *t) {
    if (!t) return;
    smap_free(&t->vocab);
    free(t->merges.slots);
    for (int i = 0; i < t->n_raw; i++) free(t->raw[i].bytes);
    for (int i = 0; i < t->n_norm; i++) free(t->norm[i].cps);
    free(t->raw);
    free(t->norm);
    free(t);
}

/* ------------------------------------------------------------------------------------------ */
/* loading                                                                                      */

static kd_status read_gzip(const char *path, char **out, size_t *len, kd_err *e) {
    gzFile g = gzopen(path, "rb");
    if (!g) return kd_errf(e, KD_ERR_IO, "%s: cannot open", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            char *nb = nc <= MAX_TEXT_FILE ? realloc(buf, nc + 1) : NULL;
            if (!nb) {
                free(buf);
                gzclose(g);
                return kd_errf(e, KD_ERR_OOM, "%s: inflates to more than %u bytes or out of memory", path,
                               MAX_TEXT_FILE);
            }
            buf = nb;
            cap = nc;
        }
        unsigned want = cap - n > (1u << 30) ? (1u << 30) : (unsigned)(cap - n);
        int r = gzread(g, buf + n, want);
        if (r < 0) {
            int zerr;
            const char *msg = gzerror(g, &zerr);
            kd_status st = kd_errf(e, KD_ERR_FORMAT, "%s: gzip error: %s", path, msg ? msg : "?");
            free(buf);
            gzclose(g);
            return st;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    gzclose(g);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return KD_OK;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static kd_clip_tokenizer *tok_new(void) {
    kd_clip_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->unk_id = t->bos_id = t->eos_id = t->pad_id = -1;
    t->model_max_length = -1;
    return t;
}

static kd_status add_vocab(kd_clip_tokenizer *t, const char *s, size_t n, int32_t id, const char *origin, kd_err *e) {
    if (!smap_put(&t->vocab, s, n, id)) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
    if (id + 1 > t->n_vocab) t->n_vocab = id + 1;
    return KD_OK;
}

/* Registers merge number `rank` (a, b). Both halves and their concatenation must be in the vocab. */
static kd_status add_merge(kd_clip_tokenizer *t, const char *a, size_t na, const char *b, size_t nb, int32_t rank,
                           const char *origin, size_t line, kd_err *e) {
    int32_t ia = smap_get(&t->vocab, a, na), ib = smap_get(&t->vocab, b, nb);
    if (ia < 0 || ib < 0)
        return kd_errf(e, KD_ERR_FORMAT, "%s: line %zu: merge token '%.*s' is not in the vocabulary", origin, line,
                       (int)(ia < 0 ? na : nb), ia < 0 ? a : b);
    char stack[256];
    char *cat = na + nb <= sizeof stack ? stack : malloc(na + nb);
    if (!cat) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
    memcpy(cat, a, na);
    memcpy(cat + na, b, nb);
    int32_t in = smap_get(&t->vocab, cat, na + nb);
    kd_status st = KD_OK;
    if (in < 0)
        st = kd_errf(e, KD_ERR_FORMAT, "%s: line %zu: merged token '%.*s' is not in the vocabulary", origin, line,
                     (int)(na + nb), cat);
    else
        pmap_put(&t->merges, pair_key(ia, ib), rank, in);
    if (cat != stack) free(cat);
    return st;
}

/* Symbol ids of single bytes; needs the vocab. */
static kd_status init_bytes(kd_clip_tokenizer *t, const char *origin, kd_err *e) {
    uint32_t map[256];
    byte_symbols(map);
    int missing = -1;
    for (int b = 0; b < 256; b++) {
        uint8_t u[8];
        size_t n = utf8_encode(map[b], u);
        t->byte_id[b] = smap_get(&t->vocab, (const char *)u, n);
        memcpy(u + n, "</w>", 4);
        t->byte_id_eow[b] = smap_get(&t->vocab, (const char *)u, n + 4);
        if ((t->byte_id[b] < 0 || t->byte_id_eow[b] < 0) && missing < 0) missing = b;
    }
    if (missing >= 0 && t->unk_id < 0)
        return kd_errf(e, KD_ERR_FORMAT, "%s: the symbol of byte 0x%02X (alone or with </w>) is not in the vocabulary "
                       "and there is no unk_token", origin, missing);
    return KD_OK;
}

/* ---- special / added tokens, resolved as transformers 5.24 does ---- */

/* An added token as transformers builds it (a tokenizers AddedToken). `normalized` left unset is
 * not a value but "not special", evaluated when the token is used, after transformers has marked
 * every token that names a special token as special: so an unset flag ends up false for those. */
typedef struct {
    char *content;
    int is_str; /* a plain string (becomes a special token, normalized = false) */
    int special, norm_set, norm_value, lstrip, rstrip, single_word;
} cand;

static int cand_normalized(const cand *c) { return c->norm_set ? c->norm_value : !c->special; }

typedef struct {
    cand *v;
    int n, cap;
} cand_list;

static void cands_free(cand_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i].content);
    free(l->v);
}

static int cand_same(const cand *a, const cand *b) {
    if (strcmp(a->content, b->content) != 0 || a->is_str != b->is_str) return 0;
    if (a->is_str) return 1;
    return a->special == b->special && cand_normalized(a) == cand_normalized(b) && a->lstrip == b->lstrip &&
           a->rstrip == b->rstrip && a->single_word == b->single_word;
}

/* Appends c unless an identical token is already listed (transformers' `not in tokens_to_add`). */
static kd_status cands_add(cand_list *l, const cand *c, kd_err *e) {
    for (int i = 0; i < l->n; i++)
        if (cand_same(&l->v[i], c)) return KD_OK;
    if (l->n == l->cap) {
        int nc = l->cap ? l->cap * 2 : 8;
        cand *nv = realloc(l->v, (size_t)nc * sizeof *nv);
        if (!nv) return kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory");
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n] = *c;
    l->v[l->n].content = strdup(c->content);
    if (!l->v[l->n].content) return kd_errf(e, KD_ERR_OOM, "CLIP tokenizer: out of memory");
    l->n++;
    return KD_OK;
}

static int json_bool(const cJSON *o, const char *key, int def, int *ok) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!it || cJSON_IsNull(it)) return def;
    if (!cJSON_IsBool(it)) *ok = 0;
    return cJSON_IsTrue(it);
}

/* A token value from a config: a string, or an AddedToken object. special_forced: the
 * special_tokens_map.json rule (its objects are made special, so normalized defaults to false). */
static kd_status parse_token(const cJSON *it, const char *origin, const char *key, int special_forced, cand *c,
                             kd_err *e) {
    memset(c, 0, sizeof *c);
    if (cJSON_IsString(it)) {
        c->content = it->valuestring;
        c->is_str = 1;
        c->special = 1;
        return KD_OK;
    }
    if (!cJSON_IsObject(it))
        return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' is %s, expected a string or an AddedToken object", origin, key,
                       kd_json_kind(it));
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(it, "content");
    if (!cJSON_IsString(content))
        return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' has no string 'content'", origin, key);
    int ok = 1;
    c->content = content->valuestring;
    c->special = special_forced ? 1 : json_bool(it, "special", 0, &ok);
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(it, "normalized");
    c->norm_set = nz && !cJSON_IsNull(nz);
    c->norm_value = json_bool(it, "normalized", 0, &ok);
    c->lstrip = json_bool(it, "lstrip", 0, &ok);
    c->rstrip = json_bool(it, "rstrip", 0, &ok);
    c->single_word = json_bool(it, "single_word", 0, &ok);
    if (!ok) return kd_errf(e, KD_ERR_FORMAT, "%s: '%s' has a flag that is not a boolean", origin, key);
    return KD_OK;
}

static const char *const k_named[7] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                       "pad_token", "cls_token", "mask_token"};
/* CLIPTokenizer's defaults for the keys a config leaves out. */
static const char *const k_named_default[7] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", NULL,
                                               "<|endoftext|>", NULL, NULL};

typedef struct {
    const char *content[7]; /* resolved named tokens (NULL: unset) */
} named_tokens;

/* Builds the final added-token tables from the candidate list (for a content listed more than
 * once, the last entry's flags win, as the backend's id → token map keeps the last). */
static kd_status finish_tokens(kd_clip_tokenizer *t, const cand_list *l, const named_tokens *nt, const char *origin,
                               kd_err *e) {
    for (int i = 0; i < l->n; i++) {
        const cand *c = &l->v[i];
        if (c->content[0] == '\0') continue;
        int later = 0;
        for (int j = i + 1; j < l->n; j++) later |= strcmp(l->v[j].content, c->content) == 0;
        if (later) continue;
        if (c->lstrip || c->rstrip || c->single_word)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: added token '%s' sets lstrip/rstrip/single_word", origin,
                           c->content);
        int32_t id = smap_get(&t->vocab, c->content, strlen(c->content));
        if (id < 0)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: added token '%s' is not in the vocabulary", origin, c->content);
        int special = c->special;
        for (int k = 0; k < 7; k++) special |= nt->content[k] && !strcmp(nt->content[k], c->content);
        int normalized = c->norm_set ? c->norm_value : !special;
        if (!normalized) {
            added_tok *nv = realloc(t->raw, (size_t)(t->n_raw + 1) * sizeof *nv);
            if (!nv) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
            t->raw = nv;
            added_tok *a = &t->raw[t->n_raw];
            memset(a, 0, sizeof *a);
            a->bytes = strdup(c->content);
            if (!a->bytes) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
            a->len = strlen(c->content);
            a->id = id;
            t->n_raw++;
        } else {
            size_t clen = strlen(c->content);
            const char *why = NULL;
            if (kd_utf8_invalid_at((const uint8_t *)c->content, clen, &why) < clen)
                return kd_errf(e, KD_ERR_FORMAT, "%s: added token is not valid UTF-8", origin);
            work w;
            memset(&w, 0, sizeof w);
            kd_status st = normalize_span(&w, c->content, clen, e);
            if (st != KD_OK) {
                work_free(&w);
                return st;
            }
            added_tok *nv = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *nv);
            if (!nv) {
                work_free(&w);
                return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
            }
            t->norm = nv;
            added_tok *a = &t->norm[t->n_norm];
            memset(a, 0, sizeof *a);
            a->id = id;
            a->ncp = w.n_cp;
            a->cps = w.cp; /* take the buffer */
            w.cp = NULL;
            work_free(&w);
            if (a->ncp == 0) { /* normalises to nothing: cannot match */
                free(a->cps);
                continue;
            }
            /* Chunked normalisation cuts before white space; a token containing some could span
             * a cut, so such a tokenizer normalises each segment whole. */
            for (size_t k = 0; k < a->ncp; k++)
                if (is_ws(a->cps[k])) t->chunked = 0;
            t->n_norm++;
        }
    }
    int32_t *dst[7] = {&t->bos_id, &t->eos_id, &t->unk_id, NULL, &t->pad_id, NULL, NULL};
    for (int k = 0; k < 7; k++) {
        if (!dst[k]) continue;
        const char *c = nt->content[k];
        if (!c) {
            if (k == 2) continue; /* no unk token: fine when every byte symbol is in the vocab */
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: no %s", origin, k_named[k]);
        }
        int32_t id = smap_get(&t->vocab, c, strlen(c));
        if (id < 0)
            return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: %s '%s' is not in the vocabulary", origin, k_named[k], c);
        *dst[k] = id;
    }
    return KD_OK;
}

/* tokenizer_config.json (cfg, may be NULL) + special_tokens_map.json (stm, may be NULL) → tokens. */
static kd_status resolve_specials(kd_clip_tokenizer *t, const cJSON *cfg, const cJSON *stm, const char *origin,
                                  kd_err *e) {
    cand_list l = {0};
    named_tokens nt;
    memset(&nt, 0, sizeof nt);
    kd_status st = KD_OK;
    const cJSON *dec = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "added_tokens_decoder") : NULL;
    if (dec && cJSON_IsNull(dec)) dec = NULL;
    if (dec && !cJSON_IsObject(dec)) return kd_errf(e, KD_ERR_FORMAT, "%s: added_tokens_decoder is not an object", origin);
    if (dec) stm = NULL; /* transformers reads special_tokens_map.json only without added_tokens_decoder */

    /* Keys transformers would turn into extra special tokens. */
    const cJSON *srcs[2] = {cfg, stm};
    for (int s = 0; s < 2; s++) {
        if (!srcs[s]) continue;
        for (const cJSON *it = srcs[s]->child; it; it = it->next) {
            const char *k = it->string;
            size_t kl = strlen(k);
            int extra = (!strcmp(k, "additional_special_tokens") || !strcmp(k, "extra_special_tokens")) &&
                        !cJSON_IsNull(it) && !(cJSON_IsArray(it) && cJSON_GetArraySize(it) == 0) &&
                        !(cJSON_IsObject(it) && !it->child);
            int named = 0;
            for (int n = 0; n < 7; n++) named |= !strcmp(k, k_named[n]);
            if (extra || (!named && kl > 6 && !strcmp(k + kl - 6, "_token") && (cJSON_IsString(it) || cJSON_IsObject(it))))
                return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: extra special tokens ('%s') are not supported", origin, k);
        }
    }

    if (dec) {
        /* its entries first, in id order */
        int n = 0;
        for (const cJSON *it = dec->child; it; it = it->next) n++;
        const cJSON **order = calloc((size_t)(n ? n : 1), sizeof *order);
        long *keys = calloc((size_t)(n ? n : 1), sizeof *keys);
        if (!order || !keys) {
            free(order);
            free(keys);
            return kd_errf(e, KD_ERR_OOM, "%s: out of memory", origin);
        }
        int m = 0;
        for (const cJSON *it = dec->child; it; it = it->next) {
            char *endp;
            long id = strtol(it->string, &endp, 10);
            if (*it->string == '\0' || *endp || id < 0) {
                st = kd_errf(e, KD_ERR_FORMAT, "%s: added_tokens_decoder key '%s' is not an id", origin, it->string);
                break;
            }
            int j = m++;
            while (j > 0 && keys[j - 1] > id) {
                keys[j] = keys[j - 1];
                order[j] = order[j - 1];
                j--;
            }
            keys[j] = id;
            order[j] = it;
        }
        for (int i = 0; st == KD_OK && i < m; i++) {
            cand c;
            st = parse_token(order[i], origin, order[i]->string, 0, &c, e);
            if (st == KD_OK && c.is_str)
                st = kd_errf(e, KD_ERR_FORMAT, "%s: added_tokens_decoder['%s'] is not an object", origin,
                             order[i]->string);
            if (st == KD_OK) st = cands_add(&l, &c, e);
        }
        free(order);
        free(keys);
    }
    int n_dec = l.n;
    for (int k = 0; st == KD_OK && k < 7; k++) {
        const cJSON *v = stm ? cJSON_GetObjectItemCaseSensitive(stm, k_named[k]) : NULL;
        int from_stm = v != NULL;
        if (!v && cfg) v = cJSON_GetObjectItemCaseSensitive(cfg, k_named[k]);
        cand c;
        memset(&c, 0, sizeof c);
        if (!v) {
            if (!k_named_default[k]) continue;
            c.content = (char *)k_named_default[k];
            c.is_str = c.special = 1;
        } else if (cJSON_IsNull(v)) {
            continue;
        } else {
            st = parse_token(v, from_stm ? "special_tokens_map.json" : origin, k_named[k], from_stm, &c, e);
            if (st != KD_OK) break;
        }
        nt.content[k] = c.content;
        int in_dec = 0;
        for (int i = 0; i < n_dec; i++) in_dec |= !strcmp(l.v[i].content, c.content);
        if (!in_dec) st = cands_add(&l, &c, e);
    }
    if (st == KD_OK) {
        t->chunked = 1;
        st = finish_tokens(t, &l, &nt, origin, e);
    }
    cands_free(&l);
    return st;
}

static kd_status load_json_opt(const char *path, cJSON **out, kd_err *e) {
    *out = NULL;
    if (!file_exists(path)) return KD_OK;
    char *text = NULL;
    size_t n = 0;
    KD_TRY(kd_read_file(path, KD_CONFIG_MAX_BYTES, &text, &n, e));
    kd_status st = kd_json_parse(text, n, path, out, e);
    free(text);
    if (st == KD_OK && !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return kd_errf(e, KD_ERR_FORMAT, "%s: top level is not an object", path);
    }
    return st;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static kd_status load_hf_inner(kd_clip_tokenizer *t, const char *dir, kd_err *e) {
    kd_status st = KD_OK;
    char *p_vocab = path_join(dir, "vocab.json"), *p_merges = path_join(dir, "merges.txt"),
         *p_cfg = path_join(dir, "tokenizer_config.json"), *p_stm = path_join(dir, "special_tokens_map.json"),
         *p_tj = path_join(dir, "tokenizer.json"), *p_at = path_join(dir, "added_tokens.json");
    char *text = NULL;
    cJSON *vocab = NULL, *cfg = NULL, *stm = NULL;
    if (!p_vocab || !p_merges || !p_cfg || !p_stm || !p_tj || !p_at) {
        st = kd_errf(e, KD_ERR_OOM, "out of memory");
        goto done;
    }
    if (file_exists(p_tj) || file_exists(p_at)) {
        st = kd_errf(e, KD_ERR_UNSUPPORTED,
                     "%s: tokenizer folders with %s are not supported (transformers would take the vocabulary or "
                     "the added tokens from it); use vocab.json + merges.txt + tokenizer_config.json",
                     dir, file_exists(p_tj) ? "tokenizer.json" : "added_tokens.json");
        goto done;
    }
    if (!file_exists(p_vocab) || !file_exists(p_merges)) {
        st = kd_errf(e, KD_ERR_NOT_FOUND, "%s: missing %s", dir, file_exists(p_vocab) ? "merges.txt" : "vocab.json");
        goto done;
    }
    /* vocab.json */
    size_t n = 0;
    if ((st = kd_read_file(p_vocab, MAX_TEXT_FILE, &text, &n, e)) != KD_OK) goto done;
    if ((st = kd_json_parse(text, n, p_vocab, &vocab, e)) != KD_OK) goto done;
    free(text);
    text = NULL;
    if (!cJSON_IsObject(vocab)) {
        st = kd_errf(e, KD_ERR_FORMAT, "%s: top level is not an object", p_vocab);
        goto done;
    }
    for (const cJSON *it = vocab->child; it; it = it->next) {
        int64_t id;
        if (!kd_json_int(it, &id) || id < 0 || id >= INT32_MAX) {
            st = kd_errf(e, KD_ERR_FORMAT, "%s: token '%s' has %s id, expected an integer in [0, 2^31)", p_vocab,
                         it->string, kd_json_kind(it));
            goto done;
        }
        if ((st = add_vocab(t, it->string, strlen(it->string), (int32_t)id, p_vocab, e)) != KD_OK) goto done;
    }
    cJSON_Delete(vocab);
    vocab = NULL;
    /* merges.txt: "#version" lines are skipped; every other line is exactly "a b" (rank = its index
     * among those lines); an empty line is an error, as in the reference reader. */
    if ((st = kd_read_file(p_merges, MAX_TEXT_FILE, &text, &n, e)) != KD_OK) goto done;
    if (!pmap_init(&t->merges, t->vocab.n + 1)) {
        st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", p_merges);
        goto done;
    }
    {
        const char *s = text, *end = text + n;
        size_t line = 0;
        int32_t rank = 0;
        while (s < end) {
            const char *nl = memchr(s, '\n', (size_t)(end - s));
            const char *le = nl ? nl : end;
            line++;
            size_t ll = (size_t)(le - s);
            if (ll && s[ll - 1] == '\r') ll--;
            if (!(ll >= 8 && memcmp(s, "#version", 8) == 0)) {
                const char *sp = memchr(s, ' ', ll);
                if (!sp || memchr(sp + 1, ' ', ll - (size_t)(sp + 1 - s))) {
                    st = kd_errf(e, KD_ERR_FORMAT, "%s: line %zu is not two tokens separated by one space", p_merges,
                                 line);
                    goto done;
                }
                if ((st = add_merge(t, s, (size_t)(sp - s), sp + 1, ll - (size_t)(sp + 1 - s), rank, p_merges, line,
                                    e)) != KD_OK)
                    goto done;
                if (rank == INT32_MAX) {
                    st = kd_errf(e, KD_ERR_FORMAT, "%s: too many merges", p_merges);
                    goto done;
                }
                rank++;
            }
            s = nl ? nl + 1 : end;
        }
    }
    free(text);
    text = NULL;
    if ((st = load_json_opt(p_cfg, &cfg, e)) != KD_OK) goto done;
    if ((st = load_json_opt(p_stm, &stm, e)) != KD_OK) goto done;
    if (cfg) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(cfg, "model_max_length");
        int64_t v;
        if (m && kd_json_int(m, &v) && v > 0 && v <= INT_MAX) t->model_max_length = (int)v;
    }
    if ((st = resolve_specials(t, cfg, stm, cfg ? p_cfg : dir, e)) != KD_OK) goto done;
    st = init_bytes(t, p_vocab, e);
done:
    free(text);
    cJSON_Delete(vocab);
    cJSON_Delete(cfg);
    cJSON_Delete(stm);
    free(p_vocab); free(p_merges); free(p_cfg); free(p_stm); free(p_tj); free(p_at);
    return st;
}

kd_status kd_clip_tokenizer_load_hf(const char *dir, kd_clip_tokenizer **out, kd_err *e) {
    if (!dir || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_clip_tokenizer_load_hf: NULL argument");
    *out = NULL;
    kd_clip_tokenizer *t = tok_new();
    if (!t) return kd_errf(e, KD_ERR_OOM, "out of memory");
    kd_status st = load_hf_inner(t, dir, e);
    if (st != KD_OK) {
        kd_clip_tokenizer_free(t);
        return st;
    }
    *out = t;
    return KD_OK;
}

static kd_status load_openai_inner(kd_clip_tokenizer *t, const char *path, const char *pad, kd_err *e) {
    char *text = NULL;
    size_t n = 0;
    KD_TRY(read_gzip(path, &text, &n, e));
    kd_status st = KD_OK;
    /* lines 1 .. OPENAI_N_MERGES (line 0 is the "#version" header) */
    const char **la = malloc(OPENAI_N_MERGES * sizeof *la);
    size_t *lna = malloc(OPENAI_N_MERGES * sizeof *lna);
    const char **lb = malloc(OPENAI_N_MERGES * sizeof *lb);
    size_t *lnb = malloc(OPENAI_N_MERGES * sizeof *lnb);
    if (!la || !lna || !lb || !lnb) {
        st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", path);
        goto done;
    }
    {
        const char *s = text, *end = text + n;
        const char *nl = memchr(s, '\n', n);
        s = nl ? nl + 1 : end;
        for (int i = 0; i < OPENAI_N_MERGES; i++) {
            if (s >= end) {
                st = kd_errf(e, KD_ERR_FORMAT, "%s: %d merges, expected at least %d", path, i, OPENAI_N_MERGES);
                goto done;
            }
            nl = memchr(s, '\n', (size_t)(end - s));
            const char *le = nl ? nl : end;
            /* simple_tokenizer.py: merge.split() → exactly two fields */
            const char *p = s;
            const char *f[3];
            size_t fl[3];
            int nf = 0;
            while (p < le) {
                while (p < le && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
                if (p >= le) break;
                const char *q = p;
                while (q < le && !(*q == ' ' || *q == '\t' || *q == '\r')) q++;
                if (nf < 3) { f[nf] = p; fl[nf] = (size_t)(q - p); }
                nf++;
                p = q;
            }
            if (nf != 2) {
                st = kd_errf(e, KD_ERR_FORMAT, "%s: line %d has %d fields, expected 2", path, i + 2, nf);
                goto done;
            }
            la[i] = f[0]; lna[i] = fl[0]; lb[i] = f[1]; lnb[i] = fl[1];
            s = nl ? nl + 1 : end;
        }
    }
    {
        /* vocab = byte symbols (printable bytes first), the same with "</w>", one token per merge,
         * then <|startoftext|> and <|endoftext|>; a repeated string keeps its last id. */
        uint32_t map[256];
        byte_symbols(map);
        int order[256], k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int b = 0; b < 256; b++)
                if ((map[b] < 256) == (pass == 0)) order[k++] = b;
        int32_t id = 0;
        for (int eow = 0; eow < 2 && st == KD_OK; eow++)
            for (int i = 0; i < 256 && st == KD_OK; i++) {
                uint8_t u[8];
                size_t m = utf8_encode(map[order[i]], u);
                if (eow) { memcpy(u + m, "</w>", 4); m += 4; }
                st = add_vocab(t, (const char *)u, m, id++, path, e);
            }
        char buf[512];
        for (int i = 0; i < OPENAI_N_MERGES && st == KD_OK; i++) {
            if (lna[i] + lnb[i] > sizeof buf) {
                st = kd_errf(e, KD_ERR_FORMAT, "%s: line %d: merge too long", path, i + 2);
                break;
            }
            memcpy(buf, la[i], lna[i]);
            memcpy(buf + lna[i], lb[i], lnb[i]);
            st = add_vocab(t, buf, lna[i] + lnb[i], id++, path, e);
        }
        if (st == KD_OK) st = add_vocab(t, "<|startoftext|>", 15, id++, path, e);
        if (st == KD_OK) st = add_vocab(t, "<|endoftext|>", 13, id++, path, e);
        if (st != KD_OK) goto done;
        if (!pmap_init(&t->merges, OPENAI_N_MERGES)) {
            st = kd_errf(e, KD_ERR_OOM, "%s: out of memory", path);
            goto done;
        }
        for (int i = 0; i < OPENAI_N_MERGES && st == KD_OK; i++)
            st = add_merge(t, la[i], lna[i], lb[i], lnb[i], i, path, (size_t)i + 2, e);
        if (st != KD_OK) goto done;
    }
    {
        /* The special tokens of the Kandinsky prior tokenizer folders (written by transformers 4):
         * bos / eos / unk as AddedToken objects with normalized = true, pad_token as a string. */
        cand_list l = {0};
        named_tokens nt;
        memset(&nt, 0, sizeof nt);
        const char *names[4] = {"<|startoftext|>", "<|endoftext|>", "<|endoftext|>", pad};
        const int slot[4] = {0, 1, 2, 4};
        for (int i = 0; i < 4 && st == KD_OK; i++) {
            cand c;
            memset(&c, 0, sizeof c);
            c.content = (char *)names[i];
            if (i < 3) c.norm_set = c.norm_value = 1;
            else c.is_str = c.special = 1;
            nt.content[slot[i]] = names[i];
            st = cands_add(&l, &c, e);
        }
        t->chunked = 1;
        if (st == KD_OK) st = finish_tokens(t, &l, &nt, path, e);
        cands_free(&l);
        if (st != KD_OK) goto done;
    }
    t->model_max_length = OPENAI_CONTEXT;
    st = init_bytes(t, path, e);
done:
    free(la); free(lna); free(lb); free(lnb);
    free(text);
    return st;
}

kd_status kd_clip_tokenizer_load_openai(const char *bpe_gz_path, const char *pad_token, kd_clip_tokenizer **out,
                                        kd_err *e) {
    if (!bpe_gz_path || !out) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_clip_tokenizer_load_openai: NULL argument");
    *out = NULL;
    if (!pad_token) pad_token = "<|endoftext|>";
    if (!*pad_token) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_clip_tokenizer_load_openai: empty pad token");
    kd_clip_tokenizer *t = tok_new();
    if (!t) return kd_errf(e, KD_ERR_OOM, "out of memory");
    kd_status st = load_openai_inner(t, bpe_gz_path, pad_token, e);
    if (st != KD_OK) {
        kd_clip_tokenizer_free(t);
        return st;
    }
    *out = t;
    return KD_OK;
}
