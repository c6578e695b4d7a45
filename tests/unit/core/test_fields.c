/* Unit tests for the field encoding (core/fields.c): varints, zigzag, limits. */
#include <stdint.h>

#include "check.h"
#include "h2replay/fields.h"
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

    /* fixed32 cut short; groups (3, 4) and wire types 6, 7 are malformed */
    static const uint8_t short_fixed[] = {(1 << 3) | 5, 0};
    c = (struct fld_cursor){short_fixed, sizeof(short_fixed)};
    CHECK_EQ_INT(fld_next(&c, &fv), H2R_ERR_TRUNCATED);
    for (uint8_t wt = 3; wt <= 7; wt++) {
        if (wt == 5)
            continue;
        uint8_t bad_wt[] = {(uint8_t)((1 << 3) | wt), 0, 0, 0, 0, 0, 0, 0, 0};
        c = (struct fld_cursor){bad_wt, sizeof(bad_wt)};
        CHECK_EQ_INT(fld_next(&c, &fv), H2R_ERR_FORMAT);
    }

    /* field number 0 is invalid */
    static const uint8_t zero_field[] = {0, 1};
    c = (struct fld_cursor){zero_field, sizeof(zero_field)};
    CHECK_EQ_INT(fld_next(&c, &fv), H2R_ERR_FORMAT);
}

/* Fixed-width fields (a proto3 double, fixed32...): little-endian, skipped by our codecs. */
static void test_fixed(void)
{
    static const uint8_t msg[] = {(1 << 3) | 1, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                  (2 << 3) | 5, 0xef, 0xbe, 0xad, 0xde, (3 << 3) | 0, 7};
    struct fld_cursor c = {msg, sizeof(msg)};
    struct fld_value fv;
    CHECK_EQ_INT(fld_next(&c, &fv), 1);
    CHECK_EQ_INT(fv.wire_type, FLD_FIXED64);
    CHECK(fv.u == 0x0807060504030201ULL);
    CHECK_EQ_INT(fld_next(&c, &fv), 1);
    CHECK_EQ_INT(fv.wire_type, FLD_FIXED32);
    CHECK(fv.u == 0xdeadbeefULL);
    CHECK_EQ_INT(fld_next(&c, &fv), 1);
    CHECK_EQ_INT(fv.field, 3);
    CHECK_EQ_INT(fv.u, 7);
    CHECK_EQ_INT(fld_next(&c, &fv), 0);
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
    test_fixed();
    test_buf_cap();
    return check_summary("test_core_fields");
}
