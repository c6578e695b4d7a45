/*
 * Gate expressions: the one piece of analyze input that a CI config author
 * types by hand, so errors name the column and say what was expected there.
 * Grammar (docs/analyze.md):
 *
 *   gate     = metric [ "(" selector ")" ] op value
 *   metric   = p50 | p90 | p99 | p999 | p99.9 | max | mean | count | errors
 *            | error_rate | new_failures | throughput
 *   op       = "<" | "<=" | ">" | ">=" | "==" | "!="
 *   value    = [ "+" | "-" ] number [ unit ]     (a sign makes it relative)
 *   unit     = ns | us | ms | s | m | min | h | % | /s
 *
 * This file only parses and compares; an_analyze.c looks the metrics up.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "an_gate.h"

static const char *const metric_names[AN_M_N_] = {
    [AN_M_P50] = "p50",
    [AN_M_P90] = "p90",
    [AN_M_P99] = "p99",
    [AN_M_P999] = "p999",
    [AN_M_MAX] = "max",
    [AN_M_MEAN] = "mean",
    [AN_M_COUNT] = "count",
    [AN_M_ERRORS] = "errors",
    [AN_M_ERROR_RATE] = "error_rate",
    [AN_M_NEW_FAILURES] = "new_failures",
    [AN_M_THROUGHPUT] = "throughput",
    [AN_M_SERVER_ERRORS] = "server_errors",
    [AN_M_SERVER_WARNINGS] = "server_warnings",
};

#define METRIC_LIST                                                                                \
    "p50, p90, p99, p999, max, mean, count, errors, error_rate, new_failures, throughput, "      \
    "server_errors, server_warnings"

const char *an_metric_name(int metric)
{
    return metric >= 0 && metric < AN_M_N_ ? metric_names[metric] : "?";
}

const char *an_op_name(int op)
{
    static const char *const names[] = {"<", "<=", ">", ">=", "==", "!="};
    return op >= 0 && op <= AN_OP_NE ? names[op] : "?";
}

int an_metric_is_latency(int metric)
{
    return metric >= AN_M_P50 && metric <= AN_M_MEAN;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

static size_t skip_ws(const char *s, size_t i)
{
    while (is_space(s[i]))
        i++;
    return i;
}

/* The expression as quoted in messages: printable, and short enough to keep the column. */
#define QUOTE_MAX 60

static int col_err(char *errbuf, size_t errlen, const char *expr, size_t i, const char *what)
{
    char q[QUOTE_MAX + 4];
    size_t n = 0;
    for (; expr[n] && n < QUOTE_MAX; n++)
        q[n] = expr[n] >= 0x20 && expr[n] < 0x7f ? expr[n] : '?';
    q[n] = '\0';
    if (expr[n])
        memcpy(q + n, "...", 4);
    return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "gate '%s': column %zu: %s", q, i + 1, what);
}

static int parse_metric(const char *expr, size_t *pos, int *metric, char *errbuf, size_t errlen)
{
    size_t i = *pos, start = i;
    while ((expr[i] >= 'a' && expr[i] <= 'z') || (expr[i] >= '0' && expr[i] <= '9') ||
           expr[i] == '_' || expr[i] == '.')
        i++;
    if (i == start)
        return col_err(errbuf, errlen, expr, start, "expected a metric (" METRIC_LIST ")");
    size_t n = i - start;
    char name[32];
    if (n >= sizeof(name))
        n = sizeof(name) - 1;
    memcpy(name, expr + start, n);
    name[n] = '\0';
    if (strcmp(name, "p99.9") == 0)
        snprintf(name, sizeof(name), "p999");
    for (int m = 0; m < AN_M_N_; m++) {
        if (strcmp(name, metric_names[m]) == 0) {
            *metric = m;
            *pos = i;
            return 0;
        }
    }
    char msg[200];
    snprintf(msg, sizeof(msg), "unknown metric '%s' (expected " METRIC_LIST ")", name);
    return col_err(errbuf, errlen, expr, start, msg);
}

static int parse_selector(const char *expr, size_t *pos, struct an_gate *g, char *errbuf,
                          size_t errlen)
{
    size_t open = *pos;
    const char *close = strrchr(expr + open, ')');
    if (!close)
        return col_err(errbuf, errlen, expr, open, "'(' is never closed");
    size_t a = skip_ws(expr, open + 1), b = (size_t)(close - expr);
    while (b > a && is_space(expr[b - 1]))
        b--;
    if (b == a)
        return col_err(errbuf, errlen, expr, open + 1,
                       "expected an endpoint or group, e.g. (/machine/register) or (POST /x)");
    if (b - a >= sizeof(g->selector))
        return col_err(errbuf, errlen, expr, a, "endpoint too long");
    for (size_t i = a; i < b; i++)
        if (expr[i] == '(')
            return col_err(errbuf, errlen, expr, i, "unexpected '(' inside the endpoint");
    memcpy(g->selector, expr + a, b - a);
    g->selector[b - a] = '\0';
    g->has_selector = 1;
    *pos = (size_t)(close - expr) + 1;
    return 0;
}

static int parse_op(const char *expr, size_t *pos, int *op, char *errbuf, size_t errlen)
{
    static const struct {
        const char *s;
        int op;
    } ops[] = {{"<=", AN_OP_LE}, {">=", AN_OP_GE}, {"==", AN_OP_EQ},
               {"!=", AN_OP_NE}, {"<", AN_OP_LT},  {">", AN_OP_GT}};
    const char *p = expr + *pos;
    for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
        size_t n = strlen(ops[k].s);
        if (strncmp(p, ops[k].s, n) == 0) {
            if (p[n] == '=' || p[n] == '<' || p[n] == '>')
                break;
            *op = ops[k].op;
            *pos += n;
            return 0;
        }
    }
    return col_err(errbuf, errlen, expr, *pos, "expected an operator (< <= > >= == !=)");
}

struct unit {
    const char *name;
    double scale;
    int kind; /* 1 duration, 2 percent, 3 per second */
};

static const struct unit units[] = {
    {"ns", 1, 1},     {"us", 1e3, 1},   {"ms", 1e6, 1}, {"s", 1e9, 1}, {"m", 60e9, 1},
    {"min", 60e9, 1}, {"h", 3600e9, 1}, {"%", 0.01, 2}, {"/s", 1, 3},
};

static int check_value(const char *expr, size_t vcol, struct an_gate *g, const struct unit *u,
                       char *errbuf, size_t errlen)
{
    int kind = u ? u->kind : 0;
    const char *mn = metric_names[g->metric];
    char msg[200];
    if (an_metric_is_latency(g->metric)) {
        if (kind == 1 || (kind == 0 && g->value == 0) || (kind == 2 && g->relative))
            return 0;
        snprintf(msg, sizeof(msg),
                 "%s takes a duration with a unit (e.g. 200ms, 1.5s) or +N%% / -N%% "
                 "relative to the baseline",
                 mn);
        return col_err(errbuf, errlen, expr, vcol, msg);
    }
    if (g->metric == AN_M_ERROR_RATE) {
        if (kind == 2 || (kind == 0 && (g->relative || g->value <= 1.0)))
            return 0;
        return col_err(errbuf, errlen, expr, vcol,
                       "error_rate takes a percentage (e.g. 1%) or a fraction (0.01)");
    }
    if (g->metric == AN_M_NEW_FAILURES && g->relative)
        return col_err(errbuf, errlen, expr, vcol,
                       "new_failures is already relative to the baseline; give a plain count");
    if (g->metric == AN_M_THROUGHPUT && (kind == 0 || kind == 3 || (kind == 2 && g->relative)))
        return 0;
    if (g->metric != AN_M_THROUGHPUT && (kind == 0 || (kind == 2 && g->relative)))
        return 0;
    snprintf(msg, sizeof(msg), "%s takes a plain number%s", mn,
             g->metric == AN_M_NEW_FAILURES ? "" : " (or +N% / -N% relative to the baseline)");
    return col_err(errbuf, errlen, expr, vcol, msg);
}

static int parse_value(const char *expr, size_t *pos, struct an_gate *g, char *errbuf,
                       size_t errlen)
{
    size_t i = *pos, vcol = i;
    int neg = 0;
    if (expr[i] == '+' || expr[i] == '-') {
        g->relative = 1;
        neg = expr[i] == '-';
        i = skip_ws(expr, i + 1);
    }
    size_t ns = i, digits = 0, dots = 0;
    while ((expr[i] >= '0' && expr[i] <= '9') || expr[i] == '.') {
        if (expr[i] == '.')
            dots++;
        else
            digits++;
        i++;
    }
    if (digits == 0 || dots > 1 || i - ns > 40)
        return col_err(errbuf, errlen, expr, ns, "expected a number");
    char num[48];
    memcpy(num, expr + ns, i - ns);
    num[i - ns] = '\0';
    double v = strtod(num, NULL);
    if (!isfinite(v))
        return col_err(errbuf, errlen, expr, ns, "number out of range");
    size_t us = skip_ws(expr, i), ue = us;
    while (expr[ue] && !is_space(expr[ue]))
        ue++;
    const struct unit *u = NULL;
    if (ue > us) {
        for (size_t k = 0; k < sizeof(units) / sizeof(units[0]); k++) {
            if (strlen(units[k].name) == ue - us && strncmp(units[k].name, expr + us, ue - us) == 0)
                u = &units[k];
        }
        if (!u)
            return col_err(errbuf, errlen, expr, us,
                           "unknown unit (expected ns, us, ms, s, m, h, %, /s)");
    }
    i = skip_ws(expr, ue);
    if (expr[i])
        return col_err(errbuf, errlen, expr, i, "unexpected text after the value");
    g->value = neg ? -v : v;
    int rc = check_value(expr, vcol, g, u, errbuf, errlen);
    if (rc)
        return rc;
    if (u && u->kind == 2 && g->relative)
        g->percent = 1; /* "+20%": keep 20, applied as ref * (1 + 20 / 100) */
    else if (u)
        g->value *= u->scale;
    *pos = i;
    return 0;
}

int an_gate_parse(const char *expr, struct an_gate *g, char *errbuf, size_t errlen)
{
    memset(g, 0, sizeof(*g));
    if (!expr)
        return h2r_seterr(errbuf, errlen, H2R_ERR_ARG, "gate: empty expression");
    size_t pos = skip_ws(expr, 0);
    int rc = parse_metric(expr, &pos, &g->metric, errbuf, errlen);
    if (rc)
        return rc;
    pos = skip_ws(expr, pos);
    if (expr[pos] == '(') {
        if (g->metric == AN_M_SERVER_ERRORS || g->metric == AN_M_SERVER_WARNINGS)
            return col_err(errbuf, errlen, expr, pos,
                           "server_errors and server_warnings count the whole server log: no "
                           "endpoint");
        rc = parse_selector(expr, &pos, g, errbuf, errlen);
        if (rc)
            return rc;
        pos = skip_ws(expr, pos);
    }
    rc = parse_op(expr, &pos, &g->op, errbuf, errlen);
    if (rc)
        return rc;
    pos = skip_ws(expr, pos);
    if (!expr[pos])
        return col_err(errbuf, errlen, expr, pos, "expected a value (e.g. 200ms, 1%, +20%)");
    return parse_value(expr, &pos, g, errbuf, errlen);
}

double an_gate_limit(const struct an_gate *g, double reference)
{
    if (!g->relative)
        return g->value;
    if (g->percent)
        return reference * (1.0 + g->value / 100.0);
    return reference + g->value;
}

int an_gate_holds(int op, double actual, double limit)
{
    switch (op) {
    case AN_OP_LT:
        return actual < limit;
    case AN_OP_LE:
        return actual <= limit;
    case AN_OP_GT:
        return actual > limit;
    case AN_OP_GE:
        return actual >= limit;
    case AN_OP_EQ:
        return actual == limit;
    case AN_OP_NE:
        return actual != limit;
    default:
        return 0;
    }
}
