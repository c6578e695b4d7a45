/*
 * Field encoding shared by the trace and run file codecs.
 *
 * Written by hand because it is twenty lines: a record payload is a sequence
 * of (key, value) pairs in the protobuf wire format subset we need: key =
 * field_number << 3 | wire_type, wire type 0 = varint (signed values
 * zigzag-encoded), 2 = length-delimited bytes. Unknown fields are skipped by
 * readers, which is what makes the formats forward compatible.
 */
#ifndef H2R_CORE_FIELDS_H
#define H2R_CORE_FIELDS_H

#include <stddef.h>
#include <stdint.h>

/* Growable byte buffer with a hard cap; once `failed` is set, writes are no-ops. */
struct h2r_buf {
    uint8_t *p;
    size_t len;
    size_t cap;
    size_t max;  /* hard cap, 0 = none */
    int failed;  /* H2R_ERR_NOMEM or H2R_ERR_LIMIT after a failed append */
};

void h2r_buf_init(struct h2r_buf *b, size_t max);
void h2r_buf_reset(struct h2r_buf *b);
void h2r_buf_free(struct h2r_buf *b);
/* Ensures room for n more bytes. Returns 0 or sets and returns b->failed. */
int h2r_buf_reserve(struct h2r_buf *b, size_t n);
void h2r_buf_append(struct h2r_buf *b, const void *p, size_t n);
void h2r_buf_put_varint(struct h2r_buf *b, uint64_t v);

#define FLD_VARINT 0u
#define FLD_BYTES 2u

void fld_put_u64(struct h2r_buf *b, uint32_t field, uint64_t v);
void fld_put_i64(struct h2r_buf *b, uint32_t field, int64_t v); /* zigzag */
void fld_put_bytes(struct h2r_buf *b, uint32_t field, const void *p, size_t n);
void fld_put_str(struct h2r_buf *b, uint32_t field, const char *s); /* skipped when NULL */

/* Bounds-checked read cursor over an encoded payload. */
struct fld_cursor {
    const uint8_t *p;
    size_t len;
};

struct fld_value {
    uint32_t field;
    uint32_t wire_type;
    uint64_t u;          /* varint value */
    const uint8_t *data; /* bytes value */
    size_t n;
};

/* Reads one varint. Returns 0, or H2R_ERR_TRUNCATED / H2R_ERR_FORMAT (> 10 bytes). */
int fld_get_varint(struct fld_cursor *c, uint64_t *v);
/* Reads the next field. Returns 1 with *out filled, 0 at the end, or a negative code. */
int fld_next(struct fld_cursor *c, struct fld_value *out);
int64_t fld_zigzag_decode(uint64_t u);

#endif
