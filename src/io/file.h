/* Whole-file reads with a size cap. */
#ifndef KD_IO_FILE_H
#define KD_IO_FILE_H

#include <stddef.h>

#include "core/err.h"

/* Reads all of path into a malloc'd, NUL-terminated buffer (*len bytes before the NUL). Files
 * larger than max bytes are refused (KD_ERR_OOM), as are unreadable ones (KD_ERR_IO). */
kd_status kd_read_file(const char *path, size_t max, char **out, size_t *len, kd_err *e);

#endif
