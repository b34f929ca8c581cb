#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

kd_status kd_errf(kd_err *e, kd_status code, const char *fmt, ...) {
    if (!e) return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

kd_status kd_err_prefix(kd_err *e, const char *fmt, ...) {
    if (!e) return KD_ERR_INTERNAL;
    char prefix[KD_ERR_MSG_MAX], old[KD_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > sizeof e->msg - 3) n = sizeof e->msg - 3;
    memcpy(e->msg, prefix, n);
    memcpy(e->msg + n, ": ", 2);
    size_t rest = sizeof e->msg - n - 3;
    size_t m = strnlen(old, rest);
    memcpy(e->msg + n + 2, old, m);
    e->msg[n + 2 + m] = '\0';
    return e->code;
}

void kd_err_clear(kd_err *e) {
    if (!e) return;
    e->code = KD_OK;
    e->msg[0] = '\0';
}

const char *kd_status_str(kd_status s) {
    switch (s) {
    case KD_OK: return "KD_OK";
    case KD_ERR_INVALID_ARG: return "KD_ERR_INVALID_ARG";
    case KD_ERR_IO: return "KD_ERR_IO";
    case KD_ERR_FORMAT: return "KD_ERR_FORMAT";
    case KD_ERR_SHAPE: return "KD_ERR_SHAPE";
    case KD_ERR_NOT_FOUND: return "KD_ERR_NOT_FOUND";
    case KD_ERR_UNSUPPORTED: return "KD_ERR_UNSUPPORTED";
    case KD_ERR_OOM: return "KD_ERR_OOM";
    case KD_ERR_INTERNAL: return "KD_ERR_INTERNAL";
    case KD_ERR_NUMERIC: return "KD_ERR_NUMERIC";
    case KD_ERR_CANCELLED: return "KD_ERR_CANCELLED";
    }
    return "KD_ERR_UNKNOWN";
}
