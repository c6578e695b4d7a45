/*
 * libFuzzer target for the histogram deserialiser (core/hist.c), the format
 * shards will exchange: arbitrary bytes must parse or fail cleanly, and what
 * parses must serialise back to the very same bytes (the form is canonical)
 * and keep its invariants (percentiles ordered and within [min, max]).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h2replay/hist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t none[1];
    struct h2r_hist *h = NULL, *m = NULL;
    if (h2r_hist_deserialize(&h, size ? data : none, size) != 0)
        return 0;
    size_t len = 0;
    h2r_hist_serialize(h, NULL, 0, &len);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        goto out;
    if (h2r_hist_serialize(h, buf, len, &len) != 0 || len != size || memcmp(buf, data, len) != 0)
        abort();
    int64_t prev = h2r_hist_min(h);
    const double ps[] = {0, 1, 50, 90, 99, 99.9, 100};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        int64_t v = h2r_hist_percentile(h, ps[i]);
        if (h2r_hist_count(h) && (v < prev || v > h2r_hist_max(h)))
            abort();
        prev = v;
    }
    /* merging into an empty histogram of the same bucketing gives the same counts */
    if (h2r_hist_new(&m, h2r_hist_bits(h)) == 0 && h2r_hist_merge(m, h) == 0 &&
        h2r_hist_count(m) != h2r_hist_count(h))
        abort();
out:
    free(buf);
    h2r_hist_free(m);
    h2r_hist_free(h);
    return 0;
}
