/*
 * Unit tests for the replay's log-linear histograms (rp_stats.c).
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "rp_stats.h"

static void test_buckets(void)
{
    int bad = 0;
    /* every value lies in its bucket, within 12.5% of the bucket's top */
    static const int64_t vals[] = {0,
                                   1,
                                   7,
                                   8,
                                   9,
                                   15,
                                   16,
                                   17,
                                   100,
                                   1000,
                                   999999,
                                   1000000,
                                   123456789,
                                   5000000000LL,
                                   INT64_MAX / 3,
                                   INT64_MAX};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        uint32_t b = rp_hist_bucket(vals[i]);
        if (b >= RP_HIST_BUCKETS || rp_hist_bucket_max(b) < vals[i])
            bad++;
        if (b > 0 && rp_hist_bucket_max(b - 1) >= vals[i])
            bad++;
        if ((double)rp_hist_bucket_max(b) > (double)vals[i] * 1.125 + 1)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(rp_hist_bucket(-5), 0);
    /* buckets are contiguous and increasing (up to INT64_MAX; the top ones are unreachable) */
    for (uint32_t b = 1; b < RP_HIST_BUCKETS && rp_hist_bucket_max(b - 1) < INT64_MAX; b++)
        if (rp_hist_bucket(rp_hist_bucket_max(b - 1) + 1) != b)
            bad++;
    CHECK_EQ_INT(rp_hist_bucket(INT64_MAX), RP_HIST_BUCKETS - 9);
    CHECK_EQ_INT(bad, 0);
}

static void test_quantiles(void)
{
    static struct rp_hist h;
    memset(&h, 0, sizeof(h));
    for (int i = 1; i <= 1000; i++)
        rp_hist_add(&h, (int64_t)i * 1000); /* 1us .. 1ms */
    uint64_t c[RP_HIST_BUCKETS];
    memset(c, 0, sizeof(c));
    rp_hist_snapshot(&h, c);
    int64_t p50 = rp_hist_quantile(c, 0.5), p99 = rp_hist_quantile(c, 0.99);
    CHECK(p50 >= 500000 && p50 <= 570000);
    CHECK(p99 >= 990000 && p99 <= 1130000);
    CHECK(rp_hist_quantile(c, 1.0) >= 1000000);
    uint64_t empty[RP_HIST_BUCKETS];
    memset(empty, 0, sizeof(empty));
    CHECK_EQ_INT(rp_hist_quantile(empty, 0.99), 0);
}

static void test_live_late(void)
{
    static struct rp_live l;
    memset(&l, 0, sizeof(l));
    rp_live_late(&l, 5);
    rp_live_late(&l, 3);
    CHECK_EQ_INT(atomic_load(&l.max_late), 5);
    rp_live_late(&l, 9);
    CHECK_EQ_INT(atomic_load(&l.max_late), 9);
    CHECK_EQ_INT((int)(sizeof(struct rp_live) % 64), 0);
}

int main(void)
{
    test_buckets();
    test_quantiles();
    test_live_late();
    return check_summary("test_rp_stats");
}
