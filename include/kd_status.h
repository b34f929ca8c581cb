/* kandinsky.c — status codes, shared by the public API (kandinsky.h) and the library's own layers
 * (core/err.h), so that the core does not depend on the rest of the public header. */
#ifndef KD_STATUS_H
#define KD_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kd_status {
    KD_OK = 0,
    KD_ERR_INVALID_ARG,  /* a parameter the caller passed is out of range or inconsistent */
    KD_ERR_IO,           /* a file could not be opened, read, mapped or written */
    KD_ERR_FORMAT,       /* a file is malformed (safetensors header, JSON, image ...) */
    KD_ERR_SHAPE,        /* a tensor has the wrong shape or dtype for the model that binds it */
    KD_ERR_NOT_FOUND,    /* a required file, tensor or config key is missing */
    KD_ERR_UNSUPPORTED,  /* valid input that this build does not handle */
    KD_ERR_OOM,          /* an allocation failed or a size limit was exceeded */
    KD_ERR_INTERNAL,     /* a bug in kandinsky.c: please report it */
    KD_ERR_NUMERIC,      /* the computation produced NaN or infinity (a diverged model or scheduler) */
    KD_ERR_CANCELLED     /* the caller asked the generation to stop (kd_gen_params.cancel) */
} kd_status;

/* Short constant name of a status ("KD_ERR_FORMAT"). */
const char *kd_status_str(kd_status s);

#ifdef __cplusplus
}
#endif
#endif /* KD_STATUS_H */
