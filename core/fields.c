/*
 * Protobuf-style field encoding for the trace and run formats (see fields.h
 * for why this is not a dependency). Every read is bounds checked; a varint
 * longer than 10 bytes or a length past the end of the payload is an error.
 */
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "h2replay/fields.h"

void h2r_buf_init(struct h2r_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void h2r_buf_reset(struct h2r_buf *b)
{
    b->len = 0;
    b->failed = 0;
}

void h2r_buf_free(struct h2r_buf *b)
{
    if (!b)
        return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int h2r_buf_reserve(struct h2r_buf *b, size_t n)
{
    if (b->failed)
        return b->failed;
    if (n <= b->cap - b->len)
        return 0;
    if (b->max && (n > b->max || b->len > b->max - n)) {
        b->failed = H2R_ERR_LIMIT;
        return b->failed;
    }
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap - b->len < n) {
        if (ncap > SIZE_MAX / 2) {
            b->failed = H2R_ERR_NOMEM;
            return b->failed;
        }
        ncap *= 2;
    }
    if (b->max && ncap > b->max)
        ncap = b->max;
    uint8_t *np = realloc(b->p, ncap);
    if (!np) {
        b->failed = H2R_ERR_NOMEM;
        return b->failed;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

void h2r_buf_append(struct h2r_buf *b, const void *p, size_t n)
{
    if (n == 0 || h2r_buf_reserve(b, n) != 0)
        return;
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void h2r_buf_put_varint(struct h2r_buf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        if (v)
            byte |= 0x80;
        tmp[n++] = byte;
    } while (v);
    h2r_buf_append(b, tmp, n);
}

void fld_put_u64(struct h2r_buf *b, uint32_t field, uint64_t v)
{
    h2r_buf_put_varint(b, ((uint64_t)field << 3) | FLD_VARINT);
    h2r_buf_put_varint(b, v);
}

void fld_put_i64(struct h2r_buf *b, uint32_t field, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    fld_put_u64(b, field, z);
}

void fld_put_bytes(struct h2r_buf *b, uint32_t field, const void *p, size_t n)
{
    h2r_buf_put_varint(b, ((uint64_t)field << 3) | FLD_BYTES);
    h2r_buf_put_varint(b, n);
    h2r_buf_append(b, p, n);
}

void fld_put_str(struct h2r_buf *b, uint32_t field, const char *s)
{
    if (s)
        fld_put_bytes(b, field, s, strlen(s));
}

int fld_get_varint(struct fld_cursor *c, uint64_t *v)
{
    uint64_t out = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (c->len == 0)
            return H2R_ERR_TRUNCATED;
        uint8_t byte = *c->p++;
        c->len--;
        if (i == 9 && byte > 1)
            return H2R_ERR_FORMAT; /* would overflow 64 bits */
        out |= (uint64_t)(byte & 0x7f) << (7 * i);
        if (!(byte & 0x80)) {
            *v = out;
            return 0;
        }
    }
    return H2R_ERR_FORMAT;
}

int fld_next(struct fld_cursor *c, struct fld_value *out)
{
    if (c->len == 0)
        return 0;
    uint64_t key;
    int rc = fld_get_varint(c, &key);
    if (rc)
        return rc;
    if ((key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return H2R_ERR_FORMAT;
    out->field = (uint32_t)(key >> 3);
    out->wire_type = (uint32_t)(key & 7);
    out->u = 0;
    out->data = NULL;
    out->n = 0;
    switch (out->wire_type) {
    case FLD_VARINT:
        return fld_get_varint(c, &out->u) ? H2R_ERR_FORMAT : 1;
    case FLD_BYTES: {
        uint64_t n;
        if (fld_get_varint(c, &n))
            return H2R_ERR_FORMAT;
        if (n > c->len)
            return H2R_ERR_TRUNCATED;
        out->data = c->p;
        out->n = (size_t)n;
        c->p += n;
        c->len -= (size_t)n;
        return 1;
    }
    case FLD_FIXED64:
    case FLD_FIXED32: {
        size_t w = out->wire_type == FLD_FIXED64 ? 8 : 4;
        if (c->len < w)
            return H2R_ERR_TRUNCATED;
        for (size_t i = 0; i < w; i++) /* little-endian */
            out->u |= (uint64_t)c->p[i] << (8 * i);
        c->p += w;
        c->len -= w;
        return 1;
    }
    default:
        return H2R_ERR_FORMAT;
    }
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

enum { COUNTER_NAME = 1, COUNTER_VALUE = 2 };

void fld_put_counter(struct h2r_buf *b, uint32_t field, const char *name, uint64_t value)
{
    size_t nl = strlen(name);
    size_t inner = 1 + varint_len(nl) + nl + 1 + varint_len(value);
    h2r_buf_put_varint(b, ((uint64_t)field << 3) | FLD_BYTES);
    h2r_buf_put_varint(b, inner);
    fld_put_bytes(b, COUNTER_NAME, name, nl);
    fld_put_u64(b, COUNTER_VALUE, value);
}

int fld_get_counter(const struct fld_value *v, struct fld_value *name, uint64_t *value)
{
    if (v->wire_type != FLD_BYTES)
        return H2R_ERR_FORMAT;
    struct fld_cursor c = {v->data, v->n};
    struct fld_value f;
    int rc, have_name = 0;
    *value = 0;
    while ((rc = fld_next(&c, &f)) == 1) {
        if (f.field == COUNTER_NAME && f.wire_type == FLD_BYTES) {
            *name = f;
            have_name = 1;
        } else if (f.field == COUNTER_VALUE && f.wire_type == FLD_VARINT) {
            *value = f.u;
        }
    }
    return rc < 0 || !have_name ? H2R_ERR_FORMAT : 0;
}

int64_t fld_zigzag_decode(uint64_t u)
{
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}
