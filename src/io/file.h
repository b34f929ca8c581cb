/* Whole-file reads with a size cap, and the open + mmap the checkpoint readers share. */
#ifndef KD_IO_FILE_H
#define KD_IO_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Reads all of path into a malloc'd, NUL-terminated buffer (*len bytes before the NUL). Files
 * larger than max bytes are refused (KD_ERR_OOM), as are unreadable ones (KD_ERR_IO). */
kd_status kd_read_file(const char *path, size_t max, char **out, size_t *len, kd_err *e);

/* Opens path read-only and checks it is a regular file that fits in the address space:
 * *fd and *size on success (KD_ERR_NOT_FOUND, KD_ERR_IO or KD_ERR_UNSUPPORTED otherwise). */
kd_status kd_open_regular(const char *path, int *fd, uint64_t *size, kd_err *e);

/* Maps size (> 0) bytes of fd read-only and closes fd either way (the mapping keeps the file).
 * If another process truncates the file while it is mapped, reading the lost pages raises
 * SIGBUS; nothing portable prevents that. Model files are not rewritten in place. */
kd_status kd_map_fd(const char *path, int fd, uint64_t size, void **map, kd_err *e);

#endif
