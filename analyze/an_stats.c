/*
 * Diff statistics. Latency samples are not kept (only histograms), so the
 * rank test runs on the histograms: buckets are ordered and no wider than
 * 1/128 of their value, so treating the values of one bucket as ties loses
 * almost no power and needs no samples. The Mann-Whitney U test was chosen
 * over a bootstrap because it is exact to compute from bins, deterministic
 * (CI output does not flap between runs of the analyzer) and O(buckets).
 *
 * With n1 + n2 = N and t_i values tied in bucket i:
 *   U    = sum_i b_i * (A_below_i + a_i / 2)
 *   var  = n1 n2 / 12 * ((N + 1) - sum_i (t_i^3 - t_i) / (N (N - 1)))
 *   z    = (|U - n1 n2 / 2| - 1/2) / sqrt(var),  p = erfc(z / sqrt 2)
 */
#include <math.h>

#include "h2replay/error.h"
#include "an_stats.h"

int an_mann_whitney(const struct h2r_hist *a, const struct h2r_hist *b, struct an_mw *out)
{
    out->valid = 0;
    out->u = 0;
    out->z = 0;
    out->p = 1.0;
    out->prob_b_gt_a = 0.5;
    if (h2r_hist_bits(a) != h2r_hist_bits(b))
        return H2R_ERR_ARG;
    double n1 = (double)h2r_hist_count(a), n2 = (double)h2r_hist_count(b);
    if (n1 == 0 || n2 == 0)
        return 0;
    double u = 0, below = 0, ties = 0;
    size_t nb = h2r_hist_nbuckets(a);
    for (size_t i = 0; i < nb; i++) {
        int64_t lo, hi;
        double ai = (double)h2r_hist_bucket(a, i, &lo, &hi);
        double bi = (double)h2r_hist_bucket(b, i, &lo, &hi);
        if (ai == 0 && bi == 0)
            continue;
        u += bi * (below + ai / 2.0);
        below += ai;
        double t = ai + bi;
        ties += t * t * t - t;
    }
    double n = n1 + n2;
    double mean = n1 * n2 / 2.0;
    double var = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    out->u = u;
    out->prob_b_gt_a = u / (n1 * n2);
    if (!(var > 0))
        return 0;
    double d = fabs(u - mean) - 0.5;
    if (d < 0)
        d = 0;
    out->z = (u >= mean ? d : -d) / sqrt(var);
    out->p = erfc(fabs(out->z) / sqrt(2.0));
    out->valid = 1;
    return 0;
}

double an_two_proportion_p(uint64_t x1, uint64_t n1, uint64_t x2, uint64_t n2)
{
    if (n1 == 0 || n2 == 0)
        return 1.0;
    double p1 = (double)x1 / (double)n1, p2 = (double)x2 / (double)n2;
    double pool = (double)(x1 + x2) / (double)(n1 + n2);
    double se = sqrt(pool * (1.0 - pool) * (1.0 / (double)n1 + 1.0 / (double)n2));
    if (!(se > 0))
        return 1.0;
    return erfc(fabs(p1 - p2) / se / sqrt(2.0));
}

double an_rel_delta(double ref, double cur)
{
    if (ref == 0)
        return cur == 0 ? 0.0 : (cur > 0 ? INFINITY : -INFINITY);
    return (cur - ref) / ref;
}

int an_significant(double p, double rel)
{
    return p < AN_SIG_P && fabs(rel) >= AN_SIG_REL;
}
