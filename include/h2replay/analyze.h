/*
 * The analyze stage: reads run files (and optionally a baseline run or
 * trace), groups exchanges by endpoint, finds failure points, diffs runs
 * with a significance test, evaluates CI gates and writes a report.
 * docs/analyze.md documents the flags, the gate grammar and the JSON schema.
 */
#ifndef H2REPLAY_ANALYZE_H
#define H2REPLAY_ANALYZE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "h2replay/error.h"

#ifdef __cplusplus
extern "C" {
#endif

enum h2r_analyze_format {
    H2R_ANALYZE_TABLE = 0,
    H2R_ANALYZE_JSON = 1,
    H2R_ANALYZE_MD = 2,
    H2R_ANALYZE_HTML = 3
};

enum h2r_analyze_group_by {
    H2R_ANALYZE_BY_ENDPOINT = 0,
    H2R_ANALYZE_BY_CONN = 1,
    H2R_ANALYZE_BY_NONE = 2
};

struct h2r_analyze_opts {
    const char *const *inputs; /* run files; several sections or files = several runs */
    size_t n_inputs;
    /*
     * NULL, the name of one of the runs, a run file (FILE or FILE@SECTION) or
     * a trace. The reference of diffs and relative gates; without it, the
     * first run is.
     */
    const char *baseline;
    int group_by;             /* enum h2r_analyze_group_by */
    int64_t window_ns;        /* time-series window; 0 = 1 s */
    int format;               /* enum h2r_analyze_format */
    const char *out_path;     /* NULL or "-": stdout */
    const char *const *gates; /* gate expressions */
    size_t n_gates;
    const char *const *fold_rules; /* "REGEX=TEMPLATE" */
    size_t n_fold_rules;
    double threshold; /* error rate of a failing window; default 0.05 */
    unsigned sustain; /* consecutive windows for onset and recovery; default 3 */
    FILE *log;        /* warnings and failing gates; NULL = stderr */
    /*
     * Server logs, "[TARGET=]FILE" (Headscale's zerolog JSON or console
     * log): placed on the timeline of the run(s) of section TARGET, or of
     * every run without it (docs/analyze.md, "Server logs").
     */
    const char *const *server_logs;
    size_t n_server_logs;
    int quiet;        /* no warnings */
};

struct h2r_analyze_result {
    size_t runs;        /* runs analysed, baseline included */
    uint64_t exchanges; /* exchanges read, baseline included */
    size_t gates;
    size_t gates_failed;
};

/* Defaults: endpoint groups, 1 s windows, table to stdout, threshold 0.05, sustain 3. */
void h2r_analyze_opts_init(struct h2r_analyze_opts *o);

/*
 * Runs the analysis and writes the report. Returns 0 (gates may still have
 * failed: see res->gates_failed), H2R_ERR_ARG for a bad option or gate or
 * for runs that cannot be compared (different traces or settings), or the
 * reader's code for an unreadable input; errbuf names the file or gate.
 */
int h2r_analyze(const struct h2r_analyze_opts *o, struct h2r_analyze_result *res, char *errbuf,
                size_t errlen);

/* Exit status for the CLI: 0 all gates passed, 1 a gate failed, 2 any error (rc < 0). */
int h2r_analyze_exit_code(int rc, const struct h2r_analyze_result *res);

/* Checks one gate expression without running anything (H2R_ERR_ARG names the column). */
int h2r_analyze_check_gate(const char *expr, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
