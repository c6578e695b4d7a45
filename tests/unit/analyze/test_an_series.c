/*
 * Unit tests for the windowed time series (analyze/an_series.c): counts per
 * window, in-flight balance, onset and recovery with the sustain rule,
 * windows with nothing due, coarsening past the window cap, and hostile
 * times (negative, huge).
 */
#include <string.h>

#include "an_series.h"
#include "check.h"

#define S 1000000000LL

static void test_counts_and_onset(void)
{
    struct an_series s;
    an_series_init(&s, S, 0);
    /* 10 s at 10/s; everything due in seconds 3..6 fails; each takes 2.5 s */
    for (int i = 0; i < 100; i++) {
        int64_t t = (int64_t)i * S / 10;
        int sec = i / 10, failed = sec >= 3 && sec <= 6;
        CHECK_EQ_INT(an_series_add(&s, t, t, t + 2500000000LL, failed, failed ? -1 : 1000), 0);
    }
    an_series_finish(&s);
    CHECK_EQ_INT(s.n, 13);
    CHECK_EQ_INT(s.w[0].due, 10);
    CHECK_EQ_INT(s.w[3].failed, 10);
    CHECK_EQ_INT(s.w[2].failed, 0);
    CHECK_EQ_INT(s.w[0].done, 0);
    CHECK_EQ_INT(s.w[2].done, 5);       /* 0.0..0.4 s + 2.5 s */
    CHECK_EQ_INT(s.w[5].in_flight, 25); /* sent in (3.5 s, 6 s) */
    CHECK_EQ_INT(s.w[12].in_flight, 0);
    CHECK(s.w[3].lat == NULL);
    CHECK(s.w[0].lat != NULL && h2r_hist_count(s.w[0].lat) == 10);
    struct an_onset o;
    an_series_onset(&s, 0.05, 3, &o);
    CHECK_EQ_INT(o.found, 1);
    CHECK_EQ_INT(o.window, 3);
    CHECK_EQ_INT(o.t_ns, 3 * S);
    CHECK(o.error_rate == 1.0);
    CHECK(o.offered_per_s == 10.0);
    CHECK_EQ_INT(o.in_flight, 25);
    /* recovery needs 3 good windows with exchanges due: 7, 8, 9 */
    CHECK_EQ_INT(o.recovered, 1);
    CHECK_EQ_INT(o.rec_window, 7);
    CHECK_EQ_INT(o.rec_t_ns, 7 * S);
    an_series_onset(&s, 0.05, 5, &o);
    CHECK_EQ_INT(o.found, 0);
    an_series_free(&s);
}

static void test_gaps_and_coarsen(void)
{
    struct an_series s;
    an_series_init(&s, S, 4);
    /* failing windows 0 and 2 with an idle window between them still count as sustained */
    CHECK_EQ_INT(an_series_add(&s, 0, 0, 1, 1, -1), 0);
    CHECK_EQ_INT(an_series_add(&s, 2 * S, 2 * S, 2 * S + 1, 1, -1), 0);
    struct an_onset o;
    an_series_onset(&s, 0.05, 2, &o);
    CHECK_EQ_INT(o.found, 1);
    CHECK_EQ_INT(o.window, 0);
    CHECK_EQ_INT(o.recovered, 0);
    /* t = 10 s with a cap of 4 windows: width doubles to 4 s (10 / 4 = window 2) */
    CHECK_EQ_INT(an_series_add(&s, 10 * S, 10 * S, 10 * S, 0, 7), 0);
    CHECK_EQ_INT(s.width_ns, 4 * S);
    CHECK_EQ_INT(s.coarsened, 2);
    CHECK_EQ_INT(s.n, 3);
    CHECK_EQ_INT(s.w[0].due, 2);
    CHECK_EQ_INT(s.w[0].failed, 2);
    CHECK_EQ_INT(s.w[2].due, 1);
    CHECK(s.w[2].lat && h2r_hist_count(s.w[2].lat) == 1);
    /* hostile times */
    CHECK_EQ_INT(an_series_add(&s, -5, -5, -1, 0, 1), 0);
    CHECK_EQ_INT(s.w[0].due, 3);
    CHECK_EQ_INT(an_series_add(&s, INT64_MAX, INT64_MAX, INT64_MAX, 0, 1), 0);
    CHECK(s.n <= 4);
    uint64_t due = 0;
    for (size_t i = 0; i < s.n; i++)
        due += s.w[i].due;
    CHECK_EQ_INT(due, 5);
    an_series_finish(&s);
    CHECK_EQ_INT(s.w[s.n - 1].in_flight, 0);
    an_series_free(&s);
}

int main(void)
{
    test_counts_and_onset();
    test_gaps_and_coarsen();
    return check_summary("test_an_series");
}
