/*
 * Fuzz target for the NSS key log parser: line assembly across arbitrary
 * chunk boundaries, the provisional parse of an unterminated last line and
 * its undo, hex and length validation, the hash table, lookups and export.
 *
 * Input format: byte 0 is the chunk size (1..256, 0 = all at once); the rest
 * is key log text. It is fed in chunks with cap_keylog_end() after every
 * chunk (as a reload of a file still being written would), then every label
 * is looked up for the client_random of each complete line and for the
 * first 32 bytes of the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap_keylog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink_sum;

static int hexv(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void lookup_all(struct cap_keylog *kl, const uint8_t *r)
{
    uint8_t s[CAP_KEYLOG_MAX_SECRET];
    for (int l = 0; l < CAP_KL_N; l++) {
        size_t n = 0;
        if (cap_keylog_lookup(kl, r, (enum cap_keylog_label)l, s, &n, 0) == CAP_KEYLOG_FOUND) {
            if (n == 0 || n > CAP_KEYLOG_MAX_SECRET)
                abort();
            for (size_t i = 0; i < n; i++)
                sink_sum += s[i];
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cap_keylog *kl;
    struct cap_counter_list l = {NULL, 0, 0};
    const struct cap_keylog_stats *st;
    size_t chunk, off = 1;

    if (size < 1)
        return 0;
    chunk = data[0] ? data[0] : size;
    kl = cap_keylog_new();
    if (!kl)
        return 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (cap_keylog_feed(kl, data + off, n) != 0 || cap_keylog_end(kl) != 0)
            break;
        off += n;
    }
    st = cap_keylog_stats(kl);
    if (st->first_bad_line > st->last_bad_line || (st->bad_lines == 0) != (st->first_bad_line == 0))
        abort(); /* the provisional tail was not undone consistently */
    if (size > 32)
        lookup_all(kl, data + 1);
    /* Every "LABEL <64 hex>" prefix in the input: its random should look up without trouble. */
    for (size_t i = 1; i + 64 < size; i++) {
        uint8_t r[32];
        size_t k;
        if (data[i] != ' ')
            continue;
        for (k = 0; k < 32; k++) {
            int hi = hexv(data[i + 1 + 2 * k]), lo = hexv(data[i + 2 + 2 * k]);
            if (hi < 0 || lo < 0)
                break;
            r[k] = (uint8_t)(hi << 4 | lo);
        }
        if (k == 32)
            lookup_all(kl, r);
    }
    if (cap_keylog_stats_export(kl, &l) == 0)
        sink_sum += l.n;
    cap_counter_list_free(&l);
    sink_sum += cap_keylog_first_error(kl)[0];
    cap_keylog_free(kl);
    return 0;
}
