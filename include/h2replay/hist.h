/*
 * Latency histograms: HDR-style log-linear bucketing of non-negative ns values.
 *
 * With B "sub-bucket bits" (S = 2^B), values below 2S get one bucket each, and
 * every power of two above is split into S equal buckets, so a bucket is never
 * wider than 1/S of its lower bound. Percentiles report the bucket midpoint,
 * clamped to the exact min and max: relative error <= 1/(2S) (0.39 % for the
 * default B = 7, 128 sub-buckets per power of two; 3.1 % for B = 4).
 *
 * The range is 0 ... H2R_HIST_MAX_VALUE (2^42 - 1 ns, about 73 minutes); larger
 * values land in the last bucket and are counted in h2r_hist_clamped(), negative
 * ones are recorded as 0 and counted too. count, min, max and sum are exact
 * (sum in 128 bits). Memory is fixed at creation (S * (43 - B) counters, 36 KiB
 * for B = 7) and never grows with the number of samples.
 *
 * Histograms with the same B have the same buckets everywhere, so merging is
 * exact; the serialised form carries B and is what shards exchange.
 */
#ifndef H2REPLAY_HIST_H
#define H2REPLAY_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "h2replay/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define H2R_HIST_MAX_VALUE ((INT64_C(1) << 42) - 1)
#define H2R_HIST_BITS_DEFAULT 7u /* 128 sub-buckets per power of two */
#define H2R_HIST_BITS_MIN 1u
#define H2R_HIST_BITS_MAX 10u

struct h2r_hist;

/*
 * Creates an empty histogram with `bits` sub-bucket bits (0 = the default, 7).
 * Returns 0, H2R_ERR_ARG when bits is outside 1..10, or H2R_ERR_NOMEM.
 */
int h2r_hist_new(struct h2r_hist **out, unsigned bits);

/* Frees h; NULL is a no-op. */
void h2r_hist_free(struct h2r_hist *h);

/* Forgets every sample (keeps the bucketing and the memory). */
void h2r_hist_reset(struct h2r_hist *h);

/* Records one value (ns). Out-of-range values are clamped and counted. */
void h2r_hist_record(struct h2r_hist *h, int64_t v);

/* Records n occurrences of v. */
void h2r_hist_record_n(struct h2r_hist *h, int64_t v, uint64_t n);

/*
 * Adds every sample of src to dst. Returns 0, or H2R_ERR_ARG when their
 * bucketing differs (dst is then unchanged).
 */
int h2r_hist_merge(struct h2r_hist *dst, const struct h2r_hist *src);

/* Samples recorded, clamped ones included. */
uint64_t h2r_hist_count(const struct h2r_hist *h);
/* Exact smallest / largest recorded value (before clamping); 0 when empty. */
int64_t h2r_hist_min(const struct h2r_hist *h);
int64_t h2r_hist_max(const struct h2r_hist *h);
/* Exact sum as a double (the 128-bit total rounded once), and sum / count (0 when empty). */
double h2r_hist_sum(const struct h2r_hist *h);
double h2r_hist_mean(const struct h2r_hist *h);
/* Samples that were out of range and clamped (above the max or negative). */
uint64_t h2r_hist_clamped(const struct h2r_hist *h);
unsigned h2r_hist_bits(const struct h2r_hist *h);

/*
 * Value at percentile p (0..100) by nearest rank: the smallest recorded value
 * v such that at least p % of the samples are <= v, within the bucket error.
 * p <= 0 gives the exact min, p >= 100 the exact max; 0 when empty.
 */
int64_t h2r_hist_percentile(const struct h2r_hist *h, double p);

/* Number of buckets (the same for every histogram with the same bits). */
size_t h2r_hist_nbuckets(const struct h2r_hist *h);

/*
 * Bucket i: returns its count and sets [*lo, *hi] (inclusive) to the values
 * it holds. Buckets are ordered: every value of bucket i is below bucket i+1.
 */
uint64_t h2r_hist_bucket(const struct h2r_hist *h, size_t i, int64_t *lo, int64_t *hi);

/* Index of the bucket that holds v (after clamping). */
size_t h2r_hist_index(const struct h2r_hist *h, int64_t v);

/*
 * Serialises h into buf (cap bytes). *len receives the size needed; returns
 * 0, or H2R_ERR_LIMIT when cap is too small (call with cap 0 to size a
 * buffer). Layout (all integers LEB128 varints): "H2RH", version 1, bits,
 * count, clamped, min, max, sum_hi, sum_lo, number of non-empty buckets, then
 * per non-empty bucket (index delta from the previous one, count).
 */
int h2r_hist_serialize(const struct h2r_hist *h, uint8_t *buf, size_t cap, size_t *len);

/*
 * Parses a serialised histogram into a new one. Every field is bounds
 * checked: returns 0, H2R_ERR_FORMAT (bad magic, bucket out of range, counts
 * that do not add up), H2R_ERR_TRUNCATED, H2R_ERR_VERSION or H2R_ERR_NOMEM.
 */
int h2r_hist_deserialize(struct h2r_hist **out, const uint8_t *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif
