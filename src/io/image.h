/* 8-bit images: PNG/JPEG decoding and encoding, Pillow-identical resizing, and the float
 * conversions of diffusers' image processing.
 *
 * The reference is what a diffusers user gets: `load_image(path)` =
 * `PIL.ImageOps.exif_transpose(PIL.Image.open(path)).convert("RGB")`, then
 * `image.resize((w, h), resample=..., reducing_gap=...)` and `VaeImageProcessor` float maths.
 * Every pixel this file produces is meant to be bit-identical to Pillow's (checked by
 * tests/test_image.c against fixtures written by tools/reference/gen_images.py with Pillow 13.0.0).
 *
 * Decoding (kd_image_decode / kd_image_load). The format comes from the magic bytes, never the
 * file name. Pixels come back as stored ("as decoded"), HWC, rows tightly packed:
 *   PNG gray 1/2/4/8 bit       -> 1 channel; 1/2/4-bit values scaled by 255/(2^bits-1) (Pillow's
 *                                 "1", "L;2", "L;4" unpackers do the same)
 *   PNG gray 16 bit            -> 1 channel, value = min(v16, 255). Pillow opens it as mode "I;16"
 *                                 and its I;16 -> L/RGB conversion CLIPS rather than scales, so a
 *                                 16-bit gray PNG comes out nearly all white. We match that quirk.
 *   PNG gray+alpha 8/16        -> 4 channels (L, L, L, A); 16 bit: high byte (Pillow "LA;16B")
 *   PNG palette 1/2/4/8        -> 3 channels, or 4 when a tRNS chunk is present (alpha from tRNS,
 *                                 255 past its end). Indices beyond the palette give (0, 0, 0),
 *                                 as in Pillow (libpng's own expansion is not used).
 *   PNG RGB 8/16, RGBA 8/16    -> 3 / 4 channels; 16 bit: the HIGH BYTE of each sample (Pillow's
 *                                 "RGB;16B"/"RGBA;16B" unpackers truncate; no rounding).
 *   tRNS on gray/RGB images is ignored (Pillow keeps it as info only; convert("RGB") drops it).
 *   gAMA, cHRM, sRGB, iCCP, sBIT, bKGD are ignored, as Pillow ignores them when decoding.
 *   JPEG gray                  -> 1 channel; YCbCr/RGB -> 3 channels (libjpeg's colour
 *                                 conversion, islow IDCT, fancy upsampling: Pillow's settings)
 *   JPEG CMYK/YCCK             -> converted to 3 channels RGB the way Pillow does: the samples
 *                                 libjpeg returns are taken as Adobe-inverted ("CMYK;I"), then
 *                                 Pillow's cmyk2rgb: R = K - MULDIV255(255 - C, K) (likewise G, B;
 *                                 C, K as libjpeg returns them; MULDIV255(a, b) =
 *                                 (t + (t >> 8)) >> 8 with t = a*b + 128). No colour management.
 * Alpha is never composited: kd_image_to_rgb drops it, exactly like Pillow's convert("RGB")
 * (no blending over white or black).
 * EXIF orientation (limits.apply_exif_orientation, default on) is applied like
 * PIL.ImageOps.exif_transpose, which diffusers' load_image calls: the Orientation tag (0x0112) of
 * IFD0 from a JPEG APP1 "Exif" segment (the first one), a PNG eXIf chunk or a PNG text chunk
 * "Raw profile type exif"; failing that, `tiff:Orientation="N"` / `<tiff:Orientation>N` in XMP
 * (JPEG APP1 XMP, PNG iTXt "XML:com.adobe.xmp"). Malformed EXIF is ignored (orientation 1).
 *
 * Safety. Limits are checked against the header before any pixel buffer is allocated (PNG: our
 * own IHDR check plus png_set_user_limits; JPEG: after jpeg_read_header, before
 * jpeg_start_decompress allocates the coefficient buffers). PNG ancillary chunks other than
 * eXIf/tEXt/zTXt/iTXt are skipped unread (only their CRC is checked); text chunks are decoded only
 * when one of them has a keyword the orientation can come from, and then each is capped by
 * png_set_chunk_malloc_max (max_chunk_bytes, also the bound on decompressed zTXt/iTXt) and at most
 * 31 are kept (png_set_chunk_cache_max), so metadata costs at most ~31 × max_chunk_bytes. The
 * image data itself can never inflate past height × rowbytes: libpng stops at the last row. JPEG: progressive files are stopped after max_jpeg_scans scans
 * (progress monitor), libjpeg's memory is capped (max_memory_to_use, no backing store).
 * Corrupt data is an error, never a half-grey image: libpng errors and libjpeg's error_exit
 * longjmp back to us (nothing exits); every libjpeg warning about corrupt data (premature end of
 * file, bad Huffman code, premature marker, bogus progression, ...) is turned into an error.
 * Tolerated: unknown JFIF revision, unknown Adobe transform code, bad ICC segment, and extraneous
 * bytes just before the EOI marker (common in camera files; Pillow accepts them too). libpng
 * warnings and benign errors (bad ancillary chunks, checksum of trailing zlib data) do not fail
 * the decode; CRC errors in critical chunks and any truncation do. A PNG must reach IEND and a
 * JPEG its EOI.
 *
 * Failures: KD_ERR_FORMAT (truncated/corrupt/unrecognised), KD_ERR_UNSUPPORTED (GIF, BMP, WebP,
 * TIFF, 12-bit or 2-component JPEG), KD_ERR_OOM (a limit exceeded or an allocation failed),
 * KD_ERR_IO / KD_ERR_NOT_FOUND (files). Messages start with the file name.
 */
#ifndef KD_IO_IMAGE_H
#define KD_IO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "kandinsky.h"

/* kd_image (width, height, channels, HWC uint8 data) is declared in the public header. */

typedef struct kd_image_limits {
    int max_width, max_height;  /* per side; default 8192 each */
    uint64_t max_pixels;        /* width × height; default 64 Mpx (67108864 = 8192²) */
    uint64_t max_file_bytes;    /* kd_image_load only; default 1 GiB */
    int max_jpeg_scans;         /* default 1000 (a progressive JPEG has ~10) */
    uint32_t max_chunk_bytes;   /* PNG: largest ancillary chunk, incl. decompressed text; 2 MB */
    int apply_exif_orientation; /* default 1: like ImageOps.exif_transpose (diffusers load_image) */
} kd_image_limits;

kd_image_limits kd_image_limits_default(void);

typedef enum kd_image_format {
    KD_IMAGE_UNKNOWN = 0,
    KD_IMAGE_PNG,
    KD_IMAGE_JPEG,
    KD_IMAGE_GIF,
    KD_IMAGE_BMP,
    KD_IMAGE_WEBP,
    KD_IMAGE_TIFF
} kd_image_format;

/* From the magic bytes only. */
kd_image_format kd_image_detect(const uint8_t *buf, size_t n);

/* Allocates w × h × channels bytes (uninitialised). Checks the size for overflow. */
kd_status kd_image_alloc(kd_image *img, int w, int h, int channels, kd_err *e);
/* Frees data and zeroes the struct; safe on a zeroed struct. */
void kd_image_free(kd_image *img);

/* Decodes a PNG or JPEG held in memory. name is used in messages (NULL: "<memory>"); lim NULL =
 * defaults. On failure *out is zeroed. */
kd_status kd_image_decode(const uint8_t *buf, size_t n, const char *name, const kd_image_limits *lim,
                          kd_image *out, kd_err *e);
/* Reads the file into memory (at most lim->max_file_bytes) and decodes it. */
kd_status kd_image_load(const char *path, const kd_image_limits *lim, kd_image *out, kd_err *e);

/* Applies an EXIF orientation (1..8; anything else copies), as Pillow's Image.transpose with the
 * method exif_transpose picks: 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE,
 * 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90. out must not alias in. */
kd_status kd_image_orient(const kd_image *in, int orientation, kd_image *out, kd_err *e);

/* Pillow convert("RGB"): gray replicated, alpha dropped (not composited). */
kd_status kd_image_to_rgb(const kd_image *in, kd_image *out, kd_err *e);
/* Pillow convert("L"): from RGB/RGBA L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (Pillow's
 * rgb2l fixed point, ITU-R 601-2 luma; alpha ignored); a 1-channel image is copied. */
kd_status kd_image_to_gray(const kd_image *in, kd_image *out, kd_err *e);

/* Writes 8-bit PNG (gray, RGB or RGBA). The file appears atomically (temp file + rename). */
kd_status kd_image_save_png(const char *path, const kd_image *img, kd_err *e);
/* Same, with tEXt chunks: text = NULL or key, value, key, value, ..., NULL (keys 1..79 bytes). */
kd_status kd_image_save_png_text(const char *path, const kd_image *img, const char *const *text, kd_err *e);
/* The same PNG into a malloc'd buffer (*out, *out_len; free() it). */
kd_status kd_image_encode_png_mem(const kd_image *img, const char *const *text, uint8_t **out, size_t *out_len,
                                  kd_err *e);
/* Baseline JPEG, 4:2:0 for colour, quality 1..100; alpha is dropped. */
kd_status kd_image_save_jpeg(const char *path, const kd_image *img, int quality, kd_err *e);

typedef enum kd_resample {
    KD_RESAMPLE_NEAREST = 0, /* Pillow's numbering */
    KD_RESAMPLE_LANCZOS = 1,
    KD_RESAMPLE_BILINEAR = 2,
    KD_RESAMPLE_BICUBIC = 3,
    KD_RESAMPLE_BOX = 4,
    KD_RESAMPLE_HAMMING = 5
} kd_resample;

/* Pillow Image.resize((w, h), resample=filter, reducing_gap=gap), bit-exact:
 *  - reducing_gap <= 0 means None. Otherwise (and filter != NEAREST) the image is first reduced
 *    by the integer factors int(W / w / gap), int(H / h / gap) with Image.reduce() (box average,
 *    partial blocks at the right/bottom edge averaged over what they hold), and the remaining
 *    fractional scale is done by the filter over the box (0, 0, W/fx, H/fy) given as float32.
 *    If that box matches the target size exactly (integer ratio), no filter runs at all.
 *  - separable convolution with an 8-bit intermediate. Pass order as in Pillow 13: vertical
 *    first when the height shrinks by more than twice as many pixels as the width
 *    (H > h && H - h > 2 (W - w), sizes after the reduce step), else horizontal first over only
 *    the rows the vertical pass reads. Support scaled by the downscale factor; coefficients
 *    normalised to sum 1 in double, then rounded to 22-bit fixed point; accumulator starts at
 *    2^21; result >> 22 clipped to 0..255.
 *  - 4-channel images are premultiplied by alpha first (Pillow's RGBA -> RGBa -> RGBA round trip)
 *    unless the filter is NEAREST.
 *  - NEAREST uses Pillow's affine scaling path (source x = floor((x + 0.5) · W/w), accumulated
 *    in double exactly as Pillow does).
 * out must not alias in. */
kd_status kd_image_resize(const kd_image *in, int w, int h, kd_resample filter, double reducing_gap,
                          kd_image *out, kd_err *e);
/* Pillow Image.reduce((fx, fy)): box average with Pillow's fixed-point rounding. */
kd_status kd_image_reduce(const kd_image *in, int fx, int fy, kd_image *out, kd_err *e);

/* diffusers VaeImageProcessor: out[c, y, x] = 2 · (float)(u8 / 255.0f) − 1 in float32, [3, H, W]
 * (numpy's float32 division, then torch's 2.0 * x − 1.0). rgb must have 3 channels. */
kd_status kd_image_to_tensor(const kd_image *rgb, float *out, kd_err *e);
/* diffusers Kandinsky post-processing of a decoded image x [3, H, W] (float32 throughout):
 * v = clamp(x * 0.5 + 0.5, 0, 1), u8 = round_half_to_even(v * 255) (numpy round). NaN gives 0.
 * out gets 3 channels. */
kd_status kd_tensor_to_image(const float *x, int w, int h, kd_image *out, kd_err *e);

#endif
