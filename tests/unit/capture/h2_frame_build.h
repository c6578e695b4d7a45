/*
 * Test helpers that build real HTTP/2 byte streams: frame headers by hand
 * (RFC 9113 §4.1) and header blocks with nghttp2's HPACK deflater (RFC 7541).
 * Shared by the session-layer unit tests and the corpus generator.
 */
#ifndef H2R_TESTS_H2_FRAME_BUILD_H
#define H2R_TESTS_H2_FRAME_BUILD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#define TB_DATA 0x0
#define TB_HEADERS 0x1
#define TB_PRIORITY 0x2
#define TB_RST_STREAM 0x3
#define TB_SETTINGS 0x4
#define TB_PUSH_PROMISE 0x5
#define TB_PING 0x6
#define TB_GOAWAY 0x7
#define TB_WINDOW_UPDATE 0x8
#define TB_CONTINUATION 0x9

#define TB_END_STREAM 0x1
#define TB_ACK 0x1
#define TB_END_HEADERS 0x4
#define TB_PADDED 0x8
#define TB_PRIO 0x20

struct tbuf {
    uint8_t *p;
    size_t len;
    size_t cap;
};

static inline void tb_put(struct tbuf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n)
            ncap *= 2;
        b->p = realloc(b->p, ncap);
        if (!b->p) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->cap = ncap;
    }
    if (n)
        memcpy(b->p + b->len, p, n);
    b->len += n;
}

static inline void tb_str(struct tbuf *b, const char *s)
{
    tb_put(b, s, strlen(s));
}

static inline void tb_free(struct tbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static inline void tb_be(struct tbuf *b, uint32_t v, int bytes)
{
    uint8_t x[4];
    for (int i = 0; i < bytes; i++)
        x[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    tb_put(b, x, (size_t)bytes);
}

static inline void tb_preface(struct tbuf *b)
{
    tb_str(b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
}

static inline void tb_frame_hdr(struct tbuf *b, uint32_t len, uint8_t type, uint8_t flags,
                                uint32_t sid)
{
    tb_be(b, len, 3);
    tb_put(b, &type, 1);
    tb_put(b, &flags, 1);
    tb_be(b, sid, 4);
}

static inline void tb_frame(struct tbuf *b, uint8_t type, uint8_t flags, uint32_t sid,
                            const void *payload, size_t len)
{
    tb_frame_hdr(b, (uint32_t)len, type, flags, sid);
    tb_put(b, payload, len);
}

/* HPACK-encodes NULL-terminated name, value, name, value, ... into out. */
static inline void tb_hpack(nghttp2_hd_deflater *d, const char *const *kv, struct tbuf *out)
{
    nghttp2_nv nv[128];
    size_t n = 0;
    for (; kv[2 * n]; n++) {
        nv[n].name = (uint8_t *)(uintptr_t)kv[2 * n];
        nv[n].namelen = strlen(kv[2 * n]);
        nv[n].value = (uint8_t *)(uintptr_t)kv[2 * n + 1];
        nv[n].valuelen = strlen(kv[2 * n + 1]);
        nv[n].flags = NGHTTP2_NV_FLAG_NONE;
    }
    size_t bound = nghttp2_hd_deflate_bound(d, nv, n);
    uint8_t *tmp = malloc(bound ? bound : 1);
    ssize_t rv = nghttp2_hd_deflate_hd(d, tmp, bound, nv, n);
    if (rv < 0) {
        fprintf(stderr, "deflate failed: %zd\n", rv);
        exit(2);
    }
    tb_put(out, tmp, (size_t)rv);
    free(tmp);
}

/* One HEADERS frame (END_HEADERS set) carrying the whole block. */
static inline void tb_headers(struct tbuf *b, nghttp2_hd_deflater *d, uint32_t sid, uint8_t flags,
                              const char *const *kv)
{
    struct tbuf blk = {NULL, 0, 0};
    tb_hpack(d, kv, &blk);
    tb_frame(b, TB_HEADERS, (uint8_t)(flags | TB_END_HEADERS), sid, blk.p, blk.len);
    tb_free(&blk);
}

static inline void tb_settings1(struct tbuf *b, uint16_t id, uint32_t value)
{
    tb_frame_hdr(b, 6, TB_SETTINGS, 0, 0);
    tb_be(b, id, 2);
    tb_be(b, value, 4);
}

static inline void tb_settings_empty(struct tbuf *b, uint8_t flags)
{
    tb_frame_hdr(b, 0, TB_SETTINGS, flags, 0);
}

static inline void tb_data(struct tbuf *b, uint32_t sid, uint8_t flags, const void *p, size_t n)
{
    tb_frame(b, TB_DATA, flags, sid, p, n);
}

static inline void tb_rst(struct tbuf *b, uint32_t sid, uint32_t code)
{
    tb_frame_hdr(b, 4, TB_RST_STREAM, 0, sid);
    tb_be(b, code, 4);
}

static inline void tb_goaway(struct tbuf *b, uint32_t last, uint32_t code)
{
    tb_frame_hdr(b, 8, TB_GOAWAY, 0, 0);
    tb_be(b, last, 4);
    tb_be(b, code, 4);
}

#endif
