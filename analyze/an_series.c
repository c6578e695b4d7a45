/*
 * Windowed time series of one run. An exchange is counted where it matters
 * for each column: offered load, failures and latency in the window where it
 * was due (so a failure is charged to the load that caused it, even when its
 * deadline expired much later), completions where it ended, and in-flight as
 * the running balance of sends and ends.
 *
 * Memory is bounded by AN_MAX_WINDOWS windows of a few counters plus, for
 * windows with successful exchanges, one coarse (B = 4) latency histogram:
 * at most ~50 MB per run, typically far less (an hour at 1 s windows is 3600
 * windows, 18 MB). When a run outlasts max_windows windows, adjacent windows
 * merge pairwise and the width doubles, so long runs keep their whole span at
 * a coarser resolution instead of growing.
 */
#include <stdlib.h>
#include <string.h>

#include "h2replay/error.h"
#include "an_series.h"

void an_series_init(struct an_series *s, int64_t width_ns, size_t max_windows)
{
    memset(s, 0, sizeof(*s));
    s->width_ns = width_ns > 0 ? width_ns : 1000000000;
    s->max_windows = max_windows ? max_windows : AN_MAX_WINDOWS;
    if (s->max_windows < 2)
        s->max_windows = 2;
}

void an_series_free(struct an_series *s)
{
    for (size_t i = 0; i < s->n; i++)
        h2r_hist_free(s->w[i].lat);
    free(s->w);
    memset(s, 0, sizeof(*s));
}

static int merge_window(struct an_window *dst, struct an_window *src)
{
    dst->due += src->due;
    dst->failed += src->failed;
    dst->done += src->done;
    dst->sent += src->sent;
    dst->ended += src->ended;
    if (src->lat && !dst->lat) {
        dst->lat = src->lat;
    } else if (src->lat) {
        int rc = h2r_hist_merge(dst->lat, src->lat);
        h2r_hist_free(src->lat);
        if (rc)
            return rc;
    }
    src->lat = NULL;
    return 0;
}

/* Halves the number of windows: window i becomes windows 2i and 2i+1. */
static int coarsen(struct an_series *s)
{
    size_t n = (s->n + 1) / 2;
    for (size_t i = 0; i < n; i++) {
        struct an_window merged;
        memset(&merged, 0, sizeof(merged));
        int rc = merge_window(&merged, &s->w[2 * i]);
        if (!rc && 2 * i + 1 < s->n)
            rc = merge_window(&merged, &s->w[2 * i + 1]);
        if (rc)
            return rc;
        s->w[i] = merged;
    }
    for (size_t i = n; i < s->n; i++)
        memset(&s->w[i], 0, sizeof(s->w[i]));
    s->n = n;
    s->width_ns *= 2;
    s->coarsened++;
    return 0;
}

static uint64_t index_of(const struct an_series *s, int64_t t)
{
    return t <= 0 ? 0 : (uint64_t)(t / s->width_ns);
}

/* Makes window index_of(t) exist (coarsening if needed). */
static int reach(struct an_series *s, int64_t t)
{
    while (index_of(s, t) >= s->max_windows && s->width_ns <= INT64_MAX / 2) {
        int rc = coarsen(s);
        if (rc)
            return rc;
    }
    size_t need = (size_t)index_of(s, t) + 1;
    if (need > s->alloc) {
        size_t alloc = s->alloc ? s->alloc : 64;
        while (alloc < need)
            alloc *= 2;
        if (alloc > s->max_windows)
            alloc = s->max_windows;
        struct an_window *w = realloc(s->w, alloc * sizeof(*w));
        if (!w)
            return H2R_ERR_NOMEM;
        memset(w + s->alloc, 0, (alloc - s->alloc) * sizeof(*w));
        s->w = w;
        s->alloc = alloc;
    }
    if (need > s->n)
        s->n = need;
    return 0;
}

int an_series_add(struct an_series *s, int64_t t_intended, int64_t t_sent, int64_t t_done,
                  int failed, int64_t latency)
{
    int64_t t_max = t_intended > t_done ? t_intended : t_done;
    if (t_sent > t_max)
        t_max = t_sent;
    int rc = reach(s, t_max);
    if (rc)
        return rc;
    struct an_window *due = &s->w[index_of(s, t_intended)];
    due->due++;
    if (failed)
        due->failed++;
    if (latency >= 0) {
        if (!due->lat) {
            rc = h2r_hist_new(&due->lat, AN_WINDOW_HIST_BITS);
            if (rc)
                return rc;
        }
        h2r_hist_record(due->lat, latency);
    }
    s->w[index_of(s, t_done)].done++;
    if (t_sent >= 0) {
        s->w[index_of(s, t_sent)].sent++;
        /* an exchange cannot end before it was sent */
        s->w[index_of(s, t_done > t_sent ? t_done : t_sent)].ended++;
    }
    return 0;
}

void an_series_finish(struct an_series *s)
{
    int64_t bal = 0;
    for (size_t i = 0; i < s->n; i++) {
        bal += (int64_t)s->w[i].sent - (int64_t)s->w[i].ended;
        s->w[i].in_flight = bal;
    }
}

double an_window_error_rate(const struct an_window *w)
{
    return w->due ? (double)w->failed / (double)w->due : 0.0;
}

void an_series_onset(const struct an_series *s, double threshold, unsigned sustain,
                     struct an_onset *o)
{
    memset(o, 0, sizeof(*o));
    if (sustain == 0)
        sustain = 1;
    unsigned streak = 0;
    size_t start = 0, i = 0;
    for (; i < s->n; i++) {
        if (!s->w[i].due)
            continue;
        if (an_window_error_rate(&s->w[i]) > threshold) {
            if (streak++ == 0)
                start = i;
            if (streak >= sustain)
                break;
        } else {
            streak = 0;
        }
    }
    if (i >= s->n)
        return;
    const struct an_window *w = &s->w[start];
    o->found = 1;
    o->window = start;
    o->t_ns = (int64_t)start * s->width_ns;
    o->error_rate = an_window_error_rate(w);
    o->offered_per_s = (double)w->due * 1e9 / (double)s->width_ns;
    o->in_flight = w->in_flight;
    streak = 0;
    for (i++; i < s->n; i++) {
        if (!s->w[i].due)
            continue;
        if (an_window_error_rate(&s->w[i]) <= threshold) {
            if (streak++ == 0)
                start = i;
            if (streak >= sustain) {
                o->recovered = 1;
                o->rec_window = start;
                o->rec_t_ns = (int64_t)start * s->width_ns;
                return;
            }
        } else {
            streak = 0;
        }
    }
}
