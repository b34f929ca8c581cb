/* libFuzzer target: kd_image_decode (PNG via libpng, JPEG via libjpeg-turbo) on arbitrary bytes,
 * then everything a decoded image goes through: colour conversions, orientation, Pillow resizing
 * with a filter / size / reducing_gap taken from the input, and the float round trip.
 * Beyond "no crash, no leak, no UB" it checks what the API promises: a failure carries a message
 * and leaves the output zeroed; a success respects the limits and has a valid channel count.
 * Limits are small so that one input cannot take seconds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"

static void touch(const kd_image *im) {
    size_t n = (size_t)im->width * im->height * im->channels;
    volatile unsigned sum = 0;
    for (size_t i = 0; i < n; i++) sum += im->data[i];
    (void)sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    kd_image_limits lim = kd_image_limits_default();
    lim.max_width = 1024;
    lim.max_height = 1024;
    lim.max_pixels = 1u << 18;
    lim.max_jpeg_scans = 100;
    kd_image im, rgb = {0}, gray = {0}, rs = {0}, back = {0}, rot = {0};
    kd_err e = {0};
    kd_status s = kd_image_decode(data, size, "fuzz", &lim, &im, &e);
    if (s != KD_OK) {
        if (im.data || im.width || e.code != s || !e.msg[0]) __builtin_trap();
        return 0;
    }
    if (!im.data || im.width < 1 || im.height < 1 || im.width > lim.max_width || im.height > lim.max_height ||
        (uint64_t)im.width * im.height > lim.max_pixels || (im.channels != 1 && im.channels != 3 && im.channels != 4))
        __builtin_trap();
    touch(&im);
    if (kd_image_to_rgb(&im, &rgb, &e) != KD_OK || kd_image_to_gray(&im, &gray, &e) != KD_OK) __builtin_trap();
    touch(&gray);
    uint8_t a = size ? data[size - 1] : 0, b = size > 1 ? data[size - 2] : 0;
    int w = 1 + a % 48, h = 1 + b % 48;
    kd_resample f = (kd_resample)(a % 6);
    double gaps[4] = {0, 1.0, 1.5, 2.0};
    double gap = gaps[b % 4];
    const kd_image *src = (a & 0x80) ? &im : &rgb; /* 1/3/4 channels, and premultiplied alpha */
    if (kd_image_resize(src, w, h, f, gap, &rs, &e) != KD_OK) __builtin_trap();
    if (rs.width != w || rs.height != h || rs.channels != src->channels) __builtin_trap();
    touch(&rs);
    if (kd_image_orient(&im, 1 + b % 8, &rot, &e) != KD_OK) __builtin_trap();
    touch(&rot);
    kd_image small = {0};
    if (kd_image_resize(&rgb, 1 + b % 16, 1 + a % 16, KD_RESAMPLE_BICUBIC, 1.0, &small, &e) != KD_OK) __builtin_trap();
    float *t = malloc(sizeof(float) * 3 * small.width * small.height);
    if (!t) __builtin_trap();
    if (kd_image_to_tensor(&small, t, &e) != KD_OK) __builtin_trap();
    if (kd_tensor_to_image(t, small.width, small.height, &back, &e) != KD_OK) __builtin_trap();
    /* x/255*2-1 then (x*0.5+0.5)*255 rounded must give the pixels back */
    if (memcmp(back.data, small.data, (size_t)3 * small.width * small.height) != 0) __builtin_trap();
    free(t);
    kd_image_free(&small);
    kd_image_free(&back);
    kd_image_free(&rot);
    kd_image_free(&rs);
    kd_image_free(&gray);
    kd_image_free(&rgb);
    kd_image_free(&im);
    return 0;
}
