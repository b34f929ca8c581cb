/* Reader for PyTorch checkpoints in torch.save's zip format (the default since torch 1.6), e.g.
 * diffusers' diffusion_pytorch_model.bin. Nothing in the file is executed: the pickle is run by a
 * restricted VM that can only rebuild a flat state dict {name: tensor}.
 *
 * The archive: a ZIP (stored or deflated entries, ZIP64 for > 4 GB files and > 65535 entries)
 * whose entries all live under one folder <archive>/ (the first central-directory entry names it):
 *   <archive>/data.pkl      the pickle (protocols 2 to 5 as far as a state dict needs them)
 *   <archive>/data/<key>    one raw little-endian storage per key
 *   <archive>/byteorder     "little" ("big" is refused as unsupported); absent = little
 *   <archive>/version       a decimal format version 1..10 (also accepted as .data/version)
 * The file is mmapped; a tensor points into the mapping when its storage entry is stored
 * uncompressed, its view is contiguous and its first byte is aligned to its element size.
 * Otherwise (deflated entry, strided view, misaligned start) the tensor is copied into memory
 * owned by the kd_tz_file, bounded by kd_tz_limits.
 *
 * ZIP rules: the end record (with the ZIP64 end record and locator where present) must sit at
 * the end of the file with its comment; the central directory must end exactly where the end
 * record begins (no prefixed data, no gap); every entry has a local header whose name and method
 * agree with the central directory; entries do not overlap; names are unique, contain no NUL and
 * all begin with "<archive>/"; no encryption, no multi-disk archives, methods 0 (stored) and 8
 * (deflate) only; a stored entry's sizes agree; a deflated entry inflates to exactly its
 * declared size (and a declared size above 1032 × the compressed size is refused before
 * anything is allocated: deflate cannot reach that ratio). CRC-32 is checked for data.pkl,
 * byteorder, version and every inflated entry when the recorded CRC is not 0 (torch writes 0
 * when compute_crc32 is off); stored storages are not checksummed (that would read the whole
 * checkpoint at open; safetensors has no checksum either).
 *
 * Pickle rules (see torch_zip.c for the opcode list): globals are resolved only against an
 * allow-list — collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_tensor_v3 /
 * _rebuild_parameter / _rebuild_parameter_with_state, the legacy torch.<Type>Storage classes,
 * torch.storage.UntypedStorage and torch dtype names (torch.float16, ...). Any other global
 * (os.system, builtins.eval, subprocess.Popen, __torch__.*, ...) is never resolved nor called: it
 * becomes a placeholder, and so does whatever REDUCE / NEWOBJ / BUILD would make of it, and sets
 * and bytes; a placeholder where the state dict, one of its tensors or a storage type is expected
 * is KD_ERR_FORMAT naming the global ("global 'os.system' is not allowed ..."). REDUCE applies only
 * the allow-listed callables; storages come only from BINPERSID tuples
 * ('storage', <storage type>, key, location, numel). The stack, MARK depth, memo (PUT indices
 * must be sequential), object count, container cells, string lengths and the pickle size are
 * bounded; nothing recurses over the object graph. The result must be a dict (or OrderedDict)
 * of unique UTF-8 names to tensors — or a PyTorch Lightning checkpoint, a dict whose "state_dict"
 * entry is that dict (its other entries: epoch, optimizer states, callbacks, hyper-parameters, are
 * skipped); BUILD is accepted only on dicts (state_dict's _metadata) and placeholders, and its
 * state is ignored.
 *
 * Tensors: dtype F32, F16, BF16 or I64 (anything else: KD_ERR_UNSUPPORTED naming the tensor),
 * at most KD_MAX_DIMS dims, non-negative sizes and strides; storage_offset + the view's extent
 * must fit in the storage (overflow-checked); a storage's entry must hold exactly numel ×
 * element size bytes; one key seen with two storage types is refused (torch refuses to save
 * that). Non-contiguous views (transposes, slices with steps, expanded dims) are gathered into
 * contiguous copies; tensors with the neg/conj bit set in their metadata are unsupported.
 * Every failure names the file, the zip entry or tensor, and the rule. */
#ifndef KD_IO_TORCH_ZIP_H
#define KD_IO_TORCH_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/tensor.h"
#include "io/safetensors.h"

#define KD_TZ_MAX_PICKLE (64u << 20)            /* data.pkl bytes */
#define KD_TZ_MAX_INFLATED (UINT64_C(64) << 30) /* bytes of inflated entries, all together */
#define KD_TZ_COPY_SLACK (UINT64_C(256) << 20)  /* see kd_tz_limits.max_copied */

typedef struct kd_tz_limits {
    uint64_t max_pickle;   /* 0 = KD_TZ_MAX_PICKLE */
    /* 0 = KD_TZ_MAX_INFLATED. Inflating also needs a compressed stream of at least 1/1032 of
     * the size, so this much memory takes a file of ~1/1000 of it. */
    uint64_t max_inflated;
    /* Bytes copied out of strided or misaligned views, all together; 0 = 2 × the file size +
     * KD_TZ_COPY_SLACK. Such copies are at most the file's size unless a view repeats its
     * storage (stride 0), which this bounds. */
    uint64_t max_copied;
} kd_tz_limits;

typedef struct kd_tz_file {
    /* The tensors seen as a safetensors file, so code written for kd_st_file works unchanged:
     * st.path, st.base/st.size (the whole file), st.n_tensors, st.tensors (in pickle dict order),
     * and kd_st_find(&f->st, name). st.data is NULL, st.mapped 0, no metadata. A tensor's
     * offset is the byte offset in the file of its first element when it points into the
     * mapping, else 0. Never pass &f->st to kd_st_close. */
    kd_st_file st;
    char *archive;          /* the folder inside the zip */
    int version;            /* <archive>/version */
    unsigned char *copied;  /* copied[i]: tensor i lives in memory owned by f, not in the mapping */
    uint64_t owned_bytes;   /* bytes of memory held for them (inflated entries + copies) */
    void *priv;
} kd_tz_file;

/* Opens and validates a checkpoint. A file that is not a zip archive (torch.save before 1.6 or
 * with _use_new_zipfile_serialization=False, a tar archive, anything else) is
 * KD_ERR_UNSUPPORTED. */
kd_status kd_tz_open(const char *path, kd_tz_file **out, kd_err *e);
/* The same on an image in memory (not copied: buf must outlive *out). lim may be NULL. The
 * entry point for the fuzzer and for tests of crafted files; name is used in messages. */
kd_status kd_tz_parse(const uint8_t *buf, uint64_t size, const char *name, const kd_tz_limits *lim,
                      kd_tz_file **out, kd_err *e);
void kd_tz_close(kd_tz_file *f);

/* NULL if absent. */
const kd_st_tensor *kd_tz_find(const kd_tz_file *f, const char *name);

/* 1 if buf starts like a zip archive (local file header or empty-archive end record). */
int kd_tz_is_zip(const uint8_t *buf, uint64_t size);

#endif
