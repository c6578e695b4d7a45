/*
 * Unit tests for the diff statistics (analyze/an_stats.c): Mann-Whitney U
 * from histograms against a brute-force U with true ties, its p-value
 * against the tie-corrected normal approximation computed independently,
 * power on a real shift and no false alarm on identical samples, and the
 * two-proportion test.
 */
#include <math.h>

#include "an_stats.h"
#include "check.h"
#include "h2replay/error.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_exact_small(void)
{
    /* small values: every value has its own bucket, so bucket ties are true ties */
    const int64_t a[] = {1, 2, 3, 4, 5, 5, 9};
    const int64_t b[] = {3, 4, 5, 6, 7, 7, 8, 10};
    size_t na = sizeof(a) / sizeof(a[0]), nb = sizeof(b) / sizeof(b[0]);
    struct h2r_hist *ha = NULL, *hb = NULL;
    CHECK_EQ_INT(h2r_hist_new(&ha, 0), 0);
    CHECK_EQ_INT(h2r_hist_new(&hb, 0), 0);
    if (!ha || !hb)
        goto out;
    for (size_t i = 0; i < na; i++)
        h2r_hist_record(ha, a[i]);
    for (size_t i = 0; i < nb; i++)
        h2r_hist_record(hb, b[i]);
    double u = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            u += b[j] > a[i] ? 1.0 : b[j] == a[i] ? 0.5 : 0.0;
    /* tie term: values and their multiplicity over both samples */
    double ties = 0;
    for (int64_t v = 0; v <= 10; v++) {
        double t = 0;
        for (size_t i = 0; i < na; i++)
            t += a[i] == v;
        for (size_t j = 0; j < nb; j++)
            t += b[j] == v;
        ties += t * t * t - t;
    }
    double n1 = (double)na, n2 = (double)nb, n = n1 + n2;
    double var = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)));
    double z = (fabs(u - n1 * n2 / 2) - 0.5) / sqrt(var);
    double p = erfc(z / sqrt(2.0));
    struct an_mw mw;
    CHECK_EQ_INT(an_mann_whitney(ha, hb, &mw), 0);
    CHECK_EQ_INT(mw.valid, 1);
    CHECK(mw.u == u);
    CHECK(fabs(mw.z - z) < 1e-12);
    CHECK(fabs(mw.p - p) < 1e-12);
    CHECK(fabs(mw.prob_b_gt_a - u / (n1 * n2)) < 1e-12);
out:
    h2r_hist_free(ha);
    h2r_hist_free(hb);
}

static void test_power(void)
{
    struct h2r_hist *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    CHECK_EQ_INT(h2r_hist_new(&a, 0), 0);
    CHECK_EQ_INT(h2r_hist_new(&b, 0), 0);
    CHECK_EQ_INT(h2r_hist_new(&c, 0), 0);
    CHECK_EQ_INT(h2r_hist_new(&d, 4), 0);
    if (!a || !b || !c || !d)
        goto out;
    for (int i = 0; i < 5000; i++) {
        int64_t v = 1000000 + (int64_t)(rng() % 1000000);
        h2r_hist_record(a, v);
        h2r_hist_record(b, (int64_t)((double)(1000000 + (int64_t)(rng() % 1000000)) * 1.10));
        h2r_hist_record(c, 1000000 + (int64_t)(rng() % 1000000));
    }
    struct an_mw mw;
    CHECK_EQ_INT(an_mann_whitney(a, b, &mw), 0);
    CHECK(mw.valid && mw.p < 1e-6 && mw.z > 0 && mw.prob_b_gt_a > 0.5);
    CHECK_EQ_INT(an_mann_whitney(a, c, &mw), 0);
    CHECK(mw.valid && mw.p > 0.001); /* same distribution: no alarm */
    CHECK_EQ_INT(an_mann_whitney(a, d, &mw), H2R_ERR_ARG);
    h2r_hist_reset(c);
    CHECK_EQ_INT(an_mann_whitney(a, c, &mw), 0);
    CHECK(!mw.valid && mw.p == 1.0);
    /* everything tied: untestable */
    h2r_hist_reset(a);
    h2r_hist_reset(b);
    h2r_hist_record_n(a, 5, 10);
    h2r_hist_record_n(b, 5, 10);
    CHECK_EQ_INT(an_mann_whitney(a, b, &mw), 0);
    CHECK(!mw.valid && mw.p == 1.0);
out:
    h2r_hist_free(a);
    h2r_hist_free(b);
    h2r_hist_free(c);
    h2r_hist_free(d);
}

static void test_proportions(void)
{
    CHECK(an_two_proportion_p(0, 100, 0, 100) == 1.0);
    CHECK(an_two_proportion_p(0, 0, 1, 100) == 1.0);
    CHECK(an_two_proportion_p(10, 1000, 50, 1000) < 0.001);
    CHECK(an_two_proportion_p(10, 1000, 11, 1000) > 0.5);
    CHECK(an_rel_delta(100, 120) > 0.1999 && an_rel_delta(100, 120) < 0.2001);
    CHECK(an_rel_delta(0, 0) == 0);
    CHECK(isinf(an_rel_delta(0, 1)));
    CHECK(an_significant(0.001, 0.06) && !an_significant(0.02, 0.5) &&
          !an_significant(0.001, 0.04) && an_significant(0.001, -0.05));
}

int main(void)
{
    test_exact_small();
    test_power();
    test_proportions();
    return check_summary("test_an_stats");
}
