/*
 * libFuzzer target: the trace reader (core/trace.c + core/recio.c) on
 * arbitrary bytes. Every record it returns is walked completely so that a
 * bad pointer or length in a decoded view is touched.
 */
#include <stddef.h>
#include <stdint.h>

#include "h2replay/trace.h"

static volatile uint64_t sink;

static void touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        sink += b[i];
}

static void touch_hdrs(const struct h2r_hdr *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        touch(h[i].name, h[i].name_len);
        touch(h[i].value, h[i].value_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct h2r_trace_reader *r;
    char err[256];
    if (h2r_trace_reader_open_mem(&r, data, size, err, sizeof(err)) != 0)
        return 0;
    struct h2r_trace_record rec;
    for (int i = 0; i < 100000 && h2r_trace_reader_next(r, &rec) == 1; i++) {
        if (rec.kind == H2R_REC_EXCHANGE) {
            const struct h2r_exchange *x = &rec.u.exch;
            touch_hdrs(x->req_hdrs, x->n_req_hdrs);
            touch_hdrs(x->resp_hdrs, x->n_resp_hdrs);
            touch_hdrs(x->trailers, x->n_trailers);
            touch(x->req_body, x->req_body_stored);
            touch(x->resp_body, x->resp_body_stored);
        } else if (rec.kind == H2R_REC_SUMMARY) {
            for (size_t k = 0; k < rec.u.summary.n_counters; k++)
                sink += rec.u.summary.counters[k].value;
        }
    }
    h2r_trace_reader_free(r);
    return 0;
}
