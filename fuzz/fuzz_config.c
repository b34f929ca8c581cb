/* libFuzzer target: kd_config_parse on arbitrary bytes, then every typed getter on every
 * top-level key, and the printer: what we print must parse again to a config with the same keys. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"

static void poke_getters(const kd_config *c, const char *key) {
    kd_err e = {0};
    int64_t i, iv[16];
    double d, dv[16];
    int b, n;
    const char *s, *sv[16];
    kd_config_int(c, key, &i, &e);
    kd_config_float(c, key, &d, &e);
    kd_config_bool(c, key, &b, &e);
    kd_config_str(c, key, &s, &e);
    kd_config_int_or(c, key, 1, &i, &e);
    kd_config_str_or(c, key, NULL, &s, &e);
    kd_config_int_array(c, key, iv, 16, &n, &e);
    kd_config_float_array(c, key, dv, 16, &n, &e);
    kd_config_str_array(c, key, sv, 16, &n, &e);
}

static void check_reprint(const kd_config *c) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return;
    kd_config_print(c, f);
    fclose(f);
    kd_config c2;
    kd_err e = {0};
    if (kd_config_parse(buf, size, "reprint", &c2, &e) != KD_OK) __builtin_trap();
    if (cJSON_GetArraySize(c->root) != cJSON_GetArraySize(c2.root)) __builtin_trap();
    kd_config_free(&c2);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kd_config c;
    kd_err e = {0};
    kd_status s = kd_config_parse((const char *)data, size, "fuzz/config.json", &c, &e);
    if (s != KD_OK) {
        if (c.root || e.code != s || !e.msg[0]) __builtin_trap();
        return 0;
    }
    for (const cJSON *it = c.root->child; it; it = it->next) poke_getters(&c, it->string);
    poke_getters(&c, "a.b");
    poke_getters(&c, "vision_config.hidden_size");
    check_reprint(&c);
    kd_config_free(&c);
    return 0;
}
