/* Whole-file reads with a size cap (tokenizer files, JSON). */
#include "io/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

kd_status kd_open_regular(const char *path, int *fd, uint64_t *size, kd_err *e) {
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return kd_errf(e, errno == ENOENT ? KD_ERR_NOT_FOUND : KD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    kd_status s = KD_OK;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode))
        s = kd_errf(e, KD_ERR_IO, "%s: not a regular file", path);
    else if ((uint64_t)st.st_size > SIZE_MAX)
        s = kd_errf(e, KD_ERR_UNSUPPORTED, "%s: file too large to map on this platform", path);
    if (s != KD_OK) {
        close(*fd);
        *fd = -1;
        return s;
    }
    *size = (uint64_t)st.st_size;
    return KD_OK;
}

kd_status kd_map_fd(const char *path, int fd, uint64_t size, void **map, kd_err *e) {
    *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (*map == MAP_FAILED) {
        *map = NULL;
        return kd_errf(e, KD_ERR_IO, "%s: mmap of %llu bytes failed: %s", path, (unsigned long long)size,
                       strerror(map_errno));
    }
    return KD_OK;
}
