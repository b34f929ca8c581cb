/* libFuzzer target for the `kandinsky serve` request head parser (cli/http.c): any bytes as a
 * head, with and without the blank-line search, under ASan/UBSan. Checks that a parsed request
 * has NUL-terminated method/path within their buffers and a body length within the limit.
 *   cmake --build build-fuzz --target fuzz_http && build-fuzz/fuzz/fuzz_http -max_len=20000 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *buf = (const char *)data;
    size_t hl = http_head_length(buf, size);
    if (hl > size) abort();
    http_request rq;
    char msg[128];
    for (int pass = 0; pass < 2; pass++) {
        size_t len = pass ? size : hl; /* the server only parses complete heads; also try raw input */
        if (!len) continue;
        int st = http_parse_head(buf, len, 4096, &rq, msg, sizeof msg);
        if (st == 0) {
            if (!memchr(rq.method, 0, sizeof rq.method) || !memchr(rq.path, 0, sizeof rq.path)) abort();
            if (rq.has_length && rq.content_length > 4096) abort();
            if (rq.path[0] != '/') abort();
        } else if (!memchr(msg, 0, sizeof msg) || st < 400 || st > 599) {
            abort();
        }
    }
    return 0;
}
