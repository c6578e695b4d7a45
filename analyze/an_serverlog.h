/*
 * Server-side evidence of a run: Headscale's own log (`analyze --server-log
 * [TARGET=]FILE`), parsed line by line and placed on the run's timeline.
 *
 * Headscale logs with zerolog: JSON lines (`log.format: json`, honoured by
 * v0.24+) or zerolog's console text (v0.23 ignores the option). Both carry a
 * timestamp, a level and a message; warnings and errors are folded into
 * message classes (ids, keys, numbers and quoted values stripped), counted
 * per time window of the run, before it and after it. Bounded: lines are cut
 * at AN_SLOG_LINE_MAX, at most AN_SLOG_MAX_CLASSES classes are kept per run,
 * and the window counters follow the run's own windows.
 *
 * The line parser (an_slog_parse_line) does no I/O; an_slog_read_file feeds
 * it. docs/analyze.md, "Server logs", is the user's side of this.
 */
#ifndef H2R_AN_SERVERLOG_H
#define H2R_AN_SERVERLOG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Longest line read; longer lines are skipped (and counted). */
#define AN_SLOG_LINE_MAX (64u * 1024u)
/* Longest message class and example text kept (cut with "..."). */
#define AN_SLOG_CLASS_MAX 120
#define AN_SLOG_TEXT_MAX 200
/* Warning/error classes per run; the rest are counted in "(other)". */
#define AN_SLOG_MAX_CLASSES 64u
/* Skipped lines named in warnings and reports ("FILE:LINE: why"). */
#define AN_SLOG_SKIP_EXAMPLES 3u
#define AN_SLOG_OTHER "(other)"

enum an_slog_level {
    AN_SL_NONE = 0, /* no level, or one zerolog does not write */
    AN_SL_TRACE,
    AN_SL_DEBUG,
    AN_SL_INFO,
    AN_SL_WARN,
    AN_SL_ERROR,
    AN_SL_FATAL,
    AN_SL_PANIC,
    AN_SL_NLEVELS
};

struct an_run;

/* GOLOG: Go's standard "log" package ("2026/11/27 02:32:05 http: ..."), which net/http uses
 * for its own complaints; local time, no level (AN_SL_NONE). */
enum an_slog_format { AN_SL_FMT_JSON = 1, AN_SL_FMT_CONSOLE = 2, AN_SL_FMT_GOLOG = 3 };

/* One parsed log line. */
struct an_slog_event {
    int format;                   /* enum an_slog_format */
    int level;                    /* enum an_slog_level */
    int64_t t_wall_ns;            /* the timestamp: start of the interval it names */
    int64_t res_ns;               /* its resolution: 1e9 for whole seconds */
    char text[AN_SLOG_TEXT_MAX];  /* "message: error", printable ASCII, cut */
    char cls[AN_SLOG_CLASS_MAX];  /* the normalized class (an_slog_classify) */
};

/*
 * Parses one log line (without its newline): a zerolog JSON object, or a
 * console line "TIME LVL [caller >] message key=value...". Returns 0, or
 * H2R_ERR_FORMAT with *why naming the problem (a static string). A Go
 * standard-library log line parses too (format AN_SL_FMT_GOLOG, level none,
 * its time read in this host's time zone).
 */
int an_slog_parse_line(const char *line, size_t len, struct an_slog_event *ev, const char **why);

/*
 * RFC 3339 time ("2026-11-27T01:02:03Z", "...03.25+01:00") to Unix ns and the
 * resolution its digits give (1e9 without a fraction). Years 1970..2261.
 * Returns 0 or H2R_ERR_FORMAT.
 */
int an_slog_parse_time(const char *s, size_t n, int64_t *ns, int64_t *res_ns);

/*
 * The class of a message and its error (either may be NULL or ""): lower
 * case, quoted values -> {q}, numbers -> {n}, ids / keys / pointers / paths
 * folded like endpoint paths (an_fold.c); a known root cause in the error
 * ("database is locked", "context canceled", "context deadline exceeded",
 * ...) replaces the error text. out (cap >= 8) is always NUL-terminated.
 * Returns the length written.
 */
size_t an_slog_classify(const char *msg, const char *err, char *out, size_t cap);

/* One warning/error class over the log. Times are ns from the run's t0. */
struct an_slog_class {
    char key[AN_SLOG_CLASS_MAX];
    char example[AN_SLOG_TEXT_MAX]; /* the first line's text */
    int level;                      /* the highest level seen */
    uint64_t count;                 /* all lines of the class */
    uint64_t in_run, before, after;
    int64_t t_first, t_last; /* placed times (may be < 0 or past the run) */
};

/* A run's server log: every --server-log file that targets it, folded. */
struct an_slog {
    char files[512];           /* file names, comma separated */
    int64_t t0_wall_ns;        /* the run's t0 on the wall clock */
    int64_t span_ns;           /* the run's span: [0, span_ns] */
    int64_t clock_max_error_ns; /* the run's NTP error bound; -1 unknown */
    int64_t width_ns;          /* window width (the run's) */
    size_t n_windows;
    uint64_t *w_errors; /* error/fatal/panic lines placed in each window */
    uint64_t *w_warnings;

    uint64_t lines, blank, skipped, too_long;
    uint64_t n_json, n_console, n_golog;
    int64_t res_ns; /* the coarsest timestamp resolution seen */
    uint64_t in_run[AN_SL_NLEVELS], before[AN_SL_NLEVELS], after[AN_SL_NLEVELS];
    char skip_examples[AN_SLOG_SKIP_EXAMPLES][160];
    size_t n_skip_examples;

    int has_first_error, has_first_warning;
    int64_t first_error_ns, first_warning_ns;
    char first_error_class[AN_SLOG_CLASS_MAX];
    int first_error_level;

    struct an_slog_class cls[AN_SLOG_MAX_CLASSES]; /* the last slot is "(other)" */
    size_t n_cls;

    /* against the client side (an_slog_relate) */
    int has_client_failure, has_onset;
    int64_t client_failure_ns; /* completion time of the run's first failure */
    int64_t onset_ns;
};

/*
 * A server log for a run whose t0 is t0_wall_ns and whose span is
 * [0, span_ns], with n_windows windows of width_ns. Returns 0 or
 * H2R_ERR_NOMEM.
 */
int an_slog_new(struct an_slog **out, int64_t t0_wall_ns, int64_t span_ns, int64_t width_ns,
                size_t n_windows);

/* NULL is a no-op. */
void an_slog_free(struct an_slog *s);

/* Places one parsed line: in the run, before or after it, class and window. */
void an_slog_add(struct an_slog *s, const struct an_slog_event *ev);

/* Counts one skipped line (and keeps "FILE:LINE: why" for the first few). */
void an_slog_skip(struct an_slog *s, const char *file, uint64_t line, const char *why);

/*
 * Reads FILE once and adds every line to each of logs[0..n). Returns 0,
 * H2R_ERR_IO (cannot open or read: errbuf names the file) or H2R_ERR_FORMAT
 * (a non-empty file without one zerolog line: errbuf names the first bad
 * line as FILE:LINE).
 */
int an_slog_read_file(const char *path, struct an_slog *const *logs, size_t n_logs, char *errbuf,
                      size_t errlen);

/* Records the client's first failure and onset (ns from t0) for the comparisons. */
void an_slog_relate(struct an_slog *s, int has_failure, int64_t failure_ns, int has_onset,
                    int64_t onset_ns);

/* Error-level lines (error, fatal, panic) and warnings inside the run. */
uint64_t an_slog_errors(const struct an_slog *s);
uint64_t an_slog_warnings(const struct an_slog *s);

/* Classes sorted by count (descending, then key) into out; returns how many (<= max). */
size_t an_slog_top(const struct an_slog *s, const struct an_slog_class **out, size_t max);

const char *an_slog_level_name(int level);
/* "json", "console", "mixed" or "none". */
const char *an_slog_format_name(const struct an_slog *s);

/*
 * Places every --server-log spec ("[TARGET=]FILE") on the runs (finished,
 * with t0_wall_ns): TARGET picks the runs whose section or name it is;
 * without it, every replayed run. Creates r->slog, reads each file once.
 * Skipped lines are summarised on warn (NULL: quiet). Returns 0, H2R_ERR_ARG
 * (no such target, a run without wall-clock t0), H2R_ERR_IO, H2R_ERR_FORMAT
 * or H2R_ERR_NOMEM, with errbuf naming the spec or FILE:LINE.
 */
int an_slog_attach(struct an_run **runs, size_t n_runs, const char *const *specs, size_t n_specs,
                   FILE *warn, char *errbuf, size_t errlen);

/* Report parts (an_report_serverlog.c); each writes nothing for a run without a log. */
struct an_report;
struct json_t;
void an_slog_table(FILE *f, const struct an_run *r);
struct json_t *an_slog_json(const struct an_run *r); /* JSON null without a log */
void an_slog_md(FILE *f, const struct an_report *rep);
void an_slog_html(FILE *f, const struct an_report *rep);

#endif
