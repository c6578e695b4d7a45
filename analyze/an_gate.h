/*
 * CI gates: "metric [ '(' endpoint-or-group ')' ] op value" (docs/analyze.md).
 */
#ifndef H2R_AN_GATE_H
#define H2R_AN_GATE_H

#include <stddef.h>

#define AN_GATE_SELECTOR_MAX 256

enum an_metric {
    AN_M_P50,
    AN_M_P90,
    AN_M_P99,
    AN_M_P999,
    AN_M_MAX,
    AN_M_MEAN,
    AN_M_COUNT,
    AN_M_ERRORS,
    AN_M_ERROR_RATE,
    AN_M_NEW_FAILURES,
    AN_M_THROUGHPUT,
    AN_M_SERVER_ERRORS,   /* --server-log: error/fatal/panic lines inside the run */
    AN_M_SERVER_WARNINGS, /* --server-log: warnings inside the run */
    AN_M_N_
};

enum an_op { AN_OP_LT, AN_OP_LE, AN_OP_GT, AN_OP_GE, AN_OP_EQ, AN_OP_NE };

struct an_gate {
    int metric; /* enum an_metric */
    int op;     /* enum an_op */
    int has_selector;
    char selector[AN_GATE_SELECTOR_MAX]; /* "/path" or "METHOD /path", trimmed */
    int relative;                        /* value is relative to the reference run */
    int percent;                         /* relative: value is a percentage of the reference */
    double value;                        /* ns, fraction, count, per second; or the delta */
};

/*
 * Parses one gate expression. Returns 0, or H2R_ERR_ARG with errbuf naming
 * the 1-based column and what was expected there.
 */
int an_gate_parse(const char *expr, struct an_gate *g, char *errbuf, size_t errlen);

/* The threshold for a reference value (the value itself when not relative). */
double an_gate_limit(const struct an_gate *g, double reference);

/* actual OP limit. Latency and rate comparisons are exact; no tolerance. */
int an_gate_holds(int op, double actual, double limit);

const char *an_metric_name(int metric);
const char *an_op_name(int op);
/* 1 for p50 .. mean (values in ns). */
int an_metric_is_latency(int metric);

#endif
