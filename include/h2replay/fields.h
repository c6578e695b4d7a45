/*
 * The protobuf wire format (https://protobuf.dev/programming-guides/encoding/),
 * as h2replay reads and writes it: the trace and run file codecs encode their
 * records with it, and the replay stage reads Headscale's gRPC replies with
 * the same reader.
 *
 * Written by hand because it is a few dozen lines and protobuf-c decodes only
 * through generated descriptors: a payload is a sequence of (key, value)
 * pairs, key = field_number << 3 | wire_type. Writers use wire type 0 (varint,
 * signed values zigzag-encoded) and 2 (length-delimited bytes); the reader also
 * accepts 1 (fixed64) and 5 (fixed32) so any proto3 message can be walked.
 * Unknown fields are skipped by readers, which keeps the formats forward
 * compatible.
 */
#ifndef H2REPLAY_FIELDS_H
#define H2REPLAY_FIELDS_H

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
#define FLD_FIXED64 1u /* read only: value in u */
#define FLD_BYTES 2u
#define FLD_FIXED32 5u /* read only: value in u */

void fld_put_u64(struct h2r_buf *b, uint32_t field, uint64_t v);
void fld_put_i64(struct h2r_buf *b, uint32_t field, int64_t v); /* zigzag */
void fld_put_bytes(struct h2r_buf *b, uint32_t field, const void *p, size_t n);
void fld_put_str(struct h2r_buf *b, uint32_t field, const char *s); /* skipped when NULL */

/*
 * A named counter as one bytes field holding {1: name, 2: value}: capture
 * summary counters in traces, database sample values in run files.
 */
void fld_put_counter(struct h2r_buf *b, uint32_t field, const char *name, uint64_t value);

/* Bounds-checked read cursor over an encoded payload. */
struct fld_cursor {
    const uint8_t *p;
    size_t len;
};

struct fld_value {
    uint32_t field;
    uint32_t wire_type;
    uint64_t u;          /* varint or fixed value */
    const uint8_t *data; /* bytes value */
    size_t n;
};

/* Reads one varint. Returns 0, or H2R_ERR_TRUNCATED / H2R_ERR_FORMAT (> 10 bytes). */
int fld_get_varint(struct fld_cursor *c, uint64_t *v);
/*
 * Reads the next field. Returns 1 with *out filled, 0 at the end, or a negative
 * code: H2R_ERR_TRUNCATED (a value runs past the end), H2R_ERR_FORMAT (field 0,
 * a varint over 10 bytes, groups or wire types 6 and 7).
 */
int fld_next(struct fld_cursor *c, struct fld_value *out);
int64_t fld_zigzag_decode(uint64_t u);

/*
 * Reads a counter written by fld_put_counter() from the bytes field v: *name is
 * its name field (bytes borrowed from the payload), *value its value (0 when
 * absent). Returns 0, or H2R_ERR_FORMAT (v not bytes, malformed, no name).
 */
int fld_get_counter(const struct fld_value *v, struct fld_value *name, uint64_t *value);

#endif
