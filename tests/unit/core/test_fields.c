/* Unit tests for the field encoding (core/fields.c): varints, zigzag, limits. */
#include <stdint.h>

#include "check.h"
#include "fields.h"
#include "h2replay/error.h"

static void test_varint_roundtrip(void)
{
    static const uint64_t vals[] = {0, 1, 127, 128, 300, 16383, 16384, UINT32_MAX,
                                    (uint64_t)1 << 63, UINT64_MAX};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        struct h2r_buf b;
        h2r_buf_init(&b, 0);
        h2r_buf_put_varint(&b, vals[i]);
        struct fld_cursor c = {b.p, b.len};
        uint64_t out = 0;
        CHECK_EQ_INT(fld_get_varint(&c, &out), 0);
        CHECK(out == vals[i]);
        CHECK_EQ_INT(c.len, 0);
        h2r_buf_free(&b);
    }
}

static void test_zigzag(void)
{
    static const int64_t vals[] = {0, -1, 1, -2, INT64_MAX, INT64_MIN, -1000000000000LL};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        struct h2r_buf b;
        h2r_buf_init(&b, 0);
        fld_put_i64(&b, 7, vals[i]);
        struct fld_cursor c = {b.p, b.len};
        struct fld_value v;
        CHECK_EQ_INT(fld_next(&c, &v), 1);
        CHECK_EQ_INT(v.field, 7);
        CHECK(fld_zigzag_decode(v.u) == vals[i]);
        h2r_buf_free(&b);
    }
}

static void test_malformed(void)
{
    /* 11 continuation bytes: longer than any 64-bit varint */
    static const uint8_t too_long[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                       0x80, 0x80, 0x80, 0x80, 0x01};
    struct fld_cursor c = {too_long, sizeof(too_long)};
    uint64_t v;
    CHECK(fld_get_varint(&c, &v) < 0);

    static const uint8_t cut[] = {0x80};
    c = (struct fld_cursor){cut, sizeof(cut)};
    CHECK_EQ_INT(fld_get_varint(&c, &v), H2R_ERR_TRUNCATED);

    /* bytes field claiming 5 bytes with 2 present */
    static const uint8_t short_bytes[] = {(1 << 3) | 2, 5, 'a', 'b'};
    c = (struct fld_cursor){short_bytes, sizeof(short_bytes)};
    struct fld_value fv;
    CHECK_EQ_INT(fld_next(&c, &fv), H2R_ERR_TRUNCATED);

    /* wire type 5 is not used by our formats */
    static const uint8_t bad_wt[] = {(1 << 3) | 5, 0};
    c = (struct fld_cursor){bad_wt, sizeof(bad_wt)};
    CHECK_EQ_INT(fld_next(&c, &fv), H2R_ERR_FORMAT);

    /* field number 0 is invalid */
    static const uint8_t zero_field[] = {0, 1};
    c = (struct fld_cursor){zero_field, sizeof(zero_field)};
    CHECK_EQ_INT(fld_next(&c, &fv), H2R_ERR_FORMAT);
}

static void test_buf_cap(void)
{
    struct h2r_buf b;
    h2r_buf_init(&b, 10);
    h2r_buf_append(&b, "0123456789", 10);
    CHECK_EQ_INT(b.failed, 0);
    h2r_buf_append(&b, "x", 1);
    CHECK_EQ_INT(b.failed, H2R_ERR_LIMIT);
    CHECK_EQ_INT(b.len, 10);
    h2r_buf_free(&b);
}

int main(void)
{
    test_varint_roundtrip();
    test_zigzag();
    test_malformed();
    test_buf_cap();
    return check_summary("test_core_fields");
}
