/* Image decoding/encoding (libpng, libjpeg-turbo), Pillow-identical resizing and diffusers'
 * float conversions. See image.h for the rules each function matches and why. */
#include "io/image.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

/* Pillow's resampling is specified by its double/float operation order: no fused multiply-add.
 * GCC in ISO C mode (-std=c11) does not contract; clang needs the pragma. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define IMG_NAME(n) ((n) ? (n) : "<memory>")

kd_image_limits kd_image_limits_default(void) {
    kd_image_limits l;
    l.max_width = 8192;
    l.max_height = 8192;
    l.max_pixels = (uint64_t)8192 * 8192;
    l.max_file_bytes = (uint64_t)1 << 30;
    l.max_jpeg_scans = 1000;
    l.max_chunk_bytes = 2u * 1000u * 1000u;
    l.apply_exif_orientation = 1;
    return l;
}

kd_status kd_image_alloc(kd_image *img, int w, int h, int channels, kd_err *e) {
    memset(img, 0, sizeof *img);
    if (w <= 0 || h <= 0 || (channels != 1 && channels != 3 && channels != 4))
        return kd_errf(e, KD_ERR_INVALID_ARG, "image: invalid size %dx%d with %d channels", w, h, channels);
    size_t n = (size_t)w * (size_t)h;
    if (n / (size_t)w != (size_t)h || n > SIZE_MAX / (size_t)channels)
        return kd_errf(e, KD_ERR_OOM, "image: %dx%dx%d overflows the address space", w, h, channels);
    n *= (size_t)channels;
    img->data = malloc(n);
    if (!img->data) return kd_errf(e, KD_ERR_OOM, "image: cannot allocate %zu bytes for %dx%dx%d", n, w, h, channels);
    img->width = w;
    img->height = h;
    img->channels = channels;
    return KD_OK;
}

void kd_image_free(kd_image *img) {
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

static size_t img_bytes(const kd_image *im) { return (size_t)im->width * (size_t)im->height * (size_t)im->channels; }

static int img_valid(const kd_image *im) {
    return im && im->data && im->width > 0 && im->height > 0 &&
           (im->channels == 1 || im->channels == 3 || im->channels == 4);
}

kd_image_format kd_image_detect(const uint8_t *b, size_t n) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && memcmp(b, png_sig, 8) == 0) return KD_IMAGE_PNG;
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return KD_IMAGE_JPEG;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0)) return KD_IMAGE_GIF;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return KD_IMAGE_WEBP;
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0)) return KD_IMAGE_TIFF;
    if (n >= 14 && b[0] == 'B' && b[1] == 'M') return KD_IMAGE_BMP;
    return KD_IMAGE_UNKNOWN;
}

static kd_status check_dims(const char *name, const char *fmt, uint64_t w, uint64_t h, const kd_image_limits *lim,
                            kd_err *e) {
    if (w == 0 || h == 0) return kd_errf(e, KD_ERR_FORMAT, "%s: %s header has an empty size %llux%llu", name, fmt,
                                         (unsigned long long)w, (unsigned long long)h);
    if (w > (uint64_t)lim->max_width || h > (uint64_t)lim->max_height || w * h > lim->max_pixels)
        return kd_errf(e, KD_ERR_OOM,
                       "%s: %s image is %llux%llu, over the limit (%dx%d per side, %llu pixels in all); "
                       "raise kd_image_limits to accept it",
                       name, fmt, (unsigned long long)w, (unsigned long long)h, lim->max_width, lim->max_height,
                       (unsigned long long)lim->max_pixels);
    return KD_OK;
}

/* ---- EXIF / XMP orientation -------------------------------------------------------------- */

static uint32_t rd16(const uint8_t *p, int le) { return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Orientation tag of IFD0 in a TIFF-structured EXIF block (optionally behind "Exif\0\0").
 * Returns 0 when absent or unusable (Pillow then falls back to XMP / no transpose). Only integer
 * types with count 1 give a value Pillow's exif_transpose acts on. */
static int exif_orientation(const uint8_t *p, size_t n) {
    if (n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) p += 6, n -= 6;
    if (n < 8) return 0;
    int le;
    if (p[0] == 'I' && p[1] == 'I') le = 1;
    else if (p[0] == 'M' && p[1] == 'M') le = 0;
    else return 0;
    if (rd16(p + 2, le) != 42) return 0;
    uint32_t off = rd32(p + 4, le);
    if (off > n || n - off < 2) return 0;
    uint32_t cnt = rd16(p + off, le);
    int found = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        size_t at = (size_t)off + 2 + (size_t)i * 12;
        if (at > n || n - at < 12) break;
        const uint8_t *en = p + at;
        if (rd16(en, le) != 0x0112) continue;
        uint32_t type = rd16(en + 2, le), count = rd32(en + 4, le);
        int v = 0;
        if (count == 1) {
            switch (type) {
            case 1: v = en[8]; break;                         /* BYTE */
            case 6: v = (int8_t)en[8]; break;                 /* SBYTE */
            case 3: v = (int)rd16(en + 8, le); break;         /* SHORT */
            case 8: v = (int16_t)rd16(en + 8, le); break;     /* SSHORT */
            case 4: v = rd32(en + 8, le) > 1000 ? 0 : (int)rd32(en + 8, le); break; /* LONG */
            case 9: v = (int32_t)rd32(en + 8, le); break;     /* SLONG */
            default: v = 0;
            }
        }
        found = v; /* a later duplicate overrides, as in a dict */
    }
    return found;
}

/* Pillow: re.search(r'tiff:Orientation(="|>)([0-9])', xmp). */
static int xmp_orientation(const uint8_t *p, size_t n) {
    static const char key[] = "tiff:Orientation";
    const size_t kl = sizeof key - 1;
    for (size_t i = 0; i + kl < n; i++) {
        if (memcmp(p + i, key, kl) != 0) continue;
        size_t j = i + kl;
        if (j + 2 < n && p[j] == '=' && p[j + 1] == '"' && p[j + 2] >= '0' && p[j + 2] <= '9') return p[j + 2] - '0';
        if (j + 1 < n && p[j] == '>' && p[j + 1] >= '0' && p[j + 1] <= '9') return p[j + 1] - '0';
    }
    return 0;
}

/* "Raw profile type exif" text: Pillow drops the first three lines and hex-decodes the rest. */
static int raw_profile_orientation(const char *s, size_t n) {
    size_t i = 0;
    for (int nl = 0; nl < 3; i++) {
        if (i >= n) return 0;
        if (s[i] == '\n') nl++;
    }
    size_t cap = (n - i) / 2 + 1;
    uint8_t *buf = malloc(cap);
    if (!buf) return 0;
    size_t m = 0;
    int hi = -1, bad = 0;
    for (; i < n; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else if (c == '\n') continue; /* Pillow joins the lines before bytes.fromhex */
        else if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
            if (hi >= 0) { bad = 1; break; }
            continue;
        } else { bad = 1; break; }
        if (hi < 0) hi = d;
        else { buf[m++] = (uint8_t)(hi << 4 | d); hi = -1; }
    }
    int v = (!bad && hi < 0) ? exif_orientation(buf, m) : 0;
    free(buf);
    return v;
}

/* ---- PNG ---------------------------------------------------------------------------------- */

typedef struct png_dec {
    const uint8_t *buf;
    size_t n, pos;
    const char *name;
    const kd_image_limits *lim;
    png_structp png;
    png_infop info, end;
    char msg[KD_ERR_MSG_MAX];
    char warn[256];
    kd_status fail;      /* set by our own checks inside the libpng callbacks/body */
    int named;           /* msg already starts with the file name */
    uint8_t *raw;        /* interlaced: whole image in libpng's output format */
    uint8_t *row;
    kd_image img;
    int orientation;
    int orientation_text; /* from png_prescan */
} png_dec;

static void png_err_fn(png_structp png, png_const_charp msg) {
    png_dec *d = png_get_error_ptr(png);
    if (!d->msg[0]) snprintf(d->msg, sizeof d->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg) {
    png_dec *d = png_get_error_ptr(png);
    if (!d->warn[0]) snprintf(d->warn, sizeof d->warn, "%s", msg ? msg : "");
}

static void png_read_fn(png_structp png, png_bytep out, size_t len) {
    png_dec *d = png_get_io_ptr(png);
    if (len > d->n - d->pos) png_error(png, "unexpected end of file (truncated PNG)");
    memcpy(out, d->buf + d->pos, len);
    d->pos += len;
}

static void png_fail(png_dec *d, kd_status s, const char *msg) {
    d->fail = s;
    snprintf(d->msg, sizeof d->msg, "%s", msg);
    png_longjmp(d->png, 1);
}

/* Converts one row as libpng hands it (packing to 1 byte per sample, 16-bit stripped except for
 * plain gray) into the output layout; see image.h for the rules. */
static void png_convert_row(const png_dec *d, const uint8_t *in, uint8_t *out, int ct, int bd,
                            png_colorp plte, int nplte, png_bytep trns, int ntrns) {
    int w = d->img.width;
    switch (ct) {
    case PNG_COLOR_TYPE_GRAY:
        if (bd == 16) {
            for (int x = 0; x < w; x++) {
                unsigned v = (unsigned)in[2 * x] << 8 | in[2 * x + 1];
                out[x] = (uint8_t)(v > 255 ? 255 : v);
            }
        } else if (bd == 8) {
            memcpy(out, in, (size_t)w);
        } else {
            unsigned scale = 255u / ((1u << bd) - 1u);
            unsigned maxv = (1u << bd) - 1u;
            for (int x = 0; x < w; x++) out[x] = (uint8_t)((in[x] & maxv) * scale);
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        for (int x = 0; x < w; x++) {
            out[4 * x + 0] = out[4 * x + 1] = out[4 * x + 2] = in[2 * x];
            out[4 * x + 3] = in[2 * x + 1];
        }
        break;
    case PNG_COLOR_TYPE_PALETTE: {
        int ch = d->img.channels;
        for (int x = 0; x < w; x++) {
            int i = in[x];
            uint8_t *o = out + (size_t)x * (size_t)ch;
            if (i < nplte) {
                o[0] = plte[i].red;
                o[1] = plte[i].green;
                o[2] = plte[i].blue;
            } else {
                o[0] = o[1] = o[2] = 0;
            }
            if (ch == 4) o[3] = i < ntrns ? trns[i] : 255;
        }
        break;
    }
    case PNG_COLOR_TYPE_RGB: memcpy(out, in, (size_t)w * 3); break;
    case PNG_COLOR_TYPE_RGB_ALPHA: memcpy(out, in, (size_t)w * 4); break;
    default: break;
    }
}

static void png_collect_orientation(png_dec *d, png_infop info) {
    png_uint_32 nex = 0;
    png_bytep ex = NULL;
    if (png_get_eXIf_1(d->png, info, &nex, &ex) && ex && nex) {
        int v = exif_orientation(ex, nex);
        if (v) d->orientation = v;
        /* Pillow: an eXIf chunk without the tag leaves the orientation to XMP */
    }
}

static void png_text_orientation(png_dec *d, int *raw_exif, int *xmp) {
    png_infop infos[2] = {d->info, d->end};
    for (int k = 0; k < 2; k++) {
        png_textp text = NULL;
        int nt = 0;
        if (!png_get_text(d->png, infos[k], &text, &nt)) continue;
        for (int i = 0; i < nt; i++) {
            if (!text[i].key || !text[i].text) continue;
            size_t len = text[i].compression >= PNG_ITXT_COMPRESSION_NONE ? text[i].itxt_length : text[i].text_length;
            if (strcmp(text[i].key, "Raw profile type exif") == 0) *raw_exif = raw_profile_orientation(text[i].text, len);
            else if (strcmp(text[i].key, "XML:com.adobe.xmp") == 0)
                *xmp = xmp_orientation((const uint8_t *)text[i].text, len);
        }
    }
}

/* Walks the chunk list of the in-memory file before libpng sees it:
 *  - every chunk up to IEND must fit in the file. libpng 1.6.39 allocates (and clears) a buffer
 *    of the declared length for a text chunk before reading it, so a 14 KB file announcing a
 *    2 GB zTXt cost 2 GB of memory; the fuzzer found this. Here it is a "truncated" error.
 *  - reports whether a tEXt/zTXt/iTXt chunk carries a keyword the orientation can come from.
 *    When none does, libpng skips text chunks entirely, so large or compressed metadata (the
 *    prompt/workflow text image generators write, zTXt bombs) costs nothing. */
static kd_status png_prescan(const uint8_t *b, size_t n, const char *name, int *orientation_text, kd_err *e) {
    size_t p = 8;
    *orientation_text = 0;
    while (p < n) {
        if (n - p < 12)
            return kd_errf(e, KD_ERR_FORMAT, "%s: truncated PNG: incomplete chunk header at offset %zu (no IEND)", name, p);
        uint32_t len = rd32(b + p, 0);
        const uint8_t *type = b + p + 4;
        if (len > n - p - 12) {
            char t[5];
            for (int i = 0; i < 4; i++) t[i] = (type[i] >= 32 && type[i] < 127) ? (char)type[i] : '?';
            t[4] = 0;
            return kd_errf(e, KD_ERR_FORMAT, "%s: truncated PNG: chunk '%s' at offset %zu declares %u bytes, %zu left",
                           name, t, p, len, n - p - 12);
        }
        if (memcmp(type, "tEXt", 4) == 0 || memcmp(type, "zTXt", 4) == 0 || memcmp(type, "iTXt", 4) == 0) {
            const char *kw = (const char *)b + p + 8;
            static const char k1[] = "Raw profile type exif", k2[] = "XML:com.adobe.xmp";
            if ((len >= sizeof k1 && memcmp(kw, k1, sizeof k1) == 0) || (len >= sizeof k2 && memcmp(kw, k2, sizeof k2) == 0))
                *orientation_text = 1;
        }
        if (memcmp(type, "IEND", 4) == 0) return KD_OK;
        p += 12 + (size_t)len;
    }
    return kd_errf(e, KD_ERR_FORMAT, "%s: truncated PNG: no IEND chunk", name);
}

static void png_body(png_dec *d) {
    png_structp png = d->png;
    png_set_read_fn(png, d, png_read_fn);
    png_set_user_limits(png, (png_uint_32)d->lim->max_width, (png_uint_32)d->lim->max_height);
    /* Each ancillary chunk (decompressed text included) is capped at max_chunk_bytes and at most
     * 31 text chunks are kept, so metadata costs at most ~31 × max_chunk_bytes. */
    png_set_chunk_malloc_max(png, d->lim->max_chunk_bytes);
    png_set_chunk_cache_max(png, 32);
    /* Ignore every ancillary chunk except the few that can carry the orientation (Pillow does not
     * use gAMA/iCCP/sBIT/... for decoding either), so their quirks cannot fail a decode. */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    static const png_byte keep[] = "eXIf\0tEXt\0zTXt\0iTXt";
    int text = d->lim->apply_exif_orientation && d->orientation_text;
    if (d->lim->apply_exif_orientation) png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_AS_DEFAULT, keep, text ? 4 : 1);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* libFuzzer cannot fix up CRCs: without this it never gets past the first mutated chunk */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
#else
    png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_DEFAULT);
#endif

    png_read_info(png, d->info);
    png_uint_32 w, h;
    int bd, ct, il, cm, fm;
    png_get_IHDR(png, d->info, &w, &h, &bd, &ct, &il, &cm, &fm);
    {
        kd_err tmp;
        kd_status s = check_dims(d->name, "PNG", w, h, d->lim, &tmp);
        if (s != KD_OK) {
            d->named = 1;
            png_fail(d, s, tmp.msg);
        }
    }
    png_colorp plte = NULL;
    int nplte = 0;
    png_bytep trns = NULL;
    int ntrns = 0;
    int out_ch;
    switch (ct) {
    case PNG_COLOR_TYPE_GRAY: out_ch = 1; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: out_ch = 4; break;
    case PNG_COLOR_TYPE_RGB: out_ch = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: out_ch = 4; break;
    case PNG_COLOR_TYPE_PALETTE:
        if (!png_get_PLTE(png, d->info, &plte, &nplte) || !plte) png_error(png, "palette image without PLTE");
        if (png_get_valid(png, d->info, PNG_INFO_tRNS)) png_get_tRNS(png, d->info, &trns, &ntrns, NULL);
        out_ch = (trns && ntrns > 0) ? 4 : 3;
        break;
    default: png_error(png, "unknown colour type"); return;
    }
    if (bd < 8) png_set_packing(png);
    if (bd == 16 && ct != PNG_COLOR_TYPE_GRAY) png_set_strip_16(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, d->info);

    int in_bps = (bd == 16 && ct == PNG_COLOR_TYPE_GRAY) ? 2 : 1;
    int in_spp = ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_PALETTE ? 1
               : ct == PNG_COLOR_TYPE_GRAY_ALPHA                          ? 2
               : ct == PNG_COLOR_TYPE_RGB                                 ? 3
                                                                          : 4;
    size_t rowbytes = png_get_rowbytes(png, d->info);
    if (rowbytes != (size_t)w * (size_t)(in_bps * in_spp))
        png_fail(d, KD_ERR_INTERNAL, "libpng row size does not match the expected layout");

    kd_err tmp;
    if (kd_image_alloc(&d->img, (int)w, (int)h, out_ch, &tmp) != KD_OK) png_fail(d, KD_ERR_OOM, tmp.msg);
    size_t out_stride = (size_t)w * (size_t)out_ch;
    if (passes > 1) {
        if (rowbytes > SIZE_MAX / h) png_fail(d, KD_ERR_OOM, "interlaced image too large");
        d->raw = calloc(h, rowbytes);
        if (!d->raw) png_fail(d, KD_ERR_OOM, "cannot allocate the interlaced image buffer");
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++) png_read_row(png, d->raw + (size_t)y * rowbytes, NULL);
        for (png_uint_32 y = 0; y < h; y++)
            png_convert_row(d, d->raw + (size_t)y * rowbytes, d->img.data + (size_t)y * out_stride, ct, bd, plte, nplte,
                            trns, ntrns);
    } else {
        d->row = malloc(rowbytes);
        if (!d->row) png_fail(d, KD_ERR_OOM, "cannot allocate a row buffer");
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(png, d->row, NULL);
            png_convert_row(d, d->row, d->img.data + (size_t)y * out_stride, ct, bd, plte, nplte, trns, ntrns);
        }
    }
    png_read_end(png, d->end);

    /* Pillow's getexif: the eXIf chunk, else "Raw profile type exif"; XMP only if no tag. */
    d->orientation = 0;
    png_collect_orientation(d, d->info);
    if (!d->orientation) png_collect_orientation(d, d->end);
    int has_exif = 0;
    {
        png_uint_32 nex = 0;
        png_bytep ex = NULL;
        has_exif = (png_get_eXIf_1(png, d->info, &nex, &ex) && ex) || (png_get_eXIf_1(png, d->end, &nex, &ex) && ex);
    }
    int raw_exif = 0, xmp = 0;
    png_text_orientation(d, &raw_exif, &xmp);
    if (!has_exif && raw_exif) d->orientation = raw_exif;
    if (!d->orientation) d->orientation = xmp;
}

static int png_run(png_dec *d) {
    if (setjmp(png_jmpbuf(d->png))) return -1;
    png_body(d);
    return 0;
}

static kd_status png_decode(const uint8_t *buf, size_t n, const char *name, const kd_image_limits *lim, kd_image *out,
                            int *orientation, kd_err *e) {
    /* Check IHDR ourselves first: a huge claimed size is refused before libpng allocates. */
    if (n < 33) return kd_errf(e, KD_ERR_FORMAT, "%s: truncated PNG (%zu bytes, no complete IHDR chunk)", name, n);
    if (memcmp(buf + 12, "IHDR", 4) != 0 || rd32(buf + 8, 0) != 13)
        return kd_errf(e, KD_ERR_FORMAT, "%s: PNG does not start with a valid IHDR chunk", name);
    KD_TRY(check_dims(name, "PNG", rd32(buf + 16, 0), rd32(buf + 20, 0), lim, e));
    int orientation_text;
    KD_TRY(png_prescan(buf, n, name, &orientation_text, e));

    png_dec *d = calloc(1, sizeof *d);
    if (!d) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", name);
    d->orientation_text = orientation_text;
    d->buf = buf;
    d->n = n;
    d->name = name;
    d->lim = lim;
    d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d, png_err_fn, png_warn_fn);
    if (d->png) {
        d->info = png_create_info_struct(d->png);
        d->end = png_create_info_struct(d->png);
    }
    kd_status s = KD_OK;
    if (!d->png || !d->info || !d->end) {
        s = kd_errf(e, KD_ERR_OOM, "%s: cannot create the libpng decoder", name);
    } else if (png_run(d) != 0) {
        if (d->named)
            s = kd_errf(e, d->fail, "%s", d->msg); /* a limit message that already names the file */
        else if (d->fail != KD_OK)
            s = kd_errf(e, d->fail, "%s: PNG: %s", name, d->msg);
        else if (d->warn[0])
            s = kd_errf(e, KD_ERR_FORMAT, "%s: corrupt PNG: %s (earlier libpng warning: %s)", name, d->msg, d->warn);
        else
            s = kd_errf(e, KD_ERR_FORMAT, "%s: corrupt PNG: %s", name, d->msg);
    }
    if (d->png) png_destroy_read_struct(&d->png, d->info ? &d->info : NULL, d->end ? &d->end : NULL);
    free(d->raw);
    free(d->row);
    if (s == KD_OK) {
        *out = d->img;
        *orientation = d->orientation;
    } else {
        kd_image_free(&d->img);
    }
    free(d);
    return s;
}

/* ---- JPEG --------------------------------------------------------------------------------- */

typedef struct jpg_dec {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr prog;
    jmp_buf jb;
    const uint8_t *buf;
    size_t n;
    const char *name;
    const kd_image_limits *lim;
    int created;
    kd_status fail;
    int named; /* msg already starts with the file name */
    char msg[KD_ERR_MSG_MAX];
    uint8_t *row;
    kd_image img;
    int orientation;
} jpg_dec;

static void jpg_error_exit(j_common_ptr ci) {
    jpg_dec *d = ci->client_data;
    char buf[JMSG_LENGTH_MAX];
    (*ci->err->format_message)(ci, buf);
    if (!d->msg[0]) snprintf(d->msg, sizeof d->msg, "%s", buf);
    if (d->fail == KD_OK) {
        int code = ci->err->msg_code;
        d->fail = (code == JERR_OUT_OF_MEMORY || code == JERR_NO_BACKING_STORE) ? KD_ERR_OOM
                  : (code == JERR_BAD_PRECISION || code == JERR_SOF_UNSUPPORTED || code == JERR_NOT_COMPILED ||
                     code == JERR_ARITH_NOTIMPL)
                      ? KD_ERR_UNSUPPORTED
                      : KD_ERR_FORMAT;
    }
    longjmp(d->jb, 1);
}

static void jpg_emit_message(j_common_ptr ci, int level) {
    if (level >= 0) return; /* trace messages */
    jpg_dec *d = ci->client_data;
    int code = ci->err->msg_code;
    /* Warnings that do not touch the pixel data. */
    if (code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM || code == JWRN_BOGUS_ICC) return;
    if (code == JWRN_EXTRANEOUS_DATA && ci->err->msg_parm.i[1] == 0xD9) return; /* junk before EOI */
    /* Everything else means corrupt or truncated data: fail instead of returning grey blocks. */
    char buf[JMSG_LENGTH_MAX];
    (*ci->err->format_message)(ci, buf);
    snprintf(d->msg, sizeof d->msg, "%s", buf);
    d->fail = KD_ERR_FORMAT;
    longjmp(d->jb, 1);
}

static void jpg_output_message(j_common_ptr ci) { (void)ci; }

static void jpg_progress(j_common_ptr ci) {
    jpg_dec *d = ci->client_data;
    if (ci->is_decompressor && ((j_decompress_ptr)ci)->input_scan_number > d->lim->max_jpeg_scans) {
        snprintf(d->msg, sizeof d->msg, "more than %d scans (kd_image_limits.max_jpeg_scans); refusing a possible "
                 "progressive-JPEG denial of service", d->lim->max_jpeg_scans);
        d->fail = KD_ERR_OOM;
        longjmp(d->jb, 1);
    }
}

static void jpg_body(jpg_dec *d) {
    struct jpeg_decompress_struct *ci = &d->cinfo;
    jpeg_create_decompress(ci);
    d->created = 1;
    ci->client_data = d;
    jpeg_mem_src(ci, d->buf, (unsigned long)d->n);
    jpeg_save_markers(ci, JPEG_APP0 + 1, 0xFFFF);
    d->prog.progress_monitor = jpg_progress;
    ci->progress = &d->prog;
    /* Coefficient buffers of a progressive file: at most 4 components × 2 bytes per sample plus
     * padding; anything past that budget fails (libjpeg-turbo has no backing store). */
    {
        double budget = (double)d->lim->max_pixels * 10.0 + 64.0 * 1024 * 1024;
        ci->mem->max_memory_to_use = budget > (double)LONG_MAX ? LONG_MAX : (long)budget;
    }
    jpeg_read_header(ci, TRUE);
    /* Pillow keeps the first APP1 "Exif" and the last XMP APP1. Read them now: the saved markers
     * live in the image pool, which jpeg_finish_decompress frees. */
    int ex = 0, xmp = 0, have_exif = 0;
    static const char xmp_id[] = "http://ns.adobe.com/xap/1.0/";
    for (jpeg_saved_marker_ptr m = ci->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1 || !m->data) continue;
        if (!have_exif && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            have_exif = 1;
            ex = exif_orientation(m->data, m->data_length);
        } else if (m->data_length >= sizeof xmp_id && memcmp(m->data, xmp_id, sizeof xmp_id) == 0) {
            xmp = xmp_orientation(m->data + sizeof xmp_id, m->data_length - sizeof xmp_id);
        }
    }
    d->orientation = ex ? ex : xmp;
    {
        kd_err tmp;
        kd_status s = check_dims(d->name, "JPEG", ci->image_width, ci->image_height, d->lim, &tmp);
        if (s != KD_OK) {
            snprintf(d->msg, sizeof d->msg, "%s", tmp.msg);
            d->fail = s;
            d->named = 1;
            longjmp(d->jb, 1);
        }
    }
    int out_ch;
    switch (ci->num_components) {
    case 1: ci->out_color_space = JCS_GRAYSCALE; out_ch = 1; break;
    case 3: ci->out_color_space = JCS_RGB; out_ch = 3; break;
    case 4: ci->out_color_space = JCS_CMYK; out_ch = 3; break;
    default:
        snprintf(d->msg, sizeof d->msg, "JPEG with %d components is not supported (1, 3 or 4)", ci->num_components);
        d->fail = KD_ERR_UNSUPPORTED;
        longjmp(d->jb, 1);
    }
    /* Pillow's decoder settings (libjpeg defaults): accurate integer IDCT, fancy upsampling. */
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    {
        kd_err tmp;
        if (kd_image_alloc(&d->img, (int)ci->image_width, (int)ci->image_height, out_ch, &tmp) != KD_OK) {
            snprintf(d->msg, sizeof d->msg, "%s", tmp.msg);
            d->fail = KD_ERR_OOM;
            longjmp(d->jb, 1);
        }
    }
    jpeg_start_decompress(ci);
    int want = ci->num_components == 4 ? 4 : out_ch;
    if (ci->output_width != ci->image_width || ci->output_height != ci->image_height ||
        ci->output_components != want) {
        snprintf(d->msg, sizeof d->msg, "decoder output %ux%ux%d does not match the header", ci->output_width,
                 ci->output_height, ci->output_components);
        d->fail = KD_ERR_INTERNAL;
        longjmp(d->jb, 1);
    }
    size_t w = ci->output_width;
    if (want == 4) {
        d->row = malloc(w * 4);
        if (!d->row) {
            snprintf(d->msg, sizeof d->msg, "cannot allocate a row buffer");
            d->fail = KD_ERR_OOM;
            longjmp(d->jb, 1);
        }
    }
    while (ci->output_scanline < ci->output_height) {
        uint8_t *dst = d->img.data + (size_t)ci->output_scanline * w * (size_t)out_ch;
        JSAMPROW rp = want == 4 ? d->row : dst;
        if (jpeg_read_scanlines(ci, &rp, 1) != 1) {
            snprintf(d->msg, sizeof d->msg, "decoder returned no scanline");
            d->fail = KD_ERR_FORMAT;
            longjmp(d->jb, 1);
        }
        if (want == 4) {
            /* Pillow: rawmode "CMYK;I" (Adobe inverted) then cmyk2rgb:
             * C' = 255 - C, nk = 255 - K' = K, R = clip(nk - MULDIV255(C', nk)). */
            for (size_t x = 0; x < w; x++) {
                const uint8_t *s = d->row + 4 * x;
                unsigned nk = s[3];
                for (int c = 0; c < 3; c++) {
                    unsigned t = (unsigned)(255 - s[c]) * nk + 128;
                    int v = (int)nk - (int)(((t >> 8) + t) >> 8);
                    dst[3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    jpeg_finish_decompress(ci);

}

static int jpg_run(jpg_dec *d) {
    if (setjmp(d->jb)) return -1;
    jpg_body(d);
    return 0;
}

static kd_status jpeg_decode(const uint8_t *buf, size_t n, const char *name, const kd_image_limits *lim,
                             kd_image *out, int *orientation, kd_err *e) {
    jpg_dec *d = calloc(1, sizeof *d);
    if (!d) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", name);
    d->buf = buf;
    d->n = n;
    d->name = name;
    d->lim = lim;
    d->cinfo.err = jpeg_std_error(&d->jerr);
    d->jerr.error_exit = jpg_error_exit;
    d->jerr.emit_message = jpg_emit_message;
    d->jerr.output_message = jpg_output_message;
    d->cinfo.client_data = d;
    kd_status s = KD_OK;
    if (jpg_run(d) != 0) {
        if (d->named)
            s = kd_errf(e, d->fail, "%s", d->msg);
        else
            s = kd_errf(e, d->fail != KD_OK ? d->fail : KD_ERR_FORMAT, "%s: %sJPEG: %s", name,
                        d->fail == KD_ERR_FORMAT ? "corrupt " : "", d->msg);
    }
    if (d->created) jpeg_destroy_decompress(&d->cinfo);
    free(d->row);
    if (s == KD_OK) {
        *out = d->img;
        *orientation = d->orientation;
    } else {
        kd_image_free(&d->img);
    }
    free(d);
    return s;
}

/* ---- decode / load ------------------------------------------------------------------------ */

kd_status kd_image_decode(const uint8_t *buf, size_t n, const char *name, const kd_image_limits *lim,
                          kd_image *out, kd_err *e) {
    name = IMG_NAME(name);
    memset(out, 0, sizeof *out);
    kd_image_limits def = kd_image_limits_default();
    if (!lim) lim = &def;
    if (!buf || n == 0) return kd_errf(e, KD_ERR_FORMAT, "%s: empty file", name);
    if (lim->max_width <= 0 || lim->max_height <= 0 || lim->max_pixels == 0 || lim->max_jpeg_scans <= 0)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s: kd_image_limits has a zero or negative limit", name);
    int orientation = 0;
    kd_image img = {0};
    kd_status s;
    switch (kd_image_detect(buf, n)) {
    case KD_IMAGE_PNG: s = png_decode(buf, n, name, lim, &img, &orientation, e); break;
    case KD_IMAGE_JPEG: s = jpeg_decode(buf, n, name, lim, &img, &orientation, e); break;
    case KD_IMAGE_GIF: return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: GIF images are not supported (PNG and JPEG only)", name);
    case KD_IMAGE_BMP: return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: BMP images are not supported (PNG and JPEG only)", name);
    case KD_IMAGE_WEBP: return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: WebP images are not supported (PNG and JPEG only)", name);
    case KD_IMAGE_TIFF: return kd_errf(e, KD_ERR_UNSUPPORTED, "%s: TIFF images are not supported (PNG and JPEG only)", name);
    default: {
        char hex[3 * 8 + 1] = {0};
        for (size_t i = 0; i < n && i < 8; i++) snprintf(hex + 3 * i, 4, "%02x ", buf[i]);
        if (n) hex[3 * (n < 8 ? n : 8) - 1] = 0;
        return kd_errf(e, KD_ERR_FORMAT, "%s: not a PNG or JPEG file (unknown format, first bytes %s)", name, hex);
    }
    }
    if (s != KD_OK) return s;
    if (lim->apply_exif_orientation && orientation >= 2 && orientation <= 8) {
        kd_image t;
        s = kd_image_orient(&img, orientation, &t, e);
        kd_image_free(&img);
        if (s != KD_OK) return kd_err_prefix(e, "%s", name);
        img = t;
    }
    *out = img;
    return KD_OK;
}

kd_status kd_image_load(const char *path, const kd_image_limits *lim, kd_image *out, kd_err *e) {
    memset(out, 0, sizeof *out);
    kd_image_limits def = kd_image_limits_default();
    if (!lim) lim = &def;
    FILE *fp = fopen(path, "rb");
    if (!fp) return kd_errf(e, errno == ENOENT ? KD_ERR_NOT_FOUND : KD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return kd_errf(e, KD_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > lim->max_file_bytes) {
        fclose(fp);
        return kd_errf(e, KD_ERR_OOM, "%s: file is %lld bytes, over the limit of %llu (kd_image_limits.max_file_bytes)",
                       path, (long long)st.st_size, (unsigned long long)lim->max_file_bytes);
    }
    size_t n = (size_t)st.st_size;
    if (n == 0) {
        fclose(fp);
        return kd_errf(e, KD_ERR_FORMAT, "%s: empty file", path);
    }
    uint8_t *buf = malloc(n);
    if (!buf) {
        fclose(fp);
        return kd_errf(e, KD_ERR_OOM, "%s: cannot allocate %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, fp);
    int rerr = ferror(fp);
    fclose(fp);
    if (got != n || rerr) {
        free(buf);
        return kd_errf(e, KD_ERR_IO, "%s: read failed (%zu of %zu bytes)", path, got, n);
    }
    kd_status s = kd_image_decode(buf, n, path, lim, out, e);
    free(buf);
    return s;
}

/* ---- orientation and colour conversions -------------------------------------------------- */

kd_status kd_image_orient(const kd_image *in, int o, kd_image *out, kd_err *e) {
    if (!img_valid(in)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_orient: invalid input image");
    int W = in->width, H = in->height, C = in->channels;
    int swap = o >= 5 && o <= 8;
    KD_TRY(kd_image_alloc(out, swap ? H : W, swap ? W : H, C, e));
    int ow = out->width, oh = out->height;
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;          /* FLIP_LEFT_RIGHT */
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;  /* ROTATE_180 */
            case 4: sx = x; sy = H - 1 - y; break;          /* FLIP_TOP_BOTTOM */
            case 5: sx = y; sy = x; break;                  /* TRANSPOSE */
            case 6: sx = y; sy = H - 1 - x; break;          /* ROTATE_270 (clockwise) */
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;  /* TRANSVERSE */
            case 8: sx = W - 1 - y; sy = x; break;          /* ROTATE_90 (counter-clockwise) */
            default: sx = x; sy = y; break;
            }
            memcpy(out->data + ((size_t)y * ow + x) * C, in->data + ((size_t)sy * W + sx) * C, (size_t)C);
        }
    }
    return KD_OK;
}

kd_status kd_image_to_rgb(const kd_image *in, kd_image *out, kd_err *e) {
    if (!img_valid(in)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_to_rgb: invalid input image");
    KD_TRY(kd_image_alloc(out, in->width, in->height, 3, e));
    size_t n = (size_t)in->width * in->height;
    const uint8_t *s = in->data;
    uint8_t *d = out->data;
    if (in->channels == 3) memcpy(d, s, n * 3);
    else if (in->channels == 1)
        for (size_t i = 0; i < n; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i];
    else
        for (size_t i = 0; i < n; i++) memcpy(d + 3 * i, s + 4 * i, 3);
    return KD_OK;
}

kd_status kd_image_to_gray(const kd_image *in, kd_image *out, kd_err *e) {
    if (!img_valid(in)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_to_gray: invalid input image");
    KD_TRY(kd_image_alloc(out, in->width, in->height, 1, e));
    size_t n = (size_t)in->width * in->height;
    int C = in->channels;
    if (C == 1) {
        memcpy(out->data, in->data, n);
        return KD_OK;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = in->data + i * (size_t)C;
        uint32_t l = (uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u + 0x8000u;
        out->data[i] = (uint8_t)(l >> 16);
    }
    return KD_OK;
}

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct png_enc {
    png_structp png;
    png_infop info;
    FILE *fp;
    const kd_image *img;
    const char *const *text; /* key, value, ..., NULL: tEXt chunks */
    char msg[256];
} png_enc;

static void png_enc_err(png_structp png, png_const_charp msg) {
    png_enc *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}
static void png_enc_warn(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static int png_enc_run(png_enc *c) {
    if (setjmp(png_jmpbuf(c->png))) return -1;
    const kd_image *im = c->img;
    png_init_io(c->png, c->fp);
    int ct = im->channels == 1 ? PNG_COLOR_TYPE_GRAY : im->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGB_ALPHA;
    png_set_IHDR(c->png, c->info, (png_uint_32)im->width, (png_uint_32)im->height, 8, ct, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    /* tEXt chunks (parameters of a generated image). Keys are 1..79 Latin-1 characters; values
     * are written as given (UTF-8 text in tEXt is what stable-diffusion tools do as well). */
    for (int k = 0; c->text && c->text[k] && c->text[k + 1] && k < 64; k += 2) {
        png_text t = {0};
        t.compression = PNG_TEXT_COMPRESSION_NONE;
        t.key = (png_charp)c->text[k];
        t.text = (png_charp)c->text[k + 1];
        t.text_length = strlen(c->text[k + 1]);
        png_set_text(c->png, c->info, &t, 1);
    }
    png_write_info(c->png, c->info);
    size_t stride = (size_t)im->width * (size_t)im->channels;
    for (int y = 0; y < im->height; y++) png_write_row(c->png, im->data + (size_t)y * stride);
    png_write_end(c->png, c->info);
    return 0;
}

static kd_status open_tmp(const char *path, char **tmp, FILE **fp, kd_err *e) {
    size_t l = strlen(path);
    *tmp = malloc(l + 8);
    if (!*tmp) return kd_errf(e, KD_ERR_OOM, "%s: out of memory", path);
    snprintf(*tmp, l + 8, "%s.tmp~", path);
    *fp = fopen(*tmp, "wb");
    if (!*fp) {
        kd_status s = kd_errf(e, KD_ERR_IO, "%s: cannot create: %s", *tmp, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return s;
    }
    return KD_OK;
}

static kd_status close_tmp(const char *path, char *tmp, FILE *fp, int ok, kd_err *e) {
    kd_status s = KD_OK;
    if (fclose(fp) != 0 && ok) s = kd_errf(e, KD_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (ok && s == KD_OK && rename(tmp, path) != 0)
        s = kd_errf(e, KD_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (!ok || s != KD_OK) remove(tmp);
    free(tmp);
    return s;
}

kd_status kd_image_save_png(const char *path, const kd_image *img, kd_err *e) {
    return kd_image_save_png_text(path, img, NULL, e);
}

static kd_status png_check_args(const char *what, const kd_image *img, const char *const *text, kd_err *e) {
    if (!img_valid(img)) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: cannot save an invalid image", what);
    for (int k = 0; text && text[k] && text[k + 1]; k += 2) {
        size_t kl = strlen(text[k]);
        if (kl < 1 || kl > 79) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: PNG text key '%s' must be 1..79 bytes", what, text[k]);
    }
    return KD_OK;
}

/* Encodes into fp; returns 1, or 0 with the reason in msg. */
static int png_encode_stream(FILE *fp, const kd_image *img, const char *const *text, char msg[256]) {
    png_enc c = {0};
    c.fp = fp;
    c.img = img;
    c.text = text;
    c.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, png_enc_err, png_enc_warn);
    if (c.png) c.info = png_create_info_struct(c.png);
    int ok = c.png && c.info && png_enc_run(&c) == 0;
    if (c.png) png_destroy_write_struct(&c.png, c.info ? &c.info : NULL);
    if (!ok && !c.msg[0]) snprintf(c.msg, sizeof c.msg, "cannot create the libpng encoder");
    if (ok && (fflush(fp) != 0 || ferror(fp))) {
        ok = 0;
        snprintf(c.msg, sizeof c.msg, "write error");
    }
    memcpy(msg, c.msg, sizeof c.msg);
    return ok;
}

kd_status kd_image_save_png_text(const char *path, const kd_image *img, const char *const *text, kd_err *e) {
    KD_TRY(png_check_args(path, img, text, e));
    char *tmp, msg[256];
    FILE *fp;
    KD_TRY(open_tmp(path, &tmp, &fp, e));
    int ok = png_encode_stream(fp, img, text, msg);
    kd_status s = close_tmp(path, tmp, fp, ok, e);
    if (!ok) return kd_errf(e, KD_ERR_IO, "%s: PNG encoding failed: %s", path, msg);
    return s;
}

kd_status kd_image_encode_png_mem(const kd_image *img, const char *const *text, uint8_t **out, size_t *out_len,
                                  kd_err *e) {
    *out = NULL;
    *out_len = 0;
    KD_TRY(png_check_args("PNG", img, text, e));
    char *buf = NULL, msg[256];
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    if (!fp) return kd_errf(e, KD_ERR_OOM, "PNG: cannot open a memory stream: %s", strerror(errno));
    int ok = png_encode_stream(fp, img, text, msg);
    if (fclose(fp) != 0) ok = 0;
    if (!ok) {
        free(buf);
        return kd_errf(e, KD_ERR_IO, "PNG encoding failed: %s", msg[0] ? msg : "out of memory");
    }
    *out = (uint8_t *)buf;
    *out_len = len;
    return KD_OK;
}

typedef struct jpg_enc {
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr jerr;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    FILE *fp;
    const kd_image *img;
    int quality;
    uint8_t *row;
    int created;
} jpg_enc;

static void jpg_enc_error_exit(j_common_ptr ci) {
    jpg_enc *c = ci->client_data;
    (*ci->err->format_message)(ci, c->msg);
    longjmp(c->jb, 1);
}

static int jpg_enc_run(jpg_enc *c) {
    if (setjmp(c->jb)) return -1;
    struct jpeg_compress_struct *ci = &c->cinfo;
    jpeg_create_compress(ci);
    c->created = 1;
    ci->client_data = c;
    jpeg_stdio_dest(ci, c->fp);
    const kd_image *im = c->img;
    ci->image_width = (JDIMENSION)im->width;
    ci->image_height = (JDIMENSION)im->height;
    ci->input_components = im->channels == 1 ? 1 : 3;
    ci->in_color_space = im->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(ci);
    jpeg_set_quality(ci, c->quality, TRUE);
    jpeg_start_compress(ci, TRUE);
    while (ci->next_scanline < ci->image_height) {
        const uint8_t *src = im->data + (size_t)ci->next_scanline * im->width * im->channels;
        JSAMPROW rp;
        if (im->channels == 4) {
            for (int x = 0; x < im->width; x++) memcpy(c->row + 3 * x, src + 4 * x, 3);
            rp = c->row;
        } else {
            rp = (JSAMPROW)src;
        }
        jpeg_write_scanlines(ci, &rp, 1);
    }
    jpeg_finish_compress(ci);
    return 0;
}

kd_status kd_image_save_jpeg(const char *path, const kd_image *img, int quality, kd_err *e) {
    if (!img_valid(img)) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: cannot save an invalid image", path);
    if (quality < 1 || quality > 100) return kd_errf(e, KD_ERR_INVALID_ARG, "%s: JPEG quality %d is not in 1..100", path, quality);
    if (img->width > 65500 || img->height > 65500)
        return kd_errf(e, KD_ERR_INVALID_ARG, "%s: %dx%d is too large for JPEG (65500 per side)", path, img->width, img->height);
    char *tmp;
    FILE *fp;
    KD_TRY(open_tmp(path, &tmp, &fp, e));
    jpg_enc *c = calloc(1, sizeof *c);
    if (!c) {
        close_tmp(path, tmp, fp, 0, e);
        return kd_errf(e, KD_ERR_OOM, "%s: out of memory", path);
    }
    c->fp = fp;
    c->img = img;
    c->quality = quality;
    c->cinfo.err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = jpg_enc_error_exit;
    c->jerr.output_message = jpg_output_message;
    c->cinfo.client_data = c;
    int ok = 1;
    if (img->channels == 4 && !(c->row = malloc((size_t)img->width * 3))) {
        ok = 0;
        snprintf(c->msg, sizeof c->msg, "out of memory");
    }
    if (ok) ok = jpg_enc_run(c) == 0;
    if (c->created) jpeg_destroy_compress(&c->cinfo);
    if (ok && ferror(fp)) {
        ok = 0;
        snprintf(c->msg, sizeof c->msg, "write error");
    }
    char msg[JMSG_LENGTH_MAX];
    snprintf(msg, sizeof msg, "%s", c->msg);
    free(c->row);
    free(c);
    kd_status s = close_tmp(path, tmp, fp, ok, e);
    if (!ok) return kd_errf(e, KD_ERR_IO, "%s: JPEG encoding failed: %s", path, msg);
    return s;
}

/* ---- Pillow resampling -------------------------------------------------------------------- */

static kd_status rs_copy(const kd_image *in, kd_image *out, kd_err *e);

typedef struct rs_filter {
    double (*fn)(double);
    double support;
} rs_filter;

static double f_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }
static double f_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}
static double f_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x = x * M_PI;
    return sin(x) / x * (0.54f + 0.46f * cos(x));
}
static double f_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}
static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}
static double f_lanczos(double x) {
    if (-3.0 <= x && x < 3.0) return sinc(x) * sinc(x / 3);
    return 0.0;
}

static const rs_filter *rs_get(kd_resample f) {
    static const rs_filter box = {f_box, 0.5}, bil = {f_bilinear, 1.0}, ham = {f_hamming, 1.0},
                           bic = {f_bicubic, 2.0}, lan = {f_lanczos, 3.0};
    switch (f) {
    case KD_RESAMPLE_BOX: return &box;
    case KD_RESAMPLE_BILINEAR: return &bil;
    case KD_RESAMPLE_HAMMING: return &ham;
    case KD_RESAMPLE_BICUBIC: return &bic;
    case KD_RESAMPLE_LANCZOS: return &lan;
    default: return NULL;
    }
}

#define RS_PRECISION_BITS (32 - 8 - 2)

typedef struct rs_coeffs {
    int ksize;
    int *bounds; /* [out][2]: xmin, count */
    int32_t *k;  /* [out][ksize] fixed point */
} rs_coeffs;

static void rs_free(rs_coeffs *c) {
    free(c->bounds);
    free(c->k);
    c->bounds = NULL;
    c->k = NULL;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc. in0/in1 are float as in Pillow's box. */
static kd_status rs_precompute(int in_size, float in0, float in1, int out_size, const rs_filter *f, rs_coeffs *c,
                               kd_err *e) {
    double support, scale, filterscale;
    filterscale = scale = (double)(in1 - in0) / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    support = f->support * filterscale;
    double ks = ceil(support) * 2 + 1;
    if (ks > (double)INT_MAX / 2 || (size_t)ks > SIZE_MAX / sizeof(double) / (size_t)out_size)
        return kd_errf(e, KD_ERR_OOM, "resize: filter support too large");
    int ksize = (int)ks;
    double *kk = malloc((size_t)out_size * (size_t)ksize * sizeof(double));
    int *bounds = malloc((size_t)out_size * 2 * sizeof(int));
    int32_t *ki = malloc((size_t)out_size * (size_t)ksize * sizeof(int32_t));
    if (!kk || !bounds || !ki) {
        free(kk);
        free(bounds);
        free(ki);
        return kd_errf(e, KD_ERR_OOM, "resize: cannot allocate coefficients");
    }
    double inv_filterscale = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax < 0) xmax = 0;
        if (xmax > ksize) xmax = ksize; /* cannot happen; keeps the loop inside the row */
        double *k = &kk[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = f->fn((x + xmin - center + 0.5) * inv_filterscale);
            k[x] = w;
            ww += w;
        }
        if (ww != 0.0)
            for (x = 0; x < xmax; x++) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2 + 0] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out_size * (size_t)ksize; i++) {
        double v = kk[i];
        if (!(v > -256.0 && v < 256.0)) v = v > 0 ? 256.0 : -256.0; /* cannot happen for a normalised
                                                                      * kernel; keeps the cast defined */
        if (v < 0) ki[i] = (int32_t)(-0.5 + v * (1 << RS_PRECISION_BITS));
        else ki[i] = (int32_t)(0.5 + v * (1 << RS_PRECISION_BITS));
    }
    free(kk);
    c->ksize = ksize;
    c->bounds = bounds;
    c->k = ki;
    return KD_OK;
}

static inline uint8_t rs_clip8(int64_t ss) {
    int64_t v = ss >> RS_PRECISION_BITS; /* arithmetic shift, as Pillow's clip8 lookup index */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* out: out_w × rows, reads in rows [row0, row0 + rows). */
static void rs_horizontal(const uint8_t *in, int in_w, int C, int row0, int rows, const rs_coeffs *c, uint8_t *out,
                          int out_w) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *li = in + (size_t)(y + row0) * in_w * C;
        uint8_t *lo = out + (size_t)y * out_w * C;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[xx * 2], xmax = c->bounds[xx * 2 + 1];
            const int32_t *k = &c->k[(size_t)xx * c->ksize];
            for (int ch = 0; ch < C; ch++) {
                int64_t ss = 1 << (RS_PRECISION_BITS - 1);
                for (int x = 0; x < xmax; x++) ss += (int64_t)li[(size_t)(x + xmin) * C + ch] * k[x];
                lo[(size_t)xx * C + ch] = rs_clip8(ss);
            }
        }
    }
}

static void rs_vertical(const uint8_t *in, int w, int C, const rs_coeffs *c, int ybase, uint8_t *out, int out_h) {
    size_t stride = (size_t)w * C;
    for (int yy = 0; yy < out_h; yy++) {
        int ymin = c->bounds[yy * 2] - ybase, ymax = c->bounds[yy * 2 + 1];
        const int32_t *k = &c->k[(size_t)yy * c->ksize];
        uint8_t *lo = out + (size_t)yy * stride;
        for (size_t i = 0; i < stride; i++) {
            int64_t ss = 1 << (RS_PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++) ss += (int64_t)in[(size_t)(y + ymin) * stride + i] * k[y];
            lo[i] = rs_clip8(ss);
        }
    }
}

/* Pillow ImagingResample (8 bpc) with box = (0, 0, bx, by). Pillow 13 runs the vertical pass
 * first when the height shrinks by more than twice as many pixels as the width
 * (H > h && H - h > 2 (W - w)); otherwise the horizontal pass first, over only the rows the
 * vertical pass reads. The order changes the 8-bit intermediate, so it must match. */
static kd_status rs_resample(const kd_image *in, int w, int h, const rs_filter *f, float bx, float by, kd_image *out,
                             kd_err *e) {
    int W = in->width, H = in->height, C = in->channels;
    int need_h = w != W || bx != (float)w;
    int need_v = h != H || by != (float)h;
    int vertical_first = H > h && (int64_t)(H - h) > (int64_t)(W - w) * 2;
    rs_coeffs cv = {0}, ch = {0};
    kd_image tmp = {0};
    kd_status s = rs_precompute(H, 0.0f, by, h, f, &cv, e);
    if (s == KD_OK && need_h) s = rs_precompute(W, 0.0f, bx, w, f, &ch, e);
    if (s != KD_OK) goto done;
    if (!need_h && !need_v) {
        s = rs_copy(in, out, e);
    } else if (!need_h) {
        s = kd_image_alloc(out, W, h, C, e);
        if (s == KD_OK) rs_vertical(in->data, W, C, &cv, 0, out->data, h);
    } else if (!need_v) {
        s = kd_image_alloc(out, w, H, C, e);
        if (s == KD_OK) rs_horizontal(in->data, W, C, 0, H, &ch, out->data, w);
    } else if (vertical_first) {
        s = kd_image_alloc(&tmp, W, h, C, e);
        if (s == KD_OK) {
            rs_vertical(in->data, W, C, &cv, 0, tmp.data, h);
            s = kd_image_alloc(out, w, h, C, e);
            if (s == KD_OK) rs_horizontal(tmp.data, W, C, 0, h, &ch, out->data, w);
        }
    } else {
        int ybox_first = cv.bounds[0];
        int ybox_last = cv.bounds[h * 2 - 2] + cv.bounds[h * 2 - 1];
        int rows = ybox_last - ybox_first;
        s = kd_image_alloc(&tmp, w, rows > 0 ? rows : 1, C, e);
        if (s == KD_OK) {
            rs_horizontal(in->data, W, C, ybox_first, rows, &ch, tmp.data, w);
            s = kd_image_alloc(out, w, h, C, e);
            if (s == KD_OK) rs_vertical(tmp.data, w, C, &cv, ybox_first, out->data, h);
        }
    }
done:
    kd_image_free(&tmp);
    rs_free(&cv);
    rs_free(&ch);
    return s;
}

static uint32_t div_u32(int divider) {
    uint32_t max_dividend = (uint32_t)(1u << 8) * (uint32_t)divider;
    float max_int = 4294967296.0f;
    return (uint32_t)(max_int / (float)max_dividend);
}

kd_status kd_image_reduce(const kd_image *in, int fx, int fy, kd_image *out, kd_err *e) {
    memset(out, 0, sizeof *out);
    if (!img_valid(in)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_reduce: invalid input image");
    if (fx < 1 || fy < 1) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_reduce: factors %dx%d must be >= 1", fx, fy);
    int W = in->width, H = in->height, C = in->channels;
    if (fx > W) fx = W; /* same output (one column / row); keeps the block sizes bounded */
    if (fy > H) fy = H;
    int ow = (W + fx - 1) / fx, oh = (H + fy - 1) / fy;
    KD_TRY(kd_image_alloc(out, ow, oh, C, e));
    for (int y = 0; y < oh; y++) {
        int y0 = y * fy, y1 = y0 + fy < H ? y0 + fy : H;
        for (int x = 0; x < ow; x++) {
            int x0 = x * fx, x1 = x0 + fx < W ? x0 + fx : W;
            uint64_t n = (uint64_t)(x1 - x0) * (uint64_t)(y1 - y0);
            for (int c = 0; c < C; c++) {
                uint64_t ss = 0;
                for (int yy = y0; yy < y1; yy++) {
                    const uint8_t *l = in->data + ((size_t)yy * W) * C + c;
                    for (int xx = x0; xx < x1; xx++) ss += l[(size_t)xx * C];
                }
                uint8_t v;
                if (n <= (1u << 24)) {
                    /* Pillow: ((sum + n/2) * (UINT32)(2^32f / (256 n))) >> 24 in 32-bit */
                    uint32_t mult = div_u32((int)n), amend = (uint32_t)n / 2;
                    v = (uint8_t)((((uint32_t)ss + amend) * mult) >> 24);
                } else {
                    /* Pillow's 32-bit arithmetic overflows here; use the rounded mean */
                    v = (uint8_t)((ss + n / 2) / n);
                }
                out->data[((size_t)y * ow + x) * C + c] = v;
            }
        }
    }
    return KD_OK;
}

/* Pillow ImagingScaleAffine (NEAREST resize over the full box). */
static kd_status rs_nearest(const kd_image *in, int w, int h, kd_image *out, kd_err *e) {
    int C = in->channels;
    KD_TRY(kd_image_alloc(out, w, h, C, e));
    memset(out->data, 0, img_bytes(out));
    int *xintab = malloc((size_t)w * sizeof(int));
    if (!xintab) {
        kd_image_free(out);
        return kd_errf(e, KD_ERR_OOM, "resize: out of memory");
    }
    double a0 = (double)((float)in->width - 0.0f) / w;
    double a4 = (double)((float)in->height - 0.0f) / h;
    double xo = 0.0 + a0 * 0.5, yo = 0.0 + a4 * 0.5;
    int xmin = w, xmax = 0;
    for (int x = 0; x < w; x++) {
        int xin = xo < 0.0 ? -1 : (int)xo;
        if (xin >= 0 && xin < in->width) {
            xmax = x + 1;
            if (x < xmin) xmin = x;
            xintab[x] = xin;
        }
        xo += a0;
    }
    for (int y = 0; y < h; y++) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        if (yi >= 0 && yi < in->height) {
            const uint8_t *li = in->data + (size_t)yi * in->width * C;
            uint8_t *lo = out->data + (size_t)y * w * C;
            for (int x = xmin; x < xmax; x++) memcpy(lo + (size_t)x * C, li + (size_t)xintab[x] * C, (size_t)C);
        }
        yo += a4;
    }
    free(xintab);
    return KD_OK;
}

static kd_status rs_copy(const kd_image *in, kd_image *out, kd_err *e) {
    KD_TRY(kd_image_alloc(out, in->width, in->height, in->channels, e));
    memcpy(out->data, in->data, img_bytes(in));
    return KD_OK;
}

/* Image.resize for modes L, RGB and RGBa (premultiplied), after the RGBA handling. */
static kd_status rs_resize_plain(const kd_image *in, int w, int h, kd_resample filter, double gap, kd_image *out,
                                 kd_err *e) {
    if (filter == KD_RESAMPLE_NEAREST) return rs_nearest(in, w, h, out, e);
    const rs_filter *f = rs_get(filter);
    float bx = (float)in->width, by = (float)in->height;
    kd_image red = {0};
    const kd_image *src = in;
    if (gap > 0) {
        double rx = (double)in->width / w / gap, ry = (double)in->height / h / gap;
        int fx = rx >= 1.0 ? (int)rx : 1, fy = ry >= 1.0 ? (int)ry : 1;
        if (fx > 1 || fy > 1) {
            /* _get_safe_box of the full image is the full image */
            KD_TRY(kd_image_reduce(in, fx, fy, &red, e));
            src = &red;
            bx = (float)((double)in->width / fx);
            by = (float)((double)in->height / fy);
        }
    }
    kd_status s;
    /* _imaging.resize: an integer box of exactly the target size is a crop */
    if (bx == (float)w && by == (float)h) {
        if (src->width == w && src->height == h) {
            if (src == &red) {
                *out = red;
                return KD_OK;
            }
            return rs_copy(src, out, e);
        }
        s = kd_image_alloc(out, w, h, src->channels, e);
        if (s == KD_OK)
            for (int y = 0; y < h; y++)
                memcpy(out->data + (size_t)y * w * src->channels, src->data + (size_t)y * src->width * src->channels,
                       (size_t)w * src->channels);
    } else {
        s = rs_resample(src, w, h, f, bx, by, out, e);
    }
    kd_image_free(&red);
    return s;
}

kd_status kd_image_resize(const kd_image *in, int w, int h, kd_resample filter, double reducing_gap, kd_image *out,
                          kd_err *e) {
    memset(out, 0, sizeof *out);
    if (!img_valid(in)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_resize: invalid input image");
    if (w < 1 || h < 1 || w > (1 << 24) || h > (1 << 24))
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_resize: target size %dx%d out of range", w, h);
    if (filter != KD_RESAMPLE_NEAREST && !rs_get(filter))
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_resize: unknown filter %d", (int)filter);
    if (reducing_gap > 0 && reducing_gap < 1.0)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_resize: reducing_gap must be 1.0 or greater (or <= 0 for none)");
    if (isnan(reducing_gap)) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_resize: reducing_gap is NaN");
    if (w == in->width && h == in->height) return rs_copy(in, out, e);
    if (in->channels != 4 || filter == KD_RESAMPLE_NEAREST) return rs_resize_plain(in, w, h, filter, reducing_gap, out, e);

    /* RGBA -> RGBa (premultiplied, MULDIV255) -> resize -> RGBA (CLIP8(255 * c / a)) */
    kd_image pm;
    KD_TRY(kd_image_alloc(&pm, in->width, in->height, 4, e));
    size_t n = (size_t)in->width * in->height;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = in->data + 4 * i;
        uint8_t *d = pm.data + 4 * i;
        unsigned a = s[3];
        for (int c = 0; c < 3; c++) {
            unsigned t = s[c] * a + 128;
            d[c] = (uint8_t)(((t >> 8) + t) >> 8);
        }
        d[3] = (uint8_t)a;
    }
    kd_status s = rs_resize_plain(&pm, w, h, filter, reducing_gap, out, e);
    kd_image_free(&pm);
    if (s != KD_OK) return s;
    size_t m = (size_t)w * h;
    for (size_t i = 0; i < m; i++) {
        uint8_t *p = out->data + 4 * i;
        unsigned a = p[3];
        if (a != 255 && a != 0)
            for (int c = 0; c < 3; c++) {
                unsigned v = (255u * p[c]) / a;
                p[c] = (uint8_t)(v > 255 ? 255 : v);
            }
    }
    return KD_OK;
}

/* ---- float conversions -------------------------------------------------------------------- */

kd_status kd_image_to_tensor(const kd_image *rgb, float *out, kd_err *e) {
    if (!img_valid(rgb) || rgb->channels != 3 || !out)
        return kd_errf(e, KD_ERR_INVALID_ARG, "kd_image_to_tensor: needs a 3-channel image and an output buffer");
    size_t hw = (size_t)rgb->width * rgb->height;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float v = (float)rgb->data[i * 3 + c] / 255.0f; /* numpy: float32 / 255.0 */
            v = 2.0f * v;                                    /* torch: 2.0 * x */
            out[(size_t)c * hw + i] = v - 1.0f;              /* - 1.0 */
        }
    return KD_OK;
}

kd_status kd_tensor_to_image(const float *x, int w, int h, kd_image *out, kd_err *e) {
    memset(out, 0, sizeof *out);
    if (!x) return kd_errf(e, KD_ERR_INVALID_ARG, "kd_tensor_to_image: no input");
    KD_TRY(kd_image_alloc(out, w, h, 3, e));
    size_t hw = (size_t)w * h;
    for (size_t i = 0; i < hw; i++)
        for (int c = 0; c < 3; c++) {
            float v = x[(size_t)c * hw + i] * 0.5f;
            v = v + 0.5f;
            if (isnan(v)) v = 0.0f;
            v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
            v = v * 255.0f;
            float r = nearbyintf(v); /* default rounding mode: half to even, as numpy.round */
            out->data[i * 3 + c] = (uint8_t)r;
        }
    return KD_OK;
}
