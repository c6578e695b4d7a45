/* Unit tests for duration and size parsing (core/units.c). */
#include "check.h"
#include "h2replay/units.h"

int main(void)
{
    int64_t ns = 0;
    CHECK_EQ_INT(h2r_parse_duration("500ms", &ns), 0);
    CHECK_EQ_INT(ns, 500000000);
    CHECK_EQ_INT(h2r_parse_duration("5s", &ns), 0);
    CHECK_EQ_INT(ns, 5000000000LL);
    CHECK_EQ_INT(h2r_parse_duration("2m", &ns), 0);
    CHECK_EQ_INT(ns, 120000000000LL);
    CHECK_EQ_INT(h2r_parse_duration("1.5", &ns), 0);
    CHECK_EQ_INT(ns, 1500000000LL);
    CHECK_EQ_INT(h2r_parse_duration("250us", &ns), 0);
    CHECK_EQ_INT(ns, 250000);
    CHECK_EQ_INT(h2r_parse_duration("1h", &ns), 0);
    CHECK_EQ_INT(ns, 3600000000000LL);
    CHECK(h2r_parse_duration("", &ns) < 0);
    CHECK(h2r_parse_duration("-1s", &ns) < 0);
    CHECK(h2r_parse_duration("5 parsecs", &ns) < 0);
    CHECK(h2r_parse_duration("nan", &ns) < 0);
    CHECK(h2r_parse_duration("1e300h", &ns) < 0);

    uint64_t b = 0;
    CHECK_EQ_INT(h2r_parse_size("64KiB", &b), 0);
    CHECK_EQ_INT(b, 65536);
    CHECK_EQ_INT(h2r_parse_size("1MB", &b), 0);
    CHECK_EQ_INT(b, 1000000);
    CHECK_EQ_INT(h2r_parse_size("4096", &b), 0);
    CHECK_EQ_INT(b, 4096);
    CHECK(h2r_parse_size("12 bananas", &b) < 0);

    char buf[32];
    CHECK_EQ_STR(h2r_format_duration(1500000, buf, sizeof(buf)), "1.50ms");
    CHECK_EQ_STR(h2r_format_duration(999, buf, sizeof(buf)), "999ns");
    return check_summary("test_core_units");
}
