/* HTTP/1.x request head parsing (RFC 9112, the subset a JSON API needs). */
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

size_t http_head_length(const char *buf, size_t len) {
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r') return i + 1;
    return 0;
}

static int fail(char *msg, size_t cap, int status, const char *why) {
    snprintf(msg, cap, "%s", why);
    return status;
}

static int is_tchar(char c) { /* token characters of method and header names */
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Content-Length: 1*DIGIT (a list of equal values is allowed by the RFC; we refuse it). */
static int parse_length(const char *v, size_t n, size_t max_body, size_t *out, char *msg, size_t cap) {
    if (n == 0) return fail(msg, cap, 400, "empty Content-Length");
    size_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return fail(msg, cap, 400, "Content-Length is not a number");
        if (x > (max_body - (size_t)(v[i] - '0')) / 10) {
            snprintf(msg, cap, "request body larger than %zu bytes", max_body);
            return 413;
        }
        x = x * 10 + (size_t)(v[i] - '0');
    }
    *out = x;
    return 0;
}

static int parse_request_line(const char *p, const char *end, http_request *rq, char *msg, size_t cap) {
    const char *sp1 = memchr(p, ' ', (size_t)(end - p));
    if (!sp1 || sp1 == p || (size_t)(sp1 - p) >= sizeof rq->method) return fail(msg, cap, 400, "bad request line");
    for (const char *c = p; c < sp1; c++)
        if (!is_tchar(*c)) return fail(msg, cap, 400, "bad method");
    memcpy(rq->method, p, (size_t)(sp1 - p));
    rq->method[sp1 - p] = 0;
    const char *t = sp1 + 1, *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2 || sp2 == t || *t != '/') return fail(msg, cap, 400, "bad request target");
    const char *q = memchr(t, '?', (size_t)(sp2 - t));
    size_t plen = (size_t)((q ? q : sp2) - t);
    if (plen >= sizeof rq->path) return fail(msg, cap, 400, "request target too long");
    for (const char *c = t; c < sp2; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) return fail(msg, cap, 400, "bad character in the request target");
    memcpy(rq->path, t, plen);
    rq->path[plen] = 0;
    const char *ver = sp2 + 1;
    if ((size_t)(end - ver) != 8 || memcmp(ver, "HTTP/1.", 7) || (ver[7] != '0' && ver[7] != '1'))
        return fail(msg, cap, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    return 0;
}

int http_parse_head(const char *head, size_t head_len, size_t max_body, http_request *rq, char *msg, size_t cap) {
    memset(rq, 0, sizeof *rq);
    const char *end = head + head_len, *p = head;
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol || eol + 1 >= end || eol[1] != '\n') return fail(msg, cap, 400, "bad request line");
    int st = parse_request_line(p, eol, rq, msg, cap);
    if (st) return st;
    for (p = eol + 2; p < end;) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol || eol + 1 >= end || eol[1] != '\n') return fail(msg, cap, 400, "header line without CRLF");
        if (eol == p) break; /* the blank line */
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p) return fail(msg, cap, 400, "header without a name");
        for (const char *c = p; c < colon; c++)
            if (!is_tchar(*c)) return fail(msg, cap, 400, "bad header name");
        for (const char *c = colon + 1; c < eol; c++)
            if (*c == 0 || *c == '\n') return fail(msg, cap, 400, "bad header value");
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t nlen = (size_t)(colon - p);
        if (nlen == 14 && !strncasecmp(p, "Content-Length", 14)) {
            if (rq->has_length) return fail(msg, cap, 400, "more than one Content-Length");
            st = parse_length(v, (size_t)(ve - v), max_body, &rq->content_length, msg, cap);
            if (st) return st;
            rq->has_length = 1;
        } else if (nlen == 17 && !strncasecmp(p, "Transfer-Encoding", 17)) {
            return fail(msg, cap, 501, "Transfer-Encoding is not supported: send a Content-Length");
        }
        p = eol + 2;
    }
    return 0;
}

const char *http_reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}
