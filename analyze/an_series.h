/*
 * Time series of a run in fixed windows of replay time, and the failure
 * onset / recovery found in it.
 */
#ifndef H2R_AN_SERIES_H
#define H2R_AN_SERIES_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/hist.h"

/* Windows kept per run; past this, adjacent windows merge pairwise (width doubles). */
#define AN_MAX_WINDOWS 10000u
/* Sub-bucket bits of the per-window latency histograms (3.1 % error, 5 KiB each). */
#define AN_WINDOW_HIST_BITS 4u

struct an_window {
    uint64_t due;         /* exchanges due (t_intended) in the window: offered load */
    uint64_t failed;      /* of those, how many failed */
    uint64_t done;        /* exchanges that completed or failed (t_done) in the window */
    uint64_t sent;        /* exchanges sent (t_sent) in the window */
    uint64_t ended;       /* sent exchanges whose t_done is in the window */
    int64_t in_flight;    /* sent but not done at the window's end (an_series_finish) */
    struct h2r_hist *lat; /* latency from intended of the ok exchanges due here; NULL = none */
};

struct an_series {
    int64_t width_ns;
    size_t n; /* windows in use: 0 .. n-1 */
    size_t alloc;
    size_t max_windows;
    uint64_t coarsened; /* times the width doubled */
    struct an_window *w;
};

/* Sets up an empty series (no allocation yet). max_windows 0 = AN_MAX_WINDOWS. */
void an_series_init(struct an_series *s, int64_t width_ns, size_t max_windows);
/* Frees the windows and their histograms; s is empty afterwards. */
void an_series_free(struct an_series *s);

/*
 * Adds one exchange. Times are ns from the run's t0 (negative ones count in
 * window 0); t_sent < 0 means never sent; latency < 0 means "not ok" (no
 * latency sample). Returns 0 or H2R_ERR_NOMEM.
 */
int an_series_add(struct an_series *s, int64_t t_intended, int64_t t_sent, int64_t t_done,
                  int failed, int64_t latency);

/* Computes in_flight for every window. Call once, after the last add. */
void an_series_finish(struct an_series *s);

/* Error rate of window i (failed / due; 0 when nothing was due). */
double an_window_error_rate(const struct an_window *w);

struct an_onset {
    int found;
    size_t window;        /* first window of the sustained failure */
    int64_t t_ns;         /* its start */
    double error_rate;    /* in that window */
    double offered_per_s; /* due / width in that window */
    int64_t in_flight;    /* at the end of that window */
    int recovered;
    size_t rec_window; /* first window of the sustained recovery */
    int64_t rec_t_ns;
};

/*
 * Onset of sustained failure: the first window starting `sustain` consecutive
 * windows whose error rate is above `threshold`; recovery: the first window
 * after them that starts `sustain` consecutive windows at or below it.
 * Windows where nothing was due neither extend nor break a streak.
 */
void an_series_onset(const struct an_series *s, double threshold, unsigned sustain,
                     struct an_onset *o);

#endif
