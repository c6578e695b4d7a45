/*
 * Bounds-checked reads over a {ptr, len} cursor: how every h2replay parser
 * reads wire bytes (link layers, TLS records, HTTP/2 frames, TS2021 frames,
 * protobuf fields). Never cast a struct over a buffer; read through these.
 *
 * Each read either consumes exactly what it returns and yields 0, or
 * consumes nothing and yields H2R_ERR_TRUNCATED. Multi-byte integers are
 * named by their byte order (network protocols are big-endian, the TS2021
 * map stream's length prefix is little-endian).
 *
 * Header-only (static inline) because the reads sit in every parser's inner
 * loop; the pattern is tcpdump's GET_* macros and nghttp2's nghttp2_get_uint*.
 */
#ifndef H2REPLAY_CURSOR_H
#define H2REPLAY_CURSOR_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "h2replay/error.h"

struct h2r_cursor {
    const uint8_t *p;
    size_t len;
};

static inline int h2r_cur_u8(struct h2r_cursor *c, uint8_t *v)
{
    if (c->len < 1)
        return H2R_ERR_TRUNCATED;
    *v = c->p[0];
    c->p++;
    c->len--;
    return 0;
}

static inline int h2r_cur_be16(struct h2r_cursor *c, uint16_t *v)
{
    if (c->len < 2)
        return H2R_ERR_TRUNCATED;
    *v = (uint16_t)((unsigned)c->p[0] << 8 | c->p[1]);
    c->p += 2;
    c->len -= 2;
    return 0;
}

static inline int h2r_cur_be24(struct h2r_cursor *c, uint32_t *v)
{
    if (c->len < 3)
        return H2R_ERR_TRUNCATED;
    *v = (uint32_t)c->p[0] << 16 | (uint32_t)c->p[1] << 8 | c->p[2];
    c->p += 3;
    c->len -= 3;
    return 0;
}

static inline int h2r_cur_be32(struct h2r_cursor *c, uint32_t *v)
{
    if (c->len < 4)
        return H2R_ERR_TRUNCATED;
    *v = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 | (uint32_t)c->p[2] << 8 | c->p[3];
    c->p += 4;
    c->len -= 4;
    return 0;
}

static inline int h2r_cur_le32(struct h2r_cursor *c, uint32_t *v)
{
    if (c->len < 4)
        return H2R_ERR_TRUNCATED;
    *v = (uint32_t)c->p[3] << 24 | (uint32_t)c->p[2] << 16 | (uint32_t)c->p[1] << 8 | c->p[0];
    c->p += 4;
    c->len -= 4;
    return 0;
}

/* Copies n bytes into dst. */
static inline int h2r_cur_copy(struct h2r_cursor *c, uint8_t *dst, size_t n)
{
    if (c->len < n)
        return H2R_ERR_TRUNCATED;
    memcpy(dst, c->p, n);
    c->p += n;
    c->len -= n;
    return 0;
}

static inline int h2r_cur_skip(struct h2r_cursor *c, size_t n)
{
    if (c->len < n)
        return H2R_ERR_TRUNCATED;
    c->p += n;
    c->len -= n;
    return 0;
}

/* Splits the next n bytes off as their own cursor (a length-prefixed field). */
static inline int h2r_cur_take(struct h2r_cursor *c, size_t n, struct h2r_cursor *sub)
{
    if (c->len < n)
        return H2R_ERR_TRUNCATED;
    sub->p = c->p;
    sub->len = n;
    c->p += n;
    c->len -= n;
    return 0;
}

/* The byte at offset off, without consuming anything. */
static inline int h2r_cur_peek(const struct h2r_cursor *c, size_t off, uint8_t *v)
{
    if (off >= c->len)
        return H2R_ERR_TRUNCATED;
    *v = c->p[off];
    return 0;
}

#endif
