/*
 * Unit tests for the latency histogram (core/hist.c): bucket bounds, exact
 * count/min/max/sum/mean, percentiles against exact nearest-rank values of
 * sorted samples (within the documented 1/(2S) error), clamping, exact merge,
 * and serialisation round trips plus damaged serialised input.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "h2replay/hist.h"

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Exact nearest-rank percentile of sorted values. */
static int64_t exact_pct(const int64_t *v, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n - 1e-9);
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

static int within(int64_t got, int64_t want, double rel)
{
    double d = fabs((double)got - (double)want);
    return d <= rel * (double)want + 0.5;
}

static void test_buckets(void)
{
    struct h2r_hist *h = NULL;
    CHECK_EQ_INT(h2r_hist_new(&h, 0), 0);
    CHECK_EQ_INT(h2r_hist_bits(h), 7);
    CHECK_EQ_INT(h2r_hist_nbuckets(h), 128 * 36);
    int bad = 0;
    /* every small value and many random ones fall inside their bucket */
    for (int64_t v = 0; v < 300000; v++) {
        int64_t lo, hi;
        h2r_hist_bucket(h, h2r_hist_index(h, v), &lo, &hi);
        if (v < lo || v > hi || (double)(hi - lo + 1) > (double)(lo ? lo : 1) / 128.0 + 1)
            bad++;
    }
    for (int i = 0; i < 200000; i++) {
        int64_t v = (int64_t)(rng() % (uint64_t)H2R_HIST_MAX_VALUE);
        int64_t lo, hi;
        h2r_hist_bucket(h, h2r_hist_index(h, v), &lo, &hi);
        if (v < lo || v > hi || (double)(hi - lo) > (double)lo / 128.0)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    /* buckets are contiguous and ordered */
    int64_t prev_hi = -1;
    for (size_t i = 0; i < h2r_hist_nbuckets(h); i++) {
        int64_t lo, hi;
        h2r_hist_bucket(h, i, &lo, &hi);
        if (lo != prev_hi + 1)
            bad++;
        prev_hi = hi;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(prev_hi, H2R_HIST_MAX_VALUE);
    CHECK_EQ_INT(h2r_hist_new(&h, 11), H2R_ERR_ARG);
    h2r_hist_free(h);
    h2r_hist_free(NULL);
}

static void test_uniform(void)
{
    struct h2r_hist *h = NULL;
    CHECK_EQ_INT(h2r_hist_new(&h, 0), 0);
    CHECK_EQ_INT(h2r_hist_count(h), 0);
    CHECK_EQ_INT(h2r_hist_percentile(h, 50), 0);
    CHECK(h2r_hist_mean(h) == 0.0);
    for (int64_t v = 1; v <= 10000; v++)
        h2r_hist_record(h, v * 1000); /* 1us .. 10ms */
    CHECK_EQ_INT(h2r_hist_count(h), 10000);
    CHECK_EQ_INT(h2r_hist_min(h), 1000);
    CHECK_EQ_INT(h2r_hist_max(h), 10000000);
    CHECK(h2r_hist_sum(h) == 50005000.0 * 1000.0);
    CHECK(fabs(h2r_hist_mean(h) - 5000500.0) < 1e-6);
    CHECK(within(h2r_hist_percentile(h, 50), 5000000, 0.004));
    CHECK(within(h2r_hist_percentile(h, 90), 9000000, 0.004));
    CHECK(within(h2r_hist_percentile(h, 99), 9900000, 0.004));
    CHECK(within(h2r_hist_percentile(h, 99.9), 9990000, 0.004));
    CHECK_EQ_INT(h2r_hist_percentile(h, 100), 10000000);
    CHECK_EQ_INT(h2r_hist_percentile(h, 0), 1000);
    CHECK_EQ_INT(h2r_hist_clamped(h), 0);
    h2r_hist_free(h);

    /* small values are exact */
    CHECK_EQ_INT(h2r_hist_new(&h, 0), 0);
    for (int64_t v = 1; v <= 100; v++)
        h2r_hist_record(h, v);
    CHECK_EQ_INT(h2r_hist_percentile(h, 50), 50);
    CHECK_EQ_INT(h2r_hist_percentile(h, 99), 99);
    CHECK_EQ_INT(h2r_hist_percentile(h, 99.9), 100);
    CHECK_EQ_INT(h2r_hist_percentile(h, 1), 1);
    h2r_hist_free(h);
}

static void test_random_vs_exact(unsigned bits, double rel)
{
    enum { N = 200000 };
    int64_t *v = malloc(N * sizeof(*v));
    struct h2r_hist *h = NULL;
    CHECK(v != NULL);
    CHECK_EQ_INT(h2r_hist_new(&h, bits), 0);
    if (!v || !h)
        goto out;
    for (size_t i = 0; i < N; i++) {
        /* roughly log-uniform 10us .. 10s with a heavy tail */
        double e = 4.0 + 6.0 * (double)(rng() % 1000000) / 1e6;
        v[i] = (int64_t)pow(10.0, e);
        h2r_hist_record(h, v[i]);
    }
    qsort(v, N, sizeof(*v), cmp_i64);
    const double ps[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        int64_t want = exact_pct(v, N, ps[i]), got = h2r_hist_percentile(h, ps[i]);
        if (!within(got, want, rel)) {
            fprintf(stderr, "bits %u p%g: got %lld want %lld\n", bits, ps[i], (long long)got,
                    (long long)want);
            CHECK(0);
        } else {
            CHECK(1);
        }
    }
    CHECK_EQ_INT(h2r_hist_max(h), v[N - 1]);
    CHECK_EQ_INT(h2r_hist_min(h), v[0]);
out:
    free(v);
    h2r_hist_free(h);
}

static void test_clamp_and_sum(void)
{
    struct h2r_hist *h = NULL;
    CHECK_EQ_INT(h2r_hist_new(&h, 0), 0);
    h2r_hist_record(h, -5);
    h2r_hist_record(h, INT64_C(1) << 50);
    CHECK_EQ_INT(h2r_hist_clamped(h), 2);
    CHECK_EQ_INT(h2r_hist_min(h), 0);
    CHECK_EQ_INT(h2r_hist_max(h), INT64_C(1) << 50);
    CHECK_EQ_INT(h2r_hist_percentile(h, 100), INT64_C(1) << 50);
    CHECK_EQ_INT(h2r_hist_index(h, INT64_C(1) << 50), h2r_hist_nbuckets(h) - 1);
    h2r_hist_reset(h);
    CHECK_EQ_INT(h2r_hist_count(h), 0);
    /* the sum needs more than 64 bits: (2^42 - 1) * 2^40 */
    h2r_hist_record_n(h, H2R_HIST_MAX_VALUE, UINT64_C(1) << 40);
    CHECK(h2r_hist_sum(h) == ldexp((double)H2R_HIST_MAX_VALUE, 40));
    CHECK(h2r_hist_mean(h) == (double)H2R_HIST_MAX_VALUE);
    h2r_hist_free(h);
}

static void test_merge_and_serialize(void)
{
    struct h2r_hist *all = NULL, *a = NULL, *b = NULL, *c = NULL, *back = NULL;
    uint8_t *buf1 = NULL, *buf2 = NULL;
    CHECK_EQ_INT(h2r_hist_new(&all, 0), 0);
    CHECK_EQ_INT(h2r_hist_new(&a, 0), 0);
    CHECK_EQ_INT(h2r_hist_new(&b, 0), 0);
    CHECK_EQ_INT(h2r_hist_new(&c, 4), 0);
    if (!all || !a || !b || !c)
        goto out;
    for (int i = 0; i < 50000; i++) {
        int64_t v = (int64_t)(rng() % 5000000000ull);
        h2r_hist_record(all, v);
        h2r_hist_record(i % 3 ? a : b, v);
    }
    CHECK_EQ_INT(h2r_hist_merge(a, c), H2R_ERR_ARG);
    CHECK_EQ_INT(h2r_hist_merge(a, b), 0);
    size_t n1 = 0, n2 = 0;
    CHECK_EQ_INT(h2r_hist_serialize(all, NULL, 0, &n1), H2R_ERR_LIMIT);
    CHECK_EQ_INT(h2r_hist_serialize(a, NULL, 0, &n2), H2R_ERR_LIMIT);
    buf1 = malloc(n1);
    buf2 = malloc(n2);
    if (!buf1 || !buf2)
        goto out;
    CHECK_EQ_INT(h2r_hist_serialize(all, buf1, n1, &n1), 0);
    CHECK_EQ_INT(h2r_hist_serialize(a, buf2, n2, &n2), 0);
    CHECK_EQ_MEM(buf1, n1, buf2, n2); /* merge is exact: byte-identical */
    CHECK_EQ_INT(h2r_hist_serialize(all, buf1, n1 - 1, &n2), H2R_ERR_LIMIT);

    CHECK_EQ_INT(h2r_hist_deserialize(&back, buf1, n1), 0);
    if (back) {
        CHECK_EQ_INT(h2r_hist_count(back), 50000);
        CHECK_EQ_INT(h2r_hist_percentile(back, 99), h2r_hist_percentile(all, 99));
        CHECK(h2r_hist_sum(back) == h2r_hist_sum(all));
        CHECK_EQ_INT(h2r_hist_max(back), h2r_hist_max(all));
        h2r_hist_free(back);
        back = NULL;
    }
    /* every truncation fails cleanly */
    int bad = 0;
    for (size_t k = 0; k < n1; k++) {
        if (h2r_hist_deserialize(&back, buf1, k) == 0) {
            bad++;
            h2r_hist_free(back);
            back = NULL;
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* a wrong count or magic is refused */
    buf1[0] = 'X';
    CHECK_EQ_INT(h2r_hist_deserialize(&back, buf1, n1), H2R_ERR_FORMAT);
    buf1[0] = 'H';
    buf1[7] ^= 1; /* low bit of the count varint */
    CHECK(h2r_hist_deserialize(&back, buf1, n1) < 0);
    /* empty histogram round trip */
    h2r_hist_reset(all);
    CHECK_EQ_INT(h2r_hist_serialize(all, buf1, n1, &n2), 0);
    CHECK_EQ_INT(h2r_hist_deserialize(&back, buf1, n2), 0);
    if (back)
        CHECK_EQ_INT(h2r_hist_count(back), 0);
out:
    h2r_hist_free(back);
    h2r_hist_free(all);
    h2r_hist_free(a);
    h2r_hist_free(b);
    h2r_hist_free(c);
    free(buf1);
    free(buf2);
}

int main(void)
{
    test_buckets();
    test_uniform();
    test_random_vs_exact(7, 0.004);
    test_random_vs_exact(4, 0.032);
    test_clamp_and_sum();
    test_merge_and_serialize();
    return check_summary("test_core_hist");
}
