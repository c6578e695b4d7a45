/*
 * libFuzzer target: the trace record decoders behind zstd. Mutating a
 * compressed file mostly breaks checksums, so this target takes the
 * *decompressed* stream (magic, version, records), compresses it without a
 * checksum, and hands it to the reader: the fuzzer then explores record and
 * field decoding directly.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <zstd.h>

#include "h2replay/trace.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cap = ZSTD_compressBound(size);
    void *z = malloc(cap);
    if (!z)
        return 0;
    size_t zn = ZSTD_compress(z, cap, data, size, 1);
    if (ZSTD_isError(zn)) {
        free(z);
        return 0;
    }
    struct h2r_trace_reader *r;
    char err[256];
    if (h2r_trace_reader_open_mem(&r, z, zn, err, sizeof(err)) == 0) {
        struct h2r_trace_record rec;
        for (int i = 0; i < 100000 && h2r_trace_reader_next(r, &rec) == 1; i++) {
            if (rec.kind == H2R_REC_EXCHANGE) {
                const struct h2r_exchange *x = &rec.u.exch;
                for (size_t k = 0; k < x->n_req_hdrs; k++)
                    sink += x->req_hdrs[k].name_len ? x->req_hdrs[k].name[0] : 0;
                for (size_t k = 0; k < x->req_body_stored; k++)
                    sink += x->req_body[k];
                if (x->error)
                    sink += (uint8_t)x->error[0];
            } else if (rec.kind == H2R_REC_CONN) {
                sink += (uint8_t)rec.u.conn.client[0];
            }
        }
        h2r_trace_reader_free(r);
    }
    free(z);
    return 0;
}
