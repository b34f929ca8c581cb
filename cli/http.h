/* Minimal HTTP/1.x request parsing for `kandinsky serve` (one request per connection, bodies by
 * Content-Length only). Everything is bounded; nothing here allocates. */
#ifndef KD_CLI_HTTP_H
#define KD_CLI_HTTP_H

#include <stddef.h>

#define HTTP_MAX_HEAD 16384 /* request line + headers */

typedef struct http_request {
    char method[16];
    char path[512]; /* without the query string */
    int has_length;
    size_t content_length;
} http_request;

/* Returns the length of the head (through the blank line) if buf[0..len) holds a complete one,
 * 0 if more bytes are needed. */
size_t http_head_length(const char *buf, size_t len);

/* Parses a complete head of head_len bytes. Returns 0, or the HTTP status to answer with (400
 * bad syntax, 413 body over max_body, 501 Transfer-Encoding, 505 not HTTP/1.x) and a reason in msg. */
int http_parse_head(const char *head, size_t head_len, size_t max_body, http_request *rq, char *msg, size_t msg_cap);

/* "OK", "Bad Request", ... for the statuses the server uses. */
const char *http_reason(int status);

#endif
