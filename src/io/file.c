/* Whole-file reads with a size cap (tokenizer files, JSON). */
#include "io/file.h"

#include <stdio.h>
#include <stdlib.h>

kd_status kd_read_file(const char *path, size_t max, char **out, size_t *len, kd_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return kd_errf(e, KD_ERR_IO, "%s: cannot open", path);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            char *nb = nc <= max + 1 ? realloc(buf, nc + 1) : NULL;
            if (!nb) {
                free(buf);
                fclose(f);
                return kd_errf(e, KD_ERR_OOM, "%s: larger than %zu bytes or out of memory", path, max);
            }
            buf = nb;
            cap = nc;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err || n > max) {
        free(buf);
        return kd_errf(e, err ? KD_ERR_IO : KD_ERR_OOM, "%s: %s", path, err ? "read error" : "file too large");
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return KD_OK;
}
