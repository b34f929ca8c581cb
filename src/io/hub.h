/* Model locations: local folders and the Hugging Face Hub cache.
 *
 * A model is named by a local folder or by a Hub repo id "org/name" or "org/name@revision"
 * (a branch, tag or 40-hex commit; default "main"). Repo ids live in the cache exactly as
 * huggingface_hub lays it out, so the Python tools and we share one cache:
 *
 *   $HF_HUB_CACHE | $HF_HOME/hub | $XDG_CACHE_HOME/huggingface/hub | ~/.cache/huggingface/hub
 *     models--org--name/
 *       refs/<revision>                 the commit hash the revision pointed to (no newline)
 *       snapshots/<commit>/<path>       relative symlink to ../..(/..)/blobs/<etag>
 *       blobs/<etag>                    file content; etag = sha256 (LFS) or git sha1
 *       blobs/<etag>.incomplete         a download in progress (resumed with a Range request)
 *       .no_exist/<commit>/<path>       empty marker: that optional file is not in the repo
 *     .locks/models--org--name/<etag>.lock   flock'd while a blob is written
 *
 * Resolution never touches the network when the snapshot already holds every needed file. Else,
 * unless HF_HUB_OFFLINE is set, it asks {endpoint}/{org}/{name}/resolve/{revision}/{path}: the
 * first request pins the commit (X-Repo-Commit, written to refs/<revision>), every later request
 * names that commit, so one resolution never mixes two commits.
 *
 * Files are HEAD'ed first (redirects are not followed: a 3xx carrying X-Repo-Commit is the
 * metadata answer, its Location the download URL; other 3xx, e.g. a renamed repo, are followed),
 * then fetched with GET into blobs/<etag>.incomplete, checked (size; sha256 when the etag is 64
 * hex digits) and renamed into place. The token is only sent to the endpoint's own host. */
#ifndef KD_IO_HUB_H
#define KD_IO_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "kandinsky.h"

/* Largest JSON file (configs, index files) we download. */
#define KD_HUB_MAX_JSON_BYTES (16u << 20)

typedef struct kd_hub_opts {
    const char *cache_dir;  /* NULL: $HF_HUB_CACHE, $HF_HOME/hub, ... (see above) */
    const char *endpoint;   /* NULL: $HF_ENDPOINT or https://huggingface.co */
    const char *token;      /* NULL: $HF_TOKEN, else the file $HF_TOKEN_PATH or $HF_HOME/token; "": none */
    int offline;            /* -1: from HF_HUB_OFFLINE (1/ON/YES/TRUE, any case); 0: online; 1: offline */
    kd_download_progress_fn progress;  /* may be NULL; called at most every 0.1 s per file and at the end */
    void *progress_user;
    long connect_timeout_s;  /* 0: 30 */
    long low_speed_time_s;   /* 0: 60 — a transfer under low_speed_bytes/s for this long fails */
    long low_speed_bytes;    /* 0: 1024 */
    int max_attempts;        /* 0: 5 — tries per file download (each retry resumes) */
    long retry_wait_ms;      /* 0: 500 (doubles after each failed try, at most 8 s) */
    unsigned long n_requests;  /* out: HTTP requests made (HEAD + GET, redirects not counted) */
} kd_hub_opts;

/* Defaults: everything from the environment. */
kd_hub_opts kd_hub_opts_default(void);

typedef enum kd_hub_kind {
    KD_HUB_DIFFUSERS,     /* config.json + diffusion_pytorch_model.safetensors (or its index + shards) */
    KD_HUB_TRANSFORMERS,  /* config.json + model.safetensors (or its index + shards) */
    KD_HUB_SCHEDULER,     /* scheduler_config.json */
    KD_HUB_SCHEDULER_OPTIONAL, /* scheduler_config.json if the repo has it (2.1's ddpm_scheduler/) */
    KD_HUB_CLIP_TOKENIZER, /* vocab.json, merges.txt (+ tokenizer_config.json, special_tokens_map.json if in the repo) */
    KD_HUB_XLMR_TOKENIZER  /* Kandinsky 2.1 decoder: tokenizer.json and/or sentencepiece.bpe.model (+ configs) */
} kd_hub_kind;

/* An opened repo id (cache paths, commit, connection). */
typedef struct kd_hub_repo kd_hub_repo;

/* 1 if s has the form of a repo id "org/name" or "org/name@revision" (characters, lengths; no
 * file system or network access). */
int kd_hub_is_repo_id(const char *s);

/* Parses the id and computes the cache paths; reads refs/<revision> if present. No network.
 * opts is kept (not copied) until kd_hub_repo_close and receives n_requests. */
kd_status kd_hub_repo_open(const char *repo_id, kd_hub_opts *opts, kd_hub_repo **out, kd_err *e);
void kd_hub_repo_close(kd_hub_repo *r);
/* snapshots/<commit> of the commit in use (NULL while none is known). */
const char *kd_hub_repo_snapshot(const kd_hub_repo *r);
/* models--org--name folder inside the cache. */
const char *kd_hub_repo_dir(const kd_hub_repo *r);

/* Makes <snapshot>/<path> present: nothing when it already is, else (online) downloads it.
 * optional = 1: a 404 is not an error (*found = 0 then, and a .no_exist marker is written).
 * found may be NULL. */
kd_status kd_hub_fetch_file(kd_hub_repo *r, const char *path, int optional, int *found, kd_err *e);

/* Makes a component folder of a pipeline present: <component>/config.json first, then the first
 * weights file of the kind that exists in the repo (probed with HEAD: the single file, else the
 * .safetensors.index.json and then every shard it names; shard names with "..", absolute paths
 * or backslashes are refused). Offline, or when the folder is complete, no request is made. */
kd_status kd_hub_fetch_component(kd_hub_repo *r, const char *component, kd_hub_kind kind, kd_err *e);

/* id_or_path: an existing folder → *out_dir = a copy of it. Else a repo id whose snapshot must hold
 * every file of needed_files (NULL-terminated relative paths): *out_dir = the snapshot folder
 * (malloc'd). Offline and incomplete → KD_ERR_NOT_FOUND naming the first missing file. */
kd_status kd_hub_resolve(const char *id_or_path, const char *const *needed_files, kd_hub_opts *opts, char **out_dir,
                         kd_err *e);

/* The same for a whole Kandinsky 2.2 pipeline folder: kind "prior" (model_index.json, tokenizer/,
 * text_encoder/, image_encoder/, prior/, scheduler/) or "decoder" (model_index.json, unet/, movq/,
 * scheduler/), each component through kd_hub_fetch_component. */
kd_status kd_hub_resolve_pipeline(const char *id_or_path, const char *kind, kd_hub_opts *opts, char **out_dir,
                                  kd_err *e);

/* SHA-256 (FIPS 180-4), for blob checks and tests. */
typedef struct kd_sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
} kd_sha256;

void kd_sha256_init(kd_sha256 *c);
void kd_sha256_update(kd_sha256 *c, const void *data, size_t n);
void kd_sha256_final(kd_sha256 *c, uint8_t out[32]);
/* out: 64 lowercase hex digits + NUL. */
void kd_sha256_hex(const void *data, size_t n, char out[65]);

#endif
