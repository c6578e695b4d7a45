/*
 * Statistical tests for run diffs: is a change real or noise?
 */
#ifndef H2R_AN_STATS_H
#define H2R_AN_STATS_H

#include <stdint.h>

#include "h2replay/hist.h"

/* A change is "significant" only when p < AN_SIG_P and |relative delta| >= AN_SIG_REL. */
#define AN_SIG_P 0.01
#define AN_SIG_REL 0.05

struct an_mw {
    int valid;          /* 0: a side is empty or everything ties (p = 1) */
    double u;           /* U of the second sample (pairs where b > a, ties count 1/2) */
    double z;           /* normal approximation, tie- and continuity-corrected */
    double p;           /* two-sided p-value */
    double prob_b_gt_a; /* U / (n1 n2): P(b > a) + P(b == a) / 2 */
};

/*
 * Mann-Whitney U test of histogram b against histogram a (same bucketing).
 * Values sharing a bucket count as ties. Returns 0, or H2R_ERR_ARG when the
 * bucketing differs.
 */
int an_mann_whitney(const struct h2r_hist *a, const struct h2r_hist *b, struct an_mw *out);

/* Two-sided p-value of a two-proportion z-test (x1 of n1 vs x2 of n2); 1 when untestable. */
double an_two_proportion_p(uint64_t x1, uint64_t n1, uint64_t x2, uint64_t n2);

/* (cur - ref) / ref; 0 when both are 0, +/-INFINITY when only ref is 0. */
double an_rel_delta(double ref, double cur);

/* 1 when p < AN_SIG_P and |rel| >= AN_SIG_REL. */
int an_significant(double p, double rel);

#endif
