/* Internals of the request model shared by request.c and request_json.c. */
#ifndef KD_API_REQUEST_H
#define KD_API_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "kandinsky.h"

/* KD_ERR_INVALID_ARG with the message on ctx and r->field = field. */
kd_status kd_request_fail(kd_ctx *ctx, kd_request *r, const char *field, const char *fmt, ...) KD_PRINTF(4, 5);

/* base64 (standard or URL alphabet, padding optional, whitespace skipped, an optional "data:...,"
 * prefix) → *out (malloc'd). 0, -1 for bad input, -2 out of memory. */
int kd_base64_decode(const char *in, size_t len, uint8_t **out, size_t *out_len);

#endif
