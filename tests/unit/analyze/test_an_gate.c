/*
 * Unit tests for the gate parser (analyze/an_gate.c): the documented
 * examples parse to the right metric, selector, operator and value; bad
 * expressions fail naming the column; limits and comparisons are exact.
 */
#include <math.h>
#include <string.h>

#include "an_gate.h"
#include "check.h"
#include "h2replay/error.h"

static struct an_gate parse_ok(const char *expr)
{
    struct an_gate g;
    char err[256] = "";
    int rc = an_gate_parse(expr, &g, err, sizeof(err));
    if (rc)
        fprintf(stderr, "unexpected: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    return g;
}

static void expect_err(const char *expr, const char *col, const char *what)
{
    struct an_gate g;
    char err[512] = "";
    CHECK_EQ_INT(an_gate_parse(expr, &g, err, sizeof(err)), H2R_ERR_ARG);
    if (!strstr(err, col) || !strstr(err, what)) {
        fprintf(stderr, "for '%s' got: %s\n", expr, err);
        CHECK(0);
    }
}

static void test_examples(void)
{
    struct an_gate g = parse_ok("p99(/machine/register) < +20%");
    CHECK_EQ_INT(g.metric, AN_M_P99);
    CHECK_EQ_INT(g.has_selector, 1);
    CHECK_EQ_STR(g.selector, "/machine/register");
    CHECK_EQ_INT(g.op, AN_OP_LT);
    CHECK_EQ_INT(g.relative, 1);
    CHECK_EQ_INT(g.percent, 1);
    CHECK(fabs(an_gate_limit(&g, 100.0) - 120.0) < 1e-9);

    g = parse_ok("errors == 0");
    CHECK_EQ_INT(g.metric, AN_M_ERRORS);
    CHECK_EQ_INT(g.op, AN_OP_EQ);
    CHECK_EQ_INT(g.relative, 0);
    CHECK(an_gate_limit(&g, 55) == 0);

    g = parse_ok("new_failures == 0");
    CHECK_EQ_INT(g.metric, AN_M_NEW_FAILURES);

    g = parse_ok("p50 < 200ms");
    CHECK_EQ_INT(g.metric, AN_M_P50);
    CHECK(g.value == 200e6);
    CHECK_EQ_INT(g.has_selector, 0);

    g = parse_ok("error_rate(POST /api/v1/user) <= 1%");
    CHECK_EQ_INT(g.metric, AN_M_ERROR_RATE);
    CHECK_EQ_STR(g.selector, "POST /api/v1/user");
    CHECK_EQ_INT(g.op, AN_OP_LE);
    CHECK(fabs(g.value - 0.01) < 1e-12);

    g = parse_ok("  throughput >= 500/s ");
    CHECK_EQ_INT(g.metric, AN_M_THROUGHPUT);
    CHECK_EQ_INT(g.op, AN_OP_GE);
    CHECK(g.value == 500);

    g = parse_ok("p99.9 != 1.5s");
    CHECK_EQ_INT(g.metric, AN_M_P999);
    CHECK_EQ_INT(g.op, AN_OP_NE);
    CHECK(g.value == 1.5e9);

    g = parse_ok("mean(GET /key) > -5%");
    CHECK(fabs(an_gate_limit(&g, 100.0) - 95.0) < 1e-9);
    CHECK_EQ_INT(g.op, AN_OP_GT);

    g = parse_ok("p99<+5ms");
    CHECK_EQ_INT(g.percent, 0);
    CHECK(an_gate_limit(&g, 1e6) == 6e6);

    g = parse_ok("error_rate < 0.05");
    CHECK(g.value == 0.05);
    g = parse_ok("max <= 2m");
    CHECK(g.value == 120e9);
    g = parse_ok("p90 ( /a/b ) >= 0");
    CHECK_EQ_STR(g.selector, "/a/b");
    g = parse_ok("count >= +10");
    CHECK(an_gate_limit(&g, 5) == 15);
}

static void test_errors(void)
{
    expect_err("p98 < 1ms", "column 1:", "unknown metric 'p98'");
    expect_err("p99 << 3ms", "column 5:", "expected an operator");
    expect_err("p99 = 3ms", "column 5:", "expected an operator");
    expect_err("p99 < 200", "column 7:", "duration");
    expect_err("errors == 1%", "column 11:", "plain number");
    expect_err("new_failures < +1", "column 16:", "already relative");
    expect_err("p99( < 1ms", "column 4:", "never closed");
    expect_err("p99() < 1ms", "column 5:", "expected an endpoint");
    expect_err("p99 < 1ms extra", "column 11:", "unexpected text");
    expect_err("p99 < ms", "column 7:", "expected a number");
    expect_err("p99 < 1.2.3ms", "column 7:", "expected a number");
    expect_err("p99 < 1parsec", "column 8:", "unknown unit");
    expect_err("error_rate < 5", "column 14:", "percentage");
    expect_err("p99 <", "column 6:", "expected a value");
    expect_err("", "column 1:", "expected a metric");
    expect_err("(x) < 1", "column 1:", "expected a metric");
    struct an_gate g;
    char err[64];
    CHECK_EQ_INT(an_gate_parse(NULL, &g, err, sizeof(err)), H2R_ERR_ARG);
}

static void test_holds(void)
{
    CHECK(an_gate_holds(AN_OP_LT, 1, 2) && !an_gate_holds(AN_OP_LT, 2, 2));
    CHECK(an_gate_holds(AN_OP_LE, 2, 2) && !an_gate_holds(AN_OP_LE, 3, 2));
    CHECK(an_gate_holds(AN_OP_GT, 3, 2) && !an_gate_holds(AN_OP_GT, 2, 2));
    CHECK(an_gate_holds(AN_OP_GE, 2, 2) && !an_gate_holds(AN_OP_GE, 1, 2));
    CHECK(an_gate_holds(AN_OP_EQ, 0, 0) && !an_gate_holds(AN_OP_EQ, 1, 0));
    CHECK(an_gate_holds(AN_OP_NE, 1, 0) && !an_gate_holds(AN_OP_NE, 0, 0));
    CHECK_EQ_STR(an_metric_name(AN_M_P999), "p999");
    CHECK_EQ_STR(an_op_name(AN_OP_NE), "!=");
    CHECK(an_metric_is_latency(AN_M_MEAN) && !an_metric_is_latency(AN_M_COUNT));
}

int main(void)
{
    test_examples();
    test_errors();
    test_holds();
    return check_summary("test_an_gate");
}
