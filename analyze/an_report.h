/*
 * The analysis result as the report writers see it, and the writers
 * (terminal table, JSON, Markdown, HTML). Writers only format: every number
 * they print is computed before, in an_analyze.c.
 */
#ifndef H2R_AN_REPORT_H
#define H2R_AN_REPORT_H

#include <stdio.h>

#include "h2replay/analyze.h"
#include "an_gate.h"
#include "an_run.h"
#include "an_stats.h"

struct an_diff_row {
    const char *key;                /* group key; NULL for the whole run */
    size_t run;                     /* index of the compared run in an_report.runs */
    const struct h2r_hist *ref_lat; /* latency from intended, reference side */
    const struct h2r_hist *cur_lat;
    uint64_t n_ref, n_cur;     /* exchanges */
    uint64_t err_ref, err_cur; /* failed exchanges */
    int64_t p50_ref, p50_cur, p99_ref, p99_cur;
    double p50_rel, p99_rel; /* relative deltas (cur - ref) / ref */
    double err_rate_ref, err_rate_cur, err_rel;
    struct an_mw mw; /* Mann-Whitney of cur against ref latencies */
    double err_p;    /* two-proportion test of the error rates */
    int p50_sig, p99_sig, err_sig;
};

struct an_gate_result {
    const char *expr;
    struct an_gate gate;
    int pass;
    int has_actual; /* 0: no data (e.g. no successful exchanges) */
    double actual;
    double limit;
    int has_reference;
    double reference;
    char note[160];
};

struct an_report {
    const struct h2r_analyze_opts *opts;
    struct an_run **runs; /* the reference first when there is one */
    size_t n_runs;
    int ref;               /* index of the reference run, -1 none */
    int explicit_baseline; /* the reference came from --baseline */
    int target;            /* the run gates are evaluated on, -1 none */
    struct an_diff_row *rows;
    size_t n_rows;
    struct an_gate_result *gates;
    size_t n_gates;
    size_t gates_failed;
    double threshold;
    unsigned sustain;
    int64_t window_ns;
    const char *group_by; /* "endpoint", "conn", "none" */
};

/* Each returns 0 or H2R_ERR_IO (write failed) / H2R_ERR_NOMEM. */
int an_report_table(FILE *f, const struct an_report *r);
int an_report_json(FILE *f, const struct an_report *r);
int an_report_md(FILE *f, const struct an_report *r);
int an_report_html(FILE *f, const struct an_report *r);

/* Shared formatting helpers (an_report_util.c). */

/* Short duration ("1.23ms"), or "-" when the histogram is empty (n == 0). */
const char *an_fmt_ns(char *buf, size_t len, int64_t ns, uint64_t n);
/* Signed relative delta "+12.3%" / "-4.0%" / "new" (ref 0) / "-" (no data). */
const char *an_fmt_rel(char *buf, size_t len, double rel, int valid);
/* Percentage of a fraction, "2.79%". */
const char *an_fmt_pct(char *buf, size_t len, double frac);
/* A p-value, "0.032" or "<0.0001". */
const char *an_fmt_p(char *buf, size_t len, double p);
/* A gate's actual / limit value in the metric's unit. */
const char *an_fmt_metric(char *buf, size_t len, int metric, double v);
/* Errors of a run or group by class, "deadline_exceeded 3, refused 1" ("" when none). */
const char *an_fmt_classes(char *buf, size_t len, const uint64_t *by_class);
/* Exchanges that failed (count - ok). */
uint64_t an_errors(uint64_t count, uint64_t ok);
/*
 * A table-report line "   LABEL TEXT": the label padded to label_w columns, TEXT
 * wrapped at spaces (or cut) to 100 columns, continuation lines under itself.
 */
void an_report_wrapped(FILE *f, const char *label, int label_w, const char *text);

/* One-line descriptions of a run's failure points ("none" / "-" when absent). */
const char *an_fmt_first_failure(char *buf, size_t len, const struct an_run *r);
const char *an_fmt_onset(char *buf, size_t len, const struct an_run *r, double threshold,
                         unsigned sustain);
const char *an_fmt_recovery(char *buf, size_t len, const struct an_run *r);
/* Up to max failures of r that are (shared = 1) or are not (0) failures of ref, by id. */
size_t an_failure_examples(const struct an_run *r, const struct an_run *ref, int shared,
                           const struct an_failure **out, size_t max);
/* The detail text of failure id when it is among r's kept examples, else "". */
const char *an_failure_detail(const struct an_run *r, uint64_t id);
/* Groups of run sorted by count (descending, then key): fills idx (n_groups entries). */
void an_sorted_groups(const struct an_run *run, size_t *idx);

#endif
