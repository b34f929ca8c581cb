/* CLIP image preprocessing of the Kandinsky prior pipelines (image mixing, emb2emb), bit-exact
 * with what the pinned reference stack (transformers 5.24, diffusers 0.42.1, Pillow 13, no
 * torchvision) does for `pipe.image_processor(pil_image, return_tensors="pt").pixel_values`.
 *
 * Which processor that is. diffusers loads `image_processor/` with transformers'
 * `CLIPImageProcessor`. In transformers 5.x that name is the torchvision ("fast") backend when
 * torchvision is installed; without torchvision (the pinned requirements do not include it) it
 * falls back to `CLIPImageProcessorPil` (PilBackend), which is the algorithm implemented here:
 *
 *   1. do_convert_rgb: transformers' convert_to_rgb on the PIL image. Gray is replicated. An image
 *      with alpha is COMPOSITED ONTO WHITE (PIL.Image.alpha_composite over an opaque white
 *      background, then convert("RGB")), unlike load_image/convert("RGB"), which drops alpha:
 *      out = round_half_up((c·a + 255·(255 − a)) / 255), checked for all 65536 (c, a) pairs.
 *   2. do_resize: target size from `size` (below), then PIL Image.resize((w, h), resample,
 *      reducing_gap=None) on the 8-bit RGB image (kd_image_resize, Pillow-exact).
 *        {shortest_edge: s}   short side → s, long side → int(s · long / short) (truncated);
 *                             a square image is resized to s × s; an image whose short side
 *                             already is s is still passed through resize (an identical copy)
 *        {shortest_edge, longest_edge}, {height, width}, {max_height, max_width}: as transformers'
 *                             get_size_with_aspect_ratio / fixed size / get_image_size_for_max_height_width
 *   3. do_center_crop to crop_size {height, width} on the 8-bit image (numpy slicing):
 *      top = (H − ch) // 2, left = (W − cw) // 2 (the extra odd pixel is dropped at the bottom/right);
 *      a side shorter than the crop is zero-padded (pixel value 0, before rescale/normalise) with
 *      the image at offset ceil((crop − side) / 2).
 *   4. do_rescale: x = float32(float64(u8) · rescale_factor)   (numpy: astype(float64) · scale, then float32)
 *   5. do_normalize: x = (x − float32(mean[c])) / float32(std[c]) in float32. Without rescale the
 *      uint8 values are first converted to float32; with neither, the values are the bytes.
 *   Output: float32 CHW [3, out_h, out_w] (out_h × out_w = crop size, or the resized size when
 *   do_center_crop is off).
 *
 * Not reproduced: a PNG colour key (tRNS on a gray or RGB image) makes Pillow see transparency
 * and composite those pixels onto white; kd_image carries no colour key (the decoder drops it,
 * as convert("RGB") would), so such pixels keep their colour here.
 */
#ifndef KD_MODELS_CLIP_PREPROCESS_H
#define KD_MODELS_CLIP_PREPROCESS_H

#include "core/err.h"
#include "io/image.h"
#include "kandinsky.h"

typedef enum kd_clip_size_kind {
    KD_CLIP_SIZE_SHORTEST_EDGE = 0, /* {"shortest_edge": s} (an int size with default_to_square false) */
    KD_CLIP_SIZE_SHORTEST_LONGEST,  /* {"shortest_edge": s, "longest_edge": l} */
    KD_CLIP_SIZE_HEIGHT_WIDTH,      /* {"height": h, "width": w} (a [h, w] list, an int with default_to_square) */
    KD_CLIP_SIZE_MAX_HEIGHT_WIDTH   /* {"max_height": h, "max_width": w} */
} kd_clip_size_kind;

typedef struct kd_clip_preprocess_config {
    int do_convert_rgb;
    int do_resize;
    kd_clip_size_kind size_kind;
    int shortest_edge, longest_edge; /* SHORTEST_EDGE / SHORTEST_LONGEST */
    int size_height, size_width;     /* HEIGHT_WIDTH / MAX_HEIGHT_WIDTH */
    kd_resample resample;            /* PIL numbering; CLIP default 3 = bicubic */
    int do_center_crop;
    int crop_height, crop_width;
    int do_rescale;
    double rescale_factor;           /* 1/255 */
    int do_normalize;
    double image_mean[3], image_std[3];
} kd_clip_preprocess_config;

/* CLIPImageProcessor's class defaults: shortest_edge 224, bicubic, center crop 224 × 224, rescale
 * 1/255, OpenAI mean/std, convert RGB. */
kd_clip_preprocess_config kd_clip_preprocess_config_default(void);

/* Reads an `image_processor/preprocessor_config.json`. Keys absent or null keep the defaults
 * (transformers does the same); unknown keys (image_processor_type, feature_extractor_type, ...)
 * are ignored. `size` may be a dict, an int (shortest edge, or a square when default_to_square is
 * true) or a [height, width] list; `crop_size` a dict, an int (square) or a list. image_mean /
 * image_std: a number or 3 numbers. use_square_size true → size 224 × 224 (CLIPImageProcessor's
 * constructor quirk). Errors (KD_ERR_FORMAT / KD_ERR_UNSUPPORTED / KD_ERR_IO / KD_ERR_NOT_FOUND)
 * name the file and the key. */
kd_status kd_clip_preprocess_config_load(const char *path, kd_clip_preprocess_config *cfg, kd_err *e);
/* Same from JSON text in memory (origin names it in messages). */
kd_status kd_clip_preprocess_config_parse(const char *text, size_t len, const char *origin,
                                          kd_clip_preprocess_config *cfg, kd_err *e);

/* Size of the tensor kd_clip_preprocess writes for an in_w × in_h image. Fails (KD_ERR_INVALID_ARG /
 * KD_ERR_UNSUPPORTED) where the reference would fail or the resized image would exceed 64 Mpx. */
kd_status kd_clip_preprocess_output_size(const kd_clip_preprocess_config *cfg, int in_w, int in_h, int *out_w,
                                         int *out_h, kd_err *e);

/* img: 1 (gray), 3 (RGB) or 4 (RGBA) channels; with do_convert_rgb off it must have 3.
 * out: float [3, out_h, out_w] as given by kd_clip_preprocess_output_size. */
kd_status kd_clip_preprocess(const kd_image *img, const kd_clip_preprocess_config *cfg, float *out, kd_err *e);

#endif
