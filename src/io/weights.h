/* A model's weight set: one safetensors file, one PyTorch torch.save zip file (diffusers'
 * diffusion_pytorch_model.bin, read without executing anything by io/torch_zip.h), or a sharded
 * checkpoint described by a "*.safetensors.index.json" or "*.bin.index.json" ({"metadata": {...},
 * "weight_map": {tensor: shard file}}), seen as one name → tensor lookup. Files ending in .bin,
 * .pt or .pth (the path given, or a shard) are read as torch.save zip archives, anything else as
 * safetensors; both give kd_st_tensor views, so get/bind/f32 work the same on either. A .bin
 * tensor points into the mapping, or (deflated entry, strided view, misaligned start) into a
 * copy owned by the weight set.
 *
 * Shard names must stay inside the index's folder: plain file names or relative subpaths with
 * no ".." component, no leading '/', no backslash. A tensor found in two shards, or named in
 * weight_map but absent from its shard, is an error. (A symlink inside the folder is followed:
 * the folder's owner decides where its own links point.)
 *
 * Models declare what they need as a kd_bind list; kd_weights_bind fills kd_tensor views into
 * the mapping and reports the first missing or mis-shaped tensor by file and full name.
 * A kd_weights is not thread-safe (bind and f32 update the used flags and the f32 cache): models
 * bind their weights once, at load time, from one thread. */
#ifndef KD_IO_WEIGHTS_H
#define KD_IO_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/tensor.h"
#include "io/config.h"
#include "io/safetensors.h"

typedef struct kd_weights kd_weights;

/* path: a .safetensors file, a .bin/.pt/.pth torch.save file, a *.index.json, or a component
 * folder, where the first that exists of diffusion_pytorch_model.safetensors, model.safetensors,
 * diffusion_pytorch_model.safetensors.index.json, model.safetensors.index.json (then the same
 * with the .fp16 variant infix), then diffusion_pytorch_model.bin, pytorch_model.bin,
 * diffusion_pytorch_model.bin.index.json, pytorch_model.bin.index.json (then their .fp16
 * forms) is used: safetensors win when both are there, as in diffusers. A .bin that is not a
 * zip archive (torch.save before 1.6 or with _use_new_zipfile_serialization=False) and a .ckpt
 * give KD_ERR_UNSUPPORTED. */
kd_status kd_weights_open(const char *path, kd_weights **out, kd_err *e);
void kd_weights_close(kd_weights *w);
/* The weights file kd_weights_open would use in a folder (malloc'd, caller frees): KD_ERR_NOT_FOUND
 * if there is none. */
kd_status kd_weights_locate(const char *dir, char **out, kd_err *e);

/* The file that was opened (the .safetensors or the index), as used in messages. */
const char *kd_weights_path(const kd_weights *w);

/* NULL if absent. */
const kd_st_tensor *kd_weights_get(const kd_weights *w, const char *name);
/* The file that holds a tensor (for messages), or NULL if absent. */
const char *kd_weights_file_of(const kd_weights *w, const char *name);

/* Every tensor, sorted by name: for listings and for "unused tensor" warnings. */
size_t kd_weights_count(const kd_weights *w);
const kd_st_tensor *kd_weights_at(const kd_weights *w, size_t i);
/* 1 if the i-th tensor was bound or converted since open. */
int kd_weights_used_at(const kd_weights *w, size_t i);

/* The files behind the set (1 unless sharded), and the parsed index (NULL unless sharded). A
 * torch .bin file appears as a kd_st_file view (path, size, tensors, lookup; no metadata, data
 * NULL): see kd_tz_file.st. */
size_t kd_weights_n_files(const kd_weights *w);
const kd_st_file *kd_weights_file(const kd_weights *w, size_t i);
const kd_config *kd_weights_index(const kd_weights *w);

typedef struct kd_bind {
    const char *name;            /* appended to the prefix given to kd_weights_bind */
    kd_tensor *dst;              /* gets dtype, shape and a read-only data pointer into the mapping */
    int ndim;                    /* expected rank; < 0 accepts any shape */
    int64_t shape[KD_MAX_DIMS];  /* expected dims; -1 matches any size */
    int optional;                /* absent → dst->data = NULL instead of an error */
    float **f32;                 /* if set, also an f32 copy owned by the kd_weights (see kd_weights_f32) */
    int q8_ok;                   /* an I8 tensor with its "<name>_scale" binds as KD_Q8_0 (Linear/conv weights) */
} kd_bind;

/* Binds list[0..n) in order. Fails on the first missing non-optional tensor (KD_ERR_NOT_FOUND),
 * the first with another rank or shape (KD_ERR_SHAPE: "... 'conv_in.weight' has shape
 * [384, 9, 3, 3], expected [384, 4, 3, 3]"), or one that is not F32/F16/BF16 (KD_ERR_SHAPE).
 * prefix may be NULL or "". */
kd_status kd_weights_bind(kd_weights *w, const char *prefix, kd_bind *list, size_t n, kd_err *e);

/* q8_0 weights (docs/QUANTIZATION.md). A converted file stores a quantised weight as an I8
 * tensor of the weight's shape plus "<name>_scale", F16 [rows, row_len / 32]; binding it with
 * q8_ok gives a KD_Q8_0 view. kd_weights_set_q8(w, 1) asks the layer loaders to quantise the
 * F32/F16/BF16 Linear and conv weights they bind (kd_weights_quantize_q8: a copy owned by w,
 * *dst updated; the source pages of the mapping are released). KD_ERR_UNSUPPORTED, *dst
 * unchanged, when a weight cannot be q8_0 (row length not a multiple of 32, non-finite values). */
void kd_weights_set_q8(kd_weights *w, int on);
int kd_weights_wants_q8(const kd_weights *w);
kd_status kd_weights_quantize_q8(kd_weights *w, const char *name, kd_tensor *dst, kd_err *e);
/* The q8_0 copy kd_weights_quantize_q8 made of the i-th tensor (1, *q and *scale set), or 0. */
int kd_weights_q8_at(const kd_weights *w, size_t i, const int8_t **q, const uint16_t **scale);

/* Tensors under other names, for checkpoints in another layout than the one a model binds (e.g.
 * Kandinsky 2.0's original U-Net names): each entry makes `name` from rows of `src` —
 * blocks b = 0 .. n_blocks-1 of block_rows rows starting at row row0 + b·block_stride — with the
 * given shape (ndim 0: src's; its element count must be what the rows hold). n_blocks 0 means all of src: an
 * alias of the same bytes; a gather is copied into memory owned by w, in src's dtype. Fails
 * naming the tensor when src is absent, the rows do not fit, or a name would exist twice. */
typedef struct kd_derive {
    const char *name, *src;
    int ndim;
    int64_t shape[KD_MAX_DIMS];
    int64_t n_blocks, block_rows, row0, block_stride;
} kd_derive;
kd_status kd_weights_derive(kd_weights *w, const kd_derive *list, size_t n, kd_err *e);

/* An f32 copy of a floating-point tensor (any of F32/F16/BF16, any alignment), made once and
 * owned by w (freed by kd_weights_close). If ndim >= 0 the shape is checked as in bind (shape may
 * contain -1). For the small vectors ops take as float* (biases, norm weights). */
kd_status kd_weights_f32(kd_weights *w, const char *name, int ndim, const int64_t *shape, float **out, kd_err *e);

#endif
