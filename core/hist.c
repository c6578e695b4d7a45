/*
 * Log-linear latency histograms (include/h2replay/hist.h), in the manner of
 * HdrHistogram: a bucket index is computed from the value's most significant
 * bit and the next B bits, so recording is a few instructions and no sample
 * is ever stored. Replay threads and analysis shards each fill their own
 * histograms and merge them at the end; the shared bucketing makes that exact.
 *
 * Why not keep samples and sort: a 10-million-exchange run would need 80 MB
 * per latency series, and shards could not be combined without shipping them.
 */
#include <stdlib.h>
#include <string.h>

#include "h2replay/hist.h"

#define HIST_MAGIC "H2RH"
#define HIST_VERSION 1u
/* Index of the most significant bit of H2R_HIST_MAX_VALUE, plus one. */
#define HIST_VALUE_BITS 42u

struct h2r_hist {
    unsigned bits;   /* B: sub-bucket bits */
    size_t nbuckets; /* S * (HIST_VALUE_BITS + 1 - B) */
    uint64_t count;
    uint64_t clamped;
    int64_t min;
    int64_t max;
    uint64_t sum_hi; /* 128-bit exact sum of the recorded values */
    uint64_t sum_lo;
    uint64_t *counts;
};

static size_t hist_nbuckets_for(unsigned bits)
{
    return ((size_t)1 << bits) * (HIST_VALUE_BITS + 1u - bits);
}

int h2r_hist_new(struct h2r_hist **out, unsigned bits)
{
    if (bits == 0)
        bits = H2R_HIST_BITS_DEFAULT;
    if (bits < H2R_HIST_BITS_MIN || bits > H2R_HIST_BITS_MAX)
        return H2R_ERR_ARG;
    struct h2r_hist *h = calloc(1, sizeof(*h));
    if (!h)
        return H2R_ERR_NOMEM;
    h->bits = bits;
    h->nbuckets = hist_nbuckets_for(bits);
    h->counts = calloc(h->nbuckets, sizeof(*h->counts));
    if (!h->counts) {
        free(h);
        return H2R_ERR_NOMEM;
    }
    *out = h;
    return 0;
}

void h2r_hist_free(struct h2r_hist *h)
{
    if (!h)
        return;
    free(h->counts);
    free(h);
}

void h2r_hist_reset(struct h2r_hist *h)
{
    memset(h->counts, 0, h->nbuckets * sizeof(*h->counts));
    h->count = 0;
    h->clamped = 0;
    h->min = 0;
    h->max = 0;
    h->sum_hi = 0;
    h->sum_lo = 0;
}

static size_t index_of(unsigned bits, uint64_t v)
{
    unsigned msb = v ? 63u - (unsigned)__builtin_clzll(v) : 0;
    unsigned shift = msb > bits ? msb - bits : 0;
    return ((size_t)shift << bits) + (size_t)(v >> shift);
}

size_t h2r_hist_index(const struct h2r_hist *h, int64_t v)
{
    if (v < 0)
        v = 0;
    if (v > H2R_HIST_MAX_VALUE)
        v = H2R_HIST_MAX_VALUE;
    return index_of(h->bits, (uint64_t)v);
}

/* 64 x 64 -> 128-bit product, added to the sum (no compiler extensions). */
static void sum_add_product(struct h2r_hist *h, uint64_t a, uint64_t b)
{
    uint64_t a_lo = a & 0xffffffffu, a_hi = a >> 32;
    uint64_t b_lo = b & 0xffffffffu, b_hi = b >> 32;
    uint64_t p0 = a_lo * b_lo, p1 = a_lo * b_hi, p2 = a_hi * b_lo, p3 = a_hi * b_hi;
    uint64_t mid = (p0 >> 32) + (p1 & 0xffffffffu) + (p2 & 0xffffffffu);
    uint64_t lo = (p0 & 0xffffffffu) | (mid << 32);
    uint64_t hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
    uint64_t old = h->sum_lo;
    h->sum_lo += lo;
    h->sum_hi += hi + (h->sum_lo < old);
}

void h2r_hist_record_n(struct h2r_hist *h, int64_t v, uint64_t n)
{
    if (n == 0)
        return;
    if (v < 0) {
        v = 0;
        h->clamped += n;
    } else if (v > H2R_HIST_MAX_VALUE) {
        h->clamped += n;
    }
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (h->count == 0 || v > h->max)
        h->max = v;
    h->count += n;
    sum_add_product(h, (uint64_t)v, n);
    int64_t b = v > H2R_HIST_MAX_VALUE ? H2R_HIST_MAX_VALUE : v;
    h->counts[index_of(h->bits, (uint64_t)b)] += n;
}

void h2r_hist_record(struct h2r_hist *h, int64_t v)
{
    h2r_hist_record_n(h, v, 1);
}

int h2r_hist_merge(struct h2r_hist *dst, const struct h2r_hist *src)
{
    if (dst->bits != src->bits)
        return H2R_ERR_ARG;
    if (src->count == 0)
        return 0;
    for (size_t i = 0; i < dst->nbuckets; i++)
        dst->counts[i] += src->counts[i];
    if (dst->count == 0 || src->min < dst->min)
        dst->min = src->min;
    if (dst->count == 0 || src->max > dst->max)
        dst->max = src->max;
    dst->count += src->count;
    dst->clamped += src->clamped;
    uint64_t old = dst->sum_lo;
    dst->sum_lo += src->sum_lo;
    dst->sum_hi += src->sum_hi + (dst->sum_lo < old);
    return 0;
}

uint64_t h2r_hist_count(const struct h2r_hist *h)
{
    return h->count;
}

int64_t h2r_hist_min(const struct h2r_hist *h)
{
    return h->min;
}

int64_t h2r_hist_max(const struct h2r_hist *h)
{
    return h->max;
}

double h2r_hist_sum(const struct h2r_hist *h)
{
    return (double)h->sum_hi * 18446744073709551616.0 + (double)h->sum_lo;
}

double h2r_hist_mean(const struct h2r_hist *h)
{
    return h->count ? h2r_hist_sum(h) / (double)h->count : 0.0;
}

uint64_t h2r_hist_clamped(const struct h2r_hist *h)
{
    return h->clamped;
}

unsigned h2r_hist_bits(const struct h2r_hist *h)
{
    return h->bits;
}

size_t h2r_hist_nbuckets(const struct h2r_hist *h)
{
    return h->nbuckets;
}

static void bucket_range(unsigned bits, size_t i, int64_t *lo, int64_t *hi)
{
    size_t s = (size_t)1 << bits;
    if (i < 2 * s) {
        *lo = (int64_t)i;
        *hi = (int64_t)i;
        return;
    }
    unsigned shift = (unsigned)(i >> bits) - 1u;
    uint64_t sub = (uint64_t)(i - ((size_t)shift << bits));
    *lo = (int64_t)(sub << shift);
    *hi = *lo + (int64_t)(((uint64_t)1 << shift) - 1u);
}

uint64_t h2r_hist_bucket(const struct h2r_hist *h, size_t i, int64_t *lo, int64_t *hi)
{
    if (i >= h->nbuckets) {
        *lo = *hi = H2R_HIST_MAX_VALUE;
        return 0;
    }
    bucket_range(h->bits, i, lo, hi);
    return h->counts[i];
}

int64_t h2r_hist_percentile(const struct h2r_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (!(p > 0.0))
        return h->min;
    if (p >= 100.0)
        return h->max;
    /* nearest rank; the epsilon keeps 99 % of 100 samples at rank 99, not 100 */
    double x = p / 100.0 * (double)h->count;
    double r = x - x * 1e-12;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t cum = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        cum += h->counts[i];
        if (cum >= rank) {
            int64_t lo, hi;
            bucket_range(h->bits, i, &lo, &hi);
            int64_t v = lo + (hi - lo) / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

/* ---------------------------------------------------------- serialisation */

struct wcur {
    uint8_t *p;
    size_t cap;
    size_t len;
};

static void put_byte(struct wcur *w, uint8_t b)
{
    if (w->len < w->cap)
        w->p[w->len] = b;
    w->len++;
}

static void put_varint(struct wcur *w, uint64_t v)
{
    while (v >= 0x80) {
        put_byte(w, (uint8_t)(v | 0x80));
        v >>= 7;
    }
    put_byte(w, (uint8_t)v);
}

int h2r_hist_serialize(const struct h2r_hist *h, uint8_t *buf, size_t cap, size_t *len)
{
    struct wcur w = {buf, buf ? cap : 0, 0};
    for (size_t i = 0; i < 4; i++)
        put_byte(&w, (uint8_t)HIST_MAGIC[i]);
    put_varint(&w, HIST_VERSION);
    put_varint(&w, h->bits);
    put_varint(&w, h->count);
    put_varint(&w, h->clamped);
    put_varint(&w, (uint64_t)h->min);
    put_varint(&w, (uint64_t)h->max);
    put_varint(&w, h->sum_hi);
    put_varint(&w, h->sum_lo);
    size_t nonzero = 0;
    for (size_t i = 0; i < h->nbuckets; i++)
        nonzero += h->counts[i] != 0;
    put_varint(&w, nonzero);
    size_t prev = 0;
    for (size_t i = 0; i < h->nbuckets; i++) {
        if (!h->counts[i])
            continue;
        put_varint(&w, i - prev);
        put_varint(&w, h->counts[i]);
        prev = i;
    }
    *len = w.len;
    return w.len > w.cap ? H2R_ERR_LIMIT : 0;
}

struct rcur {
    const uint8_t *p;
    size_t len;
};

static int get_varint(struct rcur *c, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (c->len == 0)
            return H2R_ERR_TRUNCATED;
        uint8_t b = *c->p++;
        c->len--;
        /* one encoding per value: no 10th byte above 1, no overlong trailing zero */
        if ((i == 9 && b > 1) || (i > 0 && b == 0))
            return H2R_ERR_FORMAT;
        x |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return H2R_ERR_FORMAT;
}

int h2r_hist_deserialize(struct h2r_hist **out, const uint8_t *buf, size_t len)
{
    struct rcur c = {buf, len};
    struct h2r_hist *h = NULL;
    uint64_t version, bits, count, clamped, min, max, sum_hi, sum_lo, nonzero;
    int rc;
    if (len < 4)
        return H2R_ERR_TRUNCATED;
    if (memcmp(buf, HIST_MAGIC, 4) != 0)
        return H2R_ERR_FORMAT;
    c.p += 4;
    c.len -= 4;
    rc = get_varint(&c, &version);
    if (rc)
        goto out;
    if (version != HIST_VERSION) {
        rc = H2R_ERR_VERSION;
        goto out;
    }
    uint64_t *fields[] = {&bits, &count, &clamped, &min, &max, &sum_hi, &sum_lo, &nonzero};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        rc = get_varint(&c, fields[i]);
        if (rc)
            goto out;
    }
    if (bits < H2R_HIST_BITS_MIN || bits > H2R_HIST_BITS_MAX || clamped > count ||
        (int64_t)min < 0 || (int64_t)max < 0 || min > max || (count == 0 && max != 0)) {
        rc = H2R_ERR_FORMAT;
        goto out;
    }
    rc = h2r_hist_new(&h, (unsigned)bits);
    if (rc)
        goto out;
    if (nonzero > h->nbuckets) {
        rc = H2R_ERR_FORMAT;
        goto out;
    }
    uint64_t total = 0;
    size_t idx = 0;
    for (uint64_t k = 0; k < nonzero; k++) {
        uint64_t delta, n;
        rc = get_varint(&c, &delta);
        if (!rc)
            rc = get_varint(&c, &n);
        if (rc)
            goto out;
        /* indices strictly increase (the first may be 0), counts are never 0 */
        if ((k > 0 && delta == 0) || delta >= h->nbuckets - idx || n == 0 ||
            n > UINT64_MAX - total) {
            rc = H2R_ERR_FORMAT;
            goto out;
        }
        idx += (size_t)delta;
        h->counts[idx] = n;
        total += n;
    }
    if (total != count || c.len != 0) {
        rc = H2R_ERR_FORMAT;
        goto out;
    }
    h->count = count;
    h->clamped = clamped;
    h->min = (int64_t)min;
    h->max = (int64_t)max;
    h->sum_hi = sum_hi;
    h->sum_lo = sum_lo;
    *out = h;
    h = NULL;
out:
    h2r_hist_free(h);
    return rc;
}
