/* JSON on top of cJSON, and typed access to a model's config.json.
 *
 * cJSON alone is too lenient for files we must not misread: it skips any byte <= 0x20 as
 * whitespace, skips a UTF-8 BOM, accepts leading zeros, keeps duplicate keys (and its lookup
 * returns the first while Python's json returns the last), truncates strings at "\u0000", and
 * stores every number as a double, so 3, 3.0 and 3e0 look alike. kd_json_parse therefore runs a
 * strict RFC 8259 scan first (UTF-8, grammar, depth, size) and only then lets cJSON build the
 * tree, which it annotates: numbers written as plain integer literals get KD_JSON_INT in
 * item->type, so "shape": [3.0] and "latent_channels": 4.0 can be told from integers.
 *
 * A config getter that fails names the file and the key:
 *   "movq/config.json: missing key 'latent_channels'"                          KD_ERR_NOT_FOUND
 *   "movq/config.json: key 'latent_channels' is a string, expected an integer" KD_ERR_FORMAT
 * Keys may be dotted paths into nested objects ("vision_config.hidden_size"); a key that itself
 * contains a dot is found too (the whole remaining path is tried as a key first). */
#ifndef KD_IO_CONFIG_H
#define KD_IO_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "core/err.h"

/* Largest config / index file read (they are a few KB; anything near this is not a config). */
#define KD_CONFIG_MAX_BYTES (16u << 20)
/* Deeper nesting is rejected before cJSON (whose own limit is 1000) sees it. */
#define KD_JSON_MAX_DEPTH 512
/* A cJSON node costs ~64 bytes; this caps the tree of a hostile 100 MB header near 256 MB. */
#define KD_JSON_MAX_VALUES (1u << 22)
/* Longest number literal. Older cJSON releases copy at most 63 characters of a number into a
 * fixed buffer (the rest then fails to parse); Debian 12's patched 1.7.15 takes any length. One
 * limit of ours makes every cJSON build agree. No config or header needs more than ~25. */
#define KD_JSON_MAX_NUMBER_CHARS 63

/* Bits kd_json_parse ORs into a number item's type (cJSON uses the low byte and bits 8-9).
 * KD_JSON_INT: a plain integer literal (no fraction or exponent) with |value| <= 2^53, so
 * valuedouble holds it exactly. KD_JSON_BIGINT: a plain integer literal beyond that. */
#define KD_JSON_INT (1 << 12)
#define KD_JSON_BIGINT (1 << 13)

/* Index of the first byte that is not part of valid UTF-8 (overlong forms, surrogates and code
 * points above U+10FFFF are invalid), or n if all is valid. *why (may be NULL) gets the reason. */
size_t kd_utf8_invalid_at(const uint8_t *s, size_t n, const char **why);

/* Parses text[0..len) as strict JSON (any top-level value). origin names the source in
 * messages. On success *out is a cJSON tree to free with cJSON_Delete. Errors are KD_ERR_FORMAT
 * ("origin: JSON error at line L, column C (byte B): reason") or KD_ERR_OOM (limits). */
kd_status kd_json_parse(const char *text, size_t len, const char *origin, cJSON **out, kd_err *e);

/* 1 and *out = value if item is a number written as an integer literal within ±2^53. */
int kd_json_int(const cJSON *item, int64_t *out);
/* "a string", "an integer", "a number", "an array", ... (for messages). */
const char *kd_json_kind(const cJSON *item);
/* Writes item as indented JSON (2 spaces a level, keys in file order), integers as integers. */
void kd_json_print(const cJSON *item, FILE *f, int indent);
/* Writes s as a JSON string literal with quotes and escapes. */
void kd_json_print_string(const char *s, FILE *f);

typedef struct kd_config {
    char *origin;  /* name used in messages, e.g. "movq/config.json" */
    cJSON *root;   /* the top-level object */
} kd_config;

/* Reads and parses a file (at most KD_CONFIG_MAX_BYTES); the top level must be an object.
 * On failure cfg is left empty (kd_config_free on it is harmless). */
kd_status kd_config_load(const char *path, kd_config *cfg, kd_err *e);
/* Same for text in memory (text need not be NUL-terminated). */
kd_status kd_config_parse(const char *text, size_t len, const char *origin, kd_config *cfg, kd_err *e);
void kd_config_free(kd_config *cfg);

/* The item at a (dotted) key, or NULL if absent. */
const cJSON *kd_config_get(const kd_config *cfg, const char *key);
/* 1 if the key is present and not null. */
int kd_config_has(const kd_config *cfg, const char *key);

/* Required keys: absent → KD_ERR_NOT_FOUND; null or wrong type → KD_ERR_FORMAT. */
kd_status kd_config_int(const kd_config *cfg, const char *key, int64_t *out, kd_err *e);
kd_status kd_config_float(const kd_config *cfg, const char *key, double *out, kd_err *e);
kd_status kd_config_bool(const kd_config *cfg, const char *key, int *out, kd_err *e);
/* *out stays valid while cfg lives. */
kd_status kd_config_str(const kd_config *cfg, const char *key, const char **out, kd_err *e);

/* Optional keys: absent or null → *out = def; present with the wrong type → KD_ERR_FORMAT. */
kd_status kd_config_int_or(const kd_config *cfg, const char *key, int64_t def, int64_t *out, kd_err *e);
kd_status kd_config_float_or(const kd_config *cfg, const char *key, double def, double *out, kd_err *e);
kd_status kd_config_bool_or(const kd_config *cfg, const char *key, int def, int *out, kd_err *e);
kd_status kd_config_str_or(const kd_config *cfg, const char *key, const char *def, const char **out,
                           kd_err *e);

/* Required arrays of up to max elements: *n gets the count. More than max → KD_ERR_UNSUPPORTED;
 * an element of the wrong type → KD_ERR_FORMAT naming its index. */
kd_status kd_config_int_array(const kd_config *cfg, const char *key, int64_t *out, int max, int *n,
                              kd_err *e);
kd_status kd_config_float_array(const kd_config *cfg, const char *key, double *out, int max, int *n,
                                kd_err *e);
kd_status kd_config_str_array(const kd_config *cfg, const char *key, const char **out, int max, int *n,
                              kd_err *e);

/* Pretty-prints the whole config. */
void kd_config_print(const kd_config *cfg, FILE *f);

#endif
