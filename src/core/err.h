/* Internal error reporting. Library functions that can fail take a kd_err* (may be NULL), store a
 * message that names the file, tensor or parameter at fault, and return the status. */
#ifndef KD_CORE_ERR_H
#define KD_CORE_ERR_H

#include "kd_status.h"

#define KD_ERR_MSG_MAX 1024

typedef struct kd_err {
    kd_status code;
    char msg[KD_ERR_MSG_MAX];
} kd_err;

#if defined(__GNUC__)
#define KD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KD_PRINTF(a, b)
#endif

/* Stores code + formatted message in *e (if e != NULL) and returns code. */
kd_status kd_errf(kd_err *e, kd_status code, const char *fmt, ...) KD_PRINTF(3, 4);

/* Prepends "prefix: " to the message already in *e (to add the file or model name as an error
 * travels up) and returns e->code. */
kd_status kd_err_prefix(kd_err *e, const char *fmt, ...) KD_PRINTF(2, 3);

void kd_err_clear(kd_err *e);

/* Propagate a failing status. */
#define KD_TRY(expr)                      \
    do {                                  \
        kd_status kd_try_s_ = (expr);     \
        if (kd_try_s_ != KD_OK) return kd_try_s_; \
    } while (0)

#endif
